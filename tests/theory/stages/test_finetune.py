"""Tests of the replica-symmetric fine-tuning theory (theory/stages/finetune.py, theory/stages/rs_stability.py,
theory/channels/lora.py, theory/laws/fresh.py, theory/priors/ridge.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory.stages.finetune as F
from model.observables import delta_eff as delta_eff_of, recalibration as recalibration_of
from model.params import ParameterError, Params
from simulate.run import run
from theory.channels.lora import (
    channel_draws,
    channel_inputs,
    channel_pairs,
    error_draws,
    finetune_hats,
    fresh_error_samples,
    linear_errors,
    prox_objective,
    target,
)
from theory.channels.prox import prox_multistart
from theory.fixed_point import ROOT_RTOL, fixed_point, root_fallback
from theory.laws.fresh import noise_law, optimal_delta_eff
from theory.laws.mixture import channel_samples
from theory.priors.ridge import prior_update
from theory.stages.finetune import FinetuneResult, ground_state_energy, map_residual, solve_finetune
from theory.stages.rs_stability import prox_jump_fraction, rs_stability
from theory.states import FinetuneHats, FinetuneOverlaps, PretrainState

PRE = PretrainState(Q0=2.0, Q=1.2, M=1.0)


def delta_eff(delta, pre, beta_W=1.0):
    """``Δ_eff(β_W)`` of the fresh law at ``pre`` (:func:`model.observables.delta_eff`)."""
    return delta_eff_of(delta, pre.Q0, pre.Q, pre.M, beta_W)


def recalibration(params, pre):
    """``β_W`` of ``params`` at ``pre`` (:func:`model.observables.recalibration`)."""
    return recalibration_of(params.recalibrate, pre.M, pre.Q)
SMALL = dict(n_mc=400, n_test=2000)


def test_delta_eff_and_optimal_recalibration():
    d = 0.5
    assert delta_eff(d, PRE) == pytest.approx(0.25 + 2.0 - 2.0 + 1.2)
    betas = np.linspace(0.0, 2.0, 2001)
    vals = [delta_eff(d, PRE, b) for b in betas]
    b_star = betas[int(np.argmin(vals))]
    assert b_star == pytest.approx(PRE.M / PRE.Q, abs=1e-3)
    assert min(vals) == pytest.approx(optimal_delta_eff(d, PRE), abs=1e-6)
    assert recalibration(Params(recalibrate="optimal"), PRE) == pytest.approx(PRE.M / PRE.Q)
    assert recalibration(Params(recalibrate=0.7), PRE) == 0.7
    assert recalibration(Params(), PRE) == 1.0


def test_noise_law_structure():
    lin = Params(sigma="linear", delta=0.3)
    assert noise_law(lin, PRE, 1.0) == (0.0, 0.0, pytest.approx(delta_eff(0.3, PRE)))
    soft = Params(sigma="softmax", delta=0.3, recalibrate=0.5)
    bW = recalibration(soft, PRE)
    assert noise_law(soft, PRE, bW) == pytest.approx((0.25 * PRE.Q, 0.5 * PRE.M, PRE.Q0 + 0.15))
    # softmax: Q0 and Δ enter only through Q0 + Δ/2
    a = noise_law(Params(sigma="softmax", delta=0.4), PretrainState(2.0, 1.2, 1.0), 1.0)
    b = noise_law(Params(sigma="softmax", delta=0.0), PretrainState(2.2, 1.2, 1.0), 1.0)
    assert a == pytest.approx(b)


def test_linear_depends_on_pretraining_only_through_delta_eff():
    p = Params(sigma="linear", alpha_prime=3.0, delta=0.5)
    other = PretrainState(Q0=1.5, Q=0.6, M=0.4)  # δ = 0.25 + 1.5 − 0.8 + 0.6 = 1.55
    pre = PretrainState(Q0=2.0, Q=1.4, M=1.05)  # δ = 0.25 + 2.0 − 2.1 + 1.4 = 1.55
    assert delta_eff(0.5, other) == pytest.approx(delta_eff(0.5, pre))
    r1, r2 = solve_finetune(p, other, **SMALL), solve_finetune(p, pre, **SMALL)
    assert r1.converged and r2.converged
    for name in ("q", "m", "v", "o_w", "E_ft", "L_ft", "E_frozen"):
        assert getattr(r1, name) == pytest.approx(getattr(r2, name), rel=1e-9), name
    # and a different δ gives a different answer (the test can fail)
    r3 = solve_finetune(p, PretrainState(Q0=2.0, Q=1.2, M=1.0), **SMALL)
    assert abs(r3.E_ft - r1.E_ft) > 0.1


def test_linear_closed_form_errors_match_monte_carlo():
    T, q, m, q0 = 3, 0.7, 0.5, 1.0
    law = (0.0, 0.0, 0.8)
    th_ft, th_fr = linear_errors(T, q, m, q0, 0.8)
    # quasi-Monte Carlo test draws and i.i.d. channel draws have the same law
    for draws in (error_draws(3, 1, 2**17, T), channel_draws(jax.random.PRNGKey(3), 200_000, T)):
        eft, efr = fresh_error_samples(q, m, q0, law, 1.0, draws, sigma="linear")
        for x, th in ((eft, th_ft), (efr, th_fr)):
            x = np.asarray(x)
            assert abs(x.mean() - th) < 4 * x.std() / math.sqrt(x.size)


def test_prior_update_closed_form():
    h = FinetuneHats(q_hat=2.0, m_hat=1.5, v_hat=3.0, lam_eff=1.0)
    ov = prior_update(h, 1.0)
    assert ov.v == pytest.approx(0.25)
    assert ov.m == pytest.approx(1.5 * 0.25)
    assert ov.q == pytest.approx((2.0 + 1.5**2) / 16)


def test_prox_is_a_stationary_minimum_below_random_points():
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    omegas = jax.random.normal(k1, (32, 3))
    Ys = jax.random.normal(k2, (32, 3, 3))
    Ys = Ys + jnp.swapaxes(Ys, 1, 2)
    V = 0.4

    def solve(om, Y):
        phi = lambda z: jnp.sum((z - om) ** 2) / (2 * V) + jnp.sum((jnp.outer(z, z) - Y) ** 2)  # noqa: E731
        z, conv, _, _ = prox_multistart(phi, om, V, n_iter=30)
        return z, conv, phi(z), jax.grad(phi)(z)

    z, conv, val, g = jax.jit(jax.vmap(solve))(omegas, Ys)
    assert bool(jnp.all(conv))
    assert float(jnp.max(jnp.abs(g))) < 1e-6
    probes = jax.random.normal(k3, (32, 20, 3)) * 2

    def phi_at(om, Y, zz):
        return jnp.sum((zz - om) ** 2) / (2 * V) + jnp.sum((jnp.outer(zz, zz) - Y) ** 2)

    pv = jax.jit(jax.vmap(lambda om, Y, P: jax.vmap(lambda zz: phi_at(om, Y, zz))(P)))(omegas, Ys, probes)
    assert bool(jnp.all(pv >= val[:, None] - 1e-9))


def test_lam_prime_infinite_and_large_give_frozen():
    p = Params(sigma="linear", lam_prime=math.inf)
    r = solve_finetune(p, PRE, **SMALL)
    d = delta_eff(p.delta, PRE)
    assert r.q == 0 and r.E_ft == r.E_frozen == pytest.approx(12 * (d + 1.0))
    big = solve_finetune(Params(sigma="linear", lam_prime=1e3), PRE, **SMALL)
    assert big.converged
    assert big.q < 1e-3
    assert big.E_ft == pytest.approx(big.E_frozen, rel=1e-4)


def test_small_alpha_prime_gives_prior():
    # with no data the ridge keeps ŵ = 0: q = O(α'), m → 0, E_ft → E_frozen
    r3 = solve_finetune(Params(sigma="linear", alpha_prime=1e-3, lam_prime=0.5), PRE, **SMALL)
    r4 = solve_finetune(Params(sigma="linear", alpha_prime=1e-4, lam_prime=0.5), PRE, **SMALL)
    assert r3.converged and r4.converged
    assert r4.q < 1e-3 and abs(r4.m) < 1e-4
    assert r3.q / r4.q == pytest.approx(10.0, rel=0.1)
    assert r4.E_ft == pytest.approx(r4.E_frozen, rel=1e-5)


def test_noiseless_many_samples_small_ridge_recovers_direction():
    pre = PretrainState(Q0=1.0, Q=1.0, M=1.0)  # δ_eff = Δ/2
    r = solve_finetune(Params(sigma="linear", delta=1e-4, alpha_prime=50.0, lam_prime=1e-3), pre, **SMALL)
    assert r.converged
    assert r.o_w > 0.999
    worse = solve_finetune(Params(sigma="linear", delta=1.0, alpha_prime=3.0, lam_prime=0.5), PRE, **SMALL)
    assert worse.o_w < r.o_w - 0.005


def test_bad_input():
    with pytest.raises(ParameterError, match="reuse"):
        solve_finetune(Params(reuse=0.5), PRE)
    with pytest.raises(ParameterError, match="M"):
        PretrainState(Q0=1.0, Q=1.0, M=2.0)
    with pytest.raises(ParameterError, match="Q0"):
        PretrainState(Q0=0.0, Q=1.0, M=0.0)
    with pytest.raises(ParameterError, match="n_mc"):
        solve_finetune(Params(), PRE, n_mc=1)


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_theory_against_simulation_small_D(sigma):
    p = Params(sigma=sigma, alpha_prime=3.0)
    sim = run(p, 100, 4, seed=0)
    ps = sim.per_seed
    th = {k: [] for k in ("E_ft", "o_w", "q", "L_ft")}
    for i in range(4):
        pre = PretrainState(Q0=float(ps["Q0"][i]), Q=float(ps["Q"][i]), M=float(ps["M"][i]))
        res = solve_finetune(p, pre, q0=float(ps["q0"][i]), n_mc=4000)
        assert res.converged
        for k in th:
            th[k].append(getattr(res, k))
    for k, v in th.items():
        # D = 100 carries O(1/D) offsets (MODEL.md §7): 4 standard errors plus a 2% allowance
        assert abs(np.mean(v) - sim.observables[k]) < 4 * sim.sem[k] + 0.02 * abs(np.mean(v)), k


def test_overlap_sign_is_removed():
    """±w are equivalent: a fixed point reached on the m < 0 branch is reported with m ≥ 0, and o_w = m/√(q q0).
    This input (a seed's measured order parameters) lands on the negative branch when the sign is kept."""
    r = solve_finetune(Params(sigma="linear"), PretrainState(Q0=2.141315, Q=2.273122, M=1.977768),
                       q0=0.967537, n_mc=4000)
    assert r.converged
    assert r.m > 0
    assert r.o_w == pytest.approx(r.m / math.sqrt(r.q * r.q0), rel=1e-12)


#: The settings of :func:`solve_finetune`'s defaults at ``q0 = 1`` (the ground-state selection reads ``q0``).
SETTINGS = F._Settings(q0=1.0, n_mc=4000, n_test=100_000, key=0, damping=0.3, rtol=1e-6, atol=1e-9, max_steps=300,
                       n_iter=20, anderson=3, patience=100)


def _fake_result(q, m, L_ft, converged=True):
    return FinetuneResult(q=q, m=m, v=0.1, o_w=m / math.sqrt(q), E_ft=0.5, L_ft=L_ft, E_frozen=0.6, delta_eff=0.5,
                          q0=1.0, beta_W=1.0, hats=None, converged=converged, n_steps=7, residual=0.0)


@pytest.mark.parametrize("second, selected", [
    ((0.88, 0.88, 0.30), "restart"),  # informed, lower energy α'L_ft + λ'q: the ERM's global minimum
    ((0.88, 0.88, 0.60), "first"),    # informed but higher energy: the uninformed fixed point is kept
])
def test_ground_state_selection_between_the_two_starts(monkeypatch, second, selected):
    p = Params(sigma="softmax", alpha_prime=2.0, lam_prime=0.003)
    calls = []

    def fake_solve(params, pre, cfg, *, fresh_only, init):
        calls.append(init)
        return _fake_result(0.54, 0.003, 0.47) if init is None else _fake_result(*second)

    monkeypatch.setattr(F, "_solve", fake_solve)
    r = F._solve_ground_state(p, PRE, SETTINGS, fresh_only=False, init=None)
    assert len(calls) == 2 and calls[1].q == calls[1].m == pytest.approx(F.INFORMED_RESTART)
    rec = r.diagnostics["ground_state"]
    assert rec["selected"] == selected and r.n_steps == 14
    assert rec["energies"][0] == pytest.approx(2.0 * 0.47 + 0.003 * 0.54)
    assert r.q == pytest.approx(0.88 if selected == "restart" else 0.54)


def test_an_informed_or_zero_fixed_point_is_not_challenged(monkeypatch):
    calls = []
    for first in (_fake_result(0.9, 0.85, 0.3), _fake_result(1e-12, 0.0, 0.9)):
        monkeypatch.setattr(F, "_solve", lambda *a, **k: calls.append(1) or first)
        r = F._solve_ground_state(Params(sigma="softmax"), PRE, SETTINGS, fresh_only=False, init=None)
        assert r is first
    assert len(calls) == 2


def test_the_uninformed_fixed_point_of_a_small_ridge_is_replaced_by_the_informed_ground_state():
    """Softmax, active ρ = 0.02 of ᾱ' = 100 (α' = 2), λ' = 0.003 (a spike of figure 4 before the ground-state
    selection): the solution is the informed fixed point (o_w = 0.943, energy α'L_ft + λ'q = 0.701), not the
    uninformed one (o_w = 0.005, energy 0.936). Whether the default start reaches it directly or through the
    restart depends on the path of the iteration (with the code of the restart's commit it fell on m ≈ 0
    first); when the restart ran, the kept point is the one of lower energy."""
    p = Params(sigma="softmax", delta=0.0, pool_ratio=100.0, lam_prime=0.003, active_rho=0.02)
    pre = PretrainState(Q0=2.0, Q=0.29308507267938777, M=0.5873868431822591)  # the pre-training theory's
    r = solve_finetune(p, pre, n_mc=600, n_test=4096, random_control=False)
    assert r.converged and r.o_w > 0.9
    assert abs(ground_state_energy(p, r) - 0.701) < 0.01
    rec = r.diagnostics.get("ground_state")
    if rec is not None:
        kept = rec["energies"][0 if rec["selected"] == "first" else 1]
        assert kept == min(e for e in rec["energies"] if e == e)


def _hats_with_image(x_new: FinetuneOverlaps, q0: float = 1.0) -> FinetuneHats:
    """Conjugates whose ridge-prior update is ``x_new`` (``λ_eff = 0``, :func:`prior_update` inverted)."""
    m_hat = x_new.m / (q0 * x_new.v)
    return FinetuneHats(q_hat=x_new.q / x_new.v**2 - q0 * m_hat**2, m_hat=m_hat, v_hat=1.0 / x_new.v, lam_eff=0.0)


@pytest.mark.parametrize("jump", [0.0, 1e-6])
def test_root_fallback_solves_a_map_that_damping_cannot(jump):
    """A map with Jacobian eigenvalue −28 at its fixed point x* (the linear α' = 0.5 case): the damped
    iteration (damping 0.3) diverges, the root fallback finds x* and accepts it by its Newton correction,
    also when a Monte-Carlo-like jump of the map sits at x* (``G_q`` changes sign only through the jump, so
    hybr cannot reach a zero)."""
    star = np.array([1.0, 0.9, 0.16])
    J = np.diag([-28.0, 0.5, 0.3])

    def image(x):
        y = star + J @ (x - star) - jump * np.sign(x - star) * np.array([1.0, 0.0, 0.0])
        return FinetuneOverlaps(*(float(a) for a in y))

    def full_map(ov):
        return _hats_with_image(image(np.array([ov.q, ov.m, ov.v]))), {}, {}

    step = lambda ov: prior_update(full_map(ov)[0], 1.0)  # noqa: E731
    start = FinetuneOverlaps(1.01, 0.91, 0.161)
    assert not fixed_point(step, start, damping=0.3, rtol=1e-6, atol=1e-9, max_steps=200).converged
    ok, info = root_fallback(map_residual(full_map, 1.0), [np.array([start.q, start.m, start.v])], atol=1e-9)
    assert ok and info["newton_correction"] < 1
    assert (info["residual"] > 0.5 * jump) if jump else (info["residual"] < 1e-12)
    np.testing.assert_allclose(info["point"], star, rtol=10 * ROOT_RTOL)


def test_root_fallback_rejects_a_map_without_a_root():
    """``x ↦ x + (0.1, 0, 0)`` has no fixed point: the fallback says so."""
    full_map = lambda ov: (_hats_with_image(FinetuneOverlaps(ov.q + 0.1, ov.m, ov.v)), {}, {})  # noqa: E731
    ok, info = root_fallback(map_residual(full_map, 1.0), [np.array([1.0, 0.5, 0.2])], atol=1e-9)
    assert not ok and info["n_evals"] > 0


# ------------------------------------------------------------------------------------- RS stability
# measured pre-training of the softmax validation runs (D = 400, seed 0) and the fixed points solved there
RS_PRE = PretrainState(Q0=2.014, Q=0.2991, M=0.5742)


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_replicon_is_the_finite_difference_response_of_the_prox():
    """``λ_R = α' v² E‖∂g/∂ω‖_F²`` from the implicit Jacobian equals the same from central differences of the
    per-sample prox (same samples, samples with a jump left out of both)."""
    p = Params(sigma="linear", T=3, alpha_prime=1.0, lam_prime=0.5)
    ov = FinetuneOverlaps(q=1.19, m=0.96, v=0.04)
    samples, _ = channel_samples(p, RS_PRE, 1.0, 300, 3)
    law_q0, n_iter, eps = 1.0, 30, 1e-3
    omega, cs = channel_inputs(ov.q, ov.m, law_q0, samples.xi, samples.eta)

    def one(om, c, A, H):
        label = target(c, H, law_q0, p.sigma, p.beta)

        def g_at(o):
            phi = prox_objective(o, ov.v, ov.q, A, label, p.sigma, p.beta)
            return (prox_multistart(phi, o, ov.v, n_iter=n_iter)[0] - o) / ov.v

        J = jnp.stack([(g_at(om + eps * e) - g_at(om - eps * e)) / (2 * eps) for e in jnp.eye(3)], axis=1)
        return jnp.sum(J * J) * ov.v ** 2

    fd = np.asarray(jax.jit(jax.vmap(one))(omega, cs, samples.A, samples.H))
    out = channel_pairs(ov.q, ov.m, ov.v, law_q0, p.beta, samples.xi, samples.eta, samples.A, samples.H,
                         sigma=p.sigma, n_iter=n_iter)
    implicit = np.asarray(out[-1])
    smooth = np.abs(fd - implicit) < 1e3  # a jump inside ±eps: the difference quotient is O(1/eps)
    assert smooth.mean() > 0.95
    # measured: largest relative difference 2.8e-5 (prox solved to ~1e-8, differences of step 1e-3), no jump
    np.testing.assert_allclose(fd[smooth], implicit[smooth], rtol=1e-4, atol=1e-6)
    hats, sem, diag = finetune_hats(p, ov, samples, law_q0, n_iter)
    assert diag["replicon"] == pytest.approx(p.effective_alpha_prime * implicit.mean(), rel=1e-12)
    assert sem["replicon"] > 0


def test_replicon_flags_the_rs_instability_of_small_alpha_prime():
    """Softmax, ``T = 3``, ``λ' = 0.5``: at ``α' = 3`` the fixed point is RS-stable (replicon 0.23, no jump of the
    prox); at ``α' = 0.5`` the prox's minimiser jumps between coexisting minima on a set of positive density,
    so the replicon is infinite and RS is unstable (the simulations there find many near-degenerate minima
    of very different ``o_w``: ``diagnostics/finetune_landscape.py``)."""
    cases = {3.0: FinetuneOverlaps(0.4571, 0.9469 * math.sqrt(0.4571), 0.2629),
             0.5: FinetuneOverlaps(0.0962, 0.334 * math.sqrt(0.0962), 1.0189)}
    out = {}
    for ap, ov in cases.items():
        p = Params(sigma="softmax", T=3, alpha_prime=ap, lam_prime=0.5)
        samples, _ = channel_samples(p, RS_PRE, 1.0, 4000, 0)
        _, sem, diag = finetune_hats(p, ov, samples, 1.0)
        jumps = prox_jump_fraction(p, ov, samples, 1.0)
        out[ap] = (diag["replicon"], sem["replicon"], jumps, rs_stability(diag["replicon"], sem["replicon"], jumps))
    rep, rep_sem, jumps, stable = out[3.0]
    assert stable and jumps == 0.0 and 0.2 < rep < 0.27 and rep_sem < 0.01
    rep, rep_sem, jumps, stable = out[0.5]
    assert not stable and jumps > 0.001


def test_a_converged_solve_reports_its_rs_stability():
    p = Params(sigma="linear", T=2, alpha_prime=3.0, lam_prime=0.5)
    r = solve_finetune(p, PRE, **SMALL)
    d = r.diagnostics
    assert r.converged and d["rs_stable"] is True and d["prox_jump_frac"] == 0.0
    assert 0 < d["replicon"] < 1 and d["replicon_sem"] > 0


def test_rs_stability_needs_a_replicon_below_one_and_no_jump():
    assert rs_stability(0.5, 0.1, 0.0)
    assert not rs_stability(0.9, 0.05, 0.0)
    assert not rs_stability(0.1, 0.0, 1e-4)


def test_jumps_are_probed_on_at_least_jump_samples_draws(monkeypatch):
    """Rare jumps (8 in 4000 at softmax α' = 0.5) need more draws than a small ``n_mc`` has: the probe takes
    ``JUMP_SAMPLES`` of the same law where the channel has fewer."""
    sizes = []
    real = F.prox_jump_fraction

    def spy(params, ov, samples, *a, **k):
        sizes.append(samples.xi.shape[0])
        return real(params, ov, samples, *a, **k)

    monkeypatch.setattr(F, "prox_jump_fraction", spy)
    # α' = 0.5: a quarter of the samples have two minima (multimodal 0.27). At α' = 1 the multimodal samples were
    # starts stalled short of the minimum, which the prox no longer leaves there (theory.channels.prox,
    # backtrack_if_stalled): none remain
    p = Params(sigma="linear", T=3, alpha_prime=0.5, lam_prime=0.5)
    r = solve_finetune(p, RS_PRE, n_mc=400, n_test=2000)
    assert r.converged and r.diagnostics["prox_multimodal_frac"] > 0
    assert sizes == [F.JUMP_SAMPLES]
