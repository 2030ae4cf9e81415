"""Bayes-optimal LoRA fine-tuning: SE limits and identities, MC checks, AMP against SE."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.params import ParameterError, Params
from theory.bayes.finetune import (
    _misfit,
    _qhat_samples,
    bayes_error_linear,
    bayes_error_mc,
    delta_bo,
    posterior_moments,
    solve_bayes_finetune,
    weak_recovery_threshold,
)
from theory.stages.finetune import solve_finetune
from theory.states import PretrainState
from validation.amp_finetune import make_instance, run_amp, symmetric_logits

PRE = PretrainState(Q0=2.0, Q=2.18, M=1.9)  # Δ_BO = 0.25 + 2 − 1.9²/2.18 ≈ 0.594
# One set of MC sizes everywhere: each distinct size is a separate jit compilation.
NO, NI, NOE, NIE = 512, 128, 512, 64
FAST = dict(n_outer=NO, n_inner=NI, n_outer_error=NOE, n_inner_error=NIE, threshold=False)


def _lin(**kw) -> Params:
    return Params(T=3, sigma="linear", delta=0.5, **kw)


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_alpha_prime_to_zero_gives_the_prior():
    for sigma in ("linear", "softmax"):
        r = solve_bayes_finetune(Params(T=3, sigma=sigma, alpha_prime=1e-4), PRE, **FAST)
        assert r.converged
        assert r.q_BO < 1e-6
        assert r.E_ft_BO == pytest.approx(r.E_prior, rel=1e-6)
    assert r.E_prior > 0
    lin = solve_bayes_finetune(_lin(alpha_prime=1e-4), PRE, **FAST)
    assert lin.E_prior == pytest.approx(12 * (1 + delta_bo(0.5, PRE)), rel=1e-12)


def test_monotone_in_alpha_prime():
    # Common random numbers: q̂(q) is exactly proportional to α', so the fixed point is monotone.
    res = [solve_bayes_finetune(_lin(alpha_prime=a), PRE, **FAST) for a in (0.4, 1.0, 3.0)]
    assert all(r.converged for r in res)
    qs = [r.q_BO for r in res]
    Es = [r.E_ft_BO for r in res]
    assert qs[0] < qs[1] < qs[2] < 1
    assert Es[0] > Es[1] > Es[2] > 12 * delta_bo(0.5, PRE)


def test_linear_depends_on_pretraining_only_through_delta_bo():
    other = PretrainState(Q0=3.0, Q=1.0, M=math.sqrt(3.0 - (delta_bo(0.5, PRE) - 0.25)))
    assert delta_bo(0.5, other) == pytest.approx(delta_bo(0.5, PRE), rel=1e-12)
    a = solve_bayes_finetune(_lin(alpha_prime=1.0), PRE, **FAST)
    b = solve_bayes_finetune(_lin(alpha_prime=1.0), other, **FAST)
    assert a.q_BO == pytest.approx(b.q_BO, rel=1e-10)
    assert a.E_ft_BO == pytest.approx(b.E_ft_BO, rel=1e-10)
    # softmax: the predictor also sees (M/Q)A_Ŵ, so the error changes with M²/Q at fixed Δ_BO
    sa = bayes_error_mc(0.5, Params(T=3, sigma="softmax"), PRE, n_outer=NOE, n_inner=NIE)
    sb = bayes_error_mc(0.5, Params(T=3, sigma="softmax"), other, n_outer=NOE, n_inner=NIE)
    assert abs(sa[0] - sb[0]) > 5 * math.hypot(sa[1], sb[1])


@pytest.mark.parametrize("q", [0.0, 0.4, 0.9])
def test_linear_error_closed_form_matches_monte_carlo(q):
    p = _lin()
    mc, se = bayes_error_mc(q, p, PRE, n_outer=NOE, n_inner=NIE)
    exact = bayes_error_linear(q, 3, delta_bo(0.5, PRE))
    assert abs(mc - exact) < 4 * se
    assert bayes_error_linear(1.0, 3, 0.3) == pytest.approx(12 * 0.3)


def test_nishimori_identity_and_weak_recovery_slope():
    dbo = delta_bo(0.5, PRE)
    for project in (False, True):
        for q in (0.2, 0.7):
            g2, mtr, _ = _qhat_samples(q, dbo, jax.random.PRNGKey(3), T=3, project=project, n_outer=NO, n_inner=NI)
            g2, mtr = np.asarray(g2), np.asarray(mtr)
            # E‖g‖² = −E Tr ∂g (Nishimori), per-sample difference has small variance
            d = g2 - mtr
            assert abs(d.mean()) < 4 * d.std(ddof=1) / math.sqrt(d.size) + 0.01 * g2.mean()
    # linearisation at q → 0: E‖g‖²/q → E‖E[χχᵀ − I|Y]‖² = 1/α'_c
    ac, ac_se = weak_recovery_threshold(_lin(), PRE, n_outer=NO, n_inner=NI)
    q = 1e-4
    g2, _, _ = _qhat_samples(q, dbo, jax.random.PRNGKey(4), T=3, project=False, n_outer=NO, n_inner=NI)
    g2 = np.asarray(g2) / q
    assert abs(g2.mean() - 1 / ac) < 4 * math.hypot(g2.std(ddof=1) / math.sqrt(g2.size), ac_se / ac**2) + 0.02 / ac


def test_importance_sampler_matches_exact_gaussian_case():
    # With Δ_BO → ∞ the likelihood is flat: posterior = prior N(ω, V I). Half the 40 000 proposal draws come
    # from N(ω, V I), so the standard errors are ≈ √(0.4/2e4) ≈ 0.0045 (mean) and 0.4·√(2/2e4) ≈ 0.004
    # (covariance): the tolerances are ≈ 4.5 and 7 of them.
    om = jnp.array([0.3, -1.0, 0.5])
    zeta = jax.random.normal(jax.random.PRNGKey(0), (40000, 3))
    mean, second, _ = jax.jit(posterior_moments, static_argnums=5)(jnp.zeros((3, 3)), om, 0.4, zeta, 1e8, False)
    assert np.allclose(mean, om, atol=0.02)
    assert np.allclose(second - jnp.outer(mean, mean), 0.4 * np.eye(3), atol=0.03)


_logits_jit = jax.jit(symmetric_logits)
_misfit_jit = jax.jit(_misfit, static_argnums=2)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.2, 3.0), st.floats(-5, 5))
def test_softmax_logits_and_projection(seed, beta, c):
    key = jax.random.PRNGKey(seed)
    G = jax.random.normal(key, (4, 4))
    H = (G + G.T) / 2
    Ht = _logits_jit(jax.nn.softmax(beta * H, axis=-1), beta)
    diff = np.asarray(Ht - H)
    assert np.allclose(diff, diff[0, 0], atol=1e-9)  # equal up to c 11ᵀ
    chi = jax.random.normal(jax.random.fold_in(key, 1), (5, 4))
    e1 = _misfit_jit(H, chi, True)
    e2 = _misfit_jit(H + c * jnp.ones((4, 4)), chi, True)
    assert np.allclose(e1, e2, rtol=1e-9, atol=1e-9)
    assert np.all(_misfit_jit(H, chi, False) >= e1 - 1e-12)


def test_bad_inputs():
    with pytest.raises(ParameterError, match="M"):
        PretrainState(Q0=1.0, Q=1.0, M=2.0)
    with pytest.raises(ParameterError, match="Q0"):
        PretrainState(Q0=0.0, Q=1.0, M=0.0)
    with pytest.raises(ParameterError, match="reuse"):
        solve_bayes_finetune(_lin(reuse=0.5), PRE, **FAST)
    with pytest.raises(ParameterError, match="q_init"):
        solve_bayes_finetune(_lin(), PRE, q_init=0.0, **FAST)
    with pytest.raises(ParameterError, match="Δ_BO"):
        solve_bayes_finetune(Params(T=3, sigma="linear", delta=0.0), PretrainState(Q0=1.0, Q=1.0, M=1.0), **FAST)
    with pytest.raises(ValueError, match="n_inner"):
        solve_bayes_finetune(_lin(), PRE, **{**FAST, "n_inner": 6})


def test_small_amp_agrees_with_state_evolution():
    p = _lin(alpha_prime=2.0)
    inst = make_instance(jax.random.PRNGKey(11), p, 250, n_test=500)
    amp = run_amp(inst, p, n_inner=NI)
    se = solve_bayes_finetune(p, inst.pre, **FAST)
    assert amp.m / amp.q0 == pytest.approx(se.q_BO, abs=0.05)
    assert amp.E_ft == pytest.approx(se.E_ft_BO, abs=4 * amp.E_ft_se + 0.3)


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_amp_matches_state_evolution_large_D(sigma):
    p = Params(T=3, sigma=sigma, alpha_prime=2.0, delta=0.5)
    for D in (500, 1000):
        ms, Es, Eses = [], [], []
        for seed in range(3):
            inst = make_instance(jax.random.PRNGKey(100 + seed), p, D)
            amp = run_amp(inst, p, seed=seed)
            ms.append(amp.m / amp.q0)
            Es.append(amp.E_ft)
            Eses.append(amp.E_ft_se)
        se = solve_bayes_finetune(p, inst.pre, threshold=False)
        gap = abs(np.mean(ms) - se.q_BO)
        assert gap < 3 * np.std(ms, ddof=1) / math.sqrt(3) + 3 * se.q_se + 0.02
        assert abs(np.mean(Es) - se.E_ft_BO) < 3 * np.std(Es, ddof=1) / math.sqrt(3) + 3 * se.E_ft_BO_se + 0.03 * se.E_ft_BO


@pytest.mark.parametrize("alpha_prime, lam_primes", [(3.0, (0.05, 0.5, 2.0)), (0.5, (2.0,))])
@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_bayes_optimal_error_is_below_erm_on_a_grid_of_ridges(alpha_prime, lam_primes):
    """E_ft^BO ≤ E_ft(λ') for every λ' (linear σ, the same frozen order parameters), within the BO
    error's Monte-Carlo standard error (the ERM linear errors are closed-form in (q, m))."""
    pre = PretrainState(Q0=2.0, Q=2.197, M=1.915)
    bo = solve_bayes_finetune(Params(T=3, sigma="linear", alpha_prime=alpha_prime), pre, n_outer=600, n_inner=128,
                              threshold=False)
    se = max(bo.E_ft_BO_se, bo.E_ft_BO_se_q)
    for lp in lam_primes:
        erm = solve_finetune(Params(T=3, sigma="linear", alpha_prime=alpha_prime, lam_prime=lp), pre, n_mc=800)
        assert erm.converged
        assert bo.E_ft_BO <= erm.E_ft + 3 * se, lp
