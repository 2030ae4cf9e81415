"""Plotting from tidy tables: theory as lines, simulations as markers with error bars in the same colour.

Every function draws on a given ``Axes`` from DataFrames with one row per parameter point (the tables
written by ``lora-attn sweep``), so a figure script only selects rows and arranges panels.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from model.observables import FINETUNE_FIXED_POINT  # noqa: E402

#: Colour cycle used for the series of a panel (colour-blind safe, Okabe–Ito).
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

LABELS = {
    "E_pre": r"$E_{\rm pre}$", "L_pre": r"$L_{\rm pre}$", "E_ft": r"$E_{\rm ft}$", "L_ft": r"$L_{\rm ft}$",
    "E_frozen": r"$E_{\rm frozen}$", "delta_eff": r"$\Delta_{\rm eff}$", "o_w": r"$o_w$", "q": r"$q$",
    "Q": r"$Q$", "M": r"$M$", "alpha": r"$\alpha$", "alpha_prime": r"$\alpha'$", "lam": r"$\lambda$",
    "lam_prime": r"$\lambda'$", "reuse": r"$e$", "active_rho": r"$\rho$", "E_pre_BO": r"$E_{\rm pre}^{\rm BO}$",
    "E_ft_BO": r"$E_{\rm ft}^{\rm BO}$", "beta_W": r"$\beta_W$",
}


def label(name: str) -> str:
    """The TeX label of an observable or parameter name (the name itself when unknown)."""
    return LABELS.get(name, name)


def select(table: pd.DataFrame, **fixed: Any) -> pd.DataFrame:
    """Rows of ``table`` whose columns equal ``fixed`` (floats compared with a relative tolerance of 1e-9)."""
    mask = np.ones(len(table), dtype=bool)
    for col, value in fixed.items():
        column = table[col]
        if value is None:
            mask &= column.isna().to_numpy()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            mask &= np.isclose(column.astype(float).to_numpy(), float(value), rtol=1e-9, atol=0.0)
        else:
            mask &= (column == value).to_numpy()
    return table[mask]


#: Opacity of a theory line where its fine-tuning fixed point is not RS-stable.
UNSTABLE_ALPHA = 0.3
#: Line width of the theory lines.
THEORY_LW = 1.4
#: Height (axes fraction) of the marks of a non-converged theory point.
GAP_MARK_Y = 0.04


def theory_line(ax, table: pd.DataFrame, x: str, y: str, *, colour: str, style: str = "-", name: str | None = None,
                **kw: Any) -> set[str]:
    """Theory ``y(x)`` as a line; returns what it drew besides a plain line: ``"faded"``, ``"gap"``.

    Points where the solver did not converge are left out (a gap) and marked by a small ``×`` in the line's
    colour near the bottom of the axes. For an observable of the fine-tuning fixed point
    (:data:`model.observables.FINETUNE_FIXED_POINT`, its ``_random`` control or its finite-``D`` value ``_at_D``;
    ``delta_eff``, ``E_frozen`` and the pre-training observables are not), the line is faded where that fixed
    point fails the replica-symmetry check (``rs_stable`` false: the RS numbers are not expected to be exact,
    :func:`theory.stages.rs_stability.rs_stability`), from its stable neighbours on; the line style is kept."""
    drawn: set[str] = set()
    t = table.sort_values(x)
    kw.setdefault("lw", THEORY_LW)
    if "converged" in t.columns:
        failed = ~t["converged"].astype(bool).to_numpy()
        t = t.assign(**{y: t[y].where(~failed)})
        if failed.any():
            ax.plot(t[x].to_numpy()[failed], np.full(failed.sum(), GAP_MARK_Y), "x", color=colour, ms=3.5, mew=0.9,
                    transform=ax.get_xaxis_transform(), clip_on=False)
            drawn.add("gap")
    base = y.removesuffix("_at_D").removesuffix("_random")
    concerned = base in FINETUNE_FIXED_POINT and "rs_stable" in t.columns
    unstable = (t["rs_stable"] == False).to_numpy() if concerned else np.zeros(len(t), bool)  # noqa: E712
    unstable = unstable & t[y].notna().to_numpy()
    if not unstable.any():
        ax.plot(t[x], t[y], style, color=colour, label=name, **kw)
        return drawn
    near = unstable | np.r_[unstable[1:], False] | np.r_[False, unstable[:-1]]
    ax.plot(t[x], t[y].where(~unstable), style, color=colour, label=name, **kw)
    ax.plot(t[x], t[y].where(near), style, color=colour, alpha=UNSTABLE_ALPHA, **kw)
    return drawn | {"faded"}


def theory_at_markers(ax, theory: pd.DataFrame, sims: pd.DataFrame, x: str, y: str, *, colour: str) -> bool:
    """The theory's ``y`` (e.g. ``E_ft_at_D``, the linear test error at the simulations' ``D``) at the abscissae
    of the simulation markers, as short horizontal bars: the value each marker is to be read against. Only
    where the theory was computed at that abscissa (the dense lines include the markers' values); whether any
    was drawn."""
    xs = np.asarray(theory[x], dtype=float)
    px, py = [], []
    for v in np.unique(np.asarray(sims[x], dtype=float)):
        hit = np.isclose(xs, v, rtol=1e-9, atol=0.0)
        if "converged" in theory.columns:
            hit &= theory["converged"].astype(bool).to_numpy()
        values = np.asarray(theory[y], dtype=float)[hit]
        if len(values) and np.isfinite(values[0]):
            px.append(v)
            py.append(values[0])
    if px:
        ax.plot(px, py, ls="none", marker="_", ms=11, mew=1.6, color=colour, zorder=4)
    return bool(px)


def sim_markers(ax, table: pd.DataFrame, x: str, y: str, *, colour: str, marker: str = "o", name: str | None = None,
                **kw: Any) -> None:
    """Simulation ``y(x)`` as markers with ``y_sem`` error bars."""
    t = table.sort_values(x)
    err = t[f"{y}_sem"] if f"{y}_sem" in t.columns else None
    ax.errorbar(t[x], t[y], yerr=err, fmt=marker, color=colour, mfc="white", ms=4.5, mew=1.0, capsize=2, lw=1,
                label=name, zorder=3, **kw)


def _minor_label(ax, v: float) -> str:
    """The label of a minor tick ``v`` of a log ``y`` axis: at mantissas 2 and 5 where the axis spans more than a
    decade, at 2–6 and 8 down to half a decade, at every one below (else a short axis shows one label)."""
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    keep = (2, 5) if decades > 1 else (2, 3, 4, 5, 6, 8) if decades > 0.5 else tuple(range(1, 10))
    return f"{v:g}" if round(v / 10 ** np.floor(np.log10(v))) in keep else ""


def finish(ax, x: str, y: str, *, logx: bool = False, logy: bool = False, legend: bool = True, ncol: int = 2) -> None:
    """Axis labels, scales, and the panel's legend above the axes (outside the data: it covers nothing)."""
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
        # plain numbers (0.6, 1, 2, 5) rather than 6×10⁻¹: a log axis here spans one or two decades
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _minor_label(ax, v)))
    ax.margins(x=0.02)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=ncol, frameon=False, borderaxespad=0.0,
                  handlelength=1.8, columnspacing=1.0, handletextpad=0.4, labelspacing=0.25)


