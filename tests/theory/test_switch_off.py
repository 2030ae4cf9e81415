"""Tests of the switch-off branch ŵ = 0 (theory/switch_off.py, its use in theory/stages/finetune.py) and of the
switch-off thresholds (theory/thresholds.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from model.params import Params
from theory.channels.lora import finetune_hats
from theory.laws.mixture import channel_samples
from theory.priors.ridge import prior_update
from theory.stages.finetune import solve_finetune
from theory.states import FinetuneOverlaps, PretrainState
from theory.switch_off import ZeroCurvature, switch_off_threshold, zero_curvature, zero_solution
from theory.thresholds import alpha_prime_c, lam_prime_c

#: The figure-1 pre-training of each σ (λ = 0.1, α = 0.1), as the theory solves it.
PRE = {"softmax": PretrainState(Q0=2.0, Q=0.308, M=0.5801), "linear": PretrainState(Q0=2.0, Q=2.197, M=1.9148)}


def _curvature(sigma, n=2000, key=0):
    p = Params(sigma=sigma)
    samples, _ = channel_samples(p, PRE[sigma], 1.0, n, key)
    return p, samples, zero_curvature(p, samples)


def test_linear_zero_curvature_is_four_times_the_residual():
    """Linear σ: ℓ(z; 0) = ‖R + zzᵀ‖² with R = A − H − χ*χ*ᵀ + q0 I, so H0 = 4R and E ℓ(0; 0) = E‖R‖²."""
    p, s, c = _curvature("linear", n=200)
    cs = np.asarray(s.eta)
    R = np.asarray(s.A) - np.asarray(s.H) - cs[:, :, None] * cs[:, None, :] + np.eye(3)
    np.testing.assert_allclose(c.h, 4 * np.linalg.eigvalsh(R), rtol=1e-10, atol=1e-10)
    assert c.ell0 == pytest.approx(np.mean(np.sum(R * R, axis=(1, 2))), rel=1e-12)
    assert c.tr_h0 == pytest.approx(np.mean(4 * np.trace(R, axis1=1, axis2=2)), rel=1e-10)


@pytest.mark.parametrize("sigma", ["softmax", "linear"])
def test_susceptibility_equation_is_the_maps_own(sigma):
    """At q → 0, m = 0 the solver's map (finetune_hats, prior_update) keeps v fixed exactly where (V) holds,
    with λ_eff = 2λ' − α' E Tr H0."""
    p, s, c = _curvature(sigma)
    v = 0.5 * switch_off_threshold(c, 3.0).v_c
    lp = c.lam_prime_of_v(3.0, v)
    hats, _, _ = finetune_hats(p.replace(lam_prime=lp), FinetuneOverlaps(1e-12, 0.0, v), s, 1.0)
    assert hats.lam_eff == pytest.approx(2 * lp - 3.0 * c.tr_h0, rel=1e-8)
    assert prior_update(hats, 1.0).v == pytest.approx(v, rel=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ap=st.floats(0.2, 20.0), scale=st.floats(0.1, 5.0))
def test_threshold_properties(seed, ap, scale):
    """On any curvature law: the growth factor that fixes v_c is 1 there, λ'(v) falls on (0, v_c), and the zero
    solution is stable exactly above λ'_c."""
    rng = np.random.default_rng(seed)
    h = scale * rng.normal(size=(300, 3))
    c = ZeroCurvature(h=h, p=rng.chisquare(1, size=(300, 3)), tr_h0=float(h.sum(1).mean()), ell0=1.0, q0=1.0)
    thr = switch_off_threshold(c, ap)
    g = c.growth_m(ap, thr.v_c) if thr.mechanism == "informed" else c.growth_q(ap, thr.v_c)
    assert g == pytest.approx(1.0, rel=1e-8)
    vs = np.linspace(thr.v_c * 1e-3, thr.v_c, 50)
    assert np.all(np.diff([c.lam_prime_of_v(ap, v) for v in vs]) < 0)
    p = Params(alpha_prime=ap)
    above = zero_solution(c, p.replace(lam_prime=thr.lam_prime_c * 1.001 + 1e-9))
    below = zero_solution(c, p.replace(lam_prime=max(thr.lam_prime_c * 0.999 - 1e-9, 0.0)))
    assert above.stable and not below.stable
    assert above.growth_m < 1 and above.growth_q < 1


def test_alpha_prime_c_inverts_lam_prime_c():
    p, _, c = _curvature("softmax")
    for ap in (1.0, 5.0):
        lc = switch_off_threshold(c, ap).lam_prime_c
        assert alpha_prime_c(p, curv=c, lam_prime=lc) == pytest.approx(ap, rel=1e-6)
    # λ' below λ'_c at every α' (here below −min h/2 at α' → 0): the LoRA is on at every α'
    assert alpha_prime_c(p, curv=c, lam_prime=0.01) == 0.0


def test_solver_returns_the_zero_solution_just_above_the_threshold():
    """Linear σ, α' = 3 (the issue's stall at λ' = 90): 2 % above λ'_c the solve returns q = m = 0 exactly,
    converged, without iterating; 15 % below it, a small informed q > 0."""
    p = Params(sigma="linear", alpha_prime=3.0)
    lc = lam_prime_c(p, PRE["linear"]).lam_prime_c
    r = solve_finetune(p.replace(lam_prime=1.02 * lc), PRE["linear"])
    assert r.converged and r.q == 0.0 and r.m == 0.0 and math.isnan(r.o_w) and r.n_steps == 0
    assert r.E_ft == r.E_frozen
    assert r.diagnostics["status"] == "switched_off" and r.diagnostics["lam_prime_c"] == pytest.approx(lc)
    below = solve_finetune(p.replace(lam_prime=0.85 * lc), PRE["linear"])
    assert below.converged and 0 < below.q < 0.1 and below.o_w > 0.5
    assert below.E_ft < below.E_frozen


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["softmax", "linear"])
def test_threshold_agrees_with_where_the_solver_q_vanishes(sigma):
    """λ'_c from the linearisation against the full solver: q(λ') at 0.8 and 0.9 λ'_c extrapolated linearly to
    q = 0 (the transition is continuous: q ∝ λ'_c − λ'). Allowed gap: three times the spread of λ'_c over
    Monte-Carlo keys (measured here)."""
    p = Params(sigma=sigma, alpha_prime=3.0)
    lcs = [lam_prime_c(p, PRE[sigma], key=k).lam_prime_c for k in range(4)]
    lc, spread = lcs[0], float(np.std(lcs, ddof=1))
    qs = [solve_finetune(p.replace(lam_prime=f * lc), PRE[sigma]).q for f in (0.8, 0.9)]
    zero = 0.9 * lc + qs[1] * (0.1 * lc) / (qs[0] - qs[1])
    assert abs(zero - lc) < 3 * spread + 0.02 * lc
