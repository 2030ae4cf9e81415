"""Figure 6: prescriptions — which weight decay, rescaling and ridge to use (README, Prescriptions).

For one σ (``T = 3``, defaults otherwise; fine-tuning at ``λ' = 0.5`` unless optimised):

(a) against the pre-training sample ratio ``α``: the weight decay ``λ`` that minimises the pre-training error
    ``E_pre`` against the one that minimises the fine-tuning error ``E_ft`` (``α' = 3``). Both from one grid of
    full solves over ``λ`` at each ``α``; the argmin is the vertex of the parabola in ``log λ`` through the grid's
    lowest point and its two neighbours (the grid's end point when the lowest point is an end: marked open);
(b) against ``α'`` (the figure-1 pre-training, ``λ = 0.1, α = 0.1``): the rescaling ``β_W`` of the frozen weights
    that minimises ``E_ft`` (:func:`theory.optimize` over ``beta_W``) against ``M/Q``, the ``Δ_eff`` minimiser;
(c) against ``α'``: the ridge ``λ'`` that minimises ``E_ft`` (:func:`theory.optimize` over ``lam_prime`` below
    ``λ'_c``), with the switch-off line ``λ'_c(α')``;
(d) against ``α'``: ``E_ft`` at the optimal ``λ'``, at ``λ' = 0.5`` with and without the optimal ``β_W``, the frozen
    baseline ``E_frozen``, and the two Bayes-optimal baselines — conditioning on ``Ŵ`` (``E_ft_BO``) and on the
    pre-training data (``E_ft_BO2``, :mod:`theory.bayes.two_stage`), with small Monte-Carlo sizes (``bayes_mc``).

Tables (``<out>/fig6/<σ>-<name>.csv``): ``lam_grid`` (every solve of (a)), ``lam_opt``, ``finetune_opt`` (one
row per ``α'``: both searches and the baselines).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import theory
from figures.cached import Cached, finetune_row, pretrain_state
from model.params import Params
from model.tables import write_table

NUMBER = 6


@dataclass(frozen=True)
class PrescriptionSpec:
    """What figure 6 computes for one σ."""

    base: Params
    alphas: tuple[float, ...]
    lams: tuple[float, ...]
    alpha_primes: tuple[float, ...]
    n_mc: int
    max_steps: int
    n_grid: int
    xtol: float
    bayes_mc: tuple[int, int, int, int]


def spec(sigma: str, quick: bool = False) -> PrescriptionSpec:
    """The grids of figure 6 (``quick``: coarser, fewer draws)."""
    base = Params(sigma=sigma)
    # the λ grids bracket the minima: measured near 0.3–1 (linear), below 0.01 (softmax; λ ≥ 1 gives Ŵ = 0 there)
    lams = (0.03, 0.1, 0.3, 1.0, 3.0) if sigma == "linear" else (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
    if quick:
        return PrescriptionSpec(base, (0.05, 0.2), lams[::2], (2.0, 10.0), n_mc=400, max_steps=15, n_grid=4,
                                xtol=0.1, bayes_mc=(500, 128, 500, 64))
    # α' ≥ 1.5: below it the softmax fine-tuning is RS-unstable at small λ' (figure 5) and its solves are slow
    return PrescriptionSpec(base, (0.03, 0.1, 0.3), lams, (1.5, 4.0, 12.0), n_mc=600, max_steps=20, n_grid=5,
                            xtol=0.05, bayes_mc=(1000, 256, 1000, 64))


def parabola_argmin(xs, ys) -> tuple[float, float, bool]:
    """``(x*, y*, interior)``: the vertex of the parabola in ``log x`` through the lowest finite point and its two
    neighbours (clipped to their span), or the lowest point itself when it is an end of the grid (``interior``
    false) or the three points are not convex."""
    pts = sorted((float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(y))
    if not pts:
        return math.nan, math.nan, False
    i = min(range(len(pts)), key=lambda k: pts[k][1])
    if i == 0 or i == len(pts) - 1:
        return pts[i][0], pts[i][1], False
    (x0, y0), (x1, y1), (x2, y2) = pts[i - 1], pts[i], pts[i + 1]
    u = np.log([x0, x1, x2])
    a, b, c = np.polyfit(u, [y0, y1, y2], 2)
    if a <= 0:
        return x1, y1, True
    v = float(np.clip(-b / (2 * a), u[0], u[2]))
    return math.exp(v), float(a * v * v + b * v + c), True


def _lam_panel(cached: Cached, s: PrescriptionSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for alpha in s.alphas:
        warm: dict[str, Any] = {"init": None}  # along λ each computed point starts from the previous one
        for lam in s.lams:
            p = s.base.replace(alpha=float(alpha), lam=float(lam))

            def solve(p=p, warm=warm) -> dict[str, Any]:
                r = theory.solve(p, init=warm["init"], bayes=False, n_mc=s.n_mc, max_steps=s.max_steps)
                warm["init"] = r.warm
                ft = r.diagnostics.get("finetune", {})
                return {**{k: float(v) for k, v in r.observables.items()}, "converged": bool(r.converged),
                        "status": str(ft.get("status")), "rs_stable": ft.get("rs_stable")}

            row = cached("full", p, {"n_mc": s.n_mc, "max_steps": s.max_steps}, solve)
            rows.append({"alpha": float(alpha), "lam": float(lam), **row})
    grid = pd.DataFrame(rows)
    opt = []
    for alpha, g in grid.groupby("alpha"):
        for target in ("E_pre", "E_ft"):
            ok = g[g["converged"].astype(bool)] if target == "E_ft" else g
            x, y, interior = parabola_argmin(ok["lam"], ok[target])
            opt.append({"alpha": alpha, "minimize": target, "lam_opt": x, "minimum": y, "interior": interior})
    return grid, pd.DataFrame(opt)


def _search(cached: Cached, s: PrescriptionSpec, p: Params, pre, over: str, bounds: tuple[float, float]
            ) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        res = theory.optimize(p, minimize="E_ft", over=[over], bounds={over: bounds}, n_grid=s.n_grid, xtol=s.xtol,
                              stage="finetune", pretrain=pre, n_mc=s.n_mc, max_steps=s.max_steps)
        o = res.point.observables if res.point is not None else {}
        return {"argmin": res.argmin[over], "minimum": res.minimum, "converged": bool(res.converged),
                "unimodal": bool(res.unimodal), "at_bound": bool(res.at_bound), "n_evaluations": res.n_evaluations,
                **{f"{k}_at_opt": float(o[k]) for k in ("E_frozen", "q", "o_w", "delta_eff", "beta_W") if k in o}}

    return cached("optimize", p, {"over": over, "bounds": list(bounds), "n_grid": s.n_grid, "xtol": s.xtol,
                                  "n_mc": s.n_mc, "max_steps": s.max_steps, "pre": [pre.Q0, pre.Q, pre.M]}, run)


def bayes_finetune(p: Params, state, mc: tuple[int, int, int, int]) -> dict[str, Any]:
    """The Bayes-optimal fine-tuning error (and overlap) of the channel fed ``state``, Monte-Carlo sizes ``mc``
    (``n_outer, n_inner, n_outer_error, n_inner_error``)."""
    from theory.bayes.finetune import solve_bayes_finetune

    no, ni, noe, nie = mc
    b = solve_bayes_finetune(p, state, threshold=False, n_outer=no, n_inner=ni, n_outer_error=noe, n_inner_error=nie)
    return {"E": b.E_ft_BO, "E_sem": math.hypot(b.E_ft_BO_se, b.E_ft_BO_se_q), "q": b.q_BO,
            "converged": bool(b.converged)}


def _bayes(cached: Cached, s: PrescriptionSpec, p: Params, pre) -> dict[str, Any]:
    from theory.bayes.two_stage import two_stage_state

    out = {}
    for name, state in (("BO", pre), ("BO2", two_stage_state(p, pre.Q0).state)):
        r = cached("bayes_finetune", p, {"mc": list(s.bayes_mc), "state": [state.Q0, state.Q, state.M]},
                   lambda state=state: bayes_finetune(p, state, s.bayes_mc))
        out.update({f"E_ft_{name}": r["E"] if r["converged"] else math.nan, f"E_ft_{name}_sem": r["E_sem"],
                    f"q_{name}": r["q"]})
    return out


def _finetune_panel(cached: Cached, s: PrescriptionSpec) -> pd.DataFrame:
    from figures.phase_diagram import _lam_c, _switch_off_line
    from figures.phase_diagram import spec as phase_spec

    pre = pretrain_state(cached, s.base)
    if pre is None:
        raise RuntimeError(f"figure 6 ({s.base.sigma}): the pre-training theory did not converge")
    line = _switch_off_line(cached, dataclasses.replace(phase_spec(s.base.sigma), n_mc=s.n_mc), pre)
    rows = []
    for ap in s.alpha_primes:
        p = s.base.replace(alpha_prime=float(ap))
        lc = float(_lam_c(line, ap))
        lp = _search(cached, s, p, pre, "lam_prime", (1e-2, 0.9 * lc))
        bw = _search(cached, s, p, pre, "beta_W", (0.3, 3.0))
        plain = finetune_row(cached, p, pre, n_mc=s.n_mc, max_steps=s.max_steps)
        rows.append({"alpha_prime": float(ap), "lam_prime_c": lc, "M_over_Q": pre.M / pre.Q,
                     "lam_prime_opt": lp["argmin"], "E_ft_lam_prime_opt": lp["minimum"],
                     "lam_prime_opt_converged": lp["converged"], "lam_prime_opt_at_bound": lp["at_bound"],
                     "beta_W_opt": bw["argmin"], "E_ft_beta_W_opt": bw["minimum"], "beta_W_opt_converged": bw["converged"],
                     "beta_W_opt_at_bound": bw["at_bound"], "E_ft_default": plain.get("E_ft", math.nan),
                     "E_frozen": plain.get("E_frozen", math.nan), "lam_prime_default": p.lam_prime,
                     **_bayes(cached, s, p, pre)})
    return pd.DataFrame(rows)


def compute(sigma: str, out_dir: Path, *, quick: bool = False) -> dict[str, pd.DataFrame]:
    """The tables of figure 6 for ``sigma`` (module doc), written as CSV to ``<out_dir>/fig6/``."""
    s = spec(sigma, quick)
    cached = Cached(out_dir / "cache" / "points", "prescriptions")
    grid, opt = _lam_panel(cached, s)
    tables = {"lam_grid": grid, "lam_opt": opt, "finetune_opt": _finetune_panel(cached, s)}
    data_dir = out_dir / f"fig{NUMBER}"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, t in tables.items():
        write_table(t, str(data_dir / f"{sigma}-{name}.csv"))
    return tables


def draw(tables: dict[str, pd.DataFrame], *, sigma: str, stem: str) -> list[str]:
    """Draw figure 6 from its tables (module doc); returns the PDF and PNG paths."""
    from figures.plotting import COLOURS, finish, new_figure, panel_letter, save

    opt, ft = tables["lam_opt"], tables["finetune_opt"].sort_values("alpha_prime")
    fig, axes = new_figure(4, width=2.5, height=2.9)
    a, b, c, d = axes
    for i, (target, name, ls, ms) in enumerate((("E_pre", r"argmin $E_{\rm pre}$", "-", 5.5),
                                                ("E_ft", r"argmin $E_{\rm ft}$ ($\alpha'=3$)", "--", 3.5))):
        t = opt[opt["minimize"] == target].sort_values("alpha")
        a.plot(t["alpha"], t["lam_opt"], ls, color=COLOURS[i], label=name)
        inner = t["interior"].astype(bool)
        a.plot(t["alpha"][inner], t["lam_opt"][inner], "o", color=COLOURS[i], ms=ms)
        a.plot(t["alpha"][~inner], t["lam_opt"][~inner], "o", color=COLOURS[i], mfc="white", ms=ms)
    finish(a, "alpha", "lam", logx=True, logy=True, ncol=1)
    b.plot(ft["alpha_prime"], ft["beta_W_opt"], "o-", color=COLOURS[0], ms=4, label=r"argmin $E_{\rm ft}$")
    b.plot(ft["alpha_prime"], ft["M_over_Q"], "--", color=COLOURS[1], label=r"$M/Q$ (min $\Delta_{\rm eff}$)")
    b.axhline(1.0, color="grey", lw=0.8, ls=":")
    finish(b, "alpha_prime", "beta_W", logx=True, ncol=1)
    c.plot(ft["alpha_prime"], ft["lam_prime_opt"], "o-", color=COLOURS[0], ms=4, label=r"argmin $E_{\rm ft}$")
    c.plot(ft["alpha_prime"], ft["lam_prime_c"], "-", color="k", lw=1, label=r"$\lambda'_c$ (switch-off)")
    finish(c, "alpha_prime", "lam_prime", logx=True, logy=True, ncol=1)
    series = (("E_ft_lam_prime_opt", r"optimal $\lambda'$", COLOURS[0], "o-"),
              ("E_ft_default", r"$\lambda'=0.5$", COLOURS[2], "s-"),
              ("E_ft_beta_W_opt", r"$\lambda'=0.5$, optimal $\beta_W$", COLOURS[3], "^-"),
              ("E_ft_BO", r"Bayes given $\hat W$", COLOURS[5], "d:"),
              ("E_ft_BO2", r"Bayes given pre-training data", COLOURS[4], "v:"))
    for col, name, colour, fmt in series:
        if col in ft and ft[col].notna().any():
            d.plot(ft["alpha_prime"], ft[col], fmt, color=colour, ms=3.5, label=name)
    d.plot(ft["alpha_prime"], ft["E_frozen"], "--", color="grey", lw=1, label=r"frozen ($w=0$)")
    finish(d, "alpha_prime", "E_ft", logx=True, ncol=1)
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    lams = tables["lam_grid"]["lam"]
    a.set_ylim(lams.min() / 1.2, lams.max() * 1.2)  # the searched range: where in it the minima lie
    for ax, letter in zip(axes, "abcd"):
        panel_letter(ax, letter)
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":  # plain labels at 1, 3, 10, 30, …: some within every axis, none crowded
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"Prescriptions, {sigma} ($T=3$; (b)–(d): $\\lambda=0.1$, $\\alpha=0.1$)")
    return save(fig, stem)


def make(sigma: str, out_dir: str | Path, *, quick: bool = False) -> list[str]:
    """Compute (cached) and draw figure 6 for ``sigma`` into ``out_dir``; returns the written figure paths."""
    out_dir = Path(out_dir)
    tables = compute(sigma, out_dir, quick=quick)
    return draw(tables, sigma=sigma, stem=str(out_dir / f"fig{NUMBER}_{sigma}"))
