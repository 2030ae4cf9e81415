"""ERM pre-training theory with the Monte-Carlo T×T channel (softmax σ; linear σ as its check)."""

import math

import numpy as np
import pytest

from model.laws import to_entries, to_matrix, variance_factors
from model.params import ParameterError, Params
from theory.channels.pretrain import ChannelDraws, channel, fresh_test_error
from theory.draws import sobol_normals
from theory.stages.pretrain import linear_channel, solve_pretrain
from theory.states import PretrainOverlaps

N = 512


@pytest.fixture(scope="module")
def draws3():
    return ChannelDraws.make(3, N, 0)


def test_entries_round_trip_and_variance_factors():
    v = np.arange(1.0, 7.0)
    A = np.asarray(to_matrix(v, 3))
    assert np.allclose(A, A.T) and np.allclose(np.asarray(to_entries(A, 3)), v)
    assert list(variance_factors(3)) == [2.0, 1.0, 1.0, 2.0, 1.0, 2.0]


@pytest.mark.parametrize("ov", [(1.0, 0.8, 0.5), (2.0, 1.9, 0.05), (0.3, 0.2, 2.0)])
def test_mc_channel_with_linear_sigma_equals_the_closed_form(draws3, ov):
    """Normalisation check of the general recipe: σ̂ exactly, m̂ (both estimators), q̂, E_pre, L_pre within 4 sem."""
    Q, M, V = ov
    kw = dict(T=3, alpha=0.1, delta=0.5, Q0=2.0)
    r = channel(Q, M, V, sigma="linear", draws=draws3, **kw)
    ref = linear_channel(PretrainOverlaps(Q, M, V), **kw)
    assert r.frac_converged == 1.0 and r.frac_multimodal == 0.0
    assert r.hats.sigma_hat == pytest.approx(ref.sigma_hat, rel=1e-10)
    assert r.m_hat_derivative == pytest.approx(ref.m_hat, rel=1e-10)
    assert r.hats.m_hat == r.m_hat_derivative  # the default estimator
    assert abs(r.m_hat_stein - ref.m_hat) < 4 * r.sem["m_hat_stein"]
    assert abs(r.hats.q_hat - ref.q_hat) < 4 * r.sem["q_hat"]
    err = 2.0 - 2 * M + Q + 0.25
    assert abs(r.E_pre - 12 * err) < 4 * r.E_pre_sem
    assert abs(r.L_pre - 12 * err / (1 + 4 * V) ** 2) < 4 * r.L_pre_sem


def test_fresh_test_error_linear_formula():
    Q, M, Q0, d = 1.2, 0.9, 2.0, 0.5
    E, se = fresh_test_error(Q, M, T=3, sigma="linear", delta=d, Q0=Q0, n=20000)
    assert abs(E - 12 * (Q0 - 2 * M + Q + d / 2)) < 4 * se


def test_softmax_channel_estimators_agree():
    """Where the prox is (nearly always) unique (small V), the Stein m̂ and the derivative m̂ (∂g/∂h* by
    implicit differentiation) estimate the same number, and so do the implicit-Jacobian σ̂ and its Stein form."""
    d = ChannelDraws.make(2, N, 3)
    r = channel(0.8, 0.5, 0.3, T=2, sigma="softmax", alpha=0.5, delta=0.5, Q0=2.0, draws=d, beta=2.0)
    assert r.frac_converged == 1.0 and r.frac_multimodal < 0.01
    assert abs(r.m_hat_stein - r.m_hat_derivative) < 4 * r.sem["m_hat_stein"]
    assert r.sigma_hat_stein == pytest.approx(r.hats.sigma_hat, rel=0.15)
    s = channel(0.8, 0.5, 0.3, T=2, sigma="softmax", alpha=0.5, delta=0.5, Q0=2.0, draws=d, beta=2.0,
                m_hat_form="stein")
    assert s.hats.m_hat == r.m_hat_stein and s.hats.q_hat == r.hats.q_hat


