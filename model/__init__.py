"""The ground layer: what the theory, the simulator, the figures and the command line all stand on.

- :mod:`model.params`: the parameters of MODEL.md §5 (:class:`Params`), validated on construction;
- :mod:`model.observables`: the observables' names (MODEL.md §4) and their definitions
  (``Δ_eff``, the ``β_W`` rules, ``o_w``);
- :mod:`model.laws`: the laws of the model's random objects (``σ(A)``, GOE-like matrices, the label noise);
- :mod:`model.stats`: sample means and their standard errors;
- :mod:`model.tables`: parameter grids and tidy tables on disk (atomic writes, resumable sweeps).

It imports nothing of the project above it. :mod:`model.precision` switches JAX to float64, once for the whole
project; every module that makes JAX arrays imports it first. The parameters need no JAX.
"""

from model.params import ParameterError, Params

__all__ = ["ParameterError", "Params"]
