"""The verdict of ``lora-attn validate``: a family of Student-t tests at a stated level, and their power.

Each observable gives one gap estimate (:class:`GapEstimate`): the gap ``g = sim − theory`` of the quantity
tested (the gap at the largest ``D``, or its extrapolation to ``D = ∞``), the variance ``v`` of its
simulation part, estimated from the seeds with ``ν_sim`` degrees of freedom, and the variance ``τ²`` of the
theory's own Monte-Carlo error, estimated with ``ν_τ`` (``∞``: known, e.g. thousands of draws).

- **Test.** ``t = g/se`` with ``se² = v + τ²``. Under "no gap" ``t`` is Student-t with ``n − 1`` degrees of
  freedom when ``τ = 0`` (the one-sample t-test over ``n`` seeds, or the paired one when the theory is fed
  each seed's inputs), and with the Welch–Satterthwaite degrees of freedom
  ``ν = se⁴ / (v²/ν_sim + τ⁴/ν_τ)`` otherwise (the usual approximation for a sum of two estimated variances;
  ``ν ≥ min(ν_sim, ν_τ)``). The p-value is two-sided: ``p = 2 P(T_ν > |t|)``.
- **Family.** Holm's step-down over the ``m`` observables (:func:`holm_adjust`): the family-wise error rate
  (the chance that any observable is declared to disagree when none does) is at most ``level`` whatever the
  dependence between the observables. An observable without a p-value (no error bar) counts in ``m`` and is
  never rejected.
- **Power.** With a true gap ``Δ`` the statistic is noncentral t with noncentrality ``Δ/se``. The minimal
  detectable gap ``mdg = δ* se`` solves ``P(|T_{ν, δ*}| > t_{1 − α'/2, ν}) = power`` (:func:`detectable_shift`)
  at ``α' = level/m``, Bonferroni's per-observable level: Holm rejects every hypothesis Bonferroni rejects,
  so under Holm the power at ``mdg`` is at least ``power`` (the reported ``mdg`` errs on the large side).
  ``se`` is the run's own estimate of the standard error, so ``mdg`` is an estimate too.
- **Verdict** (:func:`decide`). *disagree*: Holm rejects some observable; *agree*: no rejection and every
  observable's ``mdg`` is at most its tolerance (the run could have seen a gap of that size); *inconclusive*:
  otherwise, and always with fewer than :data:`MIN_SEEDS` seeds (a t with one degree of freedom rests on a
  single estimate of the spread: its critical value at ``0.01/13`` is 828) or when the caller blocks a
  verdict (an extrapolation with no residual to check). For an inconclusive observable
  :func:`seeds_needed` solves the power equation for the number of seeds at the run's seed-to-seed spread.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from model.params import ParameterError

#: Default family-wise level of the test (``--level``).
LEVEL = 0.01
#: Power at which the minimal detectable gap is quoted.
POWER = 0.8
#: Fewest seeds that give a verdict (below it every observable is inconclusive).
MIN_SEEDS = 3
#: Default tolerance, relative to the magnitude of the theory's value (``--tolerance``).
TOLERANCE = 0.05
VERDICTS = ("agree", "disagree", "inconclusive")
#: :func:`seeds_needed` gives up above this many seeds per size.
SEEDS_CAP = 1_000_000
#: Degrees of freedom above which Student-t is replaced by the normal law.
_NORMAL_DOF = 1e7


def check_level(level: float, flag: str = "--level") -> float:
    """``level`` as a float, or :class:`ParameterError` unless ``0 < level < 1``."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0.0 < level < 1.0:
        raise ParameterError(f"{flag} {level!r}: allowed a number with 0 < level < 1 (default {LEVEL})")
    return float(level)


