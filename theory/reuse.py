"""Laws of the frozen pair ``(A, H)`` that the fine-tuning channel sees (MODEL.md §3, §5.5; issue #6).

Per fine-tuning sequence the channel (:mod:`theory.finetune`) needs the frozen student part
``A = β_W A_Ŵ(X)`` and the label part ``H = A_{W0}(X) + √Δ Z`` of the same sequence. Three laws:

* **fresh** (``e = 0``): ``(A_Ŵ, A_{W0})`` GOE-like with off-diagonal covariance ``[[Q, M], [M, Q0]]``
  (diagonal twice it), ``Z`` independent (``Z_aa ~ N(0,1)``, ``Z_ab ~ N(0,1/2)``);
* **reused** (fraction ``e``): a pre-training sequence keeps its ``A_{W0}`` and its ``Z``, and the frozen
  model's pre-activation is its *training* pre-activation, the pre-training proximal map
  ``Â_train = prox(ω; y)`` with ``ω`` GOE-like of parameter ``Q``,
  ``A_{W0} = (M/Q)ω + √(Q0 − M²/Q)·G``, ``y = A_{W0} + √Δ Z`` (THEORY_NOTES §3.4). Linear σ, closed form:
  ``Â_train = (ω + 4V y)/(1 + 4V)`` entrywise (:func:`linear_training_preactivations`);
* **selected** (active fine-tuning, fraction ``ρ`` of a fresh pool): the fresh law conditioned on the
  score ``s = ‖A_Ŵ‖_F`` lying in its lowest ``ρ`` quantile (:func:`selected_pairs`, by Monte Carlo;
  the score of ``√β_W Ŵ`` is ``β_W s`` and ranks the same, so recalibration does not change the kept set).

Closed forms for the noise actually felt, ``Δ_eff`` = off-diagonal variance of ``H − A`` (the simulator's
definition, ``simulate.run.offdiag_residual_variance``):

* fresh:    ``Δ/2 + Q0 − 2β_W M + β_W² Q``;
* reused:   ``(1 − 4Va)²(Q0 + Δ/2) + a²Q − 2a(1 − 4Va)M`` with ``a = β_W/(1 + 4V)``; at ``β_W = 1``
  this is the training residual ``(Q0 − 2M + Q + Δ/2)/(1 + 4V)²`` (linear σ);
* selected: ``Δ/2 + Q0 − M²/Q + ((M − β_W Q)²/Q)·c_T(ρ)``, with ``c_T(ρ) = E[G_ab² | ‖G‖_F ≤ its ρ-quantile]``
  for a unit GOE-like ``G``: ``‖G‖_F² = 2χ²_k``, ``k = T(T+1)/2``, so ``c_T(ρ) = F_{k+2}(F_k⁻¹(ρ))/ρ``
  (``F_k`` the χ²_k CDF; ``E[X 1{X ≤ t}] = k F_{k+2}(t)``). ``c_T → 0`` as ``ρ → 0`` and ``= 1`` at ``ρ = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from scipy import stats  # noqa: E402

from lora_attn.params import ParameterError, Params  # noqa: E402
from theory.order_params import PretrainOrderParams  # noqa: E402


@dataclass(frozen=True)
class PretrainState(PretrainOrderParams):
    """``(Q0, Q, M)`` plus the pre-training susceptibility ``V`` (``Â_train = prox_V(ω)``): what the
    reused-sequence channel needs. Any object with attributes ``Q0, Q, M, V`` (e.g.
    :class:`theory.pretrain.PretrainResult`) can stand in for it."""

    V: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.V, (int, float)) and math.isfinite(self.V) and self.V >= 0):
            raise ParameterError(f"V = {self.V!r} is out of range: allowed a finite V ≥ 0")


def order_params_of(pre: Any) -> PretrainOrderParams:
    """The validated ``(Q0, Q, M)`` of ``pre`` (any object with those attributes)."""
    if isinstance(pre, PretrainOrderParams):
        return pre
    try:
        return PretrainOrderParams(Q0=float(pre.Q0), Q=float(pre.Q), M=float(pre.M))
    except AttributeError:
        raise ParameterError(f"pre = {pre!r}: expected pre-training order parameters with Q0, Q, M") from None


def susceptibility_of(pre: Any) -> float | None:
    """``V`` of ``pre`` when it carries a finite one, else ``None``."""
    V = getattr(pre, "V", None)
    if V is None:
        return None
    V = float(V)
    return V if math.isfinite(V) and V >= 0 else None


# ------------------------------------------------------------------------------------ GOE-like draws
def goe_like(key, n: int, T: int):
    """``n`` GOE-like ``T×T`` matrices: off-diagonal variance 1, diagonal variance 2."""
    U = jax.random.normal(key, (n, T, T))
    return (U + jnp.swapaxes(U, 1, 2)) / jnp.sqrt(2.0)


def model_noise(key, n: int, T: int):
    """The label noise ``Z`` of MODEL.md §2: ``Z_aa ~ N(0,1)``, ``Z_ab = Z_ba ~ N(0,1/2)`` (GOE-like/√2)."""
    return goe_like(key, n, T) / jnp.sqrt(2.0)


def _teacher_given(pre: PretrainOrderParams, A_student, G):
    """``A_{W0} = (M/Q)A + √(Q0 − M²/Q)·G``: the teacher's pre-activation given the student's ``A`` (GOE-like ``G``)."""
    return pre.shrink * A_student + math.sqrt(pre.residual) * G


# ------------------------------------------------------------------------------------- reused law
def linear_training_preactivations(params: Params, pre: Any, key, n: int):
    """Training pre-activations of linear-σ pre-training (THEORY_NOTES §3.4), ``n`` samples:

    ``ω`` GOE-like(``Q``), ``A0 = (M/Q)ω + √(Q0 − M²/Q)·G``, ``y = A0 + √Δ Z``,
    ``Â_train = (ω + 4V y)/(1 + 4V)``. Returns ``(Â_train, A0, Z)``, arrays ``(n, T, T)``.
    """
    V = susceptibility_of(pre)
    if V is None:
        raise ParameterError("reused sequences need the pre-training susceptibility V: pass a PretrainResult "
                             "or PretrainState(Q0, Q, M, V), not only (Q0, Q, M)")
    op = order_params_of(pre)
    T = params.T
    k = jax.random.split(key, 3)
    omega = math.sqrt(op.Q) * goe_like(k[0], n, T)
    A0 = _teacher_given(op, omega, goe_like(k[1], n, T))
    Z = model_noise(k[2], n, T)
    y = A0 + math.sqrt(params.delta) * Z
    return (omega + 4 * V * y) / (1 + 4 * V), A0, Z


def training_sampler(params: Params) -> Callable:
    """The sampler ``(params, pre, key, n) → (Â_train, A0, Z)`` of the training law.

    The shared ``theory.pretrain_channel.training_preactivations`` when it exists (it covers the σ its
    pre-training theory covers), else the linear closed form; softmax without the shared module raises.
    """
    try:
        from theory.pretrain_channel import training_preactivations  # type: ignore[import-not-found]
    except ImportError:
        if params.sigma == "linear":
            return linear_training_preactivations
        raise ParameterError("reuse > 0 with sigma = 'softmax' needs the softmax pre-training training law "
                             "(theory.pretrain_channel, issue #4), not available yet: allowed reuse = 0 for "
                             "softmax, or sigma = 'linear'") from None
    return training_preactivations


def reused_pairs(params: Params, pre: Any, beta_W: float, key, n: int, sampler: Callable | None = None):
    """``n`` reused-sequence pairs ``A = β_W Â_train``, ``H = A0 + √Δ Z`` (same sequence's ``A0, Z``)."""
    if susceptibility_of(pre) is None:
        raise ParameterError("reuse > 0 needs the pre-training susceptibility V: pass a PretrainResult "
                             "or PretrainState(Q0, Q, M, V), not only (Q0, Q, M)")
    sampler = sampler or training_sampler(params)
    A_tr, A0, Z = sampler(params, pre, key, n)
    A_tr, A0, Z = (jnp.asarray(x, dtype=jnp.float64) for x in (A_tr, A0, Z))
    if A_tr.shape != (n, params.T, params.T) or A0.shape != A_tr.shape or Z.shape != A_tr.shape:
        raise ValueError(f"training sampler returned shapes {A_tr.shape}, {A0.shape}, {Z.shape}; "
                         f"expected ({n}, {params.T}, {params.T})")
    return beta_W * A_tr, A0 + math.sqrt(params.delta) * Z


def reused_delta_eff_linear(delta: float, pre: Any, beta_W: float = 1.0) -> float:
    """Linear σ: off-diagonal variance of ``H − β_W Â_train`` on a reused sequence,
    ``(1 − 4Va)²(Q0 + Δ/2) + a²Q − 2a(1 − 4Va)M``, ``a = β_W/(1 + 4V)`` (module doc)."""
    V = susceptibility_of(pre)
    if V is None:
        raise ParameterError("the reused-sequence Δ_eff needs the pre-training susceptibility V")
    op = order_params_of(pre)
    a = beta_W / (1 + 4 * V)
    b = 1 - 4 * V * a
    return b * b * (op.Q0 + delta / 2) + a * a * op.Q - 2 * a * b * op.M


# ----------------------------------------------------------------------------------- selected law
def c_T(T: int, rho: float) -> float:
    """``c_T(ρ) = E[G_ab² | ‖G‖_F in its lowest ρ fraction] = F_{k+2}(F_k⁻¹(ρ))/ρ``, ``k = T(T+1)/2`` (module doc)."""
    if not 0 < rho <= 1:
        raise ParameterError(f"rho = {rho} is out of range: allowed 0 < rho ≤ 1")
    if rho == 1:
        return 1.0
    k = T * (T + 1) / 2
    return float(stats.chi2.cdf(stats.chi2.ppf(rho, k), k + 2) / rho)


def selected_delta_eff(delta: float, pre: Any, rho: float, T: int, beta_W: float = 1.0) -> float:
    """``Δ_eff(ρ, β_W) = Δ/2 + Q0 − M²/Q + ((M − β_W Q)²/Q)·c_T(ρ)`` on the kept sequences (module doc).

    From ``A0 − β_W A_Ŵ = (M/Q − β_W)A_Ŵ + √(Q0 − M²/Q)G`` with ``G`` independent of the score.
    """
    op = order_params_of(pre)
    if op.Q == 0:
        return delta / 2 + op.Q0
    return delta / 2 + op.residual + (op.M - beta_W * op.Q) ** 2 / op.Q * c_T(T, rho)


def pool_size(n: int, rho: float) -> int:
    """Pool draws behind ``n`` kept samples: ``⌈n/ρ⌉``."""
    return int(math.ceil(n / rho - 1e-9))


def selected_pairs(params: Params, pre: Any, beta_W: float, key, n: int, rho: float):
    """``n`` pairs ``(A, H)`` kept by active selection: draw ``⌈n/ρ⌉`` fresh triples ``(A_Ŵ, A0, Z)``
    (fresh law, module doc), keep the ``n`` lowest ``s = ‖A_Ŵ‖_F``; ``A = β_W A_Ŵ``, ``H = A0 + √Δ Z``."""
    if not 0 < rho <= 1:
        raise ParameterError(f"active_rho = {rho} is out of range: allowed 0 < active_rho ≤ 1")
    op = order_params_of(pre)
    T = params.T
    n_pool = pool_size(n, rho)
    k = jax.random.split(key, 3)
    A_s = math.sqrt(op.Q) * goe_like(k[0], n_pool, T)
    score = jnp.sum(A_s**2, axis=(1, 2))  # s², same order as s
    keep = jnp.argsort(score)[:n]
    A_s = A_s[keep]
    A0 = _teacher_given(op, A_s, goe_like(k[1], n, T))
    Z = model_noise(k[2], n, T)
    return beta_W * A_s, A0 + math.sqrt(params.delta) * Z


def offdiag_mean_square(A, H) -> tuple[float, float]:
    """Monte-Carlo ``Δ_eff``: mean (and standard error) over samples of the mean square of the
    off-diagonal entries of ``H − A`` (``simulate.run.offdiag_residual_variance``)."""
    R = jnp.asarray(H) - jnp.asarray(A)
    T = R.shape[-1]
    if T == 1:
        per = R[:, 0, 0] ** 2 / 2
    else:
        iu = jnp.triu_indices(T, k=1)
        per = jnp.mean(R[:, iu[0], iu[1]] ** 2, axis=1)
    n = per.shape[0]
    return float(jnp.mean(per)), float(jnp.std(per, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
