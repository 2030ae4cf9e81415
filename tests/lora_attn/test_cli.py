"""The CLI contract: flag names, JSON layout, tables, exit codes, errors before work."""

import json
import math

import pandas as pd
import pytest

import simulate
import theory
from lora_attn import Params
from lora_attn.cli import build_parser, main
from model.observables import OBSERVABLES
from model.params import PARAM_NAMES
from theory import TheoryPoint


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


# validate: tests/validation/test_validate_cli.py


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
        assert {n: getattr(args, n) for n in PARAM_NAMES} == {n: getattr(Params(), n) for n in PARAM_NAMES}
    args = parser.parse_args(["theory", "--T", "2", "--lam-prime", "inf", "--recalibrate", "optimal",
                              "--active-rho", "0.1", "--sigma", "linear"])
    assert (args.T, args.lam_prime, args.recalibrate, args.active_rho, args.sigma) == (2, math.inf, "optimal", 0.1,
                                                                                        "linear")
    assert parser.parse_args(["theory", "--recalibrate", "1.5"]).recalibrate == 1.5


def test_a_flag_that_does_not_parse_names_its_parameter(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["theory", "--alpha-prime", "three"])
    assert exit_.value.code == 2 and "alpha_prime" in capsys.readouterr().err