def test_sobol_normals_are_standard_normal_and_seeded():
    z = sobol_normals(6, 4096, seed=3)
    assert z.shape == (4096, 6) and np.all(np.isfinite(z))
    # randomised QMC: the moments are far more accurate than the i.i.d. 1/√n
    assert np.max(np.abs(z.mean(axis=0))) < 5e-3 and np.max(np.abs(z.var(axis=0) - 1)) < 1e-2
    assert np.array_equal(z, sobol_normals(6, 4096, seed=3)) and not np.array_equal(z, sobol_normals(6, 4096, seed=4))
    with pytest.raises(ValueError, match="power of two"):
        sobol_normals(6, 1000, seed=0)
    assert len(ChannelDraws.make(3, 1000, 0)) == 1024  # rounded up
    assert len(ChannelDraws.make(3, 1000, 0, method="mc")) == 1000


def test_replicas_are_independent_solves_averaged():
    p = Params(sigma="softmax", T=2, alpha=0.1, lam=0.1)
    runs = [solve_pretrain(p, n_mc=N, key=k) for k in (5, 6, 7)]
    r = solve_pretrain(p, n_mc=N, key=5, replicas=3)
    assert r.converged and r.replicas == 3
    Qs = np.array([x.Q for x in runs])
    assert r.Q == pytest.approx(Qs.mean(), rel=1e-6)
    assert r.replica_sem["Q"] == pytest.approx(Qs.std(ddof=1) / math.sqrt(3), rel=1e-3)
    assert r.E_pre_sem == r.replica_sem["E_pre"] > 0
    with pytest.raises(ParameterError, match="replicas"):
        solve_pretrain(p, replicas=0)


def test_softmax_fixed_point_limits_and_damping():
    p = Params(sigma="softmax", T=2, alpha=0.1, lam=0.1)
    a = solve_pretrain(p, n_mc=N)
    b = solve_pretrain(p, n_mc=N, damping=0.8, accelerate=False, init=PretrainOverlaps(Q=0.2, M=0.3, V=1.0))
    assert a.converged and b.converged
    assert (a.Q, a.M, a.V) == pytest.approx((b.Q, b.M, b.V), rel=2e-5)
    assert a.Q0 == 2.0 and 0 < a.L_pre < a.E_pre
    assert a.prox["converged"] == 1.0
    assert set(a.hats_sem) == {"m_hat", "q_hat", "sigma_hat", "m_hat_stein"} and a.E_pre_sem > 0


def test_strong_weight_decay_gives_zero_student_softmax():
    """λ → ∞: Q = M = 0 and E_pre = E‖σ(0) − B‖_F² = E‖1/T − σ(A0 + √ΔZ)‖²."""
    p = Params(sigma="softmax", T=2, alpha=0.1, lam=50.0)
    r = solve_pretrain(p, n_mc=N)
    assert r.converged and r.Q == pytest.approx(0.0, abs=1e-12) and r.M == pytest.approx(0.0, abs=1e-12)
    E0, se = fresh_test_error(1e-30, 0.0, T=2, sigma="softmax", delta=0.5, Q0=2.0, n=20000, key=7)
    assert abs(r.E_pre - E0) < 4 * math.hypot(se, r.E_pre_sem)
    # Â = ω = 0 up to V_MIN·∇ℓ (V = 0 is clamped to V_MIN = 1e-9): training loss = test loss on the same draws
    assert r.L_pre == pytest.approx(r.prox["E_pre_channel"], rel=1e-7)


def test_few_samples_give_zero_student_softmax():
    r = solve_pretrain(Params(sigma="softmax", T=2, alpha=1e-3, lam=1.0), n_mc=N)
    assert r.converged and r.Q < 1e-10 and abs(r.M) < 1e-10


def test_beta_to_zero_softmax_is_uniform():
    """β → 0: σ(A) → 1/T whatever A, so the student learns nothing and E_pre → 0 (the label is 1/T too)."""
    r = solve_pretrain(Params(sigma="softmax", T=2, alpha=0.1, lam=0.1, beta=1e-3), n_mc=N)
    assert r.converged and r.Q < 1e-8 and r.E_pre < 1e-5


@pytest.mark.slow
def test_mc_fixed_point_with_linear_sigma_matches_closed_form():
    p = Params(sigma="linear", T=3, alpha=0.1, lam=0.1)
    ref = solve_pretrain(p)
    r = solve_pretrain(p, mc_linear=True, n_mc=6000)
    assert r.converged
    assert r.E_pre == pytest.approx(ref.E_pre, rel=0.03)
    assert (r.Q, r.M, r.V) == pytest.approx((ref.Q, ref.M, ref.V), rel=0.05)
