"""The law of the simulated fine-tuning teacher (Params.teacher_law): 'orthogonal' makes q0 = U*ᵀU*/D = I at
every D from the same draws; 'gaussian' (the default) is MODEL.md §8 and leaves every output as it was."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import model.precision  # noqa: F401
from model.params import ParameterError, Params
from simulate.data import orthogonal_columns, sample_teacher
from simulate.run import run_seed


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), D=st.integers(4, 40), r=st.integers(1, 4))
def test_orthogonal_columns_have_gram_D_times_identity_and_span_the_draws(seed, D, r):
    g = np.random.default_rng(seed).normal(size=(D, r))
    u = np.asarray(orthogonal_columns(g))
    np.testing.assert_allclose(u.T @ u / D, np.eye(r), atol=1e-12)
    # the same column space: projecting g onto span(u) leaves it unchanged
    np.testing.assert_allclose(u @ (u.T @ g) / D, g, atol=1e-10)
    # diag R > 0: each column keeps the sign of its draw's component along it
    assert np.all(np.sum(u * g, axis=0) > 0)
    v = np.asarray(orthogonal_columns(g[:, 0]))
    assert v @ v == pytest.approx(D, rel=1e-13) and np.allclose(v, u[:, 0], atol=1e-12)


def test_the_orthogonal_teacher_keeps_W0_and_the_draws_direction():
    k = jax.random.PRNGKey(3)
    a = sample_teacher(k, 30, 20, teacher_rank=2)
    b = sample_teacher(k, 30, 20, teacher_rank=2, law="orthogonal")
    assert np.array_equal(np.asarray(a.W0), np.asarray(b.W0))
    np.testing.assert_allclose(np.asarray(b.w_star), np.asarray(orthogonal_columns(a.w_star)), atol=0)
    with pytest.raises(ValueError, match="law"):
        sample_teacher(k, 30, 20, law="uniform")


def test_the_law_is_a_parameter_left_out_at_its_default():
    assert "teacher_law" not in Params().to_dict()
    p = Params(teacher_law="orthogonal", teacher_rank=2)
    assert p.to_dict()["teacher_law"] == "orthogonal" and Params(**p.to_dict()) == p
    with pytest.raises(ParameterError, match="teacher_law = 'haar' is unknown: allowed one of gaussian, orthogonal"):
        Params(teacher_law="haar")


@pytest.mark.parametrize("r_star", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_a_simulation_with_the_orthogonal_teacher_has_q0_exactly_the_identity(r_star):
    p = Params(sigma="linear", T=2, alpha=0.2, alpha_prime=3.0, teacher_rank=r_star, teacher_law="orthogonal")
    key = jax.random.PRNGKey(0)
    obs = run_seed(p, 12, key, n_test=100, n_restarts=1).observables
    q0 = obs["tr_q0"] if r_star > 1 else obs["q0"]
    assert q0 == pytest.approx(r_star, rel=1e-12)
    gauss = run_seed(p.replace(teacher_law="gaussian"), 12, key, n_test=100, n_restarts=1).observables
    assert gauss["Q"] == obs["Q"]  # the pre-training does not see the fine-tuning teacher
    assert (gauss["tr_q0"] if r_star > 1 else gauss["q0"]) != pytest.approx(r_star, rel=1e-3)
