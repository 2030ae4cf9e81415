"""Dense theory lines: a coarse grid refined where the line bends or its fixed point changes kind.

A line is computed at parameter values ``t ∈ [0, 1]`` (the axis ``lo..hi``, on a log scale where the panel
has one) and drawn at display coordinates ``(x, y)``; for a plain line ``x = t``, for a curve parametrised
otherwise (the Bayes-optimal fine-tuning curve by its overlap ``q``) ``x`` is where the point lands. The first
grid is 5 evenly spaced values, halved level by level down to the spacing ``1/(n_coarse − 1)`` except inside
stretches whose two ends the theory does not resolve; then each round of :func:`refine` inserts the midpoints of

1. intervals whose two ends differ in *status* (converged / replica-symmetric / switched off / not converged:
   :func:`point_status`), down to a width ``min_step``: the kinks ``λ' = λ'_c``, the edges of gaps and of faded
   parts are located;
2. intervals next to a point that lies off the chord of its neighbours by more than ``bend_tol`` (in units of
   the line's range, display coordinates: the second difference relative to the range), down to ``min_step``;
3. intervals longer than ``max_gap`` in display coordinates (a steep or fast-moving parametrised curve);
4. the longest remaining resolved intervals until the line has ``n_min`` points;

never (in 2–4) an interval with a *slow* end (:func:`is_slow`: a fine-tuning fixed point that needed more than
:data:`SLOW_STEPS` iterations or the root fallback, near a bifurcation, e.g. softmax at ``α' = 0.5``, where a point
costs 20–400 s against about 0.3 s elsewhere; such an interval is refined only for a change of status, and only
down to ``1/16`` of the axis), and never an interval whose two ends the theory does not resolve (both not converged, both not
replica-symmetric, both switched off: :data:`UNRESOLVED`): parts drawn faded, flat or as a gap keep the first
grid's spacing (a quarter of the axis) but for the points that locate their edges, and no time goes into
points whose numbers the theory does not vouch for (there a point can cost minutes: a line unresolved
everywhere has 5 points; ``n_min`` counts the resolved part). At most
``max_points`` points per line. The grid depends only on the computed values, so a rerun from the point cache
reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np

#: The first grid of a line: ``FIRST_LEVEL + 1`` evenly spaced points, then halved down to ``n_coarse`` spacing
#: where the line is resolved (:func:`dense_line`).
FIRST_LEVEL = 4
#: Statuses of a point (:func:`point_status`).
OK, UNSTABLE, OFF, FAILED = "ok", "rs_unstable", "switched_off", "not_converged"
#: Statuses whose stretches are not refined: drawn as a gap (not converged), faded (the RS check fails) or flat
#: (``ŵ = 0``).
UNRESOLVED = (UNSTABLE, OFF, FAILED)
#: A fine-tuning fixed point that needed more iterations than this is *slow* (:func:`is_slow`): typical points
#: need 9–13 (softmax, figure lines), those near a bifurcation 50–550.
SLOW_STEPS = 50
#: Narrowest interval with a slow end that a change of status refines (fraction of the axis).
SLOW_MIN_STEP = 1.0 / 16


@dataclass(frozen=True)
class Line:
    """A dense theory axis.

    Attributes:
        name: the parameter along the line.
        lo, hi: its range; ``log``: log-spaced (the panel's x axis is logarithmic).
        n_min: fewest points on a line; ``n_coarse``: the first grid; ``max_points``: the most points.
        bend_tol: a point further than this from the chord of its neighbours (fraction of the line's range)
            has its two intervals refined; ``max_gap``: longest display step (fraction of the ranges);
            ``min_step``: narrowest interval refined (fraction of ``hi − lo`` in ``t``).
        observables: the drawn observables the refinement looks at (the others are computed too).
    """

    name: str
    lo: float
    hi: float
    log: bool = True
    n_min: int = 30
    n_coarse: int = 17
    max_points: int = 60
    bend_tol: float = 0.01
    max_gap: float = 0.12
    min_step: float = 1.0 / 64
    observables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.lo < self.hi) or (self.log and self.lo <= 0):
            raise ValueError(f"Line {self.name}: lo = {self.lo}, hi = {self.hi}: allowed lo < hi (and lo > 0 on a "
                             "log scale)")
        if not (2 <= self.n_coarse <= self.n_min <= self.max_points):
            raise ValueError(f"Line {self.name}: allowed 2 ≤ n_coarse ≤ n_min ≤ max_points")

    def value(self, t: float) -> float:
        """The parameter value at ``t ∈ [0, 1]`` (six significant digits, so tables and cache keys are tidy)."""
        if self.log:
            v = math.exp(math.log(self.lo) + t * (math.log(self.hi) - math.log(self.lo)))
        else:
            v = self.lo + t * (self.hi - self.lo)
        return float(f"{v:.6g}")

    def position(self, value: float) -> float:
        """``t`` of a parameter value (the inverse of :meth:`value`)."""
        if self.log:
            return (math.log(value) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def coarse(self) -> list[float]:
        return [float(t) for t in np.linspace(0.0, 1.0, self.n_coarse)]


def point_status(row: dict) -> str:
    """The kind of a computed point: :data:`FAILED` (not converged), :data:`OFF` (the LoRA switched off,
    ``ŵ = 0``), :data:`UNSTABLE` (the replica-symmetry check fails), else :data:`OK`."""
    conv = row.get("converged", True)
    if conv is None or (isinstance(conv, float) and math.isnan(conv)) or not bool(conv):
        return FAILED
    if str(row.get("ft_status", "")).startswith("switched_off"):
        return OFF
    rs = row.get("rs_stable")
    if rs is not None and not (isinstance(rs, float) and math.isnan(rs)) and not bool(rs):
        return UNSTABLE
    return OK


def is_slow(row: dict) -> bool:
    """Whether a point's fine-tuning fixed point was slow to find: more than :data:`SLOW_STEPS` iterations
    (``n_steps_finetune``) or found only as a root (``ft_status = root``)."""
    n = row.get("n_steps_finetune")
    try:
        many = n is not None and float(n) > SLOW_STEPS
    except (TypeError, ValueError):
        many = False
    return many or str(row.get("ft_status", "")) == "root"


def _normalised(y: np.ndarray) -> np.ndarray | None:
    finite = np.isfinite(y)
    if finite.sum() < 3:
        return None
    span = float(np.ptp(y[finite]))
    return None if span <= 0 else (y - np.min(y[finite])) / span


def refine(t: Sequence[float], x: Sequence[float], ys: Sequence[Sequence[float]], status: Sequence[Hashable], *,
           n_min: int, max_points: int, bend_tol: float, max_gap: float, min_step: float,
           slow: Sequence[bool] | None = None) -> list[float]:
    """The midpoints (in ``t``) to compute next, by the rules of the module doc; empty when the line is done.

    ``t``: sorted parameter values; ``x``: their display abscissae scaled to ``[0, 1]``; ``ys``: the drawn
    observables (NaN where undefined), each scaled here by its own range; ``status``: one label per point."""
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    n = len(t)
    room = max_points - n
    if n < 2 or room <= 0:
        return []
    width = np.diff(t)
    slow = np.zeros(n, dtype=bool) if slow is None else np.asarray(slow, dtype=bool)
    slow_end = slow[:-1] | slow[1:]
    # intervals not refined but for a change of status: both ends unresolved alike, or an end slow to compute
    same_unresolved = np.array([status[i] == status[i + 1] and status[i] in UNRESOLVED for i in range(n - 1)]) \
        | slow_end
    open_ = width > min_step * (1 + 1e-9)
    score = np.zeros(n - 1)  # priority: switches, then bends, then long display steps
    switch = np.array([status[i] != status[i + 1] for i in range(n - 1)]) & open_ \
        & (~slow_end | (width > SLOW_MIN_STEP * (1 + 1e-9)))
    score[switch] = 3.0
    scaled = [s for s in (_normalised(np.asarray(y, dtype=float)) for y in ys) if s is not None]
    step = np.zeros(n - 1)
    for y in scaled:
        dy = np.abs(np.diff(y))
        step = np.fmax(step, np.hypot(np.diff(x), np.where(np.isfinite(dy), dy, 0.0)))
        for j in range(1, n - 1):
            a, b, c = y[j - 1], y[j], y[j + 1]
            if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)) or x[j + 1] <= x[j - 1]:
                continue
            chord = a + (c - a) * (x[j] - x[j - 1]) / (x[j + 1] - x[j - 1])
            dev = abs(b - chord)
            if dev > bend_tol:
                for i in (j - 1, j):
                    if open_[i] and not same_unresolved[i]:
                        score[i] = max(score[i], 2.0 + min(dev, 0.99))
    if not scaled:
        step = np.abs(np.diff(x))
    long_ = (step > max_gap) & open_ & ~same_unresolved
    score[long_ & (score == 0)] = 1.0 + np.minimum(step[long_ & (score == 0)], 0.99)
    chosen = [i for i in np.argsort(-score, kind="stable") if score[i] > 0][:room]
    short = n_min - n - len(chosen)
    if short > 0:
        # the longest resolved intervals first (display length, then width in t)
        rest = [i for i in range(n - 1) if i not in chosen and width[i] > 1e-9 and not same_unresolved[i]]
        rest.sort(key=lambda i: -max(step[i], width[i]))
        chosen += rest[:min(short, room - len(chosen))]
    return sorted(float(0.5 * (t[i] + t[i + 1])) for i in chosen)


def dense_line(line: Line, evaluate: Callable[[float], dict], *, x_of: Callable[[dict], float] | None = None,
               extra: Sequence[float] = (), max_rounds: int = 12) -> list[dict]:
    """Compute one line: ``evaluate(t) -> row`` at the coarse grid and at ``extra`` (e.g. where simulation
    markers sit, so the line's value there is computed, not interpolated), then at the midpoints :func:`refine`
    asks for, round by round; the rows, sorted by ``t`` (each carries ``"_t"``). ``x_of(row)``: the display
    abscissa in ``[0, 1]`` (default ``t``)."""
    rows: dict[float, dict] = {}

    def add(ts: Sequence[float]) -> None:
        for t in ts:
            if t not in rows:
                rows[t] = {**evaluate(t), "_t": t}

    add(sorted({float(t) for t in np.linspace(0.0, 1.0, FIRST_LEVEL + 1)} | {float(t) for t in extra if 0.0 <= t <= 1.0}))
    # down to the coarse spacing, level by level, skipping the inside of stretches the theory does not resolve
    spacing = 1.0 / FIRST_LEVEL
    while spacing > 1.0 / (line.n_coarse - 1) + 1e-12:
        ts = sorted(rows)
        status = [point_status(rows[t]) for t in ts]
        slow = [is_slow(rows[t]) for t in ts]
        add([0.5 * (a + b) for a, b, sa, sb, wa, wb in zip(ts[:-1], ts[1:], status[:-1], status[1:], slow[:-1], slow[1:])
             if b - a > spacing / 2 + 1e-12 and not (sa == sb and sa in UNRESOLVED) and not (wa or wb)])
        spacing /= 2
    for _ in range(max_rounds):
        ts = sorted(rows)
        ordered = [rows[t] for t in ts]
        xs = [t if x_of is None else x_of(r) for t, r in zip(ts, ordered)]
        ys = [[_float(r.get(name)) for r in ordered] for name in line.observables]
        new = refine(ts, xs, ys, [point_status(r) for r in ordered], n_min=line.n_min, max_points=line.max_points,
                     bend_tol=line.bend_tol, max_gap=line.max_gap, min_step=line.min_step,
                     slow=[is_slow(r) for r in ordered])
        if not new:
            break
        add(new)
    return [rows[t] for t in sorted(rows)]


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
