"""Stand-ins for the theory and the simulator in the figure tests: cheap closed forms with every kind of point
a figure draws (RS-unstable stretches, non-converged points, a switched-off LoRA), so a whole figure set is
computed and drawn in seconds."""

from __future__ import annotations

import math

import pytest

import simulate
import theory
from model.params import ParameterError
from theory import TheoryPoint, WarmStart
from theory.bayes.finetune_curve import CurvePoint


class FakeTheory:
    """A stand-in for theory.solve: counts its calls, can fail on the n-th call or be unavailable."""

    def __init__(self, fail_at=None, unavailable=lambda p: False):
        self.calls = []
        self.fail_at = fail_at
        self.unavailable = unavailable

    def __call__(self, p, *, init=None, stage="both", bayes=False, **kw):
        if self.unavailable(p):
            raise ParameterError("not available yet (test)")
        self.calls.append((p, init))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        # E_pre with a kink where W = 0 begins (large λ, small α)
        obs = {"Q0": 2.0, "Q": 1.0 / (1 + p.lam), "M": 0.9 / (1 + p.lam), "V": 0.3,
               "E_pre": 12 / (1 + 10 * p.alpha) + max(0.0, 2.0 * p.lam - 20 * p.alpha)}
        converged, diag = True, {}
        if stage != "pretrain":
            ap = p.effective_alpha_prime
            off = p.lam_prime > 8.0
            obs.update({"q": 0.0 if off else 1.0, "m": 0.0 if off else 0.9,
                        "o_w": math.nan if off else 1 - 0.5 / (1 + ap + 0.1 * p.reuse),
                        "E_ft": 19.0 if off else 2 + 10 / (1 + ap) + 0.1 * p.lam_prime + 0.2 * math.log1p(p.lam),
                        "E_frozen": 19.0, "delta_eff": 0.6 + 0.1 * math.log1p(p.lam) - 0.05 * p.reuse,
                        "E_ft_random": 3 + 11.0 / (1 + ap), "delta_eff_random": 0.7})
            converged = not (0.7 < ap < 0.75)  # a gap
            diag = {"finetune": {"rs_stable": ap > 1.2, "status": "switched_off" if off else "converged"}}
        if bayes in (True, "finetune"):
            obs.update({"q_BO": 0.9, "E_ft_BO": 5 / (1 + p.alpha_prime)})
        return TheoryPoint(params=p, stage=stage, observables=obs, converged=converged, diagnostics=diag,
                           warm=WarmStart(pretrain=p.lam, key=(p.sigma, p.T)))


def fake_curve_point(p, pre, q, **kw):
    """The Bayes-optimal curve with ``G(q) = 1/2``: ``α'(q) = 2q/(1 − q)``."""
    return CurvePoint(q=q, alpha_prime=2 * q / (1 - q), G=0.5, G_se=0.01, alpha_prime_se=0.01,
                      E_ft_BO=1.5 + 5 * (1 - q), E_ft_BO_se=0.0, ess_min=100.0, delta_BO=0.5)


class FakeSim:
    def __init__(self, p, D, seeds):
        self.p, self.D, self.seeds = p, D, seeds

    def row(self):
        p, shift = self.p, 3.0 / self.D  # a 1/D finite-size offset
        values = {"E_ft": 2 + 10 / (1 + p.alpha_prime) + shift, "o_w": 0.9 - shift, "E_pre": 12 / (1 + 10 * p.alpha),
                  "E_frozen": 19.0, "delta_eff": 0.6, "E_ft_random": 5.0, "delta_eff_random": 0.7}
        row = {"D": self.D, "seeds": self.seeds, "reuse": p.reuse}
        for k, v in values.items():
            row.update({k: v, f"{k}_sem": 0.02})
        return row


@pytest.fixture
def fake_theory(monkeypatch):
    fake = FakeTheory()
    monkeypatch.setattr(theory, "solve", fake)
    monkeypatch.setattr(theory, "bayes_finetune_at_overlap", fake_curve_point)
    return fake


@pytest.fixture
def fake_sim(monkeypatch):
    seen = []

    def run(p, D, seeds, **kw):
        seen.append((p, D, seeds, kw.get("cache_dir")))
        return FakeSim(p, D, seeds)

    monkeypatch.setattr(simulate, "run", run)
    return seen


@pytest.fixture
def fake_theory_class():
    """:class:`FakeTheory` itself, for tests that make several (failing, unavailable)."""
    return FakeTheory
