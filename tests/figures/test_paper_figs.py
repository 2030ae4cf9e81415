"""paper_figs.py and figures/: figures and tables written, points cached by parameters, interrupted runs resume."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import figures.compute
import paper_figs
import simulate
import theory
from figures.plotting import UNSTABLE_ALPHA, theory_line
from figures.specs import figure_specs
from model.params import ParameterError
from theory import TheoryPoint, WarmStart


class _Counter:
    """A stand-in for theory.solve: cheap closed forms, counts its calls, can fail on the n-th call."""

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
        obs = {"Q0": 2.0, "Q": 1.0 / (1 + p.lam), "M": 0.9 / (1 + p.lam), "E_pre": 12 / (1 + 10 * p.alpha)}
        if stage != "pretrain":
            obs.update({"q": 1.0, "m": 0.9, "o_w": 0.9, "E_ft": 10 / (1 + p.effective_alpha_prime) + p.lam_prime,
                        "E_frozen": 19.0, "delta_eff": 0.6, "E_ft_random": 11.0, "delta_eff_random": 0.7})
        if bayes in (True, "finetune"):
            obs.update({"q_BO": 0.9, "E_ft_BO": 5 / (1 + p.alpha_prime)})
        return TheoryPoint(params=p, stage=stage, observables=obs, converged=True,
                           warm=WarmStart(pretrain=p.lam, key=(p.sigma, p.T)))


def _n_theory_points(figs, quick=True):
    specs = figure_specs("linear", quick=quick)
    return sum(s.n_points for n in figs for s in specs[n].theory if s.kind == "theory")


def test_quick_no_sim_writes_figures_tables_and_reuses_the_cache(tmp_path, monkeypatch):
    fake = _Counter()
    monkeypatch.setattr(theory, "solve", fake)
    argv = ["--quick", "--no-sim", "--sigma", "linear", "--out", str(tmp_path)]
    assert paper_figs.main(argv) == 0
    for n in (1, 2, 3, 4):
        for ext in ("pdf", "png"):
            assert (tmp_path / f"fig{n}_linear.{ext}").stat().st_size > 1000
    assert len(fake.calls) == _n_theory_points((1, 2, 3, 4))
    table = pd.read_csv(tmp_path / "fig1" / "linear-finetune-theory.csv")
    assert {"alpha_prime", "lam_prime", "E_ft", "E_frozen", "converged"} <= set(table.columns)
    bo = pd.read_csv(tmp_path / "fig1" / "linear-pretrain_bo-theory.csv")
    assert (bo["E_pre_BO"] > 0).all()  # the real Bayes-optimal pre-training baseline (cheap)
    # warm start: along a sweep each point starts from the previous one
    assert fake.calls[1][1] is not None and fake.calls[1][1].pretrain == fake.calls[0][0].lam
    # a rerun computes nothing
    assert paper_figs.main(argv) == 0
    assert len(fake.calls) == _n_theory_points((1, 2, 3, 4))


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    argv = ["--quick", "--no-sim", "--sigma", "linear", "--fig", "2", "--out", str(tmp_path)]
    total = _n_theory_points((2,))
    monkeypatch.setattr(theory, "solve", _Counter(fail_at=5))
    with pytest.raises(KeyboardInterrupt):
        paper_figs.main(argv)
    fake = _Counter()
    monkeypatch.setattr(theory, "solve", fake)
    assert paper_figs.main(argv) == 0
    assert len(fake.calls) == total - 4  # the four points finished before the interruption are cached


def test_a_changed_parameter_recomputes_only_its_points(tmp_path, monkeypatch):
    fake = _Counter()
    monkeypatch.setattr(theory, "solve", fake)
    assert paper_figs.main(["--quick", "--no-sim", "--sigma", "linear", "--fig", "3", "--out", str(tmp_path)]) == 0
    n = len(fake.calls)
    monkeypatch.setattr(figures.compute, "N_MC", (1000, 600))  # another Monte-Carlo size is another point
    assert paper_figs.main(["--quick", "--no-sim", "--sigma", "linear", "--fig", "3", "--out", str(tmp_path)]) == 0
    assert len(fake.calls) == 2 * n


def test_a_theory_not_available_leaves_its_curve_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(theory, "solve", _Counter(unavailable=lambda p: p.reuse > 0))
    assert paper_figs.main(["--quick", "--no-sim", "--sigma", "linear", "--fig", "3", "--out", str(tmp_path)]) == 0
    assert "no theory line" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "fig3" / "linear-lam_prime-fresh-theory.csv")
    assert len(table) and not (tmp_path / "fig3" / "linear-lam_prime-reused-theory.csv").exists()


def test_simulation_markers_use_D_and_seeds_and_are_cached(tmp_path, monkeypatch):
    seen = []

    class Sim:
        def __init__(self, p, D, seeds):
            self.p, self.D, self.seeds = p, D, seeds

        def row(self):
            return {"D": self.D, "seeds": self.seeds, "E_ft": 8.0, "E_ft_sem": 0.2, "o_w": 0.9, "o_w_sem": 0.01,
                    "E_pre": 7.0, "E_pre_sem": 0.1, "E_frozen": 19.0, "E_frozen_sem": 0.1, "delta_eff": 0.6,
                    "delta_eff_sem": 0.01, "reuse": self.p.reuse}

    def fake_run(p, D, seeds, **kw):
        seen.append((D, seeds, kw.get("cache_dir")))
        return Sim(p, D, seeds)

    monkeypatch.setattr(simulate, "run", fake_run)
    argv = ["--quick", "--no-theory", "--sigma", "linear", "--fig", "1", "--D", "30", "--seeds", "3",
            "--out", str(tmp_path)]
    assert paper_figs.main(argv) == 0
    n_sim = sum(s.n_points for s in figure_specs("linear", quick=True)[1].simulation)
    assert len(seen) == n_sim and all(D == 30 and k == 3 for D, k, _ in seen)
    assert seen[0][2] == str(tmp_path / "cache")  # trained pre-training weights are shared there
    assert paper_figs.main(argv) == 0 and len(seen) == n_sim
    assert (tmp_path / "fig1" / "linear-finetune-sim.csv").exists()


def test_the_full_grids_are_within_budget():
    """The default run's size (BENCHMARKS.md gives its time): few Bayes-optimal fine-tuning points, few markers."""
    for sigma in ("linear", "softmax"):
        specs = figure_specs(sigma)
        bo = [s for f in specs.values() for s in f.theory if s.bayes in (True, "finetune")]
        assert sum(s.n_points for s in bo) <= 6 and all(s.name == "finetune_bo" for s in bo)
        assert sum(s.n_points for f in specs.values() for s in f.simulation) <= 50
        assert not any(math.isinf(s.base.lam) for f in specs.values() for s in f.theory)


