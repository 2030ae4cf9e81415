"""Theory against simulation: a table of z-scores over several ``D`` and the finite-size trend.

For every observable the theory predicts, the simulation at each ``D`` gives a seed mean and its
standard error; ``z = (sim − theory)/√(sem² + sem_theory²)`` (the theory's own Monte-Carlo error, where it
has one). The theory is taken at each ``D`` where an exact finite-``D`` factor of the data model is known
(``theory.finite_size``: linear ``σ`` test errors); the ``D = ∞`` value is the table's ``theory_inf``. The gap
``sim − theory`` is fitted as ``a + b/D`` over the sizes (least squares, weights
``1/sem²``) so a reader sees whether it extrapolates to zero. An observable *disagrees* when ``|z| > z_max``
at the largest ``D`` (``criterion="largest"``, the default) or when the extrapolated gap ``a`` is more than
``z_max`` of its standard errors from zero (``criterion="extrapolated"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from model.observables import FINETUNE_FED, random_control_names
from theory import finite_size


@dataclass(frozen=True)
class Validation:
    """Result of :func:`compare`: the tidy table and the observables that disagree at the largest ``D``."""

    table: pd.DataFrame
    disagree: tuple[str, ...]
    z_max: float
    criterion: str = "largest"

    @property
    def ok(self) -> bool:
        return not self.disagree


def compare(
    theory: Mapping[str, float],
    simulations: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    z_max: float = 3.0,
    theory_sem: Mapping[str, float] | None = None,
    criterion: str = "largest",
    at_size: "AtSize | None" = None,
) -> Validation:
    """Compare ``theory`` (``{name: value}``) with :class:`simulate.SimulationResult` objects.

    Returns one row per (observable, D) with ``theory, sim, sem, theory_sem, gap, z`` and, per observable,
    the ``1/D`` extrapolation ``gap_inf`` (intercept of ``gap = a + b/D``) and its standard error.
    ``theory_sem``: Monte-Carlo standard errors of theory values (added in quadrature; 0 when absent).
    ``criterion``: ``"largest"`` (``|z| ≤ z_max`` at the largest ``D``) or ``"extrapolated"``
    (``|gap_inf| ≤ z_max·gap_inf_err``). ``at_size``: the theory's value and error at a finite ``D``
    (:class:`AtSize`; default: the ``D = ∞`` values at every ``D``).
    """
    _check_criterion(criterion)
    sims = sorted(simulations, key=lambda r: r.D)
    if not sims:
        raise ValueError("compare needs at least one simulation")
    tsem = _finite_sems(theory_sem)
    at = at_size or AtSize()
    names = [n for n in (names or theory) if n in theory and all(n in s.observables for s in sims)]
    points = [GapPoint(name, s.D, s.seeds, at.value(name, float(theory[name]), s.D), s.observables[name],
                       s.sem[name], at.sem(name, tsem.get(name, 0.0), s.D), float(theory[name]))
              for name in names for s in sims]
    return _validation(points, z_max, criterion)


@dataclass(frozen=True)
class AtSize:
    """The theory at a finite ``D``: ``value(name, v, D)`` and ``sem(name, s, D)`` map a ``D = ∞`` value and
    its Monte-Carlo error to size ``D``. The default leaves both unchanged; :meth:`for_params` applies
    ``theory.finite_size`` (the exact output-Gram factor of linear ``σ`` test errors)."""

    value: Callable[[str, float, int], float] = lambda name, v, D: v
    sem: Callable[[str, float, int], float] = lambda name, s, D: s

    @classmethod
    def for_params(cls, params: Any) -> "AtSize":
        return cls(value=lambda name, v, D: finite_size.theory_at(name, v, D, params),
                   sem=lambda name, s, D: finite_size.sem_at(name, s, D, params))


@dataclass(frozen=True)
class GapPoint:
    """One observable at one ``D``: seed-mean theory (at that ``D``, see :class:`AtSize`) and simulation,
    the standard error of their gap over seeds (``sem``), the theory's own Monte-Carlo error (``theory_sem``,
    common to every seed) and the theory's ``D = ∞`` value (``theory_inf``; ``theory`` when not given)."""

    observable: str
    D: int
    seeds: int
    theory: float
    sim: float
    sem: float
    theory_sem: float = 0.0
    theory_inf: float | None = None


