"""One simulation point: both stages at finite ``D``, every observable of MODEL.md §4, seed-averaged.

Orchestration only: the sizes of a run (:func:`sizes`), one seed's draws, training and measurements
(:func:`run_seed`), and the average over seeds (:func:`run`). The pieces live below: data
(:mod:`simulate.data`), training (:mod:`simulate.pretrain`, :mod:`simulate.finetune`), selection
(:mod:`simulate.selection`), measurement (:mod:`simulate.measure`), cache (:mod:`simulate.cache`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import Array

from model.observables import (OBSERVABLES, RANDOM_CONTROL, RANK_RANDOM_CONTROL, random_control_names,
                               rank_observable_names, recalibration)
from model.params import ParameterError, Params
from simulate.cache import PretrainCache, pretrain_cache_key
from simulate.data import Batch, sample_batch, sample_teacher
from simulate.executors import Executor, map_items
from simulate.finetune import finetune_data_term, train_finetune
from simulate.layer import attention_preactivation, lora_preactivation
from simulate.measure import (lora_overlaps, lora_subspace_overlaps, mean_output_error, offdiag_residual_variance,
                              order_parameters)
from simulate.pretrain import pretrain_data_term, train_pretrain, train_pretrain_convex
from simulate.seed_tasks import SeedTask, run_task
from simulate.selection import frozen_score, n_kept, select_lowest, select_random

__all__ = ["OBSERVABLES", "RANDOM_CONTROL", "SeedResult", "SimulationResult", "Sizes", "run", "run_many", "run_seed", "sizes"]

PRETRAIN_SOLVERS = ("lbfgs", "convex")
#: The token Gram ``G = XXᵀ/D`` in the training losses: the model's own (``"tokens"``), or its
#: ``D → ∞`` limit ``I_T`` (``"identity"``, a diagnostic that removes one finite-``D`` effect; see run_seed).
TRAIN_GRAMS = ("tokens", "identity")


@dataclass(frozen=True)
class SeedResult:
    """One seed: ``observables`` (MODEL.md names; ``*_random`` for the random control) and diagnostics.

    ``state`` (only with ``keep_state=True``) holds the arrays behind the numbers: ``W_hat``, ``w_hat``,
    ``teacher``, ``beta_W``, ``pretrain_batch``, ``finetune_batch``, ``test_batch``.
    """

    observables: dict[str, float]
    diagnostics: dict[str, Any]
    state: dict[str, Any] | None = None


@dataclass(frozen=True)
class SimulationResult:
    """Seed-averaged simulation of one parameter point.

    Attributes:
        params: the parameters.
        D: embedding dimension.
        seeds: number of seeds averaged.
        seed: base seed (seed ``s`` of the run uses ``fold_in(PRNGKey(seed), s)``).
        observables: ``{name: mean over seeds}``.
        sem: ``{name: standard error of the mean}`` (NaN with one seed).
        per_seed: one row per seed, one column per observable and diagnostic.
    """

    params: Params
    D: int
    seeds: int
    seed: int
    observables: dict[str, float]
    sem: dict[str, float]
    per_seed: pd.DataFrame = field(repr=False)

    def row(self, prefix: str = "") -> dict[str, Any]:
        """A flat record for a sweep table: ``{prefix+name: mean, prefix+name+"_sem": sem}`` plus the
        worst stationarity diagnostics over seeds (``pretrain_grad_norm``, ``finetune_grad_norm``) and
        whether every fit converged (``sim_converged``)."""
        out: dict[str, Any] = {"D": self.D, "seeds": self.seeds}
        for name, mean in self.observables.items():
            out[prefix + name] = mean
            out[prefix + name + "_sem"] = self.sem[name]
        d = self.per_seed
        out[prefix + "pretrain_grad_norm"] = float(d["pretrain_grad_norm"].max())
        out[prefix + "finetune_grad_norm"] = float(d["finetune_grad_norm"].max())
        out[prefix + "sim_converged"] = bool(d["pretrain_converged"].all() and d["finetune_converged"].all())
        return out

    def to_json_dict(self) -> dict[str, Any]:
        """``{"params", "D", "seeds", "seed", "observables", "sem", "diagnostics"}`` with NaN as None."""
        diag_cols = [c for c in self.per_seed.columns if c not in self.observables]
        diagnostics = {c: _jsonable(self.per_seed[c].tolist()) for c in diag_cols}
        return {
            "params": _jsonable(self.params.to_dict()),
            "D": self.D,
            "seeds": self.seeds,
            "seed": self.seed,
            "observables": _jsonable(self.observables),
            "sem": _jsonable(self.sem),
            "diagnostics": diagnostics,
        }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# ---------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Integer sizes of a run at dimension ``D`` (MODEL.md §1–3)."""

    D: int
    P0: int
    P: int
    N: int
    N_prime: int
    n_reuse: int
    pool: int
    n_test: int


