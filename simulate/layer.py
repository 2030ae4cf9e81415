"""The tied attention layer of MODEL.md §1, batched over sequences.

Shapes: a batch of sequences ``X`` is ``(n, T, D)``; pre-activations are ``(n, T, T)``.
All functions are pure and jit-compatible. The activation ``σ`` is the model's law
(:func:`model.laws.activation`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from model.laws import activation


def attention_preactivation(X: Array, W: Array) -> Array:
    """``A_W(X) = (X S_W Xᵀ − Tr(S_W) I_T) / D`` with ``S_W = W Wᵀ / √P`` (MODEL.md §1).

    Computed as ``(XW)(XW)ᵀ/(√P D)`` so that the ``D × D`` matrix ``S_W`` is never formed.
    """
    D, P = W.shape
    U = jnp.einsum("ntd,dp->ntp", X, W)
    scale = 1.0 / (jnp.sqrt(P) * D)
    gram = jnp.einsum("nap,nbp->nab", U, U) * scale
    trace = jnp.sum(W * W) * scale
    return gram - trace * jnp.eye(X.shape[1], dtype=X.dtype)


def lora_preactivation(X: Array, w: Array) -> Array:
    """``R_w(X) = ((Xw)(Xw)ᵀ − ‖w‖² I_T) / D`` (MODEL.md §1) for a vector ``w ∈ R^D``; for a matrix
    ``U ∈ R^{D×r}``, ``R_U(X) = ((XU)(XU)ᵀ − ‖U‖_F² I_T) / D`` (MODEL.md §8). A ``(D, 1)`` matrix gives the
    vector's ``R_w`` (to rounding in its derivatives: the vector form is kept for the rank-one numbers)."""
    D = X.shape[-1]
    if w.ndim == 2:
        u = jnp.einsum("ntd,dr->ntr", X, w)
        gram = jnp.einsum("nar,nbr->nab", u, u)
        return (gram - jnp.sum(w * w) * jnp.eye(X.shape[1], dtype=X.dtype)) / D
    u = jnp.einsum("ntd,d->nt", X, w)
    return (u[:, :, None] * u[:, None, :] - jnp.dot(w, w) * jnp.eye(X.shape[1], dtype=X.dtype)) / D


def token_gram(X: Array) -> Array:
    """``G = X Xᵀ / D`` per sequence, ``(n, T, T)``; ``G → I_T`` as ``D → ∞``."""
    return jnp.einsum("nad,nbd->nab", X, X) / X.shape[-1]


def output_sq_error(E: Array, G: Array) -> Array:
    """Per-sequence ``(1/D)‖E X‖_F² = Tr(E G Eᵀ)`` for attention-matrix errors ``E = σ(A) − B``.

    Exact at every ``D``: the labels are ``y = B X`` with a ``T × T`` matrix ``B``, so the output error
    of ``f(X) = σ(A)X`` is ``(σ(A) − B)X`` and only the token Gram ``G`` is needed.
    """
    return jnp.einsum("nab,nbc,nac->n", E, G, E)


def layer_output(X: Array, W: Array, sigma: str, beta: float = 1.0, w: Array | None = None) -> Array:
    """``f(X) = σ(A_W(X) + R_w(X)) X`` (``R_w`` omitted when ``w`` is None; ``w`` a vector or a ``D×r``
    matrix ``U``); shape ``(n, T, D)``."""
    A = attention_preactivation(X, W)
    if w is not None:
        A = A + lora_preactivation(X, w)
    return jnp.einsum("nab,nbd->nad", activation(A, sigma, beta), X)
