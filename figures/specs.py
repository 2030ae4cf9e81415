"""The figure set of MODEL.md §6 as data: which sweeps feed which panel.

A :class:`Sweep` is a base parameter point plus axes (the Cartesian product is computed); a figure
lists the theory sweeps (dense grids, drawn as lines) and the simulation sweeps (sparse grids, drawn as
markers at ``D = 150``). ``quick`` grids are coarse versions for a smoke run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lora_attn.params import Params


@dataclass(frozen=True)
class Sweep:
    """``name``: file stem; ``base``: the fixed parameters; ``axes``: ``((param, values), ...)``."""

    name: str
    base: Params
    axes: tuple[tuple[str, tuple[Any, ...]], ...]


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


def figure_specs(sigma: str, *, quick: bool = False) -> dict[int, FigureSpec]:
    """The four figures of MODEL.md §6 for activation ``sigma`` (defaults: β = 1, κ0 = κ = 1, Δ = 0.5, e = 0)."""
    n = 8 if quick else 24
    fig1 = Params(sigma=sigma, T=3, kappa0=1.0, kappa=1.0, delta=0.5, alpha=0.1, alpha_prime=3.0, lam=0.1,
                  lam_prime=0.5)
    lams, lam_primes = (0.01, 0.1, 1.0), (0.05, 0.5, 1.0)
    alpha_primes_fig2 = (0.5, 1.0, 2.0, 5.0, 10.0)
    fig3 = Params(sigma=sigma, T=2, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, alpha_prime=3.0, lam=0.1,
                  lam_prime=0.5)
    fig4 = Params(sigma=sigma, T=3, delta=0.0, pool_ratio=100.0, alpha=0.1, lam=0.1, lam_prime=0.5,
                  active_rho=0.04)
    rhos = (0.04, 0.02, 0.015)
    sim_alphas = (0.05, 0.1, 0.2) if not quick else (0.1,)
    sim_alpha_primes = (0.5, 1.0, 3.0, 10.0) if not quick else (1.0, 3.0)
    sim_lam_primes = (0.01, 0.1, 1.0, 10.0) if not quick else (0.1, 1.0)
    return {
        1: FigureSpec(
            1, "Learning curves of pre-training and LoRA fine-tuning",
            theory=(
                Sweep("pretrain", fig1, (("lam", lams), ("alpha", _grid(0.01, 0.5, n)))),
                Sweep("finetune", fig1, (("lam_prime", lam_primes), ("alpha_prime", _grid(0.1, 20.0, n)))),
            ),
            simulation=(
                Sweep("pretrain", fig1, (("lam", lams), ("alpha", sim_alphas))),
                Sweep("finetune", fig1, (("lam_prime", lam_primes), ("alpha_prime", sim_alpha_primes))),
            ),
        ),
        2: FigureSpec(
            2, "How to pre-train for fine-tuning",
            theory=(
                Sweep("lam", fig1.replace(lam_prime=0.5), (("alpha_prime", alpha_primes_fig2),
                                                          ("lam", _grid(0.003, 3.0, n)))),
                Sweep("lam_recal", fig1.replace(lam_prime=0.5, recalibrate="optimal"),
                      (("alpha_prime", alpha_primes_fig2), ("lam", _grid(0.003, 3.0, n)))),
                Sweep("alpha", fig1.replace(lam_prime=0.5), (("alpha_prime", alpha_primes_fig2),
                                                            ("alpha", _grid(0.01, 0.5, n)))),
            ),
            simulation=(
                Sweep("lam", fig1.replace(lam_prime=0.5), (("alpha_prime", (1.0, 5.0)), ("lam", lams))),
                Sweep("lam_recal", fig1.replace(lam_prime=0.5, recalibrate="optimal"),
                      (("alpha_prime", (1.0, 5.0)), ("lam", lams))),
            ),
        ),
        3: FigureSpec(
            3, "The mismatch regime: reused against fresh sequences",
            theory=(Sweep("lam_prime", fig3, (("reuse", (0.0, 1.0)), ("lam_prime", _grid(0.003, 30.0, n)))),),
            simulation=(Sweep("lam_prime", fig3, (("reuse", (0.0, 1.0)), ("lam_prime", sim_lam_primes))),),
        ),
        4: FigureSpec(
            4, "Active against random fine-tuning",
            theory=(Sweep("lam_prime", fig4, (("active_rho", rhos), ("lam_prime", _grid(0.003, 30.0, n)))),),
            simulation=(Sweep("lam_prime", fig4, (("active_rho", rhos), ("lam_prime", sim_lam_primes))),),
        ),
    }
