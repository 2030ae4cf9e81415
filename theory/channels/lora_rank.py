"""The ``R^{T×r}`` channel of a rank-``r`` LoRA fine-tuned by ERM (MODEL.md §8): from the overlaps ``(q, m, V)``
(``r×r``, ``r×r*``, ``r×r``) to the conjugates, and the test errors. At ``r = r* = 1`` it is the channel of
:mod:`theory.channels.lora` (same draws, same prox, same equations; the rank-one module is kept for its
numbers to the last bit, and a test holds the two together).

* Per sequence, ``χ = XU/√D ∈ R^{T×r}``, ``χ* = XU*/√D ∈ R^{T×r*}``; the loss of a sequence is

      ℓ(χ; Tr q) = ‖σ(A + χχᵀ − Tr q·I) − σ(H + χ*χ*ᵀ − Tr q0·I)‖_F²,

  the rank-one loss with ``χχᵀ`` a sum over the ``r`` columns and the centring ``‖U‖_F²/D = Tr q``. The frozen
  pair ``(A, H)`` comes from :func:`theory.laws.mixture.channel_samples` (fresh, reused or selected: the law of
  the frozen part does not depend on the LoRA). The centring acts as an isotropic extra ridge:
  ``λ_eff = 2λ' + 2α' E[∂_{Tr q} ℓ(χ̂)]``.
* Channel: the ``T`` rows of ``ω`` are i.i.d. ``N(0, q)``, ``ω_a = q^{1/2}ξ_a``; the teacher's rows given ``ω``:
  ``χ*_a = mᵀq⁻¹ω_a + (q0 − mᵀq⁻¹m)^{1/2}η_a``. Proximal problem over ``z ∈ R^{T×r}``:

      χ̂ = argmin_z ½ Σ_a (z_a − ω_a)ᵀ V⁻¹ (z_a − ω_a) + ℓ(z),     g_a = V⁻¹(χ̂_a − ω_a),

  with ``K = I_T ⊗ V⁻¹ + ∇²_zℓ`` (``Tr × Tr``), ``W = I_T ⊗ V⁻¹``: ``∂g/∂ω = W K⁻¹ W − W``,
  ``∂g/∂χ* = −W K⁻¹ ∂_{χ*}∇_zℓ``. Conjugates (sums of the ``T`` diagonal blocks, ``α' = N'/D``):

      q̂ = α' E Σ_a g_a g_aᵀ,   V̂ = α' E Σ_a [W − W K⁻¹ W]_{aa},   m̂ = α' E Σ_a [∂g/∂χ*]_{aa},

  and the replicon ``λ_R`` = spectral radius of ``Σ ↦ α' E Σ_{ab} P_{ab} Σ P_{ab}ᵀ``, ``P = I − K⁻¹W``
  (a perturbation ``δU`` orthogonal to ``Û, U*`` of row covariance ``Σ``, carried round the loop
  channel → ridge prior; at ``r = 1`` it is ``α' E‖I − K⁻¹/v‖_F²`` of :mod:`theory.stages.rs_stability`).
* Test errors on fresh sequences (rows of ``(χ, χ*)`` i.i.d. ``N(0, [[q, m], [mᵀ, q0]])``):
  ``E_ft = E ℓ(χ; Tr q)``, ``E_frozen`` its value at ``χ = 0, q = 0``. Linear σ in closed form:
  ``E_ft = T(T+1)(δ + ‖q‖_F² + ‖q0‖_F² − 2‖m‖_F²)``, ``E_frozen = T(T+1)(δ + ‖q0‖_F²)`` (Wick: an off-diagonal
  ``χ_a·χ_b − χ*_a·χ*_b`` has variance ``‖q‖² + ‖q0‖² − 2‖m‖²``, a diagonal entry twice that).

Monte Carlo as in the rank-one channel: fixed i.i.d. draws for the conjugates (:func:`rank_channel_draws`,
``ξ ∈ R^{T×r}``, ``η ∈ R^{T×r*}``: at ``r = r* = 1`` exactly the rank-one draws), scrambled Sobol' points for the
test errors (:func:`rank_error_draws`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from model.laws import activation, n_entries, to_matrix, variance_factors
from model.params import Params
from model.stats import mean_sem
from theory.channels.lora import after
from theory.channels.prox import START_SCALES, prox_multistart
from theory.draws import sobol_normals, sobol_size
from theory.laws.fresh import frozen_pair


@dataclass(frozen=True)
class RankOverlaps:
    """Overlaps of a rank-``r`` LoRA (MODEL.md §8): ``q = ÛᵀÛ/D`` (``r×r``), ``m = ÛᵀU*/D`` (``r×r*``) and the
    susceptibility ``V`` (``r×r``), as numpy arrays."""

    q: np.ndarray
    m: np.ndarray
    V: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.q.shape[0])

    @property
    def teacher_rank(self) -> int:
        return int(self.m.shape[1])


@dataclass(frozen=True)
class RankHats:
    """Conjugates ``q̂`` (``r×r``), ``m̂`` (``r×r*``), ``V̂`` (``r×r``) and the isotropic centring ridge ``λ_eff``."""

    q_hat: np.ndarray
    m_hat: np.ndarray
    V_hat: np.ndarray
    lam_eff: float


@dataclass(frozen=True)
class RankSamples:
    """Channel samples: ``ξ`` ``(n, T, r)``, ``η`` ``(n, T, r*)`` standard normal, frozen pairs ``A, H`` ``(n, T, T)``."""

    xi: Any
    eta: Any
    A: Any
    H: Any


def rank_channel_draws(key, n: int, T: int, rank: int, teacher_rank: int):
    """``(ξ, η)`` of shapes ``(n, T, r)``, ``(n, T, r*)`` from the key of :func:`theory.channels.lora.channel_draws`
    (its first two of four subkeys): at ``r = r* = 1`` these are exactly the rank-one ``ξ, η``."""
    k = jax.random.split(key, 4)
    return jax.random.normal(k[0], (n, T, rank)), jax.random.normal(k[1], (n, T, teacher_rank))


def rank_error_draws(key: int, stream: int, n: int, T: int, rank: int, teacher_rank: int):
    """Fixed test draws ``(ξ, η, G1, G2)`` (``(n, T, r)``, ``(n, T, r*)``, two GOE-like ``T×T``): one scrambled Sobol'
    set in ``T(r + r*) + T(T+1)`` dimensions seeded by ``(key, stream)``; at ``r = r* = 1`` the draws of
    :func:`theory.channels.lora.error_draws`."""
    K = n_entries(T)
    a, b = T * rank, T * (rank + teacher_rank)
    z = jnp.asarray(sobol_normals(b + 2 * K, sobol_size(n), (int(key), int(stream))))
    c = jnp.sqrt(jnp.asarray(variance_factors(T)))
    N = z.shape[0]
    return (z[:, :a].reshape(N, T, rank), z[:, a:b].reshape(N, T, teacher_rank),
            to_matrix(c * z[:, b:b + K], T), to_matrix(c * z[:, b + K:], T))


def psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues set to 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def conditional_teacher(q: np.ndarray, m: np.ndarray, q0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q^{1/2}, B, L)`` with rows ``ω_a = q^{1/2}ξ_a`` and ``χ*_a = Bᵀω_a + Lη_a``: ``B = q⁺m``,
    ``L = (q0 − mᵀq⁺m)^{1/2}`` (pseudo-inverse: a direction with ``q = 0`` carries no ``ω``)."""
    qi = np.linalg.pinv((q + q.T) / 2, rcond=1e-12, hermitian=True)
    B = qi @ m
    return psd_sqrt(q), B, psd_sqrt(q0 - m.T @ B)


