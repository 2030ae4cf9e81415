"""Bayes-optimal LoRA fine-tuning of a rank-``r*`` teacher (MODEL.md §8, the rank-``r*`` form of §5.6).

The statistician knows ``Ŵ``, ``(Q0, Q, M)``, ``X`` and ``y' = B'X`` and estimates ``U* ∈ R^{D×r*}`` (rows i.i.d.
``N(0, I_{r*})``, so ``q0 = U*ᵀU*/D → I``). Per sequence, with ``χ* = XU*/√D ∈ R^{T×r*}`` (rows i.i.d.
``N(0, I)``), the channel of :mod:`theory.bayes.finetune` becomes

    Y = χ*χ*ᵀ − Tr(q0) I_T + √Δ_BO ν,      Δ_BO = Δ/2 + Q0 − M²/Q,

``P(Y | χ) ∝ exp(−‖Π(Y − χχᵀ + r* I)‖_F² / (4Δ_BO))`` with the same ``Π`` (identity for linear σ, the ``11ᵀ``
component projected out for softmax). It depends on ``χ`` through ``χχᵀ`` only: it is invariant under
``χ → χO``, ``O ∈ O(r*)``.

State evolution (Nishimori ``m = q``, ``r*×r*``; a Gaussian prior ``N(0, I)`` on the rows of ``U*``):

    q = q̂ (I + q̂)⁻¹,     q̂ = α' E[g_outᵀ g_out],     V = I − q,
    g_out = (E[χ | Y, ω, V] − ω) V⁻¹ ∈ R^{T×r*},
    ω = η q^{1/2},  χ* = ω + ξ V^{1/2}  (rows of ``η, ξ`` i.i.d. ``N(0, I)``),  Y as above,

where ``E[· | Y, ω, V]`` is the posterior with prior ``Π_a N(χ_a; ω_a, V)`` over the rows and the likelihood above.
(The prior side: ``u* ~ N(0, I)`` observed as ``q̂ u* + q̂^{1/2} z`` has posterior-mean overlap
``E[ûûᵀ] = q̂(I + q̂)⁻¹``; the channel side is the GLM output function summed over the ``T`` tokens.) At ``r* = 1``
this is the scalar state evolution of :mod:`theory.bayes.finetune`.

Isotropy. With ``q = sI`` the law of ``(Y, ω, χ*)`` is invariant under ``(ω, χ*) → (ωO, χ*O)`` and the posterior
mean is equivariant, so ``E[g_outᵀ g_out]`` commutes with every ``O``: ``q̂ = ŝ I`` and the map keeps ``q``
isotropic. Along ``q = sI`` the fixed points satisfy ``α'(s) = s / ((1 − s) G(s))``,
``G(s) = E Tr(g_outᵀ g_out)/r*`` (:func:`curve_point_rank`). Whether the matrix iteration also returns to the
isotropic point from an anisotropic start is a question of stability, checked numerically, not assumed.

Posterior moments of ``χ ∈ R^{T×r*}``: self-normalised importance sampling with the defensive mixture proposal
``½ N_prior + Σ_j (1/(2n_c)) N((χ0 + Z) O_j)``: ``χ0`` is the mode of the likelihood (the top-``r*`` eigenpairs
of ``Y' = Π(Y) + r* I``: column ``l`` is ``√λ_l⁺ v_l``), its copies ``χ0 O_j`` cover the ``O(r*)`` orbit of modes
(``O_1 = I``, ``O_2 = −I``, then Haar pairs ``±O`` from a fixed key), and ``Z ~ N(0, Σ)`` with ``Σ`` twice the
inverse of the Gauss–Newton Hessian of the misfit at ``χ0`` plus the prior precision ``I_T ⊗ V⁻¹`` (zero curvature
along the orbit, which the prior precision bounds). The same ``Z`` serves every copy (mirrored draws). At
``r* = 1`` the proposal, the allocation and the draws are those of :func:`theory.bayes.finetune.posterior_moments`.

Weak recovery (``q = 0`` unstable): at ``ω = 0, V = I`` the posterior is ``O(r*)``-invariant, so
``E[χ_{al}χ_{bn} | Y] = δ_{ln} K_ab`` with ``K = E[χχᵀ | Y]/r*``, and the linearised map is
``q̂ = α' E_Y‖K − I_T‖_F² · q`` on every direction: ``α'_c = 1/E_Y‖E[χχᵀ | Y]/r* − I_T‖_F²``.

Test error (fresh sequence; given the data ``χ* = ω + ζ`` with rows ``ζ_a ~ N(0, V)``, ``ω`` rows ``N(0, q)``):
``E_ft_BO = E‖E[B' | ω, A_Ŵ] − B'‖_F²``. Linear σ, by Wick (``B' − E[B'|ω] = ωζᵀ + ζωᵀ + (ζζᵀ − Tr V·I) + N``,
three uncorrelated terms):

    E_ft_BO = T(T+1) (Δ_BO + 2 Tr(qV) + Tr(V²)),     (isotropic ``q = sI``: ``T(T+1)(Δ_BO + r*(1 − s²))``),

softmax by nested Monte Carlo of ``softmax(βH)``, ``H = (M/Q)A_Ŵ + χχᵀ − r* I + √Δ_BO ν``.
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
from theory.bayes.finetune import BayesFinetuneResult, _check_mc, _validate, antithetic_normals, delta_bo
from theory.fixed_point import fixed_point
from theory.states import PretrainState

#: Pairs ``±O`` of mode copies at ``r* ≥ 2`` (``r* = 1`` has the one pair ``±1``).
N_PAIRS = 4


@dataclass(frozen=True)
class BayesFinetuneRankResult(BayesFinetuneResult):
    """Bayes-optimal rank-``r*`` fine-tuning at the state-evolution fixed point: the fields of the rank-one
    :class:`theory.bayes.finetune.BayesFinetuneResult` (read per direction) and the matrix ones.

    Attributes:
        teacher_rank: ``r*``.
        q_matrix: ``q_BO = m`` (``r*×r*``, rows of a tuple), the overlap of the posterior mean with ``U*``.
        tr_q_BO: ``Tr q_BO``; ``q_BO = Tr q_BO / r*`` (the per-direction overlap; the Bayes-optimal subspace overlap
            is ``o_U = √(Tr(mᵀq⁺m)/Tr q0) = √q_BO``); ``q_aniso = ‖q − q_BO I‖_F`` (0 when isotropic).
        q_se: Monte-Carlo standard error of ``q_BO`` propagated through the fixed point (isotropic map).
        q_hat: ``Tr q̂ / r*`` at the fixed point and its MC standard error ``q_hat_se``.
        E_ft_BO: Bayes test error; ``E_ft_BO_se`` the MC error of its evaluation at fixed ``q`` (0 for linear σ),
            ``E_ft_BO_se_q`` the part inherited from ``q_se``.
        E_prior: the error at ``q = 0`` (linear σ: ``T(T+1)(Δ_BO + r*)``).
        alpha_c, alpha_c_se: weak-recovery threshold and its MC error (NaN when not computed).
        delta_BO: ``Δ/2 + Q0 − M²/Q``.
        ess_min, ess_median: importance-sampling effective sample size (out of ``n_inner``) over the channel draws.
        converged, n_steps, residual, status: from :func:`theory.fixed_point.fixed_point`.
    """

    teacher_rank: int
    q_matrix: tuple[tuple[float, ...], ...]
    tr_q_BO: float
    q_aniso: float


# ------------------------------------------------------------------------------- building blocks


def mode_rotations(r: int, n_pairs: int = N_PAIRS, seed: int = 0) -> np.ndarray:
    """``(2·n_pairs, r, r)`` orthogonal matrices ``I, −I, O_2, −O_2, …`` (``O_j`` Haar on ``O(r)``, fixed seed);
    ``r = 1``: ``[1, −1]`` whatever ``n_pairs``."""
    if r == 1:
        return np.array([[[1.0]], [[-1.0]]])
    rng = np.random.default_rng(seed)
    out = [np.eye(r)]
    for _ in range(n_pairs - 1):
        Q, R = np.linalg.qr(rng.standard_normal((r, r)))
        out.append(Q * np.sign(np.diag(R)))
    return np.stack([s * O for O in out for s in (1.0, -1.0)])


def _sym_sqrt(q: jax.Array) -> jax.Array:
    lam, vec = jnp.linalg.eigh(q)
    return (vec * jnp.sqrt(jnp.maximum(lam, 0.0))) @ vec.T


def _misfit_rank(Y: jax.Array, chi: jax.Array, project: bool) -> jax.Array:
    """``‖Π(Y − χχᵀ + r I)‖_F²`` for a batch ``chi`` of shape ``(K, T, r)``."""
    T, r = chi.shape[-2], chi.shape[-1]
    R = Y[None] + r * jnp.eye(T) - jnp.einsum("kal,kbl->kab", chi, chi)
    e = jnp.sum(R * R, axis=(-1, -2))
    if project:
        e = e - jnp.sum(R, axis=(-1, -2)) ** 2 / T**2
    return e


def laplace_mode_rank(Y, Vinv, dbo, project):
    """The likelihood mode ``χ0`` (``T×r``: column ``l`` is ``√λ_l⁺ v_l``, top eigenpairs of ``Π(Y) + rI``) and the
    Cholesky factor of ``Σ = 2 P⁻¹`` over ``vec χ`` (row-major), ``P = H_GN/Δ_BO + I_T ⊗ V⁻¹``.

    ``H_GN`` is the Hessian of ``‖Y' − χχᵀ‖²/4`` at ``χ0`` without its residual term, in the basis ``v_j e_lᵀ``:
    ``λ_l⁺ − λ_j 1[j > k]`` on the diagonal (``k = min(T, r)``) plus ``√(λ_j⁺λ_l⁺)`` coupling ``(j,l) ↔ (l,j)``
    for ``j, l ≤ k`` (``2λ_l⁺`` at ``j = l``; the antisymmetric combinations, the orbit, have curvature 0)."""
    T, r = Y.shape[-1], Vinv.shape[-1]
    k = min(T, r)
    Yp = Y + r * jnp.eye(T)
    if project:
        Yp = Yp - jnp.mean(Yp) * jnp.ones((T, T))
    lam, vec = jnp.linalg.eigh(Yp)
    lam, vec = lam[::-1], vec[:, ::-1]
    top = jnp.zeros(r).at[:k].set(jnp.maximum(lam[:k], 0.0))
    chi0 = jnp.zeros((T, r)).at[:, :k].set(vec[:, :k] * jnp.sqrt(top[:k]))
    j_idx = np.repeat(np.arange(T), r)
    l_idx = np.tile(np.arange(r), T)
    diag = top[l_idx] - jnp.where(j_idx >= k, lam[j_idx], 0.0)
    H = jnp.diag(jnp.maximum(diag, 0.0))
    for j in range(k):
        for l in range(k):
            if j != l:
                H = H.at[j * r + l, l * r + j].set(jnp.sqrt(top[j] * top[l]))
            else:
                H = H.at[j * r + l, j * r + l].add(top[l])
    P_eig = H / dbo + jnp.kron(jnp.eye(T), Vinv)
    B = jnp.kron(vec, jnp.eye(r))
    if r == 1:
        d = jnp.diag(P_eig)
        cov = (vec * (2.0 / d)) @ vec.T
    else:
        cov = B @ (2.0 * jnp.linalg.inv(P_eig)) @ B.T
        cov = 0.5 * (cov + cov.T)
    n = T * r
    return chi0, jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(n))


def posterior_moments_rank(Y, omega, V, zeta, rotations, dbo, project):
    """Posterior mean ``E[χ]`` (``T×r``), ``E[χχᵀ]`` (``T×T``), ``E[χᵀχ]`` (``r×r``) and ESS under
    ``Π_a N(χ_a; ω_a, V)·P(Y | χ)``.

    ``zeta``: ``(K, T, r)`` standard normals, ``K`` divisible by ``2 n_c`` (``n_c = len(rotations)``). The first
    half goes to the prior component ``ω + ζ L_Vᵀ`` (``L_V L_Vᵀ = V``), the next ``K/(2n_c)`` to ``Z`` and the
    copies ``(χ0 + Z) O_j`` (module doc)."""
    K, T, r = zeta.shape
    n_c = rotations.shape[0]
    Vinv = jnp.linalg.inv(V)
    L_V = jnp.linalg.cholesky(V)
    chi0, L = laplace_mode_rank(Y, Vinv, dbo, project)
    h = K // 2
    m = K // (2 * n_c)
    Z = (zeta[h:h + m].reshape(m, T * r) @ L.T).reshape(m, T, r)
    copies = jnp.einsum("mal,jln->jman", chi0[None] + Z, rotations).reshape(n_c * m, T, r)
    chi = jnp.concatenate([omega[None] + jnp.einsum("kal,nl->kan", zeta[:h], L_V), copies])
    n = T * r
    cov = L @ L.T
    prec = jnp.linalg.inv(cov)
    logdet_mode = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
    d = chi - omega[None]
    log_prior = (-0.5 * jnp.einsum("kal,ln,kan->k", d, Vinv, d)
                 - 0.5 * T * (r * jnp.log(2 * jnp.pi) + 2.0 * jnp.sum(jnp.log(jnp.diag(L_V)))))
    # component j at x: N(vec(x O_jᵀ); vec χ0, Σ)
    back = jnp.einsum("kal,jnl->jkan", chi, rotations) - chi0[None, None]
    back = back.reshape(n_c, K, n)
    log_modes = -0.5 * jnp.einsum("jka,ab,jkb->jk", back, prec, back) - 0.5 * (n * jnp.log(2 * jnp.pi) + logdet_mode)
    log_prop = jax.scipy.special.logsumexp(
        jnp.concatenate([(jnp.log(0.5) + log_prior)[None], jnp.log(0.5 / n_c) + log_modes]), axis=0)
    logw = log_prior - _misfit_rank(Y, chi, project) / (4.0 * dbo) - log_prop
    w = jax.nn.softmax(logw)
    mean = jnp.einsum("k,kal->al", w, chi)
    second = jnp.einsum("k,kal,kbl->ab", w, chi, chi)
    gram = jnp.einsum("k,kal,kan->ln", w, chi, chi)
    ess = 1.0 / jnp.sum(w * w)
    return mean, second, gram, ess


def inner_normals(key: jax.Array, n_inner: int, T: int, r: int) -> jax.Array:
    """``(n_inner, T, r)`` standard normals (:func:`theory.bayes.finetune.antithetic_normals` over ``T·r``)."""
    return antithetic_normals(key, n_inner, T * r).reshape(n_inner, T, r)


def _check_mc_rank(n_outer: int, n_inner: int, n_copies: int) -> None:
    _check_mc(n_outer, n_inner)
    if n_inner % (2 * n_copies):
        raise ValueError(f"n_inner = {n_inner!r} is out of range: allowed a multiple of {2 * n_copies} "
                         f"(twice the {n_copies} mode copies)")


@partial(jax.jit, static_argnames=("T", "project", "n_outer", "n_inner"))
def _qhat_samples_rank(q, rotations, dbo, key, *, T, project, n_outer, n_inner):
    """Per-outer-sample ``g_outᵀ g_out`` (``r×r``), its Nishimori partner ``V⁻¹(TV − Σ_a Cov[χ_a | ·])V⁻¹`` (equal
    in expectation) and ESS at overlap ``q`` (``r×r``); the keys and draws of
    :func:`theory.bayes.finetune._qhat_samples` at ``r = 1``."""
    r = q.shape[0]
    V = jnp.eye(r) - q
    Lq = _sym_sqrt(q)
    L_V = jnp.linalg.cholesky(V)
    k_eta, k_xi, k_nu, k_in = jax.random.split(key, 4)
    eta = jax.random.normal(k_eta, (n_outer, T, r))
    xi = jax.random.normal(k_xi, (n_outer, T, r))
    nu = goe_like(k_nu, (n_outer,), T)
    inner_keys = jax.random.split(k_in, n_outer)
    omega = eta @ Lq
    chi_star = omega + jnp.einsum("kal,nl->kan", xi, L_V)
    Y = jnp.einsum("kal,kbl->kab", chi_star, chi_star) - r * jnp.eye(T) + jnp.sqrt(dbo) * nu

    def one(args):
        Yi, om, ki = args
        mean, _, gram, ess = posterior_moments_rank(Yi, om, V, inner_normals(ki, n_inner, T, r), rotations, dbo,
                                                    project)
        g = jnp.linalg.solve(V, (mean - om).T).T
        # Nishimori partner of gᵀg: −Σ_a ∂g_a/∂ω_a = V⁻¹(T V − Σ_a Cov[χ_a])V⁻¹
        cov = gram - mean.T @ mean
        partner = jnp.linalg.solve(V, jnp.linalg.solve(V, T * V - cov).T)
        return g.T @ g, partner, ess

    return jax.lax.map(one, (Y, omega, inner_keys), batch_size=256)


@partial(jax.jit, static_argnames=("T", "r", "project", "n_outer", "n_inner"))
def _jacobian_sq_samples_rank(rotations, dbo, key, *, T, r, project, n_outer, n_inner):
    """Per-sample ``‖E[χχᵀ | Y]/r − I‖_F²`` at ``q = 0`` (``ω = 0, V = I``)."""
    k_xi, k_nu, k_in = jax.random.split(key, 3)
    xi = jax.random.normal(k_xi, (n_outer, T, r))
    nu = goe_like(k_nu, (n_outer,), T)
    Y = jnp.einsum("kal,kbl->kab", xi, xi) - r * jnp.eye(T) + jnp.sqrt(dbo) * nu
    inner_keys = jax.random.split(k_in, n_outer)

    def one(args):
        Yi, ki = args
        _, second, _, _ = posterior_moments_rank(Yi, jnp.zeros((T, r)), jnp.eye(r), inner_normals(ki, n_inner, T, r),
                                              rotations, dbo, project)
        J = second / r - jnp.eye(T)
        return jnp.sum(J * J)

    return jax.lax.map(one, (Y, inner_keys), batch_size=256)


def bayes_error_linear_rank(q, T: int, dbo: float) -> float:
    """Linear σ: ``E_ft_BO = T(T+1)(Δ_BO + 2 Tr(qV) + Tr(V²))``, ``V = I − q`` (module doc)."""
    q = np.atleast_2d(np.asarray(q, dtype=float))
    V = np.eye(q.shape[0]) - q
    return float(T * (T + 1) * (dbo + 2.0 * np.trace(q @ V) + np.trace(V @ V)))


@partial(jax.jit, static_argnames=("T", "linear", "n_outer", "n_inner"))
def _bayes_error_samples_rank(q, shrink_sd, dbo, beta, key, *, T, linear, n_outer, n_inner):
    """Per-outer-sample unbiased ``Σ_ab Var[B'_ab | ω, A_Ŵ]`` (the draws of
    :func:`theory.bayes.finetune._bayes_error_samples` at ``r = 1``)."""
    r = q.shape[0]
    V = jnp.eye(r) - q
    Lq = _sym_sqrt(q)
    L_V = jnp.linalg.cholesky(V)
    k_eta, k_mu, k_in = jax.random.split(key, 3)
    omega = jax.random.normal(k_eta, (n_outer, T, r)) @ Lq
    mu = shrink_sd * goe_like(k_mu, (n_outer,), T)
    inner_keys = jax.random.split(k_in, n_outer)

    def one(args):
        om, m, ki = args
        kz, kn = jax.random.split(ki)
        chi = om[None] + jnp.einsum("kal,nl->kan", inner_normals(kz, n_inner, T, r), L_V)
        H = (m[None] + jnp.einsum("kal,kbl->kab", chi, chi) - r * jnp.eye(T)
             + jnp.sqrt(dbo) * goe_like(kn, (n_inner,), T))
        B = H if linear else jax.nn.softmax(beta * H, axis=-1)
        return jnp.sum(jnp.var(B, axis=0)) * n_inner / (n_inner - 1)

    return jax.lax.map(one, (omega, mu, inner_keys), batch_size=64)


def bayes_error_rank(q, params: Params, pre: PretrainState, *, seed: int = 1, n_outer: int = 4000,
                     n_inner: int = 256, closed_form: bool = True) -> tuple[float, float]:
    """``E_ft_BO`` at overlap ``q`` (``r*×r*``): ``(value, standard error)``; linear σ in closed form (error 0)
    unless ``closed_form=False``, otherwise nested Monte Carlo."""
    q = np.atleast_2d(np.asarray(q, dtype=float))
    dbo = delta_bo(params.delta, pre)
    if params.sigma == "linear" and closed_form:
        return bayes_error_linear_rank(q, params.T, dbo), 0.0
    _check_mc(n_outer, n_inner)
    s = np.asarray(_bayes_error_samples_rank(
        jnp.asarray(q), math.sqrt(pre.M * pre.shrink), dbo, float(params.beta), jax.random.PRNGKey(seed),
        T=params.T, linear=params.sigma == "linear", n_outer=n_outer, n_inner=n_inner))
    return float(s.mean()), float(s.std(ddof=1) / math.sqrt(n_outer))


def weak_recovery_threshold_rank(params: Params, pre: PretrainState, *, seed: int = 2, n_outer: int = 8000,
                                 n_inner: int = 2048, n_pairs: int = N_PAIRS) -> tuple[float, float]:
    """``α'_c = 1/E_Y‖E[χχᵀ | Y]/r* − I‖_F²`` (module doc) and its delta-method MC error."""
    r = params.teacher_rank
    rot = mode_rotations(r, n_pairs)
    _check_mc_rank(n_outer, n_inner, len(rot))
    s = np.asarray(_jacobian_sq_samples_rank(jnp.asarray(rot), delta_bo(params.delta, pre), jax.random.PRNGKey(seed),
                                             T=params.T, r=r, project=params.sigma == "softmax", n_outer=n_outer,
                                             n_inner=n_inner))
    m, se = float(s.mean()), float(s.std(ddof=1) / math.sqrt(n_outer))
    return 1.0 / m, se / m**2


