"""Replica-symmetric theory of ERM pre-training, linear ``σ`` (MODEL.md §5 items 1–4).

Objective ``Σ_μ (1/D)‖A_W(X_μ)X_μ − y_μ‖_F² + λ‖W‖_F²`` with ``N = αD²`` sequences. In the ``S̄ = WWᵀ/√(PD)``
normalisation (THEORY_NOTES §1.1, §3) and divided by ``D²`` it reads
``(1/D²) Σ_μ Σ_{a,b} (A_ab − y_ab)² + (λ√κ/D) Tr S̄`` (``‖W‖_F² = D√κ Tr S̄``), i.e. the quadratic-network
problem of Erba et al. with weight decay ``λ_q = λ√κ`` on ``Tr S̄``, ``S̄ ⪰ 0`` (rank ``≤ κD``).

Channel (linear σ, labels ``y = A0 + √ΔZ`` symmetric): the ``T`` diagonal entries have variance factor
``c = 2`` and weight 1, the ``T(T−1)/2`` off-diagonal pairs ``c = 1`` and weight 2 (two ordered entries);
both give the proximal denominator ``1 + 4V``, and the conjugates are those of ``T = 1`` with
``α_eff = α T(T+1)/2`` (THEORY_NOTES §3.4, derived there and checked against simulation here):

    q̂ = 2α_eff (Q0 − 2M + Q + Δ/2)/(V + 1/4)²,   m̂ = σ̂ = 2α_eff/(V + 1/4).

Prior: :func:`theory.denoise_prior.prior_step` with threshold ``2λ_q`` (free probability, ``D → ∞``).
Observables: ``E_pre = T(T+1)(Q0 − 2M + Q + Δ/2)`` (fresh sequence; ordered entries, ``XXᵀ/D → I``),
``L_pre = T(T+1)(Q0 − 2M + Q + Δ/2)/(1 + 4V)²`` (the training residual ``(y − ω)/(1 + 4V)``),
``Q0 = 1 + κ0``.

Softmax pre-training (a ``T × T`` non-convex proximal problem) is not implemented yet (issue #4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lora_attn.params import ParameterError, Params
from theory.denoise_prior import PretrainHats, PretrainOverlaps, prior_step
from theory.fixed_point import fixed_point


@dataclass(frozen=True)
class PretrainResult:
    """Fixed point and observables of pre-training (MODEL.md names; ``V`` is the susceptibility)."""

    Q0: float
    Q: float
    M: float
    V: float
    E_pre: float
    L_pre: float
    trace: float
    hats: PretrainHats
    converged: bool
    n_steps: int
    residual: float
    status: str


def linear_channel(ov: PretrainOverlaps, *, T: int, alpha: float, delta: float, Q0: float) -> PretrainHats:
    """Channel half-step, linear σ: ``(Q, M, V) → (m̂, q̂, σ̂)`` with ``α_eff = αT(T+1)/2`` (module doc)."""
    a_eff = alpha * T * (T + 1) / 2
    denom = ov.V + 0.25
    return PretrainHats(m_hat=2 * a_eff / denom, q_hat=2 * a_eff * (Q0 - 2 * ov.M + ov.Q + delta / 2) / denom**2,
                        sigma_hat=2 * a_eff / denom)


def solve_pretrain(
    params: Params,
    *,
    init: PretrainOverlaps | None = None,
    damping: float = 0.5,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    max_steps: int = 3000,
) -> PretrainResult:
    """Solve ``(Q, M, V) = prior_step(linear_channel(Q, M, V))`` by damped iteration (linear σ)."""
    if params.sigma != "linear":
        raise ParameterError("the softmax pre-training theory is not available yet (issue #4): allowed sigma = 'linear'")
    if params.lam <= 0:
        raise ParameterError(f"lam = {params.lam} is out of range for the theory: allowed lam > 0")
    T, Q0 = params.T, 1.0 + params.kappa0
    lam_q = params.lam * math.sqrt(params.kappa)

    def step(ov: PretrainOverlaps) -> PretrainOverlaps:
        hats = linear_channel(ov, T=T, alpha=params.alpha, delta=params.delta, Q0=Q0)
        return prior_step(hats, kappa0=params.kappa0, kappa=params.kappa, lam=lam_q).overlaps

    start = init if init is not None else PretrainOverlaps(Q=0.5 * Q0, M=0.4 * Q0, V=0.5)
    res = fixed_point(step, start, damping=damping, rtol=rtol, atol=atol, max_steps=max_steps)
    ov = res.value
    hats = linear_channel(ov, T=T, alpha=params.alpha, delta=params.delta, Q0=Q0)
    final = prior_step(hats, kappa0=params.kappa0, kappa=params.kappa, lam=lam_q)
    err = Q0 - 2 * ov.M + ov.Q + params.delta / 2
    return PretrainResult(Q0=Q0, Q=ov.Q, M=ov.M, V=ov.V, E_pre=T * (T + 1) * err,
                          L_pre=T * (T + 1) * err / (1 + 4 * ov.V) ** 2, trace=final.trace, hats=hats,
                          converged=res.converged, n_steps=res.n_steps, residual=res.residual, status=res.status)
