"""Theory against simulation: the table over several ``D``, the finite-size trend and the verdict.

For every observable the theory predicts, the simulation at each ``D`` gives an estimate of the seed mean
and its standard error; the gap ``sim − theory`` has the error ``se = √(sem² + τ²)`` (``τ``: the theory's own
Monte-Carlo error, where it has one) and ``z = gap/se``, Student-t under "no gap" (:mod:`validation.verdict`:
``n − 1`` degrees of freedom from ``n`` seeds, Welch–Satterthwaite with ``τ``), whose two-sided p-value is
the table's ``p``. The theory is taken at each ``D`` where an exact finite-``D`` value is known
(:class:`AtSize`: ``E[Q0] = 1 + P0/D + 1/D``, and the output-Gram factor of linear ``σ`` test errors,
``theory.finite_size``); the ``D = ∞`` value is the table's ``theory_inf``. The pre-training observables
are estimated with the teacher's ``Q0`` as a control variate where enough seeds allow it
(:mod:`validation.control`; ``sim_mean, sem_mean`` keep the plain seed mean). The gap is fitted as
``a + b/D`` (or ``a + b/√D``) over the sizes (:mod:`validation.extrapolate`).

The verdict (:func:`validation.verdict.decide`) tests one gap per observable, at the largest ``D``
(``criterion="largest"``, the default) or extrapolated to ``D = ∞`` (``criterion="extrapolated"``; three
sizes or more), as a family controlled by Holm's method at ``level``, and asks whether the run could have
seen a gap of the tolerance (``max(tolerance·|theory_inf|, abs_tolerance)``) with probability ``power``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from model.observables import FINETUNE_FED, random_control_names, rank_fed_names
from model.params import ParameterError
from theory import finite_size
from validation.control import CONTROLLED, CV_MIN_SEEDS, controlled_mean, exact_Q0_mean
from validation.extrapolate import FORM_LABELS, FORMS, check_form, extrapolate
from validation.verdict import LEVEL, POWER, TOLERANCE, GapEstimate, check_level, check_tolerance, decide, tolerance_for

CRITERIA = ("largest", "extrapolated")
#: Columns of one (observable, D) row; then the observable's fit and verdict, repeated on each of its rows.
ROW_COLUMNS = ("observable", "D", "seeds", "theory", "theory_inf", "sim", "sem", "sim_mean", "sem_mean", "cv_gain",
               "theory_sem", "gap", "se", "dof", "z", "p")
OBSERVABLE_COLUMNS = ("gap_inf", "gap_inf_err", "gap_inf_dof", "p_inf", "gap_slope", "chi2", "chi2_dof", "tested",
                      "p_holm", "mdg", "tolerance", "verdict", "seeds_needed")


@dataclass(frozen=True)
class Validation:
    """Result of :func:`compare`: the tidy table and the verdict.

    Attributes:
        table: one row per (observable, D): :data:`ROW_COLUMNS`, then the observable's :data:`OBSERVABLE_COLUMNS`
            (``tested``: which gap the verdict tests, ``"D=<largest>"`` or ``"D=inf"``; ``p_holm, mdg, tolerance,
            verdict, seeds_needed`` are those of that gap).
        verdict: ``"agree"``, ``"disagree"`` or ``"inconclusive"`` (:mod:`validation.verdict`).
        level: the family-wise level of the test.
        power: the power at which ``mdg`` (the minimal detectable gap) is quoted.
        alpha: the per-observable level of ``mdg`` (``level/m``, Bonferroni).
        criterion: ``"largest"`` or ``"extrapolated"``.
        extrapolation: the form of the fit, ``"inv_D"`` (``a + b/D``) or ``"inv_sqrt_D"`` (``a + b/√D``).
        reasons: why the verdict is not *agree*, in words.
    """

    table: pd.DataFrame
    verdict: str
    level: float = LEVEL
    power: float = POWER
    alpha: float = LEVEL
    criterion: str = "largest"
    extrapolation: str = "inv_D"
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the verdict is *agree*."""
        return self.verdict == "agree"

    @property
    def disagree(self) -> tuple[str, ...]:
        """The observables Holm rejects (the verdict *disagree* names them)."""
        return self._named("disagree")

    @property
    def inconclusive(self) -> tuple[str, ...]:
        return self._named("inconclusive")

    @property
    def tests(self) -> pd.DataFrame:
        """One row per observable: its fit and the test of its gap."""
        if not len(self.table):
            return pd.DataFrame(columns=["observable", *OBSERVABLE_COLUMNS])
        return self.table.drop_duplicates("observable")[["observable", *OBSERVABLE_COLUMNS]].reset_index(drop=True)

    def _named(self, verdict: str) -> tuple[str, ...]:
        t = self.tests
        return tuple(t.loc[t["verdict"] == verdict, "observable"])


