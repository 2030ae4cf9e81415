"""The one fixed-point driver of the theory: every convergence policy of every stage lives here.

- :func:`fixed_point`: damped iteration ``x ← (1 − damping)·step(x) + damping·x`` until
  ``max_i |step(x)_i − x_i| / (atol + rtol |x_i|) < 1``, optionally with Anderson mixing over the last ``m``
  iterates (type II: ``γ = argmin ‖f_k − ΔF γ‖``, ``f = step(x) − x``;
  ``x ← x_k + (1−damping) f_k − (ΔX + (1−damping) ΔF) γ``), which cuts the number of (expensive,
  Monte-Carlo) map evaluations; the history is cleared whenever the residual grows tenfold or the
  extrapolated point leaves the map's domain (a non-finite step), so a bad extrapolation falls back to plain
  damping. It never returns a non-converged result silently: ``converged`` and ``status`` say what happened,
  and ``throw=True`` raises :class:`FixedPointError` instead.
- :func:`anderson_approach`: a fast Anderson approach to the fixed point within a projection onto an
  admissible set (the pre-training's pre-iteration), which :func:`fixed_point` then certifies.
- :func:`root_fallback`: where both iterations fail, the fixed point as a root of ``G(x) = step(x) − x``
  (Powell's hybrid method), accepted by its Newton correction.
- :func:`phased_fixed_point`: the fine-tuning's schedule: a cheap map first, then the full map; Anderson
  mixing, then plain damping, then the root fallback.

A model supplies a pure ``step: x -> x_new`` on a dataclass (or tuple/dict) of floats.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

import numpy as np
from scipy.optimize import root

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
        status: ``"converged"``, ``"max_steps"``, ``"stalled"`` or ``"nonfinite"``.
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


def _differences(history: list[np.ndarray], *, row_major: bool) -> np.ndarray:
    """Successive differences of ``history`` as the columns of an ``n × (len − 1)`` matrix. Its memory
    layout is part of the result: BLAS sums ``(ΔX + mix ΔF)γ`` in a layout-dependent order, and each loop
    keeps the layout it was validated with (the two differ at the rounding level)."""
    d = np.diff(np.array(history), axis=0).T
    return np.ascontiguousarray(d) if row_major else d


def anderson_extrapolate(dX: np.ndarray, dF: np.ndarray, f: np.ndarray, base: np.ndarray, mix: float) -> np.ndarray:
    """Type-II Anderson extrapolation ``base − (ΔX + mix·ΔF)γ``, ``γ = argmin_γ ‖f − ΔF γ‖`` (least squares),
    with ``ΔX, ΔF`` the differences of the last iterates and residuals (columns) and ``base = x + mix·f``."""
    gamma = np.linalg.lstsq(dF, f, rcond=None)[0]
    return base - (dX + mix * dF) @ gamma


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
    """Damped iteration ``x_{k+1} = (1 − damping) step(x_k) + damping x_k`` (module doc).

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
            fallback = None
            if len(fs) > 1:
                mixed = anderson_extrapolate(_differences(xs, row_major=False), _differences(fs, row_major=False),
                                             f, damped, 1.0 - damping)
                if np.all(np.isfinite(mixed)):
                    fallback, damped = damped, mixed
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


def anderson_approach(step: Callable[[X], X], x0: X, *, project: Callable[[X], X] = lambda x: x,
                      admissible: Callable[[X], bool] = lambda x: True, depth: int = 4, max_iter: int = 40,
                      tol: float = 1e-7, mix: float = 0.7) -> X:
    """Anderson (type II) mixing of ``x ↦ step(x)`` within ``project``: a fast approach to the fixed point that
    :func:`fixed_point` then certifies (no verdict of its own).

    Each step maps the projected iterate, stops once ``max |step(x) − x| / (1e-10 + |x|) < tol`` (returning the
    projected image), and moves to :func:`anderson_extrapolate` over the last ``depth + 1`` iterates with
    ``base = x + mix·f``, or to the plain mixed step ``base`` when the extrapolation is not finite or not
    ``admissible``. A step that raises ``ValueError`` or ``FloatingPointError`` (the map failed there) ends the
    approach at the last iterate. Returns the projected last iterate."""
    x, unflatten = _flatten(x0)

    def point(v: np.ndarray) -> X:
        return project(unflatten(v))

    xs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    for _ in range(max_iter):
        try:
            gx = _flatten(step(point(x)))[0]
        except (ValueError, FloatingPointError):
            break
        f = gx - x
        if np.max(np.abs(f) / (1e-10 + np.abs(x))) < tol:
            return point(gx)
        xs.append(x)
        fs.append(f)
        xs, fs = xs[-(depth + 1):], fs[-(depth + 1):]
        x_new = x + mix * f
        if len(fs) > 1:
            cand = anderson_extrapolate(_differences(xs, row_major=True), _differences(fs, row_major=True),
                                        f, x_new, mix)
            if np.all(np.isfinite(cand)) and admissible(unflatten(cand)):
                x_new = cand
        x = x_new
    return point(x)


