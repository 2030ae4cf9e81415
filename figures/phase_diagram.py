"""Figure 5: the phase diagram of LoRA fine-tuning in the plane (α', λ') (MODEL.md §5; README, Prescriptions).

At the figure-1 pre-training (``T = 3, λ = 0.1, α = 0.1``, defaults otherwise), for one σ:

* **switched off** (``ŵ = 0``): above the ridge ``λ'_c(α')`` of the fine-tuning map linearised at ``q → 0``
  (:func:`theory.thresholds.curvature` on the channel samples the grid solves use, then
  :func:`theory.switch_off.switch_off_threshold` on a fine ``α'`` grid); read the other way it is the ERM
  weak-recovery ``α'_c(λ')``. A row of solves at ``λ' = CHECK_ABOVE·λ'_c`` asks the solver itself whether it is
  switched off there;
* below the line, at each ``α'`` of a coarse log grid, ``λ' = f·λ'_c(α')`` for log-spaced fractions ``f < 1`` (so
  that the cells tile the region under the line), the fine-tuning theory is solved (fed the pre-training state,
  ``n_mc`` draws, at most ``max_steps`` iterations): **informed and RS-stable**, **RS-unstable** (replicon or
  prox jumps, :mod:`theory.stages.rs_stability`) or **not converged** (white); hatched where the LoRA is **worse
  than frozen** (``E_ft > E_frozen``). Each cell is coloured by its grid point (nearest-point picture: the
  boundaries between cells are only as good as the grid);
* the **RS boundary**: between grid neighbours whose verdicts differ, ``n_bisect`` bisection steps on the segment
  joining them (geometric middles), drawn at the final bracket's middle (markers);
* the **``E_ft = E_frozen``** boundary: ``E_ft − E_frozen`` interpolated linearly in ``log α'``, ``log λ'`` between
  grid neighbours of opposite sign (no extra solve; markers);
* the **Bayes-optimal weak-recovery** ``α'_c`` (vertical lines): conditioning on ``Ŵ`` (``Δ_BO = Δ/2 + Q0 − M²/Q``)
  and on the pre-training data (two-stage, ``Δ_BO2 = Δ/2 + Q0 − Q_BO``, :mod:`theory.bayes.two_stage`).

Tables (``<out>/fig5/<σ>-<name>.csv``): ``grid`` (every solve, with its region), ``switch_off`` (the line),
``rs_boundary``, ``frozen_boundary``, ``bayes`` (both ``α'_c`` with their Monte-Carlo errors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from figures.cached import Cached, finetune_row, pretrain_state
from model.params import Params
from model.tables import write_table

NUMBER = 5
#: The fraction ``λ'/λ'_c`` of the row that checks the switch-off with the solver.
CHECK_ABOVE = 1.25
#: Colours and names of the regions (light Okabe–Ito).
REGION_COLOURS = {"switched_off": "#d9d9d9", "rs_stable": "#cfe8f7", "rs_unstable": "#f6d5bd",
                  "not_converged": "#ffffff"}
REGION_LABELS = {"switched_off": r"switched off ($\hat w=0$)", "rs_stable": "informed, RS-stable",
                 "rs_unstable": "RS-unstable", "not_converged": "not converged"}
INFORMED = ("rs_stable", "rs_unstable")


@dataclass(frozen=True)
class PhaseSpec:
    """What figure 5 computes for one σ: the ``α'`` grid, the fractions ``λ'/λ'_c``, the solver's settings, the
    bisection steps, the ``α'`` of the ``λ'_c`` line and the Monte-Carlo sizes of the Bayes ``α'_c``."""

    base: Params
    alpha_primes: tuple[float, ...]
    fractions: tuple[float, ...]
    n_mc: int
    max_steps: int
    n_bisect: int
    line_alpha_primes: tuple[float, ...]
    bayes_mc: tuple[int, int]


def spec(sigma: str, quick: bool = False) -> PhaseSpec:
    """The grids of figure 5 (``quick``: coarser, fewer draws)."""
    base = Params(sigma=sigma)
    line = tuple(float(x) for x in np.geomspace(0.05, 60.0, 70))
    if quick:
        # a smoke run: α' ≥ 2 leaves out the bifurcation at small α' (softmax: minutes a point there)
        return PhaseSpec(base, (2.0, 5.0, 20.0), (1e-3, 0.03, 0.6), n_mc=400, max_steps=15, n_bisect=1,
                         line_alpha_primes=line, bayes_mc=(1000, 512))
    return PhaseSpec(base, (0.5, 1.0, 3.0, 10.0, 30.0), (3e-3, 0.03, 0.15, 0.6), n_mc=600, max_steps=20,
                     n_bisect=1, line_alpha_primes=line, bayes_mc=(2000, 1024))


