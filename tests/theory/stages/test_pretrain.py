"""ERM pre-training theory, linear σ: known case, limits, T-mapping, damping independence."""

import pytest

from model.params import ParameterError, Params
from theory.bayes.pretrain import solve_bayes_pretrain
from theory.stages.pretrain import solve_pretrain


def test_T1_reproduces_the_quadratic_network_fixed_point():
    """THEORY_NOTES §7 (κ0 = 0.5, α = 0.5, Δ = 0.1, λ = 0.05, κ = 1): (q, m, σ) = (1.48655, 1.44249, 0.64743)."""
    r = solve_pretrain(Params(sigma="linear", T=1, kappa0=0.5, alpha=0.5, delta=0.1, lam=0.05))
    assert r.converged
    assert (r.Q, r.M, r.V) == pytest.approx((1.48655, 1.44249, 0.64743), abs=2e-5)
    assert r.Q0 - 2 * r.M + r.Q == pytest.approx(0.10157, abs=2e-5)
    assert r.trace == pytest.approx(0.7275, abs=1e-4)


def test_T_tokens_act_as_alpha_times_T_T_plus_1_over_2():
    a = solve_pretrain(Params(sigma="linear", T=1, kappa0=0.5, alpha=0.6, delta=0.1, lam=0.05))
    b = solve_pretrain(Params(sigma="linear", T=3, kappa0=0.5, alpha=0.1, delta=0.1, lam=0.05))
    assert (a.Q, a.M, a.V) == pytest.approx((b.Q, b.M, b.V), rel=1e-9)
    assert b.E_pre == pytest.approx(6 * a.E_pre, rel=1e-9)  # T(T+1) ordered entries


def test_strong_weight_decay_gives_the_zero_student():
    r = solve_pretrain(Params(sigma="linear", lam=50.0))
    assert r.converged and r.Q == pytest.approx(0.0, abs=1e-12) and r.M == pytest.approx(0.0, abs=1e-12)
    assert r.E_pre == pytest.approx(12 * (2.0 + 0.25))


@pytest.mark.parametrize("alpha", [1e-4, 1e-3])
def test_few_samples_give_the_zero_student(alpha):
    """α → 0 at fixed λ: every eigenvalue of m̂S̄0 + √q̂Z falls below the threshold 2λ√κ."""
    r = solve_pretrain(Params(sigma="linear", alpha=alpha, lam=1.0))
    assert r.converged and r.Q < 1e-10 and r.M < 1e-10
    assert r.E_pre == pytest.approx(12 * (2.0 + 0.25))


@pytest.mark.parametrize("damping", [0.0, 0.3, 0.8])
def test_fixed_point_does_not_depend_on_damping(damping):
    ref = solve_pretrain(Params(sigma="linear"))
    r = solve_pretrain(Params(sigma="linear"), damping=damping)
    assert r.converged and (r.Q, r.M, r.V) == pytest.approx((ref.Q, ref.M, ref.V), rel=1e-6)


def test_training_loss_is_below_test_error_and_Q0_is_exact():
    r = solve_pretrain(Params(sigma="linear", kappa0=0.7))
    assert r.Q0 == 1.7 and r.L_pre < r.E_pre


def test_bad_inputs_are_refused():
    with pytest.raises(ParameterError, match="lam"):
        solve_pretrain(Params(sigma="linear", lam=0.0))
    with pytest.raises(ParameterError, match="n_mc"):
        solve_pretrain(Params(sigma="softmax"), n_mc=1)
    with pytest.raises(ParameterError, match="Q0"):
        solve_pretrain(Params(sigma="linear"), Q0=-1.0)


def test_measured_Q0_enters_the_channel_and_the_error():
    """A simulation's Q0 may be passed: E_pre = T(T+1)(Q0 − 2M + Q + Δ/2) with that Q0."""
    r = solve_pretrain(Params(sigma="linear"), Q0=2.05)
    assert r.Q0 == 2.05 and r.E_pre == pytest.approx(12 * (2.05 - 2 * r.M + r.Q + 0.25), rel=1e-12)


@pytest.mark.parametrize("T", [2, 3])
def test_bayes_optimal_error_is_below_erm_on_a_grid(T):
    for alpha in (0.02, 0.05, 0.1, 0.2):
        for lam in (0.01, 0.1, 1.0):
            p = Params(sigma="linear", T=T, alpha=alpha, lam=lam)
            erm, bo = solve_pretrain(p), solve_bayes_pretrain(p)
            assert erm.converged and bo.converged
            assert bo.E_pre_BO <= erm.E_pre + 1e-9, (alpha, lam)
            assert bo.mmse <= erm.Q0 - 2 * erm.M + erm.Q + 1e-9
