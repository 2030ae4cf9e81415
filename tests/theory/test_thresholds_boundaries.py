"""Tests of the bisected thresholds of theory/thresholds.py: the replica-symmetry boundary (:func:`rs_boundary`) and
the mismatch crossing λ'_× (:func:`mismatch_crossing`).

The search logic is tested on stand-ins for ``theory.solve`` with a known answer; the solver-backed tests then
check, with direct solves that the search did not make, that the verdict flips across the value found (linear σ,
fine-tuning fed with the figure-1 / figure-3 pre-training, so no pre-training is solved)."""

from __future__ import annotations

import math

import pytest

import theory
from model.params import ParameterError, Params
from theory import TheoryPoint
from theory.states import PretrainState
from theory.thresholds import mismatch_crossing, rs_boundary


def _point(p, obs, ft, converged=True):
    return TheoryPoint(params=p, stage="finetune", observables=obs, converged=converged, diagnostics={"finetune": ft})


class _RS:
    """``rs_stable`` iff ``α' > edge`` (or ``λ' > edge``); optionally a point that does not converge."""

    def __init__(self, along, edge, fail_above=None):
        self.along, self.edge, self.fail_above, self.calls = along, edge, fail_above, []

    def __call__(self, p, **kw):
        x = getattr(p, self.along)
        self.calls.append(x)
        if self.fail_above is not None and len(self.calls) > self.fail_above:
            return _point(p, {"E_ft": math.nan}, {"status": "stalled"}, converged=False)
        return _point(p, {"E_ft": 1.0}, {"status": "converged", "rs_stable": x > self.edge, "replicon": 0.5})


@pytest.mark.parametrize("along,edge", [("alpha_prime", 0.73), ("lam_prime", 2.9)])
def test_rs_boundary_brackets_the_flip_to_the_tolerance(monkeypatch, along, edge):
    fake = _RS(along, edge)
    monkeypatch.setattr(theory, "solve", fake)
    b = rs_boundary(Params(sigma="linear"), along, (0.1, 30.0), rtol=0.02)
    lo, hi = b.bracket
    assert lo <= edge < hi and hi / lo <= 1.02
    assert b.value == pytest.approx(math.sqrt(lo * hi)) and b.stable_at == (False, True)
    # bisection in log: n = 2 ends + ceil(log2(log(300)/log(1.02))) midpoints
    assert b.n_evaluations == len(fake.calls) == 2 + math.ceil(math.log2(math.log(300) / math.log(1.02)))


def test_rs_boundary_without_a_flip_or_with_a_failed_point_is_nan(monkeypatch):
    monkeypatch.setattr(theory, "solve", _RS("alpha_prime", 50.0))
    b = rs_boundary(Params(sigma="linear"), "alpha_prime", (0.1, 30.0))
    assert math.isnan(b.value) and b.stable_at == (False, False)
    monkeypatch.setattr(theory, "solve", _RS("alpha_prime", 0.73, fail_above=3))
    b = rs_boundary(Params(sigma="linear"), "alpha_prime", (0.1, 30.0))
    assert math.isnan(b.value) and b.n_evaluations == 4  # stopped at the first failed midpoint
    with pytest.raises(ParameterError, match="along"):
        rs_boundary(Params(), "lam", (0.1, 1.0))
    with pytest.raises(ParameterError, match="bounds"):
        rs_boundary(Params(), "alpha_prime", (1.0, 0.1))


class _Mismatch:
    """``E_ft(e) = 1 + 0.1 e (λ' − x)`` below ``λ'_c = off``, ``E_frozen = 1.5`` above it (both switched off)."""

    def __init__(self, x, off):
        self.x, self.off = x, off

    def __call__(self, p, **kw):
        if p.lam_prime > self.off:
            return _point(p, {"E_ft": 1.5}, {"status": "switched_off"})
        return _point(p, {"E_ft": 1.0 + 0.1 * p.reuse * (p.lam_prime - self.x)}, {"status": "converged"})


