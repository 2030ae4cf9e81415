"""Asymptotic (D → ∞) theory of pre-training and LoRA fine-tuning of a tied attention layer (MODEL.md §5).

Each stage is a fixed point of ``prior ∘ channel``: the pre-training (:mod:`theory.stages.pretrain`: the
``T×T`` channel of :mod:`theory.channels.pretrain`, the spectral denoiser of :mod:`theory.priors.denoiser`)
and the LoRA fine-tuning (:mod:`theory.stages.finetune`: the ``R^T`` channel of :mod:`theory.channels.lora` on
the frozen-pair laws of :mod:`theory.laws`, the ridge prior of :mod:`theory.priors.ridge`), both iterated by the
one driver :mod:`theory.fixed_point`; the Bayes-optimal baselines are in :mod:`theory.bayes`.

Public API: :func:`solve` (one point, both stages chained, optional Bayes-optimal baselines) and
:func:`sweep` (a warm-started grid as a tidy DataFrame), from :mod:`theory.api`; the stage solvers and the
driver for direct use.
"""

import model.precision  # noqa: F401  (float64 JAX, before any array is made)

from theory.api import TheoryPoint, WarmStart, bayes_label, check, parse_pretrain, solve, sweep
from theory.bayes.finetune import solve_bayes_finetune
from theory.bayes.finetune_curve import curve_point as bayes_finetune_at_overlap
from theory.bayes.pretrain import solve_bayes_pretrain
from theory.fixed_point import FixedPointError, FixedPointResult, fixed_point
from theory.optimize import OptimizeResult, optimize
from theory.optimal_rank import RankChoice, optimal_rank, optimal_rank_curve
from theory.thresholds import Thresholds, thresholds
from theory.stages.finetune import solve_finetune
from theory.stages.pretrain import solve_pretrain
from theory.states import PretrainState

__all__ = [
    "FixedPointError", "FixedPointResult", "PretrainState", "TheoryPoint", "WarmStart", "bayes_finetune_at_overlap",
    "bayes_label", "check",
    "fixed_point", "optimal_rank", "optimal_rank_curve", "optimize", "OptimizeResult", "RankChoice", "parse_pretrain", "solve", "thresholds", "Thresholds", "solve_bayes_finetune", "solve_bayes_pretrain", "solve_finetune",
    "solve_pretrain", "sweep",
]
