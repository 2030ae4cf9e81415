"""A theory that cannot proceed says so: converged = False, NaN observables, the reason; never a traceback and
never its starting guess as a result (theory/api.py, theory/limits.py)."""

import math

import numpy as np
import pytest

import theory
import theory.api as api
from model.jsonsafe import dumps, loads_strict
from model.params import ParameterError, Params

LINEAR = Params(sigma="linear")


def test_a_pretraining_that_does_not_converge_reports_nan_and_no_finetuning():
    # κ0 → 0: the prior's teacher spectrum degenerates and the map leaves its domain (status "nonfinite")
    r = theory.solve(LINEAR.replace(kappa0=1e-12), stage="both", bayes="pretrain", n_mc=200)
    assert not r.converged
    o = r.observables
    assert all(math.isnan(o[k]) for k in ("Q", "M", "V", "E_pre", "L_pre", "q", "m", "E_ft", "E_frozen"))
    assert o["Q0"] == pytest.approx(1.0)  # an input, echoed
    assert "did not converge" in r.diagnostics["finetune"]["status"]
    text = dumps(r.to_json_dict())
    assert loads_strict(text)["observables"]["Q"] is None


def test_a_solver_failure_is_reported_not_raised(monkeypatch):
    def broken(*a, **k):
        raise ValueError("sigma_hat = -0.287 is out of range")

    monkeypatch.setattr(api, "solve_pretrain", broken)
    r = theory.solve(LINEAR, stage="pretrain", bayes=False)
    assert not r.converged and all(math.isnan(v) for v in r.observables.values())
    assert r.diagnostics["pretrain"]["status"] == "failed"
    assert "sigma_hat = -0.287" in r.diagnostics["pretrain"]["reason"]


def test_bad_input_is_still_refused(monkeypatch):
    def refuse(*a, **k):
        raise ParameterError("n_mc = 1 is out of range")

    monkeypatch.setattr(api, "solve_pretrain", refuse)
    with pytest.raises(ParameterError):
        theory.solve(LINEAR, stage="pretrain", bayes=False)


@pytest.mark.parametrize("alpha", [1e13, 1e100, 1e308])
def test_alpha_beyond_the_theory_s_range_is_refused_up_front(alpha):
    with pytest.raises(ParameterError, match="alpha"):
        theory.solve(LINEAR.replace(alpha=alpha), stage="pretrain")


def test_the_largest_alpha_accepted_is_solved():
    r = theory.solve(LINEAR.replace(alpha=1e12), stage="pretrain", bayes=False)
    assert r.converged and r.observables["Q"] == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("sigma, T", [("linear", 10**6), ("softmax", 50)])
def test_T_beyond_the_theory_s_range_is_refused_naming_it(sigma, T):
    with pytest.raises(ParameterError, match="T = .*allowed"):
        theory.check(Params(sigma=sigma, T=T))


def test_numpy_numbers_are_accepted():
    a = theory.solve(LINEAR, stage="pretrain", bayes=False, n_mc=np.int64(200), max_steps=np.int32(50),
                     q0=np.float32(1.0))
    b = theory.solve(LINEAR, stage="pretrain", bayes=False, n_mc=200, max_steps=50)
    assert a.converged and a.observables == b.observables
    with pytest.raises(ParameterError, match="n_mc"):
        theory.solve(LINEAR, n_mc=np.float64(200.0))
