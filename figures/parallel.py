"""Running the figure set in several processes: ``paper_figs.py --jobs N``.

The work is split into tasks ``(σ, figures)``: figures 1 and 2 of one ``σ`` together (they share pre-training:
the theory's, held in memory, and the simulated weights), every other figure alone. The tasks are started
longest first (:data:`COST`, measured) and a new one starts as soon as any running one ends, so ``N``
processes stay busy. Each task reruns ``paper_figs.py`` for its ``σ`` and figures with ``--jobs 1``; the
processes share the point cache (one file per point, written atomically), so a rerun or an interrupted run
resumes whatever the split was.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

SCRIPT = Path(__file__).resolve().parents[1] / "paper_figs.py"

#: Figures that share pre-training (theory and simulated weights: figure 2 is at figure 1's base point), so one
#: process computes them.
SHARED_PRETRAINING = (1, 2)

#: Relative cost of a task (CPU seconds of the default run, figures with markers; ``BENCHMARKS.md``), used
#: only to start the longest first.
COST = {("softmax", (1, 2)): 900, ("softmax", (5,)): 400, ("softmax", (4,)): 250, ("softmax", (3,)): 150,
        ("softmax", (6,)): 150, ("softmax", (7,)): 100, ("linear", (1, 2)): 350, ("linear", (5,)): 150,
        ("linear", (4,)): 100, ("linear", (3,)): 60, ("linear", (6,)): 80, ("linear", (7,)): 100}


def default_jobs() -> int:
    """Processes of a default run: the CPUs this process may use (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def child_tasks(sigmas: Sequence[str], figs: Sequence[int]) -> list[tuple[str, list[int]]]:
    """The tasks of a parallel run, longest first (:data:`COST`): per ``σ``, figures 1 and 2 together and each
    other figure alone."""
    tasks = []
    for sigma in sigmas:
        shared = [f for f in figs if f in SHARED_PRETRAINING]
        groups = ([shared] if shared else []) + [[f] for f in figs if f not in SHARED_PRETRAINING]
        tasks += [(sigma, sorted(group)) for group in groups]
    return sorted(tasks, key=lambda t: -COST.get((t[0], tuple(t[1])), 100 * len(t[1])))


def child_argv(argv: list[str], sigma: str, figs: Sequence[int] | None = None) -> list[str]:
    """``argv`` of ``paper_figs.py`` restricted to one ``sigma``, one job and (if given) the figures ``figs``
    (``--sigma``/``--jobs``/``--fig`` replaced)."""
    replaced = ("--sigma", "--jobs") + (("--fig",) if figs is not None else ())
    out, skip = [], False
    for a in argv:
        if a in replaced:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        if a.startswith(tuple(f"{r}=" for r in replaced)):
            continue
        out.append(a)
    fig = ["--fig", *map(str, figs)] if figs is not None else []
    return out + fig + ["--sigma", sigma, "--jobs", "1"]


def run_children(argvs: list[list[str]], labels: list[str], jobs: int, *, script: str | Path = SCRIPT,
                 poll: float = 0.2) -> int:
    """Run ``script`` once per ``argvs`` entry, at most ``jobs`` at a time, in the given order, starting the next
    as soon as any running one ends; each stderr line is prefixed by its label, and each task's wall time is
    printed when it ends. Returns the largest exit status."""

    def relay(proc: subprocess.Popen, label: str) -> None:
        for line in proc.stderr:
            sys.stderr.write(f"[{label}] {line}")
            sys.stderr.flush()

    pending = list(zip(argvs, labels))
    running: list[tuple[subprocess.Popen, threading.Thread, str, float]] = []
    rc = 0
    try:
        while pending or running:
            while pending and len(running) < jobs:
                a, label = pending.pop(0)
                proc = subprocess.Popen([sys.executable, str(script), *a], stderr=subprocess.PIPE, text=True)
                thread = threading.Thread(target=relay, args=(proc, label), daemon=True)
                thread.start()
                running.append((proc, thread, label, time.perf_counter()))
            done = [r for r in running if r[0].poll() is not None]
            if not done:
                time.sleep(poll)
                continue
            for proc, thread, label, t0 in done:
                running.remove((proc, thread, label, t0))
                thread.join()
                rc = max(rc, proc.returncode)
                print(f"[paper_figs] task {label} ended (exit {proc.returncode}) after "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        for proc, *_ in running:
            proc.terminate()
        raise
    return rc
