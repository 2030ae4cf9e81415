"""The public Python API of the theory: one point (:func:`solve`) and a warm-started grid (:func:`sweep`).

``solve(params)`` chains the two stages of MODEL.md §5 — the ERM pre-training fixed point for
``(Q, M, V)`` (:func:`theory.stages.pretrain.solve_pretrain`), then the LoRA fine-tuning fixed point for
``(q, m, v)`` fed with the pre-training order parameters ``(Q0, Q, M)``
(:func:`theory.stages.finetune.solve_finetune`) — and optionally the Bayes-optimal baselines of both stages
(:mod:`theory.bayes`). Observables carry the MODEL.md §4 names (:mod:`model.observables`), the ones the
simulator reports. Each part comes back from its stage as a typed result and is translated here into the
point's observables, standard errors and diagnostics (:class:`_Part`).

A :class:`TheoryPoint` keeps its pre-training solution in ``.warm``; passing it as ``init=`` to the next
:func:`solve` starts the pre-training iteration there, or takes the solved pre-training as it is when the
pre-training parameters are the same — which is what :func:`sweep` does along a grid. The fine-tuning
iteration always starts from the informed point ``q = m = q0/2``: its fixed point is not unique (the loss is
quartic in ``w``), and a start carried over from a neighbour can stay on another branch (measured: softmax,
``α' = 1``, ``λ ≤ 0.06``, where the carried-over start gave ``o_w ≈ 0.07`` and a training objective
``α'L_ft + λ'q`` above that of the informed branch, ``o_w ≈ 0.76``, which the simulations follow). A point's
value therefore does not depend on the path of a sweep. When the informed start itself ends on the
uninformed branch (``m ≈ 0``, ``q > 0``) or does not converge, a second start ``q = m = 0.9 q0`` is solved and
the fixed point of lower objective ``α'L_ft + λ'q`` is kept (:func:`theory.stages.finetune._solve_ground_state`).
Where the damped iterations fail (small ``α'``: the map's Jacobian has an eigenvalue far below −1 and small
Monte-Carlo jumps), the fixed point is solved as a root of ``step(x) − x`` (Powell's hybrid method), accepted
by its Newton correction (``diagnostics["status"] == "root"``; :func:`theory.fixed_point.root_fallback`).

Reused sequences (``e > 0``) need the pre-training susceptibility ``V`` too (stage ``"both"`` passes it;
``stage="finetune"`` takes a :class:`theory.states.PretrainState` with ``V``); active selection adds the
observables of the random subset of the same size as ``<name>_random``.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from model.observables import (BAYES_FINETUNE, BAYES_PRETRAIN, FINETUNE_THEORY, PRETRAIN_THEORY, RANDOM_CONTROL,
                               RANK_RANDOM_CONTROL, observable_names, random_control_names)
from model.params import PARAM_NAMES, ParameterError, Params, pretrain_key
from model.jsonsafe import plain
from model.tables import check_output_path, grid, parse_vary, run_sweep
from theory.bayes.finetune import solve_bayes_finetune
from theory.limits import check_limits
from theory.bayes.pretrain import solve_bayes_pretrain
from theory.stages.finetune import solve_finetune
from theory.stages.finetune_rank import solve_finetune_rank
from theory.stages.pretrain import solve_pretrain
from theory.states import PretrainOverlaps, PretrainState

STAGES = ("both", "pretrain", "finetune")
#: Values of ``bayes``: ``True`` (both stages), ``False``, one stage only, or ``"two_stage"`` (both stages and the
#: two-stage fine-tuning baseline ``q_BO2, E_ft_BO2`` that conditions on the pre-training data,
#: :mod:`theory.bayes.two_stage`).
BAYES = (True, False, "pretrain", "finetune", "two_stage")


@dataclass(frozen=True)
class _Part:
    """One solved part of a point (a stage or a Bayes-optimal baseline) in the API's terms: its observables
    (MODEL.md §4 names), verdict, Monte-Carlo standard errors, diagnostics and iterations (``None``: not
    reported)."""

    observables: dict[str, float]
    converged: bool
    diagnostics: Any
    mc_sem: dict[str, float] = field(default_factory=dict)
    n_steps: int | None = None


@dataclass(frozen=True)
class _PretrainPart(_Part):
    """The pre-training part, with the state fed to the fine-tuning and the overlaps to warm-start from
    (``None`` when it did not converge)."""

    order: PretrainState | None = None
    warm: PretrainOverlaps | None = None


@dataclass(frozen=True)
class WarmStart:
    """Opaque warm start: the pre-training overlaps of a solved point and the discrete parameters they belong
    to (a warm start is not carried across a change of ``σ`` or ``T``)."""

    pretrain: PretrainOverlaps | None = None
    key: tuple[Any, ...] = ()
    #: ``(pretrain_key(params), ERM part, Bayes-optimal part or None)`` of the solved point: a next point
    #: with the same pre-training parameters takes it as it is (the pre-training depends on no fine-tuning
    #: parameter), so a fine-tuning sweep solves its pre-training once.
    solved_pretrain: tuple[tuple[Any, ...], _PretrainPart, _Part | None] | None = None


@dataclass(frozen=True)
class TheoryPoint:
    """The theory at one parameter point.

    Attributes:
        params: the parameters.
        stage: ``"both"``, ``"pretrain"`` or ``"finetune"``.
        observables: ``{MODEL.md name: value}`` — pre-training ``Q0, Q, M, V, E_pre, L_pre``, fine-tuning
            ``q0, q, m, v, o_w, E_ft, L_ft, E_frozen, delta_eff, beta_W``, Bayes-optimal
            ``Q_BO, E_pre_BO, q_BO, E_ft_BO`` (when asked for).
        converged: every fixed point that was solved converged.
        n_steps: iterations per part (``{"pretrain": n, "finetune": n, ...}``).
        diagnostics: residuals, Monte-Carlo standard errors (``mc_sem``), statuses.
        warm: a :class:`WarmStart` to pass as ``init=`` to the next :func:`solve`.
    """

    params: Params
    stage: str
    observables: Mapping[str, float]
    converged: bool
    n_steps: Mapping[str, int] = field(default_factory=dict)
    diagnostics: Mapping[str, Any] = field(default_factory=dict, repr=False)
    warm: WarmStart = field(default_factory=WarmStart, repr=False)
    pretrain: PretrainState | None = field(default=None, repr=False)

    def to_json_dict(self) -> dict[str, Any]:
        """What ``lora-attn theory --json`` prints: ``params``, ``stage``, ``pretrain`` (``Q0, Q, M`` the
        fine-tuning was fed, or ``None``), ``observables``, ``converged``, ``n_steps``, ``diagnostics``
        (NaN as ``null``)."""
        pre = None if self.pretrain is None else {"Q0": self.pretrain.Q0, "Q": self.pretrain.Q, "M": self.pretrain.M}
        return _plain({"params": self.params.to_dict(), "stage": self.stage, "pretrain": pre,
                       "observables": dict(self.observables), "converged": self.converged,
                       "n_steps": dict(self.n_steps), "diagnostics": dict(self.diagnostics)})

    def row(self) -> dict[str, Any]:
        """Flat record for a DataFrame: the parameters, the observables, ``converged``, ``n_steps_<part>`` and,
        where the fine-tuning was solved, its replica-symmetry check ``rs_stable`` and ``replicon``
        (:func:`theory.stages.rs_stability.rs_stability`)."""
        out: dict[str, Any] = dict(self.params.to_dict())
        out.update(self.observables)
        out["converged"] = self.converged
        out.update({f"n_steps_{k}": v for k, v in self.n_steps.items()})
        ft = self.diagnostics.get("finetune", {})
        out.update({k: ft[k] for k in ("rs_stable", "replicon") if k in ft})
        return out

    @property
    def mc_sem(self) -> dict[str, float]:
        """Monte-Carlo standard errors of the observables that have one (softmax errors, BO errors)."""
        return dict(self.diagnostics.get("mc_sem", {}))


def _bayes_parts(bayes: Any, stage: str) -> tuple[bool, bool]:
    if bayes not in BAYES or (bayes is not True and bayes is not False and not isinstance(bayes, str)):
        raise ParameterError(f"bayes = {bayes!r} is unknown: allowed True, False, 'pretrain', 'finetune' or "
                             "'two_stage'")
    pre = bayes is True or bayes in ("pretrain", "two_stage")
    ft = bayes is True or bayes in ("finetune", "two_stage")
    return pre and stage != "finetune", ft and stage != "pretrain"


def bayes_label(bayes: bool | str) -> str:
    """The ``bayes`` setting as a table value: ``none``, ``all``, ``pretrain`` or ``finetune`` (a text that a
    CSV reader does not turn into a boolean, so a resumed table matches its points)."""
    return {True: "all", False: "none"}.get(bayes, bayes) if isinstance(bayes, bool) else str(bayes)


def check(params: Params, *, stage: str = "both", pretrain: Any = None, q0: float = 1.0, n_mc: int = 4000,
          bayes: Any = True, max_steps: int = 300, pretrain_replicas: int = 1) -> None:
    """Refuse input the theory cannot take, before any work (:class:`ParameterError` naming the parameter)."""
    if not isinstance(params, Params):
        raise ParameterError(f"params = {params!r} must be a model.params.Params")
    if stage not in STAGES:
        raise ParameterError(f"stage = {stage!r} is unknown: allowed one of {', '.join(STAGES)}")
    _bayes_parts(bayes, stage)
    if stage != "finetune" and params.lam <= 0:
        raise ParameterError(f"lam = {params.lam} is out of range for the pre-training theory: allowed lam > 0")
    if not params.rank_one and params.recalibrate == "error":
        raise ParameterError("recalibrate = 'error' is not implemented at rank r or r* > 1: allowed a number, "
                             "'delta' or None there")
    if stage == "finetune" and pretrain is None:
        raise ParameterError("stage 'finetune' needs pretrain = PretrainState(Q0, Q, M)")
    _integer("max_steps", max_steps, 1)
    _integer("n_mc", n_mc, 2)
    _integer("pretrain_replicas", pretrain_replicas, 1)
    if isinstance(q0, bool) or not isinstance(q0, numbers.Real) or not (0 < float(q0) < math.inf):
        raise ParameterError(f"q0 = {q0!r} is out of range: allowed 0 < q0 < inf")
    check_limits(params, stage=stage, n_mc=int(n_mc))


def _integer(name: str, value: Any, low: int) -> int:
    """``value`` as an ``int`` (numpy integers accepted) if it is an integer ``≥ low``, else :class:`ParameterError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ParameterError(f"{name} = {value!r} is out of range: allowed an integer ≥ {low}")
    return int(value)


def solve(
    params: Params,
    *,
    init: WarmStart | None = None,
    stage: str = "both",
    bayes: bool | str = True,
    pretrain: PretrainState | None = None,
    q0: float = 1.0,
    n_mc: int = 4000,
    n_test: int = 100_000,
    key: int = 0,
    max_steps: int = 300,
    pretrain_replicas: int = 1,
) -> TheoryPoint:
    """Solve the theory of ``stage`` at ``params`` (MODEL.md §5).

    Args:
        params: the parameter point.
        init: the ``.warm`` of a neighbouring :class:`TheoryPoint`: the pre-training starts there (or is taken
            as it is when the pre-training parameters are the same); the fine-tuning starts from the informed
            point whatever ``init`` is (module doc).
        stage: ``"both"`` (pre-training chained into fine-tuning), ``"pretrain"``, or ``"finetune"``
            (needs ``pretrain``).
        bayes: add the Bayes-optimal baselines: ``True`` (both stages), ``False``, ``"pretrain"``
            (``Q_BO, E_pre_BO``: cheap), ``"finetune"`` (``q_BO, E_ft_BO``, conditioning on ``Ŵ``: 10–30 s a
            point; about a minute at ``r* = 2``) or ``"two_stage"`` (all of them and ``q_BO2, E_ft_BO2``,
            conditioning on the pre-training data:
            :mod:`theory.bayes.two_stage`; as much again).
        pretrain: :class:`theory.states.PretrainState` ``(Q0, Q, M)`` of the frozen weights (with ``V`` for
            reused sequences), for ``stage="finetune"`` (e.g. measured by a simulation).
        q0: ``‖w*‖²/D`` (1 as ``D → ∞``).
        n_mc: Monte-Carlo draws of the fine-tuning channel (fixed keys: the map is deterministic).
        n_test: Monte-Carlo draws of the softmax test errors.
        key: integer seed of the fixed Monte-Carlo keys.
        max_steps: iteration budget of the fine-tuning fixed point (per phase; see
            :func:`theory.stages.finetune.solve_finetune`). A point that does not converge spends all of it, twice,
            then up to about 200 map evaluations of the root fallback.
        pretrain_replicas: independent Monte-Carlo replicas of the softmax pre-training fixed point
            (:func:`theory.stages.pretrain.solve_pretrain`); with 2 or more, ``mc_sem`` holds the standard errors
            of ``Q, M, V, E_pre, L_pre`` propagated through the fixed point.

    Returns:
        A :class:`TheoryPoint`. A fixed point that did not converge gives ``converged=False`` (and NaN
        fine-tuning observables), not an exception.

    Raises:
        ParameterError: bad input (before any work), or a setting no theory covers yet (e.g. the softmax
            fine-tuning of reused sequences from ``(Q0, Q, M)`` alone, without ``V``).
    """
    check(params, stage=stage, pretrain=pretrain, q0=q0, n_mc=n_mc, bayes=bayes, max_steps=max_steps,
          pretrain_replicas=pretrain_replicas)
    q0, n_mc, max_steps, pretrain_replicas = float(q0), int(n_mc), int(max_steps), int(pretrain_replicas)
    n_test, key = _integer("n_test", n_test, 1), _integer("key", key, 0)
    bayes_pre, bayes_ft = _bayes_parts(bayes, stage)
    wkey = (params.sigma, params.T)
    if init is not None and not isinstance(init, WarmStart):
        raise ParameterError(f"init = {init!r} must be the .warm of a TheoryPoint (or None)")
    if init is not None and init.key != wkey:
        init = None
    obs: dict[str, float] = {}
    steps: dict[str, int] = {}
    diag: dict[str, Any] = {"mc_sem": {}}
    converged = True
    warm_pre = None

    def add(part: _Part) -> bool:
        # a part that did not converge reports no number: NaN for all but the inputs it echoes (Q0, q0)
        obs.update(part.observables if part.converged else
                   {k: (v if k in INPUT_OBSERVABLES else math.nan) for k, v in part.observables.items()})
        diag["mc_sem"].update(part.mc_sem if part.converged else {})
        return part.converged

    order = pretrain
    solved = None
    if stage != "finetune":
        pkey = pretrain_key(params)
        same = init is not None and init.solved_pretrain is not None and init.solved_pretrain[0] == pkey
        if same:
            _, r, bo = init.solved_pretrain
            warm_pre = init.pretrain
            steps["pretrain"] = 0
            diag["pretrain"] = {**r.diagnostics, "reused": True}
        else:
            r = _guarded("pretrain", PRETRAIN_THEORY, _pretrain, params, init.pretrain if init is not None else None,
                         pretrain_replicas)
            bo = None
            warm_pre = r.warm
            steps["pretrain"] = r.n_steps
            diag["pretrain"] = r.diagnostics
        converged = add(r) and converged
        order = r.order
        if bayes_pre:
            if bo is None:
                bo = _guarded("bayes_pretrain", BAYES_PRETRAIN, _bayes_pretrain, params)
            diag["bayes_pretrain"] = bo.diagnostics
            converged = add(bo) and converged
        if r.converged:
            solved = (pkey, r, bo)

    if stage != "pretrain":
        if order is None:
            f = _Part(observables=dict.fromkeys(_finetune_names(params), math.nan), converged=False,
                      diagnostics={"status": "not solved: the pre-training fixed point did not converge"}, n_steps=0)
        else:
            f = _guarded("finetune", _finetune_names(params), _finetune, params, order, q0=q0, n_mc=n_mc,
                         n_test=n_test, key=key, max_steps=max_steps)
        steps["finetune"] = f.n_steps
        diag["finetune"] = f.diagnostics
        converged = add(f) and converged
        if bayes_ft:
            b = _guarded("bayes_finetune", BAYES_FINETUNE, _bayes_finetune, params, order) if order is not None \
                else _Part(observables=dict.fromkeys(BAYES_FINETUNE, math.nan), converged=False,
                           diagnostics={"status": "not solved: the pre-training fixed point did not converge"},
                           n_steps=0)
            if b is not None:
                steps["bayes_finetune"] = b.n_steps
                diag["bayes_finetune"] = b.diagnostics
                converged = add(b) and converged
            else:
                obs.update(dict.fromkeys(BAYES_FINETUNE, math.nan))
                diag["bayes_finetune"] = "not modelled with reuse or active selection"
        if bayes == "two_stage":
            b2 = _bayes_two_stage(params, order)
            steps["bayes_two_stage"] = b2.n_steps or 0
            diag["bayes_two_stage"] = b2.diagnostics
            converged = add(b2) and converged
    warm = WarmStart(pretrain=warm_pre, key=wkey, solved_pretrain=solved)
    return TheoryPoint(params=params, stage=stage, observables=obs, converged=bool(converged), n_steps=steps,
                       diagnostics=diag, warm=warm, pretrain=order if stage != "pretrain" else None)


def _plain(x: Any) -> Any:
    """``x`` as strict JSON values (:func:`model.jsonsafe.plain`: NaN as ``None``, ±inf as ``"inf"``/``"-inf"``,
    numpy/JAX scalars as Python numbers, other objects as their ``repr``)."""
    return plain(x)


def parse_pretrain(text: str) -> PretrainState:
    """``"Q0=2.0,Q=2.2,M=1.9"`` (and optionally ``V=..``, which reused sequences need) →
    :class:`theory.states.PretrainState`."""
    values: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ("Q0", "Q", "M", "V"):
            raise ParameterError(f"--pretrain {text!r}: expected Q0=..,Q=..,M=..[,V=..] (got {part!r})")
        try:
            values[name] = float(value)
        except ValueError:
            raise ParameterError(f"--pretrain: {name} = {value!r} is not a number") from None
    missing = {"Q0", "Q", "M"} - set(values)
    if missing:
        raise ParameterError(f"--pretrain {text!r}: missing {', '.join(sorted(missing))}")
    return PretrainState(**values)


# ----------------------------------------------------------------------------------------- stages
#: Observables a part echoes from its input rather than solves (kept when it does not converge).
INPUT_OBSERVABLES = ("Q0", "q0")

#: What a stage's numerics raise when its map cannot be evaluated (a conjugate out of its domain, an overflow, a
#: spectrum the prior cannot resolve): the part is reported as not converged with the message, not raised.
SOLVER_FAILURES = (ArithmeticError, RuntimeError, ValueError)


def _finetune_names(params: Params) -> tuple[str, ...]:
    """The observables of the fine-tuning part at ``params`` (rank one: :data:`FINETUNE_THEORY`; the random
    control's with active selection)."""
    if params.rank_one:
        names = FINETUNE_THEORY
    else:
        names = tuple(n for n in observable_names(params.rank, params.teacher_rank) if n not in PRETRAIN_THEORY)
    return names + (random_control_names(params.rank_one) if params.active_rho is not None else ())


def _guarded(name: str, names: Sequence[str], solve_part, *args: Any, **kwargs: Any) -> Any:
    """``solve_part(*args, **kwargs)``; where its numerics fail (:data:`SOLVER_FAILURES`, not bad input) a part
    with NaN ``names``, ``converged = False`` and the reason in its diagnostics (``status = "failed"``)."""
    try:
        return solve_part(*args, **kwargs)
    except ParameterError:
        raise
    except SOLVER_FAILURES as err:
        reason = f"{type(err).__name__}: {err}"
        return _PretrainPart(observables=dict.fromkeys(names, math.nan), converged=False,
                             diagnostics={"status": "failed", "reason": f"the {name} solver stopped: {reason}"},
                             n_steps=0)


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _pretrain(params: Params, init: PretrainOverlaps | None, replicas: int = 1) -> _PretrainPart:
    """ERM pre-training: :func:`theory.stages.pretrain.solve_pretrain` ``(params, init=..., replicas=...)``."""
    r = solve_pretrain(params, init=init, replicas=replicas)
    obs = {name: float(getattr(r, name)) for name in PRETRAIN_THEORY}
    ok = bool(r.converged) and _finite(obs["Q"], obs["M"])
    # the reused-sequence channel needs the susceptibility V as well as (Q0, Q, M)
    order = PretrainState(Q0=obs["Q0"], Q=obs["Q"], M=obs["M"], V=obs["V"] if _finite(obs["V"]) else None) \
        if ok else None
    # Monte-Carlo channels (softmax) report the standard errors of their expectations
    sem = {k: float(getattr(r, f"{k}_sem")) for k in ("E_pre", "L_pre") if getattr(r, f"{k}_sem")}
    # with replicas: the Monte-Carlo error of the whole fixed point
    sem.update({k: v for k, v in r.replica_sem.items() if k in ("Q", "M", "V")})
    return _PretrainPart(observables=obs, converged=ok, diagnostics={"residual": r.residual, "status": r.status},
                         mc_sem=sem, n_steps=int(r.n_steps), order=order, warm=r.overlaps if ok else None)


def _finetune(params: Params, order: PretrainState, *, q0: float, n_mc: int, n_test: int, key: int,
              max_steps: int) -> _Part:
    """:func:`theory.stages.finetune.solve_finetune` at ``order`` (``(Q0, Q, M)``, with ``V`` for reused
    sequences); with active selection its random control of the same size gives the ``*_random`` observables."""
    if not params.rank_one:
        return _finetune_rank(params, order, q0=q0, n_mc=n_mc, n_test=n_test, key=key, max_steps=max_steps)
    r = solve_finetune(params, order, q0=q0, n_mc=n_mc, n_test=n_test, key=key, max_steps=max_steps)
    obs = {k: float(getattr(r, k)) for k in FINETUNE_THEORY}
    ok = bool(r.converged)
    if r.random_control is not None:
        rc = r.random_control
        obs.update({f"{k}_random": float(getattr(rc, k)) for k in RANDOM_CONTROL})
        ok = ok and bool(rc.converged)
    sem = {k: v for k, v in r.mc_sem.items() if k in ("E_ft", "E_frozen", "L_ft") and v}
    diag = {"residual": r.residual, **{k: v for k, v in r.diagnostics.items() if isinstance(v, (int, float, str))}}
    return _Part(observables=obs, converged=ok, diagnostics=diag, mc_sem=sem, n_steps=int(r.n_steps))


def _finetune_rank(params: Params, order: PretrainState, *, q0: float, n_mc: int, n_test: int, key: int,
                   max_steps: int) -> _Part:
    """Rank ``r`` or ``r* > 1`` (MODEL.md §8): :func:`theory.stages.finetune_rank.solve_finetune_rank`, its
    rotation invariants ``tr_q0, tr_q, o_U, cos_k, tr_v`` and ``E_ft, L_ft, E_frozen, delta_eff, beta_W``."""
    r = solve_finetune_rank(params, order, q0=q0, n_mc=n_mc, n_test=n_test, key=key, max_steps=max_steps)
    obs = r.observables()
    ok = bool(r.converged)
    if r.random_control is not None:
        rc = r.random_control.observables()
        obs.update({f"{k}_random": float(rc[k]) for k in RANK_RANDOM_CONTROL})
        ok = ok and bool(r.random_control.converged)
    sem = {k: v for k, v in r.mc_sem.items() if k in ("E_ft", "E_frozen", "L_ft") and v}
    diag = {"residual": r.residual, **{k: v for k, v in r.diagnostics.items() if isinstance(v, (int, float, str))}}
    return _Part(observables=obs, converged=ok, diagnostics=diag, mc_sem=sem, n_steps=int(r.n_steps))


def _bayes_pretrain(params: Params) -> _Part:
    """:func:`theory.bayes.pretrain.solve_bayes_pretrain`: ``Q_BO, E_pre_BO``."""
    b = solve_bayes_pretrain(params)
    return _Part(observables={"Q_BO": b.Q_BO, "E_pre_BO": b.E_pre_BO}, converged=bool(b.converged),
                 diagnostics={"status": b.status, "n_roots": b.n_roots}, mc_sem={"E_pre_BO": b.E_pre_BO_sem})


def _bayes_finetune(params: Params, order: PretrainState) -> _Part | None:
    """:func:`theory.bayes.finetune.solve_bayes_finetune`: ``q_BO, E_ft_BO`` (``None`` with reused or selected
    sequences, which it does not model). It does not depend on the LoRA rank ``r``; a teacher of rank ``r* > 1``
    takes :func:`theory.bayes.finetune_rank.solve_bayes_finetune_rank`, whose ``q_BO`` is ``Tr q_BO / r*`` (the
    per-direction overlap; the Bayes-optimal ``o_U`` is ``√q_BO``)."""
    if params.reuse != 0 or params.active_rho is not None:
        return None
    if params.teacher_rank > 1:
        from theory.bayes.finetune_rank import solve_bayes_finetune_rank

        b = solve_bayes_finetune_rank(params, order, threshold=False)
        return _Part(observables={"q_BO": b.q_BO, "E_ft_BO": b.E_ft_BO}, converged=bool(b.converged),
                     diagnostics={"status": b.status, "delta_BO": b.delta_BO, "conditions_on": "the ERM weights Ŵ",
                                  "tr_q_BO": b.tr_q_BO, "q_aniso": b.q_aniso, "ess_min": b.ess_min},
                     mc_sem={"E_ft_BO": math.hypot(b.E_ft_BO_se, b.E_ft_BO_se_q), "q_BO": b.q_se},
                     n_steps=int(b.n_steps))
    # the weak-recovery threshold is not an observable; skipping it halves the cost
    b = solve_bayes_finetune(params, order, threshold=False)
    return _Part(observables={"q_BO": b.q_BO, "E_ft_BO": b.E_ft_BO}, converged=bool(b.converged),
                 diagnostics={"status": b.status, "delta_BO": b.delta_BO, "conditions_on": "the ERM weights Ŵ"},
                 mc_sem={"E_ft_BO": b.E_ft_BO_se, "q_BO": b.q_se}, n_steps=int(b.n_steps))


def _bayes_two_stage(params: Params, order: PretrainState | None) -> _Part:
    """:func:`theory.bayes.two_stage.solve_bayes_two_stage`: ``q_BO2, E_ft_BO2``, the fine-tuning baseline that
    conditions on the pre-training data (effective noise ``Δ/2 + Q0 − Q_BO``), beside ``q_BO, E_ft_BO`` (conditions
    on ``Ŵ``: ``Δ/2 + Q0 − M²/Q``). NaN, with the reason, where it is not modelled (reuse, active selection,
    rank ``r > 1``, a degenerate channel) — reported, not raised, since the rest of the point stands."""
    from theory.bayes.two_stage import BAYES_TWO_STAGE, solve_bayes_two_stage

    def missing(reason: str) -> _Part:
        return _Part(observables=dict.fromkeys(BAYES_TWO_STAGE, math.nan), converged=True,
                     diagnostics={"status": "not modelled", "reason": reason}, n_steps=0)

    if params.reuse != 0 or params.active_rho is not None or not params.rank_one:
        return missing("not modelled with reuse, active selection or rank r or r* > 1")
    try:
        s, b = solve_bayes_two_stage(params, None if order is None else order.Q0, threshold=False)
    except ParameterError as err:
        return missing(str(err))
    except SOLVER_FAILURES as err:
        return _Part(observables=dict.fromkeys(BAYES_TWO_STAGE, math.nan), converged=False,
                     diagnostics={"status": "failed", "reason": f"{type(err).__name__}: {err}"}, n_steps=0)
    return _Part(observables={"q_BO2": b.q_BO, "E_ft_BO2": b.E_ft_BO}, converged=bool(b.converged),
                 diagnostics={"status": b.status, "delta_BO2": s.delta_BO2, "Q_BO": s.Q_BO,
                              "conditions_on": "the pre-training data"},
                 mc_sem={"E_ft_BO2": b.E_ft_BO_se, "q_BO2": b.q_se}, n_steps=int(b.n_steps))


# ----------------------------------------------------------------------------------------- sweeps
def _axes(vary: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> list[tuple[str, list[Any]]]:
    items = vary.items() if isinstance(vary, Mapping) else vary
    axes = []
    for name, values in items:
        if isinstance(values, str):
            axes.append(parse_vary(f"{name}={values}"))
            continue
        if name not in PARAM_NAMES:
            raise ParameterError(f"vary {name!r} is not a parameter: allowed one of {', '.join(PARAM_NAMES)}")
        values = [values] if isinstance(values, numbers.Number) else list(values)
        if name not in ("T", "rank", "teacher_rank"):
            # one type per column, so that a resumed table matches its points (1 and 1.0 are one point); numpy
            # numbers as Python ones
            values = [float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v for v in values]
        if not values:
            raise ParameterError(f"vary {name!r}: no values")
        axes.append((name, values))
    return axes


def sweep(
    base: Params,
    vary: Mapping[str, Iterable[Any] | str] | Sequence[tuple[str, Iterable[Any] | str]],
    *,
    stage: str = "both",
    bayes: bool | str = False,
    n_mc: int = 4000,
    q0: float = 1.0,
    out: str | None = None,
    progress: bool = True,
    warm: bool = True,
    overwrite: bool = False,
) -> pd.DataFrame:
    """The theory on the Cartesian product of ``vary`` applied to ``base``, as a tidy DataFrame.

    Args:
        base: the fixed parameters.
        vary: ``{name: values}`` — a list of values, or a ``lora-attn sweep --vary`` string
            (``"0.1,1"``, ``"start:stop:num"``, ``"log:start:stop:num"``); the last axis runs fastest.
        stage, bayes, n_mc, q0: as in :func:`solve` (``bayes`` is off by default here: the fine-tuning
            baseline costs 10–30 s a point).
        out: optional ``.csv``/``.parquet`` path, rewritten after every point; points already there are
            not recomputed (an interrupted sweep resumes).
        progress: print one line per point on stderr.
        warm: start each point's pre-training from the previous point's (:func:`solve`, ``init``).
        overwrite: replace a table at ``out`` that holds another sweep's rows (else :class:`ParameterError`,
            before any work: :func:`model.tables.run_sweep`).

    Returns:
        One row per point: the parameters, ``stage, n_mc, bayes``, every observable, ``converged`` and
        ``n_steps_<part>``. Every point is validated before any work.
    """
    if stage == "finetune":
        raise ParameterError("sweep covers stage 'both' or 'pretrain' (the fine-tuning stage alone needs "
                             "measured pre-training order parameters: call solve(..., stage='finetune'))")
    points = grid(base, _axes(vary))
    for p in points:
        check(p, stage=stage, n_mc=n_mc, q0=q0, bayes=bayes)
    if out is not None:
        check_output_path(out)

    def point(p: Params, w: Any) -> tuple[dict[str, Any], Any]:
        r = solve(p, init=w if warm else None, stage=stage, bayes=bayes, n_mc=n_mc, q0=q0)
        row = r.row()
        for k in p.to_dict():
            row.pop(k, None)
        return row, r.warm

    extra = {"stage": stage, "n_mc": n_mc, "bayes": bayes_label(bayes)}
    if progress:
        print(f"[theory.sweep] {len(points)} points, stage {stage}", file=sys.stderr, flush=True)
    return run_sweep(points, point, out=out, progress=progress, extra_columns=extra, overwrite=overwrite)
