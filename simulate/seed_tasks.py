"""The unit of simulation work: one ``(parameters, D, seed)``, runnable anywhere, its result cached on disk.

A :class:`SeedTask` holds everything :func:`simulate.run.run_seed` needs, as plain picklable values, so an
executor (:mod:`simulate.executors`) can ship it to another process or machine. :func:`run_task` runs it and
returns the seed's row (observables and diagnostics, plain Python numbers). With a ``cache_dir`` the row is
stored under a key of everything that determines it, including a digest of the simulator's own source, so
an interrupted or failed run resumes from the finished seeds and a change of the code never returns a stale
number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from model.params import Params
from model.tables import atomic_write

#: Bumped when the layout of a cached row changes.
ROW_VERSION = 1


@dataclass(frozen=True)
class SeedTask:
    """Seed ``index`` of a run with base ``seed`` at dimension ``D`` (key ``fold_in(PRNGKey(seed), index)``)."""

    params: Params
    D: int
    seed: int
    index: int
    n_test: int | None = None
    n_restarts: int = 3
    pretrain_solver: str = "lbfgs"
    train_gram: str = "tokens"
    cache_dir: str | None = None

    def cache_key(self) -> str:
        """A hash of what determines the seed's row: every field but ``cache_dir``, and the simulator's code."""
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("params", "cache_dir")}
        payload.update(params=self.params.to_dict(), version=ROW_VERSION, code=code_digest())
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of the source of the packages a simulation's numbers come from (``model``, ``simulate``)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in ("model", "simulate"):
        for path in sorted((root / package).glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_task(task: SeedTask) -> dict[str, Any]:
    """Run one seed (:func:`simulate.run.run_seed`) and return its row ``{observable or diagnostic: value}``;
    read from / written to ``task.cache_dir`` when one is given (written atomically)."""
    path = _row_path(task)
    if path is not None and path.exists():
        return _from_json(json.loads(path.read_text()))
    import jax  # the workers import the simulator only when they run a task

    from simulate.cache import PretrainCache
    from simulate.run import run_seed

    cache = PretrainCache(task.cache_dir) if task.cache_dir is not None else None
    key = jax.random.fold_in(jax.random.PRNGKey(task.seed), task.index)
    r = run_seed(task.params, task.D, key, n_test=task.n_test, n_restarts=task.n_restarts,
                 pretrain_solver=task.pretrain_solver, cache=cache, train_gram=task.train_gram)
    row = {k: _plain(v) for k, v in {**r.observables, **r.diagnostics}.items()}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(_to_json(row))), suffix=".tmp.json")
    return row


def _row_path(task: SeedTask) -> Path | None:
    if task.cache_dir is None:
        return None
    return Path(task.cache_dir) / "seeds" / f"seed-{task.cache_key()}.json"


def _plain(v: Any) -> Any:
    """A Python number (or string) from a JAX/numpy scalar."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    return v


def _to_json(row: dict[str, Any]) -> dict[str, Any]:
    """Strict JSON: non-finite floats as their names."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _from_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if v in ("nan", "inf", "-inf") else v) for k, v in row.items()}
