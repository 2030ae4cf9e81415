"""Replica-symmetric theory of a rank-``r`` LoRA fine-tuned by ERM towards a rank-``r*`` teacher (MODEL.md §8).

Fixed point ``(q, m, V) = matrix_prior_update(rank_hats(q, m, V))`` over ``r×r``, ``r×r*``, ``r×r`` matrices:
the channel half-step of :mod:`theory.channels.lora_rank` on samples of the frozen pair from
:func:`theory.laws.mixture.channel_samples` (fresh, reused or actively selected sequences: the frozen part's
law does not involve the LoRA), then the matrix ridge :func:`theory.priors.matrix_ridge.matrix_prior_update`.
Solved by :func:`theory.fixed_point.phased_fixed_point` on the map of :class:`theory.stages.rank_map.RankMap`
(the prox started from ``ω`` only, then from every start; Anderson mixing, then plain damping, then the fixed
point as a root on the canonical slice), from the informed start and, where that fails or ends uninformed,
from a second informed start, keeping the lower objective (:func:`_solve_ground_state`), as the rank-one
solver does. At ``r = r* = 1`` these are the equations of :mod:`theory.stages.finetune`.

Gauge. The loss is invariant under ``U → UO`` (``O ∈ O(r)``) and the teacher's law under ``U* → U*O*``, so the
exact map is equivariant and its fixed points are orbits; the fixed Monte-Carlo draws break the symmetry by
their sampling error, which leaves a slow drift along the orbit. Each step therefore returns its image in a
canonical frame (:func:`theory.stages.rank_map.canonical_frame`): the singular frames of ``m`` (``m``
rectangular-diagonal, non-negative, decreasing), the student directions outside the span of ``m`` rotated to diagonalise their block
of ``q``, and signs fixed by ``q_{1k} ≥ 0``. Only rotation invariants are reported: ``Tr q``, ``Tr q0``,
``o_U`` and the principal cosines (:mod:`model.observables`), ``Tr V``.

Not carried over yet from the rank-one solver: the switch-off detection (``Û = 0`` above ``λ'_c``, solved here
as an ordinary fixed point if the iteration reaches it), ``recalibrate = 'error'``, and the probe of prox jumps
in the replica-symmetry check (``diagnostics["replicon"]`` is the local part only, ``"rs_stable_local"`` its
verdict).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from model.observables import delta_eff, principal_cosines, recalibration, subspace_overlap
from model.params import ParameterError, Params
from theory.channels.lora_rank import (RankHats, RankOverlaps, RankSamples, rank_channel_draws, rank_error_draws,
                                       rank_fresh_errors)
from theory.channels.prox import START_SCALES
from theory.fixed_point import phased_fixed_point
from theory.laws.fresh import noise_law
from theory.laws.mixture import channel_samples
from theory.stages.finetune import INFORMED_RESTART, UNINFORMED_OW, UNINFORMED_Q
from theory.stages.rank_map import RankMap, canonical_frame, pack
from theory.states import PretrainState

__all__ = ["RankFinetuneResult", "canonical_frame", "ground_state_energy", "informed_start", "solve_finetune_rank"]


@dataclass(frozen=True)
class RankFinetuneResult:
    """Fixed point and rotation-invariant observables (MODEL.md §8 names). ``q, m, V``: the matrices in the
    canonical frame (NaN when not converged); ``cosines``: the principal cosines, largest first."""

    q: np.ndarray
    m: np.ndarray
    V: np.ndarray
    tr_q: float
    tr_q0: float
    tr_v: float
    o_U: float
    cosines: tuple[float, ...]
    E_ft: float
    L_ft: float
    E_frozen: float
    delta_eff: float
    beta_W: float
    hats: RankHats | None
    converged: bool
    n_steps: int
    residual: float
    mc_sem: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    random_control: RankFinetuneResult | None = None

    def observables(self) -> dict[str, float]:
        """``{tr_q0, tr_q, o_U, cos_1.., tr_v, E_ft, L_ft, E_frozen, delta_eff, beta_W}``."""
        out = {"tr_q0": self.tr_q0, "tr_q": self.tr_q, "o_U": self.o_U}
        out.update({f"cos_{i + 1}": float(c) for i, c in enumerate(self.cosines)})
        out.update({"tr_v": self.tr_v, "E_ft": self.E_ft, "L_ft": self.L_ft, "E_frozen": self.E_frozen,
                    "delta_eff": self.delta_eff, "beta_W": self.beta_W})
        return out


def informed_start(params: Params, q0: float, fraction: float = 0.5) -> RankOverlaps:
    """``q = fraction·q0·I_r``, ``m = fraction·q0·[I_k 0]`` (``k = min(r, r*)``: informed), ``V = v I_r`` with the
    rank-one start ``v = 1/(2λ' + α'T + 1)``."""
    r, s = params.rank, params.teacher_rank
    v = 1.0 / (2 * params.lam_prime + params.effective_alpha_prime * params.T + 1.0)
    return RankOverlaps(q=fraction * q0 * np.eye(r), m=fraction * q0 * np.eye(r, s), V=v * np.eye(r))


def solve_finetune_rank(
    params: Params,
    pre: Any,
    *,
    q0: float = 1.0,
    n_mc: int = 4000,
    n_test: int = 100_000,
    key: int = 0,
    init: RankOverlaps | None = None,
    damping: float = 0.3,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 300,
    n_iter: int = 20,
    anderson: int = 3,
    patience: int | None = 100,
    gauge: bool = True,
    random_control: bool = True,
) -> RankFinetuneResult:
    """Solve the rank-``r`` fine-tuning fixed point (module doc) and evaluate its observables.

    Args: as :func:`theory.stages.finetune.solve_finetune` (``q0``: the teacher's ``q0 = q0·I_{r*}``), plus
    ``init`` (a :class:`RankOverlaps`; default :func:`informed_start`, and then a second start as in
    :func:`_solve_ground_state`) and ``gauge`` (return each step in the canonical frame,
    :func:`canonical_frame`; ``False`` only to measure what it buys).
    """
    if not (isinstance(n_mc, int) and n_mc >= 2):
        raise ParameterError(f"n_mc = {n_mc!r} is out of range: allowed an integer ≥ 2")
    if not (q0 > 0 and math.isfinite(q0)):
        raise ParameterError(f"q0 = {q0!r} is out of range: allowed 0 < q0 < inf")
    pre = PretrainState.of(pre)
    if params.reuse > 0 and not pre.has_susceptibility:
        raise ParameterError(f"reuse = {params.reuse} > 0 needs the pre-training susceptibility V: pass a "
                             "PretrainState(Q0, Q, M, V); allowed reuse = 0 with (Q0, Q, M) alone")
    cfg = dict(q0=q0, n_mc=n_mc, n_test=n_test, key=key, damping=damping, rtol=rtol, atol=atol,
               max_steps=max_steps, n_iter=n_iter, anderson=anderson, patience=patience, gauge=gauge)
    res = _solve_ground_state(params, pre, cfg, fresh_only=False, init=init)
    if params.active_rho is not None and random_control:
        ctrl = _solve_ground_state(params, pre, cfg, fresh_only=True, init=init)
        res = dataclasses.replace(res, random_control=ctrl)
    return res


def ground_state_energy(params: Params, r: RankFinetuneResult) -> float:
    """``e = α' L_ft + λ' Tr q``: the fine-tuning objective per ``D`` at the fixed point,
    ``(1/D)[Σ_ν ℓ_ν + λ'‖Û‖_F²]`` (rank-one: :func:`theory.stages.finetune.ground_state_energy`)."""
    return params.effective_alpha_prime * r.L_ft + params.lam_prime * r.tr_q


def _solve_ground_state(params: Params, pre: PretrainState, cfg: dict[str, Any], *, fresh_only: bool,
                        init: RankOverlaps | None) -> RankFinetuneResult:
    """:func:`_solve` from ``init`` (default: :func:`informed_start`); as in the rank-one
    :func:`theory.stages.finetune._solve_ground_state`, when that run does not converge or ends on the uninformed
    branch (largest principal cosine ``< UNINFORMED_OW``, ``Tr q > UNINFORMED_Q·r·q0``: no teacher direction
    learned; ``o_U`` would flag an under-parametrised LoRA, ``o_U ≤ √(r/r*)``), it is repeated from
    ``q = m = INFORMED_RESTART·q0`` and the converged fixed point of lower :func:`ground_state_energy` is kept
    (``diagnostics["ground_state"]`` records the energies)."""
    first = _solve(params, pre, cfg, fresh_only=fresh_only, init=init)
    q0 = cfg["q0"]
    uninformed = first.converged and first.tr_q > UNINFORMED_Q * params.rank * q0 and \
        not (first.cosines[0] >= UNINFORMED_OW)
    if init is not None or math.isinf(params.lam_prime) or not (uninformed or not first.converged):
        return first
    second = _solve(params, pre, cfg, fresh_only=fresh_only, init=informed_start(params, q0, INFORMED_RESTART))
    runs = [r for r in (first, second) if r.converged]
    best = min(runs, key=lambda r: ground_state_energy(params, r)) if runs else first
    record = {"energies": [ground_state_energy(params, r) if r.converged else float("nan") for r in (first, second)],
              "o_U": [first.o_U, second.o_U], "selected": "first" if best is first else "restart"}
    return dataclasses.replace(best, n_steps=first.n_steps + second.n_steps,
                               diagnostics={**best.diagnostics, "ground_state": record})


#: Relative step of the root fallback's own finite differences (:func:`theory.fixed_point.root_fallback`): the
#: prox is solved to a tolerance that a step of ``1e-8`` reads (linear σ, T = 2, α' = 0.5, (r, r*) = (2, 1): the
#: slopes of ``G`` at steps ``1e-8`` and ``1e-6`` differ by up to 200 %, those at ``1e-6`` and ``1e-4`` by ≤ 15 %).
ROOT_HYBR_STEP = 1e-4


def _solve(params: Params, pre: PretrainState, cfg: dict[str, Any], *, fresh_only: bool,
           init: RankOverlaps | None) -> RankFinetuneResult:
    r, s = params.rank, params.teacher_rank
    q0m = cfg["q0"] * np.eye(s)
    bW = recalibration(params.recalibrate, pre.M, pre.Q)
    law = noise_law(params, pre, bW)
    pairs, info = channel_samples(params, pre, bW, cfg["n_mc"], cfg["key"], fresh_only=fresh_only)
    xi, eta = rank_channel_draws(jax.random.fold_in(jax.random.PRNGKey(cfg["key"]), 0), len(pairs), params.T, r, s)
    samples = RankSamples(xi=xi, eta=eta, A=pairs.A, H=pairs.H)
    d = delta_eff(params.delta, pre.Q0, pre.Q, pre.M, bW)
    draws = rank_error_draws(cfg["key"], 1, cfg["n_test"], params.T, r, s)
    extra = {k: v for k, v in info.items() if k != "noise_law"}
    nan = float("nan")
    k = min(r, s)

    if math.isinf(params.lam_prime):
        E_ft, E_fr, s1, s0 = rank_fresh_errors(params, np.zeros((r, r)), np.zeros((r, s)), q0m, law, d, draws)
        z = np.zeros((r, r))
        return RankFinetuneResult(q=z, m=np.zeros((r, s)), V=z, tr_q=0.0, tr_q0=float(np.trace(q0m)), tr_v=0.0,
                                  o_U=nan, cosines=(nan,) * k, E_ft=E_ft, L_ft=nan, E_frozen=E_fr,
                                  delta_eff=info["delta_eff"], beta_W=bW, hats=None, converged=True, n_steps=0,
                                  residual=0.0, mc_sem={"E_ft": s1, "E_frozen": s0},
                                  diagnostics={"reason": "lam_prime = inf: U = 0", **extra})

    lora = RankMap(params, samples, q0m, n_iter=cfg["n_iter"], rtol=cfg["rtol"], atol=cfg["atol"],
                   gauge=cfg["gauge"])
    start = init if init is not None else informed_start(params, cfg["q0"])
    run = phased_fixed_point(lora.step(START_SCALES[:1]), lora.step(START_SCALES), pack(start), verify=lora.verify,
                             residual=lora.residual, root_starts=lora.root_starts, from_root=lora.from_root,
                             damping=cfg["damping"], rtol=cfg["rtol"], atol=cfg["atol"], max_steps=cfg["max_steps"],
                             anderson=cfg["anderson"], patience=cfg["patience"], hybr_step=ROOT_HYBR_STEP)
    ov, hats, sem, diag = run.payload
    ok = run.converged
    status = run.status
    if ok and status == "root":
        # the root solves the diagonal subspace only: the full map must keep it there within Monte-Carlo error
        z, z_max = RankMap.off_diagonal_z(hats, sem, blind=not np.any(ov.m))
        diag.update(off_diagonal_z=z, off_diagonal_z_max=z_max)
        if not z <= z_max:
            ok, status = False, "root_off_diagonal"
    if ok:
        q, m, V = ov.q, ov.m, ov.V
        E_ft, E_fr, s1, s0 = rank_fresh_errors(params, q, m, q0m, law, d, draws)
        cos = tuple(float(c) for c in principal_cosines(q, m, q0m))
        o_U = subspace_overlap(q, m, q0m)
        diag["rs_stable_local"] = bool(diag["replicon"] + 3 * sem["replicon"] < 1.0)
        diag["replicon_sem"] = sem["replicon"]
    else:
        q, m, V = (np.full_like(a, np.nan) for a in (ov.q, ov.m, ov.V))
        E_ft = E_fr = s1 = s0 = o_U = nan
        cos = (nan,) * k
    L_ft = diag.pop("L_ft", nan)
    sem = {kk: vv for kk, vv in sem.items() if np.ndim(vv) == 0}
    sem.update({"E_ft": s1, "E_frozen": s0})
    diag.update({"status": status, "fallback": run.fallback, "root": run.root,
                 "n_steps_one_start": run.cheap.n_steps, "noise_law": law, "n_mc": cfg["n_mc"],
                 "n_test": cfg["n_test"], "key": cfg["key"], "gauge": cfg["gauge"], **extra})
    return RankFinetuneResult(q=q, m=m, V=V, tr_q=float(np.trace(q)), tr_q0=float(np.trace(q0m)),
                              tr_v=float(np.trace(V)), o_U=o_U, cosines=cos, E_ft=E_ft, L_ft=L_ft, E_frozen=E_fr,
                              delta_eff=info["delta_eff"], beta_W=bW, hats=hats, converged=ok, n_steps=run.n_steps,
                              residual=run.residual, mc_sem=sem, diagnostics=diag)
