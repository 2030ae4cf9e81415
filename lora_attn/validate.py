"""Theory against simulation: a table of z-scores over several ``D`` and the finite-size trend.

For every observable the theory predicts, the simulation at each ``D`` gives a seed mean and its
standard error; ``z = (sim − theory)/sem``. The gap ``sim − theory`` is fitted as ``a + b/D`` over the
sizes (least squares, weights ``1/sem²``) so a reader sees whether it extrapolates to zero. An observable
*disagrees* when ``|z| > z_max`` at the largest ``D``.
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

    @property
    def ok(self) -> bool:
        return not self.disagree


def compare(
    theory: Mapping[str, float],
    simulations: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    z_max: float = 3.0,
) -> Validation:
    """Compare ``theory`` (``{name: value}``) with :class:`simulate.run.SimulationResult` objects.

    Returns one row per (observable, D) with ``theory, sim, sem, gap, z`` and, per observable,
    the ``1/D`` extrapolation ``gap_inf`` (intercept of ``gap = a + b/D``) and its standard error.
    """
    sims = sorted(simulations, key=lambda r: r.D)
    if not sims:
        raise ValueError("compare needs at least one simulation")
    names = [n for n in (names or theory) if n in theory and all(n in s.observables for s in sims)]
    rows = []
    for name in names:
        t = float(theory[name])
        Ds = np.array([s.D for s in sims], dtype=float)
        gaps = np.array([s.observables[name] - t for s in sims])
        sems = np.array([s.sem[name] for s in sims])
        a, a_err = _extrapolate(Ds, gaps, sems)
        for s, gap, sem in zip(sims, gaps, sems):
            z = gap / sem if sem and math.isfinite(sem) and sem > 0 else float("nan")
            rows.append({"observable": name, "D": s.D, "seeds": s.seeds, "theory": t, "sim": s.observables[name],
                         "sem": sem, "gap": gap, "z": z, "gap_inf": a, "gap_inf_err": a_err})
    table = pd.DataFrame(rows)
    largest = sims[-1].D
    last = table[table["D"] == largest] if len(table) else table
    disagree = tuple(r.observable for r in last.itertuples() if not (abs(r.z) <= z_max))
    return Validation(table=table, disagree=disagree, z_max=z_max)


def _extrapolate(Ds: np.ndarray, gaps: np.ndarray, sems: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of ``gap = a + b/D``; ``(a, stderr a)``, NaN with fewer than two sizes."""
    ok = np.isfinite(gaps) & np.isfinite(sems) & (sems > 0)
    if ok.sum() < 2 or len(set(Ds[ok])) < 2:
        return float("nan"), float("nan")
    X = np.stack([np.ones(ok.sum()), 1.0 / Ds[ok]], axis=1)
    w = 1.0 / sems[ok] ** 2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    coef = cov @ (X.T @ (w * gaps[ok]))
    return float(coef[0]), float(math.sqrt(cov[0, 0]))


def format_table(v: Validation) -> str:
    """A readable text table (one line per observable and D)."""
    lines = [f"{'observable':<12} {'D':>5} {'theory':>11} {'sim':>11} {'sem':>9} {'z':>7}   gap→D=∞ (a + b/D fit)"]
    for name, group in v.table.groupby("observable", sort=False):
        for i, r in enumerate(group.itertuples()):
            trend = f"{r.gap_inf:+.4g} ± {r.gap_inf_err:.2g}" if i == 0 and math.isfinite(r.gap_inf) else ""
            lines.append(f"{name:<12} {r.D:>5} {r.theory:>11.5g} {r.sim:>11.5g} {r.sem:>9.2g} {r.z:>7.2f}   {trend}")
    status = "all agree" if v.ok else "DISAGREE: " + ", ".join(v.disagree)
    lines.append(f"|z| ≤ {v.z_max:g} at the largest D: {status}")
    return "\n".join(lines)
