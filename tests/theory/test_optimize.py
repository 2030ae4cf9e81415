"""Tests of the prescriptions optimiser (theory/optimize.py) and of recalibrate = 'error'."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

import theory
import theory.stages.finetune as F
from model.observables import recalibration
from model.params import ParameterError, Params
from theory.optimize import local_minima, minimize_scalar_robust, optimize
from theory.states import PretrainState


def test_scalar_search_recovers_a_known_minimiser():
    f = lambda x: (math.log(x) - math.log(0.7)) ** 2 + 3.0  # noqa: E731
    r = minimize_scalar_robust(f, (1e-3, 100.0), log=True, xtol=1e-4)
    assert r.converged and r.unimodal and not r.at_bound
    assert r.x == pytest.approx(0.7, rel=1e-3) and r.fun == pytest.approx(3.0, abs=1e-6)
    lin = minimize_scalar_robust(lambda x: (x - 0.37) ** 2, (0.0, 1.0), log=False, xtol=1e-5)
    assert lin.x == pytest.approx(0.37, abs=1e-4)


def test_scalar_search_flags_several_minima_bounds_and_failures():
    # two wells: the grid sees both; the deeper one is refined, and the search says it was not unimodal
    f = lambda x: min((x - 0.2) ** 2, (x - 0.8) ** 2 - 0.01)  # noqa: E731
    r = minimize_scalar_robust(f, (0.0, 1.0), log=False, n_grid=11, xtol=1e-5)
    assert not r.unimodal and r.x == pytest.approx(0.8, abs=1e-3)
    edge = minimize_scalar_robust(lambda x: x, (0.1, 10.0), log=True)
    assert edge.at_bound and edge.x == pytest.approx(0.1)
    # failed evaluations (NaN) are excluded and counted
    g = lambda x: math.nan if x > 3 else (math.log(x) - math.log(0.5)) ** 2  # noqa: E731
    r = minimize_scalar_robust(g, (0.01, 100.0), log=True, xtol=1e-4)
    assert r.excluded > 0 and r.x == pytest.approx(0.5, rel=1e-3)
    assert local_minima([3.0, math.nan, 1.0, 2.0, 0.5]) == [2, 4]


def _fake_solve(target: dict[str, float], bad: float = math.inf):
    """A stand-in for theory.solve: E_ft a log-parabola with minimum 0.5 at ``target``; no convergence for
    ``lam_prime > bad``."""
    calls = []

    def solve(params, *, init=None, stage="both", bayes=False, **kw):
        calls.append((params, kw.get("key")))
        bW = params.recalibrate if isinstance(params.recalibrate, float) else 1.0
        vals = {"lam_prime": params.lam_prime, "beta_W": bW, "lam": params.lam}
        e = 0.5 + sum((math.log(vals[k]) - math.log(v)) ** 2 for k, v in target.items())
        ok = params.lam_prime <= bad
        return SimpleNamespace(params=params, observables={"E_ft": e if ok else math.nan, "beta_W": bW},
                               converged=ok, warm=None)

    return solve, calls


def test_optimize_two_parameters_coordinate_wise(monkeypatch):
    solve, calls = _fake_solve({"lam_prime": 0.3, "beta_W": 1.2}, bad=20.0)
    monkeypatch.setattr(theory, "solve", solve)
    r = optimize(Params(), over=["lam_prime", "recalibrate"], xtol=1e-3)
    assert r.converged and r.over == ("lam_prime", "beta_W")
    assert r.argmin["lam_prime"] == pytest.approx(0.3, rel=1e-2)
    assert r.argmin["beta_W"] == pytest.approx(1.2, rel=1e-2)
    assert r.minimum == pytest.approx(0.5, abs=1e-4)
    assert r.excluded > 0 and not r.curve["converged"].all()  # λ' > 20 did not converge: kept, excluded
    assert r.n_evaluations == len(r.curve) == len({(c[0].lam_prime, c[0].recalibrate) for c in calls})
    assert {k for _, k in calls} == {0}  # common random numbers: one key for every evaluation
    js = r.to_json_dict()
    assert js["argmin"]["beta_W"] == pytest.approx(1.2, rel=1e-2) and len(js["curve"]) == r.n_evaluations


def test_optimize_reports_a_minimiser_at_a_bound(monkeypatch):
    monkeypatch.setattr(theory, "solve", _fake_solve({"lam_prime": 50.0})[0])
    r = optimize(Params(), over="lam_prime", bounds={"lam_prime": (0.01, 1.0)})
    assert r.at_bound == ("lam_prime",) and r.argmin["lam_prime"] == pytest.approx(1.0)
    assert any("bound" in n for n in r.notes)


def test_optimize_refuses_bad_input():
    with pytest.raises(ParameterError, match="over"):
        optimize(Params(), over=["delta_eff"])
    with pytest.raises(ParameterError, match="bounds"):
        optimize(Params(), over=["lam_prime"], bounds={"lam_prime": (1.0, 0.1)})
    with pytest.raises(ParameterError, match="pre-training observable"):
        optimize(Params(), minimize="E_pre", over=["lam_prime"])
    with pytest.raises(ParameterError, match="active"):
        optimize(Params(), over=["active_rho"])


def test_recalibration_names():
    assert recalibration("delta", 1.2, 2.0) == recalibration("optimal", 1.2, 2.0) == pytest.approx(0.6)
    with pytest.raises(ParameterError, match="error"):
        recalibration("error", 1.2, 2.0)
    for name in ("delta", "error", "optimal"):
        assert Params(recalibrate=name).recalibrate == name


def test_error_recalibration_minimises_E_ft_over_beta_W(monkeypatch):
    """recalibrate = 'error' picks argmin_β E_ft(β) at fixed pre-training (here a known E_ft(β))."""
    pre = PretrainState(Q0=2.0, Q=0.5, M=0.6)
    base = F.solve_finetune(Params(sigma="linear", lam_prime=math.inf), pre)

    def fake(params, pre, cfg, *, fresh_only, init):
        b = params.recalibrate
        return dataclasses.replace(base, beta_W=b, E_ft=(math.log(b) - math.log(1.3)) ** 2 + 0.25)

    monkeypatch.setattr(F, "_solve_ground_state", fake)
    r = F.solve_finetune(Params(sigma="linear", recalibrate="error"), pre)
    rec = r.diagnostics["recalibration"]
    assert r.converged and r.beta_W == pytest.approx(1.3, rel=1e-2) and r.E_ft == pytest.approx(0.25, abs=1e-4)
    assert rec["target"] == "error" and rec["unimodal"] and not rec["at_bound"]


@pytest.mark.slow
def test_optimizer_agrees_with_a_dense_grid_of_the_theory():
    """Linear σ, fine-tuning from a fixed pre-training: argmin_λ' E_ft by the optimiser against a dense grid
    of theory.solve (the grid's spacing bounds the disagreement)."""
    pre = PretrainState(Q0=2.0, Q=2.197, M=1.9148)
    p = Params(sigma="linear", alpha_prime=3.0)
    r = optimize(p, over="lam_prime", bounds={"lam_prime": (0.3, 30.0)}, stage="finetune", pretrain=pre)
    grid = np.geomspace(0.3, 30.0, 25)
    e = [theory.solve(p.replace(lam_prime=float(x)), stage="finetune", pretrain=pre, bayes=False).observables["E_ft"]
         for x in grid]
    i = int(np.nanargmin(e))
    assert grid[max(i - 1, 0)] <= r.argmin["lam_prime"] <= grid[min(i + 1, len(grid) - 1)]
    assert r.minimum <= e[i] + 1e-9