def paired_points(per_size: Sequence[tuple[int, pd.DataFrame, pd.DataFrame]], names: Sequence[str],
                  theory_sem: Mapping[str, float] | None = None, at_size: AtSize | None = None) -> list[GapPoint]:
    """Gap points from per-seed pairs: for each ``(D, sim_rows, theory_rows)`` (one row per seed, the
    theory solved at that seed's own measured inputs), the gap is the seed mean of ``sim − theory`` and
    its error the standard error of those differences, so the seed-to-seed spread of the inputs cancels.
    ``at_size``: the theory at each ``D`` (:class:`AtSize`)."""
    tsem = _finite_sems(theory_sem)
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
                                   at.sem(name, tsem.get(name, 0.0), int(D)), float(np.nanmean(th_inf))))
    return points


def compare_paired(points: Sequence[GapPoint], *, z_max: float = 3.0, criterion: str = "largest") -> Validation:
    """:func:`compare` for :func:`paired_points` (the theory fed each seed's measured inputs)."""
    _check_criterion(criterion)
    if not points:
        raise ValueError("compare_paired needs at least one point")
    return _validation(points, z_max, criterion)


def _check_criterion(criterion: str) -> None:
    if criterion not in ("largest", "extrapolated"):
        raise ValueError(f"criterion = {criterion!r} is unknown: allowed 'largest' or 'extrapolated'")


def _finite_sems(theory_sem: Mapping[str, float] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (theory_sem or {}).items() if v is not None and math.isfinite(v)}


def _validation(points: Sequence[GapPoint], z_max: float, criterion: str) -> Validation:
    """The table of :class:`Validation` from gap points: ``z``, the ``a + b/D`` fit, the disagreements."""
    rows = []
    for name in dict.fromkeys(p.observable for p in points):
        group = sorted((p for p in points if p.observable == name), key=lambda p: p.D)
        Ds = np.array([p.D for p in group], dtype=float)
        gaps = np.array([p.sim - p.theory for p in group])
        sems = np.array([p.sem for p in group], dtype=float)
        ts = np.array([p.theory_sem for p in group], dtype=float)
        a, a_err, b = _extrapolate(Ds, gaps, np.sqrt(sems**2 + ts**2))
        for p, gap in zip(group, gaps):
            ok = p.sem and math.isfinite(p.sem) and p.sem > 0
            z = gap / math.hypot(p.sem, p.theory_sem) if ok else float("nan")
            th_inf = p.theory if p.theory_inf is None else p.theory_inf
            rows.append({"observable": name, "D": p.D, "seeds": p.seeds, "theory": p.theory,
                         "theory_inf": th_inf, "sim": p.sim,
                         "sem": p.sem, "theory_sem": p.theory_sem, "gap": gap, "z": z, "gap_inf": a,
                         "gap_inf_err": a_err, "gap_slope": b})
    table = pd.DataFrame(rows)
    largest = max(p.D for p in points)
    last = table[table["D"] == largest] if len(table) else table
    if criterion == "largest":
        disagree = tuple(r.observable for r in last.itertuples() if not (abs(r.z) <= z_max))
    else:
        disagree = tuple(r.observable for r in last.itertuples()
                         if not (abs(r.gap_inf) <= z_max * r.gap_inf_err))
    return Validation(table=table, disagree=disagree, z_max=z_max, criterion=criterion)


