"""Replica-symmetric asymptotic theory of LoRA fine-tuning by ERM (MODEL.md §5.5; THEORY_NOTES §5.3).

Setting: frozen ``√β_W·Ŵ`` with pre-training order parameters ``(Q0, Q, M)`` (MODEL.md §4; ``β_W`` from
:func:`model.observables.recalibration`), rank-one LoRA ``w`` trained on ``N' = α'D`` sequences by

    min_w  Σ_ν (1/D)‖σ(β_W A_Ŵ + R_w)X_ν − y'_ν‖_F² + λ'‖w‖².

Fixed point ``(q, m, v) = prior_update(finetune_hats(q, m, v))``: the channel half-step of
:mod:`theory.channels.lora` on samples of the frozen pair ``(A, H)`` drawn from the law of the data the
fine-tuning sees (:func:`theory.laws.mixture.channel_samples`: fresh, a mixture with reused pre-training
sequences, or actively selected ones), then the ridge prior :func:`theory.priors.ridge.prior_update`.
Observables: ``q, m, v``, ``o_w = |m|/√(q q0)``, ``L_ft = E ℓ(χ̂; q)`` (data term / N'), ``delta_eff`` of the
data law, ``E_ft`` and ``E_frozen`` on fresh sequences (:func:`theory.channels.lora.fresh_errors`), and the
replica-symmetric stability of the fixed point (:mod:`theory.stages.rs_stability`). With selection the random
control (a random subset of the same size = the fresh channel at ``α' = ρᾱ'``) is solved too.

Solve: :func:`theory.fixed_point.phased_fixed_point`: the map with the prox started from ``ω`` only (a third
of the cost), then with every start; Anderson mixing, then plain damping, then the fixed point as a root of
``step(x) − x``.

Switch-off: above ``λ'_c(α')`` the stable fixed point is ``ŵ = 0``; it is detected before iterating, from
the map linearised at ``q → 0`` on the same channel samples (:mod:`theory.switch_off`), and returned as a
converged ``q = m = 0`` (``o_w`` NaN, ``diagnostics["status"] == "switched_off"``); every solve reports
``lam_prime_c``. ``recalibrate = 'error'`` searches ``β_W`` for the lowest ``E_ft``
(:func:`_solve_error_recalibrated`).

``m = 0`` is a fixed point by symmetry (``χ → −χ``); iteration starts informed (``m > 0``). Where the loss
has several fixed points, the one of lowest objective ``α'L_ft + λ'q`` among two informed starts is kept
(:func:`_solve_ground_state`); ``m`` is reported with its sign removed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from model.observables import delta_eff, lora_overlap, recalibration
from model.params import ParameterError, Params
from theory.channels.lora import ChannelSamples, error_draws, finetune_hats, fresh_errors
from theory.channels.prox import START_SCALES
from theory import progress
from theory.fixed_point import FixedPointResult, phased_fixed_point
from theory.laws.fresh import noise_law
from theory.laws.mixture import channel_samples
from theory.priors.ridge import prior_update
from theory.stages.rs_stability import JUMP_SAMPLES, prox_jump_fraction, rs_stability
from theory.states import FinetuneHats, FinetuneOverlaps, PretrainState
from theory.switch_off import ZeroCurvature, ZeroSolution, zero_curvature, zero_solution


@dataclass(frozen=True)
class FinetuneResult:
    """Fixed point and observables (MODEL.md §4 names; ``m ≥ 0``, the sign of ``±ŵ`` removed). ``delta_eff`` is
    the noise the fine-tuning data carry (mixture / selected law); ``E_ft``, ``E_frozen`` are on fresh sequences.
    ``reuse``, ``active_rho``: the data law solved; ``random_control``: with ``active_rho``, the random subset of
    the same size. ``n_steps``: map evaluations of both phases (one prox start, then all starts) and of the root
    fallback; ``residual``: the last phase's (or the root's ``max |G|``)."""

    q: float
    m: float
    v: float
    o_w: float
    E_ft: float
    L_ft: float
    E_frozen: float
    delta_eff: float
    q0: float
    beta_W: float
    hats: FinetuneHats | None
    converged: bool
    n_steps: int
    residual: float
    mc_sem: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    reuse: float = 0.0
    active_rho: float | None = None
    random_control: FinetuneResult | None = None


@dataclass(frozen=True)
class _Settings:
    """The numerical settings of one solve (the arguments of :func:`solve_finetune`)."""

    q0: float
    n_mc: int
    n_test: int
    key: int
    damping: float
    rtol: float
    atol: float
    max_steps: int
    n_iter: int
    anderson: int
    patience: int | None


def solve_finetune(
    params: Params,
    pre: Any,
    *,
    q0: float = 1.0,
    n_mc: int = 4000,
    n_test: int = 100_000,
    key: int = 0,
    init: FinetuneOverlaps | None = None,
    damping: float = 0.3,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 300,
    n_iter: int = 20,
    random_control: bool = True,
    anderson: int = 3,
    patience: int | None = 100,
) -> FinetuneResult:
    """Solve the fine-tuning fixed point over ``(q, m, v)`` (module doc) and evaluate the observables.

    Args:
        params: uses ``T, sigma, beta, delta, lam_prime, effective_alpha_prime, recalibrate, reuse, active_rho``.
        pre: pre-training order parameters ``(Q0, Q, M)`` (a :class:`theory.states.PretrainState`, e.g. measured
            by the simulator, or any object with those attributes) — enough for fresh and selected sequences;
            ``reuse > 0`` also needs the susceptibility ``V`` (a :class:`theory.stages.pretrain.PretrainResult` or
            a :class:`theory.states.PretrainState` with ``V``).
        q0: ``‖w*‖²/D`` (1 as ``D → ∞``; pass the measured value to compare with a finite-D run).
        n_mc: Monte-Carlo samples of the channel (fixed key ⇒ deterministic map).
        n_test: samples for ``E_ft``/``E_frozen`` on fresh sequences (softmax; linear is closed form).
        key: integer seed of the fixed keys.
        init: starting overlaps (default ``q = m = q0/2``, ``v = 1/(2λ' + α'T + 1)``: informed, ``m > 0``).
        damping, rtol, atol, max_steps: passed to :func:`theory.fixed_point.fixed_point`.
        n_iter: Newton iterations per start of the prox.
        anderson: Anderson memory of the fixed-point iteration (0: plain damping). The iteration runs in two
            phases (:func:`theory.fixed_point.phased_fixed_point`): first with the prox started from ``ω`` only
            (at most 40 steps), then, from that point (or from ``init`` if phase 1 did not converge), with all the
            starts of :func:`theory.channels.prox.prox_multistart` until the map is stationary again (usually 1–2
            steps). If the accelerated run fails, it is repeated with plain damping
            (``diagnostics["fallback"] = True``); if that fails too, the fixed point is solved as a root of
            ``step(x) − x`` (:func:`theory.fixed_point.root_fallback`; ``diagnostics["fallback"] = "root"``,
            ``diagnostics["root"]`` its record). A converged run reports the point where the map was last
            evaluated, with that evaluation's conjugates.
        random_control: with ``active_rho``, also solve the random subset of the same size (``random_control``).
        patience: phase 2 stops as ``"stalled"`` (not converged) when its residual has not halved in
            ``patience`` steps (:func:`theory.fixed_point.fixed_point`); a point without a reachable fixed point
            otherwise spends ``max_steps`` (twice, with the fallback). 60 stopped a slow but converging point
            (softmax T = 2, λ' = 0.003, converged in 95 steps); 100 did not.
    """
    if not (isinstance(n_mc, int) and n_mc >= 2):
        raise ParameterError(f"n_mc = {n_mc!r} is out of range: allowed an integer ≥ 2")
    if not (q0 > 0 and math.isfinite(q0)):
        raise ParameterError(f"q0 = {q0!r} is out of range: allowed 0 < q0 < inf")
    pre = PretrainState.of(pre)
    if params.reuse > 0 and not pre.has_susceptibility:
        raise ParameterError(
            f"reuse = {params.reuse} > 0 needs the pre-training susceptibility V (training pre-activations "
            "Â_train = prox_V(ω)): pass a PretrainResult or PretrainState(Q0, Q, M, V), not only (Q0, Q, M); "
            "allowed reuse = 0 with (Q0, Q, M) alone")
    cfg = _Settings(q0=q0, n_mc=n_mc, n_test=n_test, key=key, damping=damping, rtol=rtol, atol=atol,
                    max_steps=max_steps, n_iter=n_iter, anderson=anderson, patience=patience)
    if params.recalibrate == "error":
        return _solve_error_recalibrated(params, pre, cfg, init=init, random_control=random_control)
    res = _solve_ground_state(params, pre, cfg, fresh_only=False, init=init)
    if params.active_rho is not None and random_control:
        ctrl = _solve_ground_state(params, pre, cfg, fresh_only=True, init=init)
        res = dataclasses.replace(res, random_control=ctrl)
    return res


#: Search interval of ``recalibrate = 'error'``: ``β_W`` from ``ERROR_RECAL_BOUNDS[0]`` to
#: ``ERROR_RECAL_BOUNDS[1]·max(1, M/Q)`` (log scale).
ERROR_RECAL_BOUNDS = (0.05, 2.5)


def _solve_error_recalibrated(params: Params, pre: PretrainState, cfg: _Settings, *,
                              init: FinetuneOverlaps | None, random_control: bool) -> FinetuneResult:
    """``recalibrate = 'error'``: ``β_W = argmin E_ft(β_W)`` at fixed pre-training, by
    :func:`theory.optimize.minimize_scalar_robust` (a log grid, then bounded Brent; common random numbers), and
    the fixed point there. ``diagnostics["recalibration"]`` records the search; ``converged`` needs the search's
    refinement to have met its tolerance too."""
    from theory.optimize import minimize_scalar_robust

    solved: dict[float, FinetuneResult] = {}

    def e_ft(beta_W: float) -> float:
        r = _solve_ground_state(params.replace(recalibrate=beta_W), pre, cfg, fresh_only=False, init=init)
        solved[beta_W] = r
        return r.E_ft if r.converged else float("nan")

    hi = ERROR_RECAL_BOUNDS[1] * max(1.0, pre.shrink)
    search = minimize_scalar_robust(e_ft, (ERROR_RECAL_BOUNDS[0], hi), log=True, n_grid=7, xtol=1e-2)
    record = {"target": "error", "beta_W": search.x, "E_ft": search.fun, "n_evaluations": search.n_evaluations,
              "excluded": search.excluded, "unimodal": search.unimodal, "at_bound": search.at_bound,
              "converged": search.converged, "bounds": (ERROR_RECAL_BOUNDS[0], hi)}
    if not math.isfinite(search.x):
        first = next(iter(solved.values()))
        return dataclasses.replace(first, converged=False, diagnostics={**first.diagnostics, "recalibration": record})
    res = solved[search.x]
    res = dataclasses.replace(res, converged=res.converged and search.converged,
                              n_steps=sum(r.n_steps for r in solved.values()),
                              diagnostics={**res.diagnostics, "recalibration": record})
    if params.active_rho is not None and random_control:
        ctrl = _solve_ground_state(params.replace(recalibrate=search.x), pre, cfg, fresh_only=True, init=init)
        res = dataclasses.replace(res, random_control=ctrl)
    return res


#: ``q = m = INFORMED_RESTART·q0``: the second start of :func:`_solve_ground_state`.
INFORMED_RESTART = 0.9
#: A fixed point with ``o_w`` below this and ``q > UNINFORMED_Q·q0`` is on the uninformed branch (``ŵ`` fits
#: noise, ``m ≈ 0``); one with ``q ≤ UNINFORMED_Q·q0`` is ``ŵ = 0``, which is not challenged.
UNINFORMED_OW, UNINFORMED_Q = 0.5, 1e-6


def informed_start(params: Params, q0: float, fraction: float) -> FinetuneOverlaps:
    """Starting overlaps ``q = m = fraction·q0`` (``m > 0``: informed) and ``v = 1/(2λ' + α'T + 1)``."""
    v = 1.0 / (2 * params.lam_prime + params.effective_alpha_prime * params.T + 1.0)
    return FinetuneOverlaps(q=fraction * q0, m=fraction * q0, v=v)


def ground_state_energy(params: Params, r: FinetuneResult) -> float:
    """``e = α' L_ft + λ' q``: the fine-tuning objective per ``D`` at the fixed point, ``(1/D)[Σ_ν ℓ_ν + λ'‖ŵ‖²]``
    with ``N' = α'D`` (``α'`` the effective one: ``ρᾱ'`` with active selection)."""
    return params.effective_alpha_prime * r.L_ft + params.lam_prime * r.q


def _solve_ground_state(params: Params, pre: PretrainState, cfg: _Settings, *, fresh_only: bool,
                        init: FinetuneOverlaps | None) -> FinetuneResult:
    """:func:`_solve` from ``init`` (default: the informed start). Below ``λ'`` of order ``10⁻²`` and at small
    ``α'`` the quartic loss has, besides the informed fixed point, an uninformed one (``m ≈ 0``, ``q > 0``) that
    the default start can fall into (softmax, ``T = 3``, ``α' = 2``, ``λ' = 0.003``: ``o_w = 0.005``,
    ``e = 0.936``, against ``o_w = 0.943``, ``e = 0.701`` from ``q = m = 0.9 q0``). When the first solve ends
    there, or does not converge, it is repeated from ``q = m = INFORMED_RESTART·q0`` and the converged fixed
    point of lower :func:`ground_state_energy` is kept: the ERM's global minimum, which the simulator selects
    by keeping the lowest objective over its restarts. ``diagnostics["ground_state"]`` records the energies."""
    first = _solve(params, pre, cfg, fresh_only=fresh_only, init=init)
    q0 = cfg.q0
    uninformed = first.converged and first.q > UNINFORMED_Q * q0 and not (first.o_w >= UNINFORMED_OW)
    if init is not None or math.isinf(params.lam_prime) or not (uninformed or not first.converged):
        return first
    start = informed_start(params, q0, INFORMED_RESTART)
    second = _solve(params, pre, cfg, fresh_only=fresh_only, init=start)
    runs = [r for r in (first, second) if r.converged]
    best = min(runs, key=lambda r: ground_state_energy(params, r)) if runs else first
    record = {"energies": [ground_state_energy(params, r) if r.converged else float("nan") for r in (first, second)],
              "o_w": [first.o_w, second.o_w], "selected": "first" if best is first else "restart"}
    return dataclasses.replace(best, n_steps=first.n_steps + second.n_steps,
                               diagnostics={**best.diagnostics, "ground_state": record})


def _solve(params: Params, pre: PretrainState, cfg: _Settings, *, fresh_only: bool,
           init: FinetuneOverlaps | None) -> FinetuneResult:
    """One fixed point from ``init`` (default: the informed start ``q = m = q0/2``) and its observables."""
    bW = recalibration(params.recalibrate, pre.M, pre.Q)
    law = noise_law(params, pre, bW)
    errors = partial(fresh_errors, params, q0=cfg.q0, law=law, d=delta_eff(params.delta, pre.Q0, pre.Q, pre.M, bW),
                     # linear σ: closed form, no draws (2T + T(T+1) dimensions × n_test would be built)
                     draws=None if params.sigma == "linear" else error_draws(cfg.key, 1, cfg.n_test, params.T))
    mode = dict(reuse=0.0 if fresh_only else float(params.reuse), active_rho=None if fresh_only else params.active_rho)
    samples, info = channel_samples(params, pre, bW, cfg.n_mc, cfg.key, fresh_only=fresh_only)
    extra = {k: v for k, v in info.items() if k != "noise_law"}
    nan = float("nan")

    if math.isinf(params.lam_prime):
        E_ft, E_fr, s1, s0 = errors(0.0, 0.0)
        return FinetuneResult(q=0.0, m=0.0, v=0.0, o_w=nan, E_ft=E_ft, L_ft=nan, E_frozen=E_fr,
                              delta_eff=info["delta_eff"], q0=cfg.q0, beta_W=bW, hats=None, converged=True,
                              n_steps=0, residual=0.0, mc_sem={"E_ft": s1, "E_frozen": s0},
                              diagnostics={"reason": "lam_prime = inf: w = 0", **extra}, **mode)

    curv = zero_curvature(params, samples, cfg.q0)
    zero = zero_solution(curv, params)
    extra.update(lam_prime_c=zero.threshold.lam_prime_c, switch_off_mechanism=zero.threshold.mechanism)
    if zero.stable:
        return _switched_off(params, curv, zero, errors, info, bW, cfg, extra, mode)

    lora = _LoraMap(params, samples, cfg)
    if params.lam_prime >= NEAR_SWITCH_OFF * zero.threshold.lam_prime_c and math.isfinite(zero.v):
        flow = _zero_flow(lora, zero.v, cfg.q0)
        extra["zero_flow_growth"] = flow
        if flow < 1.0:
            return _switched_off(params, curv, zero, errors, info, bW, cfg, extra, mode, by_map=True)
    run = phased_fixed_point(lora.step(START_SCALES[:1]), lora.step(START_SCALES),
                             init or informed_start(params, cfg.q0, 0.5), verify=lora.verify,
                             residual=lora.residual, root_starts=lora.root_starts, from_root=lora.from_root,
                             damping=cfg.damping, rtol=cfg.rtol, atol=cfg.atol, max_steps=cfg.max_steps,
                             anderson=cfg.anderson, patience=cfg.patience)
    ov, hats, sem, diag = run.payload
    ok = run.converged
    if ok:
        diag.update(_rs_diagnostics(params, pre, bW, ov, samples, sem, diag, cfg, fresh_only=fresh_only))
    q, m = (ov.q, ov.m) if ok else (nan, nan)
    E_ft, E_fr, s1, s0 = errors(q, m) if ok else (nan,) * 4
    L_ft = diag.pop("L_ft", nan)
    sem.update({"E_ft": s1, "E_frozen": s0})
    diag.update({"status": run.status, "fallback": run.fallback, "root": run.root,
                 "n_steps_one_start": run.cheap.n_steps, "noise_law": law, "n_mc": cfg.n_mc, "n_test": cfg.n_test,
                 "key": cfg.key, **extra})
    # (m, m̂) → (−m, −m̂) maps a fixed point to an equivalent one (±w); m is reported with its sign removed,
    # as the simulation reports it.
    return FinetuneResult(q=q, m=abs(m), v=ov.v, o_w=lora_overlap(m, q, cfg.q0), E_ft=E_ft, L_ft=L_ft, E_frozen=E_fr,
                          delta_eff=info["delta_eff"], q0=cfg.q0, beta_W=bW, hats=hats, converged=ok,
                          n_steps=run.n_steps, residual=run.residual, mc_sem=sem, diagnostics=diag, **mode)


#: Below ``λ'_c`` by less than this factor, the Monte-Carlo map itself is asked whether it flows to ``ŵ = 0``
#: (:func:`_zero_flow`): its own threshold differs from the linearised one by the Monte-Carlo error of either
#: (measured, linear σ, α' = 3, n_mc = 4000: λ'_c = 91.8, 88.3, 88.4 over three keys, 89.6 with 16000 draws,
#: while the map of key 0 decays to q = 0 at λ' = 90 by a factor ≈ 0.96 a step — an iteration that stalled).
NEAR_SWITCH_OFF = 0.9
#: Steps of :func:`_zero_flow`: the growth is measured over the second half.
ZERO_FLOW_STEPS = 40


def _zero_flow(lora: "_LoraMap", v: float, q0: float) -> float:
    """The Monte-Carlo map's own growth rate of ``q`` per step near ``q = m = 0``: the undamped map (prox from
    ``ω``) iterated ``ZERO_FLOW_STEPS`` times from ``q = 1e-8 q0``, ``m = ½√(q q0)``, ``v`` the zero solution's;
    ``(q_end/q_mid)^(2/steps)``. Below 1 the map flows to ``ŵ = 0``."""
    step = lora.step(START_SCALES[:1])
    x = FinetuneOverlaps(q=1e-8 * q0, m=0.5e-4 * q0, v=v)
    qs = []
    for _ in range(ZERO_FLOW_STEPS):
        x = step(x)
        if not (x.q > 0 and math.isfinite(x.q)):
            return float("nan")
        qs.append(x.q)
    half = ZERO_FLOW_STEPS // 2
    return (qs[-1] / qs[half - 1]) ** (1.0 / (ZERO_FLOW_STEPS - half))


def _switched_off(params: Params, curv: ZeroCurvature, zero: ZeroSolution, errors, info: dict[str, Any],
                  beta_W: float, cfg: _Settings, extra: dict[str, Any], mode: dict[str, Any], *,
                  by_map: bool = False) -> FinetuneResult:
    """The converged zero solution ``q = m = 0`` (``λ' > λ'_c``, :mod:`theory.switch_off`, or, within
    ``NEAR_SWITCH_OFF`` below it, where the Monte-Carlo map itself flows to zero: ``by_map``): ``o_w`` undefined
    (NaN), ``E_ft = E_frozen``, ``L_ft = E ℓ(0; 0)``, ``v`` from the linearised susceptibility equation, and the
    replicon ``b(v) = α'v²E‖G_v‖_F²``."""
    ap, v = params.effective_alpha_prime, zero.v
    E_ft, E_fr, s1, s0 = errors(0.0, 0.0)
    per = ap * v * v * np.sum((curv.h / (1.0 + v * curv.h)) ** 2, axis=1)
    rep_sem = float(np.std(per, ddof=1) / math.sqrt(len(per)))
    hats = FinetuneHats(q_hat=0.0, m_hat=0.0, v_hat=-ap * curv.tr_g(v), lam_eff=2 * params.lam_prime - ap * curv.tr_h0)
    diag = {"status": "switched_off_map" if by_map else "switched_off", "fallback": False, "root": None, "n_steps_one_start": 0,
            "reason": (f"lam_prime = {params.lam_prime:g} < lam_prime_c = {zero.threshold.lam_prime_c:.6g} by less "
                       "than the Monte-Carlo error, and the map flows to w = 0" if by_map else
                       f"lam_prime = {params.lam_prime:g} > lam_prime_c = {zero.threshold.lam_prime_c:.6g}: "
                       "w = 0 is the stable fixed point"), "v_c": zero.threshold.v_c, "growth_m": zero.growth_m,
            "growth_q": zero.growth_q, "replicon": zero.growth_q, "replicon_sem": rep_sem, "prox_jump_frac": 0.0,
            "rs_stable": rs_stability(zero.growth_q, rep_sem, 0.0), "n_mc": cfg.n_mc, "n_test": cfg.n_test,
            "key": cfg.key, **extra}
    return FinetuneResult(q=0.0, m=0.0, v=v, o_w=float("nan"), E_ft=E_ft, L_ft=curv.ell0, E_frozen=E_fr,
                          delta_eff=info["delta_eff"], q0=cfg.q0, beta_W=beta_W, hats=hats, converged=True,
                          n_steps=0, residual=0.0, mc_sem={"E_ft": s1, "E_frozen": s0}, diagnostics=diag, **mode)


def _rs_diagnostics(params: Params, pre: PretrainState, beta_W: float, ov: FinetuneOverlaps,
                    samples: ChannelSamples, sem: dict[str, float], diag: dict[str, Any], cfg: _Settings, *,
                    fresh_only: bool) -> dict[str, Any]:
    """``replicon_sem``, ``prox_jump_frac`` and ``rs_stable`` of a converged fixed point
    (:func:`theory.stages.rs_stability.rs_stability`). A jump needs two coexisting minima: where no sample has
    them, the probe is skipped; it runs on at least ``JUMP_SAMPLES`` draws of the same law (the rare jumps need
    them), the channel's own when it has as many."""
    jumps = 0.0
    if diag["prox_multimodal_frac"] > 0:
        probe = samples if cfg.n_mc >= JUMP_SAMPLES else channel_samples(
            params, pre, beta_W, JUMP_SAMPLES, cfg.key, fresh_only=fresh_only)[0]
        jumps = prox_jump_fraction(params, ov, probe, cfg.q0, cfg.n_iter, cfg.key)
    return dict(replicon_sem=sem["replicon"], prox_jump_frac=jumps,
                rs_stable=rs_stability(diag["replicon"], sem["replicon"], jumps))


def _relative_residual(x: FinetuneOverlaps, y: FinetuneOverlaps, rtol: float, atol: float) -> float:
    """``max_i |y_i − x_i| / (atol + rtol |x_i|)`` over ``(q, m, v)``: the stopping measure of the iteration."""
    return max(abs(b - a) / (atol + rtol * abs(a)) for a, b in ((x.q, y.q), (x.m, y.m), (x.v, y.v)))


def map_residual(full_map, q0: float):
    """``G(x) = prior_update(hats(x)) − x`` over ``x = (q, m, v)`` for :func:`theory.fixed_point.root_fallback`,
    with ``full_map: FinetuneOverlaps -> (hats, sem, diag)`` (:func:`theory.channels.lora.finetune_hats` with
    every prox start). ``G`` is undefined (``None``) unless ``q, v > 0`` and ``λ_eff + v̂ > 0``."""

    def residual(x: np.ndarray) -> tuple[np.ndarray | None, Any]:
        q, m, v = (float(a) for a in x)
        if not (q > 0 and v > 0 and math.isfinite(m)):
            return None, None
        out = full_map(FinetuneOverlaps(q, m, v))
        hats = out[0]
        if not hats.lam_eff + hats.v_hat > 0:
            return None, out
        new = prior_update(hats, q0)
        return np.array([new.q - q, new.m - m, new.v - v]), out

    return residual


class _LoraMap:
    """The fine-tuning map ``(q, m, v) ↦ prior_update(finetune_hats(q, m, v))`` on fixed channel samples, and what
    :func:`theory.fixed_point.phased_fixed_point` asks of it. It remembers the last evaluation of the full map
    (every prox start; the check of a converged run reuses it) and the full-map point of smallest residual
    (where the root fallback starts)."""

    def __init__(self, params: Params, samples: ChannelSamples, cfg: _Settings):
        self.params, self.samples, self.cfg = params, samples, cfg
        self.last_full: tuple[FinetuneOverlaps, Any] | None = None
        self.best: tuple[float, FinetuneOverlaps | None] = (math.inf, None)
        self.residual = map_residual(self.hats, cfg.q0)

    def hats(self, ov: FinetuneOverlaps, scales: tuple[float, ...] = START_SCALES):
        """:func:`theory.channels.lora.finetune_hats` at ``ov`` with the prox started from ``scales``."""
        progress.tick("finetune", q=ov.q, m=ov.m, v=ov.v)
        return finetune_hats(self.params, ov, self.samples, self.cfg.q0, self.cfg.n_iter, scales)

    def step(self, scales: tuple[float, ...]):
        """The map with the prox started from ``s·ω``, ``s`` in ``scales``."""
        return partial(self._step, tuple(scales))

    def _step(self, scales: tuple[float, ...], ov: FinetuneOverlaps) -> FinetuneOverlaps:
        self.last_full = None
        if not (ov.q > 0 and ov.v > 0):
            return FinetuneOverlaps(q=float("nan"), m=float("nan"), v=float("nan"))
        q0 = self.cfg.q0
        m = min(max(ov.m, -math.sqrt(ov.q * q0)), math.sqrt(ov.q * q0))
        out = self.hats(FinetuneOverlaps(ov.q, m, ov.v), scales)
        hats = out[0]
        full = scales == tuple(START_SCALES) and m == ov.m
        if full:
            self.last_full = (ov, out)
        if not hats.lam_eff + hats.v_hat > 0:
            # The centring ridge can be negative; a too-large v overshoots into λ_eff + v̂ ≤ 0, which has
            # no fixed point (v > 0 needed). Shrink v and retry: a fixed point of this map satisfies the
            # equations, since there v is unchanged.
            return FinetuneOverlaps(q=ov.q, m=m, v=ov.v / 2)
        new = prior_update(hats, q0)
        if full:
            r = _relative_residual(ov, new, self.cfg.rtol, self.cfg.atol)
            if r < self.best[0]:
                self.best = (r, ov)
        return new

    def verify(self, fp: FixedPointResult[FinetuneOverlaps]) -> tuple[bool, str, tuple[Any, ...]]:
        """``(ok, status, (point, hats, sem, diag))`` of a run: converged, finite, and a true fixed point.

        The point reported is the one where the map was last evaluated, ``x_k`` with
        ``|step(x_k) − x_k| < tol``, so its conjugates are that evaluation's; the driver's ``value`` is the
        damped update ``x_{k+1}``, equally within the tolerance, and is evaluated afresh only when the last
        evaluation was not the full map there (e.g. the step shrank v)."""
        ov = fp.value
        if not (fp.converged and all(math.isfinite(x) for x in (ov.q, ov.m, ov.v))):
            return False, fp.status, (ov, None, {}, {})
        if self.last_full is not None:
            ov, (hats, sem, diag) = self.last_full
        else:
            hats, sem, diag = self.hats(ov)
        if not hats.lam_eff + hats.v_hat > 0:
            # the step halves v while λ_eff + v̂ ≤ 0; v → 0 then stops moving below atol: not a fixed point
            return False, "no_fixed_point", (ov, None, {}, {})
        return True, fp.status, (ov, hats, sem, diag)

    def root_starts(self) -> list[np.ndarray]:
        """The full-map point of smallest residual and its mirror ``(q, −m, v)`` (the same fixed point in law,
        with other Monte-Carlo jumps near it); none before a full-map evaluation."""
        b = self.best[1]
        if b is None:
            return []
        return [np.array([b.q, b.m, b.v]), np.array([b.q, -b.m, b.v])]

    @staticmethod
    def from_root(x: np.ndarray, out: Any) -> tuple[Any, ...]:
        """The payload of an accepted root ``x`` with the map's output there."""
        return (FinetuneOverlaps(float(x[0]), float(x[1]), float(x[2])), *out)
