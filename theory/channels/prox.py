"""Batched proximal operator on ``R^T`` for a non-convex per-sequence loss (fine-tuning channel), and the
modified-Newton step it shares with the pre-training channel.

For one sample, with ``ω ∈ R^T`` and ``V > 0``,

    prox(ω) = argmin_z  φ(z),   φ(z) = ‖z − ω‖² / (2V) + ℓ(z).

``ℓ`` is the fine-tuning loss of MODEL.md (quartic in ``z`` through ``zzᵀ``), so ``φ`` may have several
local minima. Choice (deliberate, documented): modified Newton from a fixed set of deterministic starts
``z₀ ∈ {ω, ω/4, −ω}`` (``ω`` is the Gaussian-prior point, ``ω/4`` the region near the saddle
``z = 0`` of the even loss, ``−ω`` its mirrored basin), each with a grid line search; the lowest ``φ`` is kept. Diagnostics per sample:
``converged`` (gradient small and Hessian positive at the kept point), ``multimodal`` (some start ended
at a different local minimum) and ``ambiguous`` (two distinct minima whose ``φ`` differ by < 1e-6·(1+|φ|):
the argmin is then not well defined and the replica-symmetric channel is doubtful there).

Newton step (:func:`modified_newton_step`): ``−(H + μI)⁻¹∇φ`` with the Levenberg shift
``μ = max(0, floor − min_i(H_ii − Σ_{j≠i}|H_ij|))``, ``floor = 1e-3/V``
(Gershgorin: ``H + μI`` is positive definite, so the step descends even at saddles) applied only
where ``H`` itself is not safely positive definite (pure Newton there, for quadratic convergence), followed by the best
of the step sizes ``1, 1/2, …, 1/32`` and, in this prox, of a gradient step ``−∇φ/(floor + |min_i(H_ii − Σ_{j≠i}|H_ij|)|)``
(at a strongly concave point the shifted ``H`` is nearly singular and every size of its step overshoots;
branch-free, so it vmaps), backtracked (sizes ``1/2 … 1/4096``) when no candidate lowers ``φ``; at most
``n_iter`` iterations, fewer once the gradient is negligible.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

STEP_SIZES = 2.0 ** -jnp.arange(6.0)
#: Step sizes of :func:`backtrack_if_stalled` along the gradient step: its length 1/curvature is set by the most
#: negative Gershgorin bound, and along a stiff direction (a saturated softmax, curvature ~50) it overshoots by
#: far more than 32 (measured: softmax pre-training channel, β = 10, a decrease only below 1/500 of it).
BACKTRACK_SIZES = 2.0 ** -jnp.arange(1.0, 13.0)
EPS = float(jnp.finfo(jnp.float64).eps)
START_SCALES = (1.0, 0.25, -1.0)


def modified_newton_step(phi: Callable, z, floor, *, solve: Callable, positive_definite: Callable,
                         gradient_step: bool):
    """One modified-Newton step on ``phi`` from ``z`` (module doc): the candidates ``z + s·d``, ``s`` in
    ``STEP_SIZES``, with ``d = solve(H + μI, ∇φ)`` (the shift ``μ`` only where ``positive_definite(H)`` is
    false; ``solve`` returns the descent direction ``−(H + μI)⁻¹∇φ``), and with ``gradient_step`` also
    ``z − ∇φ/(floor + |min_i(H_ii − Σ_{j≠i}|H_ij|)|)``. Returns ``(best candidate, its φ, φ(z), ∇φ(z), d_g)``
    with ``d_g`` that gradient step (a candidate only with ``gradient_step``; :func:`backtrack_if_stalled`
    takes it): the caller keeps the candidate only if it lowers ``φ``."""
    g = jax.grad(phi)(z)
    H = jax.hessian(phi)(z)
    off = jnp.sum(jnp.abs(H), axis=1) - jnp.abs(jnp.diag(H))
    mu = jnp.maximum(0.0, floor - jnp.min(jnp.diag(H) - off))
    pd = positive_definite(H)
    step = solve(H + jnp.where(pd, 0.0, mu) * jnp.eye(z.shape[0]), g)
    cand = z[None, :] + STEP_SIZES[:, None] * step[None, :]
    # the Gershgorin bound is written out again, not shared with μ: sharing it changed the compiled step
    # in the last bits (measured on the fine-tuning channel)
    descent = -g / (floor + jnp.abs(jnp.min(jnp.diag(H) - off)))
    if gradient_step:
        cand = jnp.concatenate([cand, (z + descent)[None, :]])
    vals = jax.vmap(phi)(cand)
    k = jnp.argmin(vals)
    return cand[k], vals[k], phi(z), g, descent


def backtrack_if_stalled(phi: Callable, z, best, best_val, phi_z, descent):
    """``(best, best_val)`` unchanged when ``best`` lowers ``φ``; else the best of ``z + s·d_g``, ``s`` in
    ``BACKTRACK_SIZES`` = ``1/2 … 1/4096`` (``d_g`` the gradient step of :func:`modified_newton_step`). Every candidate raised ``φ``:
    at a concave point far from the minimum (e.g. ``φ = ‖z − ω‖²/(2V) + (‖z‖² − c)²`` near ``z = 0`` with
    ``c < ‖ω‖``, or a saturated softmax) the shifted Newton step is nearly singular and the gradient step of
    length 1/curvature overshoots as well; backtracking along the latter leaves the point instead of stopping
    there. A sample that made progress is not touched (branch-free, so it vmaps)."""
    back = z[None, :] + BACKTRACK_SIZES[:, None] * descent[None, :]
    back_vals = jax.vmap(phi)(back)
    j = jnp.argmin(back_vals)
    stalled = ~(best_val < phi_z)
    return jnp.where(stalled, back[j], best), jnp.where(stalled, back_vals[j], best_val)


def _cholesky_positive(H):
    return jnp.all(jnp.isfinite(jnp.linalg.cholesky(H)))


def _newton_direction(A, g):
    return -jnp.linalg.solve(A, g)


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
    floor = 1e-3 / V
    scale = 1.0 / V + 1.0

    def newton_step(z):
        best, best_val, phi_z, _, descent = modified_newton_step(
            phi, z, floor, solve=_newton_direction, positive_definite=_cholesky_positive, gradient_step=True)
        best, best_val = backtrack_if_stalled(phi, z, best, best_val, phi_z, descent)
        # a decrease at the rounding level of φ is no progress (it can go on for ever by rounding alone)
        progress = best_val < phi_z - 8 * EPS * (1.0 + jnp.abs(phi_z))
        return jnp.where(best_val < phi_z, best, z), progress

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
