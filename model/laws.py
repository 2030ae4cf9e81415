"""The laws of the model's random objects (MODEL.md §1–2), shared by the theory and the simulator.

- ``σ(A)``: the identity (linear) or the row-wise softmax of ``βA``;
- GOE-like ``T×T`` matrices ``(G + Gᵀ)/√2``: off-diagonal variance 1, diagonal variance 2 — the law of a
  pre-activation ``A_W(X)`` per unit of its order parameter (``c_e = 2`` on the diagonal, 1 off it);
- the label noise ``Z = (G + Gᵀ)/2``: ``Z_aa ~ N(0, 1)``, ``Z_ab = Z_ba ~ N(0, 1/2)``;
- coordinates of a symmetric ``T×T`` matrix: its ``K = T(T+1)/2`` upper-triangle entries ``e = (a ≤ b)``
  (row-major) with variance factors ``c_e``.

Every sampler takes its key first.
"""

from __future__ import annotations

import model.precision  # noqa: F401  (float64 JAX before any array)
import jax
import jax.numpy as jnp
import numpy as np

def activation(A, sigma: str, beta=1.0):
    """``σ(A)``: ``A`` itself (linear) or the row-wise softmax of ``βA`` (batched over leading axes)."""
    if sigma == "linear":
        return A
    if sigma == "softmax":
        return jax.nn.softmax(beta * A, axis=-1)
    raise ValueError(f"sigma = {sigma!r} is unknown: allowed 'softmax' or 'linear'")


def _shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


def goe_like(key, shape: int | tuple[int, ...], T: int):
    """GOE-like ``T×T`` matrices ``(G + Gᵀ)/√2``, ``G`` i.i.d. ``N(0, 1)``, of shape ``shape + (T, T)``:
    off-diagonal variance 1, diagonal variance 2."""
    G = jax.random.normal(key, (*_shape(shape), T, T))
    return (G + jnp.swapaxes(G, -1, -2)) / jnp.sqrt(2.0)


def model_noise(key, shape: int | tuple[int, ...], T: int):
    """The label noise ``Z = (G + Gᵀ)/2`` of MODEL.md §2, shape ``shape + (T, T)``:
    ``Z_aa ~ N(0, 1)``, ``Z_ab = Z_ba ~ N(0, 1/2)`` (a GOE-like matrix divided by ``√2``)."""
    G = jax.random.normal(key, (*_shape(shape), T, T))
    return 0.5 * (G + jnp.swapaxes(G, -1, -2))


def n_entries(T: int) -> int:
    """``K = T(T+1)/2``, the free entries of a symmetric ``T × T`` matrix."""
    return T * (T + 1) // 2


def variance_factors(T: int) -> np.ndarray:
    """``c_e`` for the upper-triangle entries ``e = (a ≤ b)``: 2 on the diagonal, 1 off it."""
    r, c = np.triu_indices(T)
    return np.where(r == c, 2.0, 1.0)


def to_matrix(v, T: int):
    """Symmetric ``T × T`` matrix from its upper-triangle entries ``v`` (shape ``(..., K)``)."""
    r, c = np.triu_indices(T)
    A = jnp.zeros(v.shape[:-1] + (T, T), dtype=v.dtype).at[..., r, c].set(v)
    return A + jnp.swapaxes(A, -1, -2) - A * jnp.eye(T, dtype=v.dtype)


def to_entries(A, T: int):
    """Upper-triangle entries ``A_e``, ``e = (a ≤ b)``, of ``(..., T, T)`` matrices."""
    r, c = np.triu_indices(T)
    return A[..., r, c]
