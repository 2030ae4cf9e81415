"""Randomised quasi-Monte Carlo draws shared by the channels: scrambled Sobol' points mapped to normals.

The channels' expectations use fixed draws (common random numbers), so their maps are deterministic; for the
smooth integrands (the pre-training channel, the fine-tuning test errors) scrambled Sobol' points make the
error fall faster than ``n^{-1/2}``, and each scramble seed is an independent replica.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, qmc


def sobol_normals(dim: int, n: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """``n`` points of a scrambled Sobol' sequence in ``[0,1]^dim`` (Owen scrambling, seeded), mapped to
    standard normals by the inverse CDF: randomised quasi-Monte Carlo. Every coordinate is exactly
    ``N(0, 1)`` in law and unbiased for any integrand; for the smooth channel integrands the error falls
    faster than ``n^{-1/2}``. ``n`` must be a power of two (the balance of the sequence needs it)."""
    m = int(round(math.log2(n))) if n > 0 else -1
    if m < 1 or 2**m != n:
        raise ValueError(f"n = {n} is out of range for Sobol' draws: allowed a power of two ≥ 2")
    u = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng(seed)).random_base2(m)
    tiny = 2.0**-53
    return norm.ppf(np.clip(u, tiny, 1.0 - tiny))


def sobol_size(n: int) -> int:
    """The smallest power of two ``≥ n`` (the size of a Sobol' draw set asked for ``n`` points)."""
    return 1 << max(1, math.ceil(math.log2(max(n, 2))))