def sizes(params: Params, D: int, n_test: int | None = None) -> Sizes:
    """``P0 = round(κ0 D)``, ``P = round(κ D)``, ``N = ⌊αD²⌋``, ``N' = ⌊α'D⌋`` (``⌊ρ⌊ᾱ'D⌋⌋`` when
    active), ``n_reuse = ⌊e N'⌋``; raises :class:`ParameterError` when a size would be empty."""
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 2:
        raise ParameterError(f"D = {D!r} is out of range: allowed an integer D ≥ 2")
    D = int(D)
    eps = 1e-9
    P0 = max(1, round(params.kappa0 * D))
    P = max(1, round(params.kappa * D))
    N = math.floor(params.alpha * D * D + eps)
    pool = math.floor(params.pool_ratio * D + eps) if params.active_rho is not None else 0
    if params.active_rho is not None:
        N_prime = n_kept(params.active_rho, pool)
    else:
        N_prime = math.floor(params.alpha_prime * D + eps)
    n_reuse = math.floor(params.reuse * N_prime + eps)
    n_test = 10 * D if n_test is None else int(n_test)
    if N < 1:
        raise ParameterError(f"alpha = {params.alpha} gives N = ⌊αD²⌋ = 0 at D = {D}: allowed alpha ≥ 1/D²")
    if N_prime < 1:
        raise ParameterError(
            f"the fine-tuning set is empty at D = {D} (alpha_prime / active_rho·pool_ratio too small): "
            "allowed N' = ⌊α'D⌋ ≥ 1"
        )
    if n_reuse > N:
        raise ParameterError(
            f"reuse = {params.reuse} needs {n_reuse} pre-training sequences but N = {N}: allowed reuse·α' ≤ α·D"
        )
    if n_test < 1:
        raise ParameterError(f"n_test = {n_test} is out of range: allowed n_test ≥ 1")
    return Sizes(D=D, P0=P0, P=P, N=N, N_prime=N_prime, n_reuse=n_reuse, pool=pool, n_test=n_test)


# ---------------------------------------------------------------------------------------- one seed


