"""Shared test set-up: float64 JAX for every test, switched on once by :mod:`model.precision` (imported here
before any test module makes an array)."""

import model.precision  # noqa: F401
