"""Figure 7: which LoRA rank, from how much data (MODEL.md §8). Theory only.

For one σ, at the figure-3 setting (``T = 2, Δ = 0.5, κ0 = 0.5, κ = 1, α = 0.2, λ = 0.1``; ``λ' = 0.5``) and a
rank-2 teacher (``r* = 2``), against ``α'``:

(a) ``E_ft`` of a LoRA of rank ``r ∈ {1, 2, 4}`` (under-, exactly and over-parametrised), with ``E_frozen`` (no
    adaptation);
(b) the subspace overlap ``o_U`` for the same ranks;
(c) the ``E_ft``-optimal rank among ``r ∈ {1, 2, 3, 4}`` (:func:`theory.optimal_rank`: the same solves).

The pre-training theory is solved once (it does not involve the LoRA) and fed to every fine-tuning solve
(``stage="finetune"``). Where a fixed point did not converge the line has a gap (a ``×`` near the bottom), and it
is faded where the fixed point fails the local replicon check (``rs_stable_local``). The Bayes-optimal rank-``r*``
baseline is drawn in black (:mod:`theory.bayes.finetune_rank`): ``E_ft_BO`` in (a) and the Bayes-optimal subspace
overlap ``o_U = √q_BO`` (``q_BO = Tr q/r*``, ``m = q``) in (b), along its isotropic curve ``α'(s)``
(:func:`theory.bayes.finetune_rank.curve_point_rank`: one state-evolution map evaluation a point, with the keys and
Monte-Carlo sizes of the solver that ``theory.solve`` calls, so each point is a fixed point of that solver's map
restricted to ``q = sI`` (at ``α' = 3``: curve ``s = 0.95666`` at ``α' = 3.0011``, solver ``Tr q/2 = 0.9566``), at
:data:`BAYES_POINTS` overlaps ``s`` spread evenly in ``−log(1 − s)``; below the first ``α'`` of the curve, the
uninformed ``q = 0``). The matrix state evolution keeps ``q`` isotropic (``q = sI``): measured at ``α' = 1, 3, 10``,
both σ, from ``q = 0.5 I`` and from ``diag(0.9, 0.05)`` it ends at one isotropic point, ``‖q − sI‖_F`` within
its Monte-Carlo error (``tests/theory/bayes/test_finetune_rank_bo.py``).

Tables: ``<out>/fig7/<σ>-rank.csv`` (one row per ``α'`` and ``r``; ``best_rank`` per ``α'``) and
``<out>/fig7/<σ>-bayes.csv`` (the Bayes-optimal curve, :func:`bayes_curve`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from figures.cached import Cached, finetune_row, pretrain_state
from model.params import Params
from model.tables import write_table

NUMBER = 7
#: Ranks drawn in panels (a), (b); the optimal rank of (c) is chosen among :data:`CHOICE_RANKS`.
DRAWN_RANKS = (1, 2, 4)
CHOICE_RANKS = (1, 2, 3, 4)
TEACHER_RANK = 2
#: The ``α'`` range of the figure and the overlaps ``s = 1 − e^{−u}`` of the Bayes-optimal curve (``u`` evenly
#: spaced); the points whose ``α'(s)`` falls outside the range are dropped.
ALPHA_RANGE = (0.5, 20.0)
BAYES_POINTS = 48
BAYES_U = (0.02, 7.0)


@dataclass(frozen=True)
class RankSpec:
    """What figure 7 computes for one σ."""

    base: Params
    alpha_primes: tuple[float, ...]
    ranks: tuple[int, ...]
    n_mc: int
    max_steps: int


def spec(sigma: str, quick: bool = False) -> RankSpec:
    """The grid of figure 7 (``quick``: three ``α'``, fewer draws)."""
    base = Params(T=2, sigma=sigma, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, lam=0.1, lam_prime=0.5,
                  teacher_rank=TEACHER_RANK)
    if quick:
        return RankSpec(base, (2.0, 5.0, 12.0), CHOICE_RANKS, n_mc=300, max_steps=60)
    return RankSpec(base, (2.0, 3.0, 5.0, 10.0, 20.0), CHOICE_RANKS, n_mc=400, max_steps=60)


def compute(sigma: str, out_dir: str | Path, *, quick: bool = False) -> pd.DataFrame:
    """The table of figure 7 for ``sigma`` (cached per point in ``<out>/cache/points``), also written as CSV."""
    s = spec(sigma, quick)
    cached = Cached(Path(out_dir) / "cache" / "points", f"fig{NUMBER}")
    pre = pretrain_state(cached, s.base)
    rows = []
    for a in s.alpha_primes:
        for r in s.ranks:
            p = s.base.replace(alpha_prime=float(a), rank=r)
            if pre is None:
                row = {"converged": False}
            else:
                row = finetune_row(cached, p, pre, n_mc=s.n_mc, max_steps=s.max_steps)
            value = row.get("E_ft", math.nan)
            rows.append({"alpha_prime": float(a), "rank": r, "teacher_rank": TEACHER_RANK,
                         "E_ft": value if row.get("converged") else math.nan,
                         "E_frozen": row.get("E_frozen", math.nan),
                         "o_U": row.get("o_U", math.nan) if row.get("converged") else math.nan,
                         "tr_q": row.get("tr_q", math.nan) if row.get("converged") else math.nan,
                         "converged": bool(row.get("converged")), "rs_stable": row.get("rs_stable"),
                         "replicon": row.get("replicon", math.nan)})
    table = pd.DataFrame(rows)
    table["best_rank"] = table["alpha_prime"].map(_best_ranks(table))
    folder = Path(out_dir) / f"fig{NUMBER}"
    folder.mkdir(parents=True, exist_ok=True)
    write_table(table, str(folder / f"{sigma}-rank.csv"))
    return table


def bayes_curve(sigma: str, out_dir: str | Path, *, quick: bool = False) -> pd.DataFrame:
    """The Bayes-optimal rank-``r*`` curve of figure 7 (module doc), cached per point, written as CSV.

    Columns: ``alpha_prime, q_BO, o_U_BO = √q_BO, E_ft_BO, E_ft_BO_sem, alpha_prime_sem, G_aniso`` (relative MC
    anisotropy of ``E[g_outᵀ g_out]`` at ``q = sI``), ``ess_min``, ``converged``, and ``monotone`` (``α'`` increases
    with ``s`` up to this point; where it does not, several fixed points coexist and the curve is not the
    Bayes-optimal one there)."""
    from theory.bayes.finetune_rank import bayes_error_rank, curve_point_rank

    s_spec = spec(sigma, quick)
    cached = Cached(Path(out_dir) / "cache" / "points", f"fig{NUMBER}")
    pre = pretrain_state(cached, s_spec.base)
    n_points, mc = (16, dict(n_outer=500, n_inner=256, n_outer_error=1000, n_inner_error=128)) if quick else \
        (BAYES_POINTS, dict(n_outer=4000, n_inner=1024, n_outer_error=4000, n_inner_error=256))
    rows = []
    if pre is not None:
        p = s_spec.base.replace(rank=TEACHER_RANK)
        for u in np.linspace(*BAYES_U, n_points):
            s = float(1.0 - np.exp(-u))

            def compute(s=s):
                c = curve_point_rank(p, pre, s, **mc)
                return {"alpha_prime": c.alpha_prime, "q_BO": c.s, "E_ft_BO": c.E_ft_BO, "E_ft_BO_sem": c.E_ft_BO_se,
                        "alpha_prime_sem": c.alpha_prime_se, "G_aniso": c.G_aniso / c.G, "ess_min": c.ess_min}

            rows.append(cached("bayes_rank_curve", p, {"s": s, **mc}, compute))
    table = pd.DataFrame(rows, columns=["alpha_prime", "q_BO", "E_ft_BO", "E_ft_BO_sem", "alpha_prime_sem",
                                        "G_aniso", "ess_min"])
    table["monotone"] = table["alpha_prime"].cummax().eq(table["alpha_prime"])
    lo, hi = ALPHA_RANGE
    # the curve starts at the weak-recovery α'_c; below it (if that is inside the range) q = 0
    uninformed_below = pre is not None and (table.empty or table["alpha_prime"].min() > lo)
    table = table[(table["alpha_prime"] >= lo) & (table["alpha_prime"] <= hi)]
    if uninformed_below:
        E0, E0_se = bayes_error_rank(np.zeros((TEACHER_RANK, TEACHER_RANK)), s_spec.base.replace(rank=TEACHER_RANK),
                                     pre, n_outer=mc["n_outer_error"], n_inner=mc["n_inner_error"], seed=1)
        uninformed = pd.DataFrame([{"alpha_prime": lo, "q_BO": 0.0, "E_ft_BO": E0, "E_ft_BO_sem": E0_se,
                                    "alpha_prime_sem": 0.0, "G_aniso": math.nan, "ess_min": math.nan,
                                    "monotone": True}])
        table = pd.concat([uninformed, table], ignore_index=True)
    table = table.sort_values("alpha_prime").reset_index(drop=True)
    table["o_U_BO"] = np.sqrt(table["q_BO"].clip(lower=0.0))
    table["converged"] = table["E_ft_BO"].notna()
    folder = Path(out_dir) / f"fig{NUMBER}"
    folder.mkdir(parents=True, exist_ok=True)
    write_table(table, str(folder / f"{sigma}-bayes.csv"))
    return table


def _best_ranks(table: pd.DataFrame) -> dict[float, float]:
    """Per ``α'``, the rank of lowest ``E_ft`` among the converged ones (NaN if none)."""
    out = {}
    for a, g in table.groupby("alpha_prime"):
        ok = g[g["E_ft"].notna()]
        out[a] = float(ok.loc[ok["E_ft"].idxmin(), "rank"]) if len(ok) else math.nan
    return out


def draw(table: pd.DataFrame, *, sigma: str, stem: str, bayes: pd.DataFrame | None = None) -> list[str]:
    """Panels (a)–(c) of the module doc (the Bayes-optimal line where ``bayes``, :func:`bayes_curve`, is given);
    writes ``<stem>.pdf`` and ``.png``."""
    from figures.plotting import COLOURS, finish, new_figure, panel_letter, save, theory_line

    fig, (ax_e, ax_o, ax_r) = new_figure(3)
    for colour, r in zip(COLOURS, DRAWN_RANKS):
        g = table[table["rank"] == r]
        name = f"$r = {r}$" + (" $= r^*$" if r == TEACHER_RANK else "")
        theory_line(ax_e, g, "alpha_prime", "E_ft", colour=colour, name=name)
        ax_e.plot(g["alpha_prime"], g["E_ft"], "o", color=colour, ms=2.5)
        # o_U is o_w's rank-r counterpart: drawn under that name so that it fades where the fixed point is unstable
        theory_line(ax_o, g.rename(columns={"o_U": "o_w"}), "alpha_prime", "o_w", colour=colour, name=name)
        ax_o.plot(g["alpha_prime"], g["o_U"], "o", color=colour, ms=2.5)
    if bayes is not None and len(bayes):
        b = bayes[bayes["converged"].astype(bool)].sort_values("alpha_prime")
        ax_e.plot(b["alpha_prime"], b["E_ft_BO"], "--", color="k", lw=1.2,
                  label=f"Bayes-optimal ($r^* = {TEACHER_RANK}$)")
        ax_o.plot(b["alpha_prime"], b["o_U_BO"], "--", color="k", lw=1.2, label="Bayes-optimal")
    frozen = table.groupby("alpha_prime")["E_frozen"].first()
    ax_e.plot(frozen.index, frozen.to_numpy(), ":", color="grey", label=r"$E_{\rm frozen}$")
    finish(ax_e, "alpha_prime", "E_ft", logx=True)
    finish(ax_o, "alpha_prime", "o_w", logx=True)
    ax_o.set_ylabel(r"$o_U$")
    best = table.groupby("alpha_prime")["best_rank"].first()
    ax_r.step(best.index, best.to_numpy(), where="mid", color="k", label=r"$\arg\min_r E_{\rm ft}$")
    ax_r.plot(best.index, best.to_numpy(), "o", color="k", ms=3)
    ax_r.axhline(TEACHER_RANK, color="grey", ls=":", lw=0.8, label=f"$r^* = {TEACHER_RANK}$")
    ax_r.set_yticks(list(CHOICE_RANKS))
    ax_r.set_ylim(min(CHOICE_RANKS) - 0.5, max(CHOICE_RANKS) + 0.5)
    finish(ax_r, "alpha_prime", "rank", logx=True)
    ax_r.set_ylabel(r"optimal rank $r$")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    ticks = sorted(table["alpha_prime"].unique())
    for ax, letter in zip((ax_e, ax_o, ax_r), "abc"):
        # the Bayes-optimal line starts at α' = 0.5, below the ranks' grid
        low = [a for a in (0.5, 1.0) if ax is not ax_r and bayes is not None and len(bayes) and a < min(ticks)]
        ax.set_xticks(low + ticks)
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        panel_letter(ax, letter)
    fig.suptitle(f"LoRA rank against α' (σ = {sigma}, r* = {TEACHER_RANK}; theory; faded: RS-unstable)")
    return save(fig, stem)


def make(sigma: str, out_dir: str | Path, *, quick: bool = False) -> list[str]:
    """Compute (cached) and draw figure 7 for ``sigma`` into ``out_dir``; returns the written figure paths."""
    out_dir = Path(out_dir)
    table = compute(sigma, out_dir, quick=quick)
    bayes = bayes_curve(sigma, out_dir, quick=quick)
    return draw(table, sigma=sigma, stem=str(out_dir / f"fig{NUMBER}_{sigma}"), bayes=bayes)


def best_rank_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ``α'``: ``E_ft`` of each rank side by side, ``E_frozen`` and the optimal rank (for the README)."""
    wide = table.pivot(index="alpha_prime", columns="rank", values="E_ft")
    wide.columns = [f"E_ft_r{c}" for c in wide.columns]
    wide["E_frozen"] = table.groupby("alpha_prime")["E_frozen"].first()
    wide["best_rank"] = table.groupby("alpha_prime")["best_rank"].first()
    return wide.reset_index().replace({np.nan: math.nan})
