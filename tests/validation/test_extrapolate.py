"""The gap extrapolated to D = ∞ (validation.extrapolate): exact fits, honest errors, no verdict without residual."""

import math

import numpy as np
import pytest
from scipy import stats

from model.params import ParameterError
from validation.extrapolate import extrapolate
from validation.verdict import decide

DS = np.array([100.0, 200.0, 400.0])


@pytest.mark.parametrize("form, x", [("inv_D", 1 / DS), ("inv_sqrt_D", 1 / np.sqrt(DS))])
def test_an_exact_line_is_recovered(form, x):
    f = extrapolate(DS, 0.02 + 3.0 * x, [0.01] * 3, [5] * 3, form=form)
    assert f.a == pytest.approx(0.02, abs=1e-12) and f.b == pytest.approx(3.0)
    assert f.chi2 == pytest.approx(0.0, abs=1e-12) and f.chi2_dof == 1 and f.checked and f.scale == 1.0


def test_two_sizes_have_no_residual_to_check():
    f = extrapolate(DS[:2], [0.03, 0.01], [0.01, 0.01], [5, 5])
    assert not f.checked and math.isnan(f.chi2) and math.isfinite(f.a)
    assert math.isnan(extrapolate(DS[:1], [0.03], [0.01], [5]).a)


def test_intercept_error_and_degrees_of_freedom():
    """Two sizes, equal errors s: a = 2 g_2 − g_1 (D = 100, 200), Var a = 5 s², and with equal degrees of
    freedom ν per size the Welch–Satterthwaite count is (5 s²)²/(17 s⁴/ν) = 25ν/17."""
    f = extrapolate(DS[:2], [0.03, 0.01], [0.01, 0.01], [5, 5])
    assert f.a == pytest.approx(-0.01) and f.a_err == pytest.approx(math.sqrt(5) * 0.01)
    assert f.sim_dof == pytest.approx(25 * 5 / 17)


def test_the_theorys_common_error_enters_the_intercept_once():
    """One theory solve carried to each D by 1 + c/D: at the intercept of a + b/D its error is exactly τ."""
    tau = 0.004 * (1 + 5.5 / DS)
    f = extrapolate(DS, [0.0, 0.0, 0.0], [0.01] * 3, [5] * 3, tau)
    assert f.theory_var == pytest.approx(0.004**2, rel=1e-12)


def test_scatter_beyond_the_errors_widens_the_intercept_error_and_caps_its_dof():
    Ds = np.array([50.0, 100.0, 200.0, 400.0])
    gaps = 0.3 / np.sqrt(Ds)  # not a + b/D
    f = extrapolate(Ds, gaps, [1e-4] * 4, [20] * 4)
    assert f.scale > 1 and f.chi2 / f.chi2_dof == pytest.approx(f.scale)
    est = f.estimate(seeds=21)
    assert est.dof <= f.chi2_dof and est.se == pytest.approx(f.a_err)
    assert extrapolate(Ds, gaps, [1e-4] * 4, [20] * 4, form="inv_sqrt_D").scale == 1.0


def test_unknown_form_is_refused():
    with pytest.raises(ParameterError, match="extrapolation"):
        extrapolate(DS, [0, 0, 0], [1, 1, 1], [5, 5, 5], form="log")


def test_extrapolated_test_keeps_the_level():
    """Gaps b/D exactly (no gap at D = ∞), 6 seeds at each of 3 sizes with different spreads: the intercept's
    test keeps its false-alarm rate (at most the level, within binomial error)."""
    rng = np.random.default_rng(11)
    n, level, reps = 6, 0.05, 2000
    sds = np.array([0.05, 0.03, 0.02])
    alarms = 0
    for _ in range(reps):
        x = 2.0 / DS[:, None] + sds[:, None] * rng.normal(size=(3, n))
        f = extrapolate(DS, x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(n), [n - 1] * 3)
        alarms += decide({"E": f.estimate(n)}, {"E": math.inf}, level=level).verdict == "disagree"
    assert alarms <= stats.binom(reps, level).ppf(0.9995), alarms
