"""paper_figs.py and figures/: figures and tables written, points cached by parameters, interrupted runs resume."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import figures.compute
import figures.parallel
import paper_figs
import theory
from figures.plotting import UNSTABLE_ALPHA, theory_line
from figures.specs import figure_specs


def _run(argv):
    """In this process (``--jobs 1``): the fakes of the theory and the simulations do not reach child processes."""
    assert paper_figs.main([*argv, "--jobs", "1"]) == 0


def test_quick_no_sim_writes_figures_tables_and_reuses_the_cache(tmp_path, fake_theory):
    argv = ["--quick", "--no-sim", "--sigma", "linear", "--fig", "1", "2", "3", "4", "--out", str(tmp_path)]
    _run(argv)
    for n in (1, 2, 3, 4):
        for ext in ("pdf", "png"):
            assert (tmp_path / f"fig{n}_linear.{ext}").stat().st_size > 1000
    table = pd.read_csv(tmp_path / "fig1" / "linear-finetune-theory.csv")
    assert {"alpha_prime", "lam_prime", "E_ft", "E_frozen", "converged", "ft_status"} <= set(table.columns)
    quick = figure_specs("linear", quick=True)[1].theory[2].line
    assert (table.groupby("lam_prime").size() >= quick.n_min).all()  # dense lines, even quick
    bo = pd.read_csv(tmp_path / "fig1" / "linear-pretrain_bo-theory.csv")
    assert (bo["E_pre_BO"] > 0).all()  # the real Bayes-optimal pre-training baseline (cheap)
    # warm start: along a line each point starts from a computed neighbour
    assert fake_theory.calls[1][1] is not None and fake_theory.calls[1][1].pretrain == fake_theory.calls[0][0].lam
    # a rerun computes nothing (the adaptive grids depend only on cached values)
    n = len(fake_theory.calls)
    _run(argv[:-2] + ["--fig", "1", "--out", str(tmp_path)])
    assert len(fake_theory.calls) == n
    assert pd.read_csv(tmp_path / "fig1" / "linear-finetune-theory.csv").equals(table)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, fake_theory, fake_theory_class, monkeypatch):
    FakeTheory = fake_theory_class
    argv = ["--quick", "--no-sim", "--sigma", "linear", "--fig", "2"]
    _run(argv + ["--out", str(tmp_path / "whole")])
    total = len(fake_theory.calls)
    monkeypatch.setattr(theory, "solve", FakeTheory(fail_at=5))
    with pytest.raises(KeyboardInterrupt):
        paper_figs.main(argv + ["--out", str(tmp_path / "cut")])
    fake = FakeTheory()
    monkeypatch.setattr(theory, "solve", fake)
    _run(argv + ["--out", str(tmp_path / "cut")])
    assert len(fake.calls) == total - 4  # the four points finished before the interruption are cached


def test_a_changed_parameter_recomputes_only_its_points(tmp_path, fake_theory, monkeypatch):
    _run(["--quick", "--no-sim", "--sigma", "linear", "--fig", "3", "--out", str(tmp_path)])
    n = len(fake_theory.calls)
    monkeypatch.setattr(figures.compute, "N_MC", (1000, 600))  # another Monte-Carlo size is another point
    _run(["--quick", "--no-sim", "--sigma", "linear", "--fig", "3", "--out", str(tmp_path)])
    assert len(fake_theory.calls) == 2 * n


def test_a_theory_not_available_leaves_its_curve_out(tmp_path, monkeypatch, capsys, fake_theory_class):
    monkeypatch.setattr(theory, "solve", fake_theory_class(unavailable=lambda p: p.reuse > 0))
    assert paper_figs.main(["--quick", "--no-sim", "--sigma", "linear", "--fig", "3", "--out", str(tmp_path)]) == 0
    assert "no theory line" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "fig3" / "linear-lam_prime-fresh-theory.csv")
    assert len(table) and not (tmp_path / "fig3" / "linear-lam_prime-reused-theory.csv").exists()


def test_simulation_markers_use_D_and_seeds_and_are_cached(tmp_path, fake_sim):
    argv = ["--quick", "--no-theory", "--sigma", "linear", "--fig", "1", "--D", "30", "--seeds", "3",
            "--out", str(tmp_path)]
    _run(argv)
    n_sim = sum(s.n_points for s in figure_specs("linear", quick=True)[1].simulation)
    assert len(fake_sim) == n_sim and all(D == 30 and k == 3 for _, D, k, _ in fake_sim)
    assert fake_sim[0][3] == str(tmp_path / "cache")  # trained pre-training weights are shared there
    _run(argv)
    assert len(fake_sim) == n_sim
    assert (tmp_path / "fig1" / "linear-finetune-sim.csv").exists()


def test_the_full_grids_are_dense_and_the_markers_few():
    """Every theory line of the default run has ≥ 30 points; the simulation markers stay few (their time is in
    BENCHMARKS.md)."""
    for sigma in ("linear", "softmax"):
        specs = figure_specs(sigma)
        theory_sweeps = [s for f in specs.values() for s in f.theory]
        assert all(s.line is not None and s.line.n_min >= 30 for s in theory_sweeps)
        assert [s.name for s in theory_sweeps if s.kind == "bayes_finetune_curve"] == ["finetune_bo"]
        assert not any(s.bayes for s in theory_sweeps)  # no point pays for a Bayes-optimal fixed point of its own
        assert sum(s.n_points for f in specs.values() for s in f.simulation) <= 50
        assert not any(math.isinf(s.base.lam) for f in specs.values() for s in f.theory)


@pytest.mark.slow
def test_quick_no_sim_real_theory_smoke(tmp_path):
    assert paper_figs.main(["--quick", "--no-sim", "--sigma", "linear", "--fig", "2", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "fig2" / "linear-lam-theory.csv")
    assert (table.groupby("alpha_prime").size() >= 8).all()
    assert table["converged"].all() and (table["E_ft"] < table["E_frozen"]).all()


@pytest.mark.parametrize("argv, sigma, expected", [
    ([], "linear", ["--sigma", "linear", "--jobs", "1"]),
    (["--quick", "--sigma", "linear", "softmax", "--fig", "1", "2"], "softmax",
     ["--quick", "--fig", "1", "2", "--sigma", "softmax", "--jobs", "1"]),
    (["--jobs", "3", "--out", "x", "--sigma=linear"], "linear", ["--out", "x", "--sigma", "linear", "--jobs", "1"]),
])
def test_each_child_process_gets_one_sigma_and_one_job(argv, sigma, expected):
    assert figures.parallel.child_argv(argv, sigma) == expected


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
    from figures.panels import MIN_LINE_POINTS, _bo_line

    assert MIN_LINE_POINTS == 3
    table = pd.DataFrame({"alpha_prime": np.linspace(0.5, 20.0, n + 1), "E_ft_BO": np.linspace(5.0, 1.0, n + 1),
                          "converged": [True] * n + [False]})
    fig, ax = plt.subplots()
    _bo_line(ax, table, "alpha_prime", "E_ft_BO")
    (drawn,) = ax.get_lines()
    assert len(drawn.get_xdata()) == n  # the non-converged point is left out
    assert (drawn.get_linestyle() != "None") is line and drawn.get_marker() == ("None" if line else ".")
    plt.close(fig)


def test_parallel_tasks_keep_figures_1_and_2_together_and_start_the_longest_first():
    """Figures 1 and 2 share pre-training (theory and simulated weights): one task computes both; every other
    figure is a task of its own; the measured costs order them, softmax figures 1-2 first."""
    tasks = figures.parallel.child_tasks(["linear", "softmax"], [1, 2, 3, 4])
    assert tasks[0] == ("softmax", [1, 2])
    assert sorted(tasks) == sorted([("softmax", [1, 2]), ("linear", [1, 2]), ("softmax", [3]), ("softmax", [4]),
                                    ("linear", [3]), ("linear", [4])])
    costs = [figures.parallel.COST[(s, tuple(f))] for s, f in tasks]
    assert costs == sorted(costs, reverse=True)
    assert figures.parallel.child_tasks(["linear"], [3, 1]) == [("linear", [1]), ("linear", [3])]
    assert figures.parallel.child_argv(["--fig", "1", "2", "--quick"], "linear", [3]) == \
        ["--quick", "--fig", "3", "--sigma", "linear", "--jobs", "1"]


def test_the_pool_starts_the_next_task_when_any_one_ends(tmp_path):
    """A short task that ends first frees its slot at once (the long one still runs)."""
    script = tmp_path / "task.py"
    script.write_text("import sys, time\ntime.sleep(float(sys.argv[1]))\n"
                      "open(sys.argv[2], 'a').write(sys.argv[3] + ' ' + str(time.time()) + '\\n')\n")
    log = tmp_path / "log"
    argvs = [["1.5", str(log), "long"], ["0.1", str(log), "short1"], ["0.1", str(log), "short2"]]
    assert figures.parallel.run_children(argvs, ["long", "short1", "short2"], 2, script=script) == 0
    order = [line.split()[0] for line in log.read_text().splitlines()]
    assert order == ["short1", "short2", "long"]
