"""The computation behind the figure set of MODEL.md §6: the tables of every sweep, cached point by point.

Dense theory lines (:func:`theory.solve` on the adaptive grids of :mod:`figures.lines`, each line warm-started
point to point, every pre-training solved once per run and shared by the lines that need it:
:class:`Pretrained`), Bayes-optimal lines (:func:`theory.solve_bayes_pretrain`; the fine-tuning curve by its
overlap, :func:`bayes_finetune_rows`), the frozen baseline, and simulation markers with error bars
(:func:`simulate.run`) at one ``D`` — with, for linear σ, the exact theory of the test errors at that ``D``
(:func:`with_finite_D_theory`) — or extrapolated to ``D → ∞`` from several (:func:`extrapolated_table`). Every
figure is written as PDF and PNG with the CSV table behind each panel
(``<out>/fig<N>/<sigma>-<table>-<theory|sim>.csv``).

Caching: every computed point is stored as ``<out>/cache/points/<hash>.json`` (:class:`PointCache`), the hash
taken over what determines it (kind, parameters, ``D``, seeds, Monte-Carlo sizes), and trained pre-training
weights as ``<out>/cache/pretrain-*.npz`` (:mod:`simulate.cache`); a rerun computes only what changed (the
adaptive grids depend only on computed values, so they come back the same), and an interrupted run resumes.
Progress is printed on stderr, one line per point.

Where a theory is not available (it raises :class:`ParameterError` at its first point), that curve is left
out with a message and the rest is drawn.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

import simulate
import theory
from figures import panels
from figures.lines import dense_line
from figures.specs import FigureSpec, Sweep, figure_specs
from model.observables import TEST_ERRORS
from model.params import PARAM_NAMES, ParameterError, Params, pretrain_key
from model.tables import atomic_write, grid, run_sweep, write_table
from theory.finite_size import linear_test_error_at
from validation.extrapolate import extrapolate

#: Bump when a change of the code changes cached numbers: per kind of point (theory lines changed with the
#: quasi-Monte Carlo channel draws (3), the ground-state selection of the fine-tuning fixed point (4) and the
#: replica-symmetry check in the rows (5), probed on at least 4000 draws (6), the prox leaving concave starts (7),
#: the fine-tuning status in the rows (8); the simulations did not).
CACHE_VERSION = {"theory": 8, "bayes_finetune_q": 1}
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
        status = r.diagnostics.get("finetune", {}).get("status") if isinstance(r.diagnostics, dict) else None
        if isinstance(status, str):
            row["ft_status"] = status
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


def _param_columns(p: Params) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in p.to_dict().items()}


def _show(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                     if k in ("E_pre", "E_ft", "o_w", "E_pre_BO", "E_ft_BO", "converged", "ft_status"))


class Pretrained:
    """Solved pre-trainings of this run, by :func:`model.params.pretrain_key`: a line point whose pre-training was
    solved for another line (another ``α'`` at the same ``λ``, the recalibrated sweep, the Bayes-optimal curve)
    starts from it and takes it as it is (:class:`theory.WarmStart`)."""

    def __init__(self) -> None:
        self.warm: dict[tuple[Any, ...], Any] = {}

    def get(self, p: Params) -> Any:
        return self.warm.get(pretrain_key(p))

    def put(self, p: Params, warm: Any) -> None:
        if warm is not None and getattr(warm, "solved_pretrain", None) is not None:
            self.warm[pretrain_key(p)] = warm


def dense_rows(sweep: Sweep, fn, pretrained: Pretrained, at: Sequence[float] = ()) -> list[dict[str, Any]]:
    """The rows of every line of a dense theory sweep (:mod:`figures.lines`), each line warm-started point to
    point (from the nearest computed point, or from a pre-training solved before); ``at``: values of the line's
    parameter every line includes (where the figure's simulation markers are)."""
    line = sweep.line
    extra = [line.position(v) for v in at if line.lo <= v <= line.hi]
    rows: list[dict[str, Any]] = []
    for p0 in grid(sweep.base, [(name, list(values)) for name, values in sweep.axes]):
        warms: dict[float, Any] = {}
        label = ", ".join(f"{n}={getattr(p0, n)}" for n, _ in sweep.axes)

        def evaluate(t: float) -> dict[str, Any]:
            p = p0.replace(**{line.name: line.value(t)})
            init = pretrained.get(p)
            if init is None and warms:
                init = warms[min(warms, key=lambda s: abs(s - t))]
            t0 = time.perf_counter()
            row, warm = fn(p, init)
            if warm is not None:
                warms[t] = warm
                pretrained.put(p, warm)
            print(f"[paper_figs]   {label} {line.name}={line.value(t):.4g}: {_show(row)} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
            return {**_param_columns(p), **row}

        rows += dense_line(line, evaluate, extra=extra)
    return [{k: v for k, v in r.items() if k != "_t"} for r in rows]


#: Monte-Carlo sizes of the Bayes-optimal fine-tuning curve: those of :func:`theory.solve` (``bayes="finetune"``).
BO_CURVE_MC = dict(n_outer=4000, n_inner=1024, n_outer_error=4000, n_inner_error=256)


def bayes_finetune_rows(sweep: Sweep, cache: PointCache, fn_pretrain, pretrained: Pretrained) -> list[dict[str, Any]]:
    """The Bayes-optimal fine-tuning curve along ``sweep.line`` (``α'``) at the pre-training of ``sweep.base``,
    parametrised by its overlap ``q`` (:func:`theory.bayes_finetune_at_overlap`): the ends ``α'(q) = lo, hi``
    are found by the secant method in ``u = logit q``, the points between them by :func:`figures.lines.dense_line`
    with the display abscissa ``log α'``. Points where ``α'(q)`` decreases (several fixed points) are marked
    not converged."""
    line, base = sweep.line, sweep.base
    pre_row, warm = fn_pretrain(base, pretrained.get(base))
    pretrained.put(base, warm)
    if not pre_row.get("converged", False):
        print(f"[paper_figs] {base.sigma} {sweep.name}: the pre-training did not converge: no Bayes-optimal curve",
              file=sys.stderr, flush=True)
        return []
    pre = theory.PretrainState(Q0=pre_row["Q0"], Q=pre_row["Q"], M=pre_row["M"])
    settings = {**BO_CURVE_MC, "pre": [round(pre.Q0, 12), round(pre.Q, 12), round(pre.M, 12)]}
    memo: dict[float, dict[str, Any]] = {}

    def at(u: float) -> dict[str, Any]:
        if u in memo:
            return memo[u]
        q = 1.0 / (1.0 + math.exp(-u))
        key = PointCache.key("bayes_finetune_q", base, {**settings, "q": q})
        row = cache.get(key)
        if row is None:
            t0 = time.perf_counter()
            c = theory.bayes_finetune_at_overlap(base, pre, q, **BO_CURVE_MC)
            row = {"alpha_prime": c.alpha_prime, "q_BO": c.q, "E_ft_BO": c.E_ft_BO, "E_ft_BO_sem": c.E_ft_BO_se,
                   "alpha_prime_sem": c.alpha_prime_se, "delta_BO": c.delta_BO, "ess_min": c.ess_min}
            cache.put(key, row)
            print(f"[paper_figs]   {sweep.name} q={q:.4g}: alpha_prime={c.alpha_prime:.4g}, E_ft_BO={c.E_ft_BO:.4g} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        memo[u] = _unplain(row)
        return memo[u]

    def f(u: float) -> float:
        a = at(u)["alpha_prime"]
        return math.log(a) if a > 0 and math.isfinite(a) else math.inf

    lo, hi = math.log(line.lo), math.log(line.hi)
    # brackets of logit q where α' = 0.5 and 20 lie at the figure-1 points (both σ); widened where they do not
    u_lo = _solve_increasing(f, lo, 0.0, 2.0)
    u_hi = _solve_increasing(f, hi, 2.0, 6.0)
    if u_lo is None or u_hi is None or not u_lo < u_hi:
        print(f"[paper_figs] {base.sigma} {sweep.name}: α'(q) does not span [{line.lo}, {line.hi}]: no curve",
              file=sys.stderr, flush=True)
        return []

    def evaluate(t: float) -> dict[str, Any]:
        return dict(at(u_lo + t * (u_hi - u_lo)))

    rows = dense_line(line, evaluate, x_of=lambda r: (math.log(r["alpha_prime"]) - lo) / (hi - lo))
    out, top = [], -math.inf
    for r in rows:
        # the stable branch is where α'(q) increases: a decrease means several fixed points at one α'
        monotone = r["alpha_prime"] > top
        top = max(top, r["alpha_prime"])
        out.append({**_param_columns(base.replace(alpha_prime=float(r["alpha_prime"]))),
                    **{k: v for k, v in r.items() if k not in ("alpha_prime", "_t")}, "converged": monotone})
    return out


def _solve_increasing(f, target: float, a: float, b: float, *, tol: float = 1e-3, widen: int = 4,
                      max_iter: int = 30) -> float | None:
    """A root of the increasing ``f(u) = target``: bracket from ``[a, b]`` (widened by 2 up to ``widen`` times
    either way), then the Illinois variant of regula falsi to ``|f − target| < tol``."""
    fa, fb = f(a) - target, f(b) - target
    for _ in range(widen):
        if fa <= 0 <= fb:
            break
        if fa > 0:
            a, b, fb = a - 2.0, a, fa
            fa = f(a) - target
        else:
            a, b, fa = b, b + 2.0, fb
            fb = f(b) - target
    if not (fa <= 0 <= fb) or not (math.isfinite(fa) and math.isfinite(fb)):
        return None
    side = 0
    for _ in range(max_iter):
        u = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
        fu = f(u) - target
        if abs(fu) < tol:
            return u
        if fu > 0:
            b, fb = u, fu
            if side == 1:
                fa /= 2
            side = 1
        else:
            a, fa = u, fu
            if side == -1:
                fb /= 2
            side = -1
    return None


def compute_table(sweep: Sweep, out_dir: Path, cache: PointCache, *, D: int, seeds: int, n_mc: int,
                  sim_cache: str, executor: Any = None, pretrained: Pretrained | None = None,
                  suffix: str | None = None, finite_D: int | None = None,
                  marker_x: dict[str, Sequence[float]] | None = None) -> pd.DataFrame | None:
    """The tidy table of one sweep (written as CSV in ``out_dir``), or ``None`` where its theory is not
    available. ``finite_D``: add the linear test errors' theory at that ``D`` (:func:`with_finite_D_theory`)."""
    pretrained = pretrained if pretrained is not None else Pretrained()
    suffix = suffix or ("sim" if sweep.kind == "sim" else "theory")
    path = out_dir / f"{sweep.base.sigma}-{sweep.name}-{suffix}.csv"
    if path.exists():
        path.unlink()  # the per-point cache is the resumable store; the CSV is rewritten from it
    fn = point_function(sweep, cache, D=D, seeds=seeds, n_mc=n_mc, sim_cache=sim_cache, executor=executor)
    what = f"dense lines along {sweep.line.name}" if sweep.line is not None else f"{sweep.n_points} points"
    print(f"[paper_figs] {sweep.base.sigma} {sweep.name} ({sweep.kind}): {what}", file=sys.stderr, flush=True)
    try:
        if sweep.kind == "bayes_finetune_curve":
            pre_sweep = Sweep(sweep.name, sweep.base, (), stage="pretrain")
            rows = bayes_finetune_rows(sweep, cache, point_function(pre_sweep, cache, D=D, seeds=seeds, n_mc=n_mc,
                                                                    sim_cache=sim_cache), pretrained)
        elif sweep.line is not None:
            rows = dense_rows(sweep, fn, pretrained, (marker_x or {}).get(sweep.line.name, ()))
        else:
            points = grid(sweep.base, [(name, list(values)) for name, values in sweep.axes])
            return run_sweep(points, fn, out=path)
    except ParameterError as err:
        if sweep.kind == "sim":
            raise
        print(f"[paper_figs] {sweep.base.sigma} {sweep.name}: no theory line — {err}", file=sys.stderr, flush=True)
        path.unlink(missing_ok=True)
        return None
    table = pd.DataFrame(rows)
    if finite_D is not None and len(table):
        table = with_finite_D_theory(table, finite_D)
    if len(table):
        write_table(table, path)
    return table


def _tables(sweeps, out_dir: Path, cache: PointCache, **kw) -> dict[str, pd.DataFrame]:
    parts: dict[str, list[pd.DataFrame]] = {}
    for s in sweeps:
        t = compute_table(s, out_dir, cache, **kw)
        if t is not None and len(t):
            parts.setdefault(s.table_name, []).append(t)
    return {name: pd.concat(ts, ignore_index=True) for name, ts in parts.items()}


def with_finite_D_theory(table: pd.DataFrame, D: int) -> pd.DataFrame:
    """``table`` with ``<E>_at_D`` for each linear test error ``E`` (:data:`model.observables.TEST_ERRORS`): the
    theory at the simulations' ``D``, exact for linear σ at the same order parameters (the output-Gram factor,
    :func:`theory.finite_size.linear_test_error_at`); unchanged for softmax (no closed form)."""
    if "sigma" not in table.columns or not (table["sigma"] == "linear").all():
        return table
    out = table.copy()
    for name in TEST_ERRORS:
        if name in out.columns:
            out[f"{name}_at_D"] = [linear_test_error_at(v, T=int(T), D=D, delta=float(dl)) if math.isfinite(v)
                                   else math.nan for v, T, dl in zip(out[name].astype(float), out["T"], out["delta"])]
    out["D_theory"] = D
    return out


def extrapolated_table(tables: dict[int, pd.DataFrame], seeds: int) -> pd.DataFrame:
    """Simulation markers extrapolated to ``D = ∞``: per point and observable ``y`` (with ``y_sem``), the
    weighted fit ``y(D) = a + b/D`` over the sizes of ``tables`` (:func:`validation.extrapolate.extrapolate`,
    ``seeds − 1`` degrees of freedom per size); ``y`` becomes ``a``, ``y_sem`` its error, ``y_D<D>`` keeps each
    size's value and ``y_chi2`` the fit's residual (NaN with two sizes)."""
    Ds = sorted(tables)
    params = [c for c in PARAM_NAMES if c in tables[Ds[0]].columns]
    merged = None
    for D in Ds:
        t = tables[D].copy()
        t = t.rename(columns={c: f"{c}@{D}" for c in t.columns if c not in params})
        merged = t if merged is None else merged.merge(t, on=params, how="inner")
    names = [c[:-4] for c in tables[Ds[0]].columns if c.endswith("_sem") and c[:-4] in tables[Ds[0]].columns]
    rows = []
    for _, r in merged.iterrows():
        row = {c: r[c] for c in params}
        for y in names:
            vals = [float(r[f"{y}@{D}"]) for D in Ds]
            sems = [float(r[f"{y}_sem@{D}"]) for D in Ds]
            fit = extrapolate(Ds, vals, sems, [max(seeds - 1, 1)] * len(Ds))
            row.update({y: fit.a, f"{y}_sem": fit.a_err, f"{y}_chi2": fit.chi2,
                        **{f"{y}_D{D}": v for D, v in zip(Ds, vals)}})
        row["D"] = math.inf
        row["extrapolation"] = f"a + b/D over D = {','.join(map(str, Ds))}"
        rows.append(row)
    return pd.DataFrame(rows)


def make_figure(spec: FigureSpec, sigma: str, out_dir: Path, *, D: int, seeds: int, n_mc: int, simulations: bool,
                theory_lines: bool, executor: Any = None, markers: str = "D", Ds: Sequence[int] = (),
                pretrained: Pretrained | None = None) -> list[str]:
    """Compute the tables behind ``spec`` for ``sigma`` (theory lines and / or simulation markers) and draw it
    (:mod:`figures.panels`); returns the written figure paths. ``markers``: ``"D"`` (simulations at ``D``; for
    linear σ the theory of the test errors is also drawn at ``D``, thin) or ``"extrapolated"`` (each marker
    extrapolated to ``D = ∞`` from the sizes ``Ds``: :func:`extrapolated_table`)."""
    data_dir = out_dir / f"fig{spec.number}"
    data_dir.mkdir(parents=True, exist_ok=True)
    cache = PointCache(out_dir / "cache" / "points")
    pretrained = pretrained if pretrained is not None else Pretrained()
    kw = dict(seeds=seeds, n_mc=n_mc, sim_cache=str(out_dir / "cache"), executor=executor)
    finite_D = D if simulations and markers == "D" and sigma == "linear" else None
    # the lines include the markers' abscissae (with or without simulations: one grid, one cache)
    marker_x: dict[str, set[float]] = {}
    for s in spec.simulation:
        for name, values in s.axes:
            marker_x.setdefault(name, set()).update(float(v) for v in values)
    theory_tables = _tables(spec.theory, data_dir, cache, D=D, pretrained=pretrained, finite_D=finite_D,
                            marker_x={k: sorted(v) for k, v in marker_x.items()}, **kw) if theory_lines else {}
    sim_tables: dict[str, pd.DataFrame] = {}
    if simulations and markers == "extrapolated":
        per_D = {size: _tables(spec.simulation, data_dir, cache, D=size, suffix=f"sim-D{size}", **kw)
                 for size in Ds}
        for name in per_D[Ds[0]]:
            sim_tables[name] = extrapolated_table({size: per_D[size][name] for size in Ds}, seeds)
            write_table(sim_tables[name], data_dir / f"{sigma}-{name}-sim.csv")
    elif simulations:
        sim_tables = _tables(spec.simulation, data_dir, cache, D=D, **kw)
    draw = getattr(panels, f"figure{spec.number}")
    shown = None if not sim_tables else ("inf" if markers == "extrapolated" else D)
    return draw(theory_tables, sim_tables, sigma=sigma, stem=str(out_dir / f"fig{spec.number}_{sigma}"), D=shown,
                Ds=tuple(Ds) if markers == "extrapolated" else ())


def output_folder(out: str | Path | None, quick: bool) -> Path:
    """The output folder: ``out``, else ``figures/paper`` (the README's figures), quick ``figures/out``."""
    return Path(out if out is not None else ("figures/out" if quick else "figures/paper"))


def make(*, figs: Sequence[int] = (1, 2, 3, 4), sigmas: Sequence[str] = ("linear", "softmax"), quick: bool = False,
         D: int | None = None, seeds: int = 2, out: str | Path | None = None, simulations: bool = True,
         theory_lines: bool = True, executor: Any = None, markers: str = "D", Ds: Sequence[int] = ()) -> int:
    """Compute and draw the figures ``figs`` for each ``σ`` of ``sigmas``; the exit status.

    ``D``: dimension of the simulations (default 150, quick 60); ``out``: the output folder (default
    ``figures/paper``, quick ``figures/out``); ``quick``: coarse grids and Monte-Carlo size ``N_MC[1]``.
    Runs in this process (``paper_figs.py --jobs N`` splits the work: :mod:`figures.parallel`). ``executor``:
    where the seeds of the simulation markers run (:mod:`simulate.executors`; default here). ``markers``: ``"D"`` (simulations at ``D``) or
    ``"extrapolated"`` (extrapolated to ``D = ∞`` from the sizes ``Ds``, :func:`make_figure`).
    """
    D = D if D is not None else (60 if quick else 150)
    n_mc = N_MC[1] if quick else N_MC[0]
    out_dir = output_folder(out, quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = []
    for sigma in sigmas:
        specs = figure_specs(sigma, quick=quick)
        pretrained = Pretrained()
        for number in figs:
            t1 = time.perf_counter()
            paths = make_figure(specs[number], sigma, out_dir, D=D, seeds=seeds, n_mc=n_mc, simulations=simulations,
                                theory_lines=theory_lines, executor=executor, markers=markers, Ds=Ds,
                                pretrained=pretrained)
            dt = time.perf_counter() - t1
            timings.append((number, sigma, dt))
            print(f"[paper_figs] figure {number} ({sigma}) in {dt:.0f} s: {', '.join(paths)}",
                  file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    print(f"[paper_figs] done in {total:.0f} s (" + ", ".join(f"fig {n} {s}: {t:.0f} s" for n, s, t in timings) + ")",
          file=sys.stderr)
    return 0