def classify(row: dict[str, Any]) -> str:
    """The region of a solved point: ``switched_off``, ``not_converged``, ``rs_unstable`` or ``rs_stable``."""
    if str(row.get("status", "")).startswith("switched_off"):
        return "switched_off"
    E = row.get("E_ft")
    if not row.get("converged") or E is None or not math.isfinite(float(E)):
        return "not_converged"
    return "rs_stable" if row.get("rs_stable") == 1 else "rs_unstable"


def switch_off_curve(base: Params, pre, n_mc: int, alpha_primes) -> list[dict[str, Any]]:
    """``λ'_c`` and its mechanism at each ``α'`` (one curvature on ``n_mc`` channel samples, key 0)."""
    from theory.switch_off import switch_off_threshold
    from theory.thresholds import curvature

    curv = curvature(base, pre, n_mc=n_mc, key=0)
    rows = []
    for ap in alpha_primes:
        t = switch_off_threshold(curv, ap)
        rows.append({"alpha_prime": float(ap), "lam_prime_c": t.lam_prime_c, "mechanism": t.mechanism})
    return rows


def bayes_alpha_c(base: Params, state, n_outer: int, n_inner: int) -> tuple[float, float]:
    """The Bayes-optimal weak-recovery ``α'_c`` of the channel fed ``state`` and its Monte-Carlo error."""
    from theory.bayes.finetune import weak_recovery_threshold
    return weak_recovery_threshold(base, state, n_outer=n_outer, n_inner=n_inner)


def _switch_off_line(cached: Cached, s: PhaseSpec, pre) -> pd.DataFrame:
    row = cached("switch_off", s.base, {"n_mc": s.n_mc, "grid": list(s.line_alpha_primes),
                                        "pre": [pre.Q0, pre.Q, pre.M]},
                 lambda: {"rows": switch_off_curve(s.base, pre, s.n_mc, s.line_alpha_primes)})
    return pd.DataFrame(row["rows"])


def _lam_c(line: pd.DataFrame, ap) -> Any:
    """``λ'_c`` at ``ap`` interpolated on the line (log–log)."""
    return np.exp(np.interp(np.log(ap), np.log(line["alpha_prime"]), np.log(line["lam_prime_c"])))


def _bayes(cached: Cached, s: PhaseSpec, pre) -> pd.DataFrame:
    from theory.bayes.finetune import delta_bo
    from theory.bayes.two_stage import two_stage_state

    n_outer, n_inner = s.bayes_mc
    rows = []
    two = two_stage_state(s.base, pre.Q0)
    for name, state, conditions in (("BO", pre, "the ERM weights"), ("BO2", two.state, "the pre-training data")):
        def alpha_c(state=state) -> dict[str, Any]:
            ac, se = bayes_alpha_c(s.base, state, n_outer, n_inner)
            return {"alpha_prime_c": ac, "alpha_prime_c_sem": se}

        r = cached("bayes_alpha_c", s.base, {"n_outer": n_outer, "n_inner": n_inner,
                                             "state": [state.Q0, state.Q, state.M]}, alpha_c)
        rows.append({"baseline": name, "conditions_on": conditions, "delta": delta_bo(s.base.delta, state), **r})
    return pd.DataFrame(rows)