def _gram(z):
    return z @ z.T


def target(cs, H, trq0, sigma, beta):
    """Label of a fine-tuning sequence, ``σ(H + χ*χ*ᵀ − Tr q0·I)`` (``χ* ∈ R^{T×r*}``)."""
    return activation(H + _gram(cs) - trq0 * jnp.eye(cs.shape[0]), sigma, beta)


def _fit(z, trq, A, label, sigma, beta):
    """``‖σ(A + zzᵀ − Tr q·I) − label‖_F²`` for ``z ∈ R^{T×r}``."""
    return jnp.sum((activation(A + _gram(z) - trq * jnp.eye(z.shape[0]), sigma, beta) - label) ** 2)


def _blocks_trace(M, T: int, r: int, s: int):
    """``Σ_a M_{aa}`` of a ``(T·r) × (T·s)`` matrix in ``r×s`` blocks (row-major flattening of ``T×r``)."""
    return jnp.einsum("akal->kl", M.reshape(T, r, T, s))


@partial(jax.jit, static_argnames=("sigma", "n_iter", "scales"))
def rank_channel_pairs(sq, B, L, Vinv, vscale, trq, trq0, beta, xi, eta, A, H, sigma: str, n_iter: int,
                       scales=START_SCALES):
    """Per-sample integrands of the conjugates (module doc) at explicit frozen pairs: ``Σ_a g_a g_aᵀ``,
    ``Σ_a [∂g/∂χ*]_aa``, ``Σ_a [W − WK⁻¹W]_aa``, ``∂_{Tr q}ℓ``, ``ℓ(χ̂)``, the prox flags and
    ``Σ_ab P_ab ⊗ P_ab``. ``vscale = Tr V / r`` sets the prox's Newton floor and tolerances (``v`` at ``r = 1``)."""
    T, r = xi.shape[1], xi.shape[2]
    s = eta.shape[2]
    omega = xi @ sq.T
    cs = omega @ B + eta @ L.T
    W = jnp.kron(jnp.eye(T), Vinv)

    def one(om, c, Ai, Hi):
        label = target(c, Hi, trq0, sigma, beta)
        fit = lambda zf, tq: _fit(zf.reshape(T, r), tq, Ai, label, sigma, beta)  # noqa: E731
        omf = om.ravel()

        def phi(zf):
            d = (zf - omf).reshape(T, r)
            return 0.5 * jnp.sum((d @ Vinv) * d) + fit(zf, trq)

        zf, conv, multi, amb = prox_multistart(phi, omf, vscale, n_iter=n_iter, scales=scales)
        K = jax.hessian(phi)(zf) + after(conv)  # the inverse waits for the prox's LAPACK call (lora.channel_pairs)
        Kinv = jnp.linalg.inv(K)
        g = (zf - omf).reshape(T, r) @ Vinv
        KW = Kinv @ W
        vhat_i = _blocks_trace(W - W @ KW, T, r, r)
        ell = lambda zz, cc: _fit(zz.reshape(T, r), trq, Ai, target(cc.reshape(T, s), Hi, trq0, sigma, beta),  # noqa: E731
                                  sigma, beta)
        C = jax.jacfwd(jax.grad(ell, argnums=0), argnums=1)(zf, c.ravel())
        mhat_i = -_blocks_trace(W @ Kinv @ C, T, r, s)
        dq = jax.grad(fit, argnums=1)(zf, trq)
        P = (jnp.eye(T * r) - KW).reshape(T, r, T, r)
        # the loop map Σ ↦ Σ_ab P_ab Σ P_abᵀ as an r²×r² matrix: [(k,l),(m,n)] = Σ_ab P_ab[k,m] P_ab[l,n]
        rep = jnp.einsum("akbm,albn->klmn", P, P).reshape(r * r, r * r)
        return g.T @ g, mhat_i, vhat_i, dq, fit(zf, trq), conv, multi, amb, rep

    return jax.vmap(one)(omega, cs, A, H)


