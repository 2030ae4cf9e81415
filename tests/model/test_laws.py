"""The laws of the model's random objects: GOE-like matrices, the label noise, σ(A), symmetric coordinates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.laws import activation, goe_like, model_noise, n_entries, to_entries, to_matrix, variance_factors


@pytest.mark.parametrize("sampler, diag, off", [(goe_like, 2.0, 1.0), (model_noise, 1.0, 0.5)])
def test_symmetric_samplers_have_the_stated_variances(sampler, diag, off):
    T, n = 3, 40_000
    G = np.asarray(sampler(jax.random.PRNGKey(0), n, T))
    assert G.shape == (n, T, T) and np.array_equal(G, np.swapaxes(G, 1, 2))
    iu = np.triu_indices(T, k=1)
    d, o = G[:, range(T), range(T)].ravel(), G[:, iu[0], iu[1]].ravel()
    # sample variances within 5 standard errors (sd of a sample variance of normals: var·√(2/n))
    assert abs(d.var() - diag) < 5 * diag * np.sqrt(2 / d.size)
    assert abs(o.var() - off) < 5 * off * np.sqrt(2 / o.size)
    assert np.asarray(sampler(jax.random.PRNGKey(0), (2, 5), T)).shape == (2, 5, T, T)


def test_the_label_noise_is_a_goe_like_matrix_over_root_two():
    key = jax.random.PRNGKey(3)
    np.testing.assert_allclose(model_noise(key, 7, 4), goe_like(key, 7, 4) / np.sqrt(2.0), rtol=1e-14, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_symmetric_coordinates_round_trip(T, seed):
    v = jnp.asarray(np.random.default_rng(seed).normal(size=(4, n_entries(T))))
    A = to_matrix(v, T)
    assert np.array_equal(A, np.swapaxes(A, -1, -2)) and np.array_equal(to_entries(A, T), v)
    c = variance_factors(T)
    assert c.shape == (n_entries(T),) and c.sum() == 2 * T + T * (T - 1) / 2


@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 5), seed=st.integers(0, 2**31 - 1), beta=st.floats(0.1, 5.0))
def test_activation_is_token_permutation_equivariant(T, seed, beta):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(T, T))
    A = jnp.asarray(A + A.T)
    P = jnp.asarray(np.eye(T)[rng.permutation(T)])
    for sigma in ("linear", "softmax"):
        np.testing.assert_allclose(activation(P @ A @ P.T, sigma, beta), P @ activation(A, sigma, beta) @ P.T,
                                   rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jnp.sum(activation(A, "softmax", beta), axis=-1), 1.0, rtol=1e-13)
    assert np.array_equal(activation(A, "linear", beta), A)


def test_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="sigma"):
        activation(jnp.zeros((2, 2)), "relu", 1.0)
