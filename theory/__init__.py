"""Asymptotic (D → ∞) theory of pre-training and LoRA fine-tuning of a tied attention layer."""

from theory.fixed_point import FixedPointError, FixedPointResult, fixed_point

__all__ = ["FixedPointError", "FixedPointResult", "fixed_point"]
