"""Figures 5 (phase diagram) and 6 (prescriptions): drawn through paper_figs.py from stand-in theories, tables
written, computations cached, layout checked; and the small pieces they rest on."""

from __future__ import annotations

import math

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

import figures.phase_diagram as phase
import figures.prescriptions as presc
import paper_figs
from figures.checks import layout_faults


@pytest.fixture
def fake_heavy(monkeypatch):
    """Stand-ins for the computations of figures 5 and 6 that do not go through theory.solve; counts calls."""
    calls = []

    def curve(base, pre, n_mc, aps):
        calls.append("curve")
        return [{"alpha_prime": float(a), "lam_prime_c": 4.0 * (1 + a) ** 0.5, "mechanism": "informed"} for a in aps]

    def alpha_c(base, state, n_outer, n_inner):
        calls.append("alpha_c")
        return 0.1 + 0.05 * (state.Q0 - state.M ** 2 / state.Q), 0.005

    def bo(p, state, mc):
        calls.append("bo")
        return {"E": 1.0 + 2.0 / (1 + p.alpha_prime), "E_sem": 0.01, "q": 0.9, "converged": True}

    monkeypatch.setattr(phase, "switch_off_curve", curve)
    monkeypatch.setattr(phase, "bayes_alpha_c", alpha_c)
    monkeypatch.setattr(presc, "bayes_finetune", bo)
    return calls


@pytest.fixture
def faults(monkeypatch):
    found = {}
    real = matplotlib.figure.Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        if str(fname).endswith(".png"):
            found[str(fname).rsplit("/", 1)[-1]] = layout_faults(self)
        return real(self, fname, *args, **{**kwargs, "dpi": 20})  # small files: the test is about what is drawn

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return found


@pytest.mark.slow  # 47 s on the shared 2-core machine (most of it drawing and the layout checks)
def test_figures_5_and_6_written_with_tables_cached_and_laid_out(tmp_path, fake_theory, fake_heavy, faults):
    argv = ["--quick", "--sigma", "linear", "--fig", "5", "6", "--out", str(tmp_path)]
    assert paper_figs.main(argv) == 0
    for n in (5, 6):
        for ext in ("pdf", "png"):
            assert (tmp_path / f"fig{n}_linear.{ext}").stat().st_size > 500
    assert not any(faults.values()), faults
    grid = pd.read_csv(tmp_path / "fig5" / "linear-grid.csv")
    s = phase.spec("linear", quick=True)
    assert len(grid) == len(s.alpha_primes) * (len(s.fractions) + 1)
    # the stand-in is RS-unstable only at α' ≤ 1.2, below the quick grid (α' ≥ 2): every row is RS-stable but the
    # check row of each α' above the stand-in's λ'_c curve, which is switched off
    assert min(s.alpha_primes) > 1.2 and set(grid["region"]) == {"rs_stable", "switched_off"}
    top = grid.groupby("alpha_prime")["lam_prime"].transform("max") == grid["lam_prime"]
    assert (grid.loc[top, "region"] == "switched_off").all() and (grid.loc[~top, "region"] == "rs_stable").all()
    bayes = pd.read_csv(tmp_path / "fig5" / "linear-bayes.csv")
    assert list(bayes["baseline"]) == ["BO", "BO2"] and (bayes["alpha_prime_c"] > 0).all()
    ft = pd.read_csv(tmp_path / "fig6" / "linear-finetune_opt.csv")
    assert {"lam_prime_opt", "beta_W_opt", "M_over_Q", "E_ft_BO", "E_ft_BO2", "E_frozen"} <= set(ft.columns)
    # figure 6's fine-tuning solves go through figures.cached (the theory itself, not the stand-in): the optimal
    # ridge is an interior minimiser of the search, no worse than the default λ' = 0.5 on the same draws
    assert ft["lam_prime_opt_converged"].all() and not ft["lam_prime_opt_at_bound"].any()
    assert ((ft["lam_prime_opt"] > 1e-2) & (ft["lam_prime_opt"] < 0.9 * ft["lam_prime_c"])).all()
    assert (ft["E_ft_lam_prime_opt"] <= ft["E_ft_default"]).all()
    assert len(pd.read_csv(tmp_path / "fig6" / "linear-lam_opt.csv")) == 2 * len(presc.spec("linear", True).alphas)
    # a rerun computes nothing
    n_solve, n_heavy = len(fake_theory.calls), len(fake_heavy)
    assert paper_figs.main(argv) == 0
    assert len(fake_theory.calls) == n_solve and len(fake_heavy) == n_heavy


def test_no_theory_leaves_figures_5_and_6_out(tmp_path, capsys):
    assert paper_figs.main(["--quick", "--no-theory", "--sigma", "linear", "--fig", "5", "--out", str(tmp_path)]) == 0
    assert "left out with --no-theory" in capsys.readouterr().err
    assert not (tmp_path / "fig5_linear.png").exists()


def test_parabola_argmin_is_exact_on_a_parabola_and_flags_an_end():
    xs = np.geomspace(0.01, 1.0, 5)
    u0 = math.log(0.07)
    ys = 3.0 + 2.0 * (np.log(xs) - u0) ** 2
    x, y, interior = presc.parabola_argmin(xs, ys)
    assert interior and x == pytest.approx(0.07, rel=1e-9) and y == pytest.approx(3.0, rel=1e-9)
    x, y, interior = presc.parabola_argmin(xs, -np.log(xs))  # decreasing: the minimum is the last point
    assert not interior and x == pytest.approx(1.0) and y == pytest.approx(0.0)
    x, _, _ = presc.parabola_argmin(xs, [5, math.nan, 1.0, 2.0, 3.0])
    assert xs[0] < x < xs[3]


def test_classify_regions():
    assert phase.classify({"status": "switched_off", "converged": True, "E_ft": 1.0}) == "switched_off"
    assert phase.classify({"status": "max_steps", "converged": False, "E_ft": math.nan}) == "not_converged"
    assert phase.classify({"status": "converged", "converged": True, "E_ft": 1.0, "rs_stable": True}) == "rs_stable"
    assert phase.classify({"status": "root", "converged": True, "E_ft": 1.0, "rs_stable": False}) == "rs_unstable"
