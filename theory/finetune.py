"""Replica-symmetric asymptotic theory of LoRA fine-tuning by ERM (MODEL.md §5.5; THEORY_NOTES §5.3).

Setting: fresh fine-tuning sequences (``e = 0``), frozen ``√β_W·Ŵ`` with pre-training order parameters
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

Monte Carlo: all expectations use fixed ``jax.random`` keys (common random numbers), so the map is
deterministic; per-sample prox diagnostics and the standard errors of the averages are reported.
``m = 0`` is a fixed point by symmetry (``χ → −χ``); iteration starts informed (``m > 0``).
"""

from __future__ import annotations

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
from theory.prox import prox_multistart  # noqa: E402


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
    """Fixed point and observables (MODEL.md §4 names)."""

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


def _goe(key, n: int, T: int):
    """``n`` GOE-like ``T×T`` matrices: off-diagonal variance 1, diagonal variance 2."""
    U = jax.random.normal(key, (n, T, T))
    return (U + jnp.swapaxes(U, 1, 2)) / jnp.sqrt(2.0)


def _draws(key, n: int, T: int):
    k = jax.random.split(key, 4)
    return (jax.random.normal(k[0], (n, T)), jax.random.normal(k[1], (n, T)), _goe(k[2], n, T), _goe(k[3], n, T))


def _frozen_pair(law, G1, G2):
    """``(A, H)`` from two independent GOEs with off-diagonal covariance ``[[Q_A, M], [M, V_H]]``."""
    QA, MAH, VH = law
    c = jnp.where(QA > 0, MAH / jnp.where(QA > 0, QA, 1.0), 0.0)
    A = jnp.sqrt(QA) * G1
    H = c * A + jnp.sqrt(jnp.maximum(VH - c * MAH, 0.0)) * G2
    return A, H


def _loss(z, cs, q, A, H, q0, sigma, beta):
    T = z.shape[0]
    eye = jnp.eye(T)
    target = _act(H + jnp.outer(cs, cs) - q0 * eye, sigma, beta)
    return jnp.sum((_act(A + jnp.outer(z, z) - q * eye, sigma, beta) - target) ** 2)


@partial(jax.jit, static_argnames=("sigma", "n_iter"))
def _channel(q, m, v, q0, law, beta, draws, sigma: str, n_iter: int):
    """Per-sample integrands of the conjugates and of ``L_ft`` (see module doc)."""
    xi, eta, G1, G2 = draws
    A, H = _frozen_pair(law, G1, G2)
    omega = jnp.sqrt(q) * xi
    cs = (m / q) * omega + jnp.sqrt(jnp.maximum(q0 - m * m / q, 0.0)) * eta

    def one(om, c, Ai, Hi):
        ell = lambda z, cc, qq: _loss(z, cc, qq, Ai, Hi, q0, sigma, beta)  # noqa: E731
        phi = lambda z: jnp.sum((z - om) ** 2) / (2 * v) + ell(z, c, q)  # noqa: E731
        z, conv, multi, amb = prox_multistart(phi, om, v, n_iter=n_iter)
        T = z.shape[0]
        K = jnp.eye(T) / v + jax.hessian(ell, argnums=0)(z, c, q)
        Kinv = jnp.linalg.inv(K)
        g = (z - om) / v
        vhat_i = jnp.trace(jnp.eye(T) - Kinv / v) / v
        C = jax.jacfwd(jax.grad(ell, argnums=0), argnums=1)(z, c, q)
        mhat_i = -jnp.trace(Kinv @ C) / v
        dq = jax.grad(ell, argnums=2)(z, c, q)
        return jnp.sum(g * g), mhat_i, vhat_i, dq, ell(z, c, q), conv, multi, amb

    return jax.vmap(one)(omega, cs, A, H)


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
    params: Params, ov: FinetuneOverlaps, law, q0: float, draws, n_iter: int = 20
) -> tuple[FinetuneHats, dict[str, float], dict[str, float]]:
    """Conjugates at ``ov`` (module doc), with their MC standard errors and prox diagnostics."""
    a = params.effective_alpha_prime
    out = _channel(ov.q, ov.m, ov.v, q0, tuple(float(x) for x in law), params.beta, draws,
                   sigma=params.sigma, n_iter=n_iter)
    g2, mh, vh, dq, ell, conv, multi, amb = (np.asarray(o) for o in out)
    (qh, qh_s), (mhh, mh_s), (vhh, vh_s), (dqm, dq_s), (L, L_s) = map(_mean_sem, (g2, mh, vh, dq, ell))
    hats = FinetuneHats(q_hat=a * qh, m_hat=a * mhh, v_hat=a * vhh, lam_eff=2 * params.lam_prime + 2 * a * dqm)
    sem = {"q_hat": a * qh_s, "m_hat": a * mh_s, "v_hat": a * vh_s, "lam_eff": 2 * a * dq_s, "L_ft": L_s}
    diag = {"L_ft": L, "prox_converged_frac": float(conv.mean()), "prox_multimodal_frac": float(multi.mean()),
            "prox_ambiguous_frac": float(amb.mean())}
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


