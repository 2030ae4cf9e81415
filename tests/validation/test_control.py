"""The teacher's Q0 as a control variate (validation.control): its exact mean, the estimate, its calibration."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from model.params import Params
from simulate.measure import order_parameters
from validation.compare import GapPoint, compare
from validation.control import CONTROLLED, CV_MIN_SEEDS, controlled_mean, exact_Q0_mean
from validation.verdict import decide

REPS = 2000


def q0_of(W0: np.ndarray) -> float:
    D, P0 = W0.shape
    return float(np.sum((W0.T @ W0) ** 2) / (P0 * D * D))


def test_q0_here_is_the_simulators_q0():
    W0 = np.random.default_rng(0).normal(size=(7, 4))
    assert q0_of(W0) == pytest.approx(order_parameters(W0, W0)["Q0"], rel=1e-12)


@pytest.mark.parametrize("kappa0, D", [(1.0, 6), (0.5, 7), (2.0, 5)])
def test_exact_mean_of_Q0_at_finite_D(kappa0, D):
    """E[Q0] = 1 + P0/D + 1/D with the simulator's P0 = round(κ0 D), against 40 000 teachers (the exact
    fourth moment of Gaussian entries: E Tr((W0 W0ᵀ)²) = D P0 (D + P0 + 1))."""
    P0 = max(1, round(kappa0 * D))
    assert exact_Q0_mean(Params(kappa0=kappa0), D) == pytest.approx(1 + P0 / D + 1 / D)
    rng = np.random.default_rng(D)
    W = rng.normal(size=(40_000, D, P0))
    G = np.einsum("nip,niq->npq", W, W)
    q0 = np.sum(G**2, axis=(1, 2)) / (P0 * D * D)
    assert abs(q0.mean() - exact_Q0_mean(Params(kappa0=kappa0), D)) < 4 * q0.std(ddof=1) / math.sqrt(q0.size)


@given(a=st.floats(-10, 10), beta=st.floats(-5, 5), mu=st.floats(-3, 3), n=st.integers(3, 30))
@settings(deadline=None, max_examples=50)
def test_an_exactly_linear_dependence_is_removed_completely(a, beta, mu, n):
    c = mu + np.random.default_rng(n).normal(size=n)
    cm = controlled_mean(a + beta * (c - mu), c, mu)
    assert cm.mean == pytest.approx(a, abs=1e-9 * (1 + abs(a) + abs(beta)))
    assert cm.sem == pytest.approx(0.0, abs=1e-9 * (1 + abs(a) + abs(beta))) and cm.dof == n - 2


def test_control_variate_needs_three_seeds_and_a_spread():
    assert controlled_mean([1.0, 2.0], [0.0, 1.0], 0.5) is None
    assert controlled_mean([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0.5) is None


def test_control_variate_keeps_the_level_and_reduces_the_variance():
    """Y = E[Y] + β(C − E[C]) + ε with a skewed control (gamma, like a sum of squares), 6 seeds: the
    control-variate test (n − 2 degrees of freedom) keeps its false-alarm rate at the level, and its variance
    is several times smaller than the plain mean's (squared correlation 0.9)."""
    rng = np.random.default_rng(3)
    n, level = 6, 0.05
    alarms, gains = 0, []
    for _ in range(REPS):
        c = rng.gamma(4.0, 0.5, size=n)  # mean 2
        y = 1.0 + 3.0 * (c - 2.0) + 0.5 * rng.normal(size=n)
        cm = controlled_mean(y, c, 2.0)
        point = GapPoint("L_pre", 100, cm.seeds, 1.0, cm.mean, cm.sem, lost=2)
        alarms += decide({"L_pre": point.estimate()}, {"L_pre": math.inf}, level=level).verdict == "disagree"
        gains.append(cm.gain)
    dist = stats.binom(REPS, level)
    assert dist.ppf(0.0005) <= alarms <= dist.ppf(0.9995), alarms
    assert np.median(gains) > 3.0


@dataclass
class _Sim:
    D: int
    seeds: int
    observables: dict
    sem: dict
    per_seed: pd.DataFrame


def _sim(D, rows: pd.DataFrame) -> _Sim:
    n = len(rows)
    return _Sim(D, n, dict(rows.mean()), dict(rows.std(ddof=1) / math.sqrt(n)), rows)


def test_compare_uses_the_control_variate_for_the_listed_observables_only():
    rng = np.random.default_rng(5)
    n = 8
    q0 = 2.0 + 0.3 * rng.normal(size=n)
    rows = pd.DataFrame({"Q0": q0, "Q": 0.3 + 0.5 * (q0 - 2.0) + 1e-3 * rng.normal(size=n),
                         "q": 0.7 + 0.5 * (q0 - 2.0)})
    theory = {"Q0": 2.0, "Q": 0.3, "q": 0.7}
    v = compare(theory, [_sim(100, rows)], control=lambda D: 2.0, tolerance=0.05)
    t = v.table.set_index("observable")
    assert "Q" in CONTROLLED and "q" not in CONTROLLED
    assert t.loc["Q", "cv_gain"] > 100 and t.loc["Q", "dof"] == n - 2
    assert t.loc["Q", "sim"] == pytest.approx(0.3, abs=5e-3)
    assert t.loc["Q", "sim_mean"] == pytest.approx(rows.Q.mean())
    assert math.isnan(t.loc["q", "cv_gain"]) and t.loc["q", "dof"] == n - 1
    plain = compare(theory, [_sim(100, rows)], tolerance=0.05).table.set_index("observable")
    assert math.isnan(plain.loc["Q", "cv_gain"]) and plain.loc["Q", "sem"] > 50 * t.loc["Q", "sem"]
    few = compare(theory, [_sim(100, rows.iloc[:CV_MIN_SEEDS - 1])], control=lambda D: 2.0).table
    assert few["cv_gain"].isna().all()
