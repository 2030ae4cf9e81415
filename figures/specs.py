"""The figure set of MODEL.md §6 as data: which sweeps feed which panel.

A :class:`Sweep` is a base parameter point plus axes (their Cartesian product is computed) and a *kind*:

- ``"theory"``: :func:`theory.solve` at every point (``stage``, ``bayes`` as given), drawn as lines;
- ``"bayes_pretrain"``: the Bayes-optimal pre-training baseline alone (``Q_BO``, ``E_pre_BO``; cheap, and
  available for both ``σ`` even where the ERM pre-training theory is not);
- ``"bayes_finetune_curve"``: the Bayes-optimal fine-tuning curve along ``α'`` at the pre-training of ``base``,
  parametrised by its overlap (:mod:`theory.bayes.finetune_curve`: one state-evolution map evaluation a point);
- ``"sim"``: :func:`simulate.run` at ``D`` (default 150) with a few seeds, drawn as markers with error bars.

A theory sweep with a ``line`` (:class:`figures.lines.Line`) is a set of dense lines: one per point of its
axes, each computed along ``line.name`` on an adaptive grid (at least ``line.n_min`` points, refined where the
line bends or its fixed point changes kind; :mod:`figures.lines`). Several sweeps may feed one panel table
(``table``): their rows are concatenated. Pre-training is solved once per pre-training parameter point and
shared by every line that needs it (:func:`figures.compute.compute_table`).
Simulation markers are placed where pre-training weights can be shared (the pre-training of a point depends on
no fine-tuning parameter and is cached). ``quick`` lines are sparse versions for a smoke run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from figures.lines import Line
from model.params import Params

KINDS = ("theory", "bayes_pretrain", "bayes_finetune_curve", "sim")


@dataclass(frozen=True)
class Sweep:
    """``name``: file stem; ``base``: the fixed parameters; ``axes``: ``((param, values), ...)``;
    ``kind``: see the module doc; ``table``: the panel table it feeds (default ``name``);
    ``stage``/``bayes``: passed to :func:`theory.solve` for ``kind="theory"``; ``line``: the dense axis of a
    theory sweep (its lines are the points of ``axes``), or ``None`` for a plain grid."""

    name: str
    base: Params
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    kind: str = "theory"
    table: str | None = None
    stage: str = "both"
    bayes: Any = False
    line: Line | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind = {self.kind!r} is unknown: allowed one of {', '.join(KINDS)}")

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def n_points(self) -> int:
        """Points of the grid (of a dense sweep: its number of lines)."""
        return int(np.prod([len(v) for _, v in self.axes]))


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its number, title, and the theory / simulation sweeps behind its panels."""

    number: int
    title: str
    theory: tuple[Sweep, ...]
    simulation: tuple[Sweep, ...] = field(default=())


#: Figure 1 (MODEL.md §6) — the base point of figures 1 and 2.
FIG1 = dict(T=3, kappa0=1.0, kappa=1.0, delta=0.5, alpha=0.1, alpha_prime=3.0, lam=0.1, lam_prime=0.5)
LAMS = (0.01, 0.1, 1.0)
LAM_PRIMES = (0.05, 0.5, 1.0)
ALPHA_PRIMES_FIG2 = (0.5, 1.0, 2.0, 5.0, 10.0)
FIG3 = dict(T=2, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, alpha_prime=3.0, lam=0.1, lam_prime=0.5)
FIG4 = dict(T=3, delta=0.0, pool_ratio=100.0, alpha=0.1, lam=0.1, lam_prime=0.5)
RHOS = (0.04, 0.02, 0.015)


def dense(name: str, lo: float, hi: float, observables: tuple[str, ...], *, quick: bool = False,
          log: bool = True) -> Line:
    """A dense line along ``name`` (≥ 30 points; quick: ≥ 8) refined on ``observables``."""
    if quick:
        return Line(name, lo, hi, log=log, n_min=8, n_coarse=5, max_points=10, observables=observables)
    return Line(name, lo, hi, log=log, observables=observables)


