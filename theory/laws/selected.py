"""The selected law of the frozen pair (active fine-tuning; MODEL.md §3, §5.5, §7).

A fraction ``ρ`` of a fresh pool of ``ᾱ'D`` sequences is kept (``α' = ρᾱ'``): the fresh law conditioned on
the score ``s = ‖A_Ŵ‖_F`` lying in its lowest ``ρ`` quantile (by Monte Carlo, :func:`selected_pairs`; the score
of ``√β_W Ŵ`` is ``β_W s`` and ranks the same, so recalibration does not change the kept set).

Noise felt: ``Δ_eff(ρ, β_W) = Δ/2 + Q0 − M²/Q + ((M − β_W Q)²/Q)·c_T(ρ)``, with
``c_T(ρ) = E[G_ab² | ‖G‖_F ≤ its ρ-quantile]`` for a unit GOE-like ``G``: ``‖G‖_F² = 2χ²_k``, ``k = T(T+1)/2``,
so ``c_T(ρ) = F_{k+2}(F_k⁻¹(ρ))/ρ`` (``F_k`` the χ²_k CDF; ``E[X 1{X ≤ t}] = k F_{k+2}(t)``). ``c_T → 0`` as
``ρ → 0`` and ``= 1`` at ``ρ = 1``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from scipy import stats

from model.laws import goe_like, model_noise
from model.params import ParameterError, Params
from theory.laws.fresh import teacher_given
from theory.states import PretrainState


def c_T(T: int, rho: float) -> float:
    """``c_T(ρ) = E[G_ab² | ‖G‖_F in its lowest ρ fraction] = F_{k+2}(F_k⁻¹(ρ))/ρ``, ``k = T(T+1)/2`` (module doc)."""
    if not 0 < rho <= 1:
        raise ParameterError(f"rho = {rho} is out of range: allowed 0 < rho ≤ 1")
    if rho == 1:
        return 1.0
    k = T * (T + 1) / 2
    return float(stats.chi2.cdf(stats.chi2.ppf(rho, k), k + 2) / rho)


def selected_delta_eff(delta: float, pre: PretrainState, rho: float, T: int, beta_W: float = 1.0) -> float:
    """``Δ_eff(ρ, β_W) = Δ/2 + Q0 − M²/Q + ((M − β_W Q)²/Q)·c_T(ρ)`` on the kept sequences (module doc).

    From ``A0 − β_W A_Ŵ = (M/Q − β_W)A_Ŵ + √(Q0 − M²/Q)G`` with ``G`` independent of the score.
    """
    if pre.Q == 0:
        return delta / 2 + pre.Q0
    return delta / 2 + pre.residual + (pre.M - beta_W * pre.Q) ** 2 / pre.Q * c_T(T, rho)


def pool_size(n: int, rho: float) -> int:
    """Pool draws behind ``n`` kept samples: ``⌈n/ρ⌉``."""
    return int(math.ceil(n / rho - 1e-9))


def selected_pairs(params: Params, pre: PretrainState, beta_W: float, key, n: int, rho: float):
    """``n`` pairs ``(A, H)`` kept by active selection: draw ``⌈n/ρ⌉`` fresh ``A_Ŵ`` and keep the ``n`` of lowest
    ``s = ‖A_Ŵ‖_F``, then their ``A0`` (:func:`theory.laws.fresh.teacher_given`) and ``Z``
    (:func:`model.laws.model_noise`); ``A = β_W A_Ŵ``, ``H = A0 + √Δ Z``."""
    if not 0 < rho <= 1:
        raise ParameterError(f"active_rho = {rho} is out of range: allowed 0 < active_rho ≤ 1")
    T = params.T
    n_pool = pool_size(n, rho)
    k = jax.random.split(key, 3)
    A_s = math.sqrt(pre.Q) * goe_like(k[0], n_pool, T)
    score = jnp.sum(A_s**2, axis=(1, 2))  # s², same order as s
    keep = jnp.argsort(score)[:n]
    A_s = A_s[keep]
    A0 = teacher_given(pre, A_s, goe_like(k[1], n, T))
    Z = model_noise(k[2], n, T)
    return beta_W * A_s, A0 + math.sqrt(params.delta) * Z
