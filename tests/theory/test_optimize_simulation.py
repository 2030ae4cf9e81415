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
    """Linear σ, figure-1 point (λ = 0.1, α = 0.1, α' = 3), D = 60, 6 seeds, paired over
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


def _paired(hi: np.ndarray, lo: np.ndarray, gap: float) -> dict[str, float]:
    """The paired difference ``hi − lo`` over seeds against the theory's ``gap``: mean, standard error, the
    one-sided paired t-test's p-value for ``hi > lo``, and the seeds a one-sided 5 % test needs to see ``gap``
    with 80 % power given the paired sd, ``((z_0.95 + z_0.80)·sd/gap)²``."""
    d = np.asarray(hi, float) - np.asarray(lo, float)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(len(d))
    need = ((stats.norm.ppf(0.95) + stats.norm.ppf(0.80)) * sd / gap) ** 2 if gap > 0 else math.inf
    return {"mean": float(d.mean()), "se": se, "p": float(stats.t.sf(d.mean() / se, len(d) - 1)), "gap": gap,
            "seeds_needed": need}


def _assert_paired(checks: dict[str, dict[str, float]], seeds: int) -> None:
    """Every paired difference agrees with the theory's within 3 standard errors; where the theory's gap is one
    that ``seeds`` resolve (``seeds_needed ≤ seeds``), its sign is confirmed (one-sided paired t-test, 5 %)."""
    bad = {k: c for k, c in checks.items() if abs(c["mean"] - c["gap"]) >= 3 * c["se"]}
    bad.update({k: c for k, c in checks.items() if c["seeds_needed"] <= seeds and c["p"] >= 0.05})
    assert not bad, bad


def _lambda_prime_optimum_at(sigma: str, alpha_prime: float, hi: float, tmp_path) -> None:
    """theory.optimize over λ' (bounds 0.01..hi) at the figure-1 pre-training, then D = 60, 6 seeds at λ'*/3, λ'*,
    3λ'* (one pre-training per seed, cached: the three fine-tunings share teacher, Ŵ and test set) and at
    2λ'_c, where the simulated q must vanish."""
    base = Params(sigma=sigma, alpha_prime=alpha_prime)
    best = theory.optimize(base, over="lam_prime", bounds={"lam_prime": (0.01, hi)})
    assert best.converged and not best.at_bound
    lp = best.argmin["lam_prime"]
    lc = best.point.diagnostics["finetune"]["lam_prime_c"]
    th = {f: theory.solve(base.replace(lam_prime=f * lp), bayes=False).observables["E_ft"] for f in (1 / 3, 3.0)}
    e = {f: np.asarray(simulate.run(base.replace(lam_prime=f * lp), 60, 6, cache_dir=str(tmp_path)).per_seed["E_ft"],
                       float) for f in (1 / 3, 1.0, 3.0)}
    off = simulate.run(base.replace(lam_prime=2 * lc), 60, 6, cache_dir=str(tmp_path))
    _assert_paired({f"{f:.3g}": _paired(e[f], e[1.0], th[f] - best.minimum) for f in (1 / 3, 3.0)}, 6)
    assert off.observables["q"] < 1e-6


@pytest.mark.slow
def test_simulations_confirm_the_softmax_lambda_prime_optimum_at_alpha_prime_10(tmp_path):
    """The second held point, softmax: figure-1 pre-training (λ = 0.1, α = 0.1, T = 3) at α' = 10 (N' = 600 at
    D = 60; λ'_c = 7.7 against 2.8 at α' = 3), D = 60, 6 seeds, paired over seeds. Each simulated difference
    E_ft(fλ'*) − E_ft(λ'*), f = 1/3, 3, agrees with the theory's within 3 standard errors, and its sign is
    confirmed (one-sided paired t, 5 %) where the theory's gap is one 6 seeds resolve; past λ'_c the simulated
    q vanishes. Measured: λ'* = 0.389 (theory E_ft 0.4521; 0.4528 at λ'*/3, 0.4568 at 3λ'*), simulated E_ft
    0.4558 ± 0.0032 at λ'*; differences +0.0011 ± 0.0002 (theory +0.0007, p = 0.002, 3.8 seeds needed) and
    +0.0033 ± 0.0005 (theory +0.0047, 2.9 s.e. below it, p = 0.0004, 0.4 seeds needed): both signs asserted;
    q = 6e-18 at 2λ'_c = 15.4."""
    _lambda_prime_optimum_at("softmax", 10.0, 20.0, tmp_path)


@pytest.mark.slow
def test_simulations_confirm_the_linear_lambda_prime_optimum_at_alpha_prime_10(tmp_path):
    """The second held point, linear σ: as the softmax one (α' = 10, D = 60, 6 seeds, paired over seeds).
    Measured: λ'* = 2.50 (theory E_ft 7.5398; 7.5405 at λ'*/3, 7.5466 at 3λ'*: the curve is flat to 0.1 % over
    the factor 9), simulated 8.462 ± 0.073 at λ'*; differences +0.0030 ± 0.0015 (theory +0.0008, 143 seeds
    needed) and +0.0003 ± 0.0046 (theory +0.0068, 17 seeds needed): both agree, neither sign is resolvable by 6
    seeds, so neither is asserted; q = 2e-18 at 2λ'_c = 515."""
    _lambda_prime_optimum_at("linear", 10.0, 200.0, tmp_path)


@pytest.mark.slow
def test_simulations_check_the_recalibration_ordering(tmp_path):
    """The headline prescription, softmax, figure-1 point (α' = 3, λ' = 0.5): E_ft at β_W = argmin E_ft (the
    theory's, theory.optimize over beta_W, passed as a number), at β_W = 1 and at β_W = M/Q (``'delta'``: each
    seed's own M/Q), D = 60, 6 seeds, paired over seeds (one pre-training per seed, cached). The theory orders
    them error < none < delta; each simulated paired difference agrees with the theory's within 3 standard
    errors, and its sign is confirmed (one-sided paired t, 5 %) where the theory's gap is one 6 seeds resolve.
    Measured: theory β_W* = 1.250, E_ft 0.4751 / 0.4844 / 0.5149 (error / none / delta); simulated
    0.4770 ± 0.0064 / 0.4894 ± 0.0052 / 0.5137 ± 0.0094 (each seed's M/Q 1.90–2.05, theory 1.884); paired
    none − error +0.0123 ± 0.0015 (theory +0.0093, p = 0.0002), delta − none +0.0243 ± 0.0047 (theory
    +0.0305, p = 0.002), delta − error +0.0367 ± 0.0036 (theory +0.0397, p = 0.0001): every sign asserted
    (≤ 1 seed needed) and every difference within 2 s.e. of the theory's."""
    base = Params()
    best = theory.optimize(base, over="beta_W", bounds={"beta_W": (0.3, 3.0)})
    assert best.converged and not best.at_bound
    th = {"error": best.minimum,
          "none": theory.solve(base, bayes=False).observables["E_ft"],
          "delta": theory.solve(base.replace(recalibrate="delta"), bayes=False).observables["E_ft"]}
    recal = {"error": best.argmin["beta_W"], "none": None, "delta": "delta"}
    e = {k: np.asarray(simulate.run(base.replace(recalibrate=v), 60, 6, cache_dir=str(tmp_path)).per_seed["E_ft"],
                       float) for k, v in recal.items()}
    pairs = (("none", "error"), ("delta", "none"), ("delta", "error"))
    _assert_paired({f"{a}-{b}": _paired(e[a], e[b], th[a] - th[b]) for a, b in pairs}, 6)