@pytest.mark.slow
def test_quick_no_sim_real_theory_smoke(tmp_path):
    assert paper_figs.main(["--quick", "--no-sim", "--sigma", "linear", "--fig", "2", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "fig2" / "linear-lam-theory.csv")
    assert table["converged"].all() and (table["E_ft"] < table["E_frozen"]).all()


@pytest.mark.parametrize("argv, sigma, expected", [
    ([], "linear", ["--sigma", "linear", "--jobs", "1"]),
    (["--quick", "--sigma", "linear", "softmax", "--fig", "1", "2"], "softmax",
     ["--quick", "--fig", "1", "2", "--sigma", "softmax", "--jobs", "1"]),
    (["--jobs", "3", "--out", "x", "--sigma=linear"], "linear", ["--out", "x", "--sigma", "linear", "--jobs", "1"]),
])
def test_each_child_process_gets_one_sigma_and_one_job(argv, sigma, expected):
    assert figures.compute.child_argv(argv, sigma) == expected


def test_theory_line_is_faded_where_the_fixed_point_is_not_rs_stable():
    t = pd.DataFrame({"x": [0.5, 1.0, 2.0, 4.0], "E_ft": [1.0, 2.0, 3.0, 4.0], "delta_eff": [1.0] * 4,
                      "converged": [True] * 4, "rs_stable": [False, True, True, True]})
    fig, ax = plt.subplots()
    theory_line(ax, t, "x", "E_ft", colour="k", style="--")
    solid, faded = ax.get_lines()
    assert solid.get_linestyle() == faded.get_linestyle() == "--"
    assert solid.get_alpha() is None and faded.get_alpha() == UNSTABLE_ALPHA
    assert np.isnan(solid.get_ydata()[0]) and list(solid.get_ydata()[1:]) == [2.0, 3.0, 4.0]
    assert list(faded.get_ydata()[:2]) == [1.0, 2.0] and np.isnan(faded.get_ydata()[2:]).all()
    # one line: all stable, no column, or an observable the fine-tuning fixed point does not set
    theory_line(ax, t.assign(rs_stable=True), "x", "E_ft", colour="k")
    theory_line(ax, t.drop(columns="rs_stable"), "x", "E_ft", colour="k")
    theory_line(ax, t, "x", "delta_eff", colour="k")
    assert len(ax.get_lines()) == 5
    plt.close(fig)


@pytest.mark.parametrize("n, line", [(2, False), (3, True)])
def test_a_bayes_optimal_curve_of_few_points_is_markers_only(n, line):
    """A line through two Bayes-optimal points (``--quick``) can cross the ERM curves it lies below at every
    computed point: below MIN_LINE_POINTS converged points they are drawn as markers alone (a line otherwise)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from figures.panels import MIN_LINE_POINTS, _bo_line

    assert MIN_LINE_POINTS == 3
    table = pd.DataFrame({"alpha_prime": np.linspace(0.5, 20.0, n + 1), "E_ft_BO": np.linspace(5.0, 1.0, n + 1),
                          "converged": [True] * n + [False]})
    fig, ax = plt.subplots()
    _bo_line(ax, table, "alpha_prime", "E_ft_BO")
    (drawn,) = ax.get_lines()
    assert len(drawn.get_xdata()) == n  # the non-converged point is left out
    assert (drawn.get_linestyle() != "None") is line and drawn.get_marker() == "."
    plt.close(fig)

