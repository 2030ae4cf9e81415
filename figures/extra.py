"""The figures beyond MODEL.md §6 that ``paper_figs.py`` draws: 5, the phase diagram of LoRA fine-tuning
(:mod:`figures.phase_diagram`); 6, the prescriptions (:mod:`figures.prescriptions`); 7, the LoRA rank against
``α'`` (:mod:`figures.rank`). Theory only, each with its own computation (cached in ``<out>/cache/points`` like
the others) and drawing."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

#: Figure number → module (imported when drawn).
EXTRA_FIGURES = {5: "figures.phase_diagram", 6: "figures.prescriptions", 7: "figures.rank"}


def make_extra(figs: Sequence[int], sigmas: Sequence[str], *, quick: bool = False, out: str | Path | None = None,
               theory_lines: bool = True) -> int:
    """Compute and draw the figures ``figs`` (of :data:`EXTRA_FIGURES`) for each σ; the exit status (0). Output
    folder as :func:`figures.make`: ``out``, else ``figures/paper`` (quick: ``figures/out``)."""
    import importlib

    from figures.compute import output_folder

    if not theory_lines:
        print(f"[paper_figs] figures {', '.join(map(str, figs))}: theory only, left out with --no-theory",
              file=sys.stderr, flush=True)
        return 0
    out_dir = output_folder(out, quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for sigma in sigmas:
        for number in figs:
            t1 = time.perf_counter()
            paths = importlib.import_module(EXTRA_FIGURES[number]).make(sigma, out_dir, quick=quick)
            print(f"[paper_figs] figure {number} ({sigma}) in {time.perf_counter() - t1:.0f} s: {', '.join(paths)}",
                  file=sys.stderr, flush=True)
    print(f"[paper_figs] figures {', '.join(map(str, figs))} done in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)
    return 0
