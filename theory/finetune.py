"""Replica-symmetric asymptotic theory of LoRA fine-tuning by ERM (MODEL.md §5.5; THEORY_NOTES §5.3).

Setting: fresh fine-tuning sequences (``e = 0``; reused and actively selected sequences: see below), frozen ``√β_W·Ŵ`` with pre-training order parameters
``(Q0, Q, M)`` (MODEL.md §4), rank-one LoRA ``w`` trained on ``N' = α'D`` sequences by

    min_w  Σ_ν (1/D)‖σ(β_W A_Ŵ + R_w)X_ν − y'_ν‖_F² + λ'‖w‖².

Derivation summary (D → ∞).

* Per sequence, ``XXᵀ/D → I_T`` so ``(1/D)‖(σ(A) − B)X‖_F² → ‖σ(A) − B‖_F²``. With
  ``χ = Xw/√D ∈ R^T`` and ``q = ‖w‖²/D`` the loss of sequence ν is ``ℓ(χ_ν; q)`` with

      ℓ(χ; q) = ‖σ(A + χχᵀ − q I) − σ(H + χ*χ*ᵀ − q0 I)‖_F²,    H = A0 + √Δ Z,

  ``A = β_W A_Ŵ``, ``χ* = Xw*/√D``, ``q0 = ‖w*‖²/D`` (→ 1). ``(A, H)`` is GOE-like (off-diagonal
  variance, diagonal twice it) with off-diagonal covariance ``[[Q_W, M_W], [M_W, Q0 + Δ/2]]``,
  ``Q_W = β_W² Q``, ``M_W = β_W M`` (recalibration), independent of ``(χ, χ*)`` at leading order.
* Objective = ``Σ_ν ℓ + (λ_r/2)‖w‖²`` with ``λ_r = 2λ'``: a GLM with ``N' = α'D`` samples, ``T``
  Gaussian rows each, and a loss that also depends on ``w`` through ``q`` (the centring ``−‖w‖²I/D``).
  The stationarity condition in ``w`` is ``Σ_ν ∇_χℓ_ν X_νᵀ/√D + 2λ'w + (2/D)Σ_ν ∂_qℓ_ν w = 0``, so the
  centring acts as an extra ridge, self-consistently:

      λ_eff = 2λ' + 2α' E[∂_q ℓ(χ̂; q)],     ∂_qℓ = −Σ_a ∂ℓ/∂A_aa.

* Channel: ``ω = √q ξ``, ``χ* | ω ~ N((m/q)ω, (q0 − m²/q) I_T)``; proximal problem (``theory.prox``)

      χ̂ = argmin_z ‖z − ω‖²/(2v) + ℓ(z; q),     g = (χ̂ − ω)/v,

  with Jacobians by implicit differentiation, ``K = I/v + ∇²_zℓ``: ``∂χ̂/∂ω = K⁻¹/v``,
  ``∂χ̂/∂χ* = −K⁻¹ ∂_{χ*}∇_zℓ``. Conjugates (sum over the T tokens, ``α' = N'/D``):

      q̂ = α' E‖g‖²,   v̂ = α' E Tr(−∂g/∂ω) = α' E Tr[(I − K⁻¹/v)/v],   m̂ = α' E Tr ∂g/∂χ*.

* Ridge prior, closed form (``w* ~ N(0, q0 I)``):

      v = 1/(λ_eff + v̂),   m = q0 m̂ v,   q = (q̂ + q0 m̂²) v².

* Observables (fresh sequence, ``(χ, χ*)`` per token ``N(0, [[q, m], [m, q0]])``):
  ``E_ft = E‖σ(A + χχᵀ − qI) − σ(H + χ*χ*ᵀ − q0I)‖_F²``, ``E_frozen`` = the same at ``χ = 0, q = 0``,
  ``L_ft = E ℓ(χ̂; q)`` (data term / N'), ``o_w = |m|/√(q q0)``, ``delta_eff = Δ/2 + Q0 − 2M_W + Q_W``.
  Linear σ in closed form: ``E_ft = T(T+1)(δ + q² + q0² − 2m²)``, ``E_frozen = T(T+1)(δ + q0²)``, δ = delta_eff.
* What the solution depends on. Linear σ: ``ℓ = ‖χχᵀ − qI − χ*χ*ᵀ + q0I − N‖²`` with
  ``N = H − A`` GOE-like of parameter ``δ = delta_eff``; the code builds the linear channel from ``δ``
  alone (:func:`noise_law`), so pre-training enters only through ``delta_eff``. Softmax: ``σ(A + ·)``
  and ``σ(H + ·)`` are not functions of ``H − A``, so the solution depends on the three numbers
  ``(Q_W, M_W, Q0 + Δ/2)`` (``Q0`` and ``Δ`` only through ``Q0 + Δ/2``), and on ``β``.

Reused and selected sequences (issue #6; :mod:`theory.reuse`). The channel takes explicit samples of
the frozen pair ``(A, H)``: the fine-tuning data are a mixture, a fraction ``1 − e`` of fresh sequences
(the GOE-like law above) and ``e`` of reused pre-training sequences, on which ``A = β_W Â_train`` is the
frozen model's *training* pre-activation (pre-training proximal map) and ``H = A0 + √ΔZ`` the same
sequence's teacher and noise; with active selection every pair comes from the fresh law conditioned on
a low score ``‖A_Ŵ‖_F`` (fraction ``ρ`` of a pool of ``ᾱ'D``; ``α' = ρᾱ'``). The conjugates are the same
expectations over that mixture; ``(ω, χ*)`` keep their law (``w*`` is independent of the pre-training
data and of the score at leading order). The test observables ``E_ft``, ``E_frozen`` stay on FRESH
sequences; ``delta_eff`` is the off-diagonal variance of ``H − A`` over the sequences the fine-tuning
sees (the simulator's definition): ``(1 − e)Δ_eff^fresh + eΔ_eff^reused``, or ``Δ_eff(ρ)``.
With selection the random control (a random subset of the same size = the fresh channel at ``α' = ρᾱ'``)
is solved too (``random_control``).

Monte Carlo: all expectations use fixed draws (common random numbers), so the map is deterministic:
i.i.d. ``jax.random`` draws for the channel (:func:`_draws_mc`), scrambled Sobol' points for the test
errors (:func:`_draws`); per-sample prox diagnostics and the standard errors of the averages (the i.i.d.
formula, an upper bound for the quasi-Monte Carlo test errors) are reported.
Replica-symmetric stability (:func:`rs_stability`): the loss is not convex in ``w``, so the RS fixed point
describes the ERM's global minimum only where it is stable against replica-symmetry breaking. Every converged
solve reports the replicon ``λ_R = α' E‖I − K⁻¹/v‖_F²`` (``diagnostics["replicon"]``, ``"replicon_sem"``), the
fraction of samples whose prox minimiser jumps between coexisting minima (``"prox_jump_frac"``; a positive
density of jumps makes ``λ_R`` infinite) and ``"rs_stable"``. Measured (softmax, ``T = 3``, ``λ' = 0.5``, the
figure-1 pre-training): ``λ_R = 0.095, 0.23, 0.79 ± 0.20`` at ``α' = 10, 3, 1``, and at ``α' = 0.5`` jumps in 0.2 %
of the samples: unstable, and the simulations there find many minima within 1 % of the lowest objective with
``o_w`` from 0.01 to 0.63 (``D = 400``, ``diagnostics/finetune_landscape.py``).

``m = 0`` is a fixed point by symmetry (``χ → −χ``); iteration starts informed (``m > 0``). Where the loss
has several fixed points, the one of lowest objective ``α'L_ft + λ'q`` among two informed starts is kept
(:func:`_solve_ground_state`); ``m`` is reported with its sign removed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lora_attn.params import ParameterError, Params  # noqa: E402
from theory.fixed_point import fixed_point  # noqa: E402
from theory.order_params import PretrainOrderParams  # noqa: E402,F401  (re-exported)
from theory.pretrain_channel import n_entries, sobol_normals, sobol_size, to_matrix, variance_factors  # noqa: E402
from theory.prox import START_SCALES, distinct, newton_minimise, prox_multistart  # noqa: E402
from theory.reuse import (  # noqa: E402
    c_T,
    offdiag_mean_square,
    order_params_of,
    reused_delta_eff_linear,
    reused_pairs,
    selected_delta_eff,
    selected_pairs,
    susceptibility_of,
    training_sampler,
)


# ------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class FinetuneOverlaps:
    """``q = ‖ŵ‖²/D``, ``m = ŵ·w*/D``, ``v`` = susceptibility (variance of the prox's Gaussian factor)."""

    q: float
    m: float
    v: float


@dataclass(frozen=True)
class FinetuneHats:
    """Conjugates ``q̂, m̂, v̂`` and the centring ridge ``lam_eff = 2λ' + 2α'E∂_qℓ``."""

    q_hat: float
    m_hat: float
    v_hat: float
    lam_eff: float


@dataclass(frozen=True)
class FinetuneResult:
    """Fixed point and observables (MODEL.md §4 names; ``m ≥ 0``, the sign of ``±ŵ`` removed). ``delta_eff`` is the noise the fine-tuning data
    carry (mixture / selected law); ``E_ft``, ``E_frozen`` are on fresh sequences. ``reuse``, ``active_rho``:
    the data law solved; ``random_control``: with ``active_rho``, the random subset of the same size.
    ``n_steps``: map evaluations of both phases (one prox start, then all starts); ``residual``: the last
    phase's."""

    q: float
    m: float
    v: float
    o_w: float
    E_ft: float
    L_ft: float
    E_frozen: float
    delta_eff: float
    q0: float
    beta_W: float
    hats: FinetuneHats | None
    converged: bool
    n_steps: int
    residual: float
    mc_sem: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    reuse: float = 0.0
    active_rho: float | None = None
    random_control: FinetuneResult | None = None


@dataclass(frozen=True)
class ChannelSamples:
    """Monte-Carlo samples of the channel: ``ξ, η ~ N(0, I_T)`` (``ω = √q ξ``, ``χ* = (m/q)ω + √(q0 − m²/q) η``)
    and the frozen pair ``A`` (student's frozen pre-activation), ``H`` (label part ``A0 + √ΔZ``), ``(n, T, T)``."""

    xi: Any
    eta: Any
    A: Any
    H: Any

    def __len__(self) -> int:
        return int(self.xi.shape[0])


# --------------------------------------------------------------------------- recalibration, δ_eff
def recalibration(params: Params, pre: PretrainOrderParams) -> float:
    """``β_W``: 1 (None), the number given, or ``'optimal'`` = ``M/Q`` (1 when ``Q = 0``: nothing to rescale)."""
    r = params.recalibrate
    if r is None:
        return 1.0
    if r == "optimal":
        return pre.M / pre.Q if pre.Q > 0 else 1.0
    return float(r)


def delta_eff(delta: float, pre: PretrainOrderParams, beta_W: float = 1.0) -> float:
    """``Δ_eff(β_W) = Δ/2 + Q0 − 2β_W M + β_W² Q``: off-diagonal variance of ``A_{W0} − β_W A_Ŵ + √ΔZ``."""
    return delta / 2 + pre.Q0 - 2 * beta_W * pre.M + beta_W**2 * pre.Q


def optimal_delta_eff(delta: float, pre: PretrainOrderParams) -> float:
    """``min_{β_W} Δ_eff = Δ/2 + Q0 − M²/Q`` (at ``β_W = M/Q``)."""
    return delta / 2 + pre.Q0 - (pre.M**2 / pre.Q if pre.Q > 0 else 0.0)


def noise_law(params: Params, pre: PretrainOrderParams, beta_W: float) -> tuple[float, float, float]:
    """The only pre-training inputs of the channel, as ``(Q_A, M_AH, V_H)``: off-diagonal variance of
    the student's frozen part ``A``, its covariance with the label part ``H``, and ``Var H``.

    Linear σ: the loss depends on ``H − A`` only, so the law is represented by ``A = 0``,
    ``H ~ GOE(δ)``: ``(0, 0, delta_eff)``. Softmax: ``(β_W² Q, β_W M, Q0 + Δ/2)``.
    """
    if params.sigma == "linear":
        return 0.0, 0.0, delta_eff(params.delta, pre, beta_W)
    return beta_W**2 * pre.Q, beta_W * pre.M, pre.Q0 + params.delta / 2


# ------------------------------------------------------------------------------------- channel
def _act(A, sigma: str, beta):
    if sigma == "linear":
        return A
    return jax.nn.softmax(beta * A, axis=-1)


def _draws_mc(key, n: int, T: int):
    """I.i.d. draws ``(ξ, η, G1, G2)`` of the channel (law as in :func:`_draws`) from a ``jax.random`` key.

    The channel keeps i.i.d. draws: with scrambled Sobol' points instead, the spread of the solved ``q``
    over keys grew six-fold (softmax, α' = 3, λ' = 0.5, n = 4096: 0.011 against 0.0018), while the test
    errors, smooth integrals without a prox, gain from them (spread of ``E_frozen`` 0.0004 against 0.0012).
    """
    k = jax.random.split(key, 4)

    def goe(kk):
        U = jax.random.normal(kk, (n, T, T))
        return (U + jnp.swapaxes(U, 1, 2)) / jnp.sqrt(2.0)

    return (jax.random.normal(k[0], (n, T)), jax.random.normal(k[1], (n, T)), goe(k[2]), goe(k[3]))


def _draws(key: int, stream: int, n: int, T: int):
    """Fixed test draws ``(ξ, η, G1, G2)``: ``ξ, η ∈ R^T`` standard normal, ``G1, G2`` GOE-like ``T×T`` matrices
    (off-diagonal variance 1, diagonal variance 2). Randomised quasi-Monte Carlo: one scrambled Sobol'
    set in ``2T + T(T+1)`` dimensions (:func:`theory.pretrain_channel.sobol_normals`, ``n`` rounded up
    to a power of two) seeded by ``(key, stream)``."""
    K = n_entries(T)
    z = jnp.asarray(sobol_normals(2 * T + 2 * K, sobol_size(n), (int(key), int(stream))))
    c = jnp.sqrt(jnp.asarray(variance_factors(T)))
    return (z[:, :T], z[:, T:2 * T], to_matrix(c * z[:, 2 * T:2 * T + K], T), to_matrix(c * z[:, 2 * T + K:], T))


def _frozen_pair(law, G1, G2):
    """``(A, H)`` from two independent GOEs with off-diagonal covariance ``[[Q_A, M], [M, V_H]]``."""
    QA, MAH, VH = law
    c = jnp.where(QA > 0, MAH / jnp.where(QA > 0, QA, 1.0), 0.0)
    A = jnp.sqrt(QA) * G1
    H = c * A + jnp.sqrt(jnp.maximum(VH - c * MAH, 0.0)) * G2
    return A, H


def _target(cs, H, q0, sigma, beta):
    """Label of a fine-tuning sequence, ``σ(H + χ*χ*ᵀ − q0 I)``."""
    return _act(H + jnp.outer(cs, cs) - q0 * jnp.eye(cs.shape[0]), sigma, beta)


def _fit(z, q, A, target, sigma, beta):
    """``‖σ(A + zzᵀ − qI) − target‖_F²``: the loss at a given label (the prox only moves ``z``)."""
    return jnp.sum((_act(A + jnp.outer(z, z) - q * jnp.eye(z.shape[0]), sigma, beta) - target) ** 2)


def _loss(z, cs, q, A, H, q0, sigma, beta):
    """``ℓ(χ; q) = ‖σ(A + χχᵀ − qI) − σ(H + χ*χ*ᵀ − q0 I)‖_F²`` (module doc)."""
    return _fit(z, q, A, _target(cs, H, q0, sigma, beta), sigma, beta)


def _channel_inputs(q, m, q0, xi, eta):
    """``ω = √q ξ`` and the teacher's ``χ* = (m/q)ω + √(q0 − m²/q) η`` (the channel's Gaussian pair)."""
    omega = jnp.sqrt(q) * xi
    return omega, (m / q) * omega + jnp.sqrt(jnp.maximum(q0 - m * m / q, 0.0)) * eta


def _prox_objective(om, v, q, A, target, sigma, beta):
    """``φ_ω(z) = ‖z − ω‖²/(2v) + ‖σ(A + zzᵀ − qI) − target‖_F²``: the proximal problem of one sample."""
    return lambda z: jnp.sum((z - om) ** 2) / (2 * v) + _fit(z, q, A, target, sigma, beta)


def _channel(q, m, v, q0, law, beta, draws, sigma: str, n_iter: int):
    """Per-sample integrands of the conjugates and of ``L_ft`` on fresh pairs drawn from ``law``."""
    xi, eta, G1, G2 = draws
    A, H = _frozen_pair(law, G1, G2)
    return _channel_pairs(q, m, v, q0, beta, xi, eta, A, H, sigma=sigma, n_iter=n_iter)


@partial(jax.jit, static_argnames=("sigma", "n_iter", "scales"))
def _channel_pairs(q, m, v, q0, beta, xi, eta, A, H, sigma: str, n_iter: int, scales=START_SCALES):
    """Per-sample integrands of the conjugates and of ``L_ft`` (module doc) at explicit frozen pairs ``(A, H)``;
    the prox starts from ``s·ω`` for ``s`` in ``scales``."""
    omega, cs = _channel_inputs(q, m, q0, xi, eta)

    def one(om, c, Ai, Hi):
        # the label is fixed during the prox: computed once, not in every loss evaluation
        target = _target(c, Hi, q0, sigma, beta)
        fit = lambda z, qq: _fit(z, qq, Ai, target, sigma, beta)  # noqa: E731
        phi = _prox_objective(om, v, q, Ai, target, sigma, beta)
        z, conv, multi, amb = prox_multistart(phi, om, v, n_iter=n_iter, scales=scales)
        T = z.shape[0]
        K = jnp.eye(T) / v + jax.hessian(fit, argnums=0)(z, q)
        Kinv = jnp.linalg.inv(K)
        g = (z - om) / v
        P = jnp.eye(T) - Kinv / v
        vhat_i = jnp.trace(P) / v
        ell = lambda zz, cc: _loss(zz, cc, q, Ai, Hi, q0, sigma, beta)  # noqa: E731
        C = jax.jacfwd(jax.grad(ell, argnums=0), argnums=1)(z, c)
        mhat_i = -jnp.trace(Kinv @ C) / v
        dq = jax.grad(fit, argnums=1)(z, q)
        return jnp.sum(g * g), mhat_i, vhat_i, dq, fit(z, q), conv, multi, amb, jnp.sum(P * P)

    return jax.vmap(one)(omega, cs, A, H)


#: Step of the discontinuity probe of :func:`prox_jump_fraction`: ``ω → ω + JUMP_STEP·√q·u``, ``u ~ N(0, I_T)``.
JUMP_STEP = 0.05
#: Fewest samples the solver probes for jumps: at softmax ``α' = 0.5``, ``λ' = 0.5`` 8 of 4000 jump, so 600 draws
#: (the figures' ``n_mc``) would see none with probability 0.3.
JUMP_SAMPLES = 4000


@partial(jax.jit, static_argnames=("sigma", "n_iter"))
def _prox_discontinuities(q, m, v, q0, beta, xi, eta, A, H, u, h, sigma: str, n_iter: int):
    """Per sample: whether the prox's global minimiser jumps between ``ω`` and ``ω' = ω + h√q u`` (the label and
    the frozen pair held fixed). The two ends are joined by local descent: from ``χ̂(ω)`` on ``φ_ω'`` and from
    ``χ̂(ω')`` on ``φ_ω``; on a continuous branch each lands on the other end's minimiser. A switch of the global
    minimum between two coexisting minima (a Maxwell point) or the loss of a basin (a fold) fails one of them,
    with the multistart's minimiser the lower of the two at that end."""
    omega, cs = _channel_inputs(q, m, q0, xi, eta)

    def one(om, c, Ai, Hi, ui):
        target = _target(c, Hi, q0, sigma, beta)
        phi_at = lambda o: _prox_objective(o, v, q, Ai, target, sigma, beta)  # noqa: E731

        om1 = om + h * jnp.sqrt(q) * ui
        phi0, phi1 = phi_at(om), phi_at(om1)
        z0 = prox_multistart(phi0, om, v, n_iter=n_iter)[0]
        z1 = prox_multistart(phi1, om1, v, n_iter=n_iter)[0]
        forward = newton_minimise(phi1, z0, n_iter, v)
        backward = newton_minimise(phi0, z1, n_iter, v)
        # a distinct end counts only if the multistart's minimiser is the lower one there (else the multistart,
        # not the prox, was discontinuous)
        return ((distinct(forward, z1) & (phi1(z1) <= phi1(forward)))
                | (distinct(backward, z0) & (phi0(z0) <= phi0(backward))))

    return jax.vmap(one)(omega, cs, A, H, u)


def prox_jump_fraction(params: Params, ov: FinetuneOverlaps, samples: ChannelSamples, q0: float, n_iter: int = 20,
                       key: int = 0) -> float:
    """The fraction of ``samples`` whose prox minimiser jumps between ``ω`` and ``ω + JUMP_STEP·√q·u``,
    ``u ~ N(0, I_T)`` from the fixed key (:func:`_prox_discontinuities`)."""
    u = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(key), 7), samples.xi.shape)
    jumps = _prox_discontinuities(ov.q, ov.m, ov.v, q0, params.beta, samples.xi, samples.eta, samples.A, samples.H,
                                  u, JUMP_STEP, sigma=params.sigma, n_iter=n_iter)
    return float(np.mean(np.asarray(jumps)))