def run_seed(
    params: Params,
    D: int,
    key: Array,
    *,
    n_test: int | None = None,
    n_restarts: int = 3,
    pretrain_solver: str = "lbfgs",
    keep_state: bool = False,
    cache: PretrainCache | None = None,
    train_gram: str = "tokens",
    matrix_lora: bool = False,
) -> SeedResult:
    """Both stages for one draw of teacher and data (MODEL.md §2–4; rank ``r``, ``r*``: §8).

    Args:
        params: the parameter point.
        D: embedding dimension.
        key: the seed's key; every random draw is a ``fold_in`` of it.
        n_test: fresh test sequences for the errors (default ``10 D``).
        n_restarts: fine-tuning restarts (lowest objective kept).
        pretrain_solver: ``"lbfgs"`` (trains ``W``) or ``"convex"`` (``S ⪰ 0``; linear ``σ``, ``κ ≥ 1``).
        keep_state: attach the trained weights and the batches to the result (for checks).
        cache: reuse / store the trained ``Ŵ`` (it depends on no fine-tuning parameter).
        train_gram: ``"tokens"`` (the model: each training sequence's error ``(1/D)‖(σ(A) − B)X‖_F²`` is
            ``Tr(E G Eᵀ)`` with its own ``G = XXᵀ/D``) or ``"identity"`` (``G → I_T``, the loss of the
            ``D → ∞`` theory, in both training stages; ``L_pre``/``L_ft`` are then that loss). The
            fluctuation ``√D(G − I)`` is exactly the pre-activation of the identity direction of ``S̄``,
            so the model's training loss is biased along ``Tr S̄`` at order ``D^{-1/2}``; comparing the two
            settings on the same seeds measures that finite-size effect. Test errors always use ``G``.
        matrix_lora: train the LoRA as a ``D×r`` matrix and report the rank-``r`` observables (MODEL.md §8)
            even at ``r = r* = 1`` (a check: the same draws, the rank-one numbers to rounding). ``r`` or ``r* > 1``
            always does. ``U*`` is drawn from the key of ``w*`` (at ``r* = 1`` it holds exactly ``w*``), and the
            pre-training does not depend on the ranks.
    """
    p = params
    if pretrain_solver not in PRETRAIN_SOLVERS:
        raise ParameterError(f"pretrain_solver = {pretrain_solver!r} is unknown: allowed {PRETRAIN_SOLVERS}")
    if pretrain_solver == "convex" and (p.sigma != "linear" or p.kappa < 1):
        raise ParameterError("pretrain_solver = 'convex' needs sigma = 'linear' and kappa ≥ 1")
    if train_gram not in TRAIN_GRAMS:
        raise ParameterError(f"train_gram = {train_gram!r} is unknown: allowed {TRAIN_GRAMS}")
    sz = sizes(p, D, n_test)
    k = {name: jax.random.fold_in(key, i) for i, name in enumerate(
        ("teacher", "pretrain", "init_W", "finetune", "test", "init_w", "pool", "random_subset"))}

    matrix = matrix_lora or not p.rank_one
    teacher = sample_teacher(k["teacher"], D, sz.P0, teacher_rank=p.teacher_rank if matrix else None,
                             law=p.teacher_law)
    pre = sample_batch(k["pretrain"], sz.N, p.T, teacher)
    B_pre = pre.pretrain_target(p.delta, p.sigma, p.beta)
    solver_id = pretrain_solver if train_gram == "tokens" else f"{pretrain_solver}/gram={train_gram}"
    cache_key = pretrain_cache_key(p, D, key, solver_id) if cache is not None else None
    G_pre = _train_gram(pre, train_gram)
    cached = cache.get(cache_key) if cache is not None else None
    if cached is not None:
        W_hat, pre_info = jnp.asarray(cached[0]), cached[1]
    elif pretrain_solver == "lbfgs":
        fit = train_pretrain(k["init_W"], pre.X, G_pre, B_pre, P=sz.P, lam=p.lam, sigma=p.sigma, beta=p.beta)
        W_hat, pre_info = fit.W, fit.info
    else:
        W_hat, pre_info = train_pretrain_convex(pre.X, G_pre, B_pre, P=sz.P, lam=p.lam)
    if cache is not None and cached is None:
        cache.put(cache_key, np.asarray(W_hat), pre_info)

    obs: dict[str, float] = dict(order_parameters(W_hat, teacher.W0))
    obs["L_pre"] = float(pretrain_data_term(W_hat, pre.X, G_pre, B_pre, p.sigma, p.beta)) / sz.N

    test = sample_batch(k["test"], sz.n_test, p.T, teacher)
    A_test = attention_preactivation(test.X, W_hat)
    obs["E_pre"] = mean_output_error(A_test, test.pretrain_target(p.delta, p.sigma, p.beta), test.G, p.sigma, p.beta)

    beta_W = recalibration(p.recalibrate, obs["M"], obs["Q"])
    B_test_ft = test.finetune_target(p.delta, p.sigma, p.beta)
    obs["E_frozen"] = mean_output_error(beta_W * A_test, B_test_ft, test.G, p.sigma, p.beta)

    diag: dict[str, Any] = {
        "N": sz.N, "N_prime": sz.N_prime, "P0": sz.P0, "P": sz.P, "n_test": sz.n_test, "beta_W": beta_W,
        "pretrain_grad_norm": pre_info.grad_norm, "pretrain_iters": pre_info.n_iter,
        "pretrain_converged": pre_info.converged,
    }

    state: dict[str, Any] = {"W_hat": W_hat, "teacher": teacher, "beta_W": beta_W, "pretrain_batch": pre,
                             "test_batch": test}

    def finetune_on(batch: Batch, init_key: Array) -> tuple[dict[str, float], dict[str, Any]]:
        A_frozen = beta_W * attention_preactivation(batch.X, W_hat)
        B_ft = batch.finetune_target(p.delta, p.sigma, p.beta)
        G_ft = _train_gram(batch, train_gram)
        ft = train_finetune(init_key, batch.X, G_ft, A_frozen, B_ft, lam_prime=p.lam_prime,
                            sigma=p.sigma, beta=p.beta, n_restarts=n_restarts, rank=p.rank if matrix else None)
        o = lora_subspace_overlaps(ft.w, teacher.w_star) if matrix else lora_overlaps(ft.w, teacher.w_star)
        o["L_ft"] = float(finetune_data_term(ft.w, batch.X, G_ft, A_frozen, B_ft, p.sigma, p.beta)) / len(batch)
        o["delta_eff"] = offdiag_residual_variance(batch.A0, A_frozen, batch.Z, p.delta)
        A_ft = beta_W * A_test + lora_preactivation(test.X, ft.w)
        o["E_ft"] = mean_output_error(A_ft, B_test_ft, test.G, p.sigma, p.beta)
        state.setdefault("w_hat", ft.w)
        state.setdefault("finetune_batch", batch)
        spread = (max(ft.restart_objectives) - min(ft.restart_objectives)) if ft.restart_objectives else 0.0
        d = {"finetune_grad_norm": ft.info.grad_norm, "finetune_iters": ft.info.n_iter,
             "finetune_converged": ft.info.converged, "finetune_restart_spread": spread,
             "finetune_best_start": ft.best_start}
        return o, d

    if p.active_rho is not None:
        pool = sample_batch(k["pool"], sz.pool, p.T, teacher)
        scores = frozen_score(attention_preactivation(pool.X, W_hat))
        chosen = pool.take(select_lowest(scores, sz.N_prime))
        control = pool.take(select_random(k["random_subset"], sz.pool, sz.N_prime))
        o, d = finetune_on(chosen, k["init_w"])
        o_r, d_r = finetune_on(control, k["init_w"])
        obs.update(o)
        diag.update(d)
        obs.update({f"{name}_random": o_r[name] for name in (RANK_RANDOM_CONTROL if matrix else RANDOM_CONTROL)})
        diag.update({f"{name}_random": v for name, v in d_r.items()})
        diag["pool"] = sz.pool
    else:
        fresh = sample_batch(k["finetune"], sz.N_prime - sz.n_reuse, p.T, teacher)
        reused = pre.take(np.arange(sz.n_reuse))
        batch = reused.concat(fresh)
        o, d = finetune_on(batch, k["init_w"])
        obs.update(o)
        diag.update(d)
        diag["n_reuse"] = sz.n_reuse
    diag["alpha_prime_eff"] = sz.N_prime / D
    ordered = {name: obs[name] for name in (rank_observable_names(p.rank, p.teacher_rank) if matrix else OBSERVABLES)}
    ordered.update({name: v for name, v in obs.items() if name not in ordered})
    return SeedResult(observables=ordered, diagnostics=diag, state=state if keep_state else None)


