"""The theory-vs-simulation comparison: the table (z, p, the 1/D extrapolation), the verdict and its report."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from model.params import ParameterError
from validation.compare import (AtSize, check_plot_path, compare, compare_paired, format_table, paired_points,
                                plot_validation)
from validation.verdict import detectable_shift


@dataclass
class FakeSim:
    D: int
    seeds: int
    observables: dict
    sem: dict


def _sims(gap_fn, sem=0.01, seeds=8, Ds=(100, 200, 400)):
    return [FakeSim(D, seeds, {"E": 1.0 + gap_fn(D)}, {"E": sem}) for D in Ds]


def test_a_gap_that_vanishes_like_one_over_D_extrapolates_to_zero():
    v = compare({"E": 1.0}, _sims(lambda D: 2.0 / D), criterion="extrapolated")
    assert v.table["gap_inf"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert list(v.table["z"]) == pytest.approx([2.0, 1.0, 0.5])
    assert v.table["p"].iloc[0] == pytest.approx(0.0856, abs=1e-3)  # Student-t, 7 degrees of freedom
    assert v.verdict == "agree" and v.ok and v.table["tested"].iloc[0] == "D=inf"


def test_a_constant_gap_disagrees_at_the_largest_D():
    v = compare({"E": 1.0}, _sims(lambda D: 0.05))
    assert v.verdict == "disagree" and v.disagree == ("E",)
    assert v.table["gap_inf"].iloc[0] == pytest.approx(0.05)
    assert "verdict: DISAGREE: E" in format_table(v)


def test_the_verdict_table_has_p_values_holm_mdg_and_the_verdict():
    v = compare({"E": 1.0, "F": 2.0}, [FakeSim(100, 8, {"E": 1.0, "F": 2.0}, {"E": 0.005, "F": 0.005})])
    for column in ("z", "p", "dof", "p_holm", "mdg", "tolerance", "verdict", "seeds_needed", "gap_inf_dof", "chi2"):
        assert column in v.table
    row = v.tests.set_index("observable").loc["E"]
    assert row.mdg == pytest.approx(detectable_shift(7, 0.01 / 2, 0.8) * 0.005)
    assert row.tolerance == pytest.approx(0.05) and row.verdict == "agree"
    text = format_table(v)
    assert "p_holm" in text and "mdg" in text and text.splitlines()[-1].startswith("verdict: AGREE")


def test_two_seeds_never_disagree():
    v = compare({"E": 1.0}, _sims(lambda D: 0.5, seeds=2))
    assert v.verdict == "inconclusive" and v.disagree == ()
    assert "fewer than 3" in format_table(v)


def test_a_run_too_small_to_see_the_tolerance_is_inconclusive_and_says_how_many_seeds_would_do():
    v = compare({"E": 1.0}, _sims(lambda D: 0.0, sem=0.02, seeds=4))
    assert v.verdict == "inconclusive" and v.inconclusive == ("E",)
    need = v.tests["seeds_needed"].iloc[0]
    assert need > 4
    assert compare({"E": 1.0}, _sims(lambda D: 0.0, sem=0.02 * math.sqrt(4 / need), seeds=int(need))).verdict == "agree"
    assert "seeds would settle it" in format_table(v)


def test_the_extrapolation_through_two_sizes_gives_no_verdict():
    v = compare({"E": 1.0}, _sims(lambda D: 2.0 / D, Ds=(100, 200)), criterion="extrapolated")
    assert v.verdict == "inconclusive" and any("no residual" in r for r in v.reasons)
    # the gap at the largest D needs no fit: z = 1 there
    assert compare({"E": 1.0}, _sims(lambda D: 2.0 / D, Ds=(100, 200))).verdict == "agree"


def test_missing_error_bars_never_count_as_agreement():
    v = compare({"E": 1.0}, [FakeSim(100, 1, {"E": 1.0}, {"E": float("nan")})])
    assert v.verdict == "inconclusive" and math.isnan(v.table["z"].iloc[0])


def test_only_shared_observables_are_compared():
    v = compare({"E": 1.0, "X": 2.0}, _sims(lambda D: 0.0))
    assert set(v.table["observable"]) == {"E"}
    assert np.all(np.isfinite(v.table["gap_inf_err"]))


def test_bad_settings_are_refused():
    for kw, match in [({"level": 0.0}, "level"), ({"level": float("nan")}, "level"), ({"tolerance": -1}, "tolerance"),
                      ({"criterion": "median"}, "criterion"), ({"extrapolation": "log"}, "extrapolation")]:
        with pytest.raises(ParameterError, match=match):
            compare({"E": 1.0}, _sims(lambda D: 0.0), **kw)


def test_the_theorys_exact_Q0_at_D():
    from model.params import Params
    v = compare({"Q0": 2.0}, [FakeSim(100, 8, {"Q0": 2.0 + 1 / 100}, {"Q0": 0.02})],
                at_size=AtSize.for_params(Params(kappa0=1.0)))
    row = v.table.iloc[0]
    assert row.theory == pytest.approx(2.01) and row.theory_inf == 2.0 and row.gap == pytest.approx(0.0)


def test_paired_gaps_cancel_the_seed_spread_of_the_inputs():
    """Theory fed each seed's inputs: a spread that theory and simulation share drops out of the gap's error."""
    rng = np.random.default_rng(0)
    per_size = []
    for D in (100, 200, 400):
        inputs = rng.normal(1.0, 0.3, size=8)  # a large seed-to-seed spread of, e.g., the measured Q
        jitter = rng.normal(0.0, 1e-3, size=8)
        th = pd.DataFrame({"E": 2.0 * inputs})
        sim = pd.DataFrame({"E": 2.0 * inputs + 3.0 / D + jitter})
        per_size.append((D, sim, th))
    points = paired_points(per_size, ["E", "absent"], {"E": 1e-4}, theory_dof={"E": 3})
    assert [p.D for p in points] == [100, 200, 400] and all(p.observable == "E" for p in points)
    assert all(p.sem < 1e-3 for p in points)  # the spread of 2·inputs (≈ 0.2 per seed) is gone
    v = compare_paired(points, criterion="extrapolated")
    assert v.ok and abs(v.table["gap_inf"].iloc[0]) < 3e-3
    assert v.table["theory_sem"].iloc[0] == pytest.approx(1e-4)
    assert 3 <= v.table["dof"].iloc[0] <= 10  # Welch–Satterthwaite: between the keys' 3 and 3 + 7
    assert compare_paired(points).disagree == ("E",)  # 3/D is many standard errors at D = 400


def test_plot_path_is_checked_and_written(tmp_path):
    with pytest.raises(ParameterError, match="--plot"):
        check_plot_path(tmp_path / "v.txt")
    with pytest.raises(ParameterError, match="does not exist"):
        check_plot_path(tmp_path / "missing" / "v.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ParameterError, match="folder"):
        check_plot_path(tmp_path / "d.png")
    path = check_plot_path(tmp_path / "v.pdf")
    plot_validation(compare({"E": 1.0}, _sims(lambda D: 2.0 / D)), str(path))
    assert path.stat().st_size > 1000
