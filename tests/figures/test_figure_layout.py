"""Every figure paper_figs.py makes, rendered from stand-in tables: no text past the figure's edge, no texts on
top of each other, no legend over data (figures.checks); and the checks themselves catch each fault."""

from __future__ import annotations

import re

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest

import paper_figs
from figures.extra import EXTRA_FIGURES
from figures.checks import layout_faults, legends_covering_data, texts_outside, texts_overlapping


@pytest.fixture
def checked(monkeypatch):
    """Check every figure when it is saved (instead of writing it); the faults by figure."""
    faults: dict[str, list[str]] = {}

    def savefig(self, fname, *args, **kwargs):
        name = str(fname)
        if name.endswith(".png"):
            faults[name.rsplit("/", 1)[-1]] = layout_faults(self)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return faults


def _choices(capsys) -> list[int]:
    with pytest.raises(SystemExit):
        paper_figs.main(["--fig", "999"])
    err = capsys.readouterr().err
    return [int(n) for n in re.findall(r"\d+", err.split("choose from", 1)[1])]


@pytest.mark.parametrize("sigma, extra", [("linear", []),  # with the theory at D at the markers
                                          ("softmax", ["--markers", "extrapolated", "--D", "20,30,40"])])
def test_every_figure_fits_and_no_legend_covers_data(tmp_path, capsys, fake_theory, fake_sim, checked, sigma, extra):
    # figures 5 and 6 (figures.extra) compute beyond theory.solve: tests/figures/test_prescription_figs.py
    numbers = [n for n in _choices(capsys) if n not in EXTRA_FIGURES]
    assert {1, 2, 3, 4} <= set(numbers)
    assert paper_figs.main(["--quick", "--sigma", sigma, "--fig", *map(str, numbers), "--out", str(tmp_path),
                            "--jobs", "1", *extra]) == 0
    assert sorted(checked) == sorted(f"fig{n}_{sigma}.png" for n in numbers)
    bad = {name: f for name, f in checked.items() if f}
    assert not bad, "\n".join(f"{name}: {x}" for name, f in bad.items() for x in f)


def test_the_checks_catch_a_cut_title_overlapping_texts_and_a_legend_on_data():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50), label="a line through the middle of the panel")
    ax.legend(loc="center")
    fig.suptitle("a title much wider than this small figure can hold, cut on both sides")
    ax.text(0.1, 0.9, "one", transform=ax.transAxes)
    ax.text(0.1, 0.9, "two", transform=ax.transAxes)
    assert any("outside the figure" in f for f in texts_outside(fig))
    assert any("'one'" in f and "'two'" in f for f in texts_overlapping(fig))
    assert any("covers" in f for f in legends_covering_data(fig))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.plot([0, 1], [0, 1], label="x")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02))
    fig.suptitle("short")
    assert layout_faults(fig) == []
    plt.close(fig)