def _extrapolate(Ds: np.ndarray, gaps: np.ndarray, sems: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares of ``gap = a + b/D``; ``(a, stderr a, b)``, NaN with fewer than two sizes."""
    ok = np.isfinite(gaps) & np.isfinite(sems) & (sems > 0)
    if ok.sum() < 2 or len(set(Ds[ok])) < 2:
        return float("nan"), float("nan"), float("nan")
    X = np.stack([np.ones(ok.sum()), 1.0 / Ds[ok]], axis=1)
    w = 1.0 / sems[ok] ** 2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    coef = cov @ (X.T @ (w * gaps[ok]))
    return float(coef[0]), float(math.sqrt(cov[0, 0])), float(coef[1])


def format_table(v: Validation) -> str:
    """A readable text table (one line per observable and D)."""
    lines = [f"{'observable':<12} {'D':>5} {'theory':>11} {'sim':>11} {'sem':>9} {'z':>7}   gap→D=∞ (a + b/D fit)"]
    for name, group in v.table.groupby("observable", sort=False):
        for i, r in enumerate(group.itertuples()):
            trend = f"{r.gap_inf:+.4g} ± {r.gap_inf_err:.2g}" if i == 0 and math.isfinite(r.gap_inf) else ""
            lines.append(f"{name:<12} {r.D:>5} {r.theory:>11.5g} {r.sim:>11.5g} {r.sem:>9.2g} {r.z:>7.2f}   {trend}")
    shifted = sorted(set(v.table.loc[v.table["theory"] != v.table["theory_inf"], "observable"])) if len(v.table) else []
    if shifted:
        lines.append(f"theory at D for {', '.join(shifted)}: the D = ∞ value with the exact output-Gram factor "
                     "(theory.finite_size); the D = ∞ value is the table's theory_inf")
    status = "all agree" if v.ok else "DISAGREE: " + ", ".join(v.disagree)
    where = "at the largest D" if v.criterion == "largest" else "for the gap extrapolated to D = ∞"
    lines.append(f"|z| ≤ {v.z_max:g} {where}: {status}")
    return "\n".join(lines)


def plot_validation(v: Validation, path: str) -> str:
    """One panel per observable: the gap ``sim − theory`` against ``1/D`` with error bars, the fitted
    ``a + b/D`` line and its extrapolation to ``1/D = 0``. Writes ``path`` (any matplotlib format)."""
    names = list(dict.fromkeys(v.table["observable"]))
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    fig = Figure(figsize=(3.0 * cols, 2.4 * rows))  # no pyplot: no global backend or figure registry
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        g = v.table[v.table["observable"] == name]
        x = 1.0 / g["D"].to_numpy(dtype=float)
        err = np.hypot(g["sem"].to_numpy(dtype=float), g["theory_sem"].to_numpy(dtype=float))
        bad = name in v.disagree
        ax.errorbar(x, g["gap"], yerr=err, fmt="o", color="#D55E00" if bad else "#0072B2", ms=4, capsize=2)
        ax.axhline(0.0, color="grey", lw=0.8)
        a, a_err = float(g["gap_inf"].iloc[0]), float(g["gap_inf_err"].iloc[0])
        b = float(g["gap_slope"].iloc[0])
        if math.isfinite(a) and math.isfinite(b):
            xs = np.linspace(0.0, x.max() * 1.05, 20)
            ax.plot(xs, a + b * xs, "--", color="k", lw=0.8)
            ax.errorbar([0.0], [a], yerr=[a_err], fmt="s", color="k", ms=3, capsize=2)
        ax.set_title(name + (" (disagrees)" if bad else ""), fontsize=8)
        ax.set_xlabel("1/D", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("simulation − theory against 1/D (squares: a + b/D extrapolated to D = ∞)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=140)
    return path


def finetune_names(params: Any) -> tuple[str, ...]:
    """The fine-tuning observables the theory predicts from the pre-training order parameters it is fed
    (:data:`model.observables.FINETUNE_FED`), with the ``*_random`` control of an active selection."""
    extra = random_control_names() if params.active_rho is not None else ()
    return FINETUNE_FED + extra


def merge_sems(*parts: Mapping[str, float]) -> dict[str, float]:
    """Per observable, the largest of the given Monte-Carlo errors (finite ones only)."""
    out: dict[str, float] = {}
    for part in parts:
        for k, v in _finite_sems(part).items():
            out[k] = max(out.get(k, 0.0), v)
    return out


def rs_note(finetune_diagnostics: Mapping[str, Any]) -> str:
    """``", RS unstable: replicon …, prox jumps …"`` when the fine-tuning fixed point fails its replicon check
    (:func:`theory.stages.rs_stability.rs_stability`): the replica-symmetric theory is then not expected to be
    exact, and a gap to the simulation is no verdict on the code. Empty otherwise."""
    d = finetune_diagnostics
    if d.get("rs_stable", True):
        return ""
    return (f", RS unstable: replicon {d.get('replicon', float('nan')):.3g} ± {d.get('replicon_sem', float('nan')):.2g}, "
            f"prox jumps in {d.get('prox_jump_frac', float('nan')):.2%} of the samples")
