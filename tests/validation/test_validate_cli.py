"""``lora-attn validate``: the report, the three verdicts and their exit codes, input refused before work.

The theory and the simulations are stubbed (``theory.solve``, ``simulate.run``): the statistics are tested in
test_verdict.py, the real thing in test_agreement_small_D.py.
"""

import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

import simulate
import theory
from lora_attn import exit_codes
from lora_attn.cli import main
from model.observables import OBSERVABLES, TEST_ERRORS
from theory import PretrainState, TheoryPoint
from theory.finite_size import linear_test_error_at


@dataclass
class _FakeSim:
    D: int
    seeds: int
    observables: dict
    sem: dict = field(default_factory=dict)


def _stub(monkeypatch, gap_at, sem=0.001, converged=True):
    """theory.solve → fixed values; simulate.run → theory + gap_at(name, D) with standard error ``sem``."""
    values = {name: 1.0 + i for i, name in enumerate(OBSERVABLES)}
    calls = []

    def fake_solve(params, **kw):
        _stub.solve_kw = kw
        return TheoryPoint(params=params, stage="both", observables=dict(values), converged=converged)

    def fake_run(params, D, seeds, **kw):
        _stub.run_kw = kw
        calls.append(D)
        obs = {k: v + gap_at(k, D) for k, v in values.items()}
        return _FakeSim(D, seeds, obs, {k: sem for k in obs})

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    return calls


BASE = ["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "6", "--theory-at-infinity"]


def test_agreement_exits_0_with_table_plot_and_output(monkeypatch, tmp_path, capsys):
    calls = _stub(monkeypatch, lambda name, D: 0.0)
    out, plot = tmp_path / "v.csv", tmp_path / "v.png"
    rc = main(["validate", "--sigma", "linear", "--D", "40,20", "--seeds", "6", "--out", str(out), "--plot", str(plot),
               "--theory-at-infinity"])
    text = capsys.readouterr().out
    assert rc == exit_codes.OK and calls == [20, 40]
    assert text.splitlines()[-1].startswith("verdict: AGREE") and all(name in text for name in OBSERVABLES)
    table = pd.read_csv(out)
    assert len(table) == 2 * len(OBSERVABLES)
    assert {"z", "p", "p_holm", "mdg", "tolerance", "verdict", "seeds_needed", "gap_inf", "gap_inf_err"} <= set(table)
    assert (table["verdict"] == "agree").all() and plot.stat().st_size > 1000


def test_z_max_is_deprecated_and_ignored(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.0)
    assert main(BASE + ["--z-max", "0.001"]) == exit_codes.OK
    assert "--z-max is deprecated" in capsys.readouterr().err


@pytest.mark.parametrize("at_infinity", [False, True])
def test_linear_test_errors_are_carried_to_D_by_the_output_gram_factor(monkeypatch, capsys, at_infinity):

    def gap(name, D):  # the simulation has exactly the output-Gram bias of theory.finite_size
        v = 1.0 + OBSERVABLES.index(name)
        return linear_test_error_at(v, T=3, D=D, delta=0.5) - v if name in TEST_ERRORS else 0.0

    _stub(monkeypatch, gap)
    flags = ["--theory-at-infinity"] if at_infinity else []
    # Q0 is at its D = ∞ value in the stub: leave it to the exact finite-D mean only when not at infinity
    monkeypatch.setattr(sys.modules["validation.compare"], "exact_Q0_mean", lambda params, D: 1.0)
    rc = main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "6", *flags])
    text = capsys.readouterr().out
    if at_infinity:
        assert rc == exit_codes.DISAGREE and "verdict: DISAGREE: E_pre" in text
    else:
        assert rc == exit_codes.OK and "exact finite-D value" in text


def test_disagreement_exits_3_naming_the_observable(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.05 if name == "E_ft" else 0.0)
    assert main(BASE) == exit_codes.DISAGREE
    text = capsys.readouterr().out
    assert "verdict: DISAGREE: E_ft (Holm" in text


def test_two_seeds_say_inconclusive_not_disagree(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.05 if name == "E_ft" else 0.0)
    argv = ["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", "--theory-at-infinity"]
    assert main(argv) == exit_codes.INCONCLUSIVE
    text = capsys.readouterr().out
    assert "verdict: INCONCLUSIVE" in text and "fewer than 3" in text


