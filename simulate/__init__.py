"""Finite-D Monte-Carlo simulation of pre-training and LoRA fine-tuning (the ground truth).

Importing this package switches JAX to float64: the observables are small differences of O(1)
numbers and the stationarity of the trained weights is checked to high relative accuracy.
"""

import jax

jax.config.update("jax_enable_x64", True)

from simulate.run import OBSERVABLES, SeedResult, SimulationResult, run, run_seed  # noqa: E402

__all__ = ["OBSERVABLES", "SeedResult", "SimulationResult", "run", "run_seed"]
