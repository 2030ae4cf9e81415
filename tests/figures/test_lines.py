"""figures.lines: the adaptive grid of a dense theory line."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from figures.lines import FAILED, OFF, OK, UNSTABLE, Line, dense_line, point_status, refine

RULES = dict(n_min=30, max_points=60, bend_tol=0.01, max_gap=0.12, min_step=1 / 64)


def _line(**kw) -> Line:
    return Line("x", 0.0, 1.0, log=False, observables=("y",), **kw)


def _run(line, y, status=lambda t: OK):
    return dense_line(line, lambda t: {"y": y(t), "converged": status(t) != FAILED,
                                       "rs_stable": status(t) != UNSTABLE,
                                       "ft_status": "switched_off" if status(t) == OFF else "converged"})


def test_value_and_position_are_inverse_and_log_spaced():
    line = Line("alpha_prime", 0.5, 20.0)
    assert line.value(0.0) == 0.5 and line.value(1.0) == 20.0
    assert line.value(0.5) == pytest.approx(math.sqrt(10.0), rel=1e-6)
    for t in (0.0, 0.3, 1.0):
        assert line.position(line.value(t)) == pytest.approx(t, abs=1e-6)


def test_a_smooth_line_gets_n_min_evenly_spread_points():
    rows = _run(_line(), lambda t: t * t)
    t = np.array([r["_t"] for r in rows])
    assert 30 <= len(t) <= 34 and t[0] == 0.0 and t[-1] == 1.0
    assert np.diff(t).max() <= 1 / 16 + 1e-12


def test_a_kink_is_refined_where_it_is():
    rows = _run(_line(), lambda t: abs(t - 0.37))
    t = np.array([r["_t"] for r in rows])
    near = np.diff(t)[(t[:-1] > 0.3) & (t[1:] < 0.45)]
    assert near.min() <= 1 / 64 + 1e-12  # down to min_step at the kink
    assert np.diff(t)[t[1:] < 0.25].min() >= 1 / 32 - 1e-12  # and not elsewhere


def test_a_status_switch_is_located_to_min_step():
    rows = _run(_line(), lambda t: t, status=lambda t: OFF if t > 0.61 else OK)
    t = np.array([r["_t"] for r in rows])
    s = np.array([point_status(r) for r in rows])
    i = int(np.argmax(s == OFF))
    assert t[i] - t[i - 1] <= 1 / 64 + 1e-12 and t[i - 1] <= 0.61 < t[i]


def test_unresolved_stretches_are_not_refined():
    """Faded (RS-unstable) and non-converged parts keep the first grid (a quarter of the axis) but for the points
    that locate their edges: no time on numbers the theory does not vouch for (where a point can cost minutes)."""
    line = _line()
    rows = _run(line, lambda t: math.sin(6 * t), status=lambda t: UNSTABLE if t < 0.3 else (FAILED if t > 0.8 else OK))
    t = np.array([r["_t"] for r in rows])
    assert set(t[t < 0.25]) == {0.0}
    assert set(t[t > 0.85]) == {0.875, 1.0}
    assert ((t >= 0.3) & (t <= 0.8)).sum() >= 20
    everywhere = _run(line, lambda t: t, status=lambda t: FAILED)
    assert [r["_t"] for r in everywhere] == [0.0, 0.25, 0.5, 0.75, 1.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40, unique=True),
       st.lists(st.floats(-1e3, 1e3) | st.just(math.nan), min_size=40, max_size=40),
       st.lists(st.sampled_from([OK, OK, UNSTABLE, OFF, FAILED]), min_size=40, max_size=40))
def test_refine_returns_new_midpoints_within_the_budget(ts, ys, status):
    t = np.sort(np.array(ts))
    n = len(t)
    new = refine(t, t, [ys[:n]], status[:n], **RULES)
    assert len(new) <= RULES["max_points"] - n
    mids = {0.5 * (a + b) for a, b in zip(t[:-1], t[1:])}
    assert set(new) <= mids and len(set(new)) == len(new) and not set(new) & set(t)
    resolved_wide = any(np.diff(t)[i] > 1e-9 and not (status[i] == status[i + 1] and status[i] != OK)
                        for i in range(n - 1))
    if n < RULES["n_min"] and resolved_wide:
        assert new  # a line short of n_min with a resolved interval is refined


@pytest.mark.parametrize("row, status", [
    ({"converged": False}, FAILED), ({"converged": math.nan}, FAILED), ({"converged": True}, OK),
    ({"converged": True, "ft_status": "switched_off_map"}, OFF), ({"converged": True, "rs_stable": False}, UNSTABLE),
    ({"converged": True, "rs_stable": math.nan}, OK),
])
def test_point_status(row, status):
    assert point_status(row) == status


def test_bad_lines_are_refused():
    with pytest.raises(ValueError, match="lo"):
        Line("alpha", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="n_coarse"):
        Line("alpha", 0.1, 1.0, n_min=10, n_coarse=20)


def test_slow_points_are_not_refined_but_a_change_of_status_is_located_to_a_sixteenth():
    """Left of t = 0.5 every fixed point is slow (many iterations, a wiggly o_w); there the line keeps the first
    grid, but the RS edge at t = 0.3 is still bracketed to 1/16 of the axis. The fast right half is dense."""
    def evaluate(t):
        slow = t < 0.5
        return {"y": math.sin(40 * t) if slow else t, "converged": True, "rs_stable": not (t < 0.3),
                "ft_status": "converged", "n_steps_finetune": 200 if slow else 10}

    rows = dense_line(_line(), evaluate)
    t = np.array([r["_t"] for r in rows])
    left = t[t < 0.5]
    assert len(left) <= 5  # 0, 0.25 and the status bracket, not the 30 points a wiggle would draw
    unstable = t[t < 0.3]
    stable_slow = left[left >= 0.3]
    assert stable_slow.min() - unstable.max() <= 1 / 16 + 1e-12
    assert len(t[t >= 0.5]) >= 9  # resolved and fast: refined as usual


def test_is_slow_reads_the_iterations_and_the_root_fallback():
    from figures.lines import SLOW_STEPS, is_slow

    assert not is_slow({"n_steps_finetune": SLOW_STEPS}) and is_slow({"n_steps_finetune": SLOW_STEPS + 1})
    assert is_slow({"ft_status": "root", "n_steps_finetune": 5}) and not is_slow({})
    assert not is_slow({"n_steps_finetune": float("nan")})
