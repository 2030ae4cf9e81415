"""Replica-symmetric theory of ERM pre-training, linear and softmax ``σ`` (MODEL.md §5 items 1–4).

Objective ``Σ_μ (1/D)‖σ(A_W(X_μ))X_μ − y_μ‖_F² + λ‖W‖_F²`` with ``N = αD²`` sequences. In the
``S̄ = WWᵀ/√(PD)`` normalisation (THEORY_NOTES §1.1, §3) and divided by ``D²`` it reads
``(1/D²) Σ_μ ℓ(B_μ, A_μ) + (λ√κ/D) Tr S̄`` (``‖W‖_F² = D√κ Tr S̄``) with the per-sequence loss
``ℓ(B, A) = Σ_{a,b} (σ(A)_ab − B_ab)²`` over ordered entries, ``B = σ(A0 + √ΔZ)`` (``XXᵀ/D → I_T``): the
quadratic-network problem of Erba et al. with weight decay ``λ_q = λ√κ`` on ``Tr S̄``, ``S̄ ⪰ 0``
(rank ``≤ κD``), and a ``T × T`` channel.

Fixed point ``(Q, M, V) = prior_step(channel(Q, M, V))``:

* prior: :func:`theory.priors.denoiser.prior_step` with threshold ``2λ_q`` (free probability, ``D → ∞``);
* channel, linear σ, closed form: the ``T`` diagonal entries have ``c = 2`` and weight 1, the
  ``T(T−1)/2`` off-diagonal pairs ``c = 1`` and weight 2 (two ordered entries); both give the proximal
  denominator ``1 + 4V``, and the conjugates are those of ``T = 1`` with ``α_eff = α T(T+1)/2``
  (THEORY_NOTES §3.4, checked against simulation)::

      q̂ = 2α_eff (Q0 − 2M + Q + Δ/2)/(V + 1/4)²,   m̂ = σ̂ = 2α_eff/(V + 1/4);

  observables ``E_pre = T(T+1)(Q0 − 2M + Q + Δ/2)``, ``L_pre = E_pre/(1 + 4V)²``;
* channel, softmax σ: the Monte-Carlo ``T × T`` proximal channel of :mod:`theory.channels.pretrain`
  (the same recipe, which reproduces the closed form above for linear σ); ``E_pre`` is the fresh-sequence
  expectation :func:`theory.channels.pretrain.fresh_test_error`, ``L_pre = E ℓ(B, Â)`` at the prox.

``Q0 = 1 + κ0`` unless given (a simulation's measured ``Q0`` may be passed; the prior's teacher spectrum
stays the ``κ0`` Wishart law). Softmax solve: Anderson-accelerated iteration of the map within the
admissible set (:func:`theory.fixed_point.anderson_approach`, cheap), then the damped
:func:`theory.fixed_point.fixed_point` from there, whose verdict is the one reported.

Monte-Carlo error of the softmax fixed point. The conjugates are averages over ``n_mc`` fixed draws, and
the fixed point carries their error into ``(Q, M, V)`` (at the figure-1 point ``δQ/Q ≈ 1.6 δm̂/m̂ +
0.8 δq̂/q̂ − 1.5 δσ̂/σ̂``). Scrambled Sobol' draws and the derivative form of ``m̂`` bring the spread of
the solved ``Q`` over independent draw sets from 2.0 % (i.i.d. draws, Stein ``m̂``, n = 4096) to 0.2 %
(``benchmarks/bench_channel_precision.py``). ``replicas = R`` solves ``R`` independent draw sets and
reports their mean with its standard error: the error bar of the theory itself, which a comparison
with simulations must include.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np

from model.params import ParameterError, Params
from model.stats import mean_sem
from theory.channels.pretrain import ChannelDraws, channel, fresh_test_error
from theory.fixed_point import anderson_approach, fixed_point
from theory import progress
from theory.priors.denoiser import prior_step
from theory.states import PretrainHats, PretrainOverlaps

DEFAULT_N_MC = {2: 2048, 3: 2048}
#: Steps without halving of the residual after which the Monte-Carlo fixed point stops as "stalled" (damping 0.5:
#: a converging iteration with a map eigenvalue below 0.986 halves its residual within 200 steps).
MC_PATIENCE = 200
N_TEST = 32768


@dataclass(frozen=True)
class PretrainResult:
    """Fixed point and observables of pre-training (MODEL.md names; ``V`` is the susceptibility).

    Softmax only (defaults otherwise): ``E_pre_sem``/``L_pre_sem`` are Monte-Carlo standard errors at the
    fixed point (fixed order parameters), ``hats_sem`` those of the conjugates, ``prox`` the prox
    diagnostics (fractions of samples ``converged``/``multimodal``/``ambiguous``, the separate
    estimators ``m_hat_stein``/``m_hat_derivative``/``sigma_hat_stein``), ``n_mc`` the channel draws,
    ``n_map`` the number of channel evaluations of the whole solve. With ``replicas = R ≥ 2`` the fixed
    point is solved for ``R`` independent draw sets and every reported number is their mean;
    ``replica_sem`` then holds the standard errors of ``Q, M, V, E_pre, L_pre, trace`` over the replicas
    (the whole Monte-Carlo error of the theory, propagated through the fixed point), and
    ``E_pre_sem``/``L_pre_sem`` are those.
    """

    Q0: float
    Q: float
    M: float
    V: float
    E_pre: float
    L_pre: float
    trace: float
    hats: PretrainHats
    converged: bool
    n_steps: int
    residual: float
    status: str
    E_pre_sem: float = 0.0
    L_pre_sem: float = 0.0
    hats_sem: dict = field(default_factory=dict)
    prox: dict = field(default_factory=dict)
    n_mc: int = 0
    n_map: int = 0
    replicas: int = 1
    replica_sem: dict = field(default_factory=dict)

    @property
    def overlaps(self) -> PretrainOverlaps:
        """``(Q, M, V)``: a warm start for a neighbouring point (``solve_pretrain(..., init=r.overlaps)``)."""
        return PretrainOverlaps(Q=self.Q, M=self.M, V=self.V)


def linear_channel(ov: PretrainOverlaps, *, T: int, alpha: float, delta: float, Q0: float) -> PretrainHats:
    """Channel half-step, linear σ: ``(Q, M, V) → (m̂, q̂, σ̂)`` with ``α_eff = αT(T+1)/2`` (module doc)."""
    a_eff = alpha * T * (T + 1) / 2
    denom = ov.V + 0.25
    return PretrainHats(m_hat=2 * a_eff / denom, q_hat=2 * a_eff * (Q0 - 2 * ov.M + ov.Q + delta / 2) / denom**2,
                        sigma_hat=2 * a_eff / denom)


def _check(params: Params, Q0: float, n_mc: int | None, replicas: int = 1) -> None:
    if params.lam <= 0:
        raise ParameterError(f"lam = {params.lam} is out of range for the theory: allowed lam > 0")
    if not (math.isfinite(Q0) and Q0 > 0):
        raise ParameterError(f"Q0 = {Q0} is out of range: allowed 0 < Q0 < ∞")
    if n_mc is not None and not (isinstance(n_mc, int) and n_mc >= 2):
        raise ParameterError(f"n_mc = {n_mc!r} is out of range: allowed an integer ≥ 2")
    if not (isinstance(replicas, int) and replicas >= 1):
        raise ParameterError(f"replicas = {replicas!r} is out of range: allowed an integer ≥ 1")


def _clip(ov: PretrainOverlaps, Q0: float) -> PretrainOverlaps:
    """Project onto the admissible set ``Q ≥ 0, V ≥ 0, M² ≤ Q Q0`` (Anderson extrapolation may leave it)."""
    Q = max(ov.Q, 0.0)
    bound = math.sqrt(Q * Q0)
    return PretrainOverlaps(Q=Q, M=min(max(ov.M, -bound), bound), V=max(ov.V, 0.0))


def _admissible(ov: PretrainOverlaps) -> bool:
    """An Anderson extrapolation is taken only with ``Q ≥ 0`` and ``V ≥ 0`` (``M`` is clipped afterwards)."""
    return ov.Q >= 0 and ov.V >= 0


def solve_pretrain(
    params: Params,
    *,
    init: PretrainOverlaps | None = None,
    damping: float = 0.5,
    rtol: float | None = None,
    atol: float = 1e-12,
    max_steps: int = 3000,
    Q0: float | None = None,
    n_mc: int | None = None,
    key: int = 0,
    n_test: int = N_TEST,
    accelerate: bool = True,
    mc_linear: bool = False,
    m_hat_form: str = "derivative",
    replicas: int = 1,
) -> PretrainResult:
    """Solve ``(Q, M, V) = prior_step(channel(Q, M, V))`` (module doc) and evaluate ``E_pre, L_pre``.

    Args:
        params: the parameter point (``sigma`` linear or softmax; ``lam > 0``).
        init: warm start ``(Q, M, V)`` (e.g. ``r.overlaps`` of a neighbouring point).
        damping, rtol, atol, max_steps: of the certifying damped iteration; ``rtol`` defaults to 1e-9
            (closed-form channel) or 1e-7 (Monte-Carlo channel, whose map is deterministic but only
            piecewise smooth where a sample's prox switches minimum).
        Q0: the teacher's ``Tr S̃0²/D`` (default ``1 + κ0``; a simulation's measured value may be passed).
        n_mc, key: channel draws (rounded up to a power of two: scrambled Sobol' points) and the
            integer seed of their scramble (softmax, or linear with ``mc_linear=True``).
        n_test: draws of the fresh-sequence ``E_pre`` (softmax).
        accelerate: Anderson pre-iterations before the certifying damped iteration (MC channel).
        mc_linear: use the Monte-Carlo channel for linear σ too (a check of its normalisations).
        m_hat_form: ``'derivative'`` (default) or ``'stein'`` estimator of ``m̂`` (MC channel;
            :mod:`theory.channels.pretrain` says why).
        replicas: ``R ≥ 1`` independent draw sets (scramble seeds ``key … key+R−1``), each solved to its
            own fixed point (the later ones warm-started from the first); the result is their mean with
            the spread as ``replica_sem`` (MC channel; see :class:`PretrainResult`).
    """
    Q0 = 1.0 + params.kappa0 if Q0 is None else float(Q0)
    _check(params, Q0, n_mc, replicas)
    T = params.T
    lam_q = params.lam * math.sqrt(params.kappa)
    start = init if init is not None else PretrainOverlaps(Q=0.5 * Q0, M=0.4 * Q0, V=0.5)

    def prior(hats: PretrainHats):
        return prior_step(hats, kappa0=params.kappa0, kappa=params.kappa, lam=lam_q)

    if params.sigma == "linear" and not mc_linear:
        def step(ov: PretrainOverlaps) -> PretrainOverlaps:
            progress.tick("pretrain", Q=ov.Q, M=ov.M, V=ov.V)
            return prior(linear_channel(ov, T=T, alpha=params.alpha, delta=params.delta, Q0=Q0)).overlaps

        res = fixed_point(step, start, damping=damping, rtol=1e-9 if rtol is None else rtol, atol=atol,
                          max_steps=max_steps)
        ov = res.value
        hats = linear_channel(ov, T=T, alpha=params.alpha, delta=params.delta, Q0=Q0)
        err = Q0 - 2 * ov.M + ov.Q + params.delta / 2
        return PretrainResult(Q0=Q0, Q=ov.Q, M=ov.M, V=ov.V, E_pre=T * (T + 1) * err,
                              L_pre=T * (T + 1) * err / (1 + 4 * ov.V) ** 2, trace=prior(hats).trace, hats=hats,
                              converged=res.converged, n_steps=res.n_steps, residual=res.residual,
                              status=res.status)
    def solve_one(k: int, x0: PretrainOverlaps) -> PretrainResult:
        return _solve_mc(params, x0, prior, Q0=Q0, damping=damping, rtol=1e-7 if rtol is None else rtol,
                         atol=atol, max_steps=max_steps, n_mc=n_mc or DEFAULT_N_MC.get(T, 2048), key=k,
                         n_test=n_test, accelerate=accelerate, m_hat_form=m_hat_form)

    first = solve_one(key, start)
    if replicas == 1:
        return first
    runs = [first] + [solve_one(key + r, first.overlaps if first.converged else start) for r in range(1, replicas)]
    return _combine_replicas(runs)


_REPLICA_FIELDS = ("Q", "M", "V", "E_pre", "L_pre", "trace")


def _combine_replicas(runs: list[PretrainResult]) -> PretrainResult:
    """Mean of independent replica solutions, with their standard errors (``replica_sem``)."""
    R = len(runs)
    stats = {f: mean_sem([getattr(r, f) for r in runs]) for f in _REPLICA_FIELDS}
    mean = {f: m for f, (m, _) in stats.items()}
    sem = {f: se for f, (_, se) in stats.items()}
    hats = PretrainHats(*(float(np.mean([getattr(r.hats, h) for r in runs])) for h in ("m_hat", "q_hat", "sigma_hat")))
    prox = {k: float(np.mean([r.prox[k] for r in runs])) for k in runs[0].prox}
    bad = [r.status for r in runs if not r.converged]
    return PretrainResult(
        Q0=runs[0].Q0, **mean, hats=hats, converged=not bad, n_steps=sum(r.n_steps for r in runs),
        residual=max(r.residual for r in runs), status=bad[0] if bad else runs[0].status,
        E_pre_sem=sem["E_pre"], L_pre_sem=sem["L_pre"], hats_sem=runs[0].hats_sem, prox=prox,
        n_mc=runs[0].n_mc, n_map=sum(r.n_map for r in runs), replicas=R, replica_sem=sem)


def _solve_mc(params: Params, start: PretrainOverlaps, prior: Callable[[PretrainHats], Any], *, Q0: float,
              damping: float, rtol: float, atol: float, max_steps: int, n_mc: int, key: int, n_test: int,
              accelerate: bool, m_hat_form: str) -> PretrainResult:
    draws = ChannelDraws.make(params.T, n_mc, key)
    n_mc = len(draws)
    cache: dict[tuple[float, float, float], Any] = {}

    def chan(ov: PretrainOverlaps):
        k = (ov.Q, ov.M, ov.V)
        if k not in cache:
            progress.tick("pretrain", Q=ov.Q, M=ov.M, V=ov.V)
            cache[k] = channel(ov.Q, ov.M, ov.V, T=params.T, sigma=params.sigma, alpha=params.alpha,
                               delta=params.delta, Q0=Q0, beta=params.beta, draws=draws, m_hat_form=m_hat_form)
        return cache[k]

    def step(ov: PretrainOverlaps) -> PretrainOverlaps:
        return prior(chan(_clip(ov, Q0)).hats).overlaps

    x0 = anderson_approach(step, start, project=partial(_clip, Q0=Q0), admissible=_admissible) if accelerate \
        else start
    # a Monte-Carlo map whose prox switches minimum from sample to sample (large β: softmax β = 20 wanders at
    # the 1e-3 level around Q = 0.021) never meets rtol: stop it as "stalled" once its residual has not halved
    # in MC_PATIENCE steps, rather than after max_steps map evaluations (hours)
    res = fixed_point(step, x0, damping=damping, rtol=rtol, atol=atol, max_steps=max_steps, patience=MC_PATIENCE)
    ov = _clip(res.value, Q0)
    ch = chan(ov)
    E, E_se = fresh_test_error(ov.Q, ov.M, T=params.T, sigma=params.sigma, delta=params.delta, Q0=Q0,
                               beta=params.beta, n=n_test, key=key + 1)
    prox = {"converged": ch.frac_converged, "multimodal": ch.frac_multimodal, "ambiguous": ch.frac_ambiguous,
            "m_hat_stein": ch.m_hat_stein, "m_hat_derivative": ch.m_hat_derivative,
            "sigma_hat_stein": ch.sigma_hat_stein, "E_pre_channel": ch.E_pre}
    return PretrainResult(Q0=Q0, Q=ov.Q, M=ov.M, V=ov.V, E_pre=E, L_pre=ch.L_pre, trace=prior(ch.hats).trace,
                          hats=ch.hats, converged=res.converged, n_steps=res.n_steps, residual=res.residual,
                          status=res.status, E_pre_sem=E_se, L_pre_sem=ch.L_pre_sem, hats_sem=dict(ch.sem),
                          prox=prox, n_mc=n_mc, n_map=len(cache))
