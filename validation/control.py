"""Variance reduction: the teacher's ``Q0`` as a control variate for the pre-training observables.

Each seed draws its own pre-training teacher ``W0`` (``D × P0``, i.i.d. ``N(0, 1)``), and part of the
seed-to-seed spread of the pre-training observables (:data:`CONTROLLED`) follows the spread of that
teacher's ``Q0 = Tr(S̃0²)/D``, whose mean is known exactly at every ``D`` (MODEL.md §7):
``E[Q0] = 1 + P0/D + 1/D`` with ``P0 = round(κ0 D)`` (:func:`exact_Q0_mean`; ``1 + κ0 + 1/D`` when ``κ0 D``
is an integer). The control-variate estimate of ``E[Y]`` is the intercept of the least-squares line of
``Y_i`` on ``Q0_i − E[Q0]`` over the ``n`` seeds (:func:`controlled_mean`):

    Ŷ = Ȳ − β̂ (Q̄0 − E[Q0]),   se² = s² (1/n + (Q̄0 − E[Q0])² / Σ_i (Q0_i − Q̄0)²),   s² = RSS/(n − 2),

and ``(Ŷ − E[Y])/se`` is Student-t with ``n − 2`` degrees of freedom when ``Y`` given ``Q0`` is normal with
a mean linear in ``Q0`` (the slope is estimated from the same seeds: one degree of freedom is spent on it).
The reduction is worth it when the squared correlation of ``Y`` and ``Q0`` exceeds about ``1/(n − 2)``;
it is used for the names of :data:`CONTROLLED` (fixed in advance, not chosen after seeing the data) with at
least :data:`CV_MIN_SEEDS` seeds, and its gain ``sem_plain²/se²`` is reported.

It is calibrated (tests/validation/test_control.py: the false-alarm rate stays at the level with a skewed
control), but on the model it has not paid so far: the correlations above move a lot between sizes at 6
seeds, and the gains measured at linear σ, T = 2, 6 seeds were 0.7, 0.7, 1.0, 0.75 (Q, M, E_pre, L_pre) at
D = 40 and 1.1, 1.25, 0.5, 0.7 at D = 60. So ``lora-attn validate`` uses it only when asked
(``--control-variate``); with many seeds the slope costs little and a correlation ρ reduces the variance
by about ``1 − ρ²``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulate.run import sizes

#: The observables whose seed means may be corrected by the teacher's ``Q0``: the pre-training ones (the
#: student learns the teacher, so its norm and overlap follow the teacher's). Fixed here, not chosen per run.
#: Pilot correlations with ``Q0`` (linear σ, T = 2, 6 seeds at D = 40 and at D = 60): Q 0.49, 0.78; M 0.48,
#: 0.81; E_pre 0.69, 0.40; L_pre 0.54, 0.58. ``Δ_eff = Δ/2 + Q0 − 2M + Q`` and the fine-tuning losses are left
#: out: Q0 enters them against M and Q (−0.25 and −0.11 at D = 60, 0.83 and 0.99 at D = 40).
CONTROLLED = ("Q", "M", "E_pre", "L_pre")
#: The control variate is used with this many seeds or more (``n − 2 ≥ 3`` degrees of freedom).
CV_MIN_SEEDS = 5


def exact_Q0_mean(params, D: int) -> float:
    """``E[Q0] = 1 + P0/D + 1/D`` at size ``D`` (``P0 = round(κ0 D)`` teacher columns, MODEL.md §7): with
    ``W0`` i.i.d. ``N(0, 1)``, ``E Tr((W0 W0ᵀ)²) = D P0 (D + P0 + 1)``."""
    P0 = sizes(params, D).P0
    return 1.0 + P0 / D + 1.0 / D


@dataclass(frozen=True)
class ControlledMean:
    """Result of :func:`controlled_mean`.

    Attributes:
        mean: the control-variate estimate of ``E[Y]``.
        sem: its standard error.
        dof: degrees of freedom of ``sem`` (``n − 2``).
        seeds: ``n``.
        slope: the fitted ``β̂``.
        gain: ``sem_plain² / sem²`` (``sem_plain`` the standard error of the plain seed mean): the factor
            by which the control variate reduced the variance (below 1: it cost more than it removed).
    """

    mean: float
    sem: float
    dof: int
    seeds: int
    slope: float
    gain: float


def controlled_mean(y, control, control_mean: float) -> ControlledMean | None:
    """The control-variate estimate of ``E[y]`` from paired samples ``(y_i, control_i)`` and the exact
    ``E[control]`` (the module doc); ``None`` with fewer than 3 finite pairs or a control without spread."""
    y = np.asarray(y, dtype=float)
    c = np.asarray(control, dtype=float)
    keep = np.isfinite(y) & np.isfinite(c)
    y, c = y[keep], c[keep]
    n = int(y.size)
    if n < 3:
        return None
    dc = c - c.mean()
    scc = float(dc @ dc)
    if not scc > 0.0:
        return None
    slope = float(dc @ (y - y.mean()) / scc)
    shift = float(c.mean() - control_mean)
    resid = y - y.mean() - slope * dc
    s2 = float(resid @ resid) / (n - 2)
    se = math.sqrt(s2 * (1.0 / n + shift * shift / scc))
    plain = float(np.var(y, ddof=1)) / n
    gain = plain / (se * se) if se > 0 else (1.0 if plain == 0 else math.inf)
    return ControlledMean(mean=float(y.mean() - slope * shift), sem=se, dof=n - 2, seeds=n, slope=slope, gain=gain)
