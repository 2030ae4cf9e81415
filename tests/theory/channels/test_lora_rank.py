"""The rank-r LoRA channel (MODEL.md §8): at r = r* = 1 the rank-one channel; Wick's closed form of the linear
errors against the Monte-Carlo integrand."""

import jax
import numpy as np
import pytest

import model.precision  # noqa: F401
from model.params import Params
from theory.channels.lora import channel_draws, error_draws, finetune_hats
from theory.channels.lora_rank import (RankOverlaps, RankSamples, conditional_teacher, rank_channel_draws,
                                       rank_error_draws, rank_fresh_error_samples, rank_hats, rank_linear_errors)
from theory.laws.mixture import channel_samples
from theory.states import FinetuneOverlaps, PretrainState


def test_rank_one_draws_are_the_rank_one_channels():
    key = jax.random.PRNGKey(5)
    xi, eta, _, _ = channel_draws(key, 64, 3)
    xr, er = rank_channel_draws(key, 64, 3, 1, 1)
    assert np.array_equal(np.asarray(xr[..., 0]), np.asarray(xi))
    assert np.array_equal(np.asarray(er[..., 0]), np.asarray(eta))
    a = error_draws(0, 1, 64, 3)
    b = rank_error_draws(0, 1, 64, 3, 1, 1)
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y).reshape(np.shape(x)))


@pytest.mark.parametrize("sigma", ["linear", pytest.param("softmax", marks=pytest.mark.slow)])
def test_rank_one_conjugates_are_the_rank_one_channels(sigma):
    # same draws, same prox starts and Newton steps; only the order of floating-point operations differs (matrix
    # V⁻¹ against 1/v), and the prox stops at ‖∇φ‖ ≤ 1e-10(1/v + 1)(1 + ‖z‖): agreement far below 1e-7
    p = Params(T=2, sigma=sigma, alpha_prime=3.0, lam_prime=0.5)
    pre = PretrainState(Q0=2.0, Q=1.2, M=1.0)
    smp, _ = channel_samples(p, pre, 1.0, 64, 0)
    h1, s1, d1 = finetune_hats(p, FinetuneOverlaps(0.6, 0.5, 0.3), smp, 1.0)
    xi, eta = rank_channel_draws(jax.random.fold_in(jax.random.PRNGKey(0), 0), 64, 2, 1, 1)
    ov = RankOverlaps(np.array([[0.6]]), np.array([[0.5]]), np.array([[0.3]]))
    hr, sr, dr = rank_hats(p, ov, RankSamples(xi, eta, smp.A, smp.H), np.eye(1))
    pairs = [(h1.q_hat, hr.q_hat), (h1.m_hat, hr.m_hat), (h1.v_hat, hr.V_hat), (h1.lam_eff, hr.lam_eff),
             (d1["L_ft"], dr["L_ft"]), (d1["replicon"], dr["replicon"]), (s1["replicon"], sr["replicon"])]
    for a, b in pairs:
        assert float(np.squeeze(b)) == pytest.approx(a, rel=1e-7, abs=1e-9)
    assert d1["prox_multimodal_frac"] == dr["prox_multimodal_frac"]


def test_linear_errors_match_wick_closed_form():
    rng = np.random.default_rng(0)
    r, s, T = 2, 3, 3
    G = rng.normal(size=(r + s, r + s + 2))
    C = G @ G.T / (r + s + 2)  # a valid joint covariance [[q, m], [mᵀ, q0]]
    q, m, q0 = C[:r, :r], C[:r, r:], C[r:, r:]
    d = 0.7
    draws = rank_error_draws(3, 1, 2**15, T, r, s)
    sq, B, L = conditional_teacher(q, m, q0)
    law = (0.0, 0.0, d)
    eft, efr = rank_fresh_error_samples(sq, B, L, float(np.trace(q)), float(np.trace(q0)), law, 1.0, draws,
                                        sigma="linear")
    E_ft, E_frozen = rank_linear_errors(T, q, m, q0, d)
    for x, exact in ((np.asarray(eft), E_ft), (np.asarray(efr), E_frozen)):
        assert abs(x.mean() - exact) < 5 * x.std() / np.sqrt(x.size)  # an i.i.d. bound; Sobol' does better
