"""Batched proximal operator on ``R^T`` for a non-convex per-sequence loss (fine-tuning channel).

For one sample, with ``ω ∈ R^T`` and ``V > 0``,

    prox(ω) = argmin_z  φ(z),   φ(z) = ‖z − ω‖² / (2V) + ℓ(z).

``ℓ`` is the fine-tuning loss of MODEL.md (quartic in ``z`` through ``zzᵀ``), so ``φ`` may have several
local minima. Choice (deliberate, documented): modified Newton from a fixed set of deterministic starts
``z₀ ∈ {ω, ω/4, −ω}`` (``ω`` is the Gaussian-prior point, ``ω/4`` the region near the saddle
``z = 0`` of the even loss, ``−ω`` its mirrored basin), each with a grid line search; the lowest ``φ`` is kept. Diagnostics per sample:
``converged`` (gradient small and Hessian positive at the kept point), ``multimodal`` (some start ended
at a different local minimum) and ``ambiguous`` (two distinct minima whose ``φ`` differ by < 1e-6·(1+|φ|):
the argmin is then not well defined and the replica-symmetric channel is doubtful there).

Newton step: ``−(H + μI)⁻¹∇φ`` with the Levenberg shift ``μ = max(0, 1e-3/V − min_i(H_ii − Σ_{j≠i}|H_ij|))``
(Gershgorin: ``H + μI`` is positive definite, so the step descends even at saddles) applied only
where ``H`` itself is not safely positive definite (pure Newton there, for quadratic convergence), followed by the best
of the step sizes ``1, 1/2, …, 1/32`` and of a gradient step ``−∇φ/(1e-3/V + |min_i(H_ii − Σ_{j≠i}|H_ij|)|)``
(at a strongly concave point the shifted ``H`` is nearly singular and every size of its step overshoots;
branch-free, so it vmaps); at most ``n_iter`` iterations, fewer once the
gradient is negligible.
"""

from __future__ import annotations

from typing import Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

STEP_SIZES = 2.0 ** -jnp.arange(6.0)
EPS = float(jnp.finfo(jnp.float64).eps)
START_SCALES = (1.0, 0.25, -1.0)


def newton_minimise(phi: Callable, z0, n_iter: int, V, gtol: float = 1e-10):
    """Modified-Newton minimisation of ``phi: R^T → R`` from ``z0``: the point of :func:`newton_steps`."""
    return newton_steps(phi, z0, n_iter, V, gtol)[0]


