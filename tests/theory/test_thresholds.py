"""Tests of theory/thresholds.py beyond the switch-off (tests/theory/test_switch_off.py): the large-α' law and
the command line of the prescriptions."""

from __future__ import annotations

import importlib
import json

import pytest

import theory
from lora_attn.cli import main
from model.params import Params
from theory.states import PretrainState
from theory.thresholds import large_alpha_law

PRE_LINEAR = PretrainState(Q0=2.0, Q=2.197, M=1.9148)


def test_large_alpha_law_coefficient_against_the_solver():
    """Linear σ: α'(E_ft − T(T+1)Δ_eff)/Δ_eff → 2 as α' grows (the law's coefficient, derived in
    theory.thresholds.large_alpha_law), closer at larger α'; measured 2.128, 2.035, 2.035, 2.004, 1.996 at 30, 100, 300."""
    gaps = []
    for ap in (10.0, 300.0):
        o = theory.solve(Params(sigma="linear", alpha_prime=ap), stage="finetune", pretrain=PRE_LINEAR,
                         bayes=False).observables
        d = o["delta_eff"]
        assert o["E_ft"] == pytest.approx(large_alpha_law(3, d, ap), rel=2.0 / ap)
        gaps.append(abs(ap * (o["E_ft"] - 12 * d) / d - 2.0))
    assert gaps[0] > gaps[1] and gaps[1] < 0.01


def test_thresholds_command_json(monkeypatch, capsys):
    """``lora-attn thresholds --json`` prints λ'_c, α'_c (and the Bayes α'_c unless --no-bayes)."""
    monkeypatch.setattr(importlib.import_module("theory.thresholds"), "_pretrain_state",
                        lambda params, pre: PRE_LINEAR)
    assert main(["thresholds", "--sigma", "linear", "--no-bayes", "--n-mc", "500", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lam_prime_c"]["lam_prime_c"] > 0 and out["bayes_alpha_prime_c"] is None
    assert out["lam_prime_c"]["mechanism"] in ("informed", "bulk")


def test_optimize_command_refuses_bad_bounds(capsys):
    assert main(["optimize", "--over", "lam_prime", "--bounds", "lam_prime=1"]) == 2
    assert "NAME=lo:hi" in capsys.readouterr().err
