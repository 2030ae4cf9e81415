"""Prescriptions: the parameter values that minimise an observable of the theory (MODEL.md §4–§5).

:func:`optimize` minimises one observable of :func:`theory.solve` (``E_ft`` by default) over one or several
continuous parameters: the pre-training weight decay ``λ``, the LoRA ridge ``λ'``, the frozen weights' rescaling
``β_W`` (``recalibrate``), the kept fraction ``ρ`` of active fine-tuning, the sample ratios, ….

One parameter (:func:`minimize_scalar_robust`): a grid of ``n_grid`` points over the bounds (log-spaced for the
positive parameters), then Brent's bounded minimiser (:func:`scipy.optimize.minimize_scalar`,
``method="bounded"``) on the two grid cells around the grid's lowest point. When the grid has more than one
local minimum the objective is not unimodal over the bounds: the refinement is then local to the grid's lowest
point, and the result says so (``unimodal = False``). The objective is deterministic: every evaluation solves
the theory with the same Monte-Carlo keys (common random numbers), so differences between points are not
Monte-Carlo noise. Evaluations whose fixed point did not converge are NaN, excluded from the search, and
counted (``excluded``) and kept in the curve.

Several parameters: coordinate-wise minimisation — a first cycle of one-parameter searches over the full bounds,
then cycles over a bracket of one grid cell on each side of the current minimiser, until no coordinate moves by
more than ``xtol`` (on its search scale) in a cycle or ``max_cycles`` is reached.

Every evaluation starts its pre-training from the nearest solved point (``init``, :class:`theory.api.WarmStart`):
points sharing the pre-training parameters (a search over ``λ'``, ``β_W``, ``ρ``, ``α'``) solve it once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

import theory
from model.observables import BAYES_FINETUNE, BAYES_PRETRAIN, PRETRAIN_THEORY
from model.params import PRETRAIN_FIELDS, ParameterError, Params


@dataclass(frozen=True)
class Axis:
    """A parameter the optimiser can move: its search scale and default bounds."""

    name: str
    log: bool
    bounds: tuple[float, float]
    field: str


#: The parameters :func:`optimize` searches over (``beta_W`` sets ``Params.recalibrate`` to a number).
AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("lam", True, (1e-3, 10.0), "lam"),
    Axis("lam_prime", True, (1e-3, 100.0), "lam_prime"),
    Axis("beta_W", True, (0.05, 5.0), "recalibrate"),
    Axis("active_rho", True, (1e-3, 1.0), "active_rho"),
    Axis("alpha", True, (1e-3, 1.0), "alpha"),
    Axis("alpha_prime", True, (0.1, 100.0), "alpha_prime"),
    Axis("kappa", True, (0.1, 10.0), "kappa"),
    Axis("pool_ratio", True, (1.0, 1000.0), "pool_ratio"),
    Axis("beta", True, (0.1, 10.0), "beta"),
    Axis("reuse", False, (0.0, 1.0), "reuse"),
)}
#: Accepted other names of an axis.
ALIASES = {"recalibrate": "beta_W", "rho": "active_rho"}
#: Discrete parameters: every value in the bounds is solved (:func:`theory.optimal_rank.optimize_discrete`).
DISCRETE = ("rank",)


def axis(name: str) -> Axis:
    """The :class:`Axis` called ``name`` (or an alias of it); :class:`ParameterError` otherwise."""
    a = AXES.get(ALIASES.get(name, name))
    if a is None:
        raise ParameterError(f"over {name!r} is not a parameter the optimiser moves: allowed one of "
                             f"{', '.join(AXES)}")
    return a


def set_axis(params: Params, name: str, value: float) -> Params:
    """``params`` with the parameter of axis ``name`` at ``value``."""
    return params.replace(**{axis(name).field: float(value)})


# ------------------------------------------------------------------------------------ one dimension
@dataclass(frozen=True)
class ScalarSearch:
    """A one-dimensional search: ``x`` minimising ``f`` (NaN if no evaluation converged), ``fun = f(x)``,
    whether Brent's refinement met its tolerance (``converged``), the grid's ``unimodal`` verdict, ``at_bound``
    (the minimiser within ``xtol`` of a bound: the true minimum may lie outside), and every evaluation
    ``(x, f(x), phase)`` in order."""

    x: float
    fun: float
    converged: bool
    unimodal: bool
    at_bound: bool
    evaluations: tuple[tuple[float, float, str], ...]

    @property
    def n_evaluations(self) -> int:
        return len(self.evaluations)

    @property
    def excluded(self) -> int:
        """Evaluations that gave NaN (did not converge)."""
        return sum(1 for _, f, _ in self.evaluations if not math.isfinite(f))


def local_minima(values: Sequence[float]) -> list[int]:
    """Indices of the local minima of ``values`` among its finite entries (an end counts when below its one
    finite neighbour); a flat run counts once."""
    idx = [i for i, v in enumerate(values) if math.isfinite(v)]
    ys = [values[i] for i in idx]
    out = []
    for k, y in enumerate(ys):
        left = ys[k - 1] if k > 0 else math.inf
        right = ys[k + 1] if k + 1 < len(ys) else math.inf
        if y < left and y <= right:
            out.append(idx[k])
    return out


def minimize_scalar_robust(f: Callable[[float], float], bounds: tuple[float, float], *, log: bool = True,
                           n_grid: int = 7, xtol: float = 1e-2, max_refine: int = 30, grid: Sequence[float] | None = None,
                           phase: str = "", tag_sink: dict[str, str] | None = None) -> ScalarSearch:
    """Minimise ``f`` over ``bounds`` (module doc): grid, then bounded Brent on the cells around its minimum.

    Args:
        f: the objective; NaN for a failed evaluation.
        bounds: ``(lo, hi)``, ``lo < hi`` (``lo > 0`` on a log scale).
        log: search ``log x`` (``xtol`` is then relative: ``1e-2`` ≈ 1 %).
        n_grid: grid points (≥ 3), ends included; ignored when ``grid`` is given.
        xtol: Brent's absolute tolerance on the search scale.
        max_refine: Brent's evaluation cap.
        grid: explicit grid points (inside ``bounds``), e.g. a bracket around a previous minimiser.
        phase: a label for the evaluations (``"<phase>grid"``, ``"<phase>refine"``).
        tag_sink: a dict whose ``"phase"`` is set to that label before each call of ``f``.
    """
    lo, hi = (float(b) for b in bounds)
    if not lo < hi or (log and lo <= 0):
        raise ParameterError(f"bounds = {bounds!r}: allowed lo < hi{' and lo > 0 (log scale)' if log else ''}")
    if grid is None and n_grid < 3:
        raise ParameterError(f"n_grid = {n_grid!r} is out of range: allowed ≥ 3")
    to_s = (lambda x: math.log(x)) if log else (lambda x: x)
    from_s = (lambda s: math.exp(s)) if log else (lambda s: s)
    cache: dict[float, float] = {}
    evals: list[tuple[float, float, str]] = []

    def g(s: float, tag: str) -> float:
        x = min(max(from_s(s), lo), hi)
        if x not in cache:
            if tag_sink is not None:
                tag_sink["phase"] = phase + tag
            y = float(f(x))
            cache[x] = y if math.isfinite(y) else math.nan
            evals.append((x, cache[x], phase + tag))
        return cache[x]

    ss = sorted({to_s(min(max(float(x), lo), hi)) for x in grid}) if grid is not None else \
        list(np.linspace(to_s(lo), to_s(hi), n_grid))
    ys = [g(s, "grid") for s in ss]
    minima = local_minima(ys)
    if not minima:
        return ScalarSearch(x=math.nan, fun=math.nan, converged=False, unimodal=False, at_bound=False,
                            evaluations=tuple(evals))
    i = min(minima, key=lambda k: ys[k])
    a, b = ss[max(i - 1, 0)], ss[min(i + 1, len(ss) - 1)]
    converged = True
    if b - a > xtol:
        res = minimize_scalar(lambda s: _finite_or_big(g(s, "refine"), ys), bounds=(a, b), method="bounded",
                              options={"xatol": xtol, "maxiter": max_refine})
        converged = bool(res.success)
    x_best, y_best = min(((x, y) for x, y, _ in evals if math.isfinite(y)), key=lambda t: t[1])
    s_best = to_s(x_best)
    at_bound = min(abs(s_best - to_s(lo)), abs(s_best - to_s(hi))) <= xtol
    return ScalarSearch(x=x_best, fun=y_best, converged=converged, unimodal=len(minima) == 1, at_bound=at_bound,
                        evaluations=tuple(evals))


def _finite_or_big(y: float, ys: Sequence[float]) -> float:
    """A failed evaluation counts as worse than every grid value (Brent's method needs a number)."""
    if math.isfinite(y):
        return y
    finite = [v for v in ys if math.isfinite(v)]
    return (max(finite) + abs(max(finite)) + 1.0) if finite else 1e300


# ------------------------------------------------------------------------------------ the theory
@dataclass(frozen=True)
class OptimizeResult:
    """The minimiser of an observable of the theory.

    Attributes:
        minimize: the observable minimised.
        over: the parameters searched.
        argmin: ``{name: value}`` at the lowest converged evaluation.
        minimum: the observable there.
        converged: every one-dimensional refinement met its tolerance, the coordinate cycles stopped moving,
            and the point at the minimiser converged.
        n_evaluations: theory solves (distinct points).
        excluded: evaluations whose fixed point did not converge (NaN; kept in ``curve``, not searched).
        unimodal: every grid the search drew had a single local minimum (else the minimiser is local to the
            grid's lowest point; see ``notes``).
        at_bound: the parameters whose minimiser is at a bound of the search.
        method: how it was searched.
        bounds: ``{name: (lo, hi)}``.
        curve: one row per evaluation: the searched parameters, ``value``, ``converged``, ``phase`` and the
            main observables.
        point: the :class:`theory.TheoryPoint` at the minimiser (``None`` if none converged).
        notes: plain-language remarks (non-unimodal grids, minimisers at a bound, excluded points).
    """

    minimize: str
    over: tuple[str, ...]
    argmin: dict[str, float]
    minimum: float
    converged: bool
    n_evaluations: int
    excluded: int
    unimodal: bool
    at_bound: tuple[str, ...]
    method: str
    bounds: dict[str, tuple[float, float]]
    curve: pd.DataFrame = field(repr=False)
    point: Any = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """The result as plain JSON values (NaN as ``None``), with the curve as a list of records and the
        point's observables."""
        from theory.api import _plain
        return _plain({
            "minimize": self.minimize, "over": list(self.over), "argmin": self.argmin, "minimum": self.minimum,
            "converged": self.converged, "n_evaluations": self.n_evaluations, "excluded": self.excluded,
            "unimodal": self.unimodal, "at_bound": list(self.at_bound), "method": self.method,
            "bounds": {k: list(v) for k, v in self.bounds.items()}, "notes": list(self.notes),
            "observables": dict(self.point.observables) if self.point is not None else None,
            "params": self.point.params.to_dict() if self.point is not None else None,
            "curve": self.curve.to_dict(orient="records"),
        })


#: Observables copied from each evaluation into ``curve`` (when the point reports them).
CURVE_OBSERVABLES = ("E_pre", "E_ft", "E_frozen", "delta_eff", "beta_W", "q", "o_w", "E_ft_BO")


def _stage_for(minimize: str, over: Sequence[str], stage: str | None) -> str:
    pre_only = minimize in PRETRAIN_THEORY or minimize in BAYES_PRETRAIN
    if stage is not None:
        return stage
    if pre_only:
        bad = [n for n in over if axis(n).field not in PRETRAIN_FIELDS]
        if bad:
            raise ParameterError(f"minimize = {minimize!r} is a pre-training observable: it does not depend on "
                                 f"{', '.join(bad)} (allowed: pre-training parameters {', '.join(PRETRAIN_FIELDS)})")
        return "pretrain"
    return "both"


def _bayes_for(minimize: str) -> bool | str:
    if minimize in BAYES_FINETUNE:
        return "finetune"
    if minimize in BAYES_PRETRAIN:
        return "pretrain"
    return False


def optimize(params: Params, minimize: str = "E_ft", over: Sequence[str] = ("lam_prime",),
             bounds: Mapping[str, tuple[float, float]] | None = None, *, n_grid: int = 7, xtol: float = 1e-2,
             max_cycles: int = 4, stage: str | None = None, progress: bool = False,
             **solve_options: Any) -> OptimizeResult:
    """Minimise the observable ``minimize`` of :func:`theory.solve` over the parameters ``over`` (module doc).

    Args:
        params: the point; the parameters in ``over`` are its starting values only in name (the first grid
            covers the bounds).
        minimize: an observable of :func:`theory.solve` (``E_ft``, ``E_pre``, ``delta_eff``, ``E_ft_BO``, …).
        over: names from :data:`AXES` (``lam, lam_prime, beta_W, active_rho, alpha, alpha_prime, kappa,
            pool_ratio, beta, reuse``; ``recalibrate`` is ``beta_W``), or the discrete ``rank`` alone (every
            integer in ``bounds["rank"]``, default ``1..4``: :func:`theory.optimal_rank.optimize_discrete`).
        bounds: ``{name: (lo, hi)}``; missing names take the axis' default.
        n_grid: points of the first grid per parameter.
        xtol: tolerance on each search scale (``log x`` for positive parameters: relative).
        max_cycles: coordinate cycles (several parameters).
        stage: the theory stage (default: ``"pretrain"`` for a pre-training observable, else ``"both"``).
        progress: print one line per evaluation on stderr.
        solve_options: passed to :func:`theory.solve` (``n_mc``, ``key``, ``pretrain``, ``q0``, …); ``key``
            is fixed across evaluations (default 0): common random numbers.

    Returns:
        An :class:`OptimizeResult`.
    """
    if not isinstance(params, Params):
        raise ParameterError(f"params = {params!r} must be a model.params.Params")
    if any(n in DISCRETE for n in ((over,) if isinstance(over, str) else over)):
        from theory.optimal_rank import optimize_discrete
        return optimize_discrete(params, minimize, (over,) if isinstance(over, str) else tuple(over), bounds,
                                 progress=progress, **solve_options)
    over = tuple(axis(n).name for n in ((over,) if isinstance(over, str) else over))
    if not over or len(set(over)) != len(over):
        raise ParameterError(f"over = {over!r}: allowed one or more distinct parameters")
    if "active_rho" in over and params.active_rho is None:
        raise ParameterError("over active_rho needs active fine-tuning: give active_rho a starting value")
    if "reuse" in over and params.active_rho is not None:
        raise ParameterError("over reuse cannot be combined with active_rho (allowed: active_rho = None)")
    box = {n: tuple(float(b) for b in (bounds or {}).get(n, axis(n).bounds)) for n in over}
    for n in (bounds or {}):
        if axis(n).name not in over:
            raise ParameterError(f"bounds for {n!r}, which is not in over = {over!r}")
    for n, (lo, hi) in box.items():
        if not lo < hi or (axis(n).log and lo <= 0):
            raise ParameterError(f"bounds {n} = ({lo}, {hi}): allowed lo < hi" + (", lo > 0" if axis(n).log else ""))
        if n == "reuse" and not (0 <= lo and hi <= 1):
            raise ParameterError(f"bounds reuse = ({lo}, {hi}): allowed within [0, 1]")
        if n == "active_rho" and not (0 < lo and hi <= 1):
            raise ParameterError(f"bounds active_rho = ({lo}, {hi}): allowed within (0, 1]")
    st = _stage_for(minimize, over, stage)
    bayes = _bayes_for(minimize)
    solve_options = {"key": 0, **solve_options}
    theory.check(params, stage=st, pretrain=solve_options.get("pretrain"), bayes=bayes,
                 **{k: v for k, v in solve_options.items() if k in ("q0", "n_mc", "max_steps")})

    points: dict[tuple[float, ...], Any] = {}
    rows: list[dict[str, Any]] = []
    current = {n: _start(params, n, box[n]) for n in over}

    tag: dict[str, str] = {"phase": ""}

    def evaluate(values: Mapping[str, float]) -> float:
        phase = tag["phase"]
        k = tuple(float(values[n]) for n in over)
        if k in points:
            return _value(points[k], minimize)
        p = params
        for n in over:
            p = set_axis(p, n, values[n])
        init = _nearest(points, k)
        r = theory.solve(p, init=init.warm if init is not None else None, stage=st, bayes=bayes, **solve_options)
        points[k] = r
        y = _value(r, minimize)
        row = {n: values[n] for n in over}
        row.update(value=y, converged=bool(r.converged), phase=phase)
        row.update({o: float(r.observables[o]) for o in CURVE_OBSERVABLES if o in r.observables})
        rows.append(row)
        if progress:
            import sys
            print(f"[optimize] {phase}: " + ", ".join(f"{n}={values[n]:.6g}" for n in over)
                  + f" → {minimize} = {y:.6g}", file=sys.stderr, flush=True)
        return y

    notes: list[str] = []
    unimodal, converged, at_bound = True, True, set()
    searches = []
    for cycle in range(max_cycles if len(over) > 1 else 1):
        moved = 0.0
        for n in over:
            a = axis(n)
            lo, hi = box[n]
            if cycle == 0:
                grid = None
            else:
                s = _scale(current[n], a.log)
                step = (_scale(hi, a.log) - _scale(lo, a.log)) / (n_grid - 1) / (2 ** (cycle - 1))
                grid = [_unscale(min(max(s + d * step, _scale(lo, a.log)), _scale(hi, a.log)), a.log)
                        for d in (-1, 0, 1)]

            def f(x: float, n: str = n) -> float:
                return evaluate({**current, n: x})
            r = minimize_scalar_robust(f, (lo, hi), log=a.log, n_grid=n_grid, xtol=xtol, grid=grid,
                                       phase=f"{n} " if len(over) == 1 else f"cycle {cycle} {n} ", tag_sink=tag)
            searches.append((n, r))
            if not math.isfinite(r.x):
                converged = False
                notes.append(f"{n}: no evaluation converged in cycle {cycle}")
                continue
            moved = max(moved, abs(_scale(r.x, a.log) - _scale(current[n], a.log)))
            current[n] = r.x
            converged = converged and r.converged
            if not r.unimodal:
                unimodal = False
                notes.append(f"{n}: the objective has several local minima on the grid of cycle {cycle}; the "
                             "refinement is local to the grid's lowest point")
        if len(over) > 1 and moved <= xtol:
            break
    else:
        if len(over) > 1:
            converged = False
            notes.append(f"coordinate cycles still moving after max_cycles = {max_cycles}")

    finite = [(k, r) for k, r in points.items() if math.isfinite(_value(r, minimize))]
    excluded = len(points) - len(finite)
    if excluded:
        notes.append(f"{excluded} evaluation(s) did not converge: excluded from the search (converged = False "
                     "in the curve)")
    if not finite:
        return OptimizeResult(minimize=minimize, over=over, argmin={n: math.nan for n in over}, minimum=math.nan,
                              converged=False, n_evaluations=len(points), excluded=excluded, unimodal=False,
                              at_bound=(), method=_method(over), bounds=box, curve=pd.DataFrame(rows),
                              point=None, notes=tuple(notes))
    k_best, best = min(finite, key=lambda t: _value(t[1], minimize))
    argmin = dict(zip(over, k_best))
    for n in over:
        a = axis(n)
        lo, hi = box[n]
        if min(abs(_scale(argmin[n], a.log) - _scale(lo, a.log)),
               abs(_scale(argmin[n], a.log) - _scale(hi, a.log))) <= xtol:
            at_bound.add(n)
            notes.append(f"{n}: the minimiser is at a bound of the search ({lo:g}, {hi:g}); the minimum may lie "
                         "outside it")
    curve = pd.DataFrame(rows)
    return OptimizeResult(minimize=minimize, over=over, argmin=argmin, minimum=_value(best, minimize),
                          converged=bool(converged and best.converged), n_evaluations=len(points),
                          excluded=excluded, unimodal=unimodal, at_bound=tuple(sorted(at_bound)),
                          method=_method(over), bounds=box, curve=curve, point=best, notes=tuple(notes))


def _method(over: Sequence[str]) -> str:
    one = "grid, then bounded Brent on the grid's lowest cells"
    return one if len(over) == 1 else f"coordinate-wise ({one}, then one-cell brackets per cycle)"


def _value(point: Any, minimize: str) -> float:
    if minimize not in point.observables:
        raise ParameterError(f"minimize = {minimize!r} is not an observable of this point: allowed one of "
                             f"{', '.join(point.observables)}")
    y = float(point.observables[minimize])
    return y if point.converged and math.isfinite(y) else math.nan


def _nearest(points: Mapping[tuple[float, ...], Any], k: tuple[float, ...]) -> Any:
    """The solved point nearest to ``k`` (log distance), for its warm start."""
    best, dist = None, math.inf
    for kk, r in points.items():
        d = sum(abs(math.log(max(a, 1e-300)) - math.log(max(b, 1e-300))) for a, b in zip(kk, k))
        if d < dist and r.converged:
            best, dist = r, d
    return best


def _scale(x: float, log: bool) -> float:
    return math.log(x) if log else x


def _unscale(s: float, log: bool) -> float:
    return math.exp(s) if log else s


def _start(params: Params, name: str, box: tuple[float, float]) -> float:
    """The current value of an axis at ``params``, clipped into its bounds (the geometric middle when unset)."""
    a = axis(name)
    v = getattr(params, a.field)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        v = math.sqrt(box[0] * box[1]) if a.log else 0.5 * (box[0] + box[1])
    return min(max(float(v), box[0]), box[1])