def newton_steps(phi: Callable, z0, n_iter: int, V, gtol: float = 1e-10):
    """Modified-Newton minimisation of ``phi: R^T → R`` from ``z0`` (at most ``n_iter`` steps, see module doc):
    returns ``(z, steps taken)``.

    Stops early once ``‖∇φ‖ ≤ gtol·(1/V + 1)·(1 + ‖z‖)`` (well below the acceptance test of
    :func:`prox_multistart`), or once no step size lowers ``φ`` by more than its rounding
    (``8ε(1 + |φ|)``): near a minimum ``φ`` falls by about ``‖∇φ‖²/(2λ_min)``, which reaches the rounding of
    ``φ`` for ``‖∇φ‖ ≈ 1e-8`` while the gradient test can still fail, and such a sample would otherwise run all
    ``n_iter`` steps. Under ``vmap`` the batch stops when its last sample does, so one stalled sample would
    set the cost of every sample.
    """
    grad = jax.grad(phi)
    hess = jax.hessian(phi)
    floor = 1e-3 / V
    scale = 1.0 / V + 1.0

    def newton_step(z):
        g = grad(z)
        H = hess(z)
        off = jnp.sum(jnp.abs(H), axis=1) - jnp.abs(jnp.diag(H))
        mu = jnp.maximum(0.0, floor - jnp.min(jnp.diag(H) - off))
        pd = jnp.all(jnp.isfinite(jnp.linalg.cholesky(H)))
        # pure Newton where H is positive definite (quadratic convergence), shifted elsewhere
        step = -jnp.linalg.solve(H + jnp.where(pd, 0.0, mu) * jnp.eye(z.shape[0]), g)
        # and a gradient step of length 1/curvature: where H is strongly concave (a maximum of φ, H ≈ −cI) the
        # shifted H is nearly singular and every step size of the shifted step overshoots
        descent = -g / (floor + jnp.abs(jnp.min(jnp.diag(H) - off)))
        cand = jnp.concatenate([z[None, :] + STEP_SIZES[:, None] * step[None, :], (z + descent)[None, :]])
        vals = jax.vmap(phi)(cand)
        k = jnp.argmin(vals)
        phi_z = phi(z)
        better = vals[k] < phi_z
        # a decrease at the rounding level of φ is no progress (it can go on for ever by rounding alone)
        progress = vals[k] < phi_z - 8 * EPS * (1.0 + jnp.abs(phi_z))
        return jnp.where(better, cand[k], z), progress

    def not_done(state):
        z, i, moved = state
        small = jnp.linalg.norm(grad(z)) <= gtol * scale * (1.0 + jnp.linalg.norm(z))
        return (i < n_iter) & ~small & moved

    def body(state):
        z, i, _ = state
        z_new, moved = newton_step(z)
        return z_new, i + 1, moved

    z, steps, _ = jax.lax.while_loop(not_done, body, (z0, 0, jnp.array(True)))
    return z, steps


#: Two minimisers are distinct minima when they lie further apart than ``DISTINCT·(1 + ‖z‖)``: far above the
#: Newton loop's accuracy (its gradient test), far below the distance between the basins of the quartic loss.
DISTINCT = 1e-4


def distinct(a, b):
    """Whether the points ``a`` (``(T,)`` or ``(n, T)``) lie in another minimum than ``b`` (``(T,)``)."""
    return jnp.linalg.norm(a - b, axis=-1) > DISTINCT * (1.0 + jnp.linalg.norm(b))


def start_agreement(zs, vals, k):
    """Flags of a multistart minimisation kept at start ``k``: ``multimodal`` (another start ended at a
    :func:`distinct` point) and ``ambiguous`` (a distinct point with an objective within a relative 1e-6 of
    the kept one: the choice between minima is not resolved)."""
    z = zs[k]
    apart = distinct(zs, z)
    return jnp.any(apart), jnp.any(apart & (vals - vals[k] < 1e-6 * (1.0 + jnp.abs(vals[k]))))


def prox_multistart(phi: Callable, omega, V, n_iter: int = 20, gtol: float = 1e-7, scales=START_SCALES):
    """``argmin_z φ(z)`` over the starts ``s·ω`` (``s`` in ``scales``, default ``START_SCALES``): returns
    ``(z, converged, multimodal, ambiguous)`` for one sample (vmap it over samples)."""
    starts = jnp.stack([s * omega for s in scales])
    # A start exactly at 0 is a stationary point of the even loss; nudge it off along the all-ones axis.
    starts = starts + 1e-3 * jnp.sqrt(V) * (jnp.linalg.norm(starts, axis=1, keepdims=True) < 1e-6)
    zs = jax.vmap(lambda z0: newton_minimise(phi, z0, n_iter, V))(starts)
    vals = jax.vmap(phi)(zs)
    k = jnp.argmin(vals)
    z = zs[k]
    g = jax.grad(phi)(z)
    lam_min = jnp.linalg.eigvalsh(jax.hessian(phi)(z))[0]
    scale = 1.0 / V + 1.0
    converged = (jnp.linalg.norm(g) < gtol * scale * (1.0 + jnp.linalg.norm(z))) & (lam_min > 0)
    multimodal, ambiguous = start_agreement(zs, vals, k)
    return z, converged, multimodal, ambiguous
