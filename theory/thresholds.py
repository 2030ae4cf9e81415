"""Thresholds of LoRA fine-tuning: where the LoRA switches off, from how much data it learns, where the
replica-symmetric theory stops being exact, where reused and fresh sequences cross (MODEL.md §5).

* :func:`lam_prime_c`: the ridge ``λ'_c(α')`` above which ``ŵ = 0`` (:mod:`theory.switch_off`, the fine-tuning
  map linearised at ``q → 0``, on the channel samples the solver uses).
* :func:`alpha_prime_c`: the ERM weak-recovery ratio ``α'_c(λ')``, the inverse of ``λ'_c(α')``: below it the
  LoRA trained with ridge ``λ'`` stays at ``ŵ = 0``.
* :func:`bayes_alpha_prime_c`: the Bayes-optimal weak-recovery ``α'_c = 1/E_Y‖E[χχᵀ − I | Y]‖_F²``
  (:func:`theory.bayes.finetune.weak_recovery_threshold`), conditioning on ``Ŵ``; :func:`thresholds` adds the
  two-stage one, conditioning on the pre-training data (:mod:`theory.bayes.two_stage`).
* :func:`rs_boundary`: where the fine-tuning fixed point becomes replica-symmetric stable
  (``diagnostics["rs_stable"]``: replicon below 1 and no prox jumps, :mod:`theory.stages.rs_stability`), by
  bisection of :func:`theory.solve` along ``α'`` or ``λ'``.
* :func:`mismatch_crossing`: ``λ'_×`` where reused (``e > 0``, default 1) and fresh (``e = 0``) sequences give the
  same ``E_ft`` (a grid, then Brent's root finder on the first sign change; points where both are switched off
  are excluded).
* :func:`large_alpha_law`: linear σ, ``E_ft ≈ T(T+1)Δ_eff + 2Δ_eff/α'`` as ``α' → ∞`` (derivation in the
  docstring; checked against the solver in the tests).

:func:`thresholds` gathers them into a :class:`Thresholds` (``lora-attn thresholds``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import brentq

import theory
from model.observables import recalibration
from model.params import ParameterError, Params
from theory.laws.mixture import channel_samples
from theory.states import PretrainState
from theory.switch_off import SwitchOff, ZeroCurvature, switch_off_threshold, zero_curvature


def _pretrain_state(params: Params, pre: Any) -> PretrainState:
    if pre is not None:
        return PretrainState.of(pre)
    r = theory.solve(params, stage="pretrain", bayes=False)
    if not r.converged:
        raise ParameterError("the pre-training fixed point did not converge: no thresholds")
    o = r.observables
    return PretrainState(Q0=o["Q0"], Q=o["Q"], M=o["M"], V=o.get("V"))


def curvature(params: Params, pre: Any = None, *, q0: float = 1.0, n_mc: int = 4000, key: int = 0,
              beta_W: float | None = None) -> ZeroCurvature:
    """:class:`theory.switch_off.ZeroCurvature` on the fine-tuning channel's samples at ``params`` (the same
    draws as :func:`theory.solve` with ``n_mc``, ``key``). ``beta_W``: the rescaling (default from
    ``params.recalibrate``; ``'error'`` needs the number: pass it)."""
    pre = _pretrain_state(params, pre)
    bW = recalibration(params.recalibrate, pre.M, pre.Q) if beta_W is None else float(beta_W)
    samples, _ = channel_samples(params, pre, bW, n_mc, key)
    return zero_curvature(params, samples, q0)


def lam_prime_c(params: Params, pre: Any = None, *, alpha_prime: float | None = None, **kw: Any) -> SwitchOff:
    """``λ'_c`` at ``α'`` (default ``params.effective_alpha_prime``): :func:`theory.switch_off.switch_off_threshold`."""
    curv = kw.pop("curv", None) or curvature(params, pre, **kw)
    return switch_off_threshold(curv, params.effective_alpha_prime if alpha_prime is None else alpha_prime)


def alpha_prime_c(params: Params, pre: Any = None, *, lam_prime: float | None = None,
                  bracket: tuple[float, float] = (1e-3, 1e4), **kw: Any) -> float:
    """The ERM weak-recovery ratio: the ``α'`` with ``λ'_c(α') = λ'`` (default ``params.lam_prime``); the LoRA is
    off (``ŵ = 0``) below it. 0 when ``λ'_c(α') > λ'`` over the whole ``bracket`` (the LoRA is on at every
    ``α'``: ``λ'_c`` does not fall below ``−min h/2`` as ``α' → 0``, the sequences whose loss is concave along
    their own tokens), NaN when ``λ'_c(α') < λ'`` over all of it."""
    curv = kw.pop("curv", None) or curvature(params, pre, **kw)
    lp = float(params.lam_prime if lam_prime is None else lam_prime)

    def gap(log_a: float) -> float:
        return switch_off_threshold(curv, math.exp(log_a)).lam_prime_c - lp

    lo, hi = (math.log(b) for b in bracket)
    xs = np.linspace(lo, hi, 25)
    vals = [gap(x) for x in xs]
    for i in range(len(xs) - 1):
        if vals[i] < 0 <= vals[i + 1] or vals[i] > 0 >= vals[i + 1]:
            return math.exp(brentq(gap, xs[i], xs[i + 1], xtol=1e-10))
    return 0.0 if all(v > 0 for v in vals) else math.nan


