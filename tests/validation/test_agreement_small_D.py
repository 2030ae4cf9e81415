"""Theory against simulation in the default test run: linear σ, T = 2, D = 40, 6 seeds (a minute or two).

The simulations are the ground truth. Compared here: Q, M, Δ_eff, q, m, whose finite-size biases at this size
are at most of the order of the seed-to-seed spread; ``o_w`` (a c/D bias), the training losses and the test
errors (their own O(1/D) terms; L_pre is 6.6 standard errors off at D = 40) are left to ``lora-attn validate``
at larger D. The verdict is the library's (:func:`validation.compare.compare`, as ``lora-attn validate`` runs
it): per observable a Student-t test over the seeds, the family tested together by Holm's method at the level
0.01. Measured (these 6 seeds): gaps Q +0.095 ± 0.031 (p = 0.027 before the correction: the O(1/D) effect of
the token Gram in the training loss, README), M +0.051 ± 0.030, Δ_eff −0.008 ± 0.12, q −0.004 ± 0.061,
m −0.079 ± 0.083; none is rejected (smallest p_holm 0.13). Six seeds cannot see gaps of 5 % here (minimal
detectable gaps 0.22–0.90), so the verdict is *inconclusive*, not *agree*. The same simulations must reject a
wrong theory (the pre-training weight decay 10× too large: Q and M at p_holm ≤ 2e-5), so the test can fail.
"""

import pytest

import simulate
import theory
from model.params import Params
from validation.compare import compare

NAMES = ("Q", "M", "delta_eff", "q", "m")
LEVEL = 0.01
PARAMS = Params(sigma="linear", T=2)


@pytest.fixture(scope="module")
def simulation():
    return simulate.run(PARAMS, 40, 6, progress=False)


def verdict(simulation, prediction):
    return compare(prediction, [simulation], names=NAMES, level=LEVEL)


def test_the_theory_agrees_with_the_simulations_at_small_D(simulation):
    point = theory.solve(PARAMS, bayes=False, n_mc=800)
    assert point.converged
    v = verdict(simulation, point.observables)
    assert v.disagree == () and v.verdict != "disagree", v.tests


def test_a_wrong_theory_is_rejected_by_the_same_simulations(simulation):
    wrong = theory.solve(Params(sigma="linear", T=2, lam=1.0), bayes=False, n_mc=800)
    assert wrong.converged
    v = verdict(simulation, wrong.observables)
    assert v.verdict == "disagree" and {"Q", "M"} <= set(v.disagree), v.tests