def test_a_run_that_cannot_see_the_tolerance_is_inconclusive_and_says_how_many_seeds_would(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.0, sem=0.02)
    assert main(BASE) == exit_codes.INCONCLUSIVE
    text = capsys.readouterr().out
    assert "seeds would settle it" in text and "could not have seen" in text
    assert main(BASE + ["--tolerance", "0.5"]) == exit_codes.OK


def test_the_extrapolated_criterion_forgives_a_1_over_D_gap_given_three_sizes(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 2.0 / D)  # 50 standard errors at D = 40, but extrapolates to 0
    three = ["validate", "--sigma", "linear", "--D", "20,40,80", "--seeds", "6", "--theory-at-infinity"]
    assert main(three) == exit_codes.DISAGREE
    assert main(three + ["--criterion", "extrapolated"]) == exit_codes.OK
    assert main(BASE + ["--criterion", "extrapolated"]) == exit_codes.INCONCLUSIVE
    assert "no residual to check" in capsys.readouterr().out


def test_a_theory_that_did_not_converge_exits_4(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.0, converged=False)
    assert main(BASE) == exit_codes.NOT_CONVERGED
    assert "did not converge" in capsys.readouterr().err


def test_theory_replicas_and_training_gram_are_passed_on(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.0)
    assert main(BASE) == exit_codes.OK
    assert _stub.solve_kw["pretrain_replicas"] == 4 and _stub.run_kw["train_gram"] == "tokens"
    assert main(BASE + ["--replicas", "2", "--train-gram", "identity"]) == exit_codes.OK
    assert _stub.solve_kw["pretrain_replicas"] == 2 and _stub.run_kw["train_gram"] == "identity"


@dataclass
class _FakeSeedSim:
    D: int
    seeds: int
    per_seed: pd.DataFrame


def test_pretrain_from_simulation_feeds_each_seeds_measured_order_parameters(monkeypatch, capsys):
    """--pretrain-from simulation: the fine-tuning theory is solved at each seed's (Q0, Q, M, q0); the gap is
    the seed mean of sim − theory (paired), and reused sequences get V from the pre-training theory."""
    solves = []

    def fake_solve(params, stage="both", pretrain=None, q0=1.0, **kw):
        solves.append((stage, pretrain, q0))
        if stage == "pretrain":
            return TheoryPoint(params=params, stage=stage, observables={"V": 0.25}, converged=True)
        obs = {"q": 2 * pretrain.Q, "m": pretrain.M, "o_w": 0.9, "E_ft": pretrain.Q0 + q0, "L_ft": 0.1,
               "E_frozen": 3.0, "delta_eff": 0.5}
        return TheoryPoint(params=params, stage=stage, observables=obs, converged=True)

    def fake_run(params, D, seeds, **kw):
        rng = np.random.default_rng(D)
        Q, Q0, q0 = rng.uniform(0.5, 1.5, seeds), rng.uniform(1.5, 2.5, seeds), rng.uniform(0.8, 1.2, seeds)
        jitter = 1e-4 * rng.normal(size=seeds)
        rows = pd.DataFrame({"Q0": Q0, "Q": Q, "M": 0.5 * Q, "q0": q0, "q": 2 * Q + jitter, "m": 0.5 * Q + jitter,
                             "o_w": 0.9 + jitter, "E_ft": Q0 + q0 + 1.0 / D + jitter, "L_ft": 0.1 + jitter,
                             "E_frozen": 3.0 + jitter, "delta_eff": 0.5 + jitter})
        return _FakeSeedSim(D, seeds, rows)

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    argv = ["validate", "--sigma", "linear", "--D", "20,40,80", "--seeds", "5", "--theory-at-infinity",
            "--pretrain-from", "simulation", "--finetune-keys", "0"]
    assert main(argv + ["--criterion", "extrapolated"]) == exit_codes.OK
    text = capsys.readouterr().out
    assert "E_ft" in text and "E_pre" not in text  # the pre-training observables are inputs here
    assert [s[0] for s in solves] == ["finetune"] * 15  # no pre-training theory without reuse
    sim20 = fake_run(None, 20, 5).per_seed
    assert [s[1].Q for s in solves[:5]] == pytest.approx(list(sim20["Q"]))
    assert [s[2] for s in solves[:5]] == pytest.approx(list(sim20["q0"]))
    assert main(argv) == exit_codes.DISAGREE  # the 1/D gap of E_ft is many standard errors at D = 80
    solves.clear()
    assert main(argv + ["--reuse", "0.5", "--criterion", "extrapolated"]) == exit_codes.OK
    assert solves[0][0] == "pretrain"
    assert all(isinstance(s[1], PretrainState) and s[1].V == 0.25 for s in solves[1:])


