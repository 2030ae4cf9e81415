"""The Bayes-optimal fine-tuning curve parametrised by q: each point is the fixed point the solver finds."""

from __future__ import annotations

import math

import pytest

from model.params import ParameterError, Params
from theory.bayes.finetune import bayes_error_linear, delta_bo, solve_bayes_finetune
from theory.bayes.finetune_curve import curve_point
from theory.states import PretrainState

PRE = PretrainState(Q0=2.0, Q=2.18, M=1.9)
# the sizes of test_bayes_finetune.py: one jit compilation shared
MC = dict(n_outer=512, n_inner=128, n_outer_error=512, n_inner_error=64)


@pytest.mark.parametrize("sigma, q", [("linear", 0.55), ("softmax", 0.8)])
def test_the_solver_at_alpha_prime_of_q_returns_q(sigma, q):
    """``α'(q) = q/((1 − q)G(q))`` is where ``q`` is the fixed point of the map the solver iterates (same keys)."""
    p = Params(T=3, sigma=sigma, delta=0.5)
    c = curve_point(p, PRE, q, **MC)
    assert 0 < c.alpha_prime < math.inf
    r = solve_bayes_finetune(p.replace(alpha_prime=c.alpha_prime), PRE, threshold=False, q_init=0.3, **MC)
    assert r.converged
    assert r.q_BO == pytest.approx(q, abs=1e-5)
    assert c.E_ft_BO == pytest.approx(r.E_ft_BO, rel=1e-4, abs=1e-8)


def test_linear_error_is_the_closed_form_and_alpha_prime_grows_with_q():
    p = Params(T=3, sigma="linear", delta=0.5)
    a, b = curve_point(p, PRE, 0.4, **MC), curve_point(p, PRE, 0.7, **MC)
    assert a.E_ft_BO == bayes_error_linear(0.4, 3, delta_bo(0.5, PRE)) and a.E_ft_BO_se == 0.0
    assert a.alpha_prime < b.alpha_prime and a.E_ft_BO > b.E_ft_BO


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, float("nan"), True])
def test_q_out_of_range_is_refused(q):
    with pytest.raises(ParameterError, match="q = "):
        curve_point(Params(T=3, sigma="linear"), PRE, q, **MC)
