"""Executors: a seed's numbers do not depend on where it ran; finished seeds are cached and resumed."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

import simulate
from model.params import ParameterError, Params
from simulate.executors import check_executor, make_executor
from simulate.seed_tasks import SeedTask, run_task
from validation.sweep import sweep_table

TINY = Params(sigma="linear", T=2, alpha=0.5)
D = 10


def _assert_same_seeds(a, b):
    """Seed for seed, every observable and diagnostic equal (bit for bit)."""
    pd.testing.assert_frame_equal(a.per_seed, b.per_seed, check_exact=True)
    assert a.observables == b.observables


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_local_pool_gives_the_serial_numbers_seed_for_seed():
    serial = simulate.run(TINY, D, 3, seed=5)
    with make_executor("local", workers=2) as ex:
        pooled = simulate.run(TINY, D, 3, seed=5, executor=ex)
    _assert_same_seeds(serial, pooled)


def test_sweep_on_a_two_worker_dask_local_cluster_equals_the_serial_sweep(tmp_path):
    pytest.importorskip("dask.distributed")
    vary = ["alpha_prime=1.5,3"]
    serial, _ = sweep_table(TINY, vary, out=str(tmp_path / "serial.csv"), run_simulation=True, run_theory=False,
                            D=D, seeds=2)
    with make_executor("dask", workers=2) as ex:
        dask_table, _ = sweep_table(TINY, vary, out=str(tmp_path / "dask.csv"), run_simulation=True,
                                    run_theory=False, D=D, seeds=2, executor=ex)
    pd.testing.assert_frame_equal(serial, dask_table, check_exact=True)


def test_a_finished_seed_is_read_back_from_the_cache_not_recomputed(tmp_path, monkeypatch):
    task = SeedTask(params=TINY, D=D, seed=0, index=1, cache_dir=str(tmp_path))
    row = run_task(task)
    files = list((tmp_path / "seeds").glob("seed-*.json"))
    assert len(files) == 1
    json.loads(files[0].read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))

    run_module = sys.modules["simulate.run"]  # the module, which the function simulate.run shadows

    def must_not_run(*a, **k):
        raise AssertionError("a cached seed was recomputed")

    monkeypatch.setattr(run_module, "run_seed", must_not_run)
    assert run_task(task) == row
    # another seed, or other parameters, is another unit of work
    assert SeedTask(params=TINY, D=D, seed=0, index=2).cache_key() != task.cache_key()
    assert SeedTask(params=Params(sigma="linear", T=2, alpha=0.6), D=D, seed=0, index=1).cache_key() != task.cache_key()


@pytest.mark.parametrize("kind, kw, message", [
    ("cluster", {}, "executor"),
    ("local", {"workers": 0}, "workers"),
    ("local", {"workers": 1.5}, "workers"),
    ("serial", {"scheduler": "tcp://h:8786"}, "scheduler"),
])
def test_bad_executor_settings_are_refused_before_any_work(kind, kw, message):
    with pytest.raises(ParameterError, match=message):
        check_executor(kind, **kw)