def bayes_alpha_prime_c(params: Params, pre: Any = None) -> tuple[float, float]:
    """The Bayes-optimal weak-recovery ``α'_c`` and its Monte-Carlo error
    (:func:`theory.bayes.finetune.weak_recovery_threshold`; the Bayes channel conditions on ``Ŵ``; a teacher of rank
    ``r* > 1``: :func:`theory.bayes.finetune_rank.weak_recovery_threshold_rank`)."""
    if params.teacher_rank > 1:
        from theory.bayes.finetune_rank import weak_recovery_threshold_rank
        return weak_recovery_threshold_rank(params, _pretrain_state(params, pre))
    from theory.bayes.finetune import weak_recovery_threshold
    return weak_recovery_threshold(params, _pretrain_state(params, pre))


def large_alpha_law(T: int, delta_eff: float, alpha_prime: float) -> float:
    """Linear σ, ``α' → ∞`` at fixed ``λ'``: ``E_ft ≈ T(T+1)Δ_eff + 2Δ_eff/α'``.

    Derivation: the fine-tuning is then a well-specified least-squares fit of ``D`` parameters to
    ``N' = α'D`` sequences whose label noise ``N = A0 − A_Ŵ + √ΔZ`` is, on symmetric ``T×T`` matrices,
    isotropic in the Frobenius metric with variance ``2Δ_eff`` along every unit direction. The error of ``ŵ``
    is Gaussian with covariance ``2Δ_eff·F⁻¹``, ``F`` the Gram matrix of the model's Jacobian
    (``∂(χχᵀ − qI)`` along ``δw``), so the excess test error ``E‖J δŵ‖²`` is ``2Δ_eff·D/N' = 2Δ_eff/α'``
    whatever ``T``; the ridge adds ``O(λ'²/α'²)``. The noise floor is ``E‖N‖_F² = T(T+1)Δ_eff``.
    """
    return T * (T + 1) * delta_eff + 2.0 * delta_eff / alpha_prime


@dataclass(frozen=True)
class Boundary:
    """A bisected boundary along ``along``: ``value`` (geometric middle of the final bracket), the bracket
    ``(lo, hi)`` with the verdict at each end, and the replicons seen."""

    along: str
    value: float
    bracket: tuple[float, float]
    stable_at: tuple[bool, bool]
    n_evaluations: int
    replicons: tuple[tuple[float, float], ...] = field(default=(), repr=False)


def _rs_point(params: Params, **solve_options: Any) -> tuple[bool | None, float]:
    r = theory.solve(params, bayes=False, **solve_options)
    ft = r.diagnostics.get("finetune", {})
    if not r.converged or "rs_stable" not in ft:
        return None, math.nan
    return bool(ft["rs_stable"]), float(ft.get("replicon", math.nan))