def compare(
    theory: Mapping[str, float],
    simulations: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    theory_sem: Mapping[str, float] | None = None,
    theory_dof: Mapping[str, float] | None = None,
    criterion: str = "largest",
    at_size: "AtSize | None" = None,
    control: Callable[[int], float] | None = None,
    level: float = LEVEL,
    tolerance: float = TOLERANCE,
    abs_tolerance: float = 0.0,
    power: float = POWER,
    extrapolation: str = "inv_D",
) -> Validation:
    """Compare ``theory`` (``{name: value}``) with :class:`simulate.SimulationResult` objects.

    Args:
        theory: the theory's ``D = ∞`` values.
        simulations: results with ``D, seeds, observables, sem`` (and ``per_seed`` for the control variate).
        names: the observables compared (default: every name of ``theory``); only names every simulation
            reports are kept.
        theory_sem, theory_dof: the theory's Monte-Carlo standard errors (0 when absent) and their degrees of
            freedom (``∞`` when absent).
        criterion: test the gap at the largest ``D`` (``"largest"``) or extrapolated to ``D = ∞``
            (``"extrapolated"``).
        at_size: the theory's value and error at a finite ``D`` (:class:`AtSize`; default: the ``D = ∞``
            values at every ``D``).
        control: ``D ↦ E[Q0]`` at that size (:func:`validation.control.exact_Q0_mean`): estimate the names of
            :data:`validation.control.CONTROLLED` with ``Q0`` as a control variate (``None``: plain seed means).
        level, power: family-wise level of the test; power at which the minimal detectable gap is quoted.
        tolerance, abs_tolerance: an observable agrees only if the run could see a gap of
            ``max(tolerance·|theory_inf|, abs_tolerance)``.
        extrapolation: ``"inv_D"`` (``a + b/D``) or ``"inv_sqrt_D"`` (``a + b/√D``).
    """
    _check(criterion, level, tolerance, abs_tolerance, extrapolation)
    sims = sorted(simulations, key=lambda r: r.D)
    if not sims:
        raise ValueError("compare needs at least one simulation")
    tsem, tdof = _finite_sems(theory_sem), dict(theory_dof or {})
    at = at_size or AtSize()
    names = [n for n in (names or theory) if n in theory and all(n in s.observables for s in sims)]
    points = []
    for name in names:
        for s in sims:
            mean, sem = float(s.observables[name]), float(s.sem[name])
            point = dict(observable=name, D=s.D, seeds=s.seeds, theory=at.value(name, float(theory[name]), s.D),
                         sim=mean, sem=sem, theory_sem=at.sem(name, tsem.get(name, 0.0), s.D),
                         theory_inf=float(theory[name]), theory_dof=float(tdof.get(name, math.inf)),
                         sim_mean=mean, sem_mean=sem)
            cm = _controlled(s, name, control)
            if cm is not None:
                point.update(sim=cm.mean, sem=cm.sem, seeds=cm.seeds, lost=2, cv_gain=cm.gain)
            points.append(GapPoint(**point))
    return _validation(points, criterion=criterion, level=level, tolerance=tolerance, abs_tolerance=abs_tolerance,
                       power=power, extrapolation=extrapolation)


