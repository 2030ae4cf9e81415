"""Bayes-optimal rank-r* fine-tuning (theory.bayes.finetune_rank): rank-one identity, importance sampler against
brute force, Nishimori identity, weak recovery, limits, invariances, the closed-form error, the Bayes bound."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import model.precision  # noqa: F401  (float64)
from model.laws import goe_like
from model.params import ParameterError, Params
from theory.bayes import finetune as f1
from theory.bayes import finetune_rank as fr
from theory.states import PretrainState

PRE = PretrainState(Q0=2.0, Q=2.18, M=1.9)  # Δ_BO ≈ 0.594
# One set of MC sizes everywhere: each distinct size is a separate jit compilation.
NO, NI = 256, 128
FAST = dict(n_outer=NO, n_inner=NI, n_outer_error=NO, n_inner_error=64, threshold=False)


def _p(sigma="linear", r=2, T=2, **kw) -> Params:
    return Params(T=T, sigma=sigma, delta=0.5, teacher_rank=r, rank=r, **kw)


def _rot(r):
    return jnp.asarray(fr.mode_rotations(r))


def test_rank_one_draws_and_map_equal_the_scalar_ones():
    """At r* = 1 the rank-r* sampler takes the scalar module's keys, draws and proposal: equal to rounding (the
    weak-recovery and error samplers, and softmax, in the slow test of the whole solve below)."""
    dbo, key = f1.delta_bo(0.5, PRE), jax.random.PRNGKey(5)
    g2, mtr, ess = f1._qhat_samples(0.4, dbo, key, T=3, project=False, n_outer=NO, n_inner=NI)
    gg, partner, ess_r = fr._qhat_samples_rank(jnp.array([[0.4]]), _rot(1), dbo, key, T=3, project=False,
                                               n_outer=NO, n_inner=NI)
    assert np.allclose(np.asarray(gg)[:, 0, 0], g2, rtol=1e-10, atol=1e-12)
    assert np.allclose(np.asarray(partner)[:, 0, 0], mtr, rtol=1e-9, atol=1e-9)
    assert np.allclose(ess_r, ess, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_rank_one_solve_equals_the_scalar_solve(sigma):
    p = Params(T=3, sigma=sigma, delta=0.5, alpha_prime=2.0)
    kw = dict(n_outer=NO, n_inner=NI, n_outer_error=NO, n_inner_error=64)
    a = f1.solve_bayes_finetune(p, PRE, **kw, threshold=True)
    b = fr.solve_bayes_finetune_rank(p, PRE, **kw, threshold=True, anderson=0)
    assert a.converged and b.converged and a.n_steps == b.n_steps
    for name in ("q_BO", "E_ft_BO", "E_ft_BO_se", "q_se", "q_hat", "E_prior", "alpha_c", "delta_BO", "ess_min"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-8, abs=1e-12), name
    assert b.tr_q_BO == b.q_BO and b.q_aniso == 0.0


def _channel_draw(key, T, r, q, dbo):
    k1, k2, k3 = jax.random.split(key, 3)
    V = np.eye(r) - q
    omega = jax.random.normal(k1, (T, r)) @ jnp.asarray(np.linalg.cholesky(q).T)
    chi_star = omega + jax.random.normal(k2, (T, r)) @ jnp.asarray(np.linalg.cholesky(V).T)
    Y = chi_star @ chi_star.T - r * jnp.eye(T) + math.sqrt(dbo) * goe_like(k3, (), T)
    return Y, omega, jnp.asarray(V)


@pytest.mark.parametrize("project", [False, True])
def test_importance_sampler_matches_brute_force(project):
    """Posterior mean and Gram of χ ∈ R^{2×2}: the mixture sampler (4096 draws) against plain prior sampling
    (200 000 draws, self-normalised), within 5 combined standard errors (posterior sd / √ESS)."""
    T, r, dbo = 2, 2, 0.5
    q = np.array([[0.5, 0.2], [0.2, 0.3]])
    moments = jax.jit(fr.posterior_moments_rank, static_argnums=6)
    for seed in range(3):
        Y, omega, V = _channel_draw(jax.random.PRNGKey(seed), T, r, q, dbo)
        zeta = fr.inner_normals(jax.random.PRNGKey(100 + seed), 4096, T, r)
        mean, second, gram, ess = moments(Y, omega, V, zeta, _rot(r), dbo, project)
        chi = omega[None] + jnp.einsum("kal,nl->kan", jax.random.normal(jax.random.PRNGKey(200 + seed),
                                                                         (200_000, T, r)), jnp.linalg.cholesky(V))
        w = jax.nn.softmax(-fr._misfit_rank(Y, chi, project) / (4 * dbo))
        ess_bf = 1 / float(jnp.sum(w * w))
        mean_bf = jnp.einsum("k,kal->al", w, chi)
        var_bf = jnp.einsum("k,kal->al", w, chi**2) - mean_bf**2
        gram_bf = jnp.einsum("k,kal,kan->ln", w, chi, chi)
        assert ess > 50 and ess_bf > 500
        se = np.sqrt(np.asarray(var_bf) * (1 / ess + 1 / ess_bf))
        assert np.all(np.abs(np.asarray(mean - mean_bf)) < 5 * se), seed  # se ≥ 0.017 here
        per = jnp.einsum("kal,kan->kln", chi, chi)
        se_gram = np.sqrt(np.asarray(jnp.einsum("k,kln->ln", w, per**2) - gram_bf**2) * (1 / ess + 1 / ess_bf))
        assert np.all(np.abs(np.asarray(gram - gram_bf)) < 5 * se_gram), seed
        assert np.allclose(np.trace(np.asarray(second)), np.trace(np.asarray(gram)), rtol=1e-10)


def test_flat_likelihood_gives_the_prior():
    """Δ_BO → ∞: the posterior is the prior Π_a N(ω_a, V); half the 40 000 draws are from it."""
    T, r = 3, 2
    V = jnp.array([[0.4, 0.1], [0.1, 0.3]])
    om = jnp.array([[0.3, -1.0], [0.5, 0.2], [-0.4, 0.8]])
    zeta = fr.inner_normals(jax.random.PRNGKey(0), 40000, T, r)
    mean, _, gram, _ = jax.jit(fr.posterior_moments_rank, static_argnums=6)(jnp.zeros((T, T)), om, V, zeta,
                                                                           _rot(r), 1e8, False)
    # standard errors ≈ √(0.4/2e4) ≈ 0.0045 (mean), ≈ 0.4·√(3·2/2e4) ≈ 0.007 (summed covariance)
    assert np.allclose(mean, om, atol=0.025)
    assert np.allclose(np.asarray(gram - mean.T @ mean), T * np.asarray(V), atol=0.04)


@pytest.mark.parametrize("sigma", ["linear", pytest.param("softmax", marks=pytest.mark.slow)])
def test_nishimori_identity(sigma):
    """E[g_outᵀ g_out] = E[V⁻¹(TV − Σ_a Cov[χ_a])V⁻¹] (r* = 2, anisotropic q)."""
    q = jnp.array([[0.6, 0.1], [0.1, 0.3]])
    gg, partner, _ = fr._qhat_samples_rank(q, _rot(2), f1.delta_bo(0.5, PRE), jax.random.PRNGKey(3), T=2,
                                           project=sigma == "softmax", n_outer=NO, n_inner=NI)
    d = np.asarray(gg - partner)
    se = d.std(0, ddof=1) / math.sqrt(NO)
    assert np.all(np.abs(d.mean(0)) < 4 * se + 0.02 * np.abs(np.asarray(gg).mean(0)).max())


@pytest.mark.slow
@pytest.mark.parametrize("r", [2, 3])
def test_closed_form_error_against_monte_carlo(r):
    p = _p(T=2, r=r)
    q = np.array([[0.6, 0.25, 0.1], [0.25, 0.3, 0.0], [0.1, 0.0, 0.2]])[:r, :r]
    exact = fr.bayes_error_linear_rank(q, 2, f1.delta_bo(0.5, PRE))
    mc, se = fr.bayes_error_rank(q, p, PRE, closed_form=False, n_outer=2000, n_inner=64)
    assert abs(mc - exact) < 4 * se


def test_closed_form_error_limits():
    dbo = f1.delta_bo(0.5, PRE)
    s = 0.37
    assert fr.bayes_error_linear_rank(s * np.eye(3), 2, dbo) == pytest.approx(6 * (dbo + 3 * (1 - s * s)), rel=1e-12)
    assert fr.bayes_error_linear_rank([[s]], 3, dbo) == pytest.approx(f1.bayes_error_linear(s, 3, dbo), rel=1e-12)
    assert fr.bayes_error_linear_rank(np.eye(2), 2, dbo) == pytest.approx(6 * dbo, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_closed_form_error_is_rotation_invariant(seed, r):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((r, r))
    lam = rng.uniform(0, 1, r)
    O, _ = np.linalg.qr(A)
    q = (O * lam) @ O.T
    P = rng.permutation(np.eye(r))
    R, _ = np.linalg.qr(rng.standard_normal((r, r)))
    e = fr.bayes_error_linear_rank(q, 3, 0.4)
    assert fr.bayes_error_linear_rank(P @ q @ P.T, 3, 0.4) == pytest.approx(e, rel=1e-12)
    assert fr.bayes_error_linear_rank(R @ q @ R.T, 3, 0.4) == pytest.approx(e, rel=1e-12)
    assert fr.bayes_error_linear_rank(np.diag(lam), 3, 0.4) == pytest.approx(e, rel=1e-12)


def test_map_is_permutation_equivariant_within_monte_carlo_error():
    """G(PqPᵀ) = P G(q) Pᵀ for the swap P (exact for the state evolution; the fixed draws break it by MC error)."""
    qmap = fr.QhatMap(_p(r=2), PRE, n_outer=NO, n_inner=NI)
    q = np.array([[0.7, 0.0], [0.0, 0.2]])
    P = np.array([[0.0, 1.0], [1.0, 0.0]])
    a, _ = qmap.samples(q)
    b, _ = fr.QhatMap(_p(r=2), PRE, n_outer=NO, n_inner=NI, seed=9).samples(P @ q @ P.T)
    b = np.einsum("ij,kjl,ml->kim", P, b, P)  # back to the frame of q
    se = np.sqrt(a.var(0, ddof=1) / NO + b.var(0, ddof=1) / NO)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * se)
    # and the anisotropy of q shows in G: the direction with the larger overlap has the larger conjugate
    assert a.mean(0)[0, 0] > a.mean(0)[1, 1] + 4 * se[0, 0]


def test_weak_recovery_threshold_and_the_uninformed_fixed_point():
    p = _p(r=2)
    ac, ac_se = fr.weak_recovery_threshold_rank(p, PRE, n_outer=NO, n_inner=NI)
    assert 0 < ac < math.inf and 0 < ac_se < math.inf
    # linearisation at q → 0: E[g_outᵀ g_out]/s → (1/α'_c) I
    s = 1e-4
    gg, _ = fr.QhatMap(p, PRE, n_outer=NO, n_inner=NI, seed=4).samples(s * np.eye(2))
    g = np.trace(gg, axis1=1, axis2=2) / 2 / s
    assert abs(g.mean() - 1 / ac) < 4 * math.hypot(g.std(ddof=1) / math.sqrt(NO), ac_se / ac**2)
    # well below: q = 0 attracts. (At these sizes the Monte-Carlo map's slope at q → 0 is noisy, up to twice
    # its mean along one direction, so 0.5 α'_c is not safely below for the fixed draws.)
    below = fr.solve_bayes_finetune_rank(p.replace(alpha_prime=0.25 * ac), PRE, **FAST)
    assert below.converged and below.q_BO < 1e-5 and below.tr_q_BO < 2e-5
    above = fr.solve_bayes_finetune_rank(p.replace(alpha_prime=2.0 * ac), PRE, **FAST)
    assert above.converged and above.q_BO > 0.1


def test_large_alpha_prime_recovers_the_teacher():
    p = _p(r=2, alpha_prime=1e4)
    b = fr.solve_bayes_finetune_rank(p, PRE, **FAST)
    assert b.converged
    # I − q = (I + q̂)⁻¹ with q̂ ≈ α'G, G ≳ 1 here: within 1/α' = 1e-4 (measured 9e-6); the linear error
    # 6(Δ_BO + 2 Tr(qV) + Tr V²), V = I − q, is then 6Δ_BO to 2·2·1e-4/Δ_BO ≈ 7e-4 relative (measured 6e-5)
    assert np.allclose(np.array(b.q_matrix), np.eye(2), atol=1e-4)
    assert b.E_ft_BO == pytest.approx(6 * b.delta_BO, rel=1e-3)
    assert b.E_prior == pytest.approx(6 * (b.delta_BO + 2), rel=1e-12)


def test_bad_inputs():
    with pytest.raises(ParameterError, match="q_init"):
        fr.solve_bayes_finetune_rank(_p(r=2), PRE, q_init=1.2, **FAST)
    with pytest.raises(ParameterError, match="q_init"):
        fr.solve_bayes_finetune_rank(_p(r=2), PRE, q_init=np.eye(3) * 0.5, **FAST)
    with pytest.raises(ValueError, match="n_inner"):
        fr.solve_bayes_finetune_rank(_p(r=2), PRE, n_outer=NO, n_inner=36, threshold=False)
    with pytest.raises(ParameterError, match="reuse"):
        fr.solve_bayes_finetune_rank(_p(r=2, reuse=0.5), PRE, **FAST)
    with pytest.raises(ParameterError, match="s = "):
        fr.curve_point_rank(_p(r=2), PRE, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_anisotropic_start_returns_to_the_isotropic_curve(sigma):
    """From q = diag(0.9, 0.05) and its swap the iteration ends at one isotropic fixed point (within MC error),
    and that point lies on the isotropic curve α'(s)."""
    p = _p(sigma, r=2, alpha_prime=3.0)
    kw = dict(n_outer=1000, n_inner=256, n_outer_error=1000, n_inner_error=64, threshold=False)
    a = fr.solve_bayes_finetune_rank(p, PRE, q_init=np.diag([0.9, 0.05]), **kw)
    b = fr.solve_bayes_finetune_rank(p, PRE, q_init=np.diag([0.05, 0.9]), **kw)
    assert a.converged and b.converged
    assert a.tr_q_BO == pytest.approx(b.tr_q_BO, rel=1e-5)
    assert a.q_aniso < 10 * a.q_se
    c = fr.curve_point_rank(p, PRE, a.q_BO, n_outer=1000, n_inner=256, n_outer_error=1000, n_inner_error=64)
    assert abs(c.alpha_prime - 3.0) < 4 * c.alpha_prime_se


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_bayes_optimal_error_is_below_the_rank_r_erm(sigma):
    """E_ft_BO ≤ E_ft of the rank-r* ERM theory at r = r* = 2 (same frozen order parameters), through
    theory.solve, within the BO error's MC standard error."""
    import theory

    base = Params(T=2, sigma=sigma, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, lam=0.1, lam_prime=0.5,
                  rank=2, teacher_rank=2)
    o = theory.solve(base, stage="pretrain", bayes=False).observables
    pre = PretrainState(Q0=o["Q0"], Q=o["Q"], M=o["M"])
    for ap in (3.0, 10.0):
        pt = theory.solve(base.replace(alpha_prime=ap), stage="finetune", pretrain=pre, bayes="finetune", n_mc=400,
                          max_steps=60)
        assert pt.converged
        ob = pt.observables
        assert 0 < ob["q_BO"] < 1
        assert ob["E_ft_BO"] <= ob["E_ft"] + 3 * pt.mc_sem["E_ft_BO"] + 3 * pt.mc_sem.get("E_ft", 0.0), ap