def rs_boundary(params: Params, along: str = "alpha_prime", bounds: tuple[float, float] = (0.3, 10.0), *,
                rtol: float = 0.05, **solve_options: Any) -> Boundary:
    """The replica-symmetry boundary along ``along`` (``alpha_prime`` or ``lam_prime``): bisection on a log scale
    of :func:`theory.solve`'s ``rs_stable`` verdict between ``bounds`` (whose ends must disagree) until the
    bracket's ratio is below ``1 + rtol``. A non-converged point stops the bisection (the bracket so far is
    returned with ``value`` NaN)."""
    if along not in ("alpha_prime", "lam_prime"):
        raise ParameterError(f"along = {along!r}: allowed 'alpha_prime' or 'lam_prime'")
    lo, hi = (float(b) for b in bounds)
    if not 0 < lo < hi:
        raise ParameterError(f"bounds = {bounds!r}: allowed 0 < lo < hi")
    seen: list[tuple[float, float]] = []

    def at(x: float) -> bool | None:
        s, rep = _rs_point(params.replace(**{along: x}), **solve_options)
        seen.append((x, rep))
        return s

    s_lo, s_hi = at(lo), at(hi)
    if s_lo is None or s_hi is None or s_lo == s_hi:
        return Boundary(along, math.nan, (lo, hi), (bool(s_lo), bool(s_hi)), len(seen), tuple(seen))
    while hi / lo > 1 + rtol:
        mid = math.sqrt(lo * hi)
        s = at(mid)
        if s is None:
            return Boundary(along, math.nan, (lo, hi), (s_lo, s_hi), len(seen), tuple(seen))
        if s == s_lo:
            lo = mid
        else:
            hi = mid
    return Boundary(along, math.sqrt(lo * hi), (lo, hi), (s_lo, s_hi), len(seen), tuple(seen))


@dataclass(frozen=True)
class Crossing:
    """``λ'_×``: where ``E_ft(reused) = E_ft(fresh)`` (NaN if the difference keeps its sign over the grid), the
    reuse fraction ``e`` compared with ``e = 0``, and the grid of differences ``(λ', E_ft(e) − E_ft(0))`` (NaN
    where a fixed point did not converge or where both are switched off, ``ŵ = 0``)."""

    lam_prime_x: float
    differences: tuple[tuple[float, float], ...]
    n_evaluations: int
    reuse: float = 1.0


#: Statuses of a fine-tuning solve on the switch-off branch ``ŵ = 0`` (:mod:`theory.stages.finetune`).
SWITCHED_OFF = ("switched_off", "switched_off_map")


def mismatch_crossing(params: Params, bounds: tuple[float, float] = (1e-3, 10.0), n_grid: int = 7, *,
                      reuse: float = 1.0, **solve_options: Any) -> Crossing:
    """``λ'_×`` (module doc): ``E_ft(e) − E_ft(e = 0)`` on a log grid of ``λ'`` (``e = reuse`` ∈ (0, 1]), then
    Brent's method on the first sign change (``xtol`` 1 % in ``log λ'``). Both solves share the pre-training
    (warm start). Where both are switched off (``λ'`` above both ``λ'_c``) the two errors are ``E_frozen`` and
    their difference is exactly 0 whatever the order below: such grid points are excluded (NaN), not taken for a
    crossing."""
    if params.active_rho is not None:
        raise ParameterError("mismatch_crossing compares reused and fresh sequences: allowed active_rho = None")
    if not 0.0 < reuse <= 1.0:
        raise ParameterError(f"reuse = {reuse!r} is out of range: allowed 0 < reuse <= 1")
    lo, hi = (float(b) for b in bounds)
    if not 0 < lo < hi:
        raise ParameterError(f"bounds = {bounds!r}: allowed 0 < lo < hi")
    if int(n_grid) < 2:
        raise ParameterError(f"n_grid = {n_grid!r} is out of range: allowed an integer >= 2")
    warm: dict[str, Any] = {"w": None}
    diffs: list[tuple[float, float]] = []

    def diff(log_lp: float) -> float:
        lp = math.exp(log_lp)
        out, off = [], []
        for e in (float(reuse), 0.0):
            r = theory.solve(params.replace(lam_prime=lp, reuse=e), init=warm["w"], bayes=False, **solve_options)
            warm["w"] = r.warm
            out.append(float(r.observables["E_ft"]) if r.converged else math.nan)
            ft = r.diagnostics.get("finetune", {})
            off.append(isinstance(ft, dict) and ft.get("status") in SWITCHED_OFF)
        d = math.nan if all(off) else out[0] - out[1]
        diffs.append((lp, d))
        return d

    xs = np.linspace(math.log(lo), math.log(hi), int(n_grid))
    vals = [diff(x) for x in xs]
    for i in range(len(xs) - 1):
        a, b = vals[i], vals[i + 1]
        if math.isfinite(a) and math.isfinite(b) and a * b <= 0:
            if a * b < 0:
                try:
                    x = brentq(_finite_or_raise(diff), xs[i], xs[i + 1], xtol=1e-2)
                except _NotFinite:  # a solve inside the bracket did not converge: no refined value
                    x = math.nan
            else:
                x = xs[i] if a == 0 else xs[i + 1]
            return Crossing(math.exp(x), tuple(sorted(diffs)), len(diffs), float(reuse))
    return Crossing(math.nan, tuple(sorted(diffs)), len(diffs), float(reuse))