def _bisect(cached: Cached, s: PhaseSpec, pre, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``n_bisect`` bisection steps of the RS verdict on the segment between grid neighbours ``a`` and ``b``
    (geometric middles of ``α'`` and ``λ'``); the boundary at the final bracket's geometric middle."""
    lo, hi = a, b
    for _ in range(s.n_bisect):
        ap, lp = math.sqrt(lo["alpha_prime"] * hi["alpha_prime"]), math.sqrt(lo["lam_prime"] * hi["lam_prime"])
        mid = {**finetune_row(cached, s.base.replace(alpha_prime=ap, lam_prime=lp), pre, n_mc=s.n_mc,
                              max_steps=s.max_steps), "alpha_prime": ap, "lam_prime": lp}
        c = classify(mid)
        if c not in INFORMED:
            break
        if c == classify(lo):
            lo = mid
        else:
            hi = mid
    ratio = max(max(hi[k] / lo[k], lo[k] / hi[k]) for k in ("alpha_prime", "lam_prime"))
    return {"alpha_prime": math.sqrt(lo["alpha_prime"] * hi["alpha_prime"]),
            "lam_prime": math.sqrt(lo["lam_prime"] * hi["lam_prime"]), "bracket_ratio": ratio}


def _neighbours(grid: pd.DataFrame) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """Pairs of grid neighbours: along ``λ'`` at fixed ``α'``, and along ``α'`` at a fixed fraction ``λ'/λ'_c``."""
    aps, fs = sorted(grid["alpha_prime"].unique()), sorted(grid["fraction"].unique())
    at = {(r["alpha_prime"], r["fraction"]): r for r in grid.to_dict("records")}
    for ap in aps:
        for f1, f2 in zip(fs, fs[1:]):
            if (ap, f1) in at and (ap, f2) in at:
                yield at[(ap, f1)], at[(ap, f2)], "lam_prime"
    for f in fs:
        for a1, a2 in zip(aps, aps[1:]):
            if (a1, f) in at and (a2, f) in at:
                yield at[(a1, f)], at[(a2, f)], "alpha_prime"


def compute(sigma: str, out_dir: Path, *, quick: bool = False) -> dict[str, pd.DataFrame]:
    """The tables of figure 5 for ``sigma`` (module doc), written as CSV to ``<out_dir>/fig5/``."""
    s = spec(sigma, quick)
    cached = Cached(out_dir / "cache" / "points", "prescriptions")  # shared with figure 6
    pre = pretrain_state(cached, s.base)
    if pre is None:
        raise RuntimeError(f"figure 5 ({sigma}): the pre-training theory did not converge")
    line = _switch_off_line(cached, s, pre)
    rows = []
    for ap in s.alpha_primes:
        lc = float(_lam_c(line, ap))
        for f in s.fractions + (CHECK_ABOVE,):
            r = finetune_row(cached, s.base.replace(alpha_prime=float(ap), lam_prime=float(f * lc)), pre,
                             n_mc=s.n_mc, max_steps=s.max_steps)
            rows.append({"alpha_prime": float(ap), "lam_prime": float(f * lc), "fraction": float(f),
                         "lam_prime_c_line": lc,
                         **{k: r.get(k) for k in ("E_ft", "E_frozen", "q", "o_w", "converged", "status", "rs_stable",
                                                  "replicon", "prox_jump_frac", "lam_prime_c")},
                         "region": classify(r), "check_row": f == CHECK_ABOVE})
    grid = pd.DataFrame(rows)
    grid["worse_than_frozen"] = (grid["E_ft"] > grid["E_frozen"]) & grid["region"].isin(INFORMED)
    informed = grid[grid["region"].isin(INFORMED) & ~grid["check_row"]]
    rs_rows, frozen_rows = [], []
    for a, b, along in _neighbours(informed):
        if a["region"] != b["region"]:
            rs_rows.append({"along": along, **_bisect(cached, s, pre, a, b)})
        da, db = a["E_ft"] - a["E_frozen"], b["E_ft"] - b["E_frozen"]
        if da * db < 0:
            t = da / (da - db)
            frozen_rows.append({"along": along, **{k: math.exp((1 - t) * math.log(a[k]) + t * math.log(b[k]))
                                                   for k in ("alpha_prime", "lam_prime")}})
    tables = {"grid": grid, "switch_off": line, "bayes": _bayes(cached, s, pre),
              "rs_boundary": pd.DataFrame(rs_rows, columns=["along", "alpha_prime", "lam_prime", "bracket_ratio"]),
              "frozen_boundary": pd.DataFrame(frozen_rows, columns=["along", "alpha_prime", "lam_prime"])}
    data_dir = out_dir / f"fig{NUMBER}"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, t in tables.items():
        write_table(t, str(data_dir / f"{sigma}-{name}.csv"))
    return tables


def _edges(values) -> np.ndarray:
    """Cell edges in log space (geometric middles, extended by half a step at the ends) of sorted ``values``."""
    v = np.log(np.asarray(values, float))
    mid = (v[1:] + v[:-1]) / 2
    return np.exp(np.r_[v[0] - (mid[0] - v[0]), mid, v[-1] + (v[-1] - mid[-1])])


def draw(tables: dict[str, pd.DataFrame], *, sigma: str, stem: str) -> list[str]:
    """Draw figure 5 from its tables (module doc); returns the PDF and PNG paths."""
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from figures.plotting import figure_key, new_figure, save

    grid, line, bayes = tables["grid"], tables["switch_off"], tables["bayes"]
    fig, (ax,) = new_figure(1, width=5.2, height=4.6)
    cells = grid[~grid["check_row"].astype(bool)]
    aps, fs = sorted(cells["alpha_prime"].unique()), sorted(cells["fraction"].unique())
    xe = _edges(aps)
    fe = np.r_[_edges(fs)[:-1], 1.0]  # the top cell edge is the line λ' = λ'_c
    X = np.tile(xe, (len(fe), 1))
    Y = fe[:, None] * _lam_c(line, xe)[None, :]
    order = list(REGION_COLOURS)
    z = np.full((len(fs), len(aps)), np.nan)
    for r in cells.to_dict("records"):
        i, j = fs.index(r["fraction"]), aps.index(r["alpha_prime"])
        z[i, j] = order.index(r["region"])
        if r["worse_than_frozen"]:
            ax.fill([X[i, j], X[i, j + 1], X[i + 1, j + 1], X[i + 1, j]], [Y[i, j], Y[i, j + 1], Y[i + 1, j + 1],
                    Y[i + 1, j]], facecolor="none", edgecolor="#D55E00", hatch="////", lw=0, zorder=1)
    ax.pcolormesh(X, Y, z, cmap=ListedColormap([REGION_COLOURS[k] for k in order]), vmin=-0.5, vmax=len(order) - 0.5,
                  shading="flat", zorder=0)
    top = 3 * float(line["lam_prime_c"].max())
    ax.fill_between(line["alpha_prime"], line["lam_prime_c"], top, color=REGION_COLOURS["switched_off"], zorder=0)
    ax.plot(line["alpha_prime"], line["lam_prime_c"], color="k", lw=1.4, zorder=3)
    ax.plot(cells["alpha_prime"], cells["lam_prime"], ".", color="0.3", ms=3, zorder=4)
    check = grid[grid["check_row"].astype(bool)]
    off = check["region"] == "switched_off"
    ax.plot(check["alpha_prime"][off], check["lam_prime"][off], "o", color="0.45", ms=3.5, zorder=4)
    ax.plot(check["alpha_prime"][~off], check["lam_prime"][~off], "o", color="#D55E00", ms=4, zorder=4)
    rs, fb = tables["rs_boundary"], tables["frozen_boundary"]
    ax.plot(rs["alpha_prime"], rs["lam_prime"], "D", color="#D55E00", mfc="white", ms=4.5, mew=1.1, zorder=5)
    ax.plot(fb["alpha_prime"], fb["lam_prime"], "s", color="#CC79A7", ms=3.5, zorder=5)
    styles = {"BO": ("#009E73", "--"), "BO2": ("#009E73", ":")}
    for r in bayes.to_dict("records"):
        c, ls = styles[r["baseline"]]
        ax.axvline(r["alpha_prime_c"], color=c, ls=ls, lw=1.4, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    left = min([xe[0]] + [0.7 * a for a in bayes["alpha_prime_c"] if math.isfinite(a)])
    ax.set_xlim(left, xe[-1])
    ax.set_ylim(float(Y.min()), top)
    ax.set_xlabel(r"$\alpha'$")
    ax.set_ylabel(r"$\lambda'$")
    ax.set_title(f"LoRA phase diagram, {sigma} " + r"($T=3$, $\lambda=0.1$, $\alpha=0.1$)")
    handles = [Patch(facecolor=REGION_COLOURS[k], edgecolor="0.6", label=REGION_LABELS[k]) for k in order
               if k != "not_converged"]
    handles.append(Patch(facecolor="white", edgecolor="0.6", label="white: not converged (at a dot) or not computed"
                         if (cells["region"] == "not_converged").any() else "white: not computed"))
    if cells["worse_than_frozen"].any():
        handles.append(Patch(facecolor="none", edgecolor="#D55E00", hatch="////",
                             label=r"worse than frozen ($E_{\rm ft}>E_{\rm frozen}$)"))
    handles += [Line2D([], [], color="k", lw=1.4, label=r"$\lambda'_c(\alpha')$ $\Leftrightarrow$ ERM $\alpha'_c(\lambda')$"),
                Line2D([], [], color="0.45", marker="o", ls="none", ms=3.5,
                       label=rf"solver at ${CHECK_ABOVE}\,\lambda'_c$: switched off" +
                       ("" if off.all() else " (orange: not)")),
                Line2D([], [], color="0.3", marker=".", ls="none", label="solved grid point")]
    if len(rs):
        handles.append(Line2D([], [], color="#D55E00", marker="D", mfc="white", ls="none",
                              label="RS boundary (bisected)"))
    if len(fb):
        handles.append(Line2D([], [], color="#CC79A7", marker="s", ls="none",
                              label=r"$E_{\rm ft}=E_{\rm frozen}$ (interpolated)"))
    for r in bayes.to_dict("records"):
        c, ls = styles[r["baseline"]]
        what = r"given $\hat W$" if r["baseline"] == "BO" else "given the pre-training data"
        handles.append(Line2D([], [], color=c, ls=ls, lw=1.4,
                              label=rf"Bayes-optimal $\alpha'_c$ {what} ({r['alpha_prime_c']:.3f})"))
    figure_key(fig, handles, ncol=2)
    return save(fig, stem)


def make(sigma: str, out_dir: str | Path, *, quick: bool = False) -> list[str]:
    """Compute (cached) and draw figure 5 for ``sigma`` into ``out_dir``; returns the written figure paths."""
    out_dir = Path(out_dir)
    tables = compute(sigma, out_dir, quick=quick)
    return draw(tables, sigma=sigma, stem=str(out_dir / f"fig{NUMBER}_{sigma}"))
