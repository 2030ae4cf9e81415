"""Bayes-optimal LoRA fine-tuning (MODEL.md §5.6, THEORY_NOTES §5.1, §5.3 'BO version').

The statistician knows the frozen ``Ŵ`` (hence ``A_Ŵ`` on every sequence), the order parameters
``(Q0, Q, M)`` of pre-training, ``X`` and the labels ``y' = B'X``, and estimates ``w* ~ N(0, I_D)``.

Channel (D → ∞, per sequence). ``XXᵀ/D → I_T``, so ``B'`` is observed exactly. Given ``A_Ŵ`` the
teacher's extensive part is ``A0 = (M/Q) A_Ŵ + ε`` with ``ε_e ~ N(0, c_e (Q0 − M²/Q))``, independent
across entries ``e = (a ≤ b)`` at leading order (``c = 2`` diagonal, ``1`` off-diagonal). With
``χ* = Xw*/√D ~ N(0, I_T)`` the pre-activation is

    H = (M/Q) A_Ŵ + χ*χ*ᵀ − I + N,    N_e ~ N(0, c_e Δ_BO),    Δ_BO = Δ/2 + Q0 − M²/Q,

and ``ν`` of law ``N_e ~ N(0, c_e)`` has density ``∝ exp(−‖ν‖_F²/4)`` on symmetric matrices. So, with
``Y = H − (M/Q)A_Ŵ``, the likelihood is ``P(Y | χ) ∝ exp(−‖Π(Y − χχᵀ + I)‖_F² / (4Δ_BO))`` where

- ``σ = linear``: ``Π = identity`` (``B' = H``): the whole BO problem depends on pre-training only
  through ``Δ_BO`` (the optimally recalibrated ``Δ_eff``);
- ``σ = softmax``: ``B'`` fixes ``H`` up to ``c·11ᵀ`` (THEORY_NOTES §1.4; ``β`` drops out of the
  channel since ``log B'`` is exact), so the ``11ᵀ`` component is integrated out with a flat prior:
  ``‖Π R‖_F² = ‖R‖_F² − (1ᵀR1)²/T²``.

State evolution (scalar, prior ``N(0, I)``, Nishimori ``m = q``):

    q = q̂/(1 + q̂),    q̂ = α' E‖g_out(Y; ω, V)‖²,    ω = √q η,  V = 1 − q,
    g_out = (E[χ | Y, ω, V] − ω)/V,   χ* = ω + √V ξ,  Y = χ*χ*ᵀ − I + √Δ_BO ν.

The posterior moments of ``χ ∈ R^T`` under ``N(χ; ω, V I)·P(Y | χ)`` are computed by self-normalised
importance sampling (defensive mixture of the Gaussian factor and the two Laplace modes), with fixed keys so the SE map is
deterministic. Weak recovery (q = 0 unstable): ``α'_c = 1/E_Y‖E[χχᵀ − I | Y]‖_F²`` at ``ω = 0, V = 1``.

Test error (fresh sequence, posterior of χ is ``N(ω, V I)`` with ``ω = Xŵ/√D ~ N(0, q)``):
``E_ft_BO = E‖E[B' | ω, A_Ŵ] − B'‖_F²``. For linear σ:
``E_ft_BO = T(T+1) (Δ_BO + 2qV + V²)``; for softmax a nested Monte Carlo of ``softmax(βH)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model.laws import goe_like
from model.params import ParameterError, Params
from theory.fixed_point import fixed_point
from theory.states import PretrainState


def delta_bo(delta: float, pre: PretrainState) -> float:
    """``Δ_BO = Δ/2 + Q0 − M²/Q``: the effective noise of the BO channel (recalibrated ``Δ_eff``)."""
    return 0.5 * delta + pre.residual


@dataclass(frozen=True)
class BayesFinetuneResult:
    """Bayes-optimal fine-tuning at the SE fixed point.

    Attributes:
        q_BO: ``q = m`` (overlap of the posterior mean with ``w*``, ``q0 = 1``).
        E_ft_BO: Bayes test error ``E‖E[B'|data, X] − B'‖_F²``; ``E_ft_BO_se`` the MC standard error of
            its evaluation at fixed ``q`` (0 for linear σ, closed form); ``E_ft_BO_se_q = |dE/dq|·q_se``,
            the part inherited from the MC error of ``q_BO`` (add the two in quadrature).
        q_hat: conjugate ``q̂ = α' E‖g_out‖²`` at the fixed point; ``q_hat_se`` its MC standard error.
        q_se: MC standard error of ``q_BO`` propagated through the fixed point.
        E_prior: error at ``q = 0`` (no fine-tuning data; for linear σ ``T(T+1)(1 + Δ_BO)``).
        alpha_c, alpha_c_se: weak-recovery threshold ``1/E_Y‖E[χχᵀ − I | Y]‖_F²`` and its MC error.
        delta_BO: ``Δ/2 + Q0 − M²/Q``.
        ess_min, ess_median: smallest / median importance-sampling effective sample size (out of
            ``n_inner``) over the channel draws at the fixed point.
        converged, n_steps, residual, status: from :func:`theory.fixed_point.fixed_point`.
    """

    q_BO: float
    E_ft_BO: float
    E_ft_BO_se: float
    E_ft_BO_se_q: float
    q_hat: float
    q_hat_se: float
    q_se: float
    E_prior: float
    alpha_c: float
    alpha_c_se: float
    delta_BO: float
    ess_min: float
    ess_median: float
    converged: bool
    n_steps: int
    residual: float
    status: str


# ------------------------------------------------------------------------------- building blocks


def _misfit(Y: jax.Array, chi: jax.Array, project: bool) -> jax.Array:
    """``‖Π(Y − χχᵀ + I)‖_F²`` for a batch ``chi`` of shape ``(K, T)``; ``Y`` is ``(T, T)``."""
    T = Y.shape[-1]
    R = Y[None] + jnp.eye(T) - chi[:, :, None] * chi[:, None, :]
    e = jnp.sum(R * R, axis=(-1, -2))
    if project:
        e = e - jnp.sum(R, axis=(-1, -2)) ** 2 / T**2
    return e


def _mvn_logpdf_iso(x, mean, var):
    T = x.shape[-1]
    return -0.5 * jnp.sum((x - mean) ** 2, -1) / var - 0.5 * T * jnp.log(2 * jnp.pi * var)


def _laplace_mode(Y, V, dbo, project):
    """A mode ``c = √λ₁ v₁`` of ``exp(−‖Y + I − χχᵀ‖²/(4Δ_BO))`` and a covariance ``Σ`` (Cholesky ``L``)
    from its Hessian ``(λ₁I − Y' + 2λ₁v₁v₁ᵀ)/Δ_BO`` plus the prior precision ``1/V``, inflated ×2."""
    T = Y.shape[-1]
    Yp = Y + jnp.eye(T)
    if project:
        Yp = Yp - jnp.mean(Yp) * jnp.ones((T, T))
    lam, vec = jnp.linalg.eigh(Yp)
    l1 = jnp.maximum(lam[-1], 0.0)
    v1 = vec[:, -1]
    prec_eig = jnp.maximum(l1 - lam, 0.0).at[-1].set(2.0 * l1) / dbo + 1.0 / V
    cov = (vec * (2.0 / prec_eig)) @ vec.T
    return jnp.sqrt(l1) * v1, jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(T))


def posterior_moments(Y, omega, V, zeta, dbo, project):
    """Posterior mean, second moment and ESS of ``χ`` under ``N(χ; ω, V I) exp(−‖Π(Y−χχᵀ+I)‖²/(4Δ_BO))``.

    Self-normalised importance sampling with the defensive mixture proposal
    ``½ N(ω, V I) + ¼ N(c, Σ) + ¼ N(−c, Σ)`` (``±c``: the two Laplace modes of the likelihood, which is
    even in ``χ``); ``zeta`` is ``(K, T)`` standard normals (``K`` divisible by 4), deterministic
    allocation: first half to the prior component, then a quarter to each mode (mirrored draws).
    """
    K, T = zeta.shape
    c, L = _laplace_mode(Y, V, dbo, project)
    h = K // 2
    z_mode = zeta[h:h + K // 4] @ L.T
    chi = jnp.concatenate([omega[None] + jnp.sqrt(V) * zeta[:h], c[None] + z_mode, -c[None] - z_mode])
    cov = L @ L.T
    prec = jnp.linalg.inv(cov)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))

    def log_mode(x, m):
        d = x - m
        return -0.5 * jnp.einsum("ka,ab,kb->k", d, prec, d) - 0.5 * (T * jnp.log(2 * jnp.pi) + logdet)

    log_prior = _mvn_logpdf_iso(chi, omega[None], V)
    log_prop = jax.scipy.special.logsumexp(
        jnp.stack([jnp.log(0.5) + log_prior, jnp.log(0.25) + log_mode(chi, c), jnp.log(0.25) + log_mode(chi, -c)]),
        axis=0)
    logw = log_prior - _misfit(Y, chi, project) / (4.0 * dbo) - log_prop
    w = jax.nn.softmax(logw)
    mean = w @ chi
    second = jnp.einsum("k,ka,kb->ab", w, chi, chi)
    ess = 1.0 / jnp.sum(w * w)
    return mean, second, ess


