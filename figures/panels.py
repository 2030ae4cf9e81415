"""The four figures of MODEL.md §6, drawn from tidy tables (theory: lines; simulation: markers).

Each ``figureN(theory, sims, *, sigma, stem, D, Ds)`` takes ``{sweep name: DataFrame}`` for the theory and the
simulation sweeps of :mod:`figures.specs` (either may be empty), writes ``<stem>.pdf`` and ``<stem>.png``
and returns their paths. ``D``: the simulations' dimension (``None``: no markers; ``"inf"``: markers
extrapolated to ``D → ∞`` from the sizes ``Ds``). Every panel's legend sits above it and the figure's key
(line kinds, markers, faded parts, gaps) below the panels, so no legend covers data.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from matplotlib.lines import Line2D

from figures.plotting import (COLOURS, figure_key, finish, key_handles, new_figure, panel_letter, save, select,
                              sim_markers, theory_at_markers, theory_line)

Tables = Mapping[str, pd.DataFrame]


class _Drawn:
    """What a figure drew that its key must explain."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.finite_D = False


def _series(ax, drawn: _Drawn, theory: pd.DataFrame | None, sims: pd.DataFrame | None, *, x: str, y: str, by: str,
            values, fmt: str | None, style: str = "-", marker: str = "o", extra: Mapping[str, object] | None = None,
            colours=COLOURS) -> None:
    for i, v in enumerate(values):
        c = colours[i % len(colours)]
        sel = {by: v, **(extra or {})}
        name = None if fmt is None else fmt.format(v)
        part = select(theory, **sel) if theory is not None and y in theory.columns else None
        if part is not None and len(part):
            drawn.kinds |= theory_line(ax, part, x, y, colour=c, style=style, name=name)
            name = None
        marks = select(sims, **sel) if sims is not None and y in sims.columns else None
        if marks is not None and len(marks):
            sim_markers(ax, marks, x, y, colour=c, marker=marker, name=name)
            if part is not None and f"{y}_at_D" in part.columns:
                drawn.finite_D |= theory_at_markers(ax, part, marks, x, f"{y}_at_D", colour=c)


def _get(tables: Tables, name: str) -> pd.DataFrame | None:
    return tables.get(name)


def _frozen_line(ax, drawn: _Drawn, *tables: pd.DataFrame | None) -> None:
    """The frozen baseline ``E_frozen`` (``w = 0``, ``D → ∞``) as a grey dashed line, from the first table that
    has it."""
    for t in tables:
        if t is not None and "E_frozen" in t.columns and t["E_frozen"].notna().any():
            ax.axhline(float(t["E_frozen"].dropna().iloc[0]), color="grey", ls="--", lw=1, label=r"frozen ($w=0$)")
            return


#: Fewer converged points than this are drawn as markers alone: a line through two points says nothing of the
#: curve between them and can cross the ERM curves it lies below at every computed point.
MIN_LINE_POINTS = 3


def _bo_line(ax, table: pd.DataFrame | None, x: str, y: str, *, transform=None) -> None:
    if table is None or y not in table.columns:
        return
    t = table.sort_values(x)
    if "converged" in t.columns:
        t = t[t["converged"].astype(bool)]
    t = t[t[y].notna()]
    values = t[y] if transform is None else transform(t[y])
    style = ":" if len(t) >= MIN_LINE_POINTS else "none"
    ax.plot(t[x], values, linestyle=style, color="k", marker="." if style == "none" else None, ms=6, lw=1.4,
            label="Bayes-optimal")


def _seeds(sims: Tables) -> int | None:
    """The seeds per simulated point (the ``seeds`` column of the simulation tables), if one number."""
    values = {int(v) for t in sims.values() if "seeds" in t.columns for v in t["seeds"].dropna()}
    return values.pop() if len(values) == 1 else None


