"""Active selection building blocks (property-based)."""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate.selection import frozen_score, n_kept, select_lowest, select_random


@given(st.floats(1e-4, 1.0), st.integers(0, 100_000))
def test_n_kept_is_floor_of_rho_times_pool(rho, pool):
    k = n_kept(rho, pool)
    assert 0 <= k <= pool
    assert k <= rho * pool + 1e-6 < k + 1 + 1e-6


@pytest.mark.parametrize("rho, pool, expected", [(0.29, 100, 29), (0.07, 100, 7), (0.015, 10000, 150), (1.0, 7, 7)])
def test_n_kept_is_exact_at_float_rounding_points(rho, pool, expected):
    assert n_kept(rho, pool) == expected


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.data())
def test_select_lowest_keeps_exactly_the_lowest(scores, data):
    n = data.draw(st.integers(0, len(scores)))
    idx = select_lowest(np.array(scores), n)
    assert len(idx) == n == len(set(idx.tolist()))
    kept = np.array(scores)[idx]
    rest = np.delete(np.array(scores), idx)
    if n and rest.size:
        assert kept.max() <= rest.min()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([0, 1, 17, 500]), st.data(), st.integers(0, 2**31 - 1))
def test_select_random_is_a_subset_without_repeats(pool, data, seed):
    n = data.draw(st.integers(0, pool))
    idx = select_random(jax.random.PRNGKey(seed), pool, n)
    assert len(idx) == n == len(set(idx.tolist()))
    assert all(0 <= i < pool for i in idx)


def test_score_is_the_frobenius_norm():
    A = np.arange(18.0).reshape(2, 3, 3)
    np.testing.assert_allclose(frozen_score(A), [math.sqrt((A[i] ** 2).sum()) for i in range(2)])


@pytest.mark.parametrize("rho", [0.0, 1.5, -0.1])
def test_bad_rho_is_refused(rho):
    with pytest.raises(ValueError, match="rho"):
        n_kept(rho, 10)