def panel_letter(ax, letter: str) -> None:
    """``(a)``, ``(b)``, … above the top-left corner of the panel's frame, clear of the tick labels and of the
    legend (which starts at the frame's left edge)."""
    ax.annotate(f"({letter})", xy=(0.0, 1.0), xycoords="axes fraction", xytext=(-3, 5), textcoords="offset points",
                ha="right", va="bottom", fontweight="bold")


#: The figures' text sizes and line widths (points), set on every figure :func:`new_figure` makes.
STYLE = {"font.size": 8, "axes.labelsize": 9, "axes.titlesize": 9, "legend.fontsize": 7, "xtick.labelsize": 7.5,
         "ytick.labelsize": 7.5, "figure.titlesize": 9, "axes.linewidth": 0.8, "lines.linewidth": THEORY_LW,
         "pdf.fonttype": 42}
# figures/ is the only user of this module: its figures share one style (ticks and legends read it when drawn)
matplotlib.rcParams.update(STYLE)


def new_figure(n_panels: int, *, width: float = 2.55, height: float = 2.9) -> tuple[plt.Figure, Sequence[Any]]:
    """A row of ``n_panels`` axes, ``width × height`` inches each (legends above the axes and the figure's
    key below them included), laid out by matplotlib's constrained layout."""
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def key_handles(*, D: Any, Ds: Sequence[int] = (), seeds: int | None = None, finite_D: bool, faded: bool,
                gap: bool, extra: Sequence[Any] = ()) -> list[Any]:
    """Handles of the figure's key (:func:`figure_key`): what lines, thin lines, markers, faded parts and ``×``
    marks mean."""
    from matplotlib.lines import Line2D

    grey = "0.35"
    handles = [Line2D([], [], color=grey, lw=THEORY_LW, label=r"theory ($D\to\infty$)")]
    if finite_D and D not in (None, "inf"):
        handles.append(Line2D([], [], color=grey, ls="none", marker="_", ms=11, mew=1.6,
                              label=f"theory at $D={D}$ (linear test errors: exact)"))
    if D == "inf":
        handles.append(Line2D([], [], color=grey, marker="o", mfc="white", ls="none",
                              label=r"simulation extrapolated to $D\to\infty$ ($a+b/D$, $D=" + ",".join(map(str, Ds))
                              + "$)"))
    elif D is not None:
        handles.append(Line2D([], [], color=grey, marker="o", mfc="white", ls="none",
                              label=f"simulation $D={D}$" + ("" if seeds is None else f", {seeds} seeds")
                              + ", ±1 s.e."))
    handles += list(extra)
    if faded:
        handles.append(Line2D([], [], color=grey, lw=THEORY_LW, alpha=UNSTABLE_ALPHA,
                              label="faded: replica symmetry unstable"))
    if gap:
        handles.append(Line2D([], [], color=grey, marker="x", ms=3.5, ls="none",
                              label="×, gap: fixed point not converged"))
    return handles


def figure_key(fig: plt.Figure, handles: Sequence[Any], *, ncol: int = 3) -> None:
    """The figure's key below the panels (outside every axes), in as many columns (up to ``ncol``) as the
    figure's width holds."""
    width = fig.bbox.width
    renderer = fig.canvas.get_renderer()
    for n in range(min(ncol, len(handles)), 0, -1):
        key = fig.legend(handles=list(handles), loc="outside lower center", ncol=n, frameon=False,
                         handlelength=2.0, columnspacing=1.2, fontsize=7)
        if n == 1 or key.get_window_extent(renderer).width <= 0.98 * width:
            return
        key.remove()


def save(fig: plt.Figure, path_stem: str) -> list[str]:
    """Write ``<stem>.pdf`` and ``<stem>.png`` (vector + raster); returns the paths."""
    paths = [f"{path_stem}.pdf", f"{path_stem}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=200)
    plt.close(fig)
    return paths