def rank_hats(params: Params, ov: RankOverlaps, samples: RankSamples, q0: np.ndarray, n_iter: int = 20,
              scales: tuple[float, ...] = START_SCALES) -> tuple[RankHats, dict[str, Any], dict[str, Any]]:
    """Conjugates at ``ov`` (module doc), averaged over ``samples``, with Monte-Carlo standard errors and prox
    diagnostics (``L_ft``, ``replicon`` and its ``sem``, the prox flags)."""
    a = params.effective_alpha_prime
    sq, B, L = conditional_teacher(ov.q, ov.m, q0)
    Vs = (ov.V + ov.V.T) / 2
    Vinv = np.linalg.inv(Vs)
    r = ov.rank
    out = rank_channel_pairs(sq, B, L, Vinv, float(np.trace(Vs)) / r, float(np.trace(ov.q)), float(np.trace(q0)),
                             params.beta, samples.xi, samples.eta, samples.A, samples.H, sigma=params.sigma,
                             n_iter=n_iter, scales=tuple(scales))
    g2, mh, vh, dq, ell, conv, multi, amb, rep = (np.asarray(o) for o in out)
    n = g2.shape[0]

    def mean_and_sem(x):
        return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(n)

    (qh, qh_s), (mhh, mh_s), (vhh, vh_s), (rp, _) = map(mean_and_sem, (g2, mh, vh, rep))
    (dqm, dq_s), (Lm, L_s) = mean_sem(dq), mean_sem(ell)
    hats = RankHats(q_hat=a * (qh + qh.T) / 2, m_hat=a * mhh, V_hat=a * (vhh + vhh.T) / 2,
                    lam_eff=2 * params.lam_prime + 2 * a * dqm)
    # the replicon: spectral radius of the loop map, its error from the per-sample spread of its trace part
    lam_R = float(np.max(np.abs(np.linalg.eigvals(a * rp))))
    rep_tr = np.einsum("nii->n", rep.reshape(n, r * r, r * r)) / r
    rep_sem = float(a * rep_tr.std(ddof=1) / np.sqrt(n))
    sem = {"q_hat": a * qh_s, "m_hat": a * mh_s, "V_hat": a * vh_s, "lam_eff": 2 * a * dq_s, "L_ft": L_s,
           "replicon": rep_sem}
    diag = {"L_ft": Lm, "replicon": lam_R, "prox_converged_frac": float(conv.mean()),
            "prox_multimodal_frac": float(multi.mean()), "prox_ambiguous_frac": float(amb.mean())}
    return hats, sem, diag


