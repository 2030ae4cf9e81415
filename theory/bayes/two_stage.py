"""The two-stage Bayes-optimal fine-tuning baseline: the statistician conditions on the pre-training *data*, not
on the ERM weights ``Ŵ`` (MODEL.md §4 "Bayes-optimal counterparts", §5 item 6).

Two Bayes-optimal baselines of LoRA fine-tuning are reported, and they differ only in what is known about the
teacher's extensive part ``A0 = A_{W0}(X)`` on a fine-tuning (or test) sequence:

* ``E_ft_BO, q_BO`` (:func:`theory.bayes.finetune.solve_bayes_finetune` fed with the ERM's ``(Q0, Q, M)``):
  the frozen ``Ŵ`` is known. ``(A0, A_Ŵ)`` is GOE-like with covariance ``[[Q0, M], [M, Q]]``, so
  ``A0 | A_Ŵ ~ (M/Q)A_Ŵ + N(0, c_e(Q0 − M²/Q))`` and the effective noise is ``Δ_BO = Δ/2 + Q0 − M²/Q``.
* ``E_ft_BO2, q_BO2`` (this module): the pre-training data ``{(X_μ, y_μ)}`` themselves are known. The
  fine-tuning data are ``O(D)`` sequences against ``D²`` unknowns of ``S0``: they do not move the posterior of
  ``S0`` at leading order, so on a sequence ``X`` outside the pre-training set ``A0 | data`` is the Bayes
  posterior of pre-training's state evolution (THEORY_NOTES §2.1): Gaussian entries of mean ``ω_BO = A_{Ŝ_BO}(X)``
  (``Ŝ_BO`` the posterior mean, ``ω_BO ~ N(0, c_e Q_BO)``) and variance ``c_e(Q0 − Q_BO)``, ``Q_BO`` the
  Bayes-optimal overlap of :mod:`theory.bayes.pretrain` (``Q0 − Q_BO`` its MMSE). The fine-tuning channel is
  the one above with ``(M/Q)A_Ŵ → ω_BO`` and

      Δ_BO2 = Δ/2 + Q0 − Q_BO,

  i.e. the ERM-conditioned channel of a frozen network with ``Q = M = Q_BO`` (Nishimori: ``M²/Q = Q_BO``,
  ``M/Q = 1``), which is how it is solved.

Ordering (exact, any σ): ``Q0 − Q_BO`` is the smallest error ``(1/D)E‖Ŝ − S̄0‖_F²`` of any estimator built from the
pre-training data, and ``(M/Q)Ŝ_ERM`` is one with error ``Q0 − M²/Q``; so ``Δ_BO2 ≤ Δ_BO``. Moreover the
ERM-conditioned information is a garbling of the two-stage one: with ``r = (M²/Q)/Q_BO ≤ 1``,
``μ = r ω_BO + N(0, c_e(M²/Q)(1 − r))`` has exactly the joint law of ``((M/Q)A_Ŵ, A0)`` (covariance ``M²/Q``
with ``A0``, variance ``M²/Q``). The Bayes risk cannot grow with information, hence ``E_ft_BO2 ≤ E_ft_BO`` and
``q_BO2 ≥ q_BO`` (up to the Monte-Carlo error of each). Limits: ``α → 0`` gives ``Q_BO → κ0`` (the mean
``√κ0·I`` of ``S̄0`` is known a priori), so ``Δ_BO2 → Δ/2 + 1``; the two coincide iff ``M²/Q = Q_BO``, i.e. the
ERM, rescaled, is Bayes-optimal (as ``α → ∞`` both ``→ Δ/2`` where the ERM is consistent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.observables import BAYES_TWO_STAGE  # the observables q_BO2, E_ft_BO2
from model.params import ParameterError, Params
from theory.bayes.finetune import BayesFinetuneResult, delta_bo, solve_bayes_finetune, weak_recovery_threshold
from theory.bayes.pretrain import n_observed, solve_state
from theory.states import PretrainState

__all__ = ["BAYES_TWO_STAGE", "TwoStageState", "two_stage_state", "solve_bayes_two_stage",
           "bayes_alpha_prime_c_two_stage"]


@dataclass(frozen=True)
class TwoStageState:
    """What the two-stage baseline feeds the fine-tuning Bayes channel.

    Attributes:
        Q_BO: the Bayes-optimal pre-training overlap; ``mmse = Q0 − Q_BO``.
        state: the equivalent frozen network ``(Q0, Q = M = Q_BO)`` (``None`` when not converged).
        delta_BO2: ``Δ/2 + Q0 − Q_BO``.
        converged, status: of the pre-training state evolution (:func:`theory.bayes.pretrain.solve_state`).
    """

    Q_BO: float
    mmse: float
    state: PretrainState | None
    delta_BO2: float
    converged: bool
    status: str


def two_stage_state(params: Params, Q0: float | None = None) -> TwoStageState:
    """The Bayes-optimal pre-training at ``params`` as a frozen network with ``Q = M = Q_BO``. ``Q0``: the
    teacher's ``Q0`` the fine-tuning was fed (default ``1 + κ0``); ``Q_BO = Q0 − mmse``, so that ``Q0 − Q_BO`` is the
    pre-training MMSE whichever ``Q0`` the finite-size teacher has."""
    V, ok, _, status = solve_state(n_observed(params.T, params.sigma) * params.alpha, params.kappa0, params.delta)
    if not (ok and math.isfinite(V)):
        nan = float("nan")
        return TwoStageState(Q_BO=nan, mmse=nan, state=None, delta_BO2=nan, converged=False, status=status)
    Q0 = 1.0 + params.kappa0 if Q0 is None else float(Q0)
    Q_BO = max(Q0 - V, 0.0)
    state = PretrainState(Q0=Q0, Q=Q_BO, M=Q_BO)
    return TwoStageState(Q_BO=Q_BO, mmse=V, state=state, delta_BO2=delta_bo(params.delta, state), converged=True,
                         status=status)


def solve_bayes_two_stage(params: Params, Q0: float | None = None, **options) -> tuple[TwoStageState,
                                                                                          BayesFinetuneResult]:
    """The two-stage Bayes-optimal fine-tuning: :func:`theory.bayes.finetune.solve_bayes_finetune` on the frozen
    network of :func:`two_stage_state` (``options`` passed on). :class:`ParameterError` where the pre-training
    state evolution has no solution or the channel degenerates (``Δ_BO2 < 10⁻³``: ``Δ = 0`` above the
    pre-training's perfect-recovery ``α_c``)."""
    s = two_stage_state(params, Q0)
    if not s.converged:
        raise ParameterError(f"the Bayes-optimal pre-training state evolution has no solution ({s.status}): "
                             "no two-stage baseline")
    return s, solve_bayes_finetune(params, s.state, **options)


def bayes_alpha_prime_c_two_stage(params: Params, Q0: float | None = None, **options) -> tuple[float, float]:
    """The two-stage Bayes-optimal weak-recovery ``α'_c`` (:func:`theory.bayes.finetune.weak_recovery_threshold`
    with ``Δ_BO2``) and its Monte-Carlo error; at most the ERM-conditioned one (less noise, more information)."""
    s = two_stage_state(params, Q0)
    if not s.converged:
        raise ParameterError(f"the Bayes-optimal pre-training state evolution has no solution ({s.status})")
    return weak_recovery_threshold(params, s.state, **options)
