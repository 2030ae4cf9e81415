"""Shared test set-up: float64 JAX for every test, switched on once by :mod:`model.precision` (imported here
before any test module makes an array); no persistent cache of compiled programs (:mod:`model.compile_cache`),
so a test run neither reads nor writes the user's."""

import os

os.environ["LORA_ATTN_COMPILE_CACHE"] = "off"

import model.precision  # noqa: E402,F401
