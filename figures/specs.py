"""The figure set of MODEL.md §6 as data: which sweeps feed which panel.

A :class:`Sweep` is a base parameter point plus axes (their Cartesian product is computed) and a *kind*:

- ``"theory"``: :func:`theory.solve` at every point (``stage``, ``bayes`` as given), drawn as lines;
- ``"bayes_pretrain"``: the Bayes-optimal pre-training baseline alone (``Q_BO``, ``E_pre_BO``; cheap, and
  available for both ``σ`` even where the ERM pre-training theory is not);
- ``"sim"``: :func:`simulate.run` at ``D`` (default 150) with a few seeds, drawn as markers with error bars.

Several sweeps may feed one panel table (``table``): their rows are concatenated. The pre-training
parameters are the slow axes of a theory sweep: consecutive points that share them reuse the solved
pre-training (:class:`theory.WarmStart`). Grids are sized so that
the full default run of ``paper_figs.py`` stays within its time budget on a 2-core CPU (see BENCHMARKS.md):
theory lines use 5–8 points, the Bayes-optimal fine-tuning line (10–30 s a point) only 4 points and only
in figure 1, and simulation markers are placed where pre-training weights can be shared
(the pre-training of a point depends on no fine-tuning parameter and is cached).
``quick`` grids are coarse versions for a smoke run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.params import Params

KINDS = ("theory", "bayes_pretrain", "sim")


@dataclass(frozen=True)
class Sweep:
    """``name``: file stem; ``base``: the fixed parameters; ``axes``: ``((param, values), ...)``;
    ``kind``: see the module doc; ``table``: the panel table it feeds (default ``name``);
    ``stage``/``bayes``: passed to :func:`theory.solve` for ``kind="theory"``."""

    name: str
    base: Params
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    kind: str = "theory"
    table: str | None = None
    stage: str = "both"
    bayes: Any = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind = {self.kind!r} is unknown: allowed one of {', '.join(KINDS)}")

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def n_points(self) -> int:
        return int(np.prod([len(v) for _, v in self.axes]))


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its number, title, and the theory / simulation sweeps behind its panels."""

    number: int
    title: str
    theory: tuple[Sweep, ...]
    simulation: tuple[Sweep, ...] = field(default=())


def _grid(lo: float, hi: float, n: int, log: bool = True) -> tuple[float, ...]:
    g = np.geomspace(lo, hi, n) if log else np.linspace(lo, hi, n)
    return tuple(float(f"{v:.6g}") for v in g)


#: Figure 1 (MODEL.md §6) — the base point of figures 1 and 2.
FIG1 = dict(T=3, kappa0=1.0, kappa=1.0, delta=0.5, alpha=0.1, alpha_prime=3.0, lam=0.1, lam_prime=0.5)
LAMS = (0.01, 0.1, 1.0)
LAM_PRIMES = (0.05, 0.5, 1.0)
ALPHA_PRIMES_FIG2 = (0.5, 1.0, 2.0, 5.0, 10.0)
FIG3 = dict(T=2, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, alpha_prime=3.0, lam=0.1, lam_prime=0.5)
FIG4 = dict(T=3, delta=0.0, pool_ratio=100.0, alpha=0.1, lam=0.1, lam_prime=0.5)
RHOS = (0.04, 0.02, 0.015)


def figure_specs(sigma: str, *, quick: bool = False) -> dict[int, FigureSpec]:
    """The four figures of MODEL.md §6 for activation ``sigma`` (defaults: β = 1, κ0 = κ = 1, Δ = 0.5, e = 0)."""
    n1, n2, n3 = (4, 3, 4) if quick else (8, 5, 7)
    n_bo = 2 if quick else 4
    fig1 = Params(sigma=sigma, **FIG1)
    fig3 = Params(sigma=sigma, **FIG3)
    fig4 = Params(sigma=sigma, **FIG4)
    aps2 = (1.0, 5.0) if quick else ALPHA_PRIMES_FIG2
    alphas = _grid(0.01, 0.5, n1)
    # below α' ≈ 0.5 the fine-tuning fixed point is not unique or not reached (λ' = 0.05: both σ), and a point
    # that does not converge costs the whole iteration budget (≈ 30–90 s)
    alpha_primes = _grid(0.5, 20.0, n1)
    lam_grid = _grid(0.003, 3.0, n2)
    lp_grid = _grid(0.003, 30.0, n3)
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
                Sweep("pretrain", fig1, (("lam", LAMS), ("alpha", alphas)), stage="pretrain"),
                Sweep("pretrain_bo", fig1, (("alpha", alphas),), kind="bayes_pretrain"),
                Sweep("finetune", fig1, (("lam_prime", LAM_PRIMES), ("alpha_prime", alpha_primes))),
                Sweep("finetune_bo", fig1, (("alpha_prime", _grid(0.5, 20.0, n_bo)),), bayes="finetune"),
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
                Sweep("lam", fig1, (("lam", lam_grid), ("alpha_prime", aps2))),
                Sweep("lam_recal", fig1.replace(recalibrate="optimal"), (("lam", lam_grid), ("alpha_prime", aps2))),
                Sweep("alpha", fig1, (("alpha", _grid(0.01, 0.5, n2)), ("alpha_prime", aps2))),
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
                Sweep("lam_prime-fresh", fig3, (("lam_prime", lp_grid),), table="lam_prime"),
                Sweep("lam_prime-reused", fig3.replace(reuse=1.0), (("lam_prime", lp_grid),), table="lam_prime"),
            ),
            simulation=(Sweep("lam_prime", fig3, (("reuse", (0.0, 1.0)), ("lam_prime", sim_lps)), kind="sim"),),
        ),
        4: FigureSpec(
            4, "Active against random fine-tuning",
            # the active theory reports its random control of the same size as *_random columns
            theory=(Sweep("lam_prime", fig4.replace(active_rho=RHOS[0]), (("active_rho", RHOS), ("lam_prime", lp_grid))),),
            simulation=(Sweep("lam_prime", fig4.replace(active_rho=RHOS[0]), (("active_rho", RHOS if not quick else RHOS[:1]),
                                                                              ("lam_prime", sim_lps)), kind="sim"),),
        ),
    }
