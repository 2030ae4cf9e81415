"""Chunked pre-training: the loss and gradient summed over chunks are the one-piece ones; a batch drawn in
chunks has the model's law and the same teacher blocks as its tokens."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from simulate.data import sample_batch, sample_teacher
from simulate.layer import attention_preactivation, token_gram
from simulate.pretrain import chunk_size, pretrain_data_term, pretrain_value_and_grad

D, T, N = 12, 3, 50


@pytest.fixture(scope="module")
def data():
    teacher = sample_teacher(jax.random.PRNGKey(0), D, D)
    batch = sample_batch(jax.random.PRNGKey(1), N, T, teacher)
    B = batch.pretrain_target(0.5, "softmax", 1.0)
    W = jax.random.normal(jax.random.PRNGKey(2), (D, D))
    return teacher, batch, B, W


@pytest.mark.parametrize("chunk", [1, 7, 25, 49])
def test_chunked_value_and_gradient_equal_the_one_piece_ones(data, chunk):
    _, b, B, W = data
    v0, g0 = pretrain_value_and_grad(W, b.X, b.G, B, 0.1, "softmax", 1.0)
    v, g = pretrain_value_and_grad(W, b.X, b.G, B, 0.1, "softmax", 1.0, chunk=chunk)
    np.testing.assert_allclose(float(v), float(v0), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g0), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(float(pretrain_data_term(W, b.X, b.G, B, "softmax", 1.0, chunk=chunk)),
                               float(pretrain_data_term(W, b.X, b.G, B, "softmax", 1.0)), rtol=1e-13)


def test_a_batch_drawn_in_chunks_is_consistent_and_lives_on_the_host(data):
    teacher = data[0]
    b = sample_batch(jax.random.PRNGKey(3), 4000, T, teacher, chunk=1000)
    assert isinstance(b.X, np.ndarray) and b.X.shape == (4000, T, D)
    # the T × T blocks belong to the tokens they were computed from
    np.testing.assert_allclose(np.asarray(b.A0[1500:1510]), np.asarray(attention_preactivation(b.X[1500:1510], teacher.W0)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(b.G[3999]), np.asarray(token_gram(b.X[3999:]))[0], rtol=1e-12)
    # i.i.d. N(0, 1) tokens, and chunks are distinct draws
    x = b.X.ravel()
    assert abs(x.mean()) < 5 / np.sqrt(x.size) and abs(x.var() - 1) < 5 * np.sqrt(2 / x.size)
    assert not np.allclose(b.X[:1000], b.X[1000:2000])


def test_chunk_size_is_at_least_one_and_shrinks_with_the_width():
    assert chunk_size(3, 10**9) == 1
    assert chunk_size(3, 100) > chunk_size(3, 200) > 0
