"""Active fine-tuning (MODEL.md §3): score a pool with the frozen student, keep the lowest scores."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def n_kept(rho: float, pool_size: int) -> int:
    """``⌊ρ · pool_size⌋`` (robust to the float rounding of ``ρ · pool_size`` at integers)."""
    if not 0 < rho <= 1:
        raise ValueError(f"rho = {rho} is out of range: allowed 0 < rho ≤ 1")
    if pool_size < 0:
        raise ValueError(f"pool_size = {pool_size} is out of range: allowed pool_size ≥ 0")
    return min(pool_size, math.floor(rho * pool_size + 1e-9))


def frozen_score(A_frozen: Array) -> Array:
    """``s(X) = ‖A_Ŵ(X)‖_F`` per sequence: uses no label."""
    return jnp.sqrt(jnp.sum(A_frozen**2, axis=(-2, -1)))


def select_lowest(scores: Array, n_keep: int) -> np.ndarray:
    """Indices of the ``n_keep`` lowest scores (ties broken by position), in increasing score order."""
    if not 0 <= n_keep <= len(scores):
        raise ValueError(f"n_keep = {n_keep} is out of range: allowed 0 ≤ n_keep ≤ {len(scores)}")
    return np.argsort(np.asarray(scores), kind="stable")[:n_keep]


def select_random(key: Array, pool_size: int, n_keep: int) -> np.ndarray:
    """A uniformly random subset of size ``n_keep`` of ``range(pool_size)`` (the control of active selection)."""
    if not 0 <= n_keep <= pool_size:
        raise ValueError(f"n_keep = {n_keep} is out of range: allowed 0 ≤ n_keep ≤ {pool_size}")
    return np.asarray(jax.random.permutation(key, pool_size)[:n_keep])
