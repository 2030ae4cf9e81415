"""The observables of MODEL.md §4, measured on trained weights at finite ``D``.

- pre-training order parameters ``Q0, Q, M`` (:func:`order_parameters`);
- LoRA overlaps ``q0, q, m, o_w`` (:func:`lora_overlaps`); at rank ``r`` (MODEL.md §8) ``tr_q0, tr_q, o_U`` and the
  principal cosines (:func:`lora_subspace_overlaps`);
- the noise felt by the LoRA, ``Δ_eff`` (:func:`offdiag_residual_variance`, the definition of
  :func:`model.observables.offdiag_squares`);
- test errors ``E_pre, E_ft, E_frozen`` on fresh sequences (:func:`mean_output_error`).

The training losses ``L_pre``, ``L_ft`` are the training modules' data terms per sequence.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array

from model.laws import activation
from model.observables import cosine_names, lora_overlap, offdiag_squares, principal_cosines, subspace_overlap
from simulate.layer import output_sq_error


def order_parameters(W: Array, W0: Array) -> dict[str, float]:
    """``Q = Tr(S̃²)/D``, ``Q0 = Tr(S̃0²)/D``, ``M = Tr(S̃S̃0)/D`` with ``S̃ = WWᵀ/√(PD)`` (MODEL.md §4),
    from the ``P × P`` Gram matrices (no ``D × D`` product)."""
    D, P = W.shape
    P0 = W0.shape[1]
    Q = jnp.sum((W.T @ W) ** 2) / (P * D * D)
    Q0 = jnp.sum((W0.T @ W0) ** 2) / (P0 * D * D)
    M = jnp.sum((W.T @ W0) ** 2) / (jnp.sqrt(P * P0) * D * D)
    return {"Q0": float(Q0), "Q": float(Q), "M": float(M)}


def lora_overlaps(w: Array, w_star: Array) -> dict[str, float]:
    """``q = ‖ŵ‖²/D``, ``q0 = ‖w*‖²/D``, ``m = |ŵ·w*|/D``, ``o_w = |m|/√(q q0)`` (NaN when ``q = 0``).

    ``±ŵ`` are equivalent minimisers (the layer sees ``ŵŵᵀ``), so ``ŵ`` is oriented with ``m ≥ 0``.
    """
    D = w.shape[0]
    q, q0, m = (float(jnp.dot(a, b) / D) for a, b in ((w, w), (w_star, w_star), (w, w_star)))
    m = abs(m)
    return {"q0": q0, "q": q, "m": m, "o_w": lora_overlap(m, q, q0)}


def lora_subspace_overlaps(U: Array, U_star: Array) -> dict[str, float]:
    """Rank ``r`` (MODEL.md §8): with ``q = ÛᵀÛ/D``, ``q0 = U*ᵀU*/D``, ``m = ÛᵀU*/D``, the rotation invariants
    ``tr_q0 = Tr q0``, ``tr_q = Tr q``, ``o_U = √(Tr(mᵀq⁺m)/Tr q0)`` (:func:`model.observables.subspace_overlap`)
    and the principal cosines ``cos_1 ≥ … ≥ cos_k``, ``k = min(r, r*)`` (:func:`model.observables.principal_cosines`).
    ``U``, ``U_star`` are ``D×r``, ``D×r*`` matrices (vectors count as one column)."""
    U, U_star = (np.asarray(a, dtype=float).reshape(a.shape[0], -1) for a in (U, U_star))
    D = U.shape[0]
    q, q0, m = U.T @ U / D, U_star.T @ U_star / D, U.T @ U_star / D
    cos = principal_cosines(q, m, q0)
    out = {"tr_q0": float(np.trace(q0)), "tr_q": float(np.trace(q)), "o_U": subspace_overlap(q, m, q0)}
    out.update({name: float(c) for name, c in zip(cosine_names(U.shape[1], U_star.shape[1]), cos)})
    return out


def offdiag_residual_variance(A0: Array, A_frozen: Array, Z: Array, delta: float) -> float:
    """``Δ_eff``: mean square of the off-diagonal entries of ``A_{W0} − A_frozen + √Δ Z`` over the batch
    (zero mean by the sign symmetry ``x_a → −x_a``), ``A_frozen = β_W A_Ŵ``. For ``T = 1`` (no off-diagonal
    entry) half the diagonal mean square (:func:`model.observables.offdiag_squares`)."""
    return float(jnp.mean(offdiag_squares(A0 - A_frozen + jnp.sqrt(delta) * Z)))


def mean_output_error(A: Array, B: Array, G: Array, sigma: str, beta: float) -> float:
    """``mean_μ (1/D)‖(σ(A_μ) − B_μ)X_μ‖_F² = mean_μ Tr(E_μ G_μ E_μᵀ)`` with ``E = σ(A) − B``: the test error
    of the pre-activations ``A`` against the labels' attention matrices ``B`` on a batch with token Grams ``G``
    (``E_pre``: ``A = A_Ŵ``; ``E_frozen``: ``β_W A_Ŵ``; ``E_ft``: ``β_W A_Ŵ + R_ŵ``; fresh test sequences)."""
    return float(jnp.mean(output_sq_error(activation(A, sigma, beta) - B, G)))