class _NotFinite(ArithmeticError):
    """A root finder's function returned NaN."""


def _finite_or_raise(f):
    """``f`` raising :class:`_NotFinite` instead of returning NaN (so that Brent's method stops)."""
    def g(x: float) -> float:
        y = f(x)
        if not math.isfinite(y):
            raise _NotFinite(f"not finite at {x!r}")
        return y
    return g


@dataclass(frozen=True)
class Thresholds:
    """The thresholds at one point (``lora-attn thresholds``); ``None`` where not computed."""

    params: Params
    lam_prime_c: SwitchOff
    alpha_prime_c: float
    bayes_alpha_prime_c: tuple[float, float] | None = None
    rs_boundary: Boundary | None = None
    #: the Bayes-optimal ``α'_c`` conditioning on the pre-training data (:mod:`theory.bayes.two_stage`)
    bayes_alpha_prime_c_two_stage: tuple[float, float] | None = None
    mismatch: Crossing | None = None
    pretrain: PretrainState | None = None

    def to_json_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        from theory.api import _plain
        out: dict[str, Any] = {
            "params": self.params.to_dict(),
            "pretrain": None if self.pretrain is None else asdict(self.pretrain),
            "lam_prime_c": asdict(self.lam_prime_c),
            "alpha_prime_c": self.alpha_prime_c,
            "bayes_alpha_prime_c": None if self.bayes_alpha_prime_c is None else
            {"value": self.bayes_alpha_prime_c[0], "sem": self.bayes_alpha_prime_c[1],
             "conditions_on": "the ERM weights Ŵ"},
            "bayes_alpha_prime_c_two_stage": None if self.bayes_alpha_prime_c_two_stage is None else
            {"value": self.bayes_alpha_prime_c_two_stage[0], "sem": self.bayes_alpha_prime_c_two_stage[1],
             "conditions_on": "the pre-training data"},
            "rs_boundary": None if self.rs_boundary is None else asdict(self.rs_boundary),
            "mismatch_lam_prime_x": None if self.mismatch is None else asdict(self.mismatch),
        }
        return _plain(out)


def thresholds(params: Params, pre: Any = None, *, bayes: bool = True, rs_along: str | None = None,
               rs_bounds: Sequence[float] = (0.3, 10.0), mismatch: bool = False, n_mc: int = 4000, key: int = 0,
               q0: float = 1.0) -> Thresholds:
    """:func:`lam_prime_c` at ``α'``, :func:`alpha_prime_c` at ``λ'``, and optionally the Bayes-optimal ``α'_c``
    (``bayes``), the RS boundary along ``rs_along`` (``alpha_prime`` / ``lam_prime``) and the mismatch crossing
    ``λ'_×`` (``mismatch``; solved for ``e = 0`` and ``e = 1``)."""
    pre = _pretrain_state(params, pre)
    if params.recalibrate == "error":
        r = theory.solve(params, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc, key=key, q0=q0)
        beta_W = float(r.observables["beta_W"])
    else:
        beta_W = None
    curv = curvature(params, pre, q0=q0, n_mc=n_mc, key=key, beta_W=beta_W)
    lc = lam_prime_c(params, curv=curv)
    ac = alpha_prime_c(params, curv=curv)
    bo = bo2 = None
    if bayes and params.reuse == 0 and params.active_rho is None:
        from theory.bayes.two_stage import bayes_alpha_prime_c_two_stage
        bo = bayes_alpha_prime_c(params, pre)
        bo2 = bayes_alpha_prime_c_two_stage(params, pre.Q0)
    rs = rs_boundary(params, rs_along, tuple(rs_bounds), n_mc=n_mc, key=key, q0=q0) if rs_along else None
    mm = mismatch_crossing(params, reuse=params.reuse if params.reuse > 0 else 1.0, n_mc=n_mc, key=key, q0=q0) \
        if mismatch else None
    return Thresholds(params=params, lam_prime_c=lc, alpha_prime_c=ac, bayes_alpha_prime_c=bo, rs_boundary=rs,
                      mismatch=mm, pretrain=pre, bayes_alpha_prime_c_two_stage=bo2)