def figure_specs(sigma: str, *, quick: bool = False) -> dict[int, FigureSpec]:
    """The four figures of MODEL.md §6 for activation ``sigma`` (defaults: β = 1, κ0 = κ = 1, Δ = 0.5, e = 0)."""
    fig1 = Params(sigma=sigma, **FIG1)
    fig3 = Params(sigma=sigma, **FIG3)
    fig4 = Params(sigma=sigma, **FIG4)
    aps2 = (1.0, 5.0) if quick else ALPHA_PRIMES_FIG2
    # below α' ≈ 0.5 the fine-tuning fixed point is not unique or not reached (λ' = 0.05: both σ), and a point
    # that does not converge costs the whole iteration budget (≈ 30–90 s)
    # quick: a smoke run leaves out the ends where a point can take minutes (small α', small λ' softmax)
    ap_lo, lp_lo = (1.0, 0.1) if quick else (0.5, 0.003)
    alpha_line = dense("alpha", 0.01, 0.5, ("E_pre",), quick=quick)
    ap_line = dense("alpha_prime", ap_lo, 20.0, ("E_ft", "o_w"), quick=quick)
    lam_line = dense("lam", 0.003, 3.0, ("E_ft", "delta_eff"), quick=quick)
    lp_line = dense("lam_prime", lp_lo, 30.0, ("E_ft", "o_w"), quick=quick)
    # markers: pre-training is the expensive part of a simulation; α ≤ 0.1 keeps it cheap and α = 0.1
    # is the base point whose weights figures 1 (fine-tuning) and 2 reuse from the cache
    sim_alphas = (0.1,) if quick else (0.04, 0.1)
    sim_lams = (0.1,) if quick else LAMS
    sim_aps = (1.0,) if quick else (0.5, 2.0, 8.0)
    sim_lps = (0.1,) if quick else (0.01, 0.1, 1.0, 10.0)
    return {
        1: FigureSpec(
            1, "Learning curves of pre-training and LoRA fine-tuning",
            theory=(
                Sweep("pretrain", fig1, (("lam", LAMS),), stage="pretrain", line=alpha_line),
                Sweep("pretrain_bo", fig1, (), kind="bayes_pretrain", line=dense("alpha", 0.01, 0.5, ("E_pre_BO",),
                                                                                 quick=quick)),
                Sweep("finetune", fig1, (("lam_prime", LAM_PRIMES),), line=ap_line),
                Sweep("finetune_bo", fig1, (), kind="bayes_finetune_curve",
                      line=dense("alpha_prime", ap_lo, 20.0, ("E_ft_BO", "q_BO"), quick=quick)),
            ),
            simulation=(
                Sweep("pretrain", fig1.replace(lam_prime=float("inf")), (("lam", sim_lams), ("alpha", sim_alphas)),
                      kind="sim"),
                Sweep("finetune", fig1, (("lam_prime", LAM_PRIMES), ("alpha_prime", sim_aps)), kind="sim"),
            ),
        ),
        2: FigureSpec(
            2, "How to pre-train for fine-tuning",
            theory=(
                Sweep("lam", fig1, (("alpha_prime", aps2),), line=lam_line),
                Sweep("lam_recal", fig1.replace(recalibrate="optimal"), (("alpha_prime", aps2),), line=lam_line),
                Sweep("alpha", fig1, (("alpha_prime", aps2),), line=dense("alpha", 0.01, 0.5, ("E_ft",), quick=quick)),
            ),
            simulation=(
                Sweep("lam", fig1, (("alpha_prime", (1.0, 5.0)), ("lam", sim_lams)), kind="sim"),
                Sweep("lam_recal", fig1.replace(recalibrate="optimal"), (("alpha_prime", (1.0, 5.0)),
                                                                         ("lam", sim_lams)), kind="sim"),
            ),
        ),
        3: FigureSpec(
            3, "The mismatch regime: reused against fresh sequences",
            theory=(
                Sweep("lam_prime-fresh", fig3, (), table="lam_prime", line=lp_line),
                Sweep("lam_prime-reused", fig3.replace(reuse=1.0), (), table="lam_prime", line=lp_line),
            ),
            simulation=(Sweep("lam_prime", fig3, (("reuse", (0.0, 1.0)), ("lam_prime", sim_lps)), kind="sim"),),
        ),
        4: FigureSpec(
            4, "Active against random fine-tuning",
            # the active theory reports its random control of the same size as *_random columns
            theory=(Sweep("lam_prime", fig4.replace(active_rho=RHOS[0]), (("active_rho", RHOS),),
                          line=dense("lam_prime", lp_lo, 30.0, ("E_ft", "E_ft_random"), quick=quick)),),
            simulation=(Sweep("lam_prime", fig4.replace(active_rho=RHOS[0]), (("active_rho", RHOS if not quick else RHOS[:1]),
                                                                              ("lam_prime", sim_lps)), kind="sim"),),
        ),
    }
