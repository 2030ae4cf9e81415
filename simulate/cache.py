"""Disk cache of trained pre-training weights, keyed by everything that determines them.

Pre-training depends only on ``(T, σ, β, κ0, κ, α, λ, Δ)`` (:data:`model.params.PRETRAIN_FIELDS`), ``D``,
the seed's key and the solver, not on any fine-tuning parameter; a sweep over ``α'``, ``λ'``, ``e``, ``β_W``
or ``ρ`` therefore trains ``Ŵ`` once per seed. Entries are written atomically
(:func:`model.tables.atomic_write`), so an interrupted run leaves no half-written entry and resumes from the
finished ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from model.params import PRETRAIN_FIELDS, Params, pretrain_key
from model.tables import atomic_write
from simulate.optimize import FitInfo

#: Bumped whenever a change of the simulator changes what pre-training returns.
CACHE_VERSION = 1


def pretrain_cache_key(params: Params, D: int, seed_key: np.ndarray, solver: str) -> str:
    """A stable hash of the pre-training inputs: the :data:`~model.params.PRETRAIN_FIELDS` of ``params``,
    ``D``, the seed's key and the solver."""
    payload = {
        "version": CACHE_VERSION,
        "params": dict(zip(PRETRAIN_FIELDS, pretrain_key(params))),
        "D": int(D),
        "key": np.asarray(seed_key).tolist(),
        "solver": solver,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class PretrainCache:
    """``Ŵ`` and its :class:`FitInfo` stored as ``<dir>/pretrain-<key>.npz``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"pretrain-{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, FitInfo] | None:
        path = self._path(key)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            info = FitInfo(**json.loads(str(data["info"])))
            return np.array(data["W"]), info

    def put(self, key: str, W: np.ndarray, info: FitInfo) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:  # the name ends in .npz, so numpy adds no suffix
            np.savez(tmp, W=np.asarray(W), info=json.dumps(asdict(info)))

        atomic_write(self._path(key), write, suffix=".tmp.npz")