def test_the_theorys_spread_over_monte_carlo_keys_enters_the_error(monkeypatch, capsys, tmp_path):
    """--finetune-keys K: the fine-tuning theory is solved at the seed-mean inputs with keys 0..K−1, and the
    spread of q over them (the fixed point's Monte-Carlo error, common to every seed, K − 1 degrees of freedom)
    enters the error of the gap: a gap of many seed errors is then no disagreement, and a run whose theory error
    alone hides gaps of the tolerance is inconclusive."""
    keys_seen = []

    def fake_solve(params, stage="both", pretrain=None, q0=1.0, key=0, **kw):
        keys_seen.append(key)
        obs = {"q": 1.0 + 0.02 * (key % 2), "m": 0.5, "o_w": 0.9, "E_ft": 1.0, "L_ft": 0.1, "E_frozen": 3.0,
               "delta_eff": 0.5}
        return TheoryPoint(params=params, stage=stage, observables=obs, converged=True)

    def fake_run(params, D, seeds, **kw):
        jitter = 1e-4 * np.random.default_rng(D).normal(size=seeds)
        rows = pd.DataFrame({"Q0": 2.0, "Q": 1.0, "M": 0.5, "q0": 1.0, "q": 1.02 + jitter, "m": 0.5 + jitter,
                             "o_w": 0.9 + jitter, "E_ft": 1.0 + jitter, "L_ft": 0.1 + jitter, "E_frozen": 3.0 + jitter,
                             "delta_eff": 0.5 + jitter})
        return _FakeSeedSim(D, seeds, rows)

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    argv = ["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "5", "--theory-at-infinity",
            "--pretrain-from", "simulation"]
    out = tmp_path / "v.csv"
    assert main(argv + ["--finetune-keys", "0"]) == exit_codes.DISAGREE  # q is 0.02 above the key-0 theory
    keys_seen.clear()
    assert main(argv + ["--finetune-keys", "4", "--out", str(out)]) == exit_codes.INCONCLUSIVE
    assert "no number of seeds settles q:" in capsys.readouterr().out
    assert sorted(set(keys_seen)) == [0, 1, 2, 3]
    table = pd.read_csv(out)
    q = table[table.observable == "q"]
    assert q["theory_sem"].to_numpy() == pytest.approx(np.std([1.0, 1.02, 1.0, 1.02], ddof=1))
    assert (q["verdict"] == "inconclusive").all() and q["seeds_needed"].isna().all()  # seeds cannot fix it
    assert q["dof"].max() < 4  # the 3 degrees of freedom of the keys' spread dominate
    assert (table[table.observable == "m"]["theory_sem"] == 0).all()
    capsys.readouterr()


@pytest.mark.parametrize("argv, match", [
    (["--replicas", "0"], "replicas"),
    (["--finetune-keys", "-1"], "finetune-keys"),
    (["--D", "1,10"], "--D"),
    (["--D", "a,10"], "--D"),
    (["--seeds", "1"], "seeds"),
    (["--lam", "0"], "lam"),
    (["--D", "10", "--alpha", "0.001"], "alpha"),
    (["--level", "0"], "--level"),
    (["--level", "1"], "--level"),
    (["--level", "nan"], "--level"),
    (["--tolerance", "-0.1"], "--tolerance"),
    (["--abs-tolerance", "inf"], "--abs-tolerance"),
    (["--z-max", "nan"], "--z-max"),
    (["--z-max", "-3"], "--z-max"),
    (["--out", "table.txt"], "--out"),
    (["--out", "/nonexistent-folder/t.csv"], "--out"),
    (["--plot", "plot.txt"], "--plot"),
    (["--plot", "/nonexistent-folder/p.png"], "--plot"),
])
def test_bad_input_is_refused_before_work(argv, match, monkeypatch, capsys):
    calls = _stub(monkeypatch, lambda name, D: 0.0)
    assert main(["validate", "--sigma", "linear"] + argv) == exit_codes.BAD_INPUT
    assert match in capsys.readouterr().err and calls == []


@pytest.mark.slow
def test_validate_runs_theory_and_simulation_end_to_end(capsys):
    rc = main(["validate", "--sigma", "linear", "--D", "10,14", "--seeds", "3", "--n-mc", "800"])
    text = capsys.readouterr().out
    assert rc in (exit_codes.OK, exit_codes.DISAGREE, exit_codes.INCONCLUSIVE)
    assert "E_ft" in text and "p_holm" in text and "verdict:" in text
