"""Prior half-step of the LoRA fine-tuning fixed point: the ridge prior of the rank-one ``w`` (MODEL.md §5.5).

``w* ~ N(0, q0 I)`` and the penalty ``λ'‖w‖²`` plus the centring ridge (THEORY_NOTES §5.3) give a Gaussian
prior half-step in closed form: :func:`prior_update`.
"""

from __future__ import annotations

from theory.states import FinetuneHats, FinetuneOverlaps


def prior_update(hats: FinetuneHats, q0: float) -> FinetuneOverlaps:
    """Ridge prior: ``v = 1/(λ_eff + v̂)``, ``m = q0 m̂ v``, ``q = (q̂ + q0 m̂²) v²`` (NaN when
    ``λ_eff + v̂ ≤ 0``: no fixed point with ``v > 0`` there)."""
    denom = hats.lam_eff + hats.v_hat
    if not denom > 0:
        return FinetuneOverlaps(q=float("nan"), m=float("nan"), v=float("nan"))
    v = 1.0 / denom
    return FinetuneOverlaps(q=(hats.q_hat + q0 * hats.m_hat**2) * v * v, m=q0 * hats.m_hat * v, v=v)
