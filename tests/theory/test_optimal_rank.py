"""theory.optimal_rank: the rank of lowest E_ft (MODEL.md §8), its table and notes, the discrete branch of
theory.optimize and ``lora-attn optimize --over rank``. The theory is stubbed (``theory.solve``)."""

import math

import pytest

import theory
from lora_attn import exit_codes
from lora_attn.cli import main
from model.params import ParameterError, Params
from theory import TheoryPoint
from theory.optimal_rank import check_ranks, optimal_rank, optimal_rank_curve


def _stub(monkeypatch, e_ft, converged=lambda r: True, frozen=10.0):
    calls = []

    def fake_solve(params, **kw):
        calls.append((params.rank, kw.get("stage"), kw.get("key")))
        r = params.rank
        obs = {"Q0": 1.5, "Q": 1.6, "M": 1.4, "V": 0.3, "E_ft": e_ft(r, params), "E_frozen": frozen,
               "o_U": 0.5, "tr_q": float(r), "L_ft": 0.1}
        return TheoryPoint(params=params, stage=kw.get("stage", "both"), observables=obs, converged=converged(r),
                           diagnostics={"finetune": {"replicon": 0.5, "rs_stable_local": True}})

    monkeypatch.setattr(theory, "solve", fake_solve)
    return calls


@pytest.mark.parametrize("bad", [(), (0, 1), (1, 1), (1.5,), (True,), ("2",)])
def test_bad_ranks_are_refused_before_any_work(bad, monkeypatch):
    _stub(monkeypatch, lambda r, p: pytest.fail("work started"))
    with pytest.raises(ParameterError):
        check_ranks(bad)
    with pytest.raises(ParameterError):
        optimal_rank(Params(teacher_rank=2), bad)


def test_the_lowest_converged_rank_is_chosen_with_common_random_numbers(monkeypatch):
    calls = _stub(monkeypatch, lambda r, p: 1.0 + (r - 2) ** 2)
    c = optimal_rank(Params(teacher_rank=2), (3, 1, 2, 4))
    assert c.rank == 2 and c.minimum == 1.0 and c.margin == 1.0 and c.converged and not c.notes
    assert list(c.table["rank"]) == [1, 2, 3, 4] and list(c.table["value"]) == [2.0, 1.0, 2.0, 5.0]
    assert len({k for _, _, k in calls}) == 1  # one Monte-Carlo key for every rank


def test_unconverged_ranks_are_excluded_and_an_end_minimiser_is_flagged(monkeypatch):
    _stub(monkeypatch, lambda r, p: float(r), converged=lambda r: r != 1)
    c = optimal_rank(Params(teacher_rank=2), (1, 2, 3))
    assert c.rank == 2 and not c.converged and math.isnan(c.table["value"].iloc[0])
    assert any("did not converge" in n for n in c.notes) and any("at the end" in n for n in c.notes)


def test_every_rank_worse_than_no_adaptation_is_said(monkeypatch):
    _stub(monkeypatch, lambda r, p: 20.0 + r, frozen=10.0)
    c = optimal_rank(Params(teacher_rank=2), (1, 2))
    assert c.rank == 1 and c.frozen == 10.0 and any("no adaptation" in n for n in c.notes)


def test_the_curve_against_alpha_prime_solves_the_pretraining_once(monkeypatch):
    calls = _stub(monkeypatch, lambda r, p: abs(r - p.alpha_prime))
    t = optimal_rank_curve(Params(teacher_rank=2), [1.0, 3.0], ranks=(1, 2, 3))
    assert [s for _, s, _ in calls].count("pretrain") == 1
    assert {s for _, s, _ in calls} == {"pretrain", "finetune"}
    assert list(t.groupby("alpha_prime")["best_rank"].first()) == [1, 3]


def test_optimize_over_rank_is_the_discrete_branch(monkeypatch):
    _stub(monkeypatch, lambda r, p: 1.0 + (r - 2) ** 2)
    res = theory.optimize(Params(teacher_rank=2), over="rank", bounds={"rank": (1, 3)})
    assert res.argmin == {"rank": 2} and res.converged and res.unimodal and res.n_evaluations == 3
    assert res.method.startswith("every value") and res.at_bound == ()
    with pytest.raises(ParameterError):
        theory.optimize(Params(teacher_rank=2), over=("rank", "lam_prime"))
    with pytest.raises(ParameterError):
        theory.optimize(Params(teacher_rank=2), over="rank", bounds={"rank": (1.5, 3)})


def test_cli_optimize_over_rank_prints_every_rank(monkeypatch, capsys):
    _stub(monkeypatch, lambda r, p: 1.0 + (r - 3) ** 2)
    rc = main(["optimize", "--teacher-rank", "2", "--over", "rank", "--bounds", "rank=1:4", "--n-mc", "100"])
    text = capsys.readouterr().out
    assert rc == exit_codes.OK
    assert "argmin rank" in text and all(f"rank {r}: E_ft" in text for r in (1, 2, 3, 4))
