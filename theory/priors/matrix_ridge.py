"""Prior half-step of the rank-``r`` LoRA fixed point: the matrix ridge (MODEL.md §8).

The rows of ``U*`` are i.i.d. ``N(0, q0)`` (``q0 = I_{r*}`` as ``D → ∞``) and the penalty ``λ'‖U‖_F²`` plus the
centring ridge give, row by row, the ``r``-dimensional Gaussian problem
``û = argmin_u ½uᵀ(λ_eff I + V̂)u − uᵀ(m̂u* + q̂^{1/2}ξ)``, so in closed form (:func:`matrix_prior_update`)

    V = (λ_eff I + V̂)⁻¹,   m = V m̂ q0,   q = V (q̂ + m̂ q0 m̂ᵀ) V,

which at ``r = r* = 1`` is :func:`theory.priors.ridge.prior_update`.
"""

from __future__ import annotations

import numpy as np

from theory.channels.lora_rank import RankHats, RankOverlaps


def matrix_prior_update(hats: RankHats, q0: np.ndarray) -> RankOverlaps | None:
    """Matrix ridge (module doc); ``None`` when ``λ_eff I + V̂`` is not positive definite (no fixed point with
    ``V ≻ 0`` there)."""
    r = hats.V_hat.shape[0]
    Kp = hats.lam_eff * np.eye(r) + (hats.V_hat + hats.V_hat.T) / 2
    if not (np.all(np.isfinite(Kp)) and np.linalg.eigvalsh(Kp)[0] > 0):
        return None
    V = np.linalg.inv(Kp)
    V = (V + V.T) / 2
    m = V @ hats.m_hat @ q0
    q = V @ (hats.q_hat + hats.m_hat @ q0 @ hats.m_hat.T) @ V
    return RankOverlaps(q=(q + q.T) / 2, m=m, V=V)
