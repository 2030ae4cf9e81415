"""The matrix ridge prior of the rank-r fixed point: rank one is the scalar ridge; rotation covariance."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from theory.channels.lora_rank import RankHats
from theory.priors.matrix_ridge import matrix_prior_update
from theory.priors.ridge import prior_update
from theory.states import FinetuneHats


@given(qh=st.floats(0, 50), mh=st.floats(-20, 20), vh=st.floats(0.01, 50), lam=st.floats(-0.005, 5),
       q0=st.floats(0.1, 3))
def test_rank_one_is_the_scalar_ridge(qh, mh, vh, lam, q0):
    a = prior_update(FinetuneHats(qh, mh, vh, lam), q0)
    b = matrix_prior_update(RankHats(np.array([[qh]]), np.array([[mh]]), np.array([[vh]]), lam), q0 * np.eye(1))
    assert b is not None
    for x, y in ((a.q, b.q), (a.m, b.m), (a.v, b.V)):
        assert float(y[0, 0]) == pytest.approx(x, rel=1e-12, abs=1e-300)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000))
def test_rotation_covariance(seed):
    rng = np.random.default_rng(seed)
    r, s = 3, 2
    A = rng.normal(size=(r, r))
    hats = RankHats(A @ A.T, rng.normal(size=(r, s)), A.T @ A + np.eye(r), 0.3)
    O, Os = ortho_group.rvs(r, random_state=seed), ortho_group.rvs(s, random_state=seed + 1)
    rot = RankHats(O.T @ hats.q_hat @ O, O.T @ hats.m_hat @ Os, O.T @ hats.V_hat @ O, 0.3)
    a, b = matrix_prior_update(hats, np.eye(s)), matrix_prior_update(rot, np.eye(s))
    np.testing.assert_allclose(b.q, O.T @ a.q @ O, atol=1e-10)
    np.testing.assert_allclose(b.m, O.T @ a.m @ Os, atol=1e-10)
    np.testing.assert_allclose(b.V, O.T @ a.V @ O, atol=1e-10)


def test_indefinite_curvature_has_no_fixed_point():
    hats = RankHats(np.eye(2), np.eye(2), np.diag([1.0, -2.0]), 0.5)
    assert matrix_prior_update(hats, np.eye(2)) is None
