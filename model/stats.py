"""Sample means and their standard errors (Monte-Carlo integrands, seeds)."""

from __future__ import annotations

import math

import numpy as np


def mean_sem(x) -> tuple[float, float]:
    """``(mean, sd/√n)`` of the 1-D sample ``x`` (the i.i.d. standard error of the mean; ``sd`` with ``ddof = 1``)."""
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
