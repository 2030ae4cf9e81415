"""Regenerate the figure set of MODEL.md §6: ``python paper_figs.py [--fig N ...] [--sigma ...] [--quick]``.

Theory lines (:func:`theory.solve`, warm-started along each curve), Bayes-optimal lines, the frozen
baseline, and simulation markers with error bars at ``D = 150`` (2 seeds). Every figure is written as PDF
and PNG with the CSV table behind each panel (``<out>/fig<N>/<sigma>-<table>-<theory|sim>.csv``).

Caching: every computed point is stored as ``<out>/cache/points/<hash>.json``, the hash taken over what
determines it (kind, parameters, ``D``, seeds, Monte-Carlo sizes), and trained pre-training weights as
``<out>/cache/pretrain-*.npz``; a rerun computes only what changed, and an interrupted run resumes.
Progress is printed on stderr, one line per point.

Where a theory is not available (it raises a parameter error at its first point), that curve is left out
with a message and the rest is drawn.

This script parses the command line; the work is :func:`figures.make` (:mod:`figures.compute`).
"""

from __future__ import annotations

import argparse
import sys

import figures
from lora_attn.cli import add_executor_flags
from model.params import SIGMAS, ParameterError
from simulate.executors import check_executor, make_executor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fig", type=int, nargs="+", choices=(1, 2, 3, 4), default=[1, 2, 3, 4])
    ap.add_argument("--sigma", nargs="+", choices=SIGMAS, default=["linear", "softmax"])
    ap.add_argument("--quick", action="store_true",
                    help="coarse grids, D = 60, Monte-Carlo 400: a smoke run (output figures/out)")
    ap.add_argument("--no-sim", action="store_true", help="theory only (no simulation markers)")
    ap.add_argument("--no-theory", action="store_true", help="simulation markers only")
    ap.add_argument("--D", type=int, default=None, help="dimension of the simulations (default 150, quick 60)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per simulated point (default 2)")
    ap.add_argument("--out", default=None,
                    help="output folder (default figures/paper, the figures shown in the README; quick: figures/out)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="σ values computed at once, one process each (default 1: on 2 cores two processes were "
                         "slower than one after the other, JAX's threads contending; worth it with more cores)")
    add_executor_flags(ap)  # where the seeds of the simulation markers run
    args = ap.parse_args(argv)
    try:
        check_executor(args.executor, workers=args.workers, scheduler=args.scheduler)
    except ParameterError as err:
        print(f"paper_figs: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("paper_figs: --jobs must be ≥ 1", file=sys.stderr)
        return 2
    if args.no_sim and args.no_theory:
        print("paper_figs: nothing to draw (--no-sim and --no-theory)", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("paper_figs: --seeds must be ≥ 1", file=sys.stderr)
        return 2
    try:
        executor = make_executor(args.executor, workers=args.workers, scheduler=args.scheduler) if args.jobs == 1 else None
    except ParameterError as err:
        print(f"paper_figs: {err}", file=sys.stderr)
        return 2
    try:
        return figures.make(figs=args.fig, sigmas=args.sigma, quick=args.quick, D=args.D, seeds=args.seeds,
                            out=args.out, simulations=not args.no_sim, theory_lines=not args.no_theory, jobs=args.jobs,
                            argv=sys.argv[1:] if argv is None else list(argv), executor=executor)
    finally:
        if executor is not None:
            executor.close()


if __name__ == "__main__":
    sys.exit(main())
