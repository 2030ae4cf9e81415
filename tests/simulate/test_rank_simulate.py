"""The rank-r LoRA simulation (MODEL.md §8): at r = r* = 1 the rank-one one; the rank-r observables."""

import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import model.precision  # noqa: F401
from model.params import Params
from simulate.cache import PretrainCache
from simulate.data import sample_teacher
from simulate.finetune import finetune_objective, train_finetune
from simulate.layer import lora_preactivation
from simulate.measure import lora_overlaps, lora_subspace_overlaps
from simulate.run import run_seed


def test_a_one_column_matrix_is_the_vector():
    k = jax.random.PRNGKey(1)
    X = jax.random.normal(k, (7, 3, 11))
    w = jax.random.normal(jax.random.fold_in(k, 1), (11,))
    assert np.array_equal(np.asarray(lora_preactivation(X, w[:, None])), np.asarray(lora_preactivation(X, w)))
    a, b = sample_teacher(k, 11, 5), sample_teacher(k, 11, 5, teacher_rank=1)
    assert np.array_equal(np.asarray(a.W0), np.asarray(b.W0))
    assert np.array_equal(np.asarray(b.w_star[:, 0]), np.asarray(a.w_star))


def test_rank_r_preactivation_is_the_sum_over_columns_and_rotation_invariant():
    k = jax.random.PRNGKey(2)
    X = jax.random.normal(k, (5, 3, 9))
    U = jax.random.normal(jax.random.fold_in(k, 1), (9, 3))
    total = sum(lora_preactivation(X, U[:, j]) for j in range(3))
    np.testing.assert_allclose(lora_preactivation(X, U), total, atol=1e-12)
    O = jnp.asarray(ortho_group.rvs(3, random_state=0))
    np.testing.assert_allclose(lora_preactivation(X, U @ O), lora_preactivation(X, U), atol=1e-12)


def test_one_column_overlaps_are_the_rank_one_overlaps():
    rng = np.random.default_rng(0)
    w, ws = rng.normal(size=30), rng.normal(size=30)
    a, b = lora_overlaps(jnp.asarray(w), jnp.asarray(ws)), lora_subspace_overlaps(w[:, None], ws[:, None])
    assert (b["tr_q"], b["tr_q0"]) == pytest.approx((a["q"], a["q0"]), rel=1e-14)
    assert b["o_U"] == pytest.approx(a["o_w"], rel=1e-12) and b["cos_1"] == pytest.approx(a["o_w"], rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(1, 4), s=st.integers(1, 3))
def test_subspace_overlap_bounds_and_invariance(seed, r, s):
    rng = np.random.default_rng(seed)
    U, Us = rng.normal(size=(40, r)), rng.normal(size=(40, s))
    o = lora_subspace_overlaps(U, Us)
    assert 0 <= o["o_U"] <= 1 + 1e-12
    cos = [o[f"cos_{i + 1}"] for i in range(min(r, s))]
    assert all(0 <= c <= 1 + 1e-12 for c in cos) and cos == sorted(cos, reverse=True)
    rot = lora_subspace_overlaps(U @ ortho_group.rvs(max(r, 2), random_state=seed)[:r, :r] if r > 1 else -U, Us)
    assert rot["o_U"] == pytest.approx(o["o_U"], abs=1e-10)
    # a student spanning the teacher's columns captures all of them
    full = lora_subspace_overlaps(np.hstack([Us, U]), Us)
    assert full["o_U"] == pytest.approx(1.0, abs=1e-10)


def test_rank_one_matrix_fit_is_the_vector_fit():
    # the two objectives agree to rounding; L-BFGS stops at grad_norm ≤ 1e-6·max(1, F), so each minimiser is
    # within ‖∇F‖/μ of the common one (μ: smallest Hessian eigenvalue of F there)
    k = jax.random.PRNGKey(3)
    n, T, D = 40, 2, 12
    X = jax.random.normal(k, (n, T, D))
    G = jnp.einsum("nad,nbd->nab", X, X) / D
    w_star = jax.random.normal(jax.random.fold_in(k, 1), (D,))
    A0 = 0.3 * jax.random.normal(jax.random.fold_in(k, 2), (n, T, T))
    B = A0 + lora_preactivation(X, w_star)
    kw = dict(lam_prime=0.5, sigma="linear", beta=1.0, n_restarts=1)
    a = train_finetune(k, X, G, jnp.zeros_like(A0), B, **kw)
    b = train_finetune(k, X, G, jnp.zeros_like(A0), B, rank=1, **kw)
    H = np.asarray(jax.hessian(finetune_objective)(a.w, X, G, jnp.zeros_like(A0), B, 0.5, "linear", 1.0))
    mu = np.linalg.eigvalsh(H)[0]
    assert mu > 0
    bound = (a.info.grad_norm + b.info.grad_norm) / np.sqrt(D) / mu
    wa, wb = np.asarray(a.w), np.asarray(b.w)[:, 0]
    wb = wb if wa @ wb >= 0 else -wb
    assert np.linalg.norm(wa - wb) <= bound


@pytest.mark.slow
def test_rank_one_matrix_run_is_the_rank_one_run():
    p = Params(T=2, sigma="linear", alpha=0.2, alpha_prime=3.0, lam=0.1, lam_prime=0.5, kappa0=0.5)
    cache = PretrainCache(tempfile.mkdtemp())
    key = jax.random.PRNGKey(0)
    a = run_seed(p, 16, key, n_test=200, cache=cache).observables
    b = run_seed(p, 16, key, n_test=200, cache=cache, matrix_lora=True).observables
    for name in ("Q0", "Q", "M", "E_pre", "L_pre", "E_frozen", "delta_eff"):
        assert a[name] == b[name]
    # fine-tuning: equal up to the L-BFGS stopping tolerance (grad_norm ≤ 1e-6, see the test above)
    for x, y in (("q", "tr_q"), ("q0", "tr_q0"), ("o_w", "o_U"), ("o_w", "cos_1"), ("E_ft", "E_ft"), ("L_ft", "L_ft")):
        assert b[y] == pytest.approx(a[x], rel=1e-5)
