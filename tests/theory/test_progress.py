"""Progress of long theory solves on stderr (theory/progress.py): nothing unless asked, rate-limited lines."""

import io

import theory
from model.params import Params
from theory import progress


def test_ticks_print_only_within_report_and_at_most_every_period():
    progress.tick("pretrain", Q=1.0)  # outside report: silent, no error
    out = io.StringIO()
    with progress.report("theory", stream=out, every=0.0):
        progress.tick("finetune", q=0.5, m=0.25)
        progress.tick("finetune", q=0.6, m=0.3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[theory] finetune: 1 map evaluations, last at q=0.5 m=0.25 (")
    assert lines[1].startswith("[theory] finetune: 2 map evaluations")
    quiet = io.StringIO()
    with progress.report(stream=quiet, every=3600.0):
        for _ in range(100):
            progress.tick("pretrain", Q=1.0)
    assert quiet.getvalue() == ""


def test_a_solve_reports_its_map_evaluations():
    out = io.StringIO()
    with progress.report("theory", stream=out, every=0.0):
        r = theory.solve(Params(sigma="linear"), stage="pretrain", bayes=False)
    lines = out.getvalue().splitlines()
    assert r.converged and len(lines) == r.n_steps["pretrain"]
    assert all(line.startswith("[theory] pretrain: ") for line in lines)