# ------------------------------------------------------------------------------------- solver
def solve_finetune(
    params: Params,
    pre: PretrainOrderParams,
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
) -> FinetuneResult:
    """Solve the fine-tuning fixed point over ``(q, m, v)`` (module doc) and evaluate the observables.

    Args:
        params: uses ``T, sigma, beta, delta, lam_prime, effective_alpha_prime, recalibrate``; needs ``reuse = 0``.
        pre: pre-training order parameters (e.g. measured by the simulator, or from the pre-training theory).
        q0: ``‖w*‖²/D`` (1 as ``D → ∞``; pass the measured value to compare with a finite-D run).
        n_mc: Monte-Carlo samples of the channel (fixed key ⇒ deterministic map).
        n_test: samples for ``E_ft``/``E_frozen`` (softmax; linear is closed form).
        key: integer seed of the fixed keys.
        init: starting overlaps (default ``q = m = q0/2``, ``v = 1/(2λ' + α'T + 1)``: informed, ``m > 0``).
        damping, rtol, atol, max_steps: passed to :func:`theory.fixed_point.fixed_point`.
        n_iter: Newton iterations per start of the prox.
    """
    if params.reuse != 0:
        raise ParameterError(f"reuse = {params.reuse} is out of range: this theory needs reuse = 0 (fresh sequences)")
    if params.active_rho is not None:
        raise ParameterError("active_rho is set: this theory covers random fresh sequences only (allowed active_rho = None)")
    if not (isinstance(n_mc, int) and n_mc >= 2):
        raise ParameterError(f"n_mc = {n_mc!r} is out of range: allowed an integer ≥ 2")
    if not (q0 > 0 and math.isfinite(q0)):
        raise ParameterError(f"q0 = {q0!r} is out of range: allowed 0 < q0 < inf")
    T, sigma = params.T, params.sigma
    bW = recalibration(params, pre)
    d_eff = delta_eff(params.delta, pre, bW)
    law = noise_law(params, pre, bW)
    base = jax.random.PRNGKey(key)
    test_draws = _draws(jax.random.fold_in(base, 1), n_test, T)

    def errors(q, m):
        if sigma == "linear":
            return (*_linear_errors(T, q, m, q0, d_eff), 0.0, 0.0)
        eft, efr = _test_errors(q, m, q0, tuple(float(x) for x in law), params.beta, test_draws, sigma=sigma)
        (e1, s1), (e0, s0) = _mean_sem(eft), _mean_sem(efr)
        return e1, e0, s1, s0

    if math.isinf(params.lam_prime):
        E_ft, E_fr, s1, s0 = errors(0.0, 0.0)
        return FinetuneResult(q=0.0, m=0.0, v=0.0, o_w=float("nan"), E_ft=E_ft, L_ft=float("nan"), E_frozen=E_fr,
                              delta_eff=d_eff, q0=q0, beta_W=bW, hats=None, converged=True, n_steps=0,
                              residual=0.0, mc_sem={"E_ft": s1, "E_frozen": s0},
                              diagnostics={"reason": "lam_prime = inf: w = 0"})

    draws = _draws(jax.random.fold_in(base, 0), n_mc, T)

    def step(ov: FinetuneOverlaps) -> FinetuneOverlaps:
        if not (ov.q > 0 and ov.v > 0):
            return FinetuneOverlaps(q=float("nan"), m=float("nan"), v=float("nan"))
        m = min(max(ov.m, -math.sqrt(ov.q * q0)), math.sqrt(ov.q * q0))
        hats, _, _ = finetune_hats(params, FinetuneOverlaps(ov.q, m, ov.v), law, q0, draws, n_iter)
        if not hats.lam_eff + hats.v_hat > 0:
            # The centring ridge can be negative; a too-large v overshoots into λ_eff + v̂ ≤ 0, which has
            # no fixed point (v > 0 needed). Shrink v and retry: a fixed point of this map satisfies the
            # equations, since there v is unchanged.
            return FinetuneOverlaps(q=ov.q, m=m, v=ov.v / 2)
        return prior_update(hats, q0)

    start = init or FinetuneOverlaps(q=q0 / 2, m=q0 / 2, v=1.0 / (2 * params.lam_prime + params.effective_alpha_prime * T + 1.0))
    fp = fixed_point(step, start, damping=damping, rtol=rtol, atol=atol, max_steps=max_steps)
    ov = fp.value
    ok = fp.converged and all(math.isfinite(x) for x in (ov.q, ov.m, ov.v))
    if ok:
        hats, sem, diag = finetune_hats(params, ov, law, q0, draws, n_iter)
    else:
        hats, sem, diag = None, {}, {}
    q, m = (ov.q, ov.m) if ok else (float("nan"), float("nan"))
    E_ft, E_fr, s1, s0 = errors(q, m) if ok else (float("nan"),) * 4
    L_ft = diag.pop("L_ft", float("nan"))
    sem.update({"E_ft": s1, "E_frozen": s0})
    diag.update({"status": fp.status, "noise_law": law, "n_mc": n_mc, "n_test": n_test, "key": key})
    o_w = abs(m) / math.sqrt(q * q0) if ok and q > 0 else float("nan")
    return FinetuneResult(q=q, m=m, v=ov.v, o_w=o_w, E_ft=E_ft, L_ft=L_ft, E_frozen=E_fr, delta_eff=d_eff, q0=q0,
                          beta_W=bW, hats=hats, converged=ok, n_steps=fp.n_steps, residual=fp.residual,
                          mc_sem=sem, diagnostics=diag)
