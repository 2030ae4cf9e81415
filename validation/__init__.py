"""Validation of the theory against the simulator: what stands on both.

- :mod:`validation.compare`: comparison statistics (z-scores per ``D``, the ``a + b/D`` trend, the verdict,
  the gap-against-``1/D`` plot);
- :mod:`validation.workflow`: the validate workflow (:func:`run_validation`: theory, simulations per ``D``,
  comparison);
- :mod:`validation.sweep`: sweeps of simulations with the theory beside them (:func:`sweep_table`);
- :mod:`validation.amp_finetune`: a finite-``D`` algorithm (GAMP for Bayes-optimal fine-tuning) against the
  Bayes-optimal state evolution (imported on its own: ``import validation.amp_finetune``).
"""

from validation.compare import (AtSize, GapPoint, Validation, compare, compare_paired, finetune_names, format_table,
                                paired_points, plot_validation, rs_note)
from validation.sweep import sweep_table
from validation.workflow import ValidationRun, run_validation

__all__ = [
    "AtSize", "GapPoint", "Validation", "ValidationRun", "compare", "compare_paired", "finetune_names",
    "format_table", "paired_points", "plot_validation", "rs_note", "run_validation", "sweep_table",
]
