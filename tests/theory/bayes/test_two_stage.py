"""The two-stage Bayes-optimal fine-tuning baseline (theory/bayes/two_stage.py) beside the ERM-conditioned one:
the ordering that more information implies, its limits, and its place in theory.solve."""

from __future__ import annotations

import math

import pytest

import theory
import theory.api
import theory.bayes.two_stage as two_stage
from model.params import Params
from theory.bayes.finetune import delta_bo, solve_bayes_finetune
from theory.bayes.two_stage import solve_bayes_two_stage, two_stage_state
from theory.states import PretrainState

# the MC sizes of tests/theory/bayes/test_bayes_finetune.py (one jit compilation for both files)
FAST = dict(n_outer=512, n_inner=128, n_outer_error=512, n_inner_error=64, threshold=False)


@pytest.mark.parametrize("kappa0", [0.5, 1.0])
@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_pretraining_mmse_is_below_the_rescaled_erm_error(kappa0, lam):
    """Q0 − Q_BO (the MMSE of S̄0 from the pre-training data) ≤ Q0 − M²/Q (the error of (M/Q)Ŝ_ERM, an estimator
    from the same data): Δ_BO2 ≤ Δ_BO, with a gap that closes as α grows (the ERM becomes consistent)."""
    gaps = []
    for alpha in (0.02, 0.1, 0.5, 2.0):
        p = Params(sigma="linear", alpha=alpha, lam=lam, kappa0=kappa0)
        o = theory.solve(p, stage="pretrain", bayes=False).observables
        erm = PretrainState(Q0=o["Q0"], Q=o["Q"], M=o["M"])
        s = two_stage_state(p, erm.Q0)
        assert s.delta_BO2 <= delta_bo(p.delta, erm)
        gaps.append(delta_bo(p.delta, erm) - s.delta_BO2)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-2 * gaps[0]


def test_alpha_to_zero_knows_only_the_mean_of_the_teacher():
    """α → 0: the posterior mean is the prior mean √κ0·I, so Q_BO = κ0 and Δ_BO2 = Δ/2 + 1 for every κ0."""
    for kappa0 in (0.3, 1.0, 2.0):
        s = two_stage_state(Params(sigma="linear", alpha=1e-12, kappa0=kappa0, delta=0.4))
        assert s.Q_BO == pytest.approx(kappa0, abs=1e-9) and s.delta_BO2 == pytest.approx(1.2, abs=1e-9)


def test_two_stage_is_the_erm_conditioned_channel_of_a_bayes_optimal_network():
    """Fed a frozen network with M²/Q = Q_BO (any Q), the ERM-conditioned baseline is the two-stage one: the
    channel depends on the pre-training through Δ_BO only (linear σ; same Monte-Carlo keys)."""
    p = Params(sigma="linear", alpha_prime=2.0)
    s, two = solve_bayes_two_stage(p, **FAST)
    Q = 1.3 * s.Q_BO
    erm = solve_bayes_finetune(p, PretrainState(Q0=2.0, Q=Q, M=math.sqrt(Q * s.Q_BO)), **FAST)
    assert erm.q_BO == pytest.approx(two.q_BO, rel=1e-9) and erm.E_ft_BO == pytest.approx(two.E_ft_BO, rel=1e-9)


@pytest.mark.parametrize("sigma,pre", [("linear", PretrainState(Q0=2.0, Q=2.197, M=1.9148)),
                                       ("softmax", PretrainState(Q0=2.0, Q=0.308, M=0.5801))])
def test_more_information_gives_a_lower_bayes_error(sigma, pre):
    """The figure-1 point (λ = 0.1, α = 0.1, α' = 3), fed the ERM's (Q0, Q, M): conditioning on the pre-training data
    (a garbling argument, module doc) can only lower the Bayes error and raise the overlap. Measured (full MC
    sizes): linear 6.472 vs 7.446, softmax 0.237 vs 0.448."""
    p = Params(sigma=sigma)
    s, two = solve_bayes_two_stage(p, pre.Q0, **FAST)
    erm = solve_bayes_finetune(p, pre, **FAST)
    assert two.converged and erm.converged and s.delta_BO2 < delta_bo(p.delta, pre)
    se = math.hypot(math.hypot(two.E_ft_BO_se, two.E_ft_BO_se_q), math.hypot(erm.E_ft_BO_se, erm.E_ft_BO_se_q))
    assert two.E_ft_BO < erm.E_ft_BO - 3 * se
    assert two.q_BO > erm.q_BO - 3 * math.hypot(two.q_se, erm.q_se)


def _fast(monkeypatch):
    def fast(params, pre, **kw):
        return solve_bayes_finetune(params, pre, **{**kw, **FAST})
    monkeypatch.setattr(two_stage, "solve_bayes_finetune", fast)
    monkeypatch.setattr(theory.api, "solve_bayes_finetune", fast)


@pytest.mark.slow  # 50-80 s on the shared 2-core machine (two fixed points compiled)
def test_solve_reports_both_baselines_labelled(monkeypatch):
    _fast(monkeypatch)
    pre = PretrainState(Q0=2.0, Q=2.197, M=1.9148)
    r = theory.solve(Params(sigma="linear"), stage="finetune", pretrain=pre, bayes="two_stage")
    assert r.converged
    o = r.observables
    assert {"q_BO", "E_ft_BO", "q_BO2", "E_ft_BO2"} <= set(o) and o["E_ft_BO2"] < o["E_ft_BO"]
    j = r.to_json_dict()["diagnostics"]
    assert j["bayes_two_stage"]["conditions_on"] == "the pre-training data"
    assert j["bayes_finetune"]["conditions_on"] == "the ERM weights Ŵ"
    assert j["bayes_two_stage"]["delta_BO2"] < j["bayes_finetune"]["delta_BO"]


def test_two_stage_not_modelled_with_reuse_is_nan_not_an_error(monkeypatch):
    _fast(monkeypatch)
    pre = PretrainState(Q0=2.0, Q=2.197, M=1.9148, V=0.4776)
    r = theory.solve(Params(sigma="linear", reuse=1.0), stage="finetune", pretrain=pre, bayes="two_stage")
    assert r.converged and math.isnan(r.observables["E_ft_BO2"])
    assert "reuse" in r.diagnostics["bayes_two_stage"]["reason"]


@pytest.mark.slow  # 50-80 s on the shared 2-core machine (two fixed points compiled)
def test_theory_command_prints_both_baselines(monkeypatch, capsys):
    import json

    from lora_attn.cli import main
    _fast(monkeypatch)
    assert main(["theory", "--sigma", "linear", "--stage", "finetune", "--pretrain", "Q0=2,Q=2.197,M=1.9148",
                 "--bayes-two-stage", "--n-mc", "600", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["observables"]["E_ft_BO2"] < out["observables"]["E_ft_BO"]
    assert out["diagnostics"]["bayes_two_stage"]["conditions_on"] == "the pre-training data"
