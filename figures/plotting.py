"""Plotting from tidy tables: theory as lines, simulations as markers with error bars in the same colour.

Every function draws on a given ``Axes`` from DataFrames with one row per parameter point (the tables
written by ``lora-attn sweep``), so a figure script only selects rows and arranges panels.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
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


def theory_line(ax, table: pd.DataFrame, x: str, y: str, *, colour: str, style: str = "-", name: str | None = None,
                **kw: Any) -> None:
    """Theory ``y(x)`` as a line; points where the solver did not converge are left out (and so visible as gaps).
    For an observable of the fine-tuning fixed point (:data:`model.observables.FINETUNE_FIXED_POINT`, or its
    ``_random`` control; ``delta_eff``, ``E_frozen`` and the pre-training observables are not), the line is faded
    where that fixed point fails the replica-symmetry check (``rs_stable`` false: the RS numbers are not expected
    to be exact, :func:`theory.stages.rs_stability.rs_stability`), from its stable neighbours on; the line style
    is kept."""
    t = table.sort_values(x)
    if "converged" in t.columns:
        t = t.assign(**{y: t[y].where(t["converged"].astype(bool))})
    concerned = y.removesuffix("_random") in FINETUNE_FIXED_POINT and "rs_stable" in t.columns
    unstable = (t["rs_stable"] == False).to_numpy() if concerned else np.zeros(len(t), bool)  # noqa: E712
    if not unstable.any():
        ax.plot(t[x], t[y], style, color=colour, label=name, **kw)
        return
    near = unstable | np.r_[unstable[1:], False] | np.r_[False, unstable[:-1]]
    ax.plot(t[x], t[y].where(~unstable), style, color=colour, label=name, **kw)
    ax.plot(t[x], t[y].where(near), style, color=colour, alpha=UNSTABLE_ALPHA, **kw)


#: Opacity of a theory line where its fine-tuning fixed point is not RS-stable.
UNSTABLE_ALPHA = 0.3


def sim_markers(ax, table: pd.DataFrame, x: str, y: str, *, colour: str, marker: str = "o", name: str | None = None,
                **kw: Any) -> None:
    """Simulation ``y(x)`` as markers with ``y_sem`` error bars."""
    t = table.sort_values(x)
    err = t[f"{y}_sem"] if f"{y}_sem" in t.columns else None
    ax.errorbar(t[x], t[y], yerr=err, fmt=marker, color=colour, mfc="white", ms=5, capsize=2, lw=1,
                label=name, **kw)


def finish(ax, x: str, y: str, *, logx: bool = False, logy: bool = False, legend: bool = True) -> None:
    """Axis labels, scales and a compact legend."""
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False)


def new_figure(n_panels: int, *, width: float = 3.4) -> tuple[plt.Figure, Sequence[Any]]:
    """A row of ``n_panels`` axes."""
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, 2.9), squeeze=False)
    return fig, list(axes[0])


def save(fig: plt.Figure, path_stem: str) -> list[str]:
    """Write ``<stem>.pdf`` and ``<stem>.png`` (vector + raster); returns the paths."""
    fig.tight_layout()
    paths = [f"{path_stem}.pdf", f"{path_stem}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=160)
    plt.close(fig)
    return paths
