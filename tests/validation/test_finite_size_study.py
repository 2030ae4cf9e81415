"""The finite-size study: its registry, its bad input, and the files it writes (the validation itself faked)."""

from __future__ import annotations

import pandas as pd
import pytest

import validation.finite_size_study as fss
from lora_attn import exit_codes
from lora_attn.cli import main
from model.params import ParameterError
from validation.compare import Validation
from validation.workflow import ValidationRun


def test_unknown_study_is_refused_and_no_name_means_all():
    with pytest.raises(ParameterError, match="study"):
        fss.check_studies(["nope"])
    assert fss.check_studies([]) == list(fss.STUDIES)


@pytest.mark.parametrize("argv", [
    ["finite-size-study", "--study", "nope", "--out", "{tmp}/o"],
    ["finite-size-study", "--out", "/proc/no/such/folder"],
    ["finite-size-study", "--out", "{tmp}/o", "--D", "1,2"],
    ["finite-size-study", "--out", "{tmp}/o", "--executor", "serial", "--scheduler", "tcp://h:1"],
])
def test_bad_input_exits_2_before_any_work(argv, tmp_path, monkeypatch):
    monkeypatch.setattr(fss, "run_validation", lambda *a, **k: pytest.fail("work started"))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == exit_codes.BAD_INPUT


@pytest.fixture
def faked_validation(monkeypatch) -> dict:
    """The study's validation, plot and text faked: returns the dict that receives ``run_validation``'s
    arguments (``params`` and the keywords)."""
    table = pd.DataFrame({"observable": ["Q", "Q"], "D": [200, 400], "gap": [0.01, 0.005], "sem": [0.002, 0.002],
                          "theory_sem": [0.0, 0.0], "verdict": ["agree", "agree"]})
    seen: dict = {}

    def fake_validation(params, **kw):
        seen.update(kw, params=params)
        return ValidationRun(validation=Validation(table=table, verdict="agree"), converged=True)

    monkeypatch.setattr(fss, "run_validation", fake_validation)
    monkeypatch.setattr(fss, "plot_validation", lambda v, path: open(path, "w").close())
    monkeypatch.setattr(fss, "format_table", lambda v: "table")
    return seen


def test_a_study_writes_its_table_plot_and_text(tmp_path, faked_validation):
    fss.run_study("softmax_finetune", Ds=(200, 400, 800), seeds=8, out=tmp_path / "out")
    seen = faked_validation
    assert seen["pretrain_from"] == "simulation" and seen["criterion"] == "extrapolated"
    assert seen["params"].alpha_prime == 10.0
    for suffix in ("csv", "png", "txt"):
        assert (tmp_path / "out" / f"softmax_finetune.{suffix}").exists()


def test_the_pretraining_study_pins_the_theory_with_more_replicas(tmp_path, faked_validation):
    """The softmax pre-training gap in question (~0.01 in Q) needs the theory's Q to ±0.0003, not the 4-replica
    default of validate (README, *The large-D study*)."""
    fss.run_study("softmax_pretrain", Ds=(200, 400, 800), seeds=8, out=tmp_path / "out")
    assert faked_validation["replicas"] == fss.PINNED_REPLICAS >= 16
