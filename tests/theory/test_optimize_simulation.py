"""Item 6 of the prescriptions: simulations confirm the theory's λ' optimum and the switch-off (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import simulate
import theory
from model.params import Params


@pytest.mark.slow
def test_simulations_confirm_the_lambda_prime_optimum_and_the_switch_off():
    """Softmax, figure-1 point, D = 60, 6 seeds: paired over seeds (same teacher, Ŵ and test set), E_ft at the
    theory's λ'* is below E_ft at λ'*/3 and 3λ'* (one-sided paired t-test, 5 %), and past λ'_c the simulated
    q vanishes. Measured: +0.0104 ± 0.0034 and +0.0274 ± 0.0058; q = 9e-18 at λ' = 2λ'_c."""
    base = Params()
    best = theory.optimize(base, over="lam_prime", bounds={"lam_prime": (0.01, 5.0)})
    lp = best.argmin["lam_prime"]
    lc = best.point.diagnostics["finetune"]["lam_prime_c"]
    e = {f: np.asarray(simulate.run(base.replace(lam_prime=f * lp), 60, 6).per_seed["E_ft"], float)
         for f in (1 / 3, 1.0, 3.0)}
    for f in (1 / 3, 3.0):
        d = e[f] - e[1.0]
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        assert stats.t.sf(t, len(d) - 1) < 0.05
    off = simulate.run(base.replace(lam_prime=2 * lc), 60, 6)
    assert off.observables["q"] < 1e-6


@pytest.mark.slow
def test_simulations_confirm_the_linear_lambda_prime_optimum_and_the_switch_off():
    """The second held point: linear σ, figure-1 point (λ = 0.1, α = 0.1, α' = 3), D = 60, 6 seeds, paired over
    seeds. The theory's λ'* = 2.23 (E_ft 7.906; 7.918 at λ'*/3, 8.003 at 3λ'*). At D = 60 E_ft carries a
    finite-size offset of about +1.06 (8.96 simulated at λ'*), which the paired differences cancel: each simulated
    difference E_ft(fλ'*) − E_ft(λ'*) agrees with the theory's within 3 standard errors, and at 3λ'* it is
    positive (one-sided paired t-test, 5 %). At λ'*/3 the theory's gap, 0.012, is below what 6 seeds resolve
    (the paired sd is ≈ 0.037: about 40 seeds would be needed), so its sign is not asserted. Past λ'_c the
    simulated q vanishes. Measured: +0.0205 ± 0.0151 (theory +0.0119) and +0.1046 ± 0.0425 (theory +0.0966,
    p = 0.029); q = 1.1e-4 at 1.25 λ'_c and 1e-17 at 2 λ'_c."""
    base = Params(sigma="linear")
    best = theory.optimize(base, over="lam_prime", bounds={"lam_prime": (0.01, 50.0)})
    lp = best.argmin["lam_prime"]
    lc = best.point.diagnostics["finetune"]["lam_prime_c"]
    th = {f: theory.solve(base.replace(lam_prime=f * lp), bayes=False).observables["E_ft"] for f in (1 / 3, 3.0)}
    e = {f: np.asarray(simulate.run(base.replace(lam_prime=f * lp), 60, 6).per_seed["E_ft"], float)
         for f in (1 / 3, 1.0, 3.0)}
    for f in (1 / 3, 3.0):
        d = e[f] - e[1.0]
        se = d.std(ddof=1) / math.sqrt(len(d))
        assert abs(d.mean() - (th[f] - best.minimum)) < 3 * se
    d = e[3.0] - e[1.0]
    assert stats.t.sf(d.mean() / (d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1) < 0.05
    off = simulate.run(base.replace(lam_prime=2 * lc), 60, 6)
    assert off.observables["q"] < 1e-6
