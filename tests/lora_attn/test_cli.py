"""The CLI contract: flag names, JSON layout, tables, exit codes, errors before work."""

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

import simulate
import theory
from lora_attn import Params
from lora_attn.cli import build_parser, main
from model.observables import OBSERVABLES, TEST_ERRORS
from model.params import PARAM_NAMES
from theory import PretrainState, TheoryPoint
from theory.finite_size import linear_test_error_at


def test_simulate_json_has_every_observable(capsys):
    rc = main(["simulate", "--D", "12", "--seeds", "2", "--sigma", "linear", "--restarts", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"params", "D", "seeds", "observables", "sem"}
    assert out["D"] == 12 and out["seeds"] == 2 and out["params"]["sigma"] == "linear"
    assert set(OBSERVABLES) <= set(out["observables"]) and set(out["sem"]) == set(out["observables"])


def test_simulate_table_is_readable(capsys):
    assert main(["simulate", "--D", "10", "--restarts", "1", "--recalibrate", "optimal", "--lam-prime", "inf"]) == 0
    out = capsys.readouterr().out
    for name in OBSERVABLES:
        assert name in out


def test_bad_parameter_exits_2_naming_it(capsys):
    assert main(["simulate", "--D", "10", "--active-rho", "2"]) == 2
    assert "active_rho" in capsys.readouterr().err


def test_theory_finetune_json_from_given_order_parameters(capsys):
    rc = main(["theory", "--stage", "finetune", "--sigma", "linear", "--pretrain", "Q0=2.0,Q=2.2,M=1.9",
               "--n-mc", "800", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["converged"] is True
    assert out["pretrain"] == {"Q0": 2.0, "Q": 2.2, "M": 1.9}
    obs = out["observables"]
    assert {"q", "m", "o_w", "E_ft", "L_ft", "E_frozen", "delta_eff"} <= set(obs)
    assert obs["delta_eff"] == pytest.approx(0.25 + 2.0 - 3.8 + 2.2)
    assert obs["E_frozen"] == pytest.approx(12 * (obs["delta_eff"] + 1.0))  # T(T+1)(Δ_eff + q0²), q0 = 1
    assert obs["E_ft"] < obs["E_frozen"]


def test_theory_pretrain_reports_erm_and_bayes(capsys):
    assert main(["theory", "--stage", "pretrain", "--sigma", "linear", "--json"]) == 0
    obs = json.loads(capsys.readouterr().out)["observables"]
    assert obs["Q0"] == 2.0 and 0 < obs["Q_BO"] < 2.0
    assert obs["E_pre_BO"] == pytest.approx(12 * (2.0 - obs["Q_BO"] + 0.25))  # T(T+1)(V + Δ/2)
    assert obs["E_pre"] == pytest.approx(12 * (2.0 - 2 * obs["M"] + obs["Q"] + 0.25))
    assert obs["E_pre_BO"] < obs["E_pre"]


def test_theory_chains_pretraining_into_finetuning_for_linear(capsys):
    assert main(["theory", "--sigma", "linear", "--n-mc", "800", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    obs = out["observables"]
    assert out["stage"] == "both" and out["converged"] is True
    assert out["pretrain"] == {"Q0": 2.0, "Q": obs["Q"], "M": obs["M"]}
    assert obs["delta_eff"] == pytest.approx(0.25 + 2.0 - 2 * obs["M"] + obs["Q"])
    assert obs["E_ft"] < obs["E_frozen"]


@pytest.mark.parametrize("argv, match", [
    (["theory", "--stage", "finetune"], "--pretrain"),
    (["theory", "--stage", "finetune", "--pretrain", "Q0=1,Q=1"], "missing M"),
    (["theory", "--stage", "finetune", "--pretrain", "Q0=1,Q=1,M=3"], "M"),
    (["theory", "--q0", "0"], "q0"),
    (["theory", "--stage", "finetune", "--pretrain", "Q0=1,Q=1,M=0.5", "--n-mc", "1"], "n_mc"),
])
def test_theory_refuses_incomplete_input(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


# ------------------------------------------------------------------------------------ sweep (theory)
def test_sweep_without_simulate_solves_the_theory(tmp_path, capsys):
    out = tmp_path / "th.csv"
    rc = main(["sweep", "--vary", "lam=0.1,1", "--vary", "alpha=0.1,0.2", "--sigma", "linear", "--stage", "pretrain",
               "--out", str(out)])
    assert rc == 0
    table = pd.read_csv(out)
    assert len(table) == 4 and list(table["lam"]) == [0.1, 0.1, 1.0, 1.0]
    assert {"E_pre", "L_pre", "Q", "M", "V", "converged", "stage", "n_mc", "bayes"} <= set(table.columns)
    assert table["converged"].all() and not any(c.endswith("_sem") for c in table.columns)
    direct = theory.solve(Params(sigma="linear", lam=1.0, alpha=0.2), stage="pretrain", bayes=False)
    assert table["E_pre"].iloc[3] == pytest.approx(direct.observables["E_pre"], rel=1e-6)


def test_sweep_theory_beside_simulation_columns(tmp_path, monkeypatch):
    class Sim:
        def row(self):
            return {"D": 10, "seeds": 2, "E_ft": 7.0, "E_ft_sem": 0.1, "sim_converged": True}

    monkeypatch.setattr(simulate, "run", lambda p, D, seeds, **kw: Sim())
    monkeypatch.setattr(theory, "solve", lambda p, **kw: TheoryPoint(params=p, stage="both",
                                                                     observables={"E_ft": 6.5}, converged=True))
    out = tmp_path / "both.csv"
    assert main(["sweep", "--vary", "lam_prime=0.5,1", "--simulate", "--theory", "--D", "10", "--sigma", "linear",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["E_ft"]) == [7.0, 7.0] and list(table["E_ft_theory"]) == [6.5, 6.5]
    assert {"E_ft_sem", "converged_theory", "D", "seeds", "n_mc"} <= set(table.columns)


@pytest.mark.slow
def test_sweep_theory_beside_simulation(tmp_path):
    out = tmp_path / "both.csv"
    rc = main(["sweep", "--vary", "lam_prime=0.5", "--simulate", "--theory", "--D", "10", "--seeds", "2",
               "--sigma", "linear", "--n-mc", "800", "--out", str(out)])
    assert rc == 0
    row = pd.read_csv(out).iloc[0]
    for name in ("E_ft", "E_pre", "o_w", "delta_eff"):
        assert math.isfinite(row[name]) and math.isfinite(row[name + "_sem"]) and math.isfinite(row[name + "_theory"])
    assert bool(row["converged_theory"]) and row["D"] == 10


@pytest.mark.parametrize("argv, match", [
    (["sweep", "--vary", "lam=0.1,0", "--sigma", "linear"], "lam"),
    (["sweep", "--vary", "lam=0.1", "--n-mc", "1"], "n_mc"),
    (["sweep", "--vary", "lam=0.1", "--simulate"], "--D"),
])
def test_sweep_refuses_before_work(argv, match, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(theory, "solve", lambda *a, **k: pytest.fail("solved before refusing"))
    assert main(argv + ["--out", str(tmp_path / "x.csv")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------------------------ validate
@dataclass
class _FakeSim:
    D: int
    seeds: int
    observables: dict
    sem: dict = field(default_factory=dict)


def _stub(monkeypatch, gap_at):
    """theory.solve → fixed values; simulate.run → theory + gap_at(name, D) with sem 0.01."""
    values = {name: 1.0 + i for i, name in enumerate(OBSERVABLES)}
    calls = []

    def fake_solve(params, **kw):
        _stub.solve_kw = kw
        return TheoryPoint(params=params, stage="both", observables=dict(values), converged=True)

    def fake_run(params, D, seeds, **kw):
        _stub.run_kw = kw
        calls.append(D)
        obs = {k: v + gap_at(k, D) for k, v in values.items()}
        return _FakeSim(D, seeds, obs, {k: 0.01 for k in obs})

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    return calls


@pytest.mark.parametrize("stable", [True, False])
def test_theory_warns_where_the_finetuning_fixed_point_is_not_rs_stable(monkeypatch, capsys, stable):
    diag = {"finetune": {"replicon": 0.8, "replicon_sem": 0.1, "prox_jump_frac": 0.0 if stable else 0.002,
                         "rs_stable": stable}}

    def fake_solve(params, **kw):
        return TheoryPoint(params=params, stage="both", observables={"o_w": 0.3}, converged=True, diagnostics=diag)

    monkeypatch.setattr(theory, "solve", fake_solve)
    assert main(["theory", "--sigma", "linear"]) == 0
    out = capsys.readouterr().out
    assert ("RS unstable: replicon 0.8 ± 0.1, prox jumps in 0.20% of the samples" in out) is not stable


def test_validate_agreement_exits_0_with_table_plot_and_output(monkeypatch, tmp_path, capsys):
    calls = _stub(monkeypatch, lambda name, D: 1.0 / D)  # a 1/D gap: z = 10, 5 at the sizes, 0 extrapolated
    out, plot = tmp_path / "v.csv", tmp_path / "v.png"
    rc = main(["validate", "--sigma", "linear", "--D", "40,20", "--seeds", "2", "--z-max", "6", "--out", str(out),
               "--plot", str(plot), "--theory-at-infinity"])
    text = capsys.readouterr().out
    assert rc == 0 and calls == [20, 40]
    assert "all agree" in text and all(name in text for name in OBSERVABLES)
    table = pd.read_csv(out)
    assert len(table) == 2 * len(OBSERVABLES) and {"z", "gap_inf", "gap_inf_err"} <= set(table.columns)
    assert table["gap_inf"].abs().max() < 1e-9 and plot.stat().st_size > 1000


@pytest.mark.parametrize("at_infinity", [False, True])
def test_validate_carries_linear_test_errors_to_D_by_the_output_gram_factor(monkeypatch, capsys, at_infinity):

    def gap(name, D):  # the simulation has exactly the output-Gram bias of theory.finite_size
        v = 1.0 + OBSERVABLES.index(name)
        return linear_test_error_at(v, T=3, D=D, delta=0.5) - v if name in TEST_ERRORS else 0.0

    _stub(monkeypatch, gap)
    flags = ["--theory-at-infinity"] if at_infinity else []
    rc = main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", *flags])
    text = capsys.readouterr().out
    if at_infinity:
        assert rc == 1 and "DISAGREE: E_pre" in text
    else:
        assert rc == 0 and "all agree" in text and "exact output-Gram factor" in text


# The stubs below give every observable the same gap; --theory-at-infinity keeps the exact output-Gram
# factor of linear test errors (tested above) out of what they test.
def test_validate_disagreement_at_the_largest_D_exits_1(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.05 if name == "E_ft" else 0.0)
    assert main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", "--theory-at-infinity"]) == 1
    assert "DISAGREE: E_ft" in capsys.readouterr().out


def test_validate_extrapolated_criterion_forgives_a_1_over_D_gap(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 2.0 / D)  # z = 5 at D = 40, but extrapolates to 0
    assert main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", "--theory-at-infinity"]) == 1
    assert main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", "--theory-at-infinity", "--criterion", "extrapolated"]) == 0


def test_validate_passes_theory_replicas_and_training_gram(monkeypatch, capsys):
    _stub(monkeypatch, lambda name, D: 0.0)
    assert main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", "--theory-at-infinity"]) == 0
    assert _stub.solve_kw["pretrain_replicas"] == 4 and _stub.run_kw["train_gram"] == "tokens"
    assert main(["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "2", "--theory-at-infinity", "--replicas", "2",
                 "--train-gram", "identity"]) == 0
    assert _stub.solve_kw["pretrain_replicas"] == 2 and _stub.run_kw["train_gram"] == "identity"


@dataclass
class _FakeSeedSim:
    D: int
    seeds: int
    per_seed: pd.DataFrame


def test_validate_pretrain_from_simulation_feeds_each_seeds_measured_order_parameters(monkeypatch, capsys):
    """--pretrain-from simulation: the fine-tuning theory is solved at each seed's (Q0, Q, M, q0); the gap is
    the seed mean of sim − theory, and reused sequences get V from the pre-training theory."""
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
        jitter = 1e-3 * rng.normal(size=seeds)
        rows = pd.DataFrame({"Q0": Q0, "Q": Q, "M": 0.5 * Q, "q0": q0, "q": 2 * Q + jitter, "m": 0.5 * Q + jitter,
                             "o_w": 0.9 + jitter, "E_ft": Q0 + q0 + 1.0 / D + jitter, "L_ft": 0.1 + jitter,
                             "E_frozen": 3.0 + jitter, "delta_eff": 0.5 + jitter})
        return _FakeSeedSim(D, seeds, rows)

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    argv = ["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "5", "--theory-at-infinity", "--pretrain-from", "simulation",
            "--finetune-keys", "0"]
    assert main(argv + ["--criterion", "extrapolated"]) == 0
    text = capsys.readouterr().out
    assert "E_ft" in text and "E_pre" not in text  # the pre-training observables are inputs here
    assert [s[0] for s in solves] == ["finetune"] * 10  # no pre-training theory without reuse
    sim20 = fake_run(None, 20, 5).per_seed
    assert [s[1].Q for s in solves[:5]] == pytest.approx(list(sim20["Q"]))
    assert [s[2] for s in solves[:5]] == pytest.approx(list(sim20["q0"]))
    assert main(argv) == 1  # the 1/D gap of E_ft is many standard errors at D = 40
    solves.clear()
    assert main(argv + ["--reuse", "0.5", "--criterion", "extrapolated"]) == 0
    assert solves[0][0] == "pretrain"
    assert all(isinstance(s[1], PretrainState) and s[1].V == 0.25 for s in solves[1:])


def test_validate_adds_the_theorys_spread_over_monte_carlo_keys(monkeypatch, capsys, tmp_path):
    """--finetune-keys K: the fine-tuning theory is solved at the seed-mean inputs with keys 0..K−1, and the
    spread of q over them (the fixed point's Monte-Carlo error, common to every seed) enters the error of the
    gap; a gap of several seed errors then agrees."""
    keys_seen = []

    def fake_solve(params, stage="both", pretrain=None, q0=1.0, key=0, **kw):
        keys_seen.append(key)
        obs = {"q": 1.0 + 0.02 * (key % 2), "m": 0.5, "o_w": 0.9, "E_ft": 1.0, "L_ft": 0.1, "E_frozen": 3.0,
               "delta_eff": 0.5}
        return TheoryPoint(params=params, stage=stage, observables=obs, converged=True)

    def fake_run(params, D, seeds, **kw):
        jitter = 1e-3 * np.random.default_rng(D).normal(size=seeds)
        rows = pd.DataFrame({"Q0": 2.0, "Q": 1.0, "M": 0.5, "q0": 1.0, "q": 1.02 + jitter, "m": 0.5 + jitter,
                             "o_w": 0.9 + jitter, "E_ft": 1.0 + jitter, "L_ft": 0.1 + jitter, "E_frozen": 3.0 + jitter,
                             "delta_eff": 0.5 + jitter})
        return _FakeSeedSim(D, seeds, rows)

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    argv = ["validate", "--sigma", "linear", "--D", "20,40", "--seeds", "5", "--theory-at-infinity", "--pretrain-from", "simulation"]
    out = tmp_path / "v.csv"
    assert main(argv + ["--finetune-keys", "0"]) == 1  # q is 0.02 above the key-0 theory: z ≈ 40
    keys_seen.clear()
    assert main(argv + ["--finetune-keys", "4", "--out", str(out)]) == 0
    assert sorted(set(keys_seen)) == [0, 1, 2, 3]
    table = pd.read_csv(out)
    q = table[table.observable == "q"]
    assert q["theory_sem"].to_numpy() == pytest.approx(np.std([1.0, 1.02, 1.0, 1.02], ddof=1))
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
])
def test_validate_refuses_bad_input_before_work(argv, match, monkeypatch, capsys):
    calls = _stub(monkeypatch, lambda name, D: 0.0)
    assert main(["validate", "--sigma", "linear"] + argv) == 2
    assert match in capsys.readouterr().err and calls == []


@pytest.mark.slow
def test_validate_runs_theory_and_simulation_end_to_end(capsys):
    rc = main(["validate", "--sigma", "linear", "--D", "10,14", "--seeds", "2", "--n-mc", "800"])
    text = capsys.readouterr().out
    assert rc in (0, 1) and "E_ft" in text and "gap→D=∞" in text


def test_cli_sweep_simulates_a_tidy_table(tmp_path, capsys):
    out = tmp_path / "t.csv"
    rc = main(["sweep", "--vary", "lam_prime=0.5,inf", "--simulate", "--D", "10", "--seeds", "2",
               "--sigma", "linear", "--out", str(out)])
    assert rc == 0
    table = pd.read_csv(out)
    assert len(table) == 2 and {"E_ft", "E_ft_sem", "lam_prime", "D", "sim_converged"} <= set(table.columns)
    assert table["E_ft"].iloc[1] == table["E_frozen"].iloc[1]


def test_cli_sweep_refuses_bad_output_before_work(tmp_path, capsys):
    assert main(["sweep", "--vary", "lam=1", "--simulate", "--D", "10", "--out", str(tmp_path / "x.txt")]) == 2
    assert "--out" in capsys.readouterr().err


def test_every_parameter_has_its_generated_flag():
    """The flags are generated from Params: one per field, with its default, parsed to the field's type."""
    parser = build_parser()
    for command in ("simulate", "theory", "sweep", "validate"):
        extra = {"simulate": ["--D", "10"], "sweep": ["--vary", "lam=1", "--out", "x.csv"]}.get(command, [])
        args = parser.parse_args([command, *extra])
        assert {n: getattr(args, n) for n in PARAM_NAMES} == Params().to_dict()
    args = parser.parse_args(["theory", "--T", "2", "--lam-prime", "inf", "--recalibrate", "optimal",
                              "--active-rho", "0.1", "--sigma", "linear"])
    assert (args.T, args.lam_prime, args.recalibrate, args.active_rho, args.sigma) == (2, math.inf, "optimal", 0.1,
                                                                                        "linear")
    assert parser.parse_args(["theory", "--recalibrate", "1.5"]).recalibrate == 1.5


def test_a_flag_that_does_not_parse_names_its_parameter(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["theory", "--alpha-prime", "three"])
    assert exit_.value.code == 2 and "alpha_prime" in capsys.readouterr().err
