"""Building blocks of the layer: exact identities, symmetries, property tests."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model.laws import activation, model_noise
from simulate.finetune import finetune_objective
from simulate.layer import attention_preactivation, layer_output, lora_preactivation, output_sq_error, token_gram

# A few shapes (each new shape compiles), many random draws.
dims = st.tuples(st.sampled_from([1, 3]), st.sampled_from([5, 8]), st.sampled_from([3, 8]), st.integers(0, 2**31 - 1))


def _draw(seed, n, T, D, P):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return jax.random.normal(k1, (n, T, D)), jax.random.normal(k2, (D, P)), jax.random.normal(k3, (D,))


@settings(max_examples=25, deadline=None)
@given(dims)
def test_preactivations_match_their_definitions(dims):
    T, D, P, seed = dims
    X, W, w = _draw(seed, 4, T, D, P)
    S = W @ W.T / np.sqrt(P)
    I = jnp.eye(T)
    direct_A = (jnp.einsum("nad,de,nbe->nab", X, S, X) - jnp.trace(S) * I) / D
    direct_R = (jnp.einsum("nad,d,nbe,e->nab", X, w, X, w) - jnp.dot(w, w) * I) / D
    np.testing.assert_allclose(attention_preactivation(X, W), direct_A, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lora_preactivation(X, w), direct_R, rtol=1e-10, atol=1e-12)
    assert np.allclose(direct_A, jnp.swapaxes(direct_A, 1, 2))


@settings(max_examples=25, deadline=None)
@given(dims)
def test_gram_form_of_the_output_error_is_exact(dims):
    T, D, P, seed = dims
    X, W, _ = _draw(seed, 3, T, D, P)
    E = jax.random.normal(jax.random.PRNGKey(seed + 1), (3, T, T))
    direct = jnp.sum(jnp.einsum("nab,nbd->nad", E, X) ** 2, axis=(1, 2)) / D
    np.testing.assert_allclose(output_sq_error(E, token_gram(X)), direct, rtol=1e-10)


@settings(max_examples=20, deadline=None)
@given(dims, st.sampled_from(["linear", "softmax"]), st.booleans())
def test_layer_is_equivariant_under_token_permutations(dims, sigma, with_lora):
    T, D, P, seed = dims
    X, W, w = _draw(seed, 2, T, D, P)
    perm = np.random.default_rng(seed).permutation(T)
    w = w if with_lora else None
    out = layer_output(X, W, sigma, 1.3, w)
    out_perm = layer_output(X[:, perm], W, sigma, 1.3, w)
    np.testing.assert_allclose(out_perm, out[:, perm], rtol=1e-10, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(dims, st.sampled_from(["linear", "softmax"]))
def test_lora_is_even_in_w(dims, sigma):
    T, D, P, seed = dims
    X, W, w = _draw(seed, 5, T, D, P)
    np.testing.assert_array_equal(lora_preactivation(X, w), lora_preactivation(X, -w))
    A = attention_preactivation(X, W)
    B = activation(A + 0.3, sigma)
    G = token_gram(X)
    f = [finetune_objective(s * w, X, G, A, B, 0.7, sigma, 1.0) for s in (1.0, -1.0)]
    assert f[0] == f[1]


def test_softmax_rows_sum_to_one_and_are_shift_invariant():
    A = jax.random.normal(jax.random.PRNGKey(0), (7, 4, 4))
    s = activation(A, "softmax", 2.0)
    np.testing.assert_allclose(jnp.sum(s, axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(activation(A + 5.0, "softmax", 2.0), s, rtol=1e-10)


def test_noise_has_the_goe_like_law():
    """The label noise of the data (simulate.data draws it with model.laws.model_noise)."""
    Z = model_noise(jax.random.PRNGKey(1), 200_000, 3)
    np.testing.assert_array_equal(Z, jnp.swapaxes(Z, 1, 2))
    n = Z.shape[0]
    var_diag = float(jnp.mean(Z[:, 0, 0] ** 2))
    var_off = float(jnp.mean(Z[:, 0, 1] ** 2))
    # standard error of a Gaussian mean square: var·√(2/n)
    assert abs(var_diag - 1.0) < 4 * np.sqrt(2 / n)
    assert abs(var_off - 0.5) < 4 * 0.5 * np.sqrt(2 / n)
    assert abs(float(jnp.mean(Z[:, 0, 1] * Z[:, 0, 2]))) < 4 * 0.5 / np.sqrt(n)