def g_out(Y, omega, V, zeta, dbo, project):
    """``g = ∂_ω log Z_out = (E[χ] − ω)/V`` and ``∂g/∂ω = (Cov[χ] − V I)/V²`` (T-vector, T×T), plus ESS."""
    mean, second, ess = posterior_moments(Y, omega, V, zeta, dbo, project)
    cov = second - jnp.outer(mean, mean)
    T = omega.shape[0]
    return (mean - omega) / V, (cov - V * jnp.eye(T)) / V**2, ess


def antithetic_normals(key: jax.Array, n_inner: int, T: int) -> jax.Array:
    """``(n_inner, T)`` standard normals whose first half is antithetic pairs ``±ζ``."""
    z = jax.random.normal(key, (n_inner // 4, T))
    rest = jax.random.normal(jax.random.fold_in(key, 1), (n_inner - 2 * (n_inner // 4), T))
    return jnp.concatenate([z, -z, rest])


def _check_mc(n_outer: int, n_inner: int) -> None:
    if not isinstance(n_outer, int) or n_outer < 2:
        raise ValueError(f"n_outer = {n_outer!r} is out of range: allowed an integer ≥ 2")
    if not isinstance(n_inner, int) or n_inner < 8 or n_inner % 4:
        raise ValueError(f"n_inner = {n_inner!r} is out of range: allowed a multiple of 4, ≥ 8")


@partial(jax.jit, static_argnames=("T", "project", "n_outer", "n_inner"))
def _qhat_samples(q, dbo, key, *, T, project, n_outer, n_inner):
    """Per-outer-sample ``‖g_out‖²``, ``−Tr ∂g`` (Nishimori partner) and ESS at overlap ``q``."""
    V = 1.0 - q
    k_eta, k_xi, k_nu, k_in = jax.random.split(key, 4)
    eta = jax.random.normal(k_eta, (n_outer, T))
    xi = jax.random.normal(k_xi, (n_outer, T))
    nu = goe_like(k_nu, (n_outer,), T)
    inner_keys = jax.random.split(k_in, n_outer)
    omega = jnp.sqrt(q) * eta
    chi_star = omega + jnp.sqrt(V) * xi
    Y = chi_star[:, :, None] * chi_star[:, None, :] - jnp.eye(T) + jnp.sqrt(dbo) * nu

    def one(args):
        Yi, om, ki = args
        g, dg, ess = g_out(Yi, om, V, antithetic_normals(ki, n_inner, T), dbo, project)
        return jnp.sum(g * g), -jnp.trace(dg), ess

    return jax.lax.map(one, (Y, omega, inner_keys), batch_size=256)


@partial(jax.jit, static_argnames=("T", "project", "n_outer", "n_inner"))
def _jacobian_sq_samples(dbo, key, *, T, project, n_outer, n_inner):
    """Per-sample ``‖E[χχᵀ − I | Y]‖_F²`` at ``q = 0`` (``ω = 0``, ``V = 1``), THEORY_NOTES §5.3."""
    k_xi, k_nu, k_in = jax.random.split(key, 3)
    xi = jax.random.normal(k_xi, (n_outer, T))
    nu = goe_like(k_nu, (n_outer,), T)
    Y = xi[:, :, None] * xi[:, None, :] - jnp.eye(T) + jnp.sqrt(dbo) * nu
    inner_keys = jax.random.split(k_in, n_outer)

    def one(args):
        Yi, ki = args
        _, second, _ = posterior_moments(Yi, jnp.zeros(T), 1.0, antithetic_normals(ki, n_inner, T), dbo, project)
        J = second - jnp.eye(T)
        return jnp.sum(J * J)

    return jax.lax.map(one, (Y, inner_keys), batch_size=256)


def bayes_error_linear(q: float, T: int, dbo: float) -> float:
    """Linear σ: ``E_ft_BO = T(T+1)(Δ_BO + 2qV + V²)``, ``V = 1 − q``.

    ``B' − E[B'] = √V(ωξᵀ + ξωᵀ) + V(ξξᵀ − I) + N``: the three terms are uncorrelated, with
    ``E‖ωξᵀ+ξωᵀ‖² = 2(T+1)Tq``, ``E‖ξξᵀ − I‖² = T(T+1)``, ``E‖N‖² = T(T+1)Δ_BO``.
    """
    V = 1.0 - q
    return T * (T + 1) * (dbo + 2.0 * q * V + V * V)


def posterior_preactivations(omega, mu, V, dbo, key, n_inner: int):
    """``n_inner`` draws of a fresh sequence's pre-activation given the data: ``H = μ + χχᵀ − I + √Δ_BO ν`` with
    ``χ = ω + √V ζ`` (``ζ`` antithetic normals, ``V = 1 − q``), ``ν`` GOE-like, ``μ = (M/Q)A_Ŵ``; shape
    ``(n_inner, T, T)``. ``key`` is split into the draws of ``ζ`` and of ``ν``."""
    T = omega.shape[0]
    kz, kn = jax.random.split(key)
    chi = omega[None] + jnp.sqrt(V) * antithetic_normals(kz, n_inner, T)
    return mu[None] + chi[:, :, None] * chi[:, None, :] - jnp.eye(T) + jnp.sqrt(dbo) * goe_like(kn, (n_inner,), T)


@partial(jax.jit, static_argnames=("T", "linear", "n_outer", "n_inner"))
def _bayes_error_samples(q, shrink_sd, dbo, beta, key, *, T, linear, n_outer, n_inner):
    """Per-outer-sample unbiased ``Σ_ab Var[B'_ab | ω, A_Ŵ]`` from ``n_inner`` draws of ``(χ, N)``.

    Outer: ``ω = √q η``, ``μ = (M/Q)A_Ŵ`` with entries ``N(0, c_e M²/Q)`` (``shrink_sd = M/√Q``).
    Inner: ``H = μ + χχᵀ − I + √Δ_BO ν``, ``χ = ω + √(1−q) ζ``; ``B' = H`` or ``softmax(βH)``.
    """
    V = 1.0 - q
    k_eta, k_mu, k_in = jax.random.split(key, 3)
    omega = jnp.sqrt(q) * jax.random.normal(k_eta, (n_outer, T))
    mu = shrink_sd * goe_like(k_mu, (n_outer,), T)
    inner_keys = jax.random.split(k_in, n_outer)

    def one(args):
        om, m, ki = args
        H = posterior_preactivations(om, m, V, dbo, ki, n_inner)
        B = H if linear else jax.nn.softmax(beta * H, axis=-1)
        return jnp.sum(jnp.var(B, axis=0)) * n_inner / (n_inner - 1)

    return jax.lax.map(one, (omega, mu, inner_keys), batch_size=64)


def bayes_error_mc(q: float, params: Params, pre: PretrainState, *, seed: int = 1, n_outer: int = 4000,
                   n_inner: int = 256) -> tuple[float, float]:
    """``E_ft_BO`` at overlap ``q`` by nested Monte Carlo: ``(mean, standard error)`` (any σ)."""
    _check_mc(n_outer, n_inner)
    s = np.asarray(_bayes_error_samples(
        float(q), math.sqrt(pre.M * pre.shrink), delta_bo(params.delta, pre), float(params.beta),
        jax.random.PRNGKey(seed), T=params.T, linear=params.sigma == "linear", n_outer=n_outer, n_inner=n_inner))
    return float(s.mean()), float(s.std(ddof=1) / math.sqrt(n_outer))


def bayes_error(q: float, params: Params, pre: PretrainState, **mc) -> tuple[float, float]:
    """``E_ft_BO(q)``: closed form for linear σ (standard error 0), nested MC for softmax."""
    if params.sigma == "linear":
        return bayes_error_linear(q, params.T, delta_bo(params.delta, pre)), 0.0
    return bayes_error_mc(q, params, pre, **mc)


def weak_recovery_threshold(params: Params, pre: PretrainState, *, seed: int = 2, n_outer: int = 8000,
                            n_inner: int = 2048) -> tuple[float, float]:
    """``α'_c = 1/E_Y‖E[χχᵀ − I | Y]‖_F²`` (THEORY_NOTES §5.3) and its delta-method MC error."""
    _check_mc(n_outer, n_inner)
    s = np.asarray(_jacobian_sq_samples(delta_bo(params.delta, pre), jax.random.PRNGKey(seed), T=params.T,
                                        project=params.sigma == "softmax", n_outer=n_outer, n_inner=n_inner))
    m, se = float(s.mean()), float(s.std(ddof=1) / math.sqrt(n_outer))
    return 1.0 / m, se / m**2


@dataclass(frozen=True)
class _Overlap:
    q: float


def _validate(params: Params, pre: PretrainState, q_init: float) -> float:
    if not isinstance(pre, PretrainState):
        raise ParameterError(f"pre = {pre!r} must be a PretrainState(Q0, Q, M)")
    if params.reuse != 0 or params.active_rho is not None:
        raise ParameterError("reuse and active_rho are not modelled by the BO fine-tuning channel: allowed "
                             "reuse = 0 and active_rho = None (fresh, unselected sequences)")
    if not (0.0 < q_init < 1.0):
        raise ParameterError(f"q_init = {q_init!r} is out of range: allowed 0 < q_init < 1")
    dbo = delta_bo(params.delta, pre)
    if dbo < 1e-3:
        raise ParameterError(f"Δ_BO = Δ/2 + Q0 − M²/Q = {dbo:.3g} is out of range: allowed Δ_BO ≥ 1e-3 "
                             "(the importance sampler needs a non-degenerate channel)")
    return dbo


def solve_bayes_finetune(params: Params, pre: PretrainState, *, q_init: float = 0.5, seed: int = 0,
                         n_outer: int = 4000, n_inner: int = 1024, n_outer_error: int = 4000,
                         n_inner_error: int = 256, threshold: bool = True, damping: float = 0.3,
                         rtol: float = 1e-7, atol: float = 1e-9, max_steps: int = 500) -> BayesFinetuneResult:
    """Solve the BO state evolution of LoRA fine-tuning and evaluate ``q_BO``, ``E_ft_BO``.

    Fixed point of ``q ← q̂(q)/(1 + q̂(q))``, ``q̂ = α' E‖g_out‖²`` (see module doc), started at
    ``q_init > 0`` (``q = 0`` is always a fixed point). MC with fixed keys derived from ``seed``:
    ``n_outer`` channel draws, ``n_inner`` importance samples each. The standard error of ``q`` is
    ``se(q̂)/(1+q̂)² / |1 − s|`` with ``s`` the slope of the SE map at the fixed point (finite difference).
    """
    dbo = _validate(params, pre, q_init)
    _check_mc(n_outer, n_inner)
    T, ap = params.T, params.effective_alpha_prime
    project = params.sigma == "softmax"
    key = jax.random.PRNGKey(seed)

    def qhat_stats(q: float):
        g2, _, ess = _qhat_samples(float(q), dbo, key, T=T, project=project, n_outer=n_outer, n_inner=n_inner)
        g2 = np.asarray(g2)
        ess = np.asarray(ess)
        return (ap * float(g2.mean()), ap * float(g2.std(ddof=1)) / math.sqrt(n_outer),
                (float(np.min(ess)), float(np.median(ess))))

    def step(x: _Overlap) -> _Overlap:
        qh = qhat_stats(min(max(x.q, 0.0), 1.0 - 1e-9))[0]
        return _Overlap(q=qh / (1.0 + qh))

    fp = fixed_point(step, _Overlap(q=float(q_init)), damping=damping, rtol=rtol, atol=atol, max_steps=max_steps)
    q = min(max(fp.value.q, 0.0), 1.0 - 1e-9)
    qh, qh_se, ess = qhat_stats(q)
    h = 1e-4
    if 2 * h < q < 1 - 2 * h:
        slope = (step(_Overlap(q + h)).q - step(_Overlap(q - h)).q) / (2 * h)
    else:
        slope = 0.0
    q_se = qh_se / (1.0 + qh) ** 2 / max(abs(1.0 - slope), 1e-6)
    mc = dict(n_outer=n_outer_error, n_inner=n_inner_error, seed=seed + 1)
    E, E_se = bayes_error(q, params, pre, **mc)
    E0, _ = bayes_error(0.0, params, pre, **mc)
    if params.sigma == "linear":
        dE_dq = -2.0 * T * (T + 1) * q  # d/dq of T(T+1)(Δ_BO + 1 − q²)
    else:
        hq = min(0.02, q / 2, (1.0 - q) / 2)  # common random numbers: the difference is smooth
        dE_dq = (bayes_error(q + hq, params, pre, **mc)[0] - bayes_error(q - hq, params, pre, **mc)[0]) / (2 * hq) \
            if hq > 1e-6 else 0.0
    if threshold:
        ac, ac_se = weak_recovery_threshold(params, pre, seed=seed + 2, n_outer=n_outer, n_inner=max(n_inner, 2048))
    else:
        ac, ac_se = float("nan"), float("nan")
    return BayesFinetuneResult(q_BO=q, E_ft_BO=E, E_ft_BO_se=E_se,
                               E_ft_BO_se_q=abs(dE_dq) * q_se, q_hat=qh, q_hat_se=qh_se, q_se=q_se,
                               E_prior=E0, alpha_c=ac, alpha_c_se=ac_se, delta_BO=dbo, ess_min=ess[0], ess_median=ess[1],
                               converged=fp.converged, n_steps=fp.n_steps, residual=fp.residual, status=fp.status)
