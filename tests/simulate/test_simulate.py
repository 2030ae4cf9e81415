"""The finite-D simulator: identities of the data model, exact symmetries and limits, solvers agreeing.

Sizes are small (CI has 2 cores); every statistical comparison uses an error bar computed from the
same data, and finite-size allowances quote their source (MODEL.md §7).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.laws import activation
from model.observables import OBSERVABLES
from model.params import ParameterError, Params
from simulate.data import sample_batch, sample_teacher
from simulate.finetune import train_finetune
from simulate.layer import attention_preactivation
from simulate.measure import order_parameters
from simulate.pretrain import pretrain_data_term
from simulate.run import run, run_seed, sizes
from simulate.selection import n_kept


@pytest.fixture(scope="module")
def linear_seed():
    return run_seed(Params(sigma="linear"), 60, jax.random.PRNGKey(11), keep_state=True, n_test=4000)


@pytest.fixture(scope="module")
def softmax_seed():
    return run_seed(Params(sigma="softmax"), 60, jax.random.PRNGKey(12), keep_state=True)


# ------------------------------------------------------------------ the data model


@pytest.mark.parametrize("kappa0", [0.5, 1.0])
def test_teacher_Q0_is_one_plus_kappa0_plus_one_over_D(kappa0):
    """E[Q0] = 1 + κ0 + 1/D exactly (MODEL.md §7). The seed-to-seed spread is O(1/D): measured
    ≈ 6.3/D for κ0 ∈ {0.5, 1} at D ∈ {50, 100, 200} (MODEL.md §7 quotes 0.6/D)."""
    D, n = 80, 40
    vals = []
    for s in range(n):
        t = sample_teacher(jax.random.PRNGKey(s), D, round(kappa0 * D))
        vals.append(order_parameters(t.W0, t.W0)["Q0"])
    vals = np.array(vals)
    sem = vals.std(ddof=1) / math.sqrt(n)
    assert abs(vals.mean() - (1 + kappa0 + 1 / D)) < 4 * sem
    assert sem * math.sqrt(n) < 10.0 / D


def test_preactivations_have_goe_structure():
    """Given W0: Var A_ab = Q0 (a ≠ b), Var A_aa = 2 Q0, distinct entries uncorrelated — exact at every D."""
    D, n, T = 50, 40_000, 3
    teacher = sample_teacher(jax.random.PRNGKey(0), D, D)
    Q0 = order_parameters(teacher.W0, teacher.W0)["Q0"]
    A = np.asarray(sample_batch(jax.random.PRNGKey(1), n, T, teacher).A0)

    def check(x, target):
        sq = x**2
        assert abs(sq.mean() - target) < 4 * sq.std() / math.sqrt(n)

    check(A[:, 0, 1], Q0)
    check(A[:, 1, 2], Q0)
    check(A[:, 0, 0], 2 * Q0)
    check(A[:, 2, 2], 2 * Q0)
    for x, y in ((A[:, 0, 1], A[:, 0, 2]), (A[:, 0, 0], A[:, 1, 1]), (A[:, 0, 0], A[:, 0, 1])):
        prod = x * y
        assert abs(prod.mean()) < 4 * prod.std() / math.sqrt(n)


# ------------------------------------------------------------------ linear identities


def test_delta_eff_is_the_residual_variance_of_the_order_parameters(linear_seed):
    """Fresh sequences: E[Δ_eff] = Δ/2 + Q0 − 2M + Q exactly (the residual's off-diagonal variance)."""
    o, st = linear_seed.observables, linear_seed.state
    batch = st["finetune_batch"]
    R = batch.A0 - attention_preactivation(batch.X, st["W_hat"]) + math.sqrt(0.5) * batch.Z
    iu = np.triu_indices(3, 1)
    sq = np.asarray(R[:, iu[0], iu[1]] ** 2).ravel()
    predicted = 0.25 + o["Q0"] - 2 * o["M"] + o["Q"]
    assert o["delta_eff"] == pytest.approx(sq.mean(), rel=1e-12)
    assert abs(o["delta_eff"] - predicted) < 4 * sq.std() / math.sqrt(sq.size)


def test_frozen_attention_error_identity_is_exact(linear_seed):
    """‖β_W A_Ŵ − A0 − R_{w*} − √ΔZ‖_F² has mean T(T+1)(Tr K²/D² − 2 w*ᵀK w*/D² + q0² + Δ/2), K = S_Ŵ − S0
    (Wick; the w*-term is the O(1/√D) dependence of MODEL.md §7)."""
    st, o = linear_seed.state, linear_seed.observables
    test, W, W0, w = st["test_batch"], st["W_hat"], st["teacher"].W0, st["teacher"].w_star
    D, T = W.shape[0], 3
    E = attention_preactivation(test.X, W) - test.A0 - test.R_star - math.sqrt(0.5) * test.Z
    err = np.asarray(jnp.sum(E**2, axis=(1, 2)))
    K = W @ W.T / math.sqrt(W.shape[1]) - W0 @ W0.T / math.sqrt(W0.shape[1])
    trK2 = float(jnp.sum(K * K)) / D**2
    assert trK2 == pytest.approx(o["Q0"] - 2 * o["M"] + o["Q"], rel=1e-9)
    predicted = T * (T + 1) * (trK2 - 2 * float(w @ K @ w) / D**2 + o["q0"] ** 2 + 0.25)
    assert abs(err.mean() - predicted) < 4 * err.std() / math.sqrt(err.size)


def test_frozen_error_is_T_T_plus_1_times_delta_eff_plus_q0_squared(linear_seed):
    """E_frozen ≈ T(T+1)(Δ_eff + q0²) (linear σ). At D = 60 the output carries X: allow the finite-size
    terms of MODEL.md §7 (Gram bias ≈ 5.5/D relative, the w*–bulk coupling) plus 4 standard errors."""
    st, o = linear_seed.state, linear_seed.observables
    test, W, W0, w = st["test_batch"], st["W_hat"], st["teacher"].W0, st["teacher"].w_star
    D, T = W.shape[0], 3
    A = attention_preactivation(test.X, W)
    E = A - activation(test.A0 + test.R_star + math.sqrt(0.5) * test.Z, "linear")
    per_seq = np.asarray(jnp.einsum("nab,nbc,nac->n", E, test.G, E))
    assert o["E_frozen"] == pytest.approx(per_seq.mean(), rel=1e-12)
    K = W @ W.T / math.sqrt(W.shape[1]) - W0 @ W0.T / math.sqrt(W0.shape[1])
    coupling = 2 * T * (T + 1) * abs(float(w @ K @ w)) / D**2
    predicted = T * (T + 1) * (0.25 + o["Q0"] - 2 * o["M"] + o["Q"] + o["q0"] ** 2)
    allowance = 4 * per_seq.std() / math.sqrt(per_seq.size) + coupling + 5.5 / D * predicted
    assert abs(o["E_frozen"] - predicted) < allowance


# ------------------------------------------------------------------ limits and symmetries


@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_infinite_ridge_gives_the_frozen_model(sigma):
    key = jax.random.PRNGKey(5)
    frozen = run_seed(Params(sigma=sigma, lam_prime=math.inf), 30, key).observables
    assert frozen["E_ft"] == frozen["E_frozen"] and frozen["q"] == 0.0
    stiff = run_seed(Params(sigma=sigma, lam_prime=1e7), 30, key).observables
    assert stiff["E_frozen"] == frozen["E_frozen"]
    assert stiff["q"] < 1e-8
    assert stiff["E_ft"] == pytest.approx(frozen["E_frozen"], rel=1e-6)


def test_overlap_is_reported_without_sign(softmax_seed, linear_seed):
    for r in (softmax_seed, linear_seed):
        o = r.observables
        assert o["m"] >= 0
        assert o["o_w"] == pytest.approx(o["m"] / math.sqrt(o["q"] * o["q0"]))
        assert 0 <= o["o_w"] <= 1


def test_training_reaches_a_stationary_point(softmax_seed, linear_seed):
    for r in (softmax_seed, linear_seed):
        d = r.diagnostics
        assert d["pretrain_converged"] and d["finetune_converged"]
        assert d["pretrain_grad_norm"] < 1e-6 and d["finetune_grad_norm"] < 1e-6


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_factorised_and_convex_pretraining_agree():
    """Linear σ, κ = 1: L-BFGS on W and FISTA on S ⪰ 0 reach the same minimiser (convex problem)."""
    p = Params(sigma="linear", alpha=0.2, lam=0.1)
    key = jax.random.PRNGKey(3)
    a = run_seed(p, 16, key, pretrain_solver="lbfgs").observables
    b = run_seed(p, 16, key, pretrain_solver="convex").observables
    for name in ("Q", "M", "E_pre", "L_pre"):
        assert a[name] == pytest.approx(b[name], rel=1e-5), name


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_identity_train_gram_minimises_the_d_infinity_loss():
    """``train_gram='identity'`` trains on ``‖σ(A) − B‖_F²`` (``G → I_T``): the two settings differ at finite D,
    the identity one is stationary for its own loss, and its L_pre is that loss."""
    p = Params(sigma="softmax", lam_prime=math.inf)
    key = jax.random.PRNGKey(4)
    a = run_seed(p, 24, key, keep_state=True)
    b = run_seed(p, 24, key, keep_state=True, train_gram="identity")
    assert b.diagnostics["pretrain_converged"]
    assert a.observables["Q"] != b.observables["Q"] and a.observables["Q0"] == b.observables["Q0"]
    pre = b.state["pretrain_batch"]
    B = pre.pretrain_target(p.delta, p.sigma, p.beta)
    eye = jnp.broadcast_to(jnp.eye(p.T), pre.G.shape)
    L = float(pretrain_data_term(b.state["W_hat"], pre.X, eye, B, p.sigma, p.beta)) / len(pre)
    assert b.observables["L_pre"] == pytest.approx(L, rel=1e-12)
    with pytest.raises(ParameterError, match="train_gram"):
        run(p, 24, 1, train_gram="unit")


def test_convex_solver_refuses_softmax():
    with pytest.raises(ParameterError, match="convex"):
        run_seed(Params(sigma="softmax"), 10, jax.random.PRNGKey(0), pretrain_solver="convex")


# ------------------------------------------------------------------ selection, reuse, recalibration


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_active_selection_keeps_floor_rho_pool_and_lowers_the_residual():
    p = Params(sigma="linear", active_rho=0.05, pool_ratio=60)
    r = run_seed(p, 30, jax.random.PRNGKey(2), n_restarts=1)
    assert r.diagnostics["pool"] == 1800
    assert r.diagnostics["N_prime"] == n_kept(0.05, 1800) == 90
    o = r.observables
    assert o["delta_eff"] < o["delta_eff_random"]  # selection by ‖A_Ŵ‖_F shrinks the residual
    for name in ("E_ft_random", "o_w_random", "q_random"):
        assert math.isfinite(o[name])


def test_reused_sequences_are_the_first_pretraining_ones_with_their_noise():
    p = Params(sigma="linear", reuse=1.0, alpha_prime=1.0)
    r = run_seed(p, 20, jax.random.PRNGKey(4), keep_state=True, n_restarts=1)
    pre, ft = r.state["pretrain_batch"], r.state["finetune_batch"]
    assert r.diagnostics["n_reuse"] == 20 == len(ft)
    np.testing.assert_array_equal(ft.X, pre.X[:20])
    np.testing.assert_array_equal(ft.Z, pre.Z[:20])


def test_optimal_recalibration_uses_M_over_Q(linear_seed):
    p = Params(sigma="linear", recalibrate="optimal")
    r = run_seed(p, 60, jax.random.PRNGKey(11), n_test=4000)
    o = r.observables
    assert r.diagnostics["beta_W"] == pytest.approx(o["M"] / o["Q"], rel=1e-12)
    # Δ_eff(β_W) = Δ/2 + Q0 − M²/Q is below the unrecalibrated one on the same draw
    assert o["delta_eff"] < linear_seed.observables["delta_eff"]


# ------------------------------------------------------------------ seeds and inputs


def test_a_seed_reproduces_a_run_exactly_and_seeds_are_independent():
    p = Params(sigma="softmax")
    a = run(p, 12, 2, seed=7, n_restarts=1)
    b = run(p, 12, 2, seed=7, n_restarts=1)
    c = run(p, 12, 1, seed=7, n_restarts=1)
    assert a.observables == b.observables
    assert a.per_seed.iloc[0]["E_ft"] == c.per_seed.iloc[0]["E_ft"]
    assert a.per_seed.iloc[0]["E_ft"] != a.per_seed.iloc[1]["E_ft"]
    assert set(OBSERVABLES) <= set(a.observables) and set(a.sem) == set(a.observables)
    assert all(math.isfinite(a.sem[n]) for n in OBSERVABLES)


@pytest.mark.parametrize(
    "kwargs, D, match",
    [({}, 1, "D"), ({"alpha": 1e-5}, 10, "alpha"), ({"alpha_prime": 0.01}, 10, "alpha_prime"),
     ({"reuse": 1.0, "alpha": 0.01, "alpha_prime": 5}, 10, "reuse")],
)
def test_sizes_refuse_empty_or_impossible_sets(kwargs, D, match):
    with pytest.raises(ParameterError, match=match):
        sizes(Params(**kwargs), D)


def test_run_validates_before_any_work():
    with pytest.raises(ParameterError, match="seeds"):
        run(Params(), 10, 0)


def test_pretraining_cache_reproduces_the_uncached_run(tmp_path):
    p = Params(sigma="softmax")
    plain = run(p, 12, 1, seed=3, n_restarts=1)
    first = run(p, 12, 1, seed=3, n_restarts=1, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("pretrain-*.npz"))) == 1
    again = run(p, 12, 1, seed=3, n_restarts=1, cache_dir=str(tmp_path))
    assert plain.observables == first.observables == again.observables
    other = run(p.replace(lam_prime=2.0), 12, 1, seed=3, n_restarts=1, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("pretrain-*.npz"))) == 1  # fine-tuning flags reuse Ŵ
    assert other.observables["E_pre"] == plain.observables["E_pre"]
    run(p.replace(lam=0.2), 12, 1, seed=3, n_restarts=1, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("pretrain-*.npz"))) == 2
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_saddle_escape_start_beats_random_starts_near_the_threshold():
    """Linear σ, α' = 0.5: random starts get trapped in spurious minima; the bottom eigenvector of the
    Hessian at w = 0 leads to a lower objective and a larger overlap (measured at D = 100–200)."""
    r = run_seed(Params(sigma="linear", alpha_prime=0.5), 60, jax.random.PRNGKey(0), keep_state=True)
    st = r.state
    b = st["finetune_batch"]
    A = attention_preactivation(b.X, st["W_hat"])
    B = b.finetune_target(0.5, "linear", 1.0)
    fit = train_finetune(jax.random.PRNGKey(1), b.X, b.G, A, B, lam_prime=0.5, sigma="linear", beta=1.0, n_restarts=3)
    objs = fit.restart_objectives
    # the saddle start reaches the lowest objective; a random start may reach the same minimum, and then
    # which of the two is kept is decided by rounding (measured: equal to 3e-15)
    assert objs[0] <= min(objs[1:]) + 1e-12 * abs(objs[0])
    assert objs[fit.best_start] == pytest.approx(objs[0], rel=1e-12)
    assert max(objs[1:]) > objs[0] + 1e-3  # and some random start is trapped above it
