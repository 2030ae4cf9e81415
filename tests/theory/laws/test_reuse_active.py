"""Tests of the reused-sequence and active-selection fine-tuning theory (theory/laws/, theory/stages/finetune.py)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import theory
from model.laws import activation
from model.observables import delta_eff as delta_eff_of
from model.params import ParameterError, Params
from simulate.run import run
from theory.channels.lora import ChannelSamples, channel_draws, channel_pairs, finetune_hats
from theory.laws.fresh import frozen_pair, noise_law, optimal_delta_eff
from theory.laws.mixture import channel_samples, offdiag_mean_square
from theory.laws.reused import reused_delta_eff_linear, reused_pairs, training_law
from theory.laws.selected import c_T, selected_delta_eff, selected_pairs
from theory.stages.finetune import solve_finetune
from theory.stages.pretrain import solve_pretrain
from theory.states import FinetuneOverlaps, PretrainState

PRE = PretrainState(Q0=1.5, Q=1.67, M=1.45, V=0.34)  # close to the figure-3 linear pre-training fixed point
OP = PretrainState(Q0=PRE.Q0, Q=PRE.Q, M=PRE.M)
LIN = Params(sigma="linear", T=2, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, alpha_prime=3.0, lam_prime=0.5)
SMALL = dict(n_mc=400, n_test=2000)


@pytest.fixture(scope="module")
def reuse_solutions():
    return {e: solve_finetune(LIN.replace(reuse=e), PRE, **SMALL) for e in (0.0, 0.5, 1.0)}


def _within(x, se, target, k=4.0):
    return abs(x - target) < k * se


def delta_eff(delta, pre, beta_W=1.0):
    """``Δ_eff(β_W)`` of the fresh law at ``pre`` (:func:`model.observables.delta_eff`)."""
    return delta_eff_of(delta, pre.Q0, pre.Q, pre.M, beta_W)


# ---------------------------------------------------------------------------------- fresh limit e = 0
@pytest.mark.parametrize("sigma", ["linear", pytest.param("softmax", marks=pytest.mark.slow)])
def test_e0_samples_and_hats_are_exactly_the_fresh_channel(sigma):
    p = Params(sigma=sigma, T=2, alpha_prime=3.0)
    n, key = SMALL["n_mc"], 5
    samples, info = channel_samples(p, PRE, 1.0, n, key)
    law = noise_law(p, OP, 1.0)
    xi, eta, G1, G2 = channel_draws(jax.random.fold_in(jax.random.PRNGKey(key), 0), n, p.T)
    A, H = frozen_pair(tuple(float(x) for x in law), G1, G2)
    fresh = ChannelSamples(xi, eta, A, H)
    ov = FinetuneOverlaps(q=0.6, m=0.4, v=0.3)
    old = channel_pairs(ov.q, ov.m, ov.v, 1.0, p.beta, fresh.xi, fresh.eta, fresh.A, fresh.H, sigma=sigma, n_iter=20)
    hats, _, diag = finetune_hats(p, ov, samples, 1.0)
    a = p.effective_alpha_prime
    assert hats.q_hat == a * float(np.mean(np.asarray(old[0])))
    assert hats.m_hat == a * float(np.mean(np.asarray(old[1])))
    assert hats.v_hat == a * float(np.mean(np.asarray(old[2])))
    assert info["delta_eff"] == delta_eff(p.delta, OP)


def test_e0_solution_identical_with_or_without_V(reuse_solutions):
    r1 = solve_finetune(LIN, OP, **SMALL)
    r2 = reuse_solutions[0.0]  # solved with PRE = (Q0, Q, M, V)
    assert r1.converged
    for name in ("q", "m", "v", "E_ft", "L_ft", "E_frozen", "delta_eff"):
        assert getattr(r1, name) == getattr(r2, name), name


# ------------------------------------------------------------------------------------- reused law
def test_linear_reused_delta_eff_is_the_training_residual():
    # H − Â_train = y − (ω + 4Vy)/(1 + 4V) = (y − ω)/(1 + 4V), Var_off(y − ω) = Q0 − 2M + Q + Δ/2
    d = 0.5
    expected = (PRE.Q0 - 2 * PRE.M + PRE.Q + d / 2) / (1 + 4 * PRE.V) ** 2
    assert reused_delta_eff_linear(d, PRE) == pytest.approx(expected, rel=1e-12)
    A, H = reused_pairs(LIN, PRE, 1.0, jax.random.PRNGKey(1), 200_000)
    mc, se = offdiag_mean_square(A, H)
    assert _within(mc, se, expected)
    # GOE-like: each diagonal entry of H − A has twice the off-diagonal variance
    R = np.asarray(H - A)
    assert _within(float(np.mean(R[:, 0, 0] ** 2)), float(np.std(R[:, 0, 0] ** 2) / math.sqrt(len(R))), 2 * expected)
    # a different V gives a different residual (the test can fail)
    assert abs(reused_delta_eff_linear(d, PretrainState(Q0=1.5, Q=1.67, M=1.45, V=0.1)) - expected) > 0.02


def test_linear_training_law_moments_and_recalibration():
    Atr, A0, Z = training_law(LIN, PRE, jax.random.PRNGKey(2), 200_000)
    off = lambda X: np.asarray(X)[:, 0, 1]  # noqa: E731
    n = 200_000
    # Cov(A0, Â_train) = (M + 4V(Q0 + ... )) / (1 + 4V) with Cov(ω, A0) = M, Var A0 = Q0
    V, Q, M, Q0 = PRE.V, PRE.Q, PRE.M, PRE.Q0
    c = (M + 4 * V * Q0) / (1 + 4 * V)
    x = off(A0) * off(Atr)
    assert _within(float(x.mean()), float(x.std() / math.sqrt(n)), c)
    z = off(Z) ** 2
    assert _within(float(z.mean()), float(z.std() / math.sqrt(n)), 0.5)
    for bW in (0.5, M / Q, 1.3):
        A, H = reused_pairs(LIN, PRE, bW, jax.random.PRNGKey(3), n)
        mc, se = offdiag_mean_square(A, H)
        assert _within(mc, se, reused_delta_eff_linear(LIN.delta, PRE, bW)), bW


@pytest.mark.slow
def test_linear_e1_is_the_fresh_channel_at_the_training_residual():
    # linear σ: the loss sees only H − A, GOE-like of variance δ_reused on reused sequences, so e = 1 solves
    # the same fixed point as fresh sequences whose Δ_eff equals δ_reused (different MC draws).
    r1 = solve_finetune(LIN.replace(reuse=1.0), PRE, n_mc=4000)
    d_re = reused_delta_eff_linear(LIN.delta, PRE)
    fresh_pre = PretrainState(Q0=1.0, Q=1.0, M=1.0 - d_re / 2)  # Δ = 0: δ = Q0 − 2M + Q = δ_reused
    assert delta_eff(0.0, fresh_pre) == pytest.approx(d_re)
    r0 = solve_finetune(LIN.replace(delta=0.0), fresh_pre, n_mc=4000)
    assert r1.converged and r0.converged
    for name in ("q", "m", "o_w"):
        assert getattr(r1, name) == pytest.approx(getattr(r0, name), abs=0.005), name


def test_mixture_delta_eff_and_ordering(reuse_solutions):
    r0, r5, r1 = (reuse_solutions[e] for e in (0.0, 0.5, 1.0))
    assert r0.converged and r5.converged and r1.converged
    d_f, d_r = delta_eff(LIN.delta, OP), reused_delta_eff_linear(LIN.delta, PRE)
    assert r0.delta_eff == d_f and r1.delta_eff == pytest.approx(d_r)
    assert r5.delta_eff == pytest.approx(0.5 * d_f + 0.5 * d_r)
    assert r5.diagnostics["n_reused_samples"] == SMALL["n_mc"] // 2
    # less noise felt ⇒ better direction (the test can fail: reversed if the reused law were wrong)
    assert r0.o_w < r5.o_w < r1.o_w
    assert r0.L_ft > r5.L_ft > r1.L_ft
    # the test quantities stay on fresh sequences: the test residual δ_fresh, same frozen error
    T = LIN.T
    for r in (r5, r1):
        assert r.E_ft == pytest.approx(T * (T + 1) * (d_f + r.q**2 + 1 - 2 * r.m**2))
        assert r.E_frozen == pytest.approx(r0.E_frozen)


def test_reuse_needs_V_and_softmax_training_law():
    with pytest.raises(ParameterError, match="susceptibility V"):
        solve_finetune(LIN.replace(reuse=0.5), OP, **SMALL)
    with pytest.raises(ParameterError, match="susceptibility V"):
        reused_pairs(LIN, OP, 1.0, jax.random.PRNGKey(0), 10)
    with pytest.raises(ParameterError, match="V"):
        PretrainState(Q0=1.5, Q=1.0, M=1.0, V=-1.0)


def test_training_law_matches_linear_closed_form():
    p = LIN
    pre = solve_pretrain(p)
    A, A0, Z = training_law(p, pre, jax.random.PRNGKey(4), 100_000)
    R = np.asarray(A0) + math.sqrt(p.delta) * np.asarray(Z) - np.asarray(A)
    x = R[:, 0, 1] ** 2
    target = reused_delta_eff_linear(p.delta, PretrainState.of(pre))
    assert _within(float(x.mean()), float(x.std() / math.sqrt(x.size)), target)


def test_training_law_linear_and_softmax():
    pre = solve_pretrain(Params(sigma="linear", T=3, alpha=0.1, lam=0.1))
    A, A0, Z = training_law(Params(sigma="linear", T=3), pre, jax.random.PRNGKey(1), 4000)
    assert A.shape == A0.shape == Z.shape == (4000, 3, 3)
    Z = np.asarray(Z)
    assert np.allclose(Z, np.swapaxes(Z, 1, 2))
    assert np.var(Z[:, 0, 0]) == pytest.approx(1.0, abs=0.1) and np.var(Z[:, 0, 1]) == pytest.approx(0.5, abs=0.05)
    # linear: the training residual is (y − ω)/(1 + 4V), its off-diagonal variance (Q0 − 2M + Q + Δ/2)/(1 + 4V)²
    res = np.asarray(A0) + math.sqrt(0.5) * Z - np.asarray(A)
    want = (pre.Q0 - 2 * pre.M + pre.Q + 0.25) / (1 + 4 * pre.V) ** 2
    assert np.var(res[:, 0, 1]) == pytest.approx(want, rel=0.1)
    sp = Params(sigma="softmax", T=2, alpha=0.1, lam=0.1)
    pre_s = solve_pretrain(sp, n_mc=512)
    A, A0, Z = training_law(sp, pre_s, 5, 512)
    B = activation(np.asarray(A0) + math.sqrt(sp.delta) * np.asarray(Z), "softmax", 1.0)
    L = float(np.mean(np.sum((np.asarray(activation(A, "softmax", 1.0)) - np.asarray(B)) ** 2, axis=(1, 2))))
    assert L == pytest.approx(pre_s.L_pre, rel=0.25)  # the same law as the channel's training loss


# ------------------------------------------------------------------------------------ selected law
def test_c_T_reproduces_model_finite_rho_excess():
    # MODEL.md §7, T = 3: c ≈ 0.35, 0.196, 0.107 at ρ = 0.2, 0.05, 0.01
    for rho, c in ((0.2, 0.35), (0.05, 0.196), (0.01, 0.107)):
        assert c_T(3, rho) == pytest.approx(c, abs=0.006), rho
    assert c_T(3, 1.0) == 1.0
    assert c_T(3, 0.999) == pytest.approx(1.0, abs=0.01)
    assert c_T(2, 1e-4) < 0.02  # → 0 as ρ → 0
    rhos = [0.01, 0.05, 0.2, 0.5, 0.9]
    assert all(np.diff([c_T(3, r) for r in rhos]) > 0)


@pytest.mark.parametrize("rho", [0.2, 0.05])
def test_selected_pairs_delta_eff_against_closed_form(rho):
    p = Params(sigma="linear", T=3, delta=0.3)
    pre = PretrainState(Q0=2.0, Q=1.4, M=1.1)
    A, H = selected_pairs(p, pre, 1.0, jax.random.PRNGKey(7), 10_000, rho)
    mc, se = offdiag_mean_square(A, H)
    th = selected_delta_eff(p.delta, pre, rho, 3)
    assert th == pytest.approx(p.delta / 2 + pre.Q0 - pre.M**2 / pre.Q + (pre.Q - pre.M) ** 2 / pre.Q * c_T(3, rho))
    assert _within(mc, se, th)
    # ρ → 0 limit: Δ/2 + Q0 − M²/Q, below the fresh value
    assert selected_delta_eff(p.delta, pre, 1e-6, 3) == pytest.approx(optimal_delta_eff(p.delta, pre), abs=1e-3)
    assert th < delta_eff(p.delta, pre)
    # selection also shrinks the teacher's own pre-activations (MODEL.md §7)
    A0 = np.asarray(H)[:, 0, 1]  # Δ-noise included: Var = Q0 − M²/Q + (M²/Q)c_T + Δ/2
    v_th = pre.Q0 - pre.M**2 / pre.Q + pre.M**2 / pre.Q * c_T(3, rho) + p.delta / 2
    assert _within(float(np.mean(A0**2)), float(np.std(A0**2) / math.sqrt(A0.size)), v_th)


def test_selection_with_recalibration():
    p = Params(sigma="linear", T=3, delta=0.3)
    pre = PretrainState(Q0=2.0, Q=1.4, M=1.1)
    bW = pre.M / pre.Q
    key = jax.random.PRNGKey(8)
    A1, H1 = selected_pairs(p, pre, 1.0, key, 5000, 0.05)
    Ab, Hb = selected_pairs(p, pre, bW, key, 5000, 0.05)
    # the recalibrated score β_W s ranks the same: same kept sequences
    assert np.allclose(np.asarray(Ab), bW * np.asarray(A1)) and np.array_equal(np.asarray(Hb), np.asarray(H1))
    # at β_W = M/Q the finite-ρ excess vanishes for every ρ
    for rho in (0.5, 0.05, 0.01):
        assert selected_delta_eff(p.delta, pre, rho, 3, bW) == pytest.approx(optimal_delta_eff(p.delta, pre))
    mc, se = offdiag_mean_square(Ab, Hb)
    assert _within(mc, se, optimal_delta_eff(p.delta, pre))
    r = solve_finetune(Params(sigma="linear", T=3, delta=0.3, active_rho=0.05, pool_ratio=60.0,
                              recalibrate="optimal", lam_prime=math.inf), pre, **SMALL)
    assert r.beta_W == pytest.approx(bW)
    assert r.delta_eff == pytest.approx(optimal_delta_eff(p.delta, pre))
    assert r.random_control.delta_eff == pytest.approx(optimal_delta_eff(p.delta, pre))


def test_active_rho_one_equals_random():
    # ρ = 1 keeps the whole pool: the selected law is the fresh law (different draws), so the channel
    # averages agree within MC error; Δ_eff agrees exactly (c_T(1) = 1).
    pre = PretrainState(Q0=2.0, Q=2.0, M=1.1)
    p = Params(sigma="linear", T=2, delta=0.3, active_rho=1.0, pool_ratio=3.0, lam_prime=0.5)
    n = SMALL["n_mc"]
    ov = FinetuneOverlaps(q=0.7, m=0.5, v=0.2)
    sel, info = channel_samples(p, pre, 1.0, n, 11)
    fresh, info_f = channel_samples(p, pre, 1.0, n, 11, fresh_only=True)
    assert info["delta_eff"] == pytest.approx(info_f["delta_eff"], rel=1e-12)
    h_sel, se_sel, _ = finetune_hats(p, ov, sel, 1.0)
    h_fr, se_fr, _ = finetune_hats(p, ov, fresh, 1.0)
    for name in ("q_hat", "m_hat", "v_hat", "lam_eff"):
        a, b = getattr(h_sel, name), getattr(h_fr, name)
        assert abs(a - b) < 4 * math.hypot(se_sel[name], se_fr[name]), name
    # selection at small ρ is felt (the test can fail): less noise, smaller q̂ than the random subset
    p5 = p.replace(active_rho=0.02, pool_ratio=150.0)
    sel5, info5 = channel_samples(p5, pre, 1.0, n, 11)
    assert info5["delta_eff"] < info_f["delta_eff"] - 0.3
    assert _within(info5["delta_eff_selected_mc"], info5["delta_eff_selected_mc_se"], info5["delta_eff"])


@pytest.mark.slow
def test_active_solution_beats_random_control():
    pre = PretrainState(Q0=2.0, Q=2.0, M=1.1)
    p = Params(sigma="linear", T=2, delta=0.3, active_rho=0.02, pool_ratio=150.0, lam_prime=0.5)
    r = solve_finetune(p, pre, n_mc=2000)
    rc = r.random_control
    assert r.converged and rc.converged
    assert r.delta_eff < rc.delta_eff and r.o_w > rc.o_w and r.E_ft < rc.E_ft


def test_reused_finetuning_from_order_parameters_alone_is_refused():
    with pytest.raises(ParameterError, match="susceptibility V"):
        theory.solve(LIN.replace(reuse=1.0), stage="finetune", pretrain=OP, bayes=False, n_mc=400)


# ---------------------------------------------------------------------------- against simulation
def _theory_per_seed(p, ps, V):
    """Theory at each seed's measured ``(Q0, Q, M)``, ``q0`` and the pre-training theory's ``V``."""
    out = []
    for i in range(len(ps)):
        pre = PretrainState(Q0=float(ps["Q0"][i]), Q=float(ps["Q"][i]), M=float(ps["M"][i]), V=V)
        r = solve_finetune(p, pre, q0=float(ps["q0"][i]), n_mc=2000)
        assert r.converged
        out.append(r)
    return out


@pytest.mark.slow
def test_reuse_theory_against_simulation_D100():
    p = LIN.replace(reuse=1.0)
    sim = run(p, 100, 4, seed=0)
    th = _theory_per_seed(p, sim.per_seed, solve_pretrain(p).V)
    for k in ("delta_eff", "o_w", "q", "m", "L_ft"):
        t = float(np.mean([getattr(r, k) for r in th]))
        # D = 100 carries O(1/D) offsets (MODEL.md §7): 4 standard errors plus a 2% allowance
        assert abs(t - sim.observables[k]) < 4 * sim.sem[k] + 0.02 * abs(t), k


@pytest.mark.slow
def test_active_theory_against_simulation_D100():
    p = Params(sigma="linear", T=3, delta=0.0, alpha=0.1, lam=3.0, lam_prime=0.5, active_rho=0.04, pool_ratio=100.0)
    sim = run(p, 100, 4, seed=0)
    th = _theory_per_seed(p, sim.per_seed, solve_pretrain(p).V)
    for k in ("delta_eff", "o_w", "q", "m", "L_ft"):
        t = float(np.mean([getattr(r, k) for r in th]))
        assert abs(t - sim.observables[k]) < 4 * sim.sem[k] + 0.02 * abs(t), k
        tr = float(np.mean([getattr(r.random_control, k) for r in th]))
        assert abs(tr - sim.observables[k + "_random"]) < 4 * sim.sem[k + "_random"] + 0.02 * abs(tr), k