def _train_gram(batch: Batch, train_gram: str) -> Array:
    """The token Gram the training loss uses (run_seed's ``train_gram``)."""
    if train_gram == "tokens":
        return batch.G
    return jnp.broadcast_to(jnp.eye(batch.G.shape[-1], dtype=batch.G.dtype), batch.G.shape)


# ---------------------------------------------------------------------------------------- seeds


def run(
    params: Params,
    D: int,
    seeds: int = 1,
    *,
    seed: int = 0,
    n_test: int | None = None,
    n_restarts: int = 3,
    pretrain_solver: str = "lbfgs",
    progress: bool = False,
    cache_dir: str | None = None,
    train_gram: str = "tokens",
    executor: Executor | None = None,
) -> SimulationResult:
    """Simulate ``seeds`` independent draws at dimension ``D`` and average (MODEL.md §4 observables).

    Seed ``s ∈ {0..seeds−1}`` uses ``fold_in(PRNGKey(seed), s)``: the same ``seed`` reproduces a run
    exactly, and run ``s`` does not depend on how many seeds are requested nor on where it ran.
    ``train_gram``: see :func:`run_seed`. ``executor``: where the seeds run (:mod:`simulate.executors`;
    default here, one after the other). ``cache_dir``: trained pre-training weights and finished seeds are
    stored there and reused (:mod:`simulate.seed_tasks`), so an interrupted run resumes.
    """
    return run_many([(params, D)], seeds, seed=seed, n_test=n_test, n_restarts=n_restarts,
                    pretrain_solver=pretrain_solver, progress=progress, cache_dir=cache_dir,
                    train_gram=train_gram, executor=executor)[0]


