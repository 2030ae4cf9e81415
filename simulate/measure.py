"""The observables of MODEL.md §4, measured on trained weights at finite ``D``.

- pre-training order parameters ``Q0, Q, M`` (:func:`order_parameters`);
- LoRA overlaps ``q0, q, m, o_w`` (:func:`lora_overlaps`);
- the noise felt by the LoRA, ``Δ_eff`` (:func:`offdiag_residual_variance`, the definition of
  :func:`model.observables.offdiag_squares`);
- test errors ``E_pre, E_ft, E_frozen`` on fresh sequences (:func:`mean_output_error`).

The training losses ``L_pre``, ``L_ft`` are the training modules' data terms per sequence.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from model.laws import activation
from model.observables import lora_overlap, offdiag_squares
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
