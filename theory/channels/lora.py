"""The ``R^T`` channel of LoRA fine-tuning by ERM (MODEL.md §5.5; THEORY_NOTES §5.3): from the overlaps
``(q, m, v)`` to the conjugates, and the test errors.

* Per sequence, ``XXᵀ/D → I_T`` so ``(1/D)‖(σ(A) − B)X‖_F² → ‖σ(A) − B‖_F²``. With
  ``χ = Xw/√D ∈ R^T`` and ``q = ‖w‖²/D`` the loss of sequence ν is ``ℓ(χ_ν; q)`` with

      ℓ(χ; q) = ‖σ(A + χχᵀ − q I) − σ(H + χ*χ*ᵀ − q0 I)‖_F²,    H = A0 + √Δ Z,

  ``A = β_W A_Ŵ``, ``χ* = Xw*/√D``, ``q0 = ‖w*‖²/D`` (→ 1); the frozen pair ``(A, H)`` comes from a law of
  :mod:`theory.laws` (as explicit samples, :class:`ChannelSamples`), independent of ``(χ, χ*)`` at leading order.
* Objective = ``Σ_ν ℓ + (λ_r/2)‖w‖²`` with ``λ_r = 2λ'``: a GLM with ``N' = α'D`` samples, ``T``
  Gaussian rows each, and a loss that also depends on ``w`` through ``q`` (the centring ``−‖w‖²I/D``).
  The stationarity condition in ``w`` is ``Σ_ν ∇_χℓ_ν X_νᵀ/√D + 2λ'w + (2/D)Σ_ν ∂_qℓ_ν w = 0``, so the
  centring acts as an extra ridge, self-consistently:

      λ_eff = 2λ' + 2α' E[∂_q ℓ(χ̂; q)],     ∂_qℓ = −Σ_a ∂ℓ/∂A_aa.

* Channel: ``ω = √q ξ``, ``χ* | ω ~ N((m/q)ω, (q0 − m²/q) I_T)``; proximal problem
  (:mod:`theory.channels.prox`)

      χ̂ = argmin_z ‖z − ω‖²/(2v) + ℓ(z; q),     g = (χ̂ − ω)/v,

  with Jacobians by implicit differentiation, ``K = I/v + ∇²_zℓ``: ``∂χ̂/∂ω = K⁻¹/v``,
  ``∂χ̂/∂χ* = −K⁻¹ ∂_{χ*}∇_zℓ``. Conjugates (sum over the T tokens, ``α' = N'/D``; :func:`finetune_hats`):

      q̂ = α' E‖g‖²,   v̂ = α' E Tr(−∂g/∂ω) = α' E Tr[(I − K⁻¹/v)/v],   m̂ = α' E Tr ∂g/∂χ*,

  and the replicon ``α' E‖I − K⁻¹/v‖_F²`` of :func:`theory.stages.rs_stability.rs_stability`.
* Test errors (fresh sequence, ``(χ, χ*)`` per token ``N(0, [[q, m], [m, q0]])``; :func:`fresh_errors`):
  ``E_ft = E‖σ(A + χχᵀ − qI) − σ(H + χ*χ*ᵀ − q0I)‖_F²``, ``E_frozen`` = the same at ``χ = 0, q = 0``.
  Linear σ in closed form: ``E_ft = T(T+1)(δ + q² + q0² − 2m²)``, ``E_frozen = T(T+1)(δ + q0²)``,
  ``δ = delta_eff``.

Monte Carlo: all expectations use fixed draws (common random numbers), so the map is deterministic:
i.i.d. ``jax.random`` draws for the channel (:func:`channel_draws`), scrambled Sobol' points for the test
errors (:func:`error_draws`); per-sample prox diagnostics and the standard errors of the averages (the i.i.d.
formula, an upper bound for the quasi-Monte Carlo test errors) are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from model.laws import activation, goe_like, n_entries, to_matrix, variance_factors
from model.params import Params
from model.stats import mean_sem
from theory.chunks import chunk_size, in_chunks
from theory.channels.prox import START_SCALES, prox_multistart
from theory.draws import sobol_normals, sobol_size
from theory.laws.fresh import frozen_pair
from theory.states import FinetuneHats, FinetuneOverlaps


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


#: Working set of :func:`channel_pairs` per sample, over ``T³`` (three prox starts; measured at T = 20, n = 4000:
#: 1.9 GB at the peak of a whole solve), and of :func:`fresh_error_samples` per draw over ``T²`` (its ``T × T``
#: matrices: two pairs, two losses, their softmaxes). Used to chunk the batches (:mod:`theory.chunks`).
CHANNEL_BYTES_PER_T3 = 50
ERROR_BYTES_PER_T2 = 400


def channel_draws(key, n: int, T: int):
    """I.i.d. draws ``(ξ, η, G1, G2)`` of the channel (law as in :func:`error_draws`) from a ``jax.random`` key.

    The channel keeps i.i.d. draws: with scrambled Sobol' points instead, the spread of the solved ``q``
    over keys grew six-fold (softmax, α' = 3, λ' = 0.5, n = 4096: 0.011 against 0.0018), while the test
    errors, smooth integrals without a prox, gain from them (spread of ``E_frozen`` 0.0004 against 0.0012).
    """
    k = jax.random.split(key, 4)
    return (jax.random.normal(k[0], (n, T)), jax.random.normal(k[1], (n, T)), goe_like(k[2], n, T),
            goe_like(k[3], n, T))


def error_draws(key: int, stream: int, n: int, T: int):
    """Fixed test draws ``(ξ, η, G1, G2)``: ``ξ, η ∈ R^T`` standard normal, ``G1, G2`` GOE-like ``T×T`` matrices
    (off-diagonal variance 1, diagonal variance 2). Randomised quasi-Monte Carlo: one scrambled Sobol'
    set in ``2T + T(T+1)`` dimensions (:func:`theory.draws.sobol_normals`, ``n`` rounded up
    to a power of two) seeded by ``(key, stream)``. The same arguments give the same (immutable) arrays: the
    last sets up to :data:`ERROR_DRAWS_MEMO_SIZE` numbers are kept, so a sweep does not redraw them every point."""
    K = n_entries(T)
    memo_key = (int(key), int(stream), sobol_size(n), int(T))
    if memo_key in _ERROR_DRAWS:
        return _ERROR_DRAWS[memo_key]
    z = jnp.asarray(sobol_normals(2 * T + 2 * K, sobol_size(n), (int(key), int(stream))))
    c = jnp.sqrt(jnp.asarray(variance_factors(T)))
    draws = (z[:, :T], z[:, T:2 * T], to_matrix(c * z[:, 2 * T:2 * T + K], T), to_matrix(c * z[:, 2 * T + K:], T))
    if sobol_size(n) * (2 * T + 2 * K) <= ERROR_DRAWS_MEMO_SIZE:
        _ERROR_DRAWS.clear()
        _ERROR_DRAWS[memo_key] = draws
    return draws


#: Largest draw set (numbers) :func:`error_draws` keeps for its next call (2^22: 32 MB; the default test draws of
#: ``T ≤ 4``); larger sets are drawn afresh each time (memory before speed).
ERROR_DRAWS_MEMO_SIZE = 1 << 22
_ERROR_DRAWS: dict[tuple[int, int, int, int], Any] = {}


def after(x):
    """``±0.0`` computed from ``x``: adding it to an array changes no value but makes its consumers wait for ``x``
    (a data dependency that XLA's CPU runtime orders by; :func:`channel_pairs` says why)."""
    return jnp.where(jnp.all(jnp.isfinite(jnp.asarray(x, dtype=jnp.float64))), 0.0, -0.0)


def target(cs, H, q0, sigma, beta):
    """Label of a fine-tuning sequence, ``σ(H + χ*χ*ᵀ − q0 I)``."""
    return activation(H + jnp.outer(cs, cs) - q0 * jnp.eye(cs.shape[0]), sigma, beta)


def _fit(z, q, A, label, sigma, beta):
    """``‖σ(A + zzᵀ − qI) − label‖_F²``: the loss at a given label (the prox only moves ``z``)."""
    return jnp.sum((activation(A + jnp.outer(z, z) - q * jnp.eye(z.shape[0]), sigma, beta) - label) ** 2)


def _loss(z, cs, q, A, H, q0, sigma, beta):
    """``ℓ(χ; q) = ‖σ(A + χχᵀ − qI) − σ(H + χ*χ*ᵀ − q0 I)‖_F²`` (module doc)."""
    return _fit(z, q, A, target(cs, H, q0, sigma, beta), sigma, beta)


def channel_inputs(q, m, q0, xi, eta):
    """``ω = √q ξ`` and the teacher's ``χ* = (m/q)ω + √(q0 − m²/q) η`` (the channel's Gaussian pair)."""
    omega = jnp.sqrt(q) * xi
    return omega, (m / q) * omega + jnp.sqrt(jnp.maximum(q0 - m * m / q, 0.0)) * eta


def prox_objective(om, v, q, A, label, sigma, beta):
    """``φ_ω(z) = ‖z − ω‖²/(2v) + ‖σ(A + zzᵀ − qI) − label‖_F²``: the proximal problem of one sample."""
    return lambda z: jnp.sum((z - om) ** 2) / (2 * v) + _fit(z, q, A, label, sigma, beta)


@partial(jax.jit, static_argnames=("sigma", "n_iter", "scales"))
def channel_pairs(q, m, v, q0, beta, xi, eta, A, H, sigma: str, n_iter: int, scales=START_SCALES):
    """Per-sample integrands of the conjugates and of ``L_ft`` (module doc) at explicit frozen pairs ``(A, H)``;
    the prox starts from ``s·ω`` for ``s`` in ``scales``."""
    omega, cs = channel_inputs(q, m, q0, xi, eta)

    def one(om, c, Ai, Hi):
        # the label is fixed during the prox: computed once, not in every loss evaluation
        label = target(c, Hi, q0, sigma, beta)
        fit = lambda z, qq: _fit(z, qq, Ai, label, sigma, beta)  # noqa: E731
        phi = prox_objective(om, v, q, Ai, label, sigma, beta)
        z, conv, multi, amb = prox_multistart(phi, om, v, n_iter=n_iter, scales=scales)
        T = z.shape[0]
        # + (±0: exact) makes the inverse below (LAPACK getrf) wait for the prox's eigvalsh (syevd, in ``conv``):
        # run side by side, two batched LAPACK calls of jaxlib 0.10 each wait for sub-tasks on the thread pool they
        # both occupy, a deadlock on a 2-CPU machine (seen at T = 10, 20; an optimization barrier does not order them)
        K = jnp.eye(T) / v + jax.hessian(fit, argnums=0)(z, q) + after(conv)
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


@partial(jax.jit, static_argnames=("sigma",))
def fresh_error_samples(q, m, q0, law, beta, draws, sigma: str):
    """Per-sample ``E_ft`` and ``E_frozen`` integrands on fresh sequences."""
    xi, eta, G1, G2 = draws
    A, H = frozen_pair(law, G1, G2)
    qs = jnp.maximum(q, 1e-300)
    chi = jnp.sqrt(q) * xi
    cs = jnp.where(q > 0, m / qs, 0.0) * chi + jnp.sqrt(jnp.maximum(q0 - jnp.where(q > 0, m * m / qs, 0.0), 0.0)) * eta

    def one(c, cstar, Ai, Hi):
        return _loss(c, cstar, q, Ai, Hi, q0, sigma, beta), _loss(0.0 * c, cstar, 0.0, Ai, Hi, q0, sigma, beta)

    return jax.vmap(one)(chi, cs, A, H)


def finetune_hats(
    params: Params, ov: FinetuneOverlaps, samples: ChannelSamples, q0: float, n_iter: int = 20,
    scales: tuple[float, ...] = START_SCALES,
) -> tuple[FinetuneHats, dict[str, float], dict[str, float]]:
    """Conjugates at ``ov`` (module doc), averaged over ``samples``, with MC standard errors and prox diagnostics:
    ``q̂ = α'E‖g‖²``, ``m̂ = α'E Tr ∂g/∂χ*``, ``v̂ = α'E Tr(−∂g/∂ω)``, ``λ_eff = 2λ' + 2α'E ∂_qℓ``, and the
    replicon ``α'E‖I − K⁻¹/v‖_F²`` of :func:`theory.stages.rs_stability.rs_stability` (``diag["replicon"]``,
    ``sem["replicon"]``)."""
    a = params.effective_alpha_prime
    T = samples.xi.shape[1]

    def pairs(xi, eta, A, H):
        return channel_pairs(ov.q, ov.m, ov.v, q0, params.beta, xi, eta, A, H, sigma=params.sigma, n_iter=n_iter,
                             scales=tuple(scales))

    # memory bounded at any T (theory.chunks): one call up to T ≈ 10 at n_mc = 4000
    chunk = chunk_size(CHANNEL_BYTES_PER_T3 * T**3 * len(scales) / 3, len(samples))
    g2, mh, vh, dq, ell, conv, multi, amb, p2 = in_chunks(pairs, (samples.xi, samples.eta, samples.A, samples.H),
                                                          chunk)
    (qh, qh_s), (mhh, mh_s), (vhh, vh_s), (dqm, dq_s), (L, L_s), (rep, rep_s) = map(
        mean_sem, (g2, mh, vh, dq, ell, p2))
    hats = FinetuneHats(q_hat=a * qh, m_hat=a * mhh, v_hat=a * vhh, lam_eff=2 * params.lam_prime + 2 * a * dqm)
    sem = {"q_hat": a * qh_s, "m_hat": a * mh_s, "v_hat": a * vh_s, "lam_eff": 2 * a * dq_s, "L_ft": L_s,
           "replicon": a * rep_s}
    diag = {"L_ft": L, "replicon": a * rep, "prox_converged_frac": float(conv.mean()),
            "prox_multimodal_frac": float(multi.mean()), "prox_ambiguous_frac": float(amb.mean())}
    return hats, sem, diag


def linear_errors(T: int, q: float, m: float, q0: float, d: float) -> tuple[float, float]:
    """Linear σ: ``(E_ft, E_frozen) = (T(T+1)(δ + q² + q0² − 2m²), T(T+1)(δ + q0²))``, ``δ = d`` (module doc)."""
    c = T * (T + 1)
    return c * (d + q * q + q0 * q0 - 2 * m * m), c * (d + q0 * q0)


def fresh_errors(params: Params, q: float, m: float, q0: float, law: tuple[float, float, float], d: float,
                 draws) -> tuple[float, float, float, float]:
    """``(E_ft, E_frozen, sem E_ft, sem E_frozen)`` on fresh sequences at ``(q, m)``: the closed form of
    :func:`linear_errors` at ``δ = d`` (linear σ, no error), else the means of :func:`fresh_error_samples` over
    ``draws`` (:func:`error_draws`) for the fresh ``law`` of :func:`theory.laws.fresh.noise_law`."""
    if params.sigma == "linear":
        return (*linear_errors(params.T, q, m, q0, d), 0.0, 0.0)
    law = tuple(float(x) for x in law)
    T = draws[0].shape[1]
    eft, efr = in_chunks(lambda *d: fresh_error_samples(q, m, q0, law, params.beta, d, sigma=params.sigma), draws,
                         chunk_size(ERROR_BYTES_PER_T2 * T**2, len(draws[0])))
    (e1, s1), (e0, s0) = mean_sem(eft), mean_sem(efr)
    return e1, e0, s1, s0
