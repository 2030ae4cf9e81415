"""Finite-D Monte-Carlo simulation of pre-training and LoRA fine-tuning (the ground truth).

The floors, from the model's objects up to one seed-averaged point:

- :mod:`simulate.data`: teachers, token sequences, the label noise and the labels (MODEL.md §2);
- :mod:`simulate.layer`: the tied attention layer and its output error (MODEL.md §1);
- training (MODEL.md §3): :mod:`simulate.optimize` (the L-BFGS driver), :mod:`simulate.pretrain` (``Ŵ``),
  :mod:`simulate.finetune` (the LoRA vector ``ŵ``);
- :mod:`simulate.selection`: active fine-tuning's selection of a pool by the frozen student;
- :mod:`simulate.measure`: the observables of MODEL.md §4 from trained weights and fresh test sequences;
- :mod:`simulate.cache`: trained pre-training weights on disk;
- :mod:`simulate.run`: both stages for one seed (:func:`run_seed`) and seed-averaged (:func:`run`, :func:`run_many`);
- :mod:`simulate.seed_tasks`, :mod:`simulate.executors`: one seed as a unit of work, cached on disk, and where
  the seeds run (here, a local process pool, a Dask cluster).

Float64 JAX is switched on by :mod:`model.precision`, imported first.
"""

import model.precision  # noqa: F401  (float64 JAX, before any array is made)
from model.observables import OBSERVABLES
from simulate.run import SeedResult, SimulationResult, run, run_many, run_seed

__all__ = ["OBSERVABLES", "SeedResult", "SimulationResult", "run", "run_many", "run_seed"]