#: A root of :func:`root_fallback` is accepted when its Newton correction is below ``ROOT_RTOL`` relative (and
#: ``atol``): two orders below the Monte-Carlo error of the fine-tuning fixed point at the usual ``n_mc``
#: (``q`` to about 1 %).
ROOT_RTOL = 1e-4
#: Relative step of the central differences of ``J`` in :func:`root_fallback`: wide enough to average over a
#: Monte-Carlo map's jumps (``hybr`` tends to stop on one), small against the scale on which ``G`` bends.
JACOBIAN_STEP = 1e-3

#: ``residual(x) -> (G(x), output)``: ``G(x) = step(x) − x`` as a vector, ``None`` outside the map's domain, and
#: the map's output at ``x`` (kept for the accepted root).
Residual = Callable[[np.ndarray], tuple["np.ndarray | None", Any]]


def root_fallback(residual: Residual, starts: Sequence[np.ndarray], *, atol: float, rtol: float = ROOT_RTOL,
                  jacobian_step: float = JACOBIAN_STEP,
                  hybr_step: float | None = None) -> tuple[bool, dict[str, Any]]:
    """Solve ``G(x) = 0`` with Powell's hybrid method (``scipy.optimize.root``, ``hybr``) from each of ``starts``
    in turn, until one is accepted.

    Why: a map can have a Jacobian eigenvalue far outside ``(−1, 1)`` at its fixed point (fine-tuning, linear
    σ, ``α' = 0.5``, ``δ ≈ 0.3``: ``∂step_q/∂q ≈ −28``), so damping needs ``1 − damping ≲ 0.07``, and Anderson
    mixing is thrown off by a Monte-Carlo map's small jumps (a sample whose prox switches between local minima
    as the overlaps move). The jumps also stop ``hybr`` short of an exact zero, so a root is judged by its
    Newton correction ``δ = −J⁻¹G(x)`` (``J`` by central differences of relative step ``jacobian_step``):
    accepted when ``|δ_i| < atol + rtol·|x_i|`` for every ``i`` and ``G`` is defined at ``x`` and around it.
    Outside the domain ``G`` reads as ``1e3`` in every component (``hybr`` has no bounds). ``hybr_step``: the
    relative step of ``hybr``'s own forward-difference Jacobian (MINPACK's ``epsfcn = hybr_step²``; ``None``:
    its default, the square root of the machine precision), for a map whose inner solves are accurate only to
    a coarser level (the rank-``r`` prox: a step of ``1e-8`` reads its tolerance, not the slope).

    Returns ``(accepted, info)``: ``info`` has ``n_evals`` (map evaluations over all starts), and for the last
    start ``message``, ``residual`` (``max_i |G_i|``), ``newton_correction`` and, when it got that far,
    ``point`` (the root) and ``out`` (the map's output there)."""
    ok, info = False, {}
    for x0 in starts:
        n_before = info.get("n_evals", 0)
        ok, info = _root_from(residual, x0, atol, rtol, jacobian_step, hybr_step)
        info["n_evals"] += n_before
        if ok:
            break
    return ok, info


def _root_from(residual: Residual, x0: np.ndarray, atol: float, rtol: float,
               jacobian_step: float, hybr_step: float | None = None) -> tuple[bool, dict[str, Any]]:
    n_evals = 0

    def evaluate(x):
        nonlocal n_evals
        n_evals += 1
        return residual(x)

    def G(x):
        g, _ = evaluate(x)
        return g if g is not None else np.full(x.shape, 1e3)

    options: dict[str, float] = {"xtol": 1e-10}
    if hybr_step is not None:
        options["eps"] = hybr_step ** 2  # MINPACK's epsfcn: relative step √eps
    sol = root(G, x0, method="hybr", options=options)
    x = sol.x
    g, out = evaluate(x)
    info: dict[str, Any] = {"n_evals": n_evals, "message": str(sol.message), "residual": float("nan"),
                            "newton_correction": float("nan")}
    if g is None:
        info["n_evals"] = n_evals
        return False, info
    n = x.shape[0]
    J = np.empty((n, n))
    for j in range(n):
        h = jacobian_step * max(abs(x[j]), 1e-3)
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        (gp, _), (gm, _) = evaluate(xp), evaluate(xm)
        if gp is None or gm is None:
            info["n_evals"] = n_evals
            return False, info
        J[:, j] = (gp - gm) / (2 * h)
    try:
        delta = -np.linalg.solve(J, g)
    except np.linalg.LinAlgError:
        info["n_evals"] = n_evals
        return False, info
    rel = float(np.max(np.abs(delta) / (atol + rtol * np.abs(x))))
    info.update(n_evals=n_evals, residual=float(np.max(np.abs(g))), newton_correction=rel, point=x, out=out)
    return rel < 1.0, info


