"""Parameter validation: every bad value raises one clear error naming the parameter."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.params import PRETRAIN_FIELDS, ParameterError, Params, pretrain_key

BAD = [
    ("T", 0), ("T", 2.5), ("T", True), ("sigma", "relu"), ("beta", 0.0), ("kappa0", -1.0), ("kappa", 0.0),
    ("alpha", -0.1), ("alpha", math.nan), ("alpha_prime", 0.0), ("lam", -1e-3), ("lam_prime", -1.0),
    ("delta", -0.5), ("reuse", 1.5), ("reuse", -0.1), ("recalibrate", 0.0), ("recalibrate", "best"),
    ("active_rho", 0.0), ("active_rho", 1.2), ("pool_ratio", 0.0), ("alpha", "0.1"),
]


@pytest.mark.parametrize("name, value", BAD)
def test_bad_value_raises_naming_the_parameter(name, value):
    with pytest.raises(ParameterError) as err:
        Params(**{name: value})
    assert str(err.value).startswith(name)
    assert "allowed" in str(err.value)


def test_reuse_and_active_selection_exclude_each_other():
    with pytest.raises(ParameterError, match="reuse"):
        Params(reuse=0.5, active_rho=0.1)


def test_defaults_are_figure_one():
    p = Params()
    assert (p.T, p.sigma, p.kappa0, p.kappa, p.alpha, p.alpha_prime, p.delta, p.reuse) == (
        3, "softmax", 1.0, 1.0, 0.1, 3.0, 0.5, 0.0)


def test_positional_construction_is_refused():
    with pytest.raises(TypeError):
        Params(3)  # keyword-only


@given(
    T=st.integers(1, 8),
    alpha=st.floats(1e-4, 10),
    lam=st.floats(0, 10),
    reuse=st.floats(0, 1),
    rho=st.one_of(st.none(), st.floats(1e-3, 1)),
)
def test_valid_values_construct_and_round_trip(T, alpha, lam, reuse, rho):
    reuse = 0.0 if rho is not None else reuse
    p = Params(T=T, alpha=alpha, lam=lam, reuse=reuse, active_rho=rho)
    assert Params(**p.to_dict()) == p
    expected = rho * p.pool_ratio if rho is not None else p.alpha_prime
    assert p.effective_alpha_prime == pytest.approx(expected)


def test_lam_prime_infinity_is_allowed():
    assert math.isinf(Params(lam_prime=math.inf).lam_prime)


def test_pretrain_key_ignores_every_finetuning_parameter():
    base = Params()
    changed = base.replace(alpha_prime=7.0, lam_prime=2.0, recalibrate="optimal", active_rho=0.1)
    assert pretrain_key(changed) == pretrain_key(base)
    assert pretrain_key(base.replace(lam=0.3)) != pretrain_key(base)
    assert set(PRETRAIN_FIELDS) <= set(base.to_dict())


def test_numpy_scalars_are_taken_as_python_numbers():
    p = Params(T=np.int64(3), alpha=np.float32(0.1), beta=np.float64(2.0), recalibrate=np.float64(0.5),
               sigma=np.str_("linear"), active_rho=np.float16(0.5))
    assert p == Params(T=3, alpha=float(np.float32(0.1)), beta=2.0, recalibrate=0.5, sigma="linear", active_rho=0.5)
    assert type(p.T) is int and all(type(getattr(p, n)) is float for n in ("alpha", "beta", "recalibrate"))
    for name, value in (("T", np.bool_(True)), ("alpha", np.bool_(True)), ("T", np.float64(3.0)),
                        ("alpha", np.float64("nan")), ("alpha", 10**400), ("T", np.int64(0))):
        with pytest.raises(ParameterError, match=name):
            Params(**{name: value})
