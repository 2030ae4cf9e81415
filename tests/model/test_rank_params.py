"""The rank fields of Params (MODEL.md §8): validation, the rank-one dictionary unchanged, tables that resume."""

import math

import pytest

from lora_attn.cli import build_parser, params_from_args
from model.observables import OBSERVABLES, observable_names, rank_observable_names
from model.params import OMITTED_AT_DEFAULT, PRETRAIN_FIELDS, ParameterError, Params, pretrain_key
from model.tables import run_sweep


@pytest.mark.parametrize("name", ["rank", "teacher_rank"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True, "2"])
def test_bad_rank_raises_naming_the_parameter(name, value):
    with pytest.raises(ParameterError) as err:
        Params(**{name: value})
    assert str(err.value).startswith(name) and "allowed" in str(err.value)


def test_rank_one_dictionary_is_the_one_before_ranks():
    d = Params().to_dict()
    assert not set(OMITTED_AT_DEFAULT) & set(d)
    assert Params(**d) == Params() and Params().rank_one


@pytest.mark.parametrize("r, rs", [(2, 1), (1, 3), (4, 2)])
def test_ranks_above_one_appear_and_round_trip(r, rs):
    p = Params(rank=r, teacher_rank=rs)
    d = p.to_dict()
    assert {k: d[k] for k in ("rank", "teacher_rank") if k in d} == {k: v for k, v in
                                                                      (("rank", r), ("teacher_rank", rs)) if v != 1}
    assert Params(**d) == p and not p.rank_one


def test_ranks_are_finetuning_parameters():
    assert not {"rank", "teacher_rank"} & set(PRETRAIN_FIELDS)
    assert pretrain_key(Params(rank=3, teacher_rank=2)) == pretrain_key(Params())


def test_cli_generates_rank_flags():
    args = build_parser().parse_args(["theory", "--rank", "2", "--teacher-rank", "3"])
    p = params_from_args(args)
    assert (p.rank, p.teacher_rank) == (2, 3)


def test_observable_names_rank_one_and_rank_r():
    assert observable_names(1, 1) == OBSERVABLES
    names = rank_observable_names(3, 2)
    assert {"q", "m", "o_w", "q0"}.isdisjoint(names)
    assert names[names.index("o_U") + 1:names.index("E_ft")] == ("cos_1", "cos_2")
    assert observable_names(1, 2) == rank_observable_names(1, 2)


def test_a_mixed_rank_table_resumes(tmp_path):
    out = tmp_path / "t.csv"
    points = [Params(rank=1), Params(rank=2), Params(rank=2, teacher_rank=3)]
    calls = []

    def point(p, warm):
        calls.append(p)
        return {"E_ft": float(p.rank)}, None

    first = run_sweep(points, point, out=out, progress=False)
    assert len(calls) == 3 and math.isnan(first["rank"].iloc[0])
    second = run_sweep(points, point, out=out, progress=False)
    assert len(calls) == 3  # every point, rank one included, found in the table
    assert list(second["E_ft"]) == [1.0, 2.0, 2.0]
