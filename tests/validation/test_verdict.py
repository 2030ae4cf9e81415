"""The statistics of the verdict: p-values, Holm, power, the three-way verdict (validation.verdict).

The calibration tests run synthetic "simulations" with a known mean (no model) through the verdict code many
times: the false-alarm rate must match what the level promises, and a gap of the size the code says it finds
with 80 % power must be found that often, each within an exact binomial interval (99.9 %, so that a correct
code fails one of these tests about once in a thousand runs of a seed; the seeds are fixed).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from model.params import ParameterError
from validation.compare import GapPoint
from validation.verdict import (MIN_SEEDS, GapEstimate, decide, detectable_shift, holm_adjust, minimal_detectable_gap,
                                power_two_sided, seeds_needed, tolerance_for, two_sided_p, welch_satterthwaite)

REPS = 2000
CONFIDENCE = 0.999


def binomial_interval(k_expected_rate: float, reps: int) -> tuple[float, float]:
    """The central interval of a Binomial(reps, rate) count holding ``CONFIDENCE`` of it, as rates."""
    dist = stats.binom(reps, k_expected_rate)
    lo, hi = dist.ppf((1 - CONFIDENCE) / 2), dist.ppf(1 - (1 - CONFIDENCE) / 2)
    return lo / reps, hi / reps


def seed_estimates(rng, *, n: int, sds, gaps):
    """One synthetic run: per observable ``n`` seeds from N(theory + gap, sd²), as the comparison builds them
    (:class:`GapPoint` from the seed mean and its standard error)."""
    out = {}
    for i, (sd, gap) in enumerate(zip(sds, gaps)):
        x = 1.0 + gap + sd * rng.normal(size=n)
        point = GapPoint(f"o{i}", 100, n, 1.0, float(x.mean()), float(x.std(ddof=1) / math.sqrt(n)))
        out[point.observable] = point.estimate()
    return out


# ----------------------------------------------------------------------------------- building blocks
@given(t=st.floats(-1e6, 1e6), dof=st.floats(0.5, 1e9))
def test_p_values_are_probabilities_and_fall_with_abs_t(t, dof):
    p = two_sided_p(t, dof)
    assert 0.0 <= p <= 1.0
    assert two_sided_p(abs(t) + 1.0, dof) <= p + 1e-15
    assert two_sided_p(-t, dof) == p


def test_p_value_is_the_student_t_tail():
    assert two_sided_p(2.0, 3) == pytest.approx(2 * stats.t.sf(2.0, 3), rel=1e-12)
    assert two_sided_p(2.0, math.inf) == pytest.approx(2 * stats.norm.sf(2.0), rel=1e-12)
    assert math.isnan(two_sided_p(math.nan, 3)) and math.isnan(two_sided_p(1.0, math.nan))


@given(st.lists(st.one_of(st.floats(0.0, 1.0), st.just(math.nan)), min_size=1, max_size=20))
def test_holm_adjusted_p_values_are_ordered_bounded_and_never_below_the_raw_ones(p):
    adj = holm_adjust(p)
    p = np.asarray(p)
    finite = ~np.isnan(p)
    assert np.array_equal(np.isnan(adj), ~finite)
    assert np.all((adj[finite] >= p[finite] - 1e-15) & (adj[finite] <= 1.0))
    order = np.argsort(p[finite], kind="stable")
    assert np.all(np.diff(adj[finite][order]) >= -1e-15)  # monotone in the raw p-values
    assert np.all(adj[finite] <= np.minimum(1.0, p.size * p[finite]) + 1e-15)  # never worse than Bonferroni


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12), st.floats(0.0, 1.0), st.integers(0, 11))
def test_holm_is_monotone_in_each_p_value(p, new, i):
    i = i % len(p)
    smaller = list(p)
    smaller[i] = min(p[i], new)
    assert np.all(holm_adjust(smaller) <= holm_adjust(p) + 1e-15)


def test_holm_step_down_on_a_family():
    p = [0.001, 0.011, 0.02, 0.04, 0.5]
    adj = holm_adjust(p)
    assert adj == pytest.approx([0.005, 0.044, 0.06, 0.08, 0.5])
    assert list(adj <= 0.05) == [True, True, False, False, False]
    # a NaN counts in the family and stays unrejected
    assert holm_adjust([0.001, math.nan])[0] == pytest.approx(0.002)


@given(v=st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=5), nu=st.lists(st.floats(1.0, 1e3), min_size=5,
                                                                               max_size=5))
def test_welch_satterthwaite_lies_between_the_smallest_part_and_the_sum(v, nu):
    nu = nu[:len(v)]
    dof = welch_satterthwaite(v, nu)
    assert min(nu) * (1 - 1e-9) <= dof <= sum(nu) * (1 + 1e-9)


def test_welch_satterthwaite_limits():
    assert welch_satterthwaite([2.0, 0.0], [5, 1]) == 5  # one part: its own degrees of freedom
    assert welch_satterthwaite([1.0, 1.0], [5, math.inf]) == pytest.approx(20.0)
    assert welch_satterthwaite([0.0, 1.0], [5, math.inf]) == math.inf
    assert math.isnan(welch_satterthwaite([0.0, 0.0], [5, 5]))


@given(shift=st.floats(0.0, 30.0), dof=st.sampled_from([1, 2, 3, 5, 10, 50, math.inf]),
       alpha=st.sampled_from([0.01, 0.01 / 13, 0.05]))
@settings(deadline=None, max_examples=60)
def test_power_is_a_probability_equal_to_the_level_at_no_gap_and_rising(shift, dof, alpha):
    pw = power_two_sided(shift, dof, alpha)
    assert 0.0 <= pw <= 1.0 + 1e-12
    assert power_two_sided(shift + 0.5, dof, alpha) >= pw - 1e-9
    assert power_two_sided(0.0, dof, alpha) == pytest.approx(alpha, rel=1e-6)


@pytest.mark.parametrize("dof", [1, 2, 4, 9, 30, math.inf])
@pytest.mark.parametrize("alpha", [0.01, 0.01 / 13])
def test_detectable_shift_solves_the_power_equation(dof, alpha):
    s = detectable_shift(dof, alpha, 0.8)
    assert power_two_sided(s, dof, alpha) == pytest.approx(0.8, abs=1e-8)
    assert s > detectable_shift(dof * 2 if math.isfinite(dof) else dof, alpha, 0.8) - 1e-9  # more dof: smaller


def test_detectable_shift_for_a_known_variance_is_z_plus_z():
    """ν = ∞: power 0.8 at level α is reached at z_{1−α/2} + z_{0.8} (the far tail adds almost nothing)."""
    assert detectable_shift(math.inf, 0.01, 0.8) == pytest.approx(stats.norm.isf(0.005) + stats.norm.isf(0.2), abs=1e-4)


def test_an_estimate_without_spread_is_exact():
    assert GapEstimate(0.0, 0.0, 5, 6).p == 1.0 and GapEstimate(1e-9, 0.0, 5, 6).p == 0.0
    assert minimal_detectable_gap(GapEstimate(0.0, 0.0, 5, 6), 0.01) == 0.0
    assert math.isnan(GapEstimate(0.1, math.nan, 0, 1).p)


@given(n=st.integers(3, 200), sd=st.floats(1e-3, 10.0), tau=st.floats(0.0, 1.0))
@settings(deadline=None, max_examples=40)
def test_seeds_needed_is_the_smallest_number_whose_mdg_meets_the_tolerance(n, sd, tau):
    est = GapEstimate(gap=0.0, sim_var=sd**2 / n, sim_dof=n - 1, seeds=n, theory_var=(tau * sd) ** 2, theory_dof=8)
    tol = sd  # one seed-to-seed sd
    need = seeds_needed(est, 0.01, tol)
    if need is None:  # the theory's own error alone is too large
        assert minimal_detectable_gap(est.with_seeds(10**6), 0.01) > tol
        return
    assert minimal_detectable_gap(est.with_seeds(need), 0.01) <= tol
    if need > MIN_SEEDS:
        assert minimal_detectable_gap(est.with_seeds(need - 1), 0.01) > tol


def test_tolerance_is_relative_with_an_absolute_floor():
    assert tolerance_for(2.0, 0.05) == pytest.approx(0.1)
    assert tolerance_for(-2.0, 0.05, 0.3) == pytest.approx(0.3)
    assert tolerance_for(0.0, 0.05) == 0.0


# ----------------------------------------------------------------------------------- the three-way verdict
def test_two_seeds_are_inconclusive_even_with_a_large_gap():
    rng = np.random.default_rng(1)
    est = seed_estimates(rng, n=2, sds=[0.01, 0.01], gaps=[0.0, 5.0])
    v = decide(est, {k: 1.0 for k in est})
    assert v.verdict == "inconclusive"
    assert set(v.table["verdict"]) == {"inconclusive"}
    assert any("fewer than 3" in r for r in v.reasons)


def test_verdicts_agree_disagree_inconclusive():
    rng = np.random.default_rng(2)
    gaps = [0.0, 0.0, 0.0]
    est = seed_estimates(rng, n=12, sds=[0.01, 0.01, 0.01], gaps=gaps)
    assert decide(est, {k: 0.05 for k in est}).verdict == "agree"  # mdg ≈ 0.015 < 0.05
    tight = decide(est, {k: 1e-4 for k in est})
    assert tight.verdict == "inconclusive" and tight.table["seeds_needed"].notna().all()
    est["o1"] = seed_estimates(rng, n=12, sds=[0.01], gaps=[0.1])["o0"]
    v = decide(est, {k: 0.05 for k in est})
    assert v.verdict == "disagree" and v.names("disagree") == ("o1",)
    assert decide(est, {k: 0.05 for k in est}, blocked="no residual").verdict == "inconclusive"


def test_a_missing_error_bar_is_never_agreement():
    est = {"a": GapEstimate(0.0, math.nan, math.nan, 1), "b": GapEstimate(0.0, 1e-6, 9, 10)}
    v = decide(est, {"a": 1.0, "b": 1.0})
    assert v.verdict == "inconclusive" and v.names("inconclusive") == ("a",)


def test_bad_level_is_refused():
    with pytest.raises(ParameterError, match="level"):
        decide({}, {}, level=1.0)


# ----------------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("n, level", [(4, 0.01), (6, 0.05)])
def test_false_alarm_rate_matches_the_level(n, level):
    """Five observables with exactly the theory's mean (different spreads): Holm declares *disagree* iff the
    smallest p is ≤ level/m, which for independent exact p-values happens with probability
    1 − (1 − level/m)^m (just under ``level``)."""
    rng = np.random.default_rng(n)
    sds = [0.01, 0.1, 1.0, 0.03, 3.0]
    m = len(sds)
    alarms = sum(decide(seed_estimates(rng, n=n, sds=sds, gaps=[0.0] * m), {f"o{i}": math.inf for i in range(m)},
                        level=level).verdict == "disagree" for _ in range(REPS))
    lo, hi = binomial_interval(1 - (1 - level / m) ** m, REPS)
    assert lo <= alarms / REPS <= hi, alarms


def test_a_normal_threshold_would_cry_wolf():
    """The same runs judged with a normal instead of Student-t would alarm far beyond the level: the
    calibration test above can fail."""
    rng = np.random.default_rng(4)
    m, n, level = 5, 4, 0.01
    crit = stats.norm.isf(level / m / 2)
    alarms = 0
    for _ in range(REPS):
        est = seed_estimates(rng, n=n, sds=[1.0] * m, gaps=[0.0] * m)
        alarms += any(abs(e.t) > crit for e in est.values())
    assert alarms / REPS > binomial_interval(1 - (1 - level / m) ** m, REPS)[1] * 3


@pytest.mark.parametrize("n, m", [(4, 1), (6, 5)])
def test_a_gap_of_the_minimal_detectable_size_is_found_with_the_stated_power(n, m):
    """A gap equal to the minimal detectable gap the code reports for the true spread is found in 80 % of the
    runs: exactly so for one observable; with Holm over ``m`` (the others without a gap) at least as often,
    and at most by the chance that a null p-value clears the first step."""
    rng = np.random.default_rng(10 * n + m)
    level, sd = 0.01, 0.2
    truth = GapEstimate(gap=0.0, sim_var=sd**2 / n, sim_dof=n - 1, seeds=n)
    gap = minimal_detectable_gap(truth, level / m, 0.8)
    assert decide({f"o{i}": truth for i in range(m)}, {f"o{i}": gap for i in range(m)}).table["mdg"].iloc[0] \
        == pytest.approx(gap)
    found = 0
    for _ in range(REPS):
        est = seed_estimates(rng, n=n, sds=[sd] * m, gaps=[gap] + [0.0] * (m - 1))
        found += "o0" in decide(est, {k: math.inf for k in est}, level=level).names("disagree")
    lo, hi = binomial_interval(0.8, REPS)
    assert lo <= found / REPS <= hi + (level if m > 1 else 0.0), found


def test_a_theory_error_with_few_degrees_of_freedom_keeps_the_level():
    """The theory's own Monte-Carlo error, estimated from 4 keys (3 degrees of freedom) and common to every
    seed, added to a 6-seed mean: the Welch–Satterthwaite test keeps its false-alarm rate at the level."""
    rng = np.random.default_rng(7)
    n, keys, level, sd, tau = 6, 4, 0.05, 1.0, 0.5
    alarms = 0
    for _ in range(REPS):
        x = sd * rng.normal(size=n)
        theory_draws = tau * rng.normal(size=keys)  # the solve used key 0; the spread of 4 keys is its error
        est = GapEstimate(gap=float(x.mean() - theory_draws[0]), sim_var=float(x.var(ddof=1) / n), sim_dof=n - 1,
                          seeds=n, theory_var=float(theory_draws.var(ddof=1)), theory_dof=keys - 1)
        alarms += decide({"o": est}, {"o": math.inf}, level=level).verdict == "disagree"
    lo, hi = binomial_interval(level, REPS)
    assert alarms / REPS <= hi, alarms
