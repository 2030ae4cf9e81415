"""What the markers are compared with: the theory of linear test errors at the simulations' D, markers
extrapolated to D → ∞, and the dense Bayes-optimal fine-tuning curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import paper_figs
from figures.compute import PointCache, Pretrained, bayes_finetune_rows, extrapolated_table, with_finite_D_theory
from figures.specs import Sweep, dense
from model.params import ParameterError, Params
from theory.finite_size import linear_test_error_at


def _theory_table(sigma):
    return pd.DataFrame({"sigma": sigma, "T": 3, "delta": 0.5, "lam_prime": [0.1, 1.0, 10.0],
                         "E_ft": [8.0, 9.0, math.nan], "E_frozen": 19.0, "o_w": [0.9, 0.8, 0.7]})


def test_linear_test_errors_get_their_exact_finite_D_theory():
    out = with_finite_D_theory(_theory_table("linear"), 150)
    expected = [linear_test_error_at(v, T=3, D=150, delta=0.5) for v in (8.0, 9.0)]
    assert out["E_ft_at_D"].tolist()[:2] == expected and math.isnan(out["E_ft_at_D"].iloc[2])
    assert (out["E_frozen_at_D"] > out["E_frozen"]).all()  # the output-Gram factor 1 + c_T/D > 1
    assert "o_w_at_D" not in out.columns and (out["D_theory"] == 150).all()
    softmax = _theory_table("softmax")
    assert with_finite_D_theory(softmax, 150).equals(softmax)  # no closed form: left at D = ∞


def test_markers_extrapolated_by_a_plus_b_over_D():
    Ds = (100, 150, 200)
    tables = {D: pd.DataFrame({"sigma": "linear", "lam_prime": [0.1, 1.0], "E_ft": [8.0 + 30 / D, 9.0 - 20 / D],
                               "E_ft_sem": [0.05, 0.05], "D": D}) for D in Ds}
    out = extrapolated_table(tables, seeds=2)
    assert out["E_ft"].tolist() == pytest.approx([8.0, 9.0], abs=1e-9)
    assert (out["E_ft_sem"] > 0).all() and out["E_ft_chi2"].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert out["E_ft_D150"].tolist() == pytest.approx([8.2, 9.0 - 20 / 150])
    assert np.isinf(out["D"]).all() and out["extrapolation"].iloc[0] == "a + b/D over D = 100,150,200"


@pytest.mark.parametrize("argv, message", [
    (["--D", "100,150"], "--markers extrapolated"),
    (["--markers", "extrapolated", "--D", "150"], "two distinct"),
    (["--markers", "extrapolated", "--D", "150,150"], "two distinct"),
    (["--D", "1"], "D ≥ 2"),
    (["--D", "a,b"], "integer"),
])
def test_bad_sizes_are_refused_before_any_work(argv, message, capsys):
    assert paper_figs.main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_default_sizes():
    assert paper_figs.parse_sizes(None, "extrapolated", False) == [100, 150, 200]
    assert paper_figs.parse_sizes("200,100,150", "extrapolated", False) == [100, 150, 200]
    assert paper_figs.parse_sizes(None, "D", True) == [None]


def _bo_sweep():
    base = Params(sigma="linear", T=3, alpha=0.1, lam=0.1, lam_prime=0.5, alpha_prime=3.0)
    return Sweep("finetune_bo", base, (), kind="bayes_finetune_curve",
                 line=dense("alpha_prime", 0.5, 20.0, ("E_ft_BO", "q_BO")))


def _pretrain_point(p, warm):
    return {"Q0": 2.0, "Q": 2.18, "M": 1.9, "converged": True}, None


def test_the_bayes_optimal_curve_spans_the_axis_densely(tmp_path, fake_theory):
    rows = bayes_finetune_rows(_bo_sweep(), PointCache(tmp_path), _pretrain_point, Pretrained())
    ap = np.array([r["alpha_prime"] for r in rows])
    assert len(rows) >= 30 and all(r["converged"] for r in rows)
    # the ends are solved to |log α' − log target| < 1e-3 (figures.compute._solve_increasing)
    end = math.expm1(1e-3)
    assert ap[0] == pytest.approx(0.5, rel=end) and ap[-1] == pytest.approx(20.0, rel=end)
    assert np.all(np.diff(ap) > 0) and np.diff(np.log(ap)).max() < 0.15 * math.log(40)
    q = np.array([r["q_BO"] for r in rows])
    assert q == pytest.approx(ap / (2 + ap))  # α'(q) = 2q/(1 − q) of the stand-in


def test_a_decreasing_alpha_prime_of_q_is_marked(tmp_path, monkeypatch):
    import theory
    from theory.bayes.finetune_curve import CurvePoint

    def wiggly(p, pre, q, **kw):  # α'(q) with a backward stretch: several fixed points at one α'
        ap = 2 * q / (1 - q) * (1 + 0.6 * math.sin(12 * q))
        return CurvePoint(q=q, alpha_prime=ap, G=0.5, G_se=0.0, alpha_prime_se=0.0, E_ft_BO=1 - q, E_ft_BO_se=0.0,
                          ess_min=1.0, delta_BO=0.5)

    monkeypatch.setattr(theory, "bayes_finetune_at_overlap", wiggly)
    rows = bayes_finetune_rows(_bo_sweep(), PointCache(tmp_path), _pretrain_point, Pretrained())
    flags = [r["converged"] for r in rows]
    assert not all(flags) and any(flags)


def test_no_curve_when_the_pretraining_did_not_converge(tmp_path, fake_theory, capsys):
    rows = bayes_finetune_rows(_bo_sweep(), PointCache(tmp_path), lambda p, w: ({"converged": False}, None),
                               Pretrained())
    assert rows == [] and "did not converge" in capsys.readouterr().err


def test_parameter_errors_name_the_sizes():
    with pytest.raises(ParameterError, match="--D"):
        paper_figs.parse_sizes("0,5", "extrapolated", False)
