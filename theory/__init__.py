"""Asymptotic (D → ∞) theory of pre-training and LoRA fine-tuning of a tied attention layer.

Public API: :func:`solve` (one point, both stages chained, optional Bayes-optimal baselines) and
:func:`sweep` (a warm-started grid as a tidy DataFrame), from :mod:`theory.api`.
"""

from theory.api import TheoryPoint, WarmStart, solve, sweep  # noqa: E402
from theory.fixed_point import FixedPointError, FixedPointResult, fixed_point  # noqa: E402

__all__ = ["FixedPointError", "FixedPointResult", "TheoryPoint", "WarmStart", "fixed_point", "solve", "sweep"]