def _finish_figure(fig, drawn: _Drawn, title: str, *, D: Any, Ds, sims: Tables, extra=()) -> None:
    fig.suptitle(title)
    figure_key(fig, key_handles(D=D, Ds=Ds, seeds=_seeds(sims) if D != "inf" else None, finite_D=drawn.finite_D,
                                faded="faded" in drawn.kinds, gap="gap" in drawn.kinds, extra=extra))


def figure1(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: Any = 150, Ds=()) -> list[str]:
    """(a) ``E_pre(α)`` for ``λ ∈ {0.01, 0.1, 1}`` with ``E_pre^BO``; (b) ``E_ft(α')`` for
    ``λ' ∈ {0.05, 0.5, 1}`` with ``E_ft^BO`` and the frozen baseline ``E_frozen``; (c) ``o_w(α')`` with the
    Bayes-optimal overlap ``√q_BO`` (``m = q`` for the posterior mean, ``q0 = 1``)."""
    fig, (a, b, c) = new_figure(3)
    drawn = _Drawn()
    tp, sp = _get(theory, "pretrain"), _get(sims, "pretrain")
    _series(a, drawn, tp, sp, x="alpha", y="E_pre", by="lam", values=(0.01, 0.1, 1.0), fmt=r"$\lambda={}$")
    _bo_line(a, _get(theory, "pretrain_bo"), "alpha", "E_pre_BO")
    finish(a, "alpha", "E_pre", logx=True)
    tf, sf = _get(theory, "finetune"), _get(sims, "finetune")
    for ax, y in ((b, "E_ft"), (c, "o_w")):
        _series(ax, drawn, tf, sf, x="alpha_prime", y=y, by="lam_prime", values=(0.05, 0.5, 1.0),
                fmt=r"$\lambda'={}$")
    _bo_line(b, _get(theory, "finetune_bo"), "alpha_prime", "E_ft_BO")
    _bo_line(c, _get(theory, "finetune_bo"), "alpha_prime", "q_BO", transform=lambda q: q.clip(lower=0) ** 0.5)
    _frozen_line(b, drawn, tf, sf)
    finish(b, "alpha_prime", "E_ft", logx=True)
    finish(c, "alpha_prime", "o_w", logx=True, legend=False)  # the λ' of (b)
    c.set_xlim(b.get_xlim())
    for ax, letter in zip((a, b, c), "abc"):
        panel_letter(ax, letter)
    _finish_figure(fig, drawn, f"Figure 1 ({sigma}): $T=3$, $\\kappa_0=\\kappa=1$, $\\Delta=0.5$; (a) $\\alpha'=3$; "
                   f"(b, c) $\\alpha=0.1$, $\\lambda=0.1$", D=D, Ds=Ds, sims=sims)
    return save(fig, stem)


def figure2(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: Any = 150, Ds=()) -> list[str]:
    """(a) ``E_ft(λ)`` for ``α' ∈ {0.5, 1, 2, 5, 10}``, without (solid) and with (dashed) recalibration
    ``β_W = M/Q``; (b) ``Δ_eff(λ)`` without / with recalibration; (c) ``E_ft(α)`` at ``λ = 0.1``."""
    fig, (a, b, c) = new_figure(3)
    drawn = _Drawn()
    aps = (0.5, 1.0, 2.0, 5.0, 10.0)
    _series(a, drawn, _get(theory, "lam"), _get(sims, "lam"), x="lam", y="E_ft", by="alpha_prime", values=aps,
            fmt=r"$\alpha'={}$")
    _series(a, drawn, _get(theory, "lam_recal"), _get(sims, "lam_recal"), x="lam", y="E_ft", by="alpha_prime",
            values=aps, fmt=None, style="--", marker="s")
    finish(a, "lam", "E_ft", logx=True, ncol=3)
    for i, (name, lab, style) in enumerate((("lam", r"$\beta_W=1$", "-"), ("lam_recal", r"$\beta_W=M/Q$", "--"))):
        _series(b, drawn, _get(theory, name), _get(sims, name), x="lam", y="delta_eff", by="alpha_prime",
                values=(1.0,), fmt=lab, style=style, marker="os"[i], colours=("k",))
    finish(b, "lam", "delta_eff", logx=True)
    _series(c, drawn, _get(theory, "alpha"), _get(sims, "alpha"), x="alpha", y="E_ft", by="alpha_prime", values=aps,
            fmt=r"$\alpha'={}$")
    finish(c, "alpha", "E_ft", logx=True, ncol=3)
    for ax, letter in zip((a, b, c), "abc"):
        panel_letter(ax, letter)
    grey = "0.35"
    recal = (Line2D([], [], color=grey, ls="-", marker="o", mfc="white", label=r"$\beta_W=1$"),
             Line2D([], [], color=grey, ls="--", marker="s", mfc="white", label=r"recalibrated $\beta_W=M/Q$"))
    _finish_figure(fig, drawn, f"Figure 2 ({sigma}): $T=3$, $\\lambda'=0.5$; (a, b) $\\alpha=0.1$; (c) $\\lambda=0.1$",
                   D=D, Ds=Ds, sims=sims, extra=recal)
    return save(fig, stem)


