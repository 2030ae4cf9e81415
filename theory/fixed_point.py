"""One generic damped fixed-point driver, shared by every stage of the theory.

A model supplies a pure ``step: x -> x_new`` on a dataclass (or tuple/dict) of floats; this driver
iterates ``x ← (1 − damping)·step(x) + damping·x`` until
``max_i |step(x)_i − x_i| / (atol + rtol |x_i|) < 1``, and returns a :class:`FixedPointResult`.
With ``anderson = m > 0`` the damped update is replaced by Anderson mixing over the last ``m`` iterates
(type II: ``γ = argmin ‖f_k − ΔF γ‖``, ``f = step(x) − x``; ``x ← x_k + (1−damping) f_k − (ΔX + (1−damping) ΔF) γ``),
which cuts the number of (expensive, Monte-Carlo) map evaluations; the history is cleared whenever the
residual grows tenfold or the extrapolated point leaves the map's domain (a non-finite step), so a bad
extrapolation falls back to plain damping.
It never returns a non-converged result silently: ``converged`` and ``status`` say what happened,
and ``throw=True`` raises :class:`FixedPointError` instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import numpy as np

X = TypeVar("X")


class FixedPointError(RuntimeError):
    """Raised by :func:`fixed_point` with ``throw=True`` when the iteration fails."""

    def __init__(self, message: str, result: "FixedPointResult[Any]"):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class FixedPointResult(Generic[X]):
    """Outcome of :func:`fixed_point`.

    Attributes:
        value: the last iterate.
        converged: whether the stopping criterion was met.
        n_steps: number of applications of ``step``.
        residual: last ``max_i |step(x)_i − x_i| / (atol + rtol |x_i|)`` (``< 1`` when converged).
        status: ``"converged"``, ``"max_steps"`` or ``"nonfinite"``.
    """

    value: X
    converged: bool
    n_steps: int
    residual: float
    status: str


def _flatten(x: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        names = [f.name for f in dataclasses.fields(x)]
        vals = np.array([float(getattr(x, n)) for n in names], dtype=float)
        return vals, lambda v: dataclasses.replace(x, **{n: float(a) for n, a in zip(names, v)})
    if isinstance(x, dict):
        names = list(x)
        return np.array([float(x[n]) for n in names]), lambda v: {n: float(a) for n, a in zip(names, v)}
    arr = np.asarray(x, dtype=float)
    shape = arr.shape
    if isinstance(x, tuple):
        return arr.ravel(), lambda v: tuple(float(a) for a in v)
    return arr.ravel(), lambda v: np.asarray(v).reshape(shape)


def fixed_point(
    step: Callable[[X], X],
    init: X,
    *,
    damping: float = 0.5,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 1000,
    throw: bool = False,
    anderson: int = 0,
    patience: int | None = None,
) -> FixedPointResult[X]:
    """Damped iteration ``x_{k+1} = (1 − damping) step(x_k) + damping x_k``.

    Args:
        step: pure map on a dataclass / dict / tuple / array of floats.
        init: starting point (same structure as ``step``'s output).
        damping: weight of the old iterate, ``0 ≤ damping < 1``.
        rtol, atol: stop when ``max |step(x) − x| / (atol + rtol |x|) < 1``.
        max_steps: iteration cap.
        throw: raise :class:`FixedPointError` on failure instead of returning it.
        anderson: Anderson memory ``m`` (0: plain damped iteration).
        patience: stop early with status ``"stalled"`` when the smallest residual of the last ``patience``
            steps is not below half the smallest one before them (no progress; ``None``: never).
    """
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping = {damping} is out of range: allowed 0 ≤ damping < 1")
    if max_steps < 1:
        raise ValueError(f"max_steps = {max_steps} is out of range: allowed max_steps ≥ 1")
    if not (isinstance(anderson, int) and anderson >= 0):
        raise ValueError(f"anderson = {anderson!r} is out of range: allowed an integer ≥ 0")
    if patience is not None and not (isinstance(patience, int) and patience >= 1):
        raise ValueError(f"patience = {patience!r} is out of range: allowed an integer ≥ 1 or None")
    x = init
    flat, unflatten = _flatten(x)
    residual = math.inf
    status = "max_steps"
    n = 0
    xs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    fallback: np.ndarray | None = None  # the plain damped iterate, when Anderson mixing replaced it
    history: list[float] = []
    for n in range(1, max_steps + 1):
        new_flat, _ = _flatten(step(x))
        if not np.all(np.isfinite(new_flat)) and fallback is not None:
            # the extrapolation left the map's domain: take the plain damped step and forget the history
            flat, x, xs, fs, fallback = fallback, unflatten(fallback), [], [], None
            new_flat, _ = _flatten(step(x))
        if not np.all(np.isfinite(new_flat)):
            status = "nonfinite"
            break
        previous = residual
        residual = float(np.max(np.abs(new_flat - flat) / (atol + rtol * np.abs(flat)), initial=0.0))
        f = new_flat - flat
        damped = flat + (1.0 - damping) * f
        if anderson:
            if residual > 10 * previous:
                xs, fs = [], []
            xs, fs = (xs + [flat])[-(anderson + 1):], (fs + [f])[-(anderson + 1):]
            if len(fs) > 1:
                dX = np.diff(np.array(xs), axis=0).T
                dF = np.diff(np.array(fs), axis=0).T
                gamma = np.linalg.lstsq(dF, f, rcond=None)[0]
                mixed = damped - (dX + (1.0 - damping) * dF) @ gamma
                if np.all(np.isfinite(mixed)):
                    fallback, damped = damped, mixed
                else:
                    fallback = None
            else:
                fallback = None
        flat = damped
        x = unflatten(flat)
        if residual < 1.0:
            status = "converged"
            break
        history.append(residual)
        if patience is not None and len(history) > patience and \
                min(history[-patience:]) > 0.5 * min(history[:-patience]):
            status = "stalled"
            break
    result = FixedPointResult(value=x, converged=status == "converged", n_steps=n, residual=residual, status=status)
    if throw and not result.converged:
        raise FixedPointError(f"fixed point did not converge: status={status}, residual={residual:.3g}, steps={n}", result)
    return result
