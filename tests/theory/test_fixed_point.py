"""The generic fixed-point driver (theory/fixed_point.py): damping, Anderson mixing, patience, the root fallback."""

import math

import numpy as np
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.fixed_point import (FixedPointError, anderson_approach, fixed_point, phased_fixed_point,
                                root_fallback)


@dataclass(frozen=True)
class Pair:
    a: float
    b: float


def test_converges_on_a_contraction_to_the_fixed_point():
    res = fixed_point(lambda x: Pair(a=math.cos(x.a), b=0.5 * x.b + 1.0), Pair(a=0.0, b=0.0), damping=0.3)
    assert res.converged and res.status == "converged" and res.residual < 1
    assert res.value.a == pytest.approx(0.7390851332151607, rel=1e-7)
    assert res.value.b == pytest.approx(2.0, rel=1e-7)


@given(st.floats(0.0, 0.9))
def test_fixed_point_does_not_depend_on_damping(damping):
    res = fixed_point(lambda x: (math.cos(x[0]),), (1.0,), damping=damping, max_steps=5000)
    assert res.converged
    assert res.value[0] == pytest.approx(0.7390851332151607, rel=1e-6)


def test_non_convergence_is_reported_not_hidden():
    res = fixed_point(lambda x: {"x": -x["x"] + 1.0 + 0.0 * x["x"] ** 2 + 1e-3 * (x["x"] > 0)}, {"x": 3.0},
                      damping=0.0, max_steps=20)
    assert not res.converged and res.status == "max_steps" and res.n_steps == 20
    with pytest.raises(FixedPointError) as err:
        fixed_point(lambda x: (2 * x[0] + 1,), (1.0,), damping=0.0, max_steps=10, throw=True)
    assert err.value.result.status == "max_steps"


def test_nonfinite_step_stops_with_its_own_status():
    res = fixed_point(lambda x: (float("nan"),), (1.0,))
    assert res.status == "nonfinite" and not res.converged


