"""The generic damped fixed-point driver."""

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.fixed_point import FixedPointError, fixed_point


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
