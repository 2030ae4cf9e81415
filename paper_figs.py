"""Regenerate the figure set of MODEL.md §6: ``python paper_figs.py [--fig N ...] [--sigma ...] [--quick]``.

Dense theory lines (:func:`theory.solve`, ≥ 30 points on an adaptive grid, warm-started along each line;
:mod:`figures.lines`), dense Bayes-optimal lines, the frozen baseline, and simulation markers with error bars at
``D = 150`` (2 seeds; for linear σ with the theory of the test errors at that ``D`` at each marker), or, with
``--markers extrapolated --D 100,150,200``, markers extrapolated to ``D → ∞``. Every figure is written as PDF
and PNG with the CSV table behind each panel (``<out>/fig<N>/<sigma>-<table>-<theory|sim>.csv``).

Caching: every computed point is stored as ``<out>/cache/points/<hash>.json``, the hash taken over what
determines it (kind, parameters, ``D``, seeds, Monte-Carlo sizes), and trained pre-training weights as
``<out>/cache/pretrain-*.npz``; a rerun computes only what changed, and an interrupted run resumes. JAX's
compiled programs are kept in ``<out>/cache/jax`` (:mod:`model.compile_cache`), so the processes of a run
compile each program once.
Progress is printed on stderr, one line per point.

Where a theory is not available (it raises a parameter error at its first point), that curve is left out
with a message and the rest is drawn.

This script parses the command line; the work is :func:`figures.make` (:mod:`figures.compute`).
"""

from __future__ import annotations

import argparse
import sys
import time

import figures
from figures.compute import output_folder
from figures.extra import EXTRA_FIGURES, make_extra
from figures.parallel import child_argv, child_tasks, default_jobs, run_children
from lora_attn.cli import add_executor_flags
from model import compile_cache
from model.params import SIGMAS, ParameterError
from simulate.executors import check_executor, make_executor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fig", type=int, nargs="+", choices=(1, 2, 3, 4, 5, 6, 7), default=[1, 2, 3, 4, 5, 6, 7],
                    help="figures to draw (default all): 1-4 of MODEL.md §6, 5 the phase diagram, 6 the prescriptions, "
                         "7 the LoRA rank against α' (theory only, figures.extra)")
    ap.add_argument("--sigma", nargs="+", choices=SIGMAS, default=["linear", "softmax"])
    ap.add_argument("--quick", action="store_true",
                    help="coarse grids, D = 60, Monte-Carlo 400: a smoke run (output figures/out)")
    ap.add_argument("--no-sim", action="store_true", help="theory only (no simulation markers)")
    ap.add_argument("--no-theory", action="store_true", help="simulation markers only")
    ap.add_argument("--D", default=None, metavar="D[,D...]",
                    help="dimension of the simulations (default 150, quick 60); with --markers extrapolated, the "
                         "sizes to extrapolate from (default 100,150,200; quick 40,60,80)")
    ap.add_argument("--markers", choices=("D", "extrapolated"), default="D",
                    help="simulation markers at one D (default; for linear σ the theory of the test errors at that D "
                         "is marked at each marker, a short bar), or each marker extrapolated to D → ∞ by a fit "
                         "a + b/D over the sizes of --D (validation.extrapolate)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per simulated point (default 2)")
    ap.add_argument("--out", default=None,
                    help="output folder (default figures/paper, the figures shown in the README; quick: figures/out)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="processes at once (default: the CPUs available, at most 8): the work is split into tasks, "
                         "per σ figures 1-2 (they share pre-training) and each other figure, longest first "
                         "(figures.parallel); the theory is single-threaded")
    add_executor_flags(ap)  # where the seeds of the simulation markers run
    args = ap.parse_args(argv)
    try:
        check_executor(args.executor, workers=args.workers, scheduler=args.scheduler)
    except ParameterError as err:
        print(f"paper_figs: {err}", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print("paper_figs: --jobs must be ≥ 1", file=sys.stderr)
        return 2
    if args.no_sim and args.no_theory:
        print("paper_figs: nothing to draw (--no-sim and --no-theory)", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("paper_figs: --seeds must be ≥ 1", file=sys.stderr)
        return 2
    try:
        sizes = parse_sizes(args.D, args.markers, args.quick)
    except ParameterError as err:
        print(f"paper_figs: {err}", file=sys.stderr)
        return 2
    jobs = default_jobs() if args.jobs is None else args.jobs
    tasks = child_tasks(args.sigma, args.fig)
    parallel = jobs > 1 and len(tasks) > 1  # then each task is a child process with its own executor
    try:
        executor = None if parallel else make_executor(args.executor, workers=args.workers, scheduler=args.scheduler)
    except ParameterError as err:
        print(f"paper_figs: {err}", file=sys.stderr)
        return 2
    try:
        if parallel:
            t0 = time.perf_counter()
            rc = run_children([child_argv(sys.argv[1:] if argv is None else list(argv), s, f) for s, f in tasks],
                              [f"{s} fig {','.join(map(str, f))}" for s, f in tasks], jobs)
            print(f"[paper_figs] all done in {time.perf_counter() - t0:.0f} s ({jobs} processes)", file=sys.stderr)
            return rc
        compile_cache.enable(output_folder(args.out, args.quick) / "cache" / "jax")
        rc = 0
        old = [f for f in args.fig if f not in EXTRA_FIGURES]
        new = [f for f in args.fig if f in EXTRA_FIGURES]
        if old:
            rc = figures.make(figs=old, sigmas=args.sigma, quick=args.quick,
                              D=sizes[0] if args.markers == "D" else None, seeds=args.seeds, markers=args.markers,
                              Ds=sizes if args.markers == "extrapolated" else (),
                              out=args.out, simulations=not args.no_sim, theory_lines=not args.no_theory,
                              executor=executor)
        if new:
            rc = max(rc, make_extra(new, args.sigma, quick=args.quick, out=args.out,
                                    theory_lines=not args.no_theory))
        return rc
    finally:
        if executor is not None:
            executor.close()


def parse_sizes(text: str | None, markers: str, quick: bool) -> list[int]:
    """The simulation sizes of ``--D``: one (``--markers D``; ``None`` keeps the default) or at least two distinct
    ones (``--markers extrapolated``)."""
    if text is None:
        if markers == "D":
            return [None]
        return [40, 60, 80] if quick else [100, 150, 200]
    try:
        sizes = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise ParameterError(f"--D {text!r}: expected an integer or a comma-separated list of integers") from None
    if any(D < 2 for D in sizes):
        raise ParameterError(f"--D {text!r} is out of range: allowed integers D ≥ 2")
    if markers == "D" and len(sizes) != 1:
        raise ParameterError(f"--D {text!r}: one size with --markers D (several need --markers extrapolated)")
    if markers == "extrapolated" and len(set(sizes)) < 2:
        raise ParameterError(f"--D {text!r}: --markers extrapolated needs at least two distinct sizes")
    return sorted(set(sizes)) if markers == "extrapolated" else sizes


if __name__ == "__main__":
    sys.exit(main())