@pytest.mark.parametrize("kw", [{"damping": 1.0}, {"damping": -0.1}, {"max_steps": 0}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        fixed_point(lambda x: x, (1.0,), **kw)


#: How close two solutions of the slow map must agree: a run stopped at ``|step(x) − x| < rtol|x|`` (rtol = 1e-10)
#: lies within about ``rtol|x|/(1 − ρ) = 2e-9`` relative of the fixed point (spectral radius ρ ≈ 0.95); 1e-8 is
#: that bound with a factor 5 of room, far below any error a wrong fixed point would make.
NEAR = 1e-8


def _slow_map(x: Pair) -> Pair:
    # a coupled, slowly contracting map (spectral radius ≈ 0.95): damped iteration needs hundreds of steps
    return Pair(a=0.9 * x.a + 0.05 * math.tanh(x.b) + 0.1, b=0.3 * x.a + 0.6 * x.b + 0.05 * math.sin(x.a))


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_anderson_reaches_the_same_fixed_point_in_fewer_steps(damping):
    plain = fixed_point(_slow_map, Pair(0.0, 0.0), damping=damping, rtol=1e-10, atol=1e-12, max_steps=5000)
    fast = fixed_point(_slow_map, Pair(0.0, 0.0), damping=damping, rtol=1e-10, atol=1e-12, max_steps=5000, anderson=3)
    assert plain.converged and fast.converged
    assert fast.value.a == pytest.approx(plain.value.a, rel=NEAR)
    assert fast.value.b == pytest.approx(plain.value.b, rel=NEAR)
    assert fast.n_steps < plain.n_steps / 5


def test_anderson_memory_is_validated():
    with pytest.raises(ValueError, match="anderson"):
        fixed_point(lambda x: x, (1.0,), anderson=-1)


def test_anderson_falls_back_when_the_extrapolation_leaves_the_domain():
    # √x is undefined (nan) for x < 0; from x = 0.01 the first secant extrapolation lands at x ≈ −0.05
    calls = []

    def step(x):
        calls.append(x[0])
        return (math.sqrt(x[0]) if x[0] >= 0 else float("nan"),)

    fast = fixed_point(step, (0.01,), damping=0.0, rtol=1e-12, atol=1e-14, max_steps=2000, anderson=2)
    assert min(calls) < 0  # the fallback was exercised
    assert fast.converged and fast.value[0] == pytest.approx(1.0, rel=1e-9)


def test_patience_stops_an_iteration_that_makes_no_progress():
    # a rotation by 90° with damping 0 never converges and its residual never shrinks
    rot = lambda x: np.array([-x[1], x[0]])  # noqa: E731
    r = fixed_point(rot, np.array([1.0, 0.0]), damping=0.0, max_steps=1000, patience=20)
    assert r.status == "stalled" and not r.converged and r.n_steps == 21
    # a slow but steady contraction is not stopped
    slow = fixed_point(lambda x: 0.95 * x, np.array([1.0]), damping=0.0, atol=1e-6, rtol=0.0, patience=20)
    assert slow.converged


def test_patience_is_validated():
    with pytest.raises(ValueError, match="patience"):
        fixed_point(lambda x: x, np.array([1.0]), patience=0)


def test_anderson_approach_stays_in_the_projection_and_nears_the_fixed_point():
    # the fixed point of the slow map, approached within the projection onto b ≤ 1.2 (it lies inside)
    ref = fixed_point(_slow_map, Pair(0.0, 0.0), damping=0.0, rtol=1e-12, atol=1e-14, max_steps=5000).value
    seen = []

    def project(x: Pair) -> Pair:
        return Pair(a=x.a, b=min(x.b, 1.2))

    def step(x: Pair) -> Pair:
        seen.append(x.b)
        return _slow_map(x)

    x = anderson_approach(step, Pair(0.0, 0.0), project=project, tol=1e-10, max_iter=200)
    assert max(seen) <= 1.2
    assert (x.a, x.b) == pytest.approx((ref.a, ref.b), rel=NEAR)


def test_anderson_approach_stops_where_the_map_fails():
    def step(x):
        if x[0] > 0.5:
            raise ValueError("outside the map's domain")
        return (x[0] + 0.2,)

    assert anderson_approach(step, (0.0,), max_iter=50)[0] > 0.5


def test_root_fallback_accepts_a_root_by_its_newton_correction_and_rejects_a_map_without_one():
    root = np.array([1.0, -0.5])

    def residual(x):
        return (-28.0 * (x - root), "output") if np.all(np.isfinite(x)) else (None, None)

    ok, info = root_fallback(residual, [np.array([0.9, 0.0])], atol=1e-12)
    assert ok and info["out"] == "output" and info["newton_correction"] < 1
    np.testing.assert_allclose(info["point"], root, rtol=1e-10)
    ok, info = root_fallback(lambda x: (np.ones_like(x), None), [np.zeros(2), np.ones(2)], atol=1e-12)
    assert not ok and info["n_evals"] > 2  # both starts were tried, their evaluations counted together


def test_phased_fixed_point_falls_back_from_anderson_to_damping_to_the_root():
    verdicts = []

    def verify(fp):
        verdicts.append(fp.n_steps)
        return False, "rejected", fp.value

    run = phased_fixed_point(_slow_map, _slow_map, Pair(0.0, 0.0), verify=verify, damping=0.0, rtol=1e-10,
                             atol=1e-12, max_steps=2000, anderson=3, patience=None,
                             residual=lambda x: (np.array(_astuple(_slow_map(Pair(*x)))) - x, "out"),
                             root_starts=lambda: [np.zeros(2)], from_root=lambda x, out: (Pair(*x), out))
    assert len(verdicts) == 2  # the Anderson attempt, then plain damping
    assert run.converged and run.status == "root" and run.fallback == "root"
    ref = fixed_point(_slow_map, Pair(0.0, 0.0), damping=0.0, rtol=1e-12, atol=1e-14, max_steps=5000).value
    point, out = run.payload
    assert out == "out" and (point.a, point.b) == pytest.approx((ref.a, ref.b), rel=NEAR)
    assert run.n_steps == run.cheap.n_steps + run.full.n_steps + run.root["n_evals"]
    accepted = phased_fixed_point(_slow_map, _slow_map, Pair(0.0, 0.0), verify=lambda fp: (True, fp.status, fp.value),
                                  damping=0.0, rtol=1e-10, atol=1e-12, max_steps=2000, anderson=3, patience=None)
    assert accepted.converged and accepted.fallback is False and accepted.root == {}
    assert accepted.full.n_steps <= 2  # the full phase starts from the cheap phase's converged point


def _astuple(x: Pair) -> tuple[float, float]:
    return x.a, x.b
