"""Which LoRA rank, from how much data: the rank ``r`` that minimises an observable of the theory (MODEL.md §8).

:func:`optimal_rank` solves the theory at every rank of ``ranks`` (the rest of ``params`` fixed; the pre-training
solved once and shared, since it does not involve the LoRA) and returns the rank of lowest ``E_ft`` (or of another
observable) among the converged points, with the whole table: each rank's value, whether its fixed point
converged and passed the local replica-symmetry check, ``o_U`` and ``tr_q``. ``E_frozen`` (no adaptation, the
``r = 0`` answer) is reported beside it: where every rank is above it, fine-tuning does not pay at that ``α'``.
:func:`optimal_rank_curve` repeats this along ``α'`` (or another parameter) as a tidy DataFrame, and
:func:`optimize_discrete` is the discrete branch of :func:`theory.optimize.optimize` (``over="rank"``).

A rank whose fixed point did not converge is excluded from the choice and named in ``notes``; so is the fact
that the minimiser is the largest (or smallest) rank tried, where a rank outside ``ranks`` may do better. The
differences between ranks are computed with common random numbers (one Monte-Carlo key for every rank), so they
are not the Monte-Carlo error of one solve; ``margin`` (the runner-up's value minus the minimum) says how
clear the choice is.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

import theory
from model.params import ParameterError, Params

#: The ranks searched by default (MODEL.md §8 asks for the answer at ``r* = 2``: below, at and above it).
DEFAULT_RANKS = (1, 2, 3, 4)
#: Per-rank observables copied into the table (when the point reports them).
TABLE_OBSERVABLES = ("E_ft", "E_frozen", "o_U", "o_w", "tr_q", "q", "L_ft")


@dataclass(frozen=True)
class RankChoice:
    """The result of :func:`optimal_rank`.

    Attributes:
        minimize: the observable minimised.
        rank: the rank of lowest ``minimize`` among the converged points (``None`` if none converged).
        minimum: ``minimize`` there (NaN if none).
        margin: the runner-up's value minus the minimum (NaN with fewer than two converged ranks).
        frozen: ``E_frozen`` (the error without adaptation) at these parameters (NaN if no point reports it).
        converged: every rank's fixed point converged.
        table: one row per rank: ``rank, value, converged, rs_stable, replicon`` and :data:`TABLE_OBSERVABLES`.
        notes: plain-language remarks (excluded ranks, a minimiser at the end of ``ranks``, RS-unstable points,
            every rank worse than no adaptation).
        points: the :class:`theory.TheoryPoint` of each rank.
    """

    minimize: str
    rank: int | None
    minimum: float
    margin: float
    frozen: float
    converged: bool
    table: pd.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()
    points: Mapping[int, Any] = field(default_factory=dict, repr=False)


def check_ranks(ranks: Iterable[Any]) -> tuple[int, ...]:
    """``ranks`` as distinct increasing integers ``≥ 1``; :class:`ParameterError` otherwise (before any work)."""
    out = []
    for r in ranks:
        if isinstance(r, bool) or not (isinstance(r, int) or (isinstance(r, float) and r.is_integer())) or r < 1:
            raise ParameterError(f"ranks: {r!r} is out of range: allowed integers r ≥ 1")
        out.append(int(r))
    if not out or len(set(out)) != len(out):
        raise ParameterError(f"ranks = {tuple(ranks)!r}: allowed one or more distinct integers ≥ 1")
    return tuple(sorted(out))


def _rs_stable(point: Any) -> Any:
    d = point.diagnostics.get("finetune", {})
    for k in ("rs_stable", "rs_stable_local"):
        if d.get(k) is not None:
            return bool(d[k])
    return None


def optimal_rank(params: Params, ranks: Sequence[int] = DEFAULT_RANKS, minimize: str = "E_ft", *,
                 pretrain: Any = None, n_mc: int = 4000, key: int = 0, progress: bool = False,
                 **solve_options: Any) -> RankChoice:
    """The rank of ``ranks`` that minimises ``minimize`` at ``params`` (module doc).

    Args:
        params: the point (its ``rank`` is replaced by each of ``ranks``; ``teacher_rank`` is kept).
        ranks: the LoRA ranks to compare (integers ``≥ 1``).
        minimize: a fine-tuning observable of :func:`theory.solve` (``E_ft`` by default, or ``L_ft``, ...).
        pretrain: a :class:`theory.PretrainState` to fine-tune from (``stage="finetune"``); default: the
            pre-training theory at ``params``, solved once.
        n_mc, key: the fine-tuning Monte Carlo (one key for every rank: common random numbers).
        progress: one line per rank on stderr.
        solve_options: passed to :func:`theory.solve` (``q0``, ``n_test``, ``max_steps``).
    """
    if not isinstance(params, Params):
        raise ParameterError(f"params = {params!r} must be a model.params.Params")
    ranks = check_ranks(ranks)
    stage = "finetune" if pretrain is not None else "both"
    for r in ranks:
        theory.check(params.replace(rank=r), stage=stage, pretrain=pretrain, n_mc=n_mc, bayes=False,
                     **{k: v for k, v in solve_options.items() if k in ("q0", "max_steps")})
    points: dict[int, Any] = {}
    rows = []
    warm = None
    for r in ranks:
        pt = theory.solve(params.replace(rank=r), init=warm, stage=stage, pretrain=pretrain, bayes=False, n_mc=n_mc,
                          key=key, **solve_options)
        warm = pt.warm
        points[r] = pt
        if minimize not in pt.observables:
            raise ParameterError(f"minimize = {minimize!r} is not an observable of the rank-{r} point: allowed one of "
                                 f"{', '.join(pt.observables)}")
        y = float(pt.observables[minimize])
        d = pt.diagnostics.get("finetune", {})
        row = {"rank": r, "value": y if pt.converged and math.isfinite(y) else math.nan,
               "converged": bool(pt.converged), "rs_stable": _rs_stable(pt),
               "replicon": float(d.get("replicon", math.nan))}
        row.update({o: float(pt.observables[o]) for o in TABLE_OBSERVABLES if o in pt.observables})
        rows.append(row)
        if progress:
            print(f"[optimal_rank] r = {r}: {minimize} = {row['value']:.6g} (converged = {pt.converged})",
                  file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    return _choice(table, minimize, ranks, points)


def _choice(table: pd.DataFrame, minimize: str, ranks: tuple[int, ...], points: Mapping[int, Any]) -> RankChoice:
    notes = []
    ok = table[table["value"].notna()].sort_values("value")
    bad = [int(r) for r in table.loc[table["value"].isna(), "rank"]]
    if bad:
        notes.append(f"rank(s) {', '.join(map(str, bad))}: the fixed point did not converge; excluded from the choice")
    frozen = float(table["E_frozen"].dropna().iloc[0]) if "E_frozen" in table and table["E_frozen"].notna().any() \
        else math.nan
    if not len(ok):
        return RankChoice(minimize=minimize, rank=None, minimum=math.nan, margin=math.nan, frozen=frozen,
                          converged=False, table=table, notes=tuple(notes), points=dict(points))
    best = int(ok["rank"].iloc[0])
    minimum = float(ok["value"].iloc[0])
    margin = float(ok["value"].iloc[1] - minimum) if len(ok) > 1 else math.nan
    solved = sorted(int(r) for r in ok["rank"])
    if len(ranks) > 1 and best in (solved[0], solved[-1]):
        notes.append(f"the minimiser r = {best} is at the end of the converged ranks tried ({', '.join(map(str, solved))}); "
                     "a rank outside them may do better")
    unstable = [int(r) for r, s in zip(table["rank"], table["rs_stable"]) if s is False]
    if unstable:
        notes.append(f"rank(s) {', '.join(map(str, unstable))}: the fixed point fails the replica-symmetry check "
                     "(replicon ≥ 1): the RS theory is not to be trusted there")
    if minimize == "E_ft" and math.isfinite(frozen) and minimum > frozen:
        notes.append(f"every rank is above E_frozen = {frozen:.6g}: no adaptation (r = 0) does better here")
    return RankChoice(minimize=minimize, rank=best, minimum=minimum, margin=margin, frozen=frozen,
                      converged=bool(table["converged"].all()), table=table, notes=tuple(notes), points=dict(points))


def optimal_rank_curve(params: Params, values: Sequence[float], *, over: str = "alpha_prime",
                       ranks: Sequence[int] = DEFAULT_RANKS, minimize: str = "E_ft", pretrain: Any = None,
                       n_mc: int = 4000, key: int = 0, progress: bool = False, **solve_options: Any) -> pd.DataFrame:
    """:func:`optimal_rank` at each value of the parameter ``over`` (default ``α'``), as a tidy DataFrame: one row
    per (value, rank) with the table's columns, ``best_rank`` and ``frozen`` of that value. The pre-training is
    solved once when ``over`` does not change it (it is passed on as ``pretrain``)."""
    from model.params import PRETRAIN_FIELDS
    from theory.states import PretrainState
    ranks = check_ranks(ranks)
    if over not in Params.__dataclass_fields__ or over in ("rank", "teacher_rank"):
        raise ParameterError(f"over = {over!r}: allowed a parameter of Params other than rank, teacher_rank")
    points = [params.replace(**{over: float(v)}) for v in values]  # validated before any work
    if pretrain is None and over not in PRETRAIN_FIELDS:
        o = theory.solve(params, stage="pretrain", bayes=False).observables
        pretrain = PretrainState(Q0=o["Q0"], Q=o["Q"], M=o["M"], V=o.get("V"))
    frames = []
    for v, p in zip(values, points):
        c = optimal_rank(p, ranks, minimize, pretrain=pretrain, n_mc=n_mc, key=key, progress=progress,
                         **solve_options)
        t = c.table.copy()
        t.insert(0, over, float(v))
        t["best_rank"] = c.rank if c.rank is not None else math.nan
        t["frozen"] = c.frozen
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


def optimize_discrete(params: Params, minimize: str, over: Sequence[str], bounds: Mapping[str, Any] | None, *,
                      progress: bool = False, **solve_options: Any):
    """The discrete branch of :func:`theory.optimize.optimize`: ``over = ("rank",)``, every integer rank in
    ``bounds["rank"]`` (default ``1..4``), as a :class:`theory.optimize.OptimizeResult` (``method = "every
    value"``, ``unimodal`` whether the values have one local minimum)."""
    from theory.optimize import OptimizeResult, local_minima
    if tuple(over) != ("rank",):
        raise ParameterError(f"over = {tuple(over)!r}: rank is searched alone (allowed over = rank, without "
                             "continuous parameters)")
    lo, hi = (bounds or {}).get("rank", (DEFAULT_RANKS[0], DEFAULT_RANKS[-1]))
    if not (float(lo).is_integer() and float(hi).is_integer() and 1 <= lo <= hi):
        raise ParameterError(f"bounds rank = ({lo}, {hi}): allowed integers 1 ≤ lo ≤ hi")
    ranks = tuple(range(int(lo), int(hi) + 1))
    c = optimal_rank(params, ranks, minimize, progress=progress, **solve_options)
    curve = c.table.assign(phase="every value")
    excluded = int(curve["value"].isna().sum())
    at_bound = ("rank",) if any("at the end" in n for n in c.notes) else ()
    return OptimizeResult(minimize=minimize, over=("rank",), argmin={"rank": c.rank if c.rank is not None else math.nan},
                          minimum=c.minimum, converged=c.rank is not None and bool(c.points[c.rank].converged),
                          n_evaluations=len(ranks), excluded=excluded,
                          unimodal=len(local_minima(list(curve["value"]))) == 1, at_bound=at_bound,
                          method="every value (discrete)", bounds={"rank": (int(lo), int(hi))}, curve=curve,
                          point=c.points.get(c.rank) if c.rank is not None else None, notes=c.notes)
