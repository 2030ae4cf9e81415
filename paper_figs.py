"""Regenerate the figure set of MODEL.md §6: ``python paper_figs.py [--fig N ...] [--sigma ...] [--quick]``.

Theory lines (:func:`theory.solve`, warm-started along each curve), Bayes-optimal lines, the frozen
baseline, and simulation markers with error bars at ``D = 150`` (2 seeds). Every figure is written as PDF
and PNG with the CSV table behind each panel (``<out>/fig<N>/<sigma>-<table>-<theory|sim>.csv``).

Caching: every computed point is stored as ``<out>/cache/points/<hash>.json``, the hash taken over what
determines it (kind, parameters, ``D``, seeds, Monte-Carlo sizes), and trained pre-training weights as
``<out>/cache/pretrain-*.npz``; a rerun computes only what changed, and an interrupted run resumes.
Progress is printed on stderr, one line per point.

Where a theory is not available yet (it raises :class:`ParameterError` at its first point, e.g. the
softmax pre-training or reused sequences while they are being built), that curve is left out with a
message and the rest is drawn.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from figures.specs import FigureSpec, Sweep, figure_specs
from lora_attn.params import SIGMAS, ParameterError, Params
from lora_attn.sweep import grid, run_sweep

#: Bump when a change of the code changes cached numbers: per kind of point (theory lines changed with the
#: quasi-Monte Carlo channel draws (3), the ground-state selection of the fine-tuning fixed point (4) and the
#: replica-symmetry check in the rows (5), probed on at least 4000 draws (6), the prox leaving concave starts (7);
#: the simulations did not).
CACHE_VERSION = {"theory": 7}
DEFAULT_CACHE_VERSION = 2
#: Monte-Carlo draws of the fine-tuning channel for the theory lines (full, quick). At 600 a line point
#: differs from n_mc = 4000 by ≲ 2 % in E_ft (the Monte-Carlo bias of the fixed point, measured at the
#: figure-1 point and at α' = 1); `lora-attn validate` and the tests use 4000.
N_MC = (600, 400)


class PointCache:
    """One JSON file per computed point, ``<dir>/<hash>.json`` (written atomically)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(kind: str, params: Params, settings: dict[str, Any]) -> str:
        payload = {"version": CACHE_VERSION.get(kind, DEFAULT_CACHE_VERSION), "kind": kind, "params": params.to_dict(), "settings": settings}
        text = json.dumps(payload, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.directory / f"{key}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, row: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({k: _plain(v) for k, v in row.items()}, f)
        os.replace(tmp, self.directory / f"{key}.json")


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _unplain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def point_function(sweep: Sweep, cache: PointCache, *, D: int, seeds: int, n_mc: int, sim_cache: str):
    """``(params, warm) -> (row, warm)`` for ``run_sweep``, reading and filling the point cache."""
    kind = sweep.kind
    if kind == "sim":
        settings: dict[str, Any] = {"D": D, "seeds": seeds, "seed": 0}
    elif kind == "theory":
        settings = {"stage": sweep.stage, "bayes": sweep.bayes, "n_mc": n_mc}
    else:
        settings = {}

    def compute(p: Params, warm: Any) -> tuple[dict[str, Any], Any]:
        if kind == "sim":
            import simulate

            return simulate.run(p, D, seeds, seed=0, cache_dir=sim_cache).row(), None
        if kind == "bayes_pretrain":
            from theory.bayes_pretrain import solve_bayes_pretrain

            b = solve_bayes_pretrain(p)
            return {"Q_BO": b.Q_BO, "E_pre_BO": b.E_pre_BO, "E_pre_BO_sem": b.E_pre_BO_sem,
                    "converged": bool(b.converged)}, None
        import theory

        r = theory.solve(p, init=warm, stage=sweep.stage, bayes=sweep.bayes, n_mc=n_mc)
        row = {k: v for k, v in r.row().items() if k not in p.to_dict()}
        row.update({f"{k}_sem": v for k, v in r.mc_sem.items()})
        return row, r.warm

    def point(p: Params, warm: Any) -> tuple[dict[str, Any], Any]:
        key = PointCache.key(kind, p, settings)
        hit = cache.get(key)
        if hit is not None:
            return _unplain(hit), warm
        row, new_warm = compute(p, warm)
        cache.put(key, row)
        return row, new_warm

    return point


def compute_table(sweep: Sweep, out_dir: Path, cache: PointCache, *, D: int, seeds: int, n_mc: int,
                  sim_cache: str) -> pd.DataFrame | None:
    """The tidy table of one sweep (written as CSV in ``out_dir``), or ``None`` where its theory is not
    available yet."""
    points = grid(sweep.base, [(name, list(values)) for name, values in sweep.axes])
    suffix = "sim" if sweep.kind == "sim" else "theory"
    path = out_dir / f"{sweep.base.sigma}-{sweep.name}-{suffix}.csv"
    if path.exists():
        path.unlink()  # the per-point cache is the resumable store; the CSV is rewritten from it
    fn = point_function(sweep, cache, D=D, seeds=seeds, n_mc=n_mc, sim_cache=sim_cache)
    print(f"[paper_figs] {sweep.base.sigma} {sweep.name} ({sweep.kind}): {len(points)} points",
          file=sys.stderr, flush=True)
    try:
        return run_sweep(points, fn, out=path)
    except ParameterError as err:
        if sweep.kind == "sim":
            raise
        print(f"[paper_figs] {sweep.base.sigma} {sweep.name}: no theory line — {err}", file=sys.stderr, flush=True)
        path.unlink(missing_ok=True)
        return None


def _tables(sweeps, out_dir: Path, cache: PointCache, **kw) -> dict[str, pd.DataFrame]:
    parts: dict[str, list[pd.DataFrame]] = {}
    for s in sweeps:
        t = compute_table(s, out_dir, cache, **kw)
        if t is not None and len(t):
            parts.setdefault(s.table_name, []).append(t)
    return {name: pd.concat(ts, ignore_index=True) for name, ts in parts.items()}


def make_figure(spec: FigureSpec, sigma: str, out_dir: Path, *, D: int, seeds: int, n_mc: int, simulate: bool,
                theory: bool) -> list[str]:
    """Compute the tables behind ``spec`` for ``sigma`` and draw it; returns the written figure paths."""
    from figures import panels

    data_dir = out_dir / f"fig{spec.number}"
    data_dir.mkdir(parents=True, exist_ok=True)
    cache = PointCache(out_dir / "cache" / "points")
    kw = dict(D=D, seeds=seeds, n_mc=n_mc, sim_cache=str(out_dir / "cache"))
    theory_tables = _tables(spec.theory, data_dir, cache, **kw) if theory else {}
    sim_tables = _tables(spec.simulation, data_dir, cache, **kw) if simulate else {}
    draw = getattr(panels, f"figure{spec.number}")
    return draw(theory_tables, sim_tables, sigma=sigma, stem=str(out_dir / f"fig{spec.number}_{sigma}"),
                D=D if sim_tables else None)


def child_argv(argv: list[str], sigma: str) -> list[str]:
    """``argv`` of this script restricted to one ``sigma`` and one job (``--sigma``/``--jobs`` replaced)."""
    out, skip = [], False
    for a in argv:
        if a in ("--sigma", "--jobs"):
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        if a.startswith(("--sigma=", "--jobs=")):
            continue
        out.append(a)
    return out + ["--sigma", sigma, "--jobs", "1"]


def run_children(argvs: list[list[str]], labels: list[str], jobs: int) -> int:
    """Run this script once per ``argvs`` entry, ``jobs`` at a time, each stderr line prefixed by its label;
    the largest exit status. The children share the point cache (one file per point, written atomically)."""
    import subprocess
    import threading

    def relay(proc: subprocess.Popen, label: str) -> None:
        for line in proc.stderr:
            sys.stderr.write(f"[{label}] {line}")
            sys.stderr.flush()

    pending = list(zip(argvs, labels))
    running: list[tuple[subprocess.Popen, threading.Thread]] = []
    rc = 0
    try:
        while pending or running:
            while pending and len(running) < jobs:
                a, label = pending.pop(0)
                proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *a], stderr=subprocess.PIPE,
                                        text=True)
                thread = threading.Thread(target=relay, args=(proc, label), daemon=True)
                thread.start()
                running.append((proc, thread))
            proc, thread = running.pop(0)
            rc = max(rc, proc.wait())
            thread.join()
    except KeyboardInterrupt:
        for proc, _ in running:
            proc.terminate()
        raise
    return rc


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
    args = ap.parse_args(argv)
    if args.jobs < 1:
        print("paper_figs: --jobs must be ≥ 1", file=sys.stderr)
        return 2
    if args.no_sim and args.no_theory:
        print("paper_figs: nothing to draw (--no-sim and --no-theory)", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("paper_figs: --seeds must be ≥ 1", file=sys.stderr)
        return 2
    D = args.D if args.D is not None else (60 if args.quick else 150)
    n_mc = N_MC[1] if args.quick else N_MC[0]
    out_dir = Path(args.out if args.out is not None else ("figures/out" if args.quick else "figures/paper"))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.jobs > 1 and len(args.sigma) > 1:
        argv = sys.argv[1:] if argv is None else list(argv)
        rc = run_children([child_argv(argv, s) for s in args.sigma], args.sigma, args.jobs)
        print(f"[paper_figs] all σ done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return rc
    timings = []
    for sigma in args.sigma:
        specs = figure_specs(sigma, quick=args.quick)
        for number in args.fig:
            t1 = time.perf_counter()
            paths = make_figure(specs[number], sigma, out_dir, D=D, seeds=args.seeds, n_mc=n_mc,
                                simulate=not args.no_sim, theory=not args.no_theory)
            dt = time.perf_counter() - t1
            timings.append((number, sigma, dt))
            print(f"[paper_figs] figure {number} ({sigma}) in {dt:.0f} s: {', '.join(paths)}",
                  file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    print(f"[paper_figs] done in {total:.0f} s (" + ", ".join(f"fig {n} {s}: {t:.0f} s" for n, s, t in timings) + ")",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
