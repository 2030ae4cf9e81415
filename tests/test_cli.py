"""The CLI contract: flag names, JSON layout, errors before work, placeholders that refuse."""

import json

import pytest

from lora_attn.cli import main
from simulate.run import OBSERVABLES


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


@pytest.mark.parametrize("command", ["validate"])
def test_unbuilt_commands_say_so_and_produce_no_numbers(command, capsys):
    assert main([command]) == 3
    captured = capsys.readouterr()
    assert "not available yet" in captured.err and captured.out == ""


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
    (["theory"], "softmax"),
])
def test_theory_refuses_incomplete_input(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err