def _controlled(sim: Any, name: str, control: Callable[[int], float] | None):
    """The control-variate estimate of ``name`` in ``sim`` where it applies (:mod:`validation.control`)."""
    rows = getattr(sim, "per_seed", None)
    if control is None or name not in CONTROLLED or rows is None or "Q0" not in rows or name not in rows:
        return None
    pairs = rows[[name, "Q0"]].to_numpy(dtype=float)
    if int(np.isfinite(pairs).all(axis=1).sum()) < CV_MIN_SEEDS:
        return None
    return controlled_mean(pairs[:, 0], pairs[:, 1], control(int(sim.D)))


@dataclass(frozen=True)
class AtSize:
    """The theory at a finite ``D``: ``value(name, v, D)`` and ``sem(name, s, D)`` map a ``D = ∞`` value and
    its Monte-Carlo error to size ``D``. The default leaves both unchanged; :meth:`for_params` applies the
    exact finite-``D`` values known: ``E[Q0] = 1 + P0/D + 1/D`` (:func:`validation.control.exact_Q0_mean`) and
    the output-Gram factor of linear ``σ`` test errors (``theory.finite_size``)."""

    value: Callable[[str, float, int], float] = lambda name, v, D: v
    sem: Callable[[str, float, int], float] = lambda name, s, D: s

    @classmethod
    def for_params(cls, params: Any) -> "AtSize":
        def value(name: str, v: float, D: int) -> float:
            if name == "Q0":
                return exact_Q0_mean(params, D)
            return finite_size.theory_at(name, v, D, params)

        return cls(value=value, sem=lambda name, s, D: finite_size.sem_at(name, s, D, params))


@dataclass(frozen=True)
class GapPoint:
    """One observable at one ``D``: theory (at that ``D``, see :class:`AtSize`) and the simulation's estimate,
    the standard error of their gap over seeds (``sem``), the theory's own Monte-Carlo error (``theory_sem``,
    common to every seed) and the theory's ``D = ∞`` value (``theory_inf``; ``theory`` when not given).

    ``theory_dof``: degrees of freedom of ``theory_sem`` (``∞``: known); ``lost``: degrees of freedom the
    estimate spends (1 for a seed mean, 2 with a control variate: ``sem`` has ``seeds − lost``);
    ``sim_mean, sem_mean``: the plain seed mean and its error (``sim, sem`` when not given); ``cv_gain``: the
    control variate's variance reduction (NaN when none was used)."""

    observable: str
    D: int
    seeds: int
    theory: float
    sim: float
    sem: float
    theory_sem: float = 0.0
    theory_inf: float | None = None
    theory_dof: float = math.inf
    lost: int = 1
    sim_mean: float | None = None
    sem_mean: float | None = None
    cv_gain: float = math.nan

    def estimate(self) -> GapEstimate:
        """The gap at this ``D`` as a :class:`validation.verdict.GapEstimate`."""
        return GapEstimate(gap=self.sim - self.theory, sim_var=self.sem**2, sim_dof=float(self.seeds - self.lost),
                           seeds=self.seeds, lost=self.lost, theory_var=self.theory_sem**2,
                           theory_dof=self.theory_dof)