def check_tolerance(value: float, flag: str) -> float:
    """A tolerance as a float, or :class:`ParameterError` unless finite and ``≥ 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) \
            or value < 0:
        raise ParameterError(f"{flag} {value!r}: allowed a finite number ≥ 0")
    return float(value)


def tolerance_for(theory_value: float, relative: float = TOLERANCE, absolute: float = 0.0) -> float:
    """The gap an observable may have and still be said to agree: ``max(relative·|theory|, absolute)``."""
    scaled = relative * abs(theory_value) if math.isfinite(theory_value) else 0.0
    return max(scaled, absolute)


def welch_satterthwaite(variances: Sequence[float], dofs: Sequence[float]) -> float:
    """Degrees of freedom of a sum of independent variance estimates ``v_k`` with ``ν_k`` degrees of freedom:
    ``(Σ v_k)² / Σ v_k²/ν_k`` (``∞`` when every non-zero part is known exactly, NaN when the sum is 0)."""
    total, denominator = 0.0, 0.0
    for v, nu in zip(variances, dofs):
        v, nu = float(v), float(nu)
        total += v
        if v > 0:
            if not nu > 0:
                return math.nan
            denominator += v * v / nu
    if not math.isfinite(total) or total <= 0.0:
        return math.nan
    return math.inf if denominator == 0.0 else total * total / denominator


def two_sided_p(t: float, dof: float) -> float:
    """``2 P(T_ν > |t|)`` for Student-t with ``ν = dof`` (normal for ``ν = ∞``); NaN without a ``t`` or ``ν``."""
    if math.isnan(t) or math.isnan(dof) or dof <= 0:
        return float("nan")
    tail = special.ndtr(-abs(t)) if dof > _NORMAL_DOF else special.stdtr(dof, -abs(t))
    return float(min(1.0, max(0.0, 2.0 * tail)))


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: with ``p_(1) ≤ … ≤ p_(m)``,
    ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``; rejecting ``p̃ ≤ level`` controls the family-wise
    error at ``level``. A NaN counts in ``m``, sorts last and stays NaN."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        value = p[i]
        if math.isnan(value):
            adjusted[i] = math.nan
            continue
        running = max(running, min(1.0, (m - rank) * value))
        adjusted[i] = running
    return adjusted


def critical_t(alpha: float, dof: float) -> float:
    """``t_{1 − α/2, ν}``: the two-sided critical value at level ``α``."""
    return float(-special.ndtri(alpha / 2) if dof > _NORMAL_DOF else -special.stdtrit(dof, alpha / 2))


def power_two_sided(shift: float, dof: float, alpha: float) -> float:
    """``P(|T| > t_{1 − α/2, ν})`` for ``T`` noncentral t with ``ν = dof`` and noncentrality ``shift``
    (the true gap in standard errors): the chance that the two-sided test at level ``α`` sees the gap."""
    return _power(shift, dof, critical_t(alpha, dof))


def _power(shift: float, dof: float, c: float) -> float:
    if dof > _NORMAL_DOF:
        return float(special.ndtr(shift - c) + special.ndtr(-shift - c))
    # both tails as upper tails, P(T > c | δ) + P(T > c | −δ); scipy.special's noncentral t is fast but
    # not finite everywhere far out, where scipy.stats' is
    value = 2.0 - special.nctdtr(dof, shift, c) - special.nctdtr(dof, -shift, c)
    if not math.isfinite(value):
        value = stats.nct.sf(c, dof, shift) + stats.nct.sf(c, dof, -shift)
    return float(value)


@functools.lru_cache(maxsize=4096)
def detectable_shift(dof: float, alpha: float, power: float = POWER) -> float:
    """The noncentrality ``δ*`` at which :func:`power_two_sided` equals ``power``: the smallest gap, in
    standard errors, that the test at level ``α`` with ``ν = dof`` finds with probability ``power``."""
    if not 0.0 < alpha < 1.0 or not alpha < power < 1.0:
        raise ValueError(f"detectable_shift needs 0 < alpha < power < 1 (alpha = {alpha}, power = {power})")
    if math.isnan(dof) or dof <= 0:
        return float("nan")
    c = critical_t(alpha, dof)
    hi = c + 1.0
    while _power(hi, dof, c) < power:
        hi *= 2.0
    return float(optimize.brentq(lambda s: _power(s, dof, c) - power, 0.0, hi, xtol=1e-10, rtol=1e-12))


@dataclass(frozen=True)
class GapEstimate:
    """The gap of one observable's tested quantity, and what its error is made of.

    Attributes:
        gap: ``sim − theory``.
        sim_var: variance of the simulation part of the gap, from the seeds (``sem²``; NaN without one).
        sim_dof: its degrees of freedom (``n − 1`` for a seed mean, ``n − 2`` with a control variate).
        seeds: seeds per size behind it.
        lost: degrees of freedom one size's estimate spends (1 for a mean, 2 with a control variate); with
            ``n`` seeds the simulation part has ``sim_dof·(n − lost)/(seeds − lost)`` of them.
        theory_var: variance of the theory's own Monte-Carlo error (``τ²``), common to every seed.
        theory_dof: its degrees of freedom (``∞``: known).
        dof_cap: an upper bound on the degrees of freedom (a fit whose scatter set the error: its residual
            degrees of freedom).
    """

    gap: float
    sim_var: float
    sim_dof: float
    seeds: int
    lost: int = 1
    theory_var: float = 0.0
    theory_dof: float = math.inf
    dof_cap: float = math.inf

    @property
    def se(self) -> float:
        return math.sqrt(self.sim_var + self.theory_var) if self.sim_var + self.theory_var >= 0 else math.nan

    @property
    def dof(self) -> float:
        nu = welch_satterthwaite([self.sim_var, self.theory_var], [self.sim_dof, self.theory_dof])
        return min(nu, self.dof_cap) if not math.isnan(nu) else nu

    @property
    def t(self) -> float:
        se = self.se
        if math.isnan(se) or math.isnan(self.gap):
            return math.nan
        if se == 0.0:
            return 0.0 if self.gap == 0.0 else math.copysign(math.inf, self.gap)
        return self.gap / se

    @property
    def p(self) -> float:
        """Two-sided p-value of "no gap" (1 or 0 for an estimate without spread: exact equality or not)."""
        if self.se == 0.0:
            return 1.0 if self.gap == 0.0 else 0.0
        return two_sided_p(self.t, self.dof)

    def with_seeds(self, n: int) -> "GapEstimate":
        """The same estimate with ``n`` seeds per size at the same seed-to-seed spread (the theory's error
        stays): ``sim_var·seeds/n``, ``sim_dof·(n − lost)/(seeds − lost)``."""
        spent = self.seeds - self.lost
        dof = self.sim_dof * (n - self.lost) / spent if spent > 0 else math.nan
        return replace(self, sim_var=self.sim_var * self.seeds / n, sim_dof=dof, seeds=int(n))


def minimal_detectable_gap(estimate: GapEstimate, alpha: float, power: float = POWER) -> float:
    """``δ*(ν, α, power)·se``: the smallest true gap the two-sided test at level ``alpha`` finds with
    probability ``power`` (:func:`detectable_shift`); 0 for an estimate without spread, NaN without an error."""
    se = estimate.se
    if math.isnan(se):
        return math.nan
    if se == 0.0:
        return 0.0
    return detectable_shift(estimate.dof, alpha, power) * se


def seeds_needed(estimate: GapEstimate, alpha: float, tolerance: float, power: float = POWER,
                 cap: int = SEEDS_CAP) -> int | None:
    """The fewest seeds per size (``≥`` :data:`MIN_SEEDS`) whose :func:`minimal_detectable_gap` is at most
    ``tolerance`` at the run's seed-to-seed spread (:meth:`GapEstimate.with_seeds`); ``None`` when no
    number up to ``cap`` does (the theory's own Monte-Carlo error alone too large, or no spread known)."""
    if not (math.isfinite(estimate.sim_var) and estimate.sim_dof > 0 and estimate.seeds > estimate.lost):
        return None

    def enough(n: int) -> bool:
        mdg = minimal_detectable_gap(estimate.with_seeds(n), alpha, power)
        return math.isfinite(mdg) and mdg <= tolerance

    lo = max(MIN_SEEDS, estimate.lost + 1)
    if enough(lo):
        return lo
    hi = lo
    while not enough(hi):
        if hi >= cap:
            return None
        lo, hi = hi, min(2 * hi, cap)
    while hi - lo > 1:  # enough(hi), not enough(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class FamilyVerdict:
    """Result of :func:`decide`.

    Attributes:
        verdict: ``"agree"``, ``"disagree"`` or ``"inconclusive"``.
        table: one row per observable: ``gap, se, dof, t, p, p_holm, mdg, tolerance, verdict, seeds_needed``
            (``seeds_needed``: for an inconclusive observable, the seeds per size that would settle it; NaN
            otherwise or when none would).
        level: the family-wise level.
        power: the power at which ``mdg`` is quoted.
        alpha: the per-observable level of ``mdg`` (``level/m``).
        reasons: why the verdict is not *agree*, in words (empty when it is).
    """

    verdict: str
    table: pd.DataFrame
    level: float
    power: float
    alpha: float
    reasons: tuple[str, ...] = ()

    def names(self, verdict: str) -> tuple[str, ...]:
        """The observables whose own verdict is ``verdict``."""
        return tuple(self.table.loc[self.table["verdict"] == verdict, "observable"])


def decide(estimates: Mapping[str, GapEstimate], tolerances: Mapping[str, float], *, level: float = LEVEL,
           power: float = POWER, min_seeds: int = MIN_SEEDS, blocked: str | None = None) -> FamilyVerdict:
    """The verdict on a family of gap estimates (the module doc): Holm at family-wise ``level``, minimal
    detectable gaps at ``level/m`` and ``power`` against ``tolerances``; ``blocked``: a reason that makes
    every observable inconclusive whatever its p-value."""
    check_level(level)
    if not level < power < 1.0:
        raise ParameterError(f"power = {power!r}: allowed level < power < 1")
    names = list(estimates)
    m = len(names)
    alpha = level / max(m, 1)
    p = [estimates[n].p for n in names]  # one each: the properties recompute
    p_holm = holm_adjust(p) if m else np.array([])
    rows, few, blind, missing, held, theory_bound = [], [], [], [], [], []
    for name, p_raw, p_adj in zip(names, p, p_holm):
        est = estimates[name]
        tol = float(tolerances[name])
        mdg = minimal_detectable_gap(est, alpha, power)
        rejected = bool(p_adj <= level)
        if math.isnan(p_raw):
            verdict = "inconclusive"
            missing.append(name)
        elif blocked is not None:
            verdict = "inconclusive"
        elif est.seeds < min_seeds:
            verdict = "inconclusive"
            few.append(name)
            if rejected:
                held.append(name)
        elif rejected:
            verdict = "disagree"
        elif mdg <= tol:
            verdict = "agree"
        else:
            verdict = "inconclusive"
            blind.append(name)
        needed = seeds_needed(est, alpha, tol, power) if verdict == "inconclusive" and blocked is None else None
        if name in blind and needed is None and est.theory_var > 0 \
                and not minimal_detectable_gap(est.with_seeds(SEEDS_CAP), alpha, power) <= tol:
            theory_bound.append(name)
        rows.append({"observable": name, "gap": est.gap, "se": est.se, "dof": est.dof, "t": est.t, "p": p_raw,
                     "p_holm": float(p_adj), "mdg": mdg, "tolerance": tol, "verdict": verdict,
                     "seeds": est.seeds, "seeds_needed": float(needed) if needed is not None else math.nan})
    table = pd.DataFrame(rows, columns=["observable", "gap", "se", "dof", "t", "p", "p_holm", "mdg", "tolerance",
                                        "verdict", "seeds", "seeds_needed"])
    verdicts = set(table["verdict"])
    overall = "disagree" if "disagree" in verdicts else "agree" if m and verdicts == {"agree"} else "inconclusive"
    reasons = []
    rejected_names = list(table.loc[table["verdict"] == "disagree", "observable"])
    if rejected_names:
        reasons.append(f"Holm rejects 'no gap' at family-wise level {level:g} for {', '.join(rejected_names)}")
    if not m:
        reasons.append("no observable to compare")
    if blocked is not None:
        reasons.append(blocked)
    if few:
        n = min(estimates[x].seeds for x in few)
        reasons.append(f"{n} seed{'s' if n != 1 else ''} (fewer than {min_seeds}): a t with {max(n - 1, 0)} degree"
                       f"{'s' if n != 2 else ''} of freedom rests on one estimate of the spread, no verdict"
                       + (f" (p_holm ≤ {level:g} for {', '.join(held)}: a hint, not a finding)" if held else "")
                       + "; the seeds quoted are guesses from that spread")
    if missing:
        reasons.append(f"no error bar for {', '.join(missing)}")
    if blind:
        reasons.append(f"no gap found in {', '.join(blind)}, but the run could not have seen a gap as large as "
                       "the tolerance there (minimal detectable gap > tolerance)")
    if theory_bound:
        reasons.append(f"no number of seeds settles {', '.join(theory_bound)}: the theory's own Monte-Carlo error "
                       "alone hides a gap of the tolerance (raise --n-mc or --finetune-keys / --replicas)")
    return FamilyVerdict(verdict=overall, table=table, level=float(level), power=float(power), alpha=alpha,
                         reasons=tuple(reasons) if overall != "agree" else ())
