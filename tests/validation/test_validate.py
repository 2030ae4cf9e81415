"""The theory-vs-simulation comparison: z-scores, the 1/D extrapolation, the verdict."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from validation.compare import compare, compare_paired, format_table, paired_points


@dataclass
class FakeSim:
    D: int
    seeds: int
    observables: dict
    sem: dict


def _sims(gap_fn, sem=0.01):
    return [FakeSim(D, 4, {"E": 1.0 + gap_fn(D)}, {"E": sem}) for D in (100, 200, 400)]


def test_a_gap_that_vanishes_like_one_over_D_extrapolates_to_zero_and_agrees():
    v = compare({"E": 1.0}, _sims(lambda D: 2.0 / D))
    assert v.ok
    assert v.table["gap_inf"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert list(v.table["z"]) == pytest.approx([2.0, 1.0, 0.5])


def test_a_constant_gap_is_flagged_at_the_largest_D():
    v = compare({"E": 1.0}, _sims(lambda D: 0.05))
    assert v.disagree == ("E",)
    assert v.table["gap_inf"].iloc[0] == pytest.approx(0.05)
    assert "DISAGREE" in format_table(v)


def test_missing_error_bars_never_count_as_agreement():
    v = compare({"E": 1.0}, [FakeSim(100, 1, {"E": 1.0}, {"E": float("nan")})])
    assert v.disagree == ("E",) and math.isnan(v.table["z"].iloc[0])


def test_only_shared_observables_are_compared():
    v = compare({"E": 1.0, "X": 2.0}, _sims(lambda D: 0.0))
    assert set(v.table["observable"]) == {"E"}
    assert np.all(np.isfinite(v.table["gap_inf_err"]))


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
    points = paired_points(per_size, ["E", "absent"], {"E": 1e-4})
    assert [p.D for p in points] == [100, 200, 400] and all(p.observable == "E" for p in points)
    assert all(p.sem < 1e-3 for p in points)  # the spread of 2·inputs (≈ 0.2 per seed) is gone
    v = compare_paired(points, criterion="extrapolated")
    assert v.ok and abs(v.table["gap_inf"].iloc[0]) < 3e-3
    assert v.table["theory_sem"].iloc[0] == pytest.approx(1e-4)
    assert compare_paired(points).disagree == ("E",)  # 3/D is many standard errors at D = 400
