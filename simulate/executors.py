"""Where the seeds of a simulation run: in this process, in a local process pool, or on a Dask cluster.

Every executor maps a picklable function over a list of items and returns the results in the order of the
items, whatever order they finish in; the unit of work of the simulator is one seed
(:class:`simulate.seed_tasks.SeedTask`), and a seed's numbers do not depend on where it ran (its random draws
come from its own key). Choose with :func:`make_executor`:

- ``"serial"``: one after the other, here (the default; no pool, no cluster);
- ``"local"``: a pool of ``workers`` processes on this machine (``spawn``: JAX does not survive ``fork``);
- ``"dask"``: a ``dask.distributed`` cluster at ``scheduler`` (``tcp://host:8786``), or a ``LocalCluster`` of
  ``workers`` processes started here when no address is given. Needs the ``dask`` extra
  (``pip install -e ".[dask]"``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Sequence

from model.params import ParameterError

EXECUTORS = ("serial", "local", "dask")


class Executor:
    """``map(fn, items, on_result=None) -> [fn(item) for item in items]``; ``on_result(i, result)`` is called as
    each item finishes (for progress). Use as a context manager to release workers."""

    kind = "serial"

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            out.append(fn(item))
            if on_result is not None:
                on_result(i, out[-1])
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LocalExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine."""

    kind = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def map(self, fn, items, on_result=None):
        futures = [self._pool.submit(fn, item) for item in items]
        return _gather_in_order(futures, on_result, lambda f: f.result())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Tasks submitted to a ``dask.distributed`` client (one task per item, pure: a resubmitted item reruns)."""

    kind = "dask"

    def __init__(self, scheduler: str | None, workers: int):
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if scheduler is None:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR)
            scheduler = self._cluster.scheduler_address
        try:
            self._client = Client(scheduler, timeout="20s")
        except (OSError, ValueError, TimeoutError) as err:
            raise ParameterError(f"scheduler = {scheduler!r}: no Dask scheduler reachable there ({err}); allowed the "
                                 "address of a running scheduler, e.g. tcp://host:8786") from None

    def map(self, fn, items, on_result=None):
        futures = [self._client.submit(fn, item, pure=False) for item in items]
        return _gather_in_order(futures, on_result, lambda f: f.result())

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _gather_in_order(futures: list[Any], on_result, result: Callable[[Any], Any]) -> list[Any]:
    """The futures' results in submission order; ``on_result`` as each finishes, in that order."""
    out = []
    for i, f in enumerate(futures):
        out.append(result(f))
        if on_result is not None:
            on_result(i, out[-1])
    return out


def check_executor(kind: str, *, workers: int | None = None, scheduler: str | None = None) -> None:
    """Raise :class:`ParameterError` for an unknown executor, a bad worker count, a scheduler without ``dask``,
    or ``dask`` not installed, before any work."""
    if kind not in EXECUTORS:
        raise ParameterError(f"executor = {kind!r} is unknown: allowed one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise ParameterError(f"workers = {workers!r} is out of range: allowed an integer ≥ 1")
    if scheduler is not None and kind != "dask":
        raise ParameterError(f"scheduler = {scheduler!r} needs executor 'dask' (got {kind!r})")
    if kind == "dask":
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            raise ParameterError("executor 'dask' needs dask.distributed: pip install -e \".[dask]\"") from None


def make_executor(kind: str = "serial", *, workers: int | None = None, scheduler: str | None = None) -> Executor:
    """The executor ``kind`` (:data:`EXECUTORS`); ``workers`` defaults to the number of CPUs."""
    check_executor(kind, workers=workers, scheduler=scheduler)
    n = int(workers) if workers is not None else (os.cpu_count() or 1)
    if kind == "local":
        return LocalExecutor(n)
    if kind == "dask":
        return DaskExecutor(scheduler, n)
    return Executor()


def map_items(executor: Executor | None, fn: Callable[[Any], Any], items: Iterable[Any],
              on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``executor.map`` (in this process when ``executor`` is None)."""
    return (executor or Executor()).map(fn, list(items), on_result)
