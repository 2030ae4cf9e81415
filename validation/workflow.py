"""The validate workflow: the theory against simulations at several ``D`` (``lora-attn validate``).

Two ways to feed the fine-tuning theory its pre-training state (``pretrain_from``):

- ``"theory"`` (both stages validated): :func:`theory.solve` chains the pre-training theory into the
  fine-tuning theory at ``params``; every observable of MODEL.md §4 is compared with the seed means of
  :func:`simulate.run` at each ``D`` (:func:`validation.compare.compare`);
- ``"simulation"`` (the fine-tuning stage alone, seed by seed): the fine-tuning theory is solved at each seed's
  own measured ``(Q0, Q, M)`` and ``q0 = ‖w*‖²/D`` (:func:`theory_at_measured_pretrain`; reused sequences take
  the susceptibility ``V`` from the pre-training theory), and the gap is the seed mean of ``sim − theory``
  (:func:`validation.compare.paired_points`), so the seed-to-seed spread of the inputs cancels.

The theory's Monte-Carlo error enters the gap's error: the within-solve errors (``mc_sem``) and, with
``finetune_keys ≥ 2``, the spread of the fine-tuning fixed point over that many fixed keys
(:func:`finetune_key_spread`). Each such error is itself estimated, and its degrees of freedom enter the
test (Welch–Satterthwaite, :mod:`validation.verdict`): ``replicas − 1`` for the pre-training replicas,
``finetune_keys − 1`` for the key spread, ``∞`` for a within-solve error over thousands of draws.

The verdict (:func:`validation.compare.compare`, :mod:`validation.verdict`): a Student-t test per observable,
Holm over the family at ``level``, and whether the run could see a gap of the tolerance at 80 % power:
*agree*, *disagree* or *inconclusive*.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

import simulate
import theory
from model.observables import OBSERVABLES, PRETRAIN_THEORY
from model.params import ParameterError, Params
from simulate.run import TRAIN_GRAMS, sizes
from validation.compare import (CRITERIA, AtSize, Validation, compare, compare_paired, finetune_names, merge_errors,
                                paired_points, rs_note)
from validation.control import exact_Q0_mean
from validation.extrapolate import check_form
from validation.verdict import LEVEL, TOLERANCE, check_level, check_tolerance

#: Where the fine-tuning theory's pre-training order parameters come from (see the module doc).
PRETRAIN_FROM = ("theory", "simulation")


@dataclass(frozen=True)
class ValidationRun:
    """Result of :func:`run_validation`.

    Attributes:
        validation: the comparison table and verdict (:class:`validation.compare.Validation`).
        converged: whether every theory solve converged.
        theory: the theory solved at ``params`` (``stage="both"``; ``"pretrain"`` with
            ``pretrain_from="simulation"`` and reused sequences; ``None`` when no solve at ``params`` was needed).
        simulations: the :class:`simulate.SimulationResult` at each ``D``, in the order of ``Ds``.
    """

    validation: Validation
    converged: bool
    theory: Any = None
    simulations: tuple[Any, ...] = ()


def run_validation(
    params: Params,
    *,
    Ds: Sequence[int],
    seeds: int = 4,
    seed: int = 0,
    level: float = LEVEL,
    tolerance: float = TOLERANCE,
    abs_tolerance: float = 0.0,
    criterion: str = "largest",
    extrapolation: str = "inv_D",
    control_variate: bool = False,
    n_mc: int = 4000,
    replicas: int = 4,
    finetune_keys: int = 4,
    train_gram: str = "tokens",
    pretrain_from: str = "theory",
    theory_at_infinity: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
    executor: Any = None,
) -> ValidationRun:
    """The theory at ``params`` against :func:`simulate.run` with ``seeds`` seeds (base ``seed``) at each ``D``.

    Args:
        params: the parameter point.
        Ds: the embedding dimensions of the simulations.
        seeds: seeds per dimension (``≥ 2``: error bars need two; a verdict needs
            :data:`validation.verdict.MIN_SEEDS`).
        seed: base seed of the simulations.
        level: family-wise level of the test (Holm over the observables).
        tolerance, abs_tolerance: *agree* needs every observable's minimal detectable gap (80 % power) to be at
            most ``max(tolerance·|theory|, abs_tolerance)``.
        criterion: test the gap at the largest ``D`` (``"largest"``) or extrapolated to ``D = ∞``
            (``"extrapolated"``, three sizes or more).
        extrapolation: the fit ``a + b/D`` (``"inv_D"``) or ``a + b/√D`` (``"inv_sqrt_D"``).
        control_variate: estimate the pre-training observables with the teacher's ``Q0`` as a control variate
            (:mod:`validation.control`; with 5 seeds or more, ``pretrain_from="theory"``; off by default, the
            module doc says why).
        n_mc: Monte-Carlo draws of the fine-tuning channel (theory).
        replicas: independent Monte-Carlo replicas of the softmax pre-training theory (its error bars).
        finetune_keys: keys of the fine-tuning theory whose spread is its Monte-Carlo error (0 or 1: none).
        train_gram: the token Gram of the training losses (:func:`simulate.run_seed`).
        pretrain_from: ``"theory"`` or ``"simulation"`` (the module doc).
        theory_at_infinity: compare with the ``D = ∞`` theory at every ``D`` (default: linear-``σ`` test errors
            carry the exact output-Gram factor of :mod:`theory.finite_size`).
        cache_dir: store / reuse trained pre-training weights.
        progress: print one line per step on stderr.
        executor: where the seeds run (:mod:`simulate.executors`): with one, every ``(D, seed)`` is submitted at
            once (:func:`simulate.run_many`); default here, one size after the other.

    Raises :class:`ParameterError` before any work for a bad setting, size or theory setting.
    """
    Ds = [int(D) for D in Ds]
    if not Ds:
        raise ParameterError("Ds is empty: allowed one or more integers D ≥ 2")
    if seeds < 2:
        raise ParameterError(f"--seeds {seeds}: allowed seeds ≥ 2 (error bars need two seeds)")
    check_level(level)
    check_tolerance(tolerance, "--tolerance")
    check_tolerance(abs_tolerance, "--abs-tolerance")
    check_form(extrapolation)
    if finetune_keys < 0:
        raise ParameterError(f"--finetune-keys {finetune_keys}: allowed an integer ≥ 0")
    if criterion not in CRITERIA:
        raise ParameterError(f"criterion = {criterion!r} is unknown: allowed one of {', '.join(CRITERIA)}")
    if pretrain_from not in PRETRAIN_FROM:
        raise ParameterError(f"pretrain_from = {pretrain_from!r} is unknown: allowed one of {', '.join(PRETRAIN_FROM)}")
    if train_gram not in TRAIN_GRAMS:
        raise ParameterError(f"train_gram = {train_gram!r} is unknown: allowed one of {', '.join(TRAIN_GRAMS)}")
    for D in Ds:
        sizes(params, D)
    theory.check(params, stage="both", n_mc=n_mc, bayes=False, pretrain_replicas=replicas)

    _say(progress, f"[validate] theory at {', '.join(f'{k}={v}' for k, v in params.to_dict().items())}")
    fed = pretrain_from == "simulation"
    at_size = AtSize() if theory_at_infinity else AtSize.for_params(params)
    verdict = dict(criterion=criterion, level=level, tolerance=tolerance, abs_tolerance=abs_tolerance,
                   extrapolation=extrapolation)
    key_dof = finetune_keys - 1.0
    if fed and params.reuse == 0:
        th = None
    else:
        th = theory.solve(params, stage="pretrain" if fed else "both", bayes=False, n_mc=n_mc,
                          pretrain_replicas=replicas)
    sims = []
    if executor is None:
        for D in Ds:
            _say(progress, f"[validate] simulating D = {D}, {seeds} seeds")
            sims.append(simulate.run(params, D, seeds, seed=seed, cache_dir=cache_dir, progress=progress,
                                     train_gram=train_gram))
    else:  # every (D, seed) at once, so that the pool or cluster works on all of them together
        _say(progress, f"[validate] simulating D = {', '.join(map(str, Ds))}, {seeds} seeds each, on {executor.kind}")
        sims = simulate.run_many([(params, D) for D in Ds], seeds, seed=seed, cache_dir=cache_dir,
                                 progress=progress, train_gram=train_gram, executor=executor)
    if fed:
        V = th.observables["V"] if th is not None else None
        if V is not None:
            _say(progress, f"[validate] reused sequences: the pre-training susceptibility V = {V:.5g} is the theory's")
        per_size, parts, converged = [], [], th is None or th.converged
        for sim in sims:
            rows, sems, ok = theory_at_measured_pretrain(params, sim, n_mc=n_mc, V=V, progress=progress)
            per_size.append((sim.D, sim.per_seed, rows))
            parts.append((sems, math.inf))
            converged = converged and ok
            if finetune_keys >= 2:
                means = sim.per_seed[["Q0", "Q", "M"]].mean()
                order = pretrain_inputs(means.Q0, means.Q, means.M, V)
                q0 = float(measured_q0(params, sim.per_seed).mean())
                parts.append((finetune_key_spread(params, order, q0=q0, n_mc=n_mc, keys=finetune_keys,
                                                  progress=progress), key_dof))
        tsem, tdof = merge_errors(*parts)
        v = compare_paired(paired_points(per_size, finetune_names(params), tsem, at_size, theory_dof=tdof), **verdict)
    else:
        converged = th.converged
        note = rs_note(th.diagnostics.get("finetune", {}))
        if note:
            _say(progress, f"[validate] the fine-tuning fixed point{note}")
        names = OBSERVABLES + tuple(n for n in finetune_names(params) if n not in OBSERVABLES)
        # the pre-training errors come from the spread over the replicas, the fine-tuning ones from many draws
        replica_dof = replicas - 1.0 if replicas >= 2 else math.inf
        pre = {k: v for k, v in th.mc_sem.items() if k in PRETRAIN_THEORY}
        parts = [(pre, replica_dof), ({k: v for k, v in th.mc_sem.items() if k not in pre}, math.inf)]
        if finetune_keys >= 2 and th.converged and th.pretrain is not None:
            # the fine-tuning theory at the pre-training order parameters it was fed
            order = pretrain_inputs(th.pretrain.Q0, th.pretrain.Q, th.pretrain.M,
                                    th.observables["V"] if params.reuse > 0 else None)
            parts.append((finetune_key_spread(params, order, q0=1.0, n_mc=n_mc, keys=finetune_keys,
                                              names=finetune_names(params), progress=progress), key_dof))
        tsem, tdof = merge_errors(*parts)
        control = (lambda D: exact_Q0_mean(params, D)) if control_variate else None
        v = compare(th.observables, sims, names=names, theory_sem=tsem, theory_dof=tdof, at_size=at_size,
                    control=control, **verdict)
    return ValidationRun(validation=v, converged=bool(converged), theory=th, simulations=tuple(sims))


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr, flush=True)


def pretrain_inputs(Q0: float, Q: float, M: float, V: float | None = None) -> theory.PretrainState:
    """The pre-training state the fine-tuning theory is fed: ``(Q0, Q, M)``, with the susceptibility ``V``
    when given (reused sequences need it)."""
    return theory.PretrainState(Q0=float(Q0), Q=float(Q), M=float(M), V=float(V) if V is not None else None)


def finetune_key_spread(params: Params, pretrain: Any, *, q0: float, n_mc: int, keys: int,
                        names: Sequence[str] | None = None, progress: bool = False) -> dict[str, float]:
    """The Monte-Carlo error of one fine-tuning solve, as the standard deviation of its observables over the
    fixed keys ``0, …, keys − 1`` (converged solves only; ``{}`` with fewer than two).

    One solve's fixed draws make its ``q, m, o_w`` deterministic but not exact: the fixed point moves with the
    draws (softmax, ``α' = 10``, ``n_mc = 4000``: sd of ``q`` 0.0066, of ``o_w`` 0.0003 over 8 keys), and the
    within-solve errors (``mc_sem``) cover only the test integrals of ``E_ft, E_frozen`` and the mean ``L_ft``
    at a given fixed point. Every seed of a validation uses the same keys, so this error does not average
    out over seeds; it is added in quadrature to the seeds' standard error, as one number per observable."""
    values = []
    for k in range(keys):
        th = theory.solve(params, stage="finetune", pretrain=pretrain, q0=q0, n_mc=n_mc, key=k, bayes=False)
        if th.converged:
            values.append(dict(th.observables))
        _say(progress, f"[validate] theory's Monte-Carlo spread: key {k + 1}/{keys} (converged={th.converged})")
    if len(values) < 2:
        return {}
    table = pd.DataFrame(values)
    wanted = names if names is not None else table.columns
    return {n: float(table[n].std(ddof=1)) for n in wanted if n in table and table[n].notna().sum() >= 2}


def measured_q0(params: Params, per_seed: pd.DataFrame) -> pd.Series:
    """Each seed's teacher scale ``q0``: ``‖w*‖²/D`` at rank one, ``Tr(U*ᵀU*/D)/r*`` at rank ``r*`` (the theory
    takes ``q0·I_{r*}``; the off-diagonal of the measured Gram, ``O(1/√D)``, is left out)."""
    if "q0" in per_seed:
        return per_seed["q0"].astype(float)
    return per_seed["tr_q0"].astype(float) / params.teacher_rank


def theory_at_measured_pretrain(params: Params, sim: Any, *, n_mc: int, V: float | None = None,
                                progress: bool = False) -> tuple[pd.DataFrame, dict[str, float], bool]:
    """The fine-tuning theory (``theory.solve(stage="finetune")``) at each seed's own measured
    ``(Q0, Q, M)`` and ``q0 = ‖w*‖²/D`` (and the given pre-training susceptibility ``V``, which reused
    sequences need). Returns one row per seed of theory observables, the largest Monte-Carlo error per
    observable over the seeds (the draws are the same for every seed, so that error does not average
    out), and whether every solve converged."""
    rows, sems, converged = [], {}, True
    q0s = measured_q0(params, sim.per_seed)
    for i, r in enumerate(sim.per_seed.itertuples()):
        inputs = dict(Q0=float(r.Q0), Q=float(r.Q), M=float(r.M))
        order = pretrain_inputs(**inputs, V=V)
        th = theory.solve(params, stage="finetune", pretrain=order, q0=float(q0s.iloc[i]), n_mc=n_mc, bayes=False)
        rows.append(dict(th.observables))
        for k, v in th.mc_sem.items():
            if v is not None and math.isfinite(v):
                sems[k] = max(sems.get(k, 0.0), float(v))
        converged = converged and th.converged
        _say(progress, f"[validate] D = {sim.D}: theory at seed {i}'s measured Q0 = {inputs['Q0']:.4g}, "
                       f"Q = {inputs['Q']:.4g}, M = {inputs['M']:.4g} (converged={th.converged}"
                       f"{rs_note(th.diagnostics.get('finetune', {}))})")
    return pd.DataFrame(rows), sems, converged