def rank_linear_errors(T: int, q: np.ndarray, m: np.ndarray, q0: np.ndarray, d: float) -> tuple[float, float]:
    """Linear σ: ``(E_ft, E_frozen) = T(T+1)·(δ + ‖q‖_F² + ‖q0‖_F² − 2‖m‖_F², δ + ‖q0‖_F²)`` (module doc)."""
    c = T * (T + 1)
    fq0 = float(np.sum(q0 * q0))
    return c * (d + float(np.sum(q * q)) + fq0 - 2 * float(np.sum(m * m))), c * (d + fq0)


@partial(jax.jit, static_argnames=("sigma",))
def rank_fresh_error_samples(sq, B, L, trq, trq0, law, beta, draws, sigma: str):
    """Per-sample ``E_ft`` and ``E_frozen`` integrands on fresh sequences."""
    xi, eta, G1, G2 = draws
    A, H = frozen_pair(law, G1, G2)
    chi = xi @ sq.T
    cs = chi @ B + eta @ L.T

    def one(c, cstar, Ai, Hi):
        label = target(cstar, Hi, trq0, sigma, beta)
        return _fit(c, trq, Ai, label, sigma, beta), _fit(0.0 * c, 0.0, Ai, label, sigma, beta)

    return jax.vmap(one)(chi, cs, A, H)


def rank_fresh_errors(params: Params, q: np.ndarray, m: np.ndarray, q0: np.ndarray, law, d: float,
                      draws) -> tuple[float, float, float, float]:
    """``(E_ft, E_frozen, sem E_ft, sem E_frozen)`` on fresh sequences: :func:`rank_linear_errors` (linear σ),
    else the means of :func:`rank_fresh_error_samples` over ``draws`` (:func:`rank_error_draws`)."""
    if params.sigma == "linear":
        return (*rank_linear_errors(params.T, q, m, q0, d), 0.0, 0.0)
    sq, B, L = conditional_teacher(q, m, q0)
    eft, efr = rank_fresh_error_samples(sq, B, L, float(np.trace(q)), float(np.trace(q0)),
                                        tuple(float(x) for x in law), params.beta, draws, sigma=params.sigma)
    (e1, s1), (e0, s0) = mean_sem(eft), mean_sem(efr)
    return e1, e0, s1, s0