def rs_stability(replicon: float, replicon_sem: float, jump_frac: float) -> bool:
    """The replicon (de Almeida–Thouless) check of a zero-temperature RS fixed point.

    A perturbation ``δw ⊥ (ŵ, w*)`` moves every ``ω`` by ``δω = Xδw/√D`` (i.i.d. over tokens), each sequence
    answers with ``δg = (∂g/∂ω)δω``, and the ridge prior maps ``Σ_ν X_νᵀδg_ν/√D`` back as ``v·(·)``. The gain of
    that loop is the replicon

        λ_R = α' v² E‖∂g/∂ω‖_F² = α' E‖I − K⁻¹/v‖_F²,    K = I/v + ∇²_zℓ(χ̂)

    (``diagnostics["replicon"]``, from :func:`finetune_hats`), and RS is stable only where ``λ_R < 1``. For a
    convex loss ``0 ⪯ I − K⁻¹/v ≺ I``, so ``λ_R ≤ v v̂``. A jump of the global minimiser ``χ̂(ω)`` (coexisting
    minima of the prox whose order switches) puts a delta function into ``∂χ̂/∂ω``; its square makes ``λ_R``
    infinite, so RS is unstable wherever such jumps have a positive density, whatever the local part
    (``diagnostics["prox_jump_frac"]``, :func:`prox_jump_fraction`; about ``prox_jump_frac / JUMP_STEP`` jumps
    per unit of ``ω/√q``; 0 without probing where no sample's prox has two minima,
    ``prox_multimodal_frac = 0``; probed on at least ``JUMP_SAMPLES`` draws). Stable: ``λ_R + 3·sem < 1`` and no jump among the samples."""
    return bool(replicon + 3 * replicon_sem < 1.0 and jump_frac == 0.0)


