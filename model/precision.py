"""Float64 JAX for the whole project, switched on once, here.

Every module that makes JAX arrays imports this one first (``model.laws``, ``model.observables``, and the
entries of ``theory`` and ``simulate``): the observables are small differences of O(1) numbers, and the
stationarity of trained weights is checked to high relative accuracy. The parameters (``model.params``) need no
JAX, so the command line can refuse bad input before JAX is loaded.
"""

import jax

jax.config.update("jax_enable_x64", True)