def figure3(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: Any = 150, Ds=()) -> list[str]:
    """``E_ft(λ')`` and ``o_w(λ')`` for fresh (``e = 0``) against reused (``e = 1``) sequences."""
    fig, axes = new_figure(2, width=2.9)
    drawn = _Drawn()
    for ax, y in zip(axes, ("E_ft", "o_w")):
        _series(ax, drawn, _get(theory, "lam_prime"), _get(sims, "lam_prime"), x="lam_prime", y=y, by="reuse",
                values=(0.0, 1.0), fmt="$e={:g}$")
        if y == "E_ft":
            _frozen_line(ax, drawn, _get(theory, "lam_prime"), _get(sims, "lam_prime"))
        finish(ax, "lam_prime", y, logx=True, legend=y == "E_ft")
    axes[1].set_xlim(axes[0].get_xlim())  # o_w has no value where the LoRA is off: keep the same λ' range
    for ax, letter in zip(axes, "ab"):
        panel_letter(ax, letter)
    _finish_figure(fig, drawn, f"Figure 3 ({sigma}): $T=2$, $\\kappa_0=0.5$, $\\kappa=1$, $\\Delta=0.5$, "
                   "$\\alpha=0.2$, $\\lambda=0.1$, $\\alpha'=3$", D=D, Ds=Ds, sims=sims)
    return save(fig, stem)


def figure4(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: Any = 150, Ds=()) -> list[str]:
    """``E_ft(λ')`` and ``Δ_eff(λ')`` for active selection (solid, circles) against a random subset of the
    same size (dashed, squares), ``ρ ∈ {0.04, 0.02, 0.015}``."""
    fig, axes = new_figure(2, width=2.9)
    drawn = _Drawn()
    rhos = (0.04, 0.02, 0.015)
    for ax, y in zip(axes, ("E_ft", "delta_eff")):
        _series(ax, drawn, _get(theory, "lam_prime"), _get(sims, "lam_prime"), x="lam_prime", y=y, by="active_rho",
                values=rhos, fmt=r"$\rho={}$")
        _series(ax, drawn, _get(theory, "lam_prime"), _get(sims, "lam_prime"), x="lam_prime", y=f"{y}_random",
                by="active_rho", values=rhos, fmt=None, style="--", marker="s")
        finish(ax, "lam_prime", y, logx=True, logy=y == "E_ft", ncol=3, legend=y == "E_ft")
    for ax, letter in zip(axes, "ab"):
        panel_letter(ax, letter)
    grey = "0.35"
    kinds = (Line2D([], [], color=grey, ls="-", marker="o", mfc="white", label="active selection"),
             Line2D([], [], color=grey, ls="--", marker="s", mfc="white", label="random subset, same size"))
    _finish_figure(fig, drawn, f"Figure 4 ({sigma}): $T=3$, $\\Delta=0$, $\\bar\\alpha'=100$, $\\alpha=0.1$, "
                   "$\\lambda=0.1$", D=D, Ds=Ds, sims=sims, extra=kinds)
    return save(fig, stem)