def test_mismatch_crossing_finds_the_sign_change(monkeypatch):
    monkeypatch.setattr(theory, "solve", _Mismatch(x=2.0, off=20.0))
    c = mismatch_crossing(Params(sigma="linear"), (0.01, 10.0), 5, reuse=0.5)
    assert c.lam_prime_x == pytest.approx(2.0, rel=0.011) and c.reuse == 0.5
    assert all(d < 0 for lp, d in c.differences if lp < 1.9) and all(d > 0 for lp, d in c.differences if lp > 2.1)


def test_mismatch_crossing_is_not_the_switch_off(monkeypatch):
    """Above both λ'_c the errors are both E_frozen: a difference of exactly 0 that is no crossing."""
    monkeypatch.setattr(theory, "solve", _Mismatch(x=100.0, off=1.0))
    c = mismatch_crossing(Params(sigma="linear"), (0.01, 10.0), 5)
    assert math.isnan(c.lam_prime_x)
    assert [math.isnan(d) for _, d in c.differences] == [False, False, False, True, True]
    with pytest.raises(ParameterError, match="reuse"):
        mismatch_crossing(Params(), reuse=0.0)


# ------------------------------------------------------------------------------------------------- solver-backed
#: The figure-1 pre-training (linear σ, λ = 0.1, α = 0.1) as the theory solves it.
PRE_FIG1 = PretrainState(Q0=2.0, Q=2.1969894969328294, M=1.9147677228940867, V=0.47759224409952716)
#: The figure-3 parameters (T = 2, Δ = 0.5, κ0 = 0.5, α = 0.2, α' = 3, λ = 0.1) and their pre-training.
FIG3 = Params(sigma="linear", T=2, delta=0.5, kappa0=0.5, kappa=1.0, alpha=0.2, alpha_prime=3.0, lam=0.1)
PRE_FIG3 = PretrainState(Q0=1.5, Q=1.673098398171061, M=1.4506922671144844, V=0.34068649831692677)


def _rs_stable(p):
    r = theory.solve(p, stage="finetune", pretrain=PRE_FIG1, bayes=False, n_mc=1000)
    assert r.converged
    return r.diagnostics["finetune"]["rs_stable"]


@pytest.mark.slow
def test_rs_boundary_agrees_with_direct_solves_on_both_sides():
    """Linear σ, λ' = 0.5: RS unstable below the boundary in α' (prox jumps), stable above. Direct solves 10 %
    either side of the bisected value, at α' the bisection did not evaluate, give the two verdicts. Measured:
    α'_RS = 0.653 (bracket 0.645–0.661, n_mc = 1000 and 4000 alike)."""
    p = Params(sigma="linear", lam_prime=0.5)
    b = rs_boundary(p, "alpha_prime", (0.4, 2.0), rtol=0.05, stage="finetune", pretrain=PRE_FIG1, n_mc=1000)
    assert b.stable_at == (False, True) and 0.4 < b.value < 2.0
    assert not _rs_stable(p.replace(alpha_prime=b.value / 1.1))
    assert _rs_stable(p.replace(alpha_prime=b.value * 1.1))


def _e_ft(p):
    r = theory.solve(p, stage="finetune", pretrain=PRE_FIG3, bayes=False, n_mc=1000)
    assert r.converged and r.diagnostics["finetune"]["status"] not in ("switched_off", "switched_off_map")
    return r.observables["E_ft"]


@pytest.mark.slow
def test_mismatch_crossing_agrees_with_direct_solves_on_both_sides():
    """Linear σ, figure 3: reuse (e = 1) has the lower E_ft below λ'_×, the higher above it. Direct solves at
    λ'_×/1.5 and 1.5 λ'_× (λ'_c ≈ 90 is far) give the two signs. Measured: λ'_× = 19.9 (README: ≈ 20)."""
    c = mismatch_crossing(FIG3, (3.0, 35.0), 3, stage="finetune", pretrain=PRE_FIG3, n_mc=1000)
    assert 3.0 < c.lam_prime_x < 35.0
    for factor, sign in ((1 / 1.5, -1), (1.5, +1)):
        p = FIG3.replace(lam_prime=c.lam_prime_x * factor)
        d = _e_ft(p.replace(reuse=1.0)) - _e_ft(p.replace(reuse=0.0))
        assert math.copysign(1, d) == sign