def _project_overlap(q: np.ndarray) -> np.ndarray:
    """``q`` symmetrised with its eigenvalues clipped to ``[0, 1 − 1e-9]`` (the domain of the map)."""
    q = 0.5 * (q + q.T)
    lam, vec = np.linalg.eigh(q)
    return (vec * np.clip(lam, 0.0, 1.0 - 1e-9)) @ vec.T


class QhatMap:
    """``q ↦ α' E[g_outᵀ g_out]`` with fixed keys (a deterministic map), per-sample outputs kept for errors."""

    def __init__(self, params: Params, pre: PretrainState, *, seed: int = 0, n_outer: int = 4000,
                 n_inner: int = 1024, n_pairs: int = N_PAIRS):
        self.dbo = _validate(params, pre, 0.5)
        self.r = params.teacher_rank
        self.rot = jnp.asarray(mode_rotations(self.r, n_pairs))
        _check_mc_rank(n_outer, n_inner, self.rot.shape[0])
        self.T, self.project = params.T, params.sigma == "softmax"
        self.key = jax.random.PRNGKey(seed)
        self.n_outer, self.n_inner = n_outer, n_inner

    def samples(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n_outer, r, r)`` samples of ``g_outᵀ g_out`` and ``(n_outer,)`` ESS at ``q``."""
        gg, _, ess = _qhat_samples_rank(jnp.asarray(_project_overlap(np.atleast_2d(q))), self.rot, self.dbo, self.key,
                                     T=self.T, project=self.project, n_outer=self.n_outer, n_inner=self.n_inner)
        return np.asarray(gg), np.asarray(ess)

    def G(self, q: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """``E[g_outᵀ g_out]`` (symmetrised), the MC error of its trace over ``r``, and the ESS samples."""
        gg, ess = self.samples(q)
        tr = np.trace(gg, axis1=1, axis2=2) / self.r
        return 0.5 * (gg.mean(0) + gg.mean(0).T), float(tr.std(ddof=1)) / math.sqrt(self.n_outer), ess


def _overlap_of(qhat: np.ndarray) -> np.ndarray:
    """``q = q̂(I + q̂)⁻¹`` (symmetric: the two commute)."""
    q = np.linalg.solve(np.eye(qhat.shape[0]) + qhat, qhat)
    return 0.5 * (q + q.T)


def _initial(q_init, r: int) -> np.ndarray:
    q = np.asarray(q_init, dtype=float)
    if q.ndim == 0:
        if not 0.0 < float(q) < 1.0:
            raise ParameterError(f"q_init = {q_init!r} is out of range: allowed 0 < q_init < 1 (or an r*×r* matrix)")
        return float(q) * np.eye(r)
    if q.shape != (r, r) or not np.allclose(q, q.T):
        raise ParameterError(f"q_init has shape {q.shape}: allowed a number or a symmetric {r}×{r} matrix")
    lam = np.linalg.eigvalsh(q)
    if lam.min() < 0 or lam.max() >= 1 or lam.max() <= 0:
        raise ParameterError("q_init is out of range: allowed eigenvalues in [0, 1), not all 0")
    return q


def solve_bayes_finetune_rank(params: Params, pre: PretrainState, *, q_init=0.5, seed: int = 0,
                              n_outer: int = 4000, n_inner: int = 1024, n_outer_error: int = 4000,
                              n_inner_error: int = 256, n_pairs: int = N_PAIRS, threshold: bool = True,
                              damping: float = 0.3, anderson: int = 3, rtol: float = 1e-7, atol: float = 1e-9,
                              max_steps: int = 500) -> BayesFinetuneRankResult:
    """Solve the rank-``r*`` Bayes-optimal state evolution (module doc) and evaluate ``q_BO``, ``E_ft_BO``.

    ``r* = params.teacher_rank``. Damped fixed point of ``q ← q̂(q)(I + q̂(q))⁻¹`` over ``r*×r*`` matrices from
    ``q_init`` (a number: ``q_init·I``; or a matrix), fixed keys from ``seed`` (``n_outer`` channel draws,
    ``n_inner`` importance samples each, ``n_pairs`` pairs of mode copies), Anderson mixing of memory ``anderson``
    (0: the plain damped iteration of :func:`theory.bayes.finetune.solve_bayes_finetune`; with fixed keys the map is
    deterministic, and Anderson(3) reaches the same fixed point in 9–12 steps instead of 20–55). The standard
    error of ``q_BO`` is that of the isotropic map, ``se(ŝ)/(1 + ŝ)²/|1 − slope|`` (slope by finite differences
    along ``sI``).

    Self-normalised importance sampling overestimates ``E[g_outᵀ g_out]`` by the variance of the posterior-mean
    estimate, ``O(1/ESS)``: measured at the figure-7 setting (``r* = 2``, ``T = 2``), ``G`` at ``n_inner = 512`` lies
    2–3 % above ``n_inner = 4096`` (paired draws); 4 or 16 pairs of mode copies agree within MC error.
    """
    if not isinstance(params, Params):
        raise ParameterError(f"params = {params!r} must be a model.params.Params")
    r = params.teacher_rank
    qmap = QhatMap(params, pre, seed=seed, n_outer=n_outer, n_inner=n_inner, n_pairs=n_pairs)
    q0 = _initial(q_init, r)
    T, ap, dbo = params.T, params.effective_alpha_prime, qmap.dbo

    def step(q: np.ndarray) -> np.ndarray:
        return _overlap_of(ap * qmap.G(_project_overlap(q))[0])

    fp = fixed_point(step, q0, damping=damping, rtol=rtol, atol=atol, max_steps=max_steps, anderson=anderson)
    q = _project_overlap(np.asarray(fp.value))
    G, G_se, ess = qmap.G(q)
    s = float(np.trace(q)) / r
    sh, sh_se = ap * float(np.trace(G)) / r, ap * G_se
    h = 1e-4
    if 2 * h < s < 1 - 2 * h:
        up = float(np.trace(step((s + h) * np.eye(r)))) / r
        down = float(np.trace(step((s - h) * np.eye(r)))) / r
        slope = (up - down) / (2 * h)
    else:
        slope = 0.0
    s_se = sh_se / (1.0 + sh) ** 2 / max(abs(1.0 - slope), 1e-6)
    mc = dict(n_outer=n_outer_error, n_inner=n_inner_error, seed=seed + 1)
    E, E_se = bayes_error_rank(q, params, pre, **mc)
    E0, _ = bayes_error_rank(np.zeros((r, r)), params, pre, **mc)
    if params.sigma == "linear":
        dE_ds = -2.0 * T * (T + 1) * r * s  # d/ds of T(T+1)(Δ_BO + r*(1 − s²))
    else:
        hs = min(0.02, s / 2, (1.0 - s) / 2)  # common random numbers: the difference is smooth
        dE_ds = (bayes_error_rank((s + hs) * np.eye(r), params, pre, **mc)[0]
                 - bayes_error_rank((s - hs) * np.eye(r), params, pre, **mc)[0]) / (2 * hs) if hs > 1e-6 else 0.0
    if threshold:
        ac, ac_se = weak_recovery_threshold_rank(params, pre, seed=seed + 2, n_outer=n_outer,
                                                 n_inner=max(n_inner, 2048), n_pairs=n_pairs)
    else:
        ac, ac_se = math.nan, math.nan
    return BayesFinetuneRankResult(
        teacher_rank=r, q_matrix=tuple(tuple(float(v) for v in row) for row in q), tr_q_BO=float(np.trace(q)),
        q_BO=s, q_aniso=float(np.linalg.norm(q - s * np.eye(r))), q_se=s_se, q_hat=sh, q_hat_se=sh_se,
        E_ft_BO=E, E_ft_BO_se=E_se, E_ft_BO_se_q=abs(dE_ds) * s_se, E_prior=E0, alpha_c=ac, alpha_c_se=ac_se,
        delta_BO=dbo, ess_min=float(np.min(ess)), ess_median=float(np.median(ess)), converged=fp.converged,
        n_steps=fp.n_steps, residual=fp.residual, status=fp.status)


# ------------------------------------------------------------------------------- the curve along α'


@dataclass(frozen=True)
class RankCurvePoint:
    """One isotropic fixed point ``q = sI`` of the rank-``r*`` state evolution and the ``α'`` it belongs to.

    Attributes:
        s: ``q_BO = Tr q/r*``; ``alpha_prime = s/((1 − s)G)``, ``G = E Tr(g_outᵀ g_out)/r*`` at ``q = sI``;
        G_se, alpha_prime_se: their MC errors; ``G_aniso``: ``‖E[g_outᵀg_out] − G I‖_F`` (MC residue of isotropy).
        E_ft_BO, E_ft_BO_se: Bayes test error at ``q = sI``; ``ess_min``; ``delta_BO``.
    """

    s: float
    alpha_prime: float
    G: float
    G_se: float
    alpha_prime_se: float
    G_aniso: float
    E_ft_BO: float
    E_ft_BO_se: float
    ess_min: float
    delta_BO: float


def curve_point_rank(params: Params, pre: PretrainState, s: float, *, seed: int = 0, n_outer: int = 4000,
                     n_inner: int = 1024, n_outer_error: int = 4000, n_inner_error: int = 256,
                     n_pairs: int = N_PAIRS) -> RankCurvePoint:
    """The isotropic fixed point ``q = sI`` and its ``α'`` (module doc: ``α'(s) = s/((1 − s)G(s))``), with the
    keys and sizes of :func:`solve_bayes_finetune_rank` (``params.alpha_prime`` is not used)."""
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 < float(s) < 1.0:
        raise ParameterError(f"s = {s!r} is out of range: allowed 0 < s < 1")
    s = float(s)
    qmap = QhatMap(params, pre, seed=seed, n_outer=n_outer, n_inner=n_inner, n_pairs=n_pairs)
    r = qmap.r
    Gm, G_se, ess = qmap.G(s * np.eye(r))
    G = float(np.trace(Gm)) / r
    ap = s / ((1.0 - s) * G) if G > 0 else math.inf
    E, E_se = bayes_error_rank(s * np.eye(r), params, pre, n_outer=n_outer_error, n_inner=n_inner_error,
                               seed=seed + 1)
    return RankCurvePoint(s=s, alpha_prime=ap, G=G, G_se=G_se, alpha_prime_se=ap * G_se / G if G > 0 else math.nan,
                          G_aniso=float(np.linalg.norm(Gm - G * np.eye(r))), E_ft_BO=E, E_ft_BO_se=E_se,
                          ess_min=float(np.min(ess)), delta_BO=qmap.dbo)
