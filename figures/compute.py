"""The computation behind the figure set of MODEL.md §6: the tables of every sweep, cached point by point.

Theory lines (:func:`theory.solve`, warm-started along each curve), Bayes-optimal lines
(:func:`theory.solve_bayes_pretrain` for pre-training), the frozen baseline, and simulation markers with
error bars (:func:`simulate.run`). Every figure is written as PDF and PNG with the CSV table behind each panel
(``<out>/fig<N>/<sigma>-<table>-<theory|sim>.csv``).

Caching: every computed point is stored as ``<out>/cache/points/<hash>.json`` (:class:`PointCache`), the hash
taken over what determines it (kind, parameters, ``D``, seeds, Monte-Carlo sizes), and trained pre-training
weights as ``<out>/cache/pretrain-*.npz`` (:mod:`simulate.cache`); a rerun computes only what changed, and an
interrupted run resumes. Progress is printed on stderr, one line per point.

Where a theory is not available (it raises :class:`ParameterError` at its first point), that curve is left
out with a message and the rest is drawn.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

import simulate
import theory
from figures import panels
from figures.specs import FigureSpec, Sweep, figure_specs
from model.params import ParameterError, Params
from model.tables import atomic_write, grid, run_sweep

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
#: The script a parallel run starts once per σ (:func:`run_children`).
SCRIPT = Path(__file__).resolve().parents[1] / "paper_figs.py"


class PointCache:
    """One JSON file per computed point, ``<dir>/<hash>.json`` (written atomically)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(kind: str, params: Params, settings: dict[str, Any]) -> str:
        """The hash of ``(version of kind, kind, params, settings)``: what determines the point."""
        payload = {"version": CACHE_VERSION.get(kind, DEFAULT_CACHE_VERSION), "kind": kind, "params": params.to_dict(),
                   "settings": settings}
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
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump({k: _plain(v) for k, v in row.items()}, f)

        atomic_write(self.directory / f"{key}.json", write)


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _unplain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def point_function(sweep: Sweep, cache: PointCache, *, D: int, seeds: int, n_mc: int, sim_cache: str,
                   executor: Any = None):
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
            return simulate.run(p, D, seeds, seed=0, cache_dir=sim_cache, executor=executor).row(), None
        if kind == "bayes_pretrain":
            b = theory.solve_bayes_pretrain(p)
            return {"Q_BO": b.Q_BO, "E_pre_BO": b.E_pre_BO, "E_pre_BO_sem": b.E_pre_BO_sem,
                    "converged": bool(b.converged)}, None
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
                  sim_cache: str, executor: Any = None) -> pd.DataFrame | None:
    """The tidy table of one sweep (written as CSV in ``out_dir``), or ``None`` where its theory is not
    available."""
    points = grid(sweep.base, [(name, list(values)) for name, values in sweep.axes])
    suffix = "sim" if sweep.kind == "sim" else "theory"
    path = out_dir / f"{sweep.base.sigma}-{sweep.name}-{suffix}.csv"
    if path.exists():
        path.unlink()  # the per-point cache is the resumable store; the CSV is rewritten from it
    fn = point_function(sweep, cache, D=D, seeds=seeds, n_mc=n_mc, sim_cache=sim_cache, executor=executor)
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


def make_figure(spec: FigureSpec, sigma: str, out_dir: Path, *, D: int, seeds: int, n_mc: int, simulations: bool,
                theory_lines: bool, executor: Any = None) -> list[str]:
    """Compute the tables behind ``spec`` for ``sigma`` (theory lines and / or simulation markers) and draw it
    (:mod:`figures.panels`); returns the written figure paths."""
    data_dir = out_dir / f"fig{spec.number}"
    data_dir.mkdir(parents=True, exist_ok=True)
    cache = PointCache(out_dir / "cache" / "points")
    kw = dict(D=D, seeds=seeds, n_mc=n_mc, sim_cache=str(out_dir / "cache"), executor=executor)
    theory_tables = _tables(spec.theory, data_dir, cache, **kw) if theory_lines else {}
    sim_tables = _tables(spec.simulation, data_dir, cache, **kw) if simulations else {}
    draw = getattr(panels, f"figure{spec.number}")
    return draw(theory_tables, sim_tables, sigma=sigma, stem=str(out_dir / f"fig{spec.number}_{sigma}"),
                D=D if sim_tables else None)


def make(*, figs: Sequence[int] = (1, 2, 3, 4), sigmas: Sequence[str] = ("linear", "softmax"), quick: bool = False,
         D: int | None = None, seeds: int = 2, out: str | Path | None = None, simulations: bool = True,
         theory_lines: bool = True, jobs: int = 1, argv: Sequence[str] = (), executor: Any = None) -> int:
    """Compute and draw the figures ``figs`` for each ``σ`` of ``sigmas``; the exit status.

    ``D``: dimension of the simulations (default 150, quick 60); ``out``: the output folder (default
    ``figures/paper``, quick ``figures/out``); ``quick``: coarse grids and Monte-Carlo size ``N_MC[1]``.
    With ``jobs > 1`` and several ``σ``, the command line ``argv`` of ``paper_figs.py`` is rerun once per ``σ``,
    ``jobs`` processes at a time (:func:`run_children`). ``executor``: where the seeds of the simulation markers
    run (:mod:`simulate.executors`; default here).
    """
    D = D if D is not None else (60 if quick else 150)
    n_mc = N_MC[1] if quick else N_MC[0]
    out_dir = Path(out if out is not None else ("figures/out" if quick else "figures/paper"))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if jobs > 1 and len(sigmas) > 1:
        rc = run_children([child_argv(list(argv), s) for s in sigmas], list(sigmas), jobs)
        print(f"[paper_figs] all σ done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return rc
    timings = []
    for sigma in sigmas:
        specs = figure_specs(sigma, quick=quick)
        for number in figs:
            t1 = time.perf_counter()
            paths = make_figure(specs[number], sigma, out_dir, D=D, seeds=seeds, n_mc=n_mc, simulations=simulations,
                                theory_lines=theory_lines, executor=executor)
            dt = time.perf_counter() - t1
            timings.append((number, sigma, dt))
            print(f"[paper_figs] figure {number} ({sigma}) in {dt:.0f} s: {', '.join(paths)}",
                  file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    print(f"[paper_figs] done in {total:.0f} s (" + ", ".join(f"fig {n} {s}: {t:.0f} s" for n, s, t in timings) + ")",
          file=sys.stderr)
    return 0


def child_argv(argv: list[str], sigma: str) -> list[str]:
    """``argv`` of ``paper_figs.py`` restricted to one ``sigma`` and one job (``--sigma``/``--jobs`` replaced)."""
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


def run_children(argvs: list[list[str]], labels: list[str], jobs: int, *, script: str | Path = SCRIPT) -> int:
    """Run ``script`` (``paper_figs.py``) once per ``argvs`` entry, ``jobs`` at a time, each stderr line prefixed
    by its label; the largest exit status. The children share the point cache (one file per point, written
    atomically)."""

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
                proc = subprocess.Popen([sys.executable, str(script), *a], stderr=subprocess.PIPE, text=True)
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