def paired_points(per_size: Sequence[tuple[int, pd.DataFrame, pd.DataFrame]], names: Sequence[str],
                  theory_sem: Mapping[str, float] | None = None, at_size: AtSize | None = None,
                  theory_dof: Mapping[str, float] | None = None) -> list[GapPoint]:
    """Gap points from per-seed pairs: for each ``(D, sim_rows, theory_rows)`` (one row per seed, the
    theory solved at that seed's own measured inputs), the gap is the seed mean of ``sim − theory`` and
    its error the standard error of those differences (the paired t-test: ``n − 1`` degrees of freedom), so
    the seed-to-seed spread of the inputs cancels. ``at_size``: the theory at each ``D`` (:class:`AtSize`);
    ``theory_sem, theory_dof``: the theory's Monte-Carlo error common to every seed and its degrees of freedom."""
    tsem = _finite_sems(theory_sem)
    tdof = dict(theory_dof or {})
    at = at_size or AtSize()
    points = []
    for D, sim_rows, th_rows in sorted(per_size, key=lambda t: t[0]):
        for name in names:
            if name not in sim_rows or name not in th_rows:
                continue
            th_inf = th_rows[name].to_numpy(dtype=float)
            th = np.array([at.value(name, float(v), int(D)) for v in th_inf])
            diff = sim_rows[name].to_numpy(dtype=float) - th
            n = int(np.isfinite(diff).sum())
            sem = float(np.nanstd(diff, ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")
            points.append(GapPoint(name, int(D), n, float(np.nanmean(th)), float(np.nanmean(sim_rows[name])), sem,
                                   at.sem(name, tsem.get(name, 0.0), int(D)), float(np.nanmean(th_inf)),
                                   theory_dof=float(tdof.get(name, math.inf))))
    return points


def compare_paired(points: Sequence[GapPoint], *, criterion: str = "largest", level: float = LEVEL,
                   tolerance: float = TOLERANCE, abs_tolerance: float = 0.0, power: float = POWER,
                   extrapolation: str = "inv_D") -> Validation:
    """:func:`compare` for :func:`paired_points` (the theory fed each seed's measured inputs)."""
    _check(criterion, level, tolerance, abs_tolerance, extrapolation)
    if not points:
        raise ValueError("compare_paired needs at least one point")
    return _validation(points, criterion=criterion, level=level, tolerance=tolerance, abs_tolerance=abs_tolerance,
                       power=power, extrapolation=extrapolation)


def _check(criterion: str, level: float, tolerance: float, abs_tolerance: float, extrapolation: str) -> None:
    if criterion not in CRITERIA:
        raise ParameterError(f"criterion = {criterion!r} is unknown: allowed one of {', '.join(CRITERIA)}")
    check_level(level)
    check_tolerance(tolerance, "--tolerance")
    check_tolerance(abs_tolerance, "--abs-tolerance")
    check_form(extrapolation)


def _finite_sems(theory_sem: Mapping[str, float] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (theory_sem or {}).items() if v is not None and math.isfinite(v)}


def _validation(points: Sequence[GapPoint], *, criterion: str, level: float, tolerance: float, abs_tolerance: float,
                power: float, extrapolation: str) -> Validation:
    """The table of :class:`Validation` from gap points: per-``D`` tests, the fit, the family's verdict."""
    rows, fits, fit_estimates, estimates, tolerances, tested = [], {}, {}, {}, {}, {}
    for name in dict.fromkeys(p.observable for p in points):
        group = sorted((p for p in points if p.observable == name), key=lambda p: p.D)
        fit = extrapolate([p.D for p in group], [p.sim - p.theory for p in group], [p.sem for p in group],
                          [p.seeds - p.lost for p in group], [p.theory_sem for p in group], form=extrapolation)
        last = group[-1]
        fits[name] = fit
        fit_estimates[name] = fit.estimate(min(p.seeds for p in group), lost=max(p.lost for p in group),
                                           theory_dof=min(p.theory_dof for p in group))
        if criterion == "largest":
            estimates[name], tested[name] = last.estimate(), f"D={last.D}"
        else:
            estimates[name], tested[name] = fit_estimates[name], "D=inf"
        th_inf = last.theory if last.theory_inf is None else last.theory_inf
        tolerances[name] = tolerance_for(th_inf, tolerance, abs_tolerance)
        for p in group:
            e = p.estimate()
            rows.append({"observable": name, "D": p.D, "seeds": p.seeds, "theory": p.theory,
                         "theory_inf": p.theory if p.theory_inf is None else p.theory_inf, "sim": p.sim, "sem": p.sem,
                         "sim_mean": p.sim if p.sim_mean is None else p.sim_mean,
                         "sem_mean": p.sem if p.sem_mean is None else p.sem_mean, "cv_gain": p.cv_gain,
                         "theory_sem": p.theory_sem, "gap": e.gap, "se": e.se, "dof": e.dof, "z": e.t, "p": e.p})
    blocked = None
    unchecked = [n for n, f in fits.items() if not f.checked]
    if criterion == "extrapolated" and unchecked:
        k = min(fits[n].sizes for n in unchecked)
        blocked = (f"{k} size{'s' if k != 1 else ''}: a fit {FORM_LABELS[extrapolation]} through "
                   f"{'two points' if k == 2 else 'fewer than two points'} has no residual to check its form, so the "
                   "extrapolated gap gives no verdict (add a third D, or use the criterion 'largest')")
    family = decide(estimates, tolerances, level=level, power=power, blocked=blocked)
    per_name = {r["observable"]: r for r in family.table.to_dict("records")}
    for row in rows:
        name = row["observable"]
        f, fe, t = fits[name], fit_estimates[name], per_name[name]
        row.update({"gap_inf": f.a, "gap_inf_err": f.a_err, "gap_inf_dof": fe.dof, "p_inf": fe.p,
                    "gap_slope": f.b, "chi2": f.chi2, "chi2_dof": f.chi2_dof, "tested": tested[name],
                    "p_holm": float(t["p_holm"]), "mdg": float(t["mdg"]), "tolerance": float(t["tolerance"]),
                    "verdict": str(t["verdict"]), "seeds_needed": float(t["seeds_needed"])})
    table = pd.DataFrame(rows, columns=[*ROW_COLUMNS, *OBSERVABLE_COLUMNS])
    return Validation(table=table, verdict=family.verdict, level=family.level, power=family.power,
                      alpha=family.alpha, criterion=criterion, extrapolation=extrapolation, reasons=family.reasons)


def _num(x: float, spec: str, width: int) -> str:
    """``x`` right-aligned in ``width`` with ``spec`` (a leading ``+``: signed); a dash when not finite."""
    if x is None or not math.isfinite(x):
        return f"{'—':>{width}}"
    sign = "+" if spec.startswith("+") else ""
    return format(x, f">{sign}{width}{spec.lstrip('+')}")


def _p(x: float, width: int = 8) -> str:
    if not math.isfinite(x):
        return f"{'—':>{width}}"
    return f"{x:>{width}.2g}" if x < 0.01 else f"{x:>{width}.3f}"


def format_table(v: Validation) -> str:
    """A readable text report: one line per observable and ``D`` (``z`` and its p-value), one line per
    observable with its test (``p``, Holm's ``p_holm``, the minimal detectable gap ``mdg`` against the
    tolerance, its verdict, the seeds that would settle it), and the verdict."""
    form = FORM_LABELS[v.extrapolation]
    lines = [f"{'observable':<12} {'D':>5} {'seeds':>5} {'theory':>11} {'sim':>11} {'sem':>9} {'z':>7} {'p':>8}"
             f"   gap→D=∞ ({form} fit)"]
    t = v.table
    for name, group in t.groupby("observable", sort=False):
        for i, r in enumerate(group.itertuples()):
            trend = ""
            if i == 0 and math.isfinite(r.gap_inf):
                trend = f"{r.gap_inf:+.4g} ± {r.gap_inf_err:.2g}"
                trend += f", χ² = {r.chi2:.3g}/{r.chi2_dof}" if r.chi2_dof >= 1 else " (two sizes: no residual)"
            cv = f" cv×{r.cv_gain:.2g}" if math.isfinite(r.cv_gain) else ""
            lines.append(f"{name:<12} {r.D:>5} {r.seeds:>5} {r.theory:>11.5g} {r.sim:>11.5g} {_num(r.sem, '.2g', 9)} "
                         f"{_num(r.z, '.2f', 7)} {_p(r.p)}   {trend}{cv}")
    notes = []
    if len(t) and (t["theory"] != t["theory_inf"]).any():
        shifted = ", ".join(dict.fromkeys(t.loc[t["theory"] != t["theory_inf"], "observable"]))
        notes.append(f"theory at D for {shifted}: the exact finite-D value (E[Q0] = 1 + P0/D + 1/D; linear test "
                     "errors with the output-Gram factor of theory.finite_size); the D = ∞ value is theory_inf")
    if len(t) and t["cv_gain"].notna().any():
        notes.append("cv×g: the seed mean corrected by the teacher's Q0 (control variate, exact E[Q0]); its variance "
                     "is 1/g of the plain mean's (sim_mean, sem_mean in --out)")
    lines += notes
    tested = "the gap at the largest D" if v.criterion == "largest" else f"the gap extrapolated to D = ∞ ({form})"
    tests = v.tests
    lines.append("")
    lines.append(f"test of {tested}: two-sided Student-t per observable, Holm over {len(tests)} at family-wise level "
                 f"{v.level:g}; mdg = the gap found with {v.power:.0%} power at level {v.alpha:.2g} per observable")
    lines.append(f"{'observable':<12} {'gap':>10} {'±':>8} {'p':>8} {'p_holm':>8} {'mdg':>9} {'tolerance':>9}"
                 "   verdict")
    for r in tests.itertuples():
        row = v.table[(v.table.observable == r.observable)]
        if v.criterion == "largest":
            last = row.iloc[-1]
            gap, err, p = last.gap, last.se, last.p
        else:
            gap, err, p = r.gap_inf, r.gap_inf_err, r.p_inf
        more = f" ({int(r.seeds_needed)} seeds would settle it)" if math.isfinite(r.seeds_needed) else ""
        lines.append(f"{r.observable:<12} {_num(gap, '+.3g', 10)} {_num(err, '.2g', 8)} {_p(p)} {_p(r.p_holm)} "
                     f"{_num(r.mdg, '.2g', 9)} {_num(r.tolerance, '.2g', 9)}   {r.verdict}{more}")
    for reason in v.reasons:
        lines.append(f"- {reason}")
    word = {"agree": "AGREE", "disagree": "DISAGREE", "inconclusive": "INCONCLUSIVE"}[v.verdict]
    if v.verdict == "agree":
        why = (f"no gap at family-wise level {v.level:g}, and each observable's gap of its tolerance would have "
               f"been found with {v.power:.0%} power")
    elif v.verdict == "disagree":
        why = ", ".join(v.disagree) + f" (Holm, family-wise level {v.level:g})"
    else:
        why = "the run cannot tell (the reasons above)"
    lines.append(f"verdict: {word}: {why}")
    return "\n".join(lines)


def check_plot_path(path: str | os.PathLike) -> Path:
    """``--plot``: a file of a format matplotlib writes, in an existing writable folder; else
    :class:`ParameterError` (before any work)."""
    p = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    if p.suffix.lower().lstrip(".") not in formats:
        raise ParameterError(f"--plot {str(path)!r}: allowed a file ending in one of "
                             f"{', '.join('.' + f for f in sorted(formats))}")
    check_writable_folder(p, "--plot")
    return p


def check_writable_folder(path: str | os.PathLike, flag: str) -> None:
    """:class:`ParameterError` unless ``path``'s folder exists and can be written (and ``path`` is no folder)."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise ParameterError(f"{flag} {str(path)!r}: folder {str(folder)!r} does not exist")
    if p.is_dir():
        raise ParameterError(f"{flag} {str(path)!r} is a folder: allowed a file name")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ParameterError(f"{flag} {str(path)!r}: not writable")


_COLOURS = {"agree": "#0072B2", "disagree": "#D55E00", "inconclusive": "#777777"}


def plot_validation(v: Validation, path: str) -> str:
    """One panel per observable: the gap ``sim − theory`` against ``x(D)`` (``1/D`` or ``1/√D``) with error
    bars (``se``), the fitted ``a + b·x`` line and its extrapolation to ``x = 0``, coloured by the observable's
    verdict. Writes ``path`` (any matplotlib format)."""
    names = list(dict.fromkeys(v.table["observable"]))
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    fig = Figure(figsize=(3.0 * cols, 2.4 * rows))  # no pyplot: no global backend or figure registry
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    xform, label = FORMS[v.extrapolation], {"inv_D": "1/D", "inv_sqrt_D": "1/√D"}[v.extrapolation]
    for ax, name in zip(axes.flat, names):
        g = v.table[v.table["observable"] == name]
        x = xform(g["D"].to_numpy(dtype=float))
        verdict = str(g["verdict"].iloc[0])
        ax.errorbar(x, g["gap"], yerr=g["se"].to_numpy(dtype=float), fmt="o", color=_COLOURS[verdict], ms=4,
                    capsize=2)
        ax.axhline(0.0, color="grey", lw=0.8)
        a, a_err = float(g["gap_inf"].iloc[0]), float(g["gap_inf_err"].iloc[0])
        b = float(g["gap_slope"].iloc[0])
        if math.isfinite(a) and math.isfinite(b):
            xs = np.linspace(0.0, x.max() * 1.05, 20)
            ax.plot(xs, a + b * xs, "--", color="k", lw=0.8)
            ax.errorbar([0.0], [a], yerr=[a_err], fmt="s", color="k", ms=3, capsize=2)
        ax.set_title(f"{name} ({verdict})", fontsize=8)
        ax.set_xlabel(label, fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"simulation − theory against {label} (squares: {FORM_LABELS[v.extrapolation]} at D = ∞); "
                 f"verdict {v.verdict}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=140)
    return path


def finetune_names(params: Any) -> tuple[str, ...]:
    """The fine-tuning observables the theory predicts from the pre-training order parameters it is fed
    (:data:`model.observables.FINETUNE_FED`; at rank ``r`` or ``r* > 1``, :func:`model.observables.rank_fed_names`),
    with the ``*_random`` control of an active selection."""
    rank_one = getattr(params, "rank_one", True)
    extra = random_control_names(rank_one) if params.active_rho is not None else ()
    return (FINETUNE_FED if rank_one else rank_fed_names(params.rank, params.teacher_rank)) + extra


def merge_sems(*parts: Mapping[str, float]) -> dict[str, float]:
    """Per observable, the largest of the given Monte-Carlo errors (finite ones only)."""
    return merge_errors(*((part, math.inf) for part in parts))[0]


def merge_errors(*parts: tuple[Mapping[str, float], float]) -> tuple[dict[str, float], dict[str, float]]:
    """Per observable, the largest of the given Monte-Carlo errors (finite ones only) and the degrees of
    freedom of the part it came from; each part is ``({name: error}, dof)``."""
    sems: dict[str, float] = {}
    dofs: dict[str, float] = {}
    for part, dof in parts:
        for k, v in _finite_sems(part).items():
            if k not in sems or v > sems[k]:
                sems[k], dofs[k] = v, float(dof)
    return sems, dofs


def rs_note(finetune_diagnostics: Mapping[str, Any]) -> str:
    """``", RS unstable: replicon …, prox jumps …"`` when the fine-tuning fixed point fails its replicon check
    (:func:`theory.stages.rs_stability.rs_stability`): the replica-symmetric theory is then not expected to be
    exact, and a gap to the simulation is no verdict on the code. Empty otherwise."""
    d = finetune_diagnostics
    if d.get("rs_stable", True):
        return ""
    return (f", RS unstable: replicon {d.get('replicon', float('nan')):.3g} ± {d.get('replicon_sem', float('nan')):.2g}, "
            f"prox jumps in {d.get('prox_jump_frac', float('nan')):.2%} of the samples")
