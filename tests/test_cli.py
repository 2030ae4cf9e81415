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


@pytest.mark.parametrize("command", ["theory", "validate"])
def test_unbuilt_commands_say_so_and_produce_no_numbers(command, capsys):
    assert main([command]) == 3
    captured = capsys.readouterr()
    assert "not available yet" in captured.err and captured.out == ""