@partial(jax.jit, static_argnames=("sigma",))
def _test_errors(q, m, q0, law, beta, draws, sigma: str):
    """Per-sample ``E_ft`` and ``E_frozen`` integrands on fresh sequences."""
    xi, eta, G1, G2 = draws
    A, H = _frozen_pair(law, G1, G2)
    qs = jnp.maximum(q, 1e-300)
    chi = jnp.sqrt(q) * xi
    cs = jnp.where(q > 0, m / qs, 0.0) * chi + jnp.sqrt(jnp.maximum(q0 - jnp.where(q > 0, m * m / qs, 0.0), 0.0)) * eta

    def one(c, cstar, Ai, Hi):
        return _loss(c, cstar, q, Ai, Hi, q0, sigma, beta), _loss(0.0 * c, cstar, 0.0, Ai, Hi, q0, sigma, beta)

    return jax.vmap(one)(chi, cs, A, H)


def _mean_sem(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def finetune_hats(
    params: Params, ov: FinetuneOverlaps, samples: ChannelSamples, q0: float, n_iter: int = 20,
    scales: tuple[float, ...] = START_SCALES,
) -> tuple[FinetuneHats, dict[str, float], dict[str, float]]:
    """Conjugates at ``ov`` (module doc), averaged over ``samples``, with MC standard errors and prox diagnostics:
    ``q̂ = α'E‖g‖²``, ``m̂ = α'E Tr ∂g/∂χ*``, ``v̂ = α'E Tr(−∂g/∂ω)``, ``λ_eff = 2λ' + 2α'E ∂_qℓ``, and the
    replicon ``α'E‖I − K⁻¹/v‖_F²`` of :func:`rs_stability` (``diag["replicon"]``, ``sem["replicon"]``)."""
    a = params.effective_alpha_prime
    out = _channel_pairs(ov.q, ov.m, ov.v, q0, params.beta, samples.xi, samples.eta, samples.A, samples.H,
                         sigma=params.sigma, n_iter=n_iter, scales=tuple(scales))
    g2, mh, vh, dq, ell, conv, multi, amb, p2 = (np.asarray(o) for o in out)
    (qh, qh_s), (mhh, mh_s), (vhh, vh_s), (dqm, dq_s), (L, L_s), (rep, rep_s) = map(
        _mean_sem, (g2, mh, vh, dq, ell, p2))
    hats = FinetuneHats(q_hat=a * qh, m_hat=a * mhh, v_hat=a * vhh, lam_eff=2 * params.lam_prime + 2 * a * dqm)
    sem = {"q_hat": a * qh_s, "m_hat": a * mh_s, "v_hat": a * vh_s, "lam_eff": 2 * a * dq_s, "L_ft": L_s,
           "replicon": a * rep_s}
    diag = {"L_ft": L, "replicon": a * rep, "prox_converged_frac": float(conv.mean()),
            "prox_multimodal_frac": float(multi.mean()), "prox_ambiguous_frac": float(amb.mean())}
    return hats, sem, diag


def prior_update(hats: FinetuneHats, q0: float) -> FinetuneOverlaps:
    """Ridge prior: ``v = 1/(λ_eff + v̂)``, ``m = q0 m̂ v``, ``q = (q̂ + q0 m̂²) v²``."""
    denom = hats.lam_eff + hats.v_hat
    if not denom > 0:
        return FinetuneOverlaps(q=float("nan"), m=float("nan"), v=float("nan"))
    v = 1.0 / denom
    return FinetuneOverlaps(q=(hats.q_hat + q0 * hats.m_hat**2) * v * v, m=q0 * hats.m_hat * v, v=v)


def _linear_errors(T: int, q: float, m: float, q0: float, d: float) -> tuple[float, float]:
    c = T * (T + 1)
    return c * (d + q * q + q0 * q0 - 2 * m * m), c * (d + q0 * q0)


# ------------------------------------------------------------------------------------- samples
def channel_samples(params: Params, pre: Any, beta_W: float, n_mc: int, key: int, *, fresh_only: bool = False
                    ) -> tuple[ChannelSamples, dict[str, Any]]:
    """The ``n_mc`` channel samples the fine-tuning sees, with fixed keys (``fold_in(PRNGKey(key), ·)``,
    :func:`_draws_mc`):

    * fresh (``e = 0``, no selection, or ``fresh_only``): ``(A, H)`` from :func:`noise_law` — exactly the
      draws of the fresh channel;
    * reuse ``e``: the first ``round(e·n_mc)`` pairs from the training law (:func:`theory.reuse.reused_pairs`),
      the rest fresh (stratified mixture, same ``ξ, η``);
    * active ``ρ``: all pairs from the selected law (:func:`theory.reuse.selected_pairs`).

    Returns the samples and ``{"delta_eff": …}`` plus its parts (module doc; closed forms where they exist,
    the MC mean of the reused pairs for softmax reuse).
    """
    op = order_params_of(pre)
    T = params.T
    law = noise_law(params, op, beta_W)
    base = jax.random.PRNGKey(key)
    xi, eta, G1, G2 = _draws_mc(jax.random.fold_in(base, 0), n_mc, T)
    n_mc = int(xi.shape[0])
    A, H = _frozen_pair(tuple(float(x) for x in law), G1, G2)
    d_fresh = delta_eff(params.delta, op, beta_W)
    info: dict[str, Any] = {"delta_eff": d_fresh, "delta_eff_fresh": d_fresh, "noise_law": law}
    if fresh_only:
        return ChannelSamples(xi, eta, A, H), info
    if params.active_rho is not None:
        rho = float(params.active_rho)
        A, H = selected_pairs(params, op, beta_W, jax.random.fold_in(base, 3), n_mc, rho)
        d_sel = selected_delta_eff(params.delta, op, rho, T, beta_W)
        mc, mc_se = offdiag_mean_square(A, H)
        info.update({"delta_eff": d_sel, "delta_eff_selected_mc": mc, "delta_eff_selected_mc_se": mc_se,
                     "c_T": c_T(T, rho), "delta_eff_rho0": optimal_delta_eff(params.delta, op)})
    elif params.reuse > 0:
        e = float(params.reuse)
        n_r = int(round(e * n_mc))
        if n_r > 0:
            A_r, H_r = reused_pairs(params, pre, beta_W, jax.random.fold_in(base, 2), n_r,
                                    sampler=training_sampler(params))
            A = jnp.concatenate([A_r, A[n_r:]])
            H = jnp.concatenate([H_r, H[n_r:]])
            mc, mc_se = offdiag_mean_square(A_r, H_r)
        else:
            mc, mc_se = float("nan"), float("nan")
        if params.sigma == "linear":
            d_re = reused_delta_eff_linear(params.delta, pre, beta_W)
        else:
            d_re = mc
        info.update({"delta_eff": (1 - e) * d_fresh + e * d_re, "delta_eff_reused": d_re,
                     "delta_eff_reused_mc": mc, "delta_eff_reused_mc_se": mc_se, "n_reused_samples": n_r})
    return ChannelSamples(xi, eta, A, H), info


# ------------------------------------------------------------------------------------- solver
def solve_finetune(
    params: Params,
    pre: Any,
    *,
    q0: float = 1.0,
    n_mc: int = 4000,
    n_test: int = 100_000,
    key: int = 0,
    init: FinetuneOverlaps | None = None,
    damping: float = 0.3,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 300,
    n_iter: int = 20,
    random_control: bool = True,
    anderson: int = 3,
    patience: int | None = 100,
) -> FinetuneResult:
    """Solve the fine-tuning fixed point over ``(q, m, v)`` (module doc) and evaluate the observables.

    Args:
        params: uses ``T, sigma, beta, delta, lam_prime, effective_alpha_prime, recalibrate, reuse, active_rho``.
        pre: pre-training order parameters ``(Q0, Q, M)`` (:class:`PretrainOrderParams`, e.g. measured by the
            simulator) — enough for fresh and selected sequences; ``reuse > 0`` also needs the
            susceptibility ``V`` (:class:`theory.pretrain.PretrainResult` or :class:`theory.reuse.PretrainState`).
        q0: ``‖w*‖²/D`` (1 as ``D → ∞``; pass the measured value to compare with a finite-D run).
        n_mc: Monte-Carlo samples of the channel (fixed key ⇒ deterministic map).
        n_test: samples for ``E_ft``/``E_frozen`` on fresh sequences (softmax; linear is closed form).
        key: integer seed of the fixed keys.
        init: starting overlaps (default ``q = m = q0/2``, ``v = 1/(2λ' + α'T + 1)``: informed, ``m > 0``).
        damping, rtol, atol, max_steps: passed to :func:`theory.fixed_point.fixed_point`.
        n_iter: Newton iterations per start of the prox.
        anderson: Anderson memory of the fixed-point iteration (0: plain damping). The iteration runs in two
            phases: first with the prox started from ``ω`` only (at most 40 steps), then, from that point (or from
            ``init`` if phase 1 did not converge), with all the starts of
            :func:`theory.prox.prox_multistart` until the map is stationary again (usually 1–2 steps). If the
            accelerated run fails, it is repeated with plain damping (``diagnostics["fallback"] = True``); if that
            fails too, the fixed point is solved as a root of ``step(x) − x`` (:func:`_root_fallback`;
            ``diagnostics["fallback"] = "root"``, ``diagnostics["root"]`` its record). A converged run reports
            the point where the map was last evaluated, with that evaluation's conjugates.
        random_control: with ``active_rho``, also solve the random subset of the same size (``random_control``).
        patience: phase 2 stops as ``"stalled"`` (not converged) when its residual has not halved in
            ``patience`` steps (:func:`theory.fixed_point.fixed_point`); a point without a reachable fixed point
            otherwise spends ``max_steps`` (twice, with the fallback). 60 stopped a slow but converging point
            (softmax T = 2, λ' = 0.003, converged in 95 steps); 100 did not.
    """
    if not (isinstance(n_mc, int) and n_mc >= 2):
        raise ParameterError(f"n_mc = {n_mc!r} is out of range: allowed an integer ≥ 2")
    if not (q0 > 0 and math.isfinite(q0)):
        raise ParameterError(f"q0 = {q0!r} is out of range: allowed 0 < q0 < inf")
    op = order_params_of(pre)
    if params.reuse > 0:
        if susceptibility_of(pre) is None:
            raise ParameterError(
                f"reuse = {params.reuse} > 0 needs the pre-training susceptibility V (training pre-activations "
                "Â_train = prox_V(ω)): pass a PretrainResult or PretrainState(Q0, Q, M, V), not only (Q0, Q, M); "
                "allowed reuse = 0 with (Q0, Q, M) alone")
        training_sampler(params)  # raises for softmax while its training law is missing
    kw = dict(q0=q0, n_mc=n_mc, n_test=n_test, key=key, init=init, damping=damping, rtol=rtol, atol=atol,
              max_steps=max_steps, n_iter=n_iter, anderson=anderson, patience=patience)
    res = _solve_ground_state(params, pre, op, fresh_only=False, **kw)
    if params.active_rho is not None and random_control:
        ctrl = _solve_ground_state(params, pre, op, fresh_only=True, **kw)
        res = dataclasses.replace(res, random_control=ctrl)
    return res


#: ``q = m = INFORMED_RESTART·q0``: the second start of :func:`_solve_ground_state`.
INFORMED_RESTART = 0.9
#: A fixed point with ``o_w`` below this and ``q > UNINFORMED_Q·q0`` is on the uninformed branch (``ŵ`` fits
#: noise, ``m ≈ 0``); one with ``q ≤ UNINFORMED_Q·q0`` is ``ŵ = 0``, which is not challenged.
UNINFORMED_OW, UNINFORMED_Q = 0.5, 1e-6


def informed_start(params: Params, q0: float, fraction: float) -> FinetuneOverlaps:
    """Starting overlaps ``q = m = fraction·q0`` (``m > 0``: informed) and ``v = 1/(2λ' + α'T + 1)``."""
    v = 1.0 / (2 * params.lam_prime + params.effective_alpha_prime * params.T + 1.0)
    return FinetuneOverlaps(q=fraction * q0, m=fraction * q0, v=v)


def ground_state_energy(params: Params, r: FinetuneResult) -> float:
    """``e = α' L_ft + λ' q``: the fine-tuning objective per ``D`` at the fixed point, ``(1/D)[Σ_ν ℓ_ν + λ'‖ŵ‖²]``
    with ``N' = α'D`` (``α'`` the effective one: ``ρᾱ'`` with active selection)."""
    return params.effective_alpha_prime * r.L_ft + params.lam_prime * r.q


def _solve_ground_state(params: Params, pre: Any, op: PretrainOrderParams, *, fresh_only: bool, init, **kw
                        ) -> FinetuneResult:
    """:func:`_solve` from ``init`` (default: the informed start). Below ``λ'`` of order ``10⁻²`` and at small
    ``α'`` the quartic loss has, besides the informed fixed point, an uninformed one (``m ≈ 0``, ``q > 0``) that
    the default start can fall into (softmax, ``T = 3``, ``α' = 2``, ``λ' = 0.003``: ``o_w = 0.005``,
    ``e = 0.936``, against ``o_w = 0.943``, ``e = 0.701`` from ``q = m = 0.9 q0``). When the first solve ends
    there, or does not converge, it is repeated from ``q = m = INFORMED_RESTART·q0`` and the converged fixed
    point of lower :func:`ground_state_energy` is kept: the ERM's global minimum, which the simulator selects
    by keeping the lowest objective over its restarts. ``diagnostics["ground_state"]`` records the energies."""
    first = _solve(params, pre, op, fresh_only=fresh_only, init=init, **kw)
    q0 = kw["q0"]
    uninformed = first.converged and first.q > UNINFORMED_Q * q0 and not (first.o_w >= UNINFORMED_OW)
    if init is not None or math.isinf(params.lam_prime) or not (uninformed or not first.converged):
        return first
    start = informed_start(params, q0, INFORMED_RESTART)
    second = _solve(params, pre, op, fresh_only=fresh_only, init=start, **kw)
    runs = [r for r in (first, second) if r.converged]
    best = min(runs, key=lambda r: ground_state_energy(params, r)) if runs else first
    record = {"energies": [ground_state_energy(params, r) if r.converged else float("nan") for r in (first, second)],
              "o_w": [first.o_w, second.o_w], "selected": "first" if best is first else "restart"}
    return dataclasses.replace(best, n_steps=first.n_steps + second.n_steps,
                               diagnostics={**best.diagnostics, "ground_state": record})


def _solve(params: Params, pre: Any, op: PretrainOrderParams, *, fresh_only: bool, q0: float, n_mc: int,
           n_test: int, key: int, init: FinetuneOverlaps | None, damping: float, rtol: float, atol: float,
           max_steps: int, n_iter: int, anderson: int, patience: int | None) -> FinetuneResult:
    T, sigma = params.T, params.sigma
    bW = recalibration(params, op)
    law = noise_law(params, op, bW)
    d_fresh = delta_eff(params.delta, op, bW)
    test_draws = _draws(key, 1, n_test, T)
    mode = dict(reuse=0.0 if fresh_only else float(params.reuse),
                active_rho=None if fresh_only else params.active_rho)

    def errors(q, m):
        if sigma == "linear":
            return (*_linear_errors(T, q, m, q0, d_fresh), 0.0, 0.0)
        eft, efr = _test_errors(q, m, q0, tuple(float(x) for x in law), params.beta, test_draws, sigma=sigma)
        (e1, s1), (e0, s0) = _mean_sem(eft), _mean_sem(efr)
        return e1, e0, s1, s0

    samples, info = channel_samples(params, pre, bW, n_mc, key, fresh_only=fresh_only)
    d_eff = info["delta_eff"]
    extra = {k: v for k, v in info.items() if k != "noise_law"}

    if math.isinf(params.lam_prime):
        E_ft, E_fr, s1, s0 = errors(0.0, 0.0)
        return FinetuneResult(q=0.0, m=0.0, v=0.0, o_w=float("nan"), E_ft=E_ft, L_ft=float("nan"), E_frozen=E_fr,
                              delta_eff=d_eff, q0=q0, beta_W=bW, hats=None, converged=True, n_steps=0,
                              residual=0.0, mc_sem={"E_ft": s1, "E_frozen": s0},
                              diagnostics={"reason": "lam_prime = inf: w = 0", **extra}, **mode)

    # the last evaluation of the full map (every prox start): the check of a converged run reuses it;
    # the full-map point of smallest residual: where the root fallback starts
    last_full: dict[str, Any] = {}
    best_full: dict[str, Any] = {"residual": math.inf}

    def step_with(scales: tuple[float, ...]):
        def step(ov: FinetuneOverlaps) -> FinetuneOverlaps:
            last_full.clear()
            if not (ov.q > 0 and ov.v > 0):
                return FinetuneOverlaps(q=float("nan"), m=float("nan"), v=float("nan"))
            m = min(max(ov.m, -math.sqrt(ov.q * q0)), math.sqrt(ov.q * q0))
            hats, sem, diag = finetune_hats(params, FinetuneOverlaps(ov.q, m, ov.v), samples, q0, n_iter, scales)
            full = tuple(scales) == tuple(START_SCALES) and m == ov.m
            if full:
                last_full.update(point=ov, out=(hats, sem, diag))
            if not hats.lam_eff + hats.v_hat > 0:
                # The centring ridge can be negative; a too-large v overshoots into λ_eff + v̂ ≤ 0, which has
                # no fixed point (v > 0 needed). Shrink v and retry: a fixed point of this map satisfies the
                # equations, since there v is unchanged.
                return FinetuneOverlaps(q=ov.q, m=m, v=ov.v / 2)
            new = prior_update(hats, q0)
            if full:
                r = _relative_residual(ov, new, rtol, atol)
                if r < best_full["residual"]:
                    best_full.update(residual=r, point=ov)
            return new
        return step

    def iterate(start: FinetuneOverlaps, accel: int, budget: int):
        # phase 1: one prox start (ω), a third of the cost of a step; phase 2: every start, from phase 1's
        # point (the same equations, so usually 1–2 steps). With one start the map can fail to contract where
        # it does with all of them (measured: softmax T = 2, λ' = 0.003), hence phase 1's short budget.
        fp1 = fixed_point(step_with(START_SCALES[:1]), start, damping=damping, rtol=rtol, atol=atol,
                          max_steps=min(budget, 40), anderson=accel)
        fp2 = fixed_point(step_with(START_SCALES), fp1.value if fp1.converged else start, damping=damping,
                          rtol=rtol, atol=atol, max_steps=budget, anderson=accel, patience=patience)
        return fp1, fp2

    start = init or informed_start(params, q0, 0.5)

    def check(fp):
        """``(ok, status, point, hats, sem, diag)`` of a run: converged, finite, and a true fixed point.

        The point reported is the one where the map was last evaluated, ``x_k`` with
        ``|step(x_k) − x_k| < tol``, so its conjugates are that evaluation's; the driver's ``value`` is the
        damped update ``x_{k+1}``, equally within the tolerance, and is evaluated afresh only when the last
        evaluation was not the full map there (e.g. the step shrank v)."""
        ov = fp.value
        if not (fp.converged and all(math.isfinite(x) for x in (ov.q, ov.m, ov.v))):
            return False, fp.status, ov, None, {}, {}
        if last_full:
            ov, (hats, sem, diag) = last_full["point"], last_full["out"]
        else:
            hats, sem, diag = finetune_hats(params, ov, samples, q0, n_iter)
        if not hats.lam_eff + hats.v_hat > 0:
            # the step halves v while λ_eff + v̂ ≤ 0; v → 0 then stops moving below atol: not a fixed point
            return False, "no_fixed_point", ov, None, {}, {}
        return True, fp.status, ov, hats, sem, diag

    fp1, fp = iterate(start, anderson, max_steps)
    ok, status, ov, hats, sem, diag = check(fp)
    fallback = False
    if anderson and not ok:
        fp1, fp = iterate(start, 0, max_steps)
        ok, status, ov, hats, sem, diag = check(fp)
        fallback = True
    root: dict[str, Any] = {}
    if not ok and "point" in best_full:
        full_map = lambda x: finetune_hats(params, x, samples, q0, n_iter)  # noqa: E731
        b = best_full["point"]
        # the mirrored start (−m) is the same fixed point in law, with other Monte-Carlo jumps near it
        for guess in (b, FinetuneOverlaps(b.q, -b.m, b.v)):
            n_before = root.get("n_evals", 0)
            ok, root = _root_fallback(full_map, guess, q0, atol)
            root["n_evals"] += n_before
            if ok:
                break
        if ok:
            status, ov, (hats, sem, diag) = "root", root.pop("point"), root.pop("out")
            fallback = "root"
        else:
            root.pop("point", None), root.pop("out", None)
    q, m = (ov.q, ov.m) if ok else (float("nan"), float("nan"))
    if ok:
        # a jump needs two coexisting minima: where no sample has them, the probe is skipped; it runs on at least
        # JUMP_SAMPLES draws of the same law (the rare jumps need them), the channel's own when it has as many
        jumps = 0.0
        if diag["prox_multimodal_frac"] > 0:
            probe = samples if n_mc >= JUMP_SAMPLES else channel_samples(
                params, pre, bW, JUMP_SAMPLES, key, fresh_only=fresh_only)[0]
            jumps = prox_jump_fraction(params, ov, probe, q0, n_iter, key)
        diag.update(replicon_sem=sem["replicon"], prox_jump_frac=jumps,
                    rs_stable=rs_stability(diag["replicon"], sem["replicon"], jumps))
    E_ft, E_fr, s1, s0 = errors(q, m) if ok else (float("nan"),) * 4
    L_ft = diag.pop("L_ft", float("nan"))
    sem.update({"E_ft": s1, "E_frozen": s0})
    diag.update({"status": status, "fallback": fallback, "root": root, "n_steps_one_start": fp1.n_steps, "noise_law": law, "n_mc": n_mc, "n_test": n_test, "key": key, **extra})
    o_w = abs(m) / math.sqrt(q * q0) if ok and q > 0 else float("nan")
    # (m, m̂) → (−m, −m̂) maps a fixed point to an equivalent one (±w); m is reported with its sign removed,
    # as the simulation reports it.
    return FinetuneResult(q=q, m=abs(m), v=ov.v, o_w=o_w, E_ft=E_ft, L_ft=L_ft, E_frozen=E_fr, delta_eff=d_eff, q0=q0,
                          beta_W=bW, hats=hats, converged=ok, n_steps=fp1.n_steps + fp.n_steps + root.get("n_evals", 0),
                          residual=root["residual"] if status == "root" else fp.residual,
                          mc_sem=sem, diagnostics=diag, **mode)


def _relative_residual(x: FinetuneOverlaps, y: FinetuneOverlaps, rtol: float, atol: float) -> float:
    """``max_i |y_i − x_i| / (atol + rtol |x_i|)`` over ``(q, m, v)``: the stopping measure of the iteration."""
    return max(abs(b - a) / (atol + rtol * abs(a)) for a, b in ((x.q, y.q), (x.m, y.m), (x.v, y.v)))


#: A root of the fallback is accepted when its Newton correction is below ``ROOT_RTOL`` relative (and ``atol``):
#: two orders below the Monte-Carlo error of the fixed point at the usual ``n_mc`` (``q`` to about 1 %).
ROOT_RTOL = 1e-4
#: Relative step of the central differences of ``J`` in :func:`_root_fallback`: wide enough to average over the
#: map's Monte-Carlo jumps (``hybr`` tends to stop on one), small against the scale on which ``G`` bends.
JACOBIAN_STEP = 1e-3


def _root_fallback(full_map, start: FinetuneOverlaps, q0: float, atol: float) -> tuple[bool, dict[str, Any]]:
    """Solve ``G(x) = prior_update(hats(x)) − x = 0`` over ``x = (q, m, v)`` with Powell's hybrid method
    (``scipy.optimize.root``, ``hybr``) from ``start``, where both damped iterations failed.

    Called from the best iterate and, if that fails, from its mirror ``(q, −m, v)``.

    Why: at small ``α'`` the map can have a Jacobian eigenvalue far outside ``(−1, 1)`` at the fixed point
    (linear σ, ``α' = 0.5``, ``δ ≈ 0.3``: ``∂step_q/∂q ≈ −28``), so damping needs ``1 − damping ≲ 0.07``,
    and Anderson mixing is thrown off by the Monte-Carlo map's small jumps (a sample whose prox switches
    between local minima as ``(q, m, v)`` move). The jumps also stop ``hybr`` short of an exact zero, so the
    root is judged by its Newton correction ``δ = −J⁻¹G(x)`` (``J`` by central differences of relative step
    ``JACOBIAN_STEP``): accepted when ``|δ_i| < atol + ROOT_RTOL·|x_i|`` for ``q, m, v``, with ``q, v > 0`` and
    ``λ_eff + v̂ > 0``. Returns ``(accepted, info)``: ``info`` has the point and its map output when accepted,
    and always ``n_evals``, ``residual`` (``max_i |G_i|``), ``newton_correction`` and ``message``."""
    from scipy.optimize import root

    n_evals = 0

    def evaluate(x):
        nonlocal n_evals
        n_evals += 1
        q, m, v = (float(a) for a in x)
        if not (q > 0 and v > 0 and math.isfinite(m)):
            return None, None
        out = full_map(FinetuneOverlaps(q, m, v))
        hats = out[0]
        if not hats.lam_eff + hats.v_hat > 0:
            return None, out
        new = prior_update(hats, q0)
        return np.array([new.q - q, new.m - m, new.v - v]), out

    def G(x):
        g, _ = evaluate(x)
        # outside the domain: a large residual pointing back (hybr has no bounds)
        return g if g is not None else np.full(3, 1e3)

    x0 = np.array([start.q, start.m, start.v])
    sol = root(G, x0, method="hybr", options={"xtol": 1e-10})
    x = sol.x
    g, out = evaluate(x)
    info: dict[str, Any] = {"n_evals": n_evals, "message": str(sol.message), "residual": float("nan"),
                            "newton_correction": float("nan")}
    if g is None:
        info["n_evals"] = n_evals
        return False, info
    J = np.empty((3, 3))
    for j in range(3):
        h = JACOBIAN_STEP * max(abs(x[j]), 1e-3)
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
    rel = float(np.max(np.abs(delta) / (atol + ROOT_RTOL * np.abs(x))))
    info.update(n_evals=n_evals, residual=float(np.max(np.abs(g))), newton_correction=rel,
                point=FinetuneOverlaps(float(x[0]), float(x[1]), float(x[2])), out=out)
    return rel < 1.0, info