#: Step budget of the cheap phase of :func:`phased_fixed_point`.
CHEAP_PHASE_STEPS = 40

P = TypeVar("P")


@dataclass(frozen=True)
class PhasedResult(Generic[P]):
    """Outcome of :func:`phased_fixed_point`.

    Attributes:
        converged: a run (or the root fallback) ended on a verified fixed point.
        status: the last full-phase run's (or its verdict's), or ``"root"``.
        payload: what ``verify`` made of the last full-phase run, or ``from_root`` of the accepted root.
        cheap, full: the two phases' results of the last attempt.
        fallback: ``False`` (the first attempt), ``True`` (the plain-damping attempt) or ``"root"``.
        root: the record of :func:`root_fallback` (``{}`` when not tried; without ``point`` and ``out``).
        n_steps: map evaluations of the last attempt's two phases and of the root fallback.
        residual: the root's ``max |G|`` or the last full-phase run's residual.
    """

    converged: bool
    status: str
    payload: P
    cheap: FixedPointResult[Any]
    full: FixedPointResult[Any]
    fallback: bool | str
    n_steps: int
    residual: float
    root: dict[str, Any] = field(default_factory=dict)


def phased_fixed_point(
    cheap_step: Callable[[X], X],
    full_step: Callable[[X], X],
    start: X,
    *,
    verify: Callable[[FixedPointResult[X]], tuple[bool, str, P]],
    damping: float,
    rtol: float,
    atol: float,
    max_steps: int,
    anderson: int,
    patience: int | None,
    residual: Residual | None = None,
    root_starts: Callable[[], Sequence[np.ndarray]] = lambda: (),
    from_root: Callable[[np.ndarray, Any], P] | None = None,
    cheap_steps: int = CHEAP_PHASE_STEPS,
    hybr_step: float | None = None,
) -> PhasedResult[P]:
    """Solve ``x = full_step(x)`` in phases, where ``cheap_step`` has the same fixed point at a fraction of the
    cost but may fail to contract.

    An attempt runs :func:`fixed_point` on ``cheap_step`` from ``start`` (at most ``min(max_steps, cheap_steps)``
    steps), then on ``full_step`` from the cheap phase's point when it converged (else from ``start``; at most
    ``max_steps`` steps, with ``patience``), and asks ``verify(full run) -> (ok, status, payload)``. The first
    attempt mixes with Anderson memory ``anderson``; if it is not verified (and ``anderson > 0``) a second
    attempt damps plainly. If that fails too, :func:`root_fallback` solves ``residual`` from ``root_starts()``
    (when there are any; ``hybr_step`` passed on) and ``from_root(point, output)`` makes the payload of an
    accepted root."""
    attempts = (anderson, 0) if anderson else (0,)
    for accel in attempts:
        cheap = fixed_point(cheap_step, start, damping=damping, rtol=rtol, atol=atol,
                            max_steps=min(max_steps, cheap_steps), anderson=accel)
        full = fixed_point(full_step, cheap.value if cheap.converged else start, damping=damping, rtol=rtol,
                           atol=atol, max_steps=max_steps, anderson=accel, patience=patience)
        ok, status, payload = verify(full)
        if ok:
            break
    fallback: bool | str = accel != anderson
    record: dict[str, Any] = {}
    if not ok:
        starts = root_starts()
        if starts:
            ok, record = root_fallback(residual, starts, atol=atol, hybr_step=hybr_step)
            point, out = record.pop("point", None), record.pop("out", None)
            if ok:
                status, payload, fallback = "root", from_root(point, out), "root"
    return PhasedResult(converged=ok, status=status, payload=payload, cheap=cheap, full=full, fallback=fallback,
                        n_steps=cheap.n_steps + full.n_steps + record.get("n_evals", 0),
                        residual=record["residual"] if status == "root" else full.residual, root=record)
