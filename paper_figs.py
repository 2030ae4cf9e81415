"""Regenerate the figure set of MODEL.md §6: ``python paper_figs.py [--fig N ...] [--sigma ...] [--quick]``.

Theory lines (when the theory is available), Bayes-optimal lines and the frozen baseline, simulation
markers with error bars at ``D = 150``. Each panel's table is written next to the figure as CSV; tables
are computed through resumable sweeps, so a rerun only computes what is missing and an interrupted run
resumes. Trained pre-training weights are cached in ``<out>/cache``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from figures.specs import FigureSpec, Sweep, figure_specs
from lora_attn.params import SIGMAS
from lora_attn.sweep import grid, run_sweep


def theory_available() -> bool:
    """Whether ``theory.solve`` (the chained asymptotic theory of both stages) is importable."""
    try:
        from theory import solve  # noqa: F401
    except ImportError:
        return False
    return True


def compute_table(sweep: Sweep, kind: str, out_dir: Path, *, D: int, seeds: int) -> Any:
    """The tidy table of one sweep (``kind`` = ``"theory"`` or ``"sim"``), resumed from its CSV."""
    points = grid(sweep.base, [(name, list(values)) for name, values in sweep.axes])
    path = out_dir / f"{sweep.base.sigma}-{sweep.name}-{kind}.csv"
    if kind == "sim":
        from simulate import run

        cache = str(out_dir / "cache")

        def point(p, warm):
            return run(p, D, seeds, seed=0, cache_dir=cache).row(), None

        return run_sweep(points, point, out=path, extra_columns={"D": D, "seeds": seeds})
    from theory import solve

    def point(p, warm):
        result = solve(p, init=warm)
        return result.row(), result.warm

    return run_sweep(points, point, out=path)


def make_figure(spec: FigureSpec, sigma: str, out_dir: Path, *, D: int, seeds: int, simulate: bool,
                theory: bool) -> list[str]:
    """Compute the tables behind ``spec`` for ``sigma`` and draw it; returns the written figure paths."""
    from figures import panels

    data_dir = out_dir / f"fig{spec.number}"
    data_dir.mkdir(parents=True, exist_ok=True)
    theory_tables = {s.name: compute_table(s, "theory", data_dir, D=D, seeds=seeds) for s in spec.theory} if theory else {}
    sim_tables = {s.name: compute_table(s, "sim", data_dir, D=D, seeds=seeds) for s in spec.simulation} if simulate else {}
    draw = getattr(panels, f"figure{spec.number}")
    return draw(theory_tables, sim_tables, sigma=sigma, stem=str(out_dir / f"fig{spec.number}_{sigma}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fig", type=int, nargs="+", choices=(1, 2, 3, 4), default=[1, 2, 3, 4])
    ap.add_argument("--sigma", nargs="+", choices=SIGMAS, default=list(SIGMAS))
    ap.add_argument("--quick", action="store_true", help="coarse grids and 1 seed: a smoke run")
    ap.add_argument("--no-sim", action="store_true", help="theory only (no simulation markers)")
    ap.add_argument("--no-theory", action="store_true", help="simulation markers only")
    ap.add_argument("--D", type=int, default=150, help="dimension of the simulations (default 150)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per simulated point (default 3, quick 1)")
    ap.add_argument("--out", default="figures/out", help="output folder (default figures/out)")
    args = ap.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    use_theory = not args.no_theory
    if use_theory and not theory_available():
        print("paper_figs: the asymptotic theory is not available yet (issues #3–#5); "
              "drawing simulation markers only (--no-theory).", file=sys.stderr)
        use_theory = False
    if args.no_sim and not use_theory:
        print("paper_figs: nothing to draw (no theory and --no-sim)", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for sigma in args.sigma:
        specs = figure_specs(sigma, quick=args.quick)
        for number in args.fig:
            t1 = time.perf_counter()
            paths = make_figure(specs[number], sigma, out_dir, D=args.D, seeds=seeds, simulate=not args.no_sim,
                                theory=use_theory)
            print(f"[paper_figs] figure {number} ({sigma}) in {time.perf_counter() - t1:.0f} s: {', '.join(paths)}",
                  file=sys.stderr, flush=True)
    print(f"[paper_figs] done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
