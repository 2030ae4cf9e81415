"""Validation of the theory against the simulator: what stands on both.

- :mod:`validation.compare`: the comparison table (gaps, ``z`` and p-values per ``D``, the finite-size trend,
  the verdict per observable) and the gap-against-``1/D`` plot;
- :mod:`validation.verdict`: the statistics of the verdict (Student-t p-values, Holm's family-wise test, the
  minimal detectable gap at a given power, the seeds that would settle an inconclusive observable);
- :mod:`validation.extrapolate`: the gap extrapolated to ``D = ∞`` (``a + b/D`` or ``a + b/√D``) with honest errors;
- :mod:`validation.control`: the teacher's ``Q0`` (exact mean) as a control variate;
- :mod:`validation.workflow`: the validate workflow (:func:`run_validation`: theory, simulations per ``D``,
  comparison);
- :mod:`validation.sweep`: sweeps of simulations with the theory beside them (:func:`sweep_table`);
- :mod:`validation.amp_finetune`: a finite-``D`` algorithm (GAMP for Bayes-optimal fine-tuning) against the
  Bayes-optimal state evolution (imported on its own: ``import validation.amp_finetune``).
"""

from validation.compare import (AtSize, GapPoint, Validation, compare, compare_paired, finetune_names, format_table,
                                paired_points, plot_validation, rs_note)
from validation.sweep import sweep_table
from validation.verdict import FamilyVerdict, GapEstimate, decide
from validation.workflow import ValidationRun, run_validation

__all__ = [
    "AtSize", "FamilyVerdict", "GapEstimate", "GapPoint", "Validation", "ValidationRun", "compare", "compare_paired",
    "decide", "finetune_names", "format_table", "paired_points", "plot_validation", "rs_note", "run_validation",
    "sweep_table",
]
