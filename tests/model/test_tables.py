"""Sweep specification, grids, tidy tables and resuming."""

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.params import ParameterError, Params
from model.tables import atomic_write, grid, parse_vary, run_sweep


def test_parse_lists_and_ranges():
    assert parse_vary("lam_prime=0.1,1,inf") == ("lam_prime", [0.1, 1.0, float("inf")])
    assert parse_vary("alpha-prime=1:3:3") == ("alpha_prime", [1.0, 2.0, 3.0])
    name, vals = parse_vary("alpha=log:0.01:1:3")
    assert name == "alpha" and vals == pytest.approx([0.01, 0.1, 1.0])
    assert parse_vary("T=2,3") == ("T", [2, 3])
    assert parse_vary("recalibrate=optimal,0.5,none") == ("recalibrate", ["optimal", 0.5, None])
    assert parse_vary("sigma=linear,softmax") == ("sigma", ["linear", "softmax"])


@pytest.mark.parametrize("spec", ["lam", "nope=1", "lam=1:2", "lam=a,b", "alpha=log:0:1:3", "lam=0:1:0", "T=x"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ParameterError):
        parse_vary(spec)


@given(st.lists(st.floats(0.01, 5), min_size=1, max_size=4), st.lists(st.sampled_from([1, 2, 3, 4]), min_size=1,
                                                                       max_size=3, unique=True))
def test_grid_is_the_cartesian_product(lams, Ts):
    pts = grid(Params(), [("lam", lams), ("T", Ts)])
    assert len(pts) == len(lams) * len(Ts)
    assert [(p.lam, p.T) for p in pts] == [(a, b) for a in lams for b in Ts]


def test_grid_validates_every_point_first():
    with pytest.raises(ParameterError, match="alpha"):
        grid(Params(), [("alpha", [0.1, -1.0])])


def test_sweep_is_tidy_warm_started_and_resumes(tmp_path):
    calls = []

    def point(p, warm):
        calls.append((p.lam, warm))
        return {"E_pre": p.lam**2, "converged": True}, p.lam

    out = tmp_path / "s.csv"
    pts = grid(Params(), [("lam", [0.1, 0.2, 0.3])])
    table = run_sweep(pts[:2], point, out=out, progress=False, extra_columns={"D": 50})
    assert calls == [(0.1, None), (0.2, 0.1)]
    assert list(table["lam"]) == [0.1, 0.2] and set(table.columns) >= {"T", "sigma", "D", "E_pre", "converged"}
    table = run_sweep(pts, point, out=out, progress=False, extra_columns={"D": 50})
    assert [c[0] for c in calls] == [0.1, 0.2, 0.3]  # only the missing point was computed
    assert list(pd.read_csv(out)["E_pre"]) == pytest.approx([0.01, 0.04, 0.09])
    # another D is another sweep: its table is refused (its rows would be lost), unless overwrite
    with pytest.raises(ParameterError, match="another sweep"):
        run_sweep(pts[:1], point, out=out, progress=False, extra_columns={"D": 60})
    assert len(calls) == 3 and len(pd.read_csv(out)) == 3
    run_sweep(pts[:1], point, out=out, progress=False, extra_columns={"D": 60}, overwrite=True)
    assert calls[-1][0] == 0.1 and list(pd.read_csv(out)["D"]) == [60]


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "t.csv"
    atomic_write(target, lambda tmp: open(tmp, "w").write("a,b\n1,2\n"))
    assert target.read_text() == "a,b\n1,2\n"

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "a,b\n1,2\n" and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