def run_many(
    points: Sequence[tuple[Params, int]],
    seeds: int = 1,
    *,
    seed: int = 0,
    n_test: int | None = None,
    n_restarts: int = 3,
    pretrain_solver: str = "lbfgs",
    progress: bool = False,
    cache_dir: str | None = None,
    train_gram: str = "tokens",
    executor: Executor | None = None,
) -> list[SimulationResult]:
    """:func:`run` at several ``(params, D)`` points, every seed of every point submitted to ``executor`` at
    once (so a pool or a cluster works on all of them together). One result per point, in order."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ParameterError(f"seeds = {seeds!r} is out of range: allowed an integer seeds ≥ 1")
    if pretrain_solver not in PRETRAIN_SOLVERS:
        raise ParameterError(f"pretrain_solver = {pretrain_solver!r} is unknown: allowed {PRETRAIN_SOLVERS}")
    if train_gram not in TRAIN_GRAMS:
        raise ParameterError(f"train_gram = {train_gram!r} is unknown: allowed {TRAIN_GRAMS}")
    for params, D in points:
        sizes(params, D, n_test)  # validate before any work
    tasks = [SeedTask(params=params, D=int(D), seed=int(seed), index=s, n_test=n_test, n_restarts=n_restarts,
                      pretrain_solver=pretrain_solver, train_gram=train_gram, cache_dir=cache_dir)
             for params, D in points for s in range(int(seeds))]

    def report(i: int, row: dict[str, Any]) -> None:
        if progress:
            t = tasks[i]
            print(f"[simulate] D={t.D} seed {t.index + 1}/{seeds}: E_pre={row['E_pre']:.4f} "
                  f"E_ft={row['E_ft']:.4f} o_w={row.get('o_w', row.get('o_U', math.nan)):.4f}", file=sys.stderr,
                  flush=True)

    rows = map_items(executor, run_task, tasks, report)
    out = []
    for j, (params, D) in enumerate(points):
        point_rows = rows[j * seeds:(j + 1) * seeds]
        out.append(_average(params, int(D), int(seeds), int(seed), point_rows))
    return out


def _average(params: Params, D: int, seeds: int, seed: int, rows: list[dict[str, Any]]) -> SimulationResult:
    """Seed means and standard errors of the observables of one point."""
    per_seed = pd.DataFrame(rows)
    known = {*OBSERVABLES, *rank_observable_names(params.rank, params.teacher_rank), *random_control_names(),
             *random_control_names(rank_one=False)}
    names = [c for c in rows[0] if c in known]
    means = {n: float(per_seed[n].mean()) for n in names}
    sem = {n: (float(per_seed[n].std(ddof=1) / math.sqrt(seeds)) if seeds > 1 else float("nan")) for n in names}
    return SimulationResult(params=params, D=D, seeds=seeds, seed=seed, observables=means, sem=sem,
                            per_seed=per_seed)
