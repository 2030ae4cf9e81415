"""Disk cache of trained pre-training weights, keyed by everything that determines them.

Pre-training depends only on ``(T, σ, β, κ0, κ, α, λ, Δ)``, ``D``, the seed's key and the solver, not on
any fine-tuning parameter; a sweep over ``α'``, ``λ'``, ``e``, ``β_W`` or ``ρ`` therefore trains ``Ŵ``
once per seed. Entries are written atomically (temporary file + rename), so an interrupted run leaves
no half-written entry and resumes from the finished ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lora_attn.params import Params
from simulate.optimize import FitInfo

#: The parameters pre-training depends on.
PRETRAIN_FIELDS = ("T", "sigma", "beta", "kappa0", "kappa", "alpha", "lam", "delta")
#: Bumped whenever a change of the simulator changes what pre-training returns.
CACHE_VERSION = 1


def pretrain_cache_key(params: Params, D: int, seed_key: np.ndarray, solver: str) -> str:
    """A stable hash of the pre-training inputs."""
    payload = {
        "version": CACHE_VERSION,
        "params": {f: getattr(params, f) for f in PRETRAIN_FIELDS},
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
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, W=np.asarray(W), info=json.dumps(asdict(info)))
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
