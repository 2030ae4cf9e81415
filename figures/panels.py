"""The four figures of MODEL.md §6, drawn from tidy tables (theory: lines; simulation: markers).

Each ``figureN(theory, sims, *, sigma, stem)`` takes ``{sweep name: DataFrame}`` for the theory and the
simulation sweeps of :mod:`figures.specs` (either may be empty), writes ``<stem>.pdf`` and ``<stem>.png``
and returns their paths.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from figures.plotting import COLOURS, finish, new_figure, save, select, sim_markers, theory_line

Tables = Mapping[str, pd.DataFrame]


def _series(ax, theory: pd.DataFrame | None, sims: pd.DataFrame | None, *, x: str, y: str, by: str, values,
            fmt: str, style: str = "-", marker: str = "o", extra: Mapping[str, object] | None = None) -> None:
    for i, v in enumerate(values):
        c = COLOURS[i % len(COLOURS)]
        sel = {by: v, **(extra or {})}
        name = fmt.format(v)
        if theory is not None and y in theory.columns:
            theory_line(ax, select(theory, **sel), x, y, colour=c, style=style, name=name)
            name = None
        if sims is not None and y in sims.columns:
            sim_markers(ax, select(sims, **sel), x, y, colour=c, marker=marker, name=name)


def _get(tables: Tables, name: str) -> pd.DataFrame | None:
    return tables.get(name)


def _note(D: int | None) -> str:
    lines = "lines: theory (faded: not RS-stable)"
    return f"{lines}, no simulation" if D is None else f"{lines}, markers: simulation D={D}"


def _frozen_line(ax, *tables: pd.DataFrame | None) -> None:
    """The frozen baseline ``E_frozen`` (``w = 0``) as a grey dashed line, from the first table that has it."""
    for t in tables:
        if t is not None and "E_frozen" in t.columns and t["E_frozen"].notna().any():
            ax.axhline(float(t["E_frozen"].dropna().iloc[0]), color="grey", ls="--", lw=1, label="frozen ($w=0$)")
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
    line = len(t) >= MIN_LINE_POINTS
    ax.plot(t[x], values, linestyle=":" if line else "none", color="k", marker=".", ms=3 if line else 6, lw=1.2,
            label="Bayes-optimal")


def figure1(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: int | None = 150) -> list[str]:
    """(a) ``E_pre(α)`` for ``λ ∈ {0.01, 0.1, 1}`` with ``E_pre^BO``; (b) ``E_ft(α')`` for
    ``λ' ∈ {0.05, 0.5, 1}`` with ``E_ft^BO`` and the frozen baseline ``E_frozen``; (c) ``o_w(α')`` with the
    Bayes-optimal overlap ``√q_BO`` (``m = q`` for the posterior mean, ``q0 = 1``)."""
    fig, (a, b, c) = new_figure(3)
    tp, sp = _get(theory, "pretrain"), _get(sims, "pretrain")
    _series(a, tp, sp, x="alpha", y="E_pre", by="lam", values=(0.01, 0.1, 1.0), fmt=r"$\lambda={}$")
    _bo_line(a, _get(theory, "pretrain_bo"), "alpha", "E_pre_BO")
    finish(a, "alpha", "E_pre", logx=True)
    tf, sf = _get(theory, "finetune"), _get(sims, "finetune")
    for ax, y in ((b, "E_ft"), (c, "o_w")):
        _series(ax, tf, sf, x="alpha_prime", y=y, by="lam_prime", values=(0.05, 0.5, 1.0), fmt=r"$\lambda'={}$")
    _bo_line(b, _get(theory, "finetune_bo"), "alpha_prime", "E_ft_BO")
    _bo_line(c, _get(theory, "finetune_bo"), "alpha_prime", "q_BO", transform=lambda q: q.clip(lower=0) ** 0.5)
    _frozen_line(b, tf, sf)
    finish(b, "alpha_prime", "E_ft", logx=True)
    finish(c, "alpha_prime", "o_w", logx=True, legend=False)
    fig.suptitle(f"Figure 1 ({sigma}): T=3, κ0=κ=1, Δ=0.5, α=0.1 (b, c: λ=0.1), α'=3 (a); "
                 + _note(D), fontsize=8)
    return save(fig, stem)


def figure2(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: int | None = 150) -> list[str]:
    """(a) ``E_ft(λ)`` for ``α' ∈ {0.5, 1, 2, 5, 10}``, without (solid) and with (dashed) recalibration
    ``β_W = M/Q``; (b) ``Δ_eff(λ)`` without / with recalibration; (c) ``E_ft(α)`` at ``λ = 0.1``."""
    fig, (a, b, c) = new_figure(3)
    aps = (0.5, 1.0, 2.0, 5.0, 10.0)
    _series(a, _get(theory, "lam"), _get(sims, "lam"), x="lam", y="E_ft", by="alpha_prime", values=aps,
            fmt=r"$\alpha'={}$")
    _series(a, _get(theory, "lam_recal"), _get(sims, "lam_recal"), x="lam", y="E_ft", by="alpha_prime",
            values=aps, fmt="_", style="--", marker="s")
    finish(a, "lam", "E_ft", logx=True)
    for i, (name, lab, style) in enumerate((("lam", r"$\beta_W=1$", "-"), ("lam_recal", r"$\beta_W=M/Q$", "--"))):
        _series(b, _get(theory, name), _get(sims, name), x="lam", y="delta_eff", by="alpha_prime", values=(1.0,),
                fmt=lab, style=style, marker="os"[i])
    finish(b, "lam", "delta_eff", logx=True)
    _series(c, _get(theory, "alpha"), _get(sims, "alpha"), x="alpha", y="E_ft", by="alpha_prime", values=aps,
            fmt=r"$\alpha'={}$")
    finish(c, "alpha", "E_ft", logx=True, legend=False)
    fig.suptitle(f"Figure 2 ({sigma}): T=3, λ'=0.5, α=0.1 (a, b), λ=0.1 (c); dashed: recalibrated β_W = M/Q; "
                 + _note(D), fontsize=8)
    return save(fig, stem)


def figure3(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: int | None = 150) -> list[str]:
    """``E_ft(λ')`` and ``o_w(λ')`` for fresh (``e = 0``) against reused (``e = 1``) sequences."""
    fig, axes = new_figure(2)
    for ax, y in zip(axes, ("E_ft", "o_w")):
        _series(ax, _get(theory, "lam_prime"), _get(sims, "lam_prime"), x="lam_prime", y=y, by="reuse",
                values=(0.0, 1.0), fmt="$e={}$")
        if y == "E_ft":
            _frozen_line(ax, _get(theory, "lam_prime"), _get(sims, "lam_prime"))
        finish(ax, "lam_prime", y, logx=True)
    fig.suptitle(f"Figure 3 ({sigma}): T=2, κ0=0.5, κ=1, Δ=0.5, α=0.2, α'=3\n" + _note(D), fontsize=8)
    return save(fig, stem)


def figure4(theory: Tables, sims: Tables, *, sigma: str, stem: str, D: int | None = 150) -> list[str]:
    """``E_ft(λ')`` and ``Δ_eff(λ')`` for active selection (solid, circles) against a random subset of the
    same size (dashed, squares), ``ρ ∈ {0.04, 0.02, 0.015}``."""
    fig, axes = new_figure(2)
    rhos = (0.04, 0.02, 0.015)
    for ax, y in zip(axes, ("E_ft", "delta_eff")):
        _series(ax, _get(theory, "lam_prime"), _get(sims, "lam_prime"), x="lam_prime", y=y, by="active_rho",
                values=rhos, fmt=r"active $\rho={}$")
        _series(ax, _get(theory, "lam_prime"), _get(sims, "lam_prime"), x="lam_prime", y=f"{y}_random",
                by="active_rho", values=rhos, fmt="_", style="--", marker="s")
        finish(ax, "lam_prime", y, logx=True, logy=y == "E_ft", legend=y == "E_ft")
    fig.suptitle(f"Figure 4 ({sigma}): T=3, Δ=0, ᾱ'=100, α=0.1, λ=0.1\nsolid/circles: active; dashed/squares: "
                 "random subset of the same size; " + _note(D), fontsize=8)
    return save(fig, stem)
