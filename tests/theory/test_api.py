"""The Python API of the theory: ``theory.solve`` / ``theory.sweep`` (theory/api.py)."""

import math

import pandas as pd
import pytest

import theory
from model.observables import OBSERVABLES
from model.params import ParameterError, Params
from theory.api import TheoryPoint, WarmStart
from theory.laws.reused import reused_delta_eff_linear
from theory.states import PretrainState

N_MC = 800  # the size the CLI tests use too: one compilation of the fine-tuning channel serves both
LINEAR = Params(sigma="linear")


@pytest.fixture(scope="module")
def linear_point() -> TheoryPoint:
    return theory.solve(LINEAR, bayes="pretrain", n_mc=N_MC)


def test_solve_reports_every_simulated_observable(linear_point):
    r = linear_point
    assert r.converged and r.stage == "both"
    assert set(OBSERVABLES) <= set(r.observables)
    assert {"Q_BO", "E_pre_BO"} <= set(r.observables) and "E_ft_BO" not in r.observables
    assert all(math.isfinite(r.observables[k]) for k in OBSERVABLES)
    # identities of MODEL.md §4–5 that tie the two stages together
    o = r.observables
    assert o["Q0"] == 2.0
    assert o["delta_eff"] == pytest.approx(0.25 + o["Q0"] - 2 * o["M"] + o["Q"], rel=1e-12)
    assert o["o_w"] == pytest.approx(abs(o["m"]) / math.sqrt(o["q"] * o["q0"]))
    assert o["E_pre_BO"] < o["E_pre"] and o["E_ft"] < o["E_frozen"]


def test_row_is_flat_params_observables_convergence(linear_point):
    row = linear_point.row()
    assert set(LINEAR.to_dict()) <= set(row) and set(OBSERVABLES) <= set(row)
    assert row["converged"] is True and row["n_steps_pretrain"] > 1 and row["n_steps_finetune"] > 1
    assert row["rs_stable"] is True and 0 < row["replicon"] < 1


def test_warm_start_reaches_the_same_point_and_fine_tuning_does_not_depend_on_the_path(linear_point):
    nxt = LINEAR.replace(alpha_prime=3.3, lam=0.12)
    cold = theory.solve(nxt, bayes=False, n_mc=N_MC)
    warm = theory.solve(nxt, bayes=False, n_mc=N_MC, init=linear_point.warm)
    assert cold.converged and warm.converged
    # both runs stop at the solvers' rtol = 1e-6; measured: the largest relative difference is 9e-10
    for name in ("Q", "M", "E_pre", "q", "m", "E_ft", "o_w"):
        assert warm.observables[name] == pytest.approx(cold.observables[name], rel=1e-6), name
    assert warm.n_steps["pretrain"] < cold.n_steps["pretrain"]
    # the fine-tuning always starts from the informed point: the same iterates, the same numbers
    assert warm.n_steps["finetune"] == cold.n_steps["finetune"]
    assert warm.observables["q"] == pytest.approx(cold.observables["q"], rel=1e-9)


def test_warm_start_is_not_carried_across_T_or_sigma():
    a = theory.solve(LINEAR, stage="pretrain", bayes=False)
    other = LINEAR.replace(T=2)
    cold = theory.solve(other, stage="pretrain", bayes=False)
    given = theory.solve(other, stage="pretrain", bayes=False, init=a.warm)
    assert given.n_steps == cold.n_steps and a.warm.key == ("linear", 3)


def test_pretrain_stage_alone_has_no_finetuning_observables():
    r = theory.solve(LINEAR, stage="pretrain", bayes=False)
    assert {"Q0", "Q", "M", "V", "E_pre", "L_pre"} <= set(r.observables)
    assert not ({"q", "E_ft", "Q_BO"} & set(r.observables))
    assert r.warm.pretrain is not None and r.warm.solved_pretrain is not None


def test_finetune_stage_from_given_order_parameters():
    r = theory.solve(LINEAR, stage="finetune", pretrain=PretrainState(Q0=2.0, Q=2.2, M=1.9), bayes=False,
                     n_mc=N_MC)
    assert r.converged and r.observables["delta_eff"] == pytest.approx(0.25 + 2.0 - 3.8 + 2.2)
    assert "E_pre" not in r.observables


def test_sweep_is_a_tidy_warm_started_table():
    table = theory.sweep(LINEAR, {"lam": [0.05, 0.1], "alpha": "0.1,0.2"}, stage="pretrain", progress=False)
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert list(table["lam"]) == [0.05, 0.05, 0.1, 0.1] and list(table["alpha"]) == [0.1, 0.2, 0.1, 0.2]
    assert {"T", "sigma", "E_pre", "Q", "M", "converged", "n_steps_pretrain", "stage"} <= set(table.columns)
    assert table["converged"].all()
    # every row equals an independent cold solve of its point
    cold = theory.solve(LINEAR.replace(lam=0.1, alpha=0.2), stage="pretrain", bayes=False)
    assert table["E_pre"].iloc[3] == pytest.approx(cold.observables["E_pre"], rel=1e-6)


