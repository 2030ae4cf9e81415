"""Theory against simulation: a table of z-scores over several ``D`` and the finite-size trend.

For every observable the theory predicts, the simulation at each ``D`` gives a seed mean and its
standard error; ``z = (sim − theory)/√(sem² + sem_theory²)`` (the theory's own Monte-Carlo error, where it
has one). The gap ``sim − theory`` is fitted as ``a + b/D`` over the sizes (least squares, weights
``1/sem²``) so a reader sees whether it extrapolates to zero. An observable *disagrees* when ``|z| > z_max``
at the largest ``D`` (``criterion="largest"``, the default) or when the extrapolated gap ``a`` is more than
``z_max`` of its standard errors from zero (``criterion="extrapolated"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


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
) -> Validation:
    """Compare ``theory`` (``{name: value}``) with :class:`simulate.run.SimulationResult` objects.

    Returns one row per (observable, D) with ``theory, sim, sem, theory_sem, gap, z`` and, per observable,
    the ``1/D`` extrapolation ``gap_inf`` (intercept of ``gap = a + b/D``) and its standard error.
    ``theory_sem``: Monte-Carlo standard errors of theory values (added in quadrature; 0 when absent).
    ``criterion``: ``"largest"`` (``|z| ≤ z_max`` at the largest ``D``) or ``"extrapolated"``
    (``|gap_inf| ≤ z_max·gap_inf_err``).
    """
    if criterion not in ("largest", "extrapolated"):
        raise ValueError(f"criterion = {criterion!r} is unknown: allowed 'largest' or 'extrapolated'")
    sims = sorted(simulations, key=lambda r: r.D)
    if not sims:
        raise ValueError("compare needs at least one simulation")
    tsem = {k: float(v) for k, v in (theory_sem or {}).items() if v is not None and math.isfinite(v)}
    names = [n for n in (names or theory) if n in theory and all(n in s.observables for s in sims)]
    rows = []
    for name in names:
        t = float(theory[name])
        Ds = np.array([s.D for s in sims], dtype=float)
        gaps = np.array([s.observables[name] - t for s in sims])
        ts = tsem.get(name, 0.0)
        sems = np.array([s.sem[name] for s in sims])
        a, a_err, b = _extrapolate(Ds, gaps, np.sqrt(sems**2 + ts**2))
        for s, gap, sem in zip(sims, gaps, sems):
            z = gap / math.hypot(sem, ts) if sem and math.isfinite(sem) and sem > 0 else float("nan")
            rows.append({"observable": name, "D": s.D, "seeds": s.seeds, "theory": t, "sim": s.observables[name],
                         "sem": sem, "theory_sem": ts, "gap": gap, "z": z, "gap_inf": a, "gap_inf_err": a_err, "gap_slope": b})
    table = pd.DataFrame(rows)
    largest = sims[-1].D
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
    status = "all agree" if v.ok else "DISAGREE: " + ", ".join(v.disagree)
    where = "at the largest D" if v.criterion == "largest" else "for the gap extrapolated to D = ∞"
    lines.append(f"|z| ≤ {v.z_max:g} {where}: {status}")
    return "\n".join(lines)


def plot_validation(v: Validation, path: str) -> str:
    """One panel per observable: the gap ``sim − theory`` against ``1/D`` with error bars, the fitted
    ``a + b/D`` line and its extrapolation to ``1/D = 0``. Writes ``path`` (any matplotlib format)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(v.table["observable"]))
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False)
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
    plt.close(fig)
    return path
