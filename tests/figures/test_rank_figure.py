"""Figure 7 (figures.rank): the optimal rank per α' from its table, the drawing, and ``paper_figs.py --fig 7``.
The theory is stubbed (figures.rank.compute); the real numbers are the README's."""

import math

import pandas as pd

import figures.rank as rank_fig
import paper_figs


def _table():
    rows = []
    for a in (1.0, 3.0, 10.0):
        for r in rank_fig.CHOICE_RANKS:
            ok = not (r == 4 and a == 1.0)
            e = 10.0 / a + abs(r - (1 if a < 3 else 2)) if ok else math.nan
            rows.append({"alpha_prime": a, "rank": r, "teacher_rank": 2, "E_ft": e, "E_frozen": 15.0,
                         "o_U": 0.5 if ok else math.nan, "tr_q": float(r), "converged": ok,
                         "rs_stable": True if ok else None, "replicon": 0.5})
    t = pd.DataFrame(rows)
    t["best_rank"] = t["alpha_prime"].map(rank_fig._best_ranks(t))
    return t


def test_the_best_rank_is_the_lowest_converged_e_ft():
    t = _table()
    best = t.groupby("alpha_prime")["best_rank"].first()
    assert list(best) == [1.0, 2.0, 2.0]
    wide = rank_fig.best_rank_table(t)
    assert list(wide.columns) == ["alpha_prime", "E_ft_r1", "E_ft_r2", "E_ft_r3", "E_ft_r4", "E_frozen", "best_rank"]
    assert math.isnan(wide.loc[0, "E_ft_r4"])


def _bayes():
    a = [0.5, 1.0, 3.0, 10.0]
    q = [0.0, 0.7, 0.95, 0.99]
    return pd.DataFrame({"alpha_prime": a, "q_BO": q, "o_U_BO": [v**0.5 for v in q], "E_ft_BO": [14, 9, 4, 3.2],
                         "converged": True})


def test_draw_adds_the_bayes_optimal_line(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    closed = []
    real = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: closed.append(fig))  # keep the figure to inspect it
    rank_fig.draw(_table(), sigma="linear", stem=str(tmp_path / "f"), bayes=_bayes())
    fig = closed[-1]
    ax_e, ax_o = fig.axes[0], fig.axes[1]
    bo_e = [ln for ln in ax_e.get_lines() if ln.get_label().startswith("Bayes-optimal")]
    bo_o = [ln for ln in ax_o.get_lines() if ln.get_label().startswith("Bayes-optimal")]
    assert len(bo_e) == 1 and len(bo_o) == 1
    assert list(bo_e[0].get_ydata()) == list(_bayes()["E_ft_BO"])
    assert list(bo_o[0].get_ydata()) == list(_bayes()["o_U_BO"])
    real(fig)


def test_paper_figs_draws_figure_7(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_fig, "compute", lambda sigma, out_dir, quick=False: _table())
    monkeypatch.setattr(rank_fig, "bayes_curve", lambda sigma, out_dir, quick=False: _bayes())
    assert paper_figs.main(["--no-sim", "--sigma", "linear", "--fig", "7", "--out", str(tmp_path)]) == 0
    for ext in ("pdf", "png"):
        assert (tmp_path / f"fig7_linear.{ext}").stat().st_size > 1000