def test_sweep_resumes_from_its_output(tmp_path, monkeypatch):
    out = tmp_path / "t.csv"
    theory.sweep(LINEAR, {"lam": [0.1]}, stage="pretrain", progress=False, out=str(out))
    calls = []
    real = theory.api.solve

    def counting(p, **kw):
        calls.append(p.lam)
        return real(p, **kw)

    monkeypatch.setattr(theory.api, "solve", counting)
    table = theory.sweep(LINEAR, {"lam": [0.1, 1.0]}, stage="pretrain", progress=False, out=str(out))
    assert calls == [1.0] and len(table) == 2 and len(pd.read_csv(out)) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(stage="nope"), "stage"),
    (dict(bayes="sometimes"), "bayes"),
    (dict(n_mc=1), "n_mc"),
    (dict(q0=-1.0), "q0"),
    (dict(stage="finetune"), "pretrain"),
    (dict(init=(1.0, 2.0)), "init"),
    (dict(pretrain_replicas=0), "pretrain_replicas"),
])
def test_bad_input_is_refused_before_work(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        theory.solve(LINEAR, **kwargs)


def test_zero_weight_decay_is_refused_by_the_pretraining_theory():
    with pytest.raises(ParameterError, match="lam"):
        theory.solve(LINEAR.replace(lam=0.0))


def test_sweep_validates_every_point_before_any_work(monkeypatch):
    calls = []
    monkeypatch.setattr(theory.api, "solve", lambda p, **kw: calls.append(p))
    with pytest.raises(ParameterError, match="alpha"):
        theory.sweep(LINEAR, {"alpha": [0.1, -1.0]}, progress=False)
    with pytest.raises(ParameterError, match="lam"):
        theory.sweep(LINEAR, {"lam": [0.1, 0.0]}, progress=False)
    with pytest.raises(ParameterError, match="nope"):
        theory.sweep(LINEAR, {"nope": [1]}, progress=False)
    assert calls == []


def test_the_package_exports_the_api():
    assert callable(theory.solve) and theory.solve is theory.api.solve
    assert theory.sweep is theory.api.sweep
    assert isinstance(theory.WarmStart(), WarmStart)


@pytest.mark.slow  # 15-40 s on 2 cores: with the long checks (-m slow), out of the default run
def test_pretrain_replicas_give_the_theory_its_own_error_bars():
    p = Params(sigma="softmax", T=2)
    r = theory.solve(p, stage="pretrain", bayes=False, pretrain_replicas=2)
    assert r.converged and {"Q", "M", "V", "E_pre", "L_pre"} <= set(r.mc_sem)
    assert 0 < r.mc_sem["Q"] < 0.05 * r.observables["Q"]


@pytest.mark.slow
def test_softmax_solve_reports_every_observable():
    r = theory.solve(Params(sigma="softmax"), bayes="pretrain", n_mc=N_MC)
    assert set(OBSERVABLES) <= set(r.observables) and r.converged
    warm = theory.solve(Params(sigma="softmax", alpha_prime=3.3), bayes=False, n_mc=N_MC, init=r.warm)
    cold = theory.solve(Params(sigma="softmax", alpha_prime=3.3), bayes=False, n_mc=N_MC)
    # measured: 5e-9 apart (the pre-training is taken as it is; rtol of the solvers 1e-6)
    assert warm.observables["E_ft"] == pytest.approx(cold.observables["E_ft"], rel=1e-6)
    assert sum(warm.n_steps.values()) < sum(cold.n_steps.values())


@pytest.mark.slow
def test_bayes_finetune_baseline_is_below_erm():
    r = theory.solve(LINEAR, bayes=True, n_mc=N_MC)
    assert r.observables["E_ft_BO"] < r.observables["E_ft"] and 0 < r.observables["q_BO"] < 1


def test_a_fine_tuning_neighbour_takes_the_solved_pretraining_as_it_is(linear_point):
    nxt = theory.solve(LINEAR.replace(alpha_prime=5.0, lam_prime=1.0), bayes="pretrain", n_mc=N_MC,
                       init=linear_point.warm)
    assert nxt.n_steps["pretrain"] == 0 and nxt.diagnostics["pretrain"]["reused"]
    for name in ("Q", "M", "V", "E_pre", "L_pre", "Q_BO", "E_pre_BO"):
        assert nxt.observables[name] == linear_point.observables[name], name
    other = theory.solve(LINEAR.replace(lam=0.12), stage="pretrain", bayes=False, init=linear_point.warm)
    assert other.n_steps["pretrain"] > 0 and "reused" not in other.diagnostics["pretrain"]


def test_reused_sequences_get_V_from_the_chained_pretraining():
    r = theory.solve(LINEAR.replace(reuse=1.0), bayes=False, n_mc=N_MC)
    o = r.observables
    assert r.converged and isinstance(r.pretrain, PretrainState) and r.pretrain.V == o["V"]
    assert o["delta_eff"] == pytest.approx(reused_delta_eff_linear(LINEAR.delta, r.pretrain), rel=1e-12)
