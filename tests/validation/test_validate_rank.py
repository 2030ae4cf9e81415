"""``lora-attn validate`` at rank ``r`` (MODEL.md §8): it compares the rank-``r`` observables (``tr_q, o_U, cos_k,
E_ft, …``), linear test errors carried to ``D`` by the output-Gram factor as at rank one, and the theory fed each
seed's measured pre-training takes the teacher's scale from ``Tr q0 / r*``.

The theory and the simulations are stubbed (``theory.solve``, ``simulate.run``)."""

from dataclasses import dataclass, field

import pandas as pd
import pytest

import simulate
import theory
from lora_attn import exit_codes
from lora_attn.cli import main
from model.observables import rank_fed_names, rank_observable_names
from model.params import Params
from theory import TheoryPoint
from theory.finite_size import linear_test_error_at
from validation.compare import AtSize, finetune_names
from validation.workflow import measured_q0


@dataclass
class _FakeSim:
    D: int
    seeds: int
    observables: dict
    sem: dict = field(default_factory=dict)
    per_seed: pd.DataFrame | None = None


@pytest.mark.parametrize("r, s", [(1, 2), (2, 1), (2, 2), (3, 2)])
def test_finetune_names_at_rank_r_are_the_rank_r_fine_tuning_observables(r, s):
    names = finetune_names(Params(rank=r, teacher_rank=s))
    assert names == rank_fed_names(r, s)
    assert {"tr_q", "o_U", "E_ft", "L_ft", "E_frozen", "delta_eff"} <= set(names)
    assert {f"cos_{i + 1}" for i in range(min(r, s))} <= set(names) and "tr_q0" not in names
    assert set(names) <= set(rank_observable_names(r, s))


def test_rank_one_names_are_unchanged():
    assert "o_w" in finetune_names(Params()) and "o_U" not in finetune_names(Params())


def test_validate_at_rank_two_compares_the_rank_observables(monkeypatch, capsys):
    names = rank_observable_names(2, 2)
    values = {n: 1.0 + i for i, n in enumerate(names)}
    p = Params(sigma="linear", rank=2, teacher_rank=2)

    def fake_solve(params, **kw):
        assert params.rank == 2 and params.teacher_rank == 2
        return TheoryPoint(params=params, stage="both", observables=dict(values), converged=True)

    def fake_run(params, D, seeds, **kw):
        # the simulation sits exactly on the theory at D (E[Q0] at D, the output-Gram factor of linear test errors)
        obs = {k: AtSize.for_params(p).value(k, v, D) for k, v in values.items()}
        assert obs["E_ft"] == pytest.approx(linear_test_error_at(values["E_ft"], T=p.T, D=D, delta=p.delta))
        return _FakeSim(D, seeds, obs, {k: 0.001 for k in obs})

    monkeypatch.setattr(theory, "solve", fake_solve)
    monkeypatch.setattr(simulate, "run", fake_run)
    rc = main(["validate", "--sigma", "linear", "--rank", "2", "--teacher-rank", "2", "--D", "20,40", "--seeds", "6"])
    text = capsys.readouterr().out
    assert rc == exit_codes.OK, text
    compared = {line.split()[0] for line in text.splitlines() if line.split() and line.split()[0] in names}
    assert set(rank_fed_names(2, 2)) <= compared and {"o_w", "q", "m"}.isdisjoint(compared)


def test_the_measured_teacher_scale_is_tr_q0_over_r_star():
    rows = pd.DataFrame({"tr_q0": [2.2, 1.8]})
    assert list(measured_q0(Params(rank=2, teacher_rank=2), rows)) == pytest.approx([1.1, 0.9])
    assert list(measured_q0(Params(), pd.DataFrame({"q0": [1.05]}))) == [1.05]
