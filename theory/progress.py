"""Progress of long theory solves, on stderr, whatever the output format (``--json`` included).

The stages call :func:`tick` at every evaluation of their map (the expensive step: a Monte-Carlo channel);
nothing is printed unless a caller asked for it with :func:`report`, and then at most one line every
``every`` seconds, so a quick solve prints nothing and a slow one (minutes on a hard point) says what it is
doing: ``[theory] finetune: 37 map evaluations, last at q=0.52 m=0.49 v=0.08 (62 s)``.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

_reporters: list["_Reporter"] = []


class _Reporter:
    def __init__(self, label: str, stream: TextIO | None, every: float):
        self.label, self.stream, self.every = label, stream, every
        self.t0 = self.last = time.monotonic()
        self.counts: dict[str, int] = {}

    def tick(self, part: str, state: dict[str, Any]) -> None:
        self.counts[part] = self.counts.get(part, 0) + 1
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        where = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in state.items())
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"[{self.label}] {part}: {self.counts[part]} map evaluations"
              f"{', last at ' + where if where else ''} ({now - self.t0:.0f} s)", file=stream, flush=True)


@contextmanager
def report(label: str = "theory", *, stream: TextIO | None = None, every: float = 10.0) -> Iterator[None]:
    """Within the block, print a progress line at most every ``every`` seconds (default 10) on ``stream``
    (default stderr) while a theory solve runs."""
    rep = _Reporter(label, stream, every)
    _reporters.append(rep)
    try:
        yield
    finally:
        _reporters.remove(rep)


def tick(part: str, **state: Any) -> None:
    """One map evaluation of ``part`` (``pretrain``, ``finetune``, ...) at ``state`` (the point, as floats);
    a no-op unless within :func:`report`."""
    if _reporters:
        _reporters[-1].tick(part, {k: float(v) if hasattr(v, "__float__") else v for k, v in state.items()})
