"""Monte-Carlo channel of ERM pre-training for any ``σ`` (MODEL.md §3, §5 item 2; THEORY_NOTES §3.4).

Per-sequence loss, ``XXᵀ/D → I_T``, over the ``T²`` ORDERED entries:

    ℓ(B, A) = Σ_{a,b} (σ(A)_ab − B_ab)²,     B = σ(A0 + √Δ Z),

``σ(A) = A`` (linear) or the row-wise softmax of ``βA``. The student's pre-activation ``A`` is symmetric,
so its free coordinates are the ``K = T(T+1)/2`` entries ``e = (a ≤ b)`` (row-major upper triangle),
with GOE variance factors ``c_e = 2`` (diagonal) and ``c_e = 1`` (off-diagonal).

Channel law at overlaps ``(Q, M, V)`` (``Q0`` the teacher's), independent over ``e``:

    ω_e = √(c_e Q) ξ_e,    h*_e = (M/Q) ω_e + √(c_e (Q0 − M²/Q)) ζ_e,    Z_e = √(c_e/2) η_e

(``Z_aa ~ N(0,1)``, ``Z_ab ~ N(0,1/2)``, MODEL.md §2), ``A0 = h*`` as a matrix, ``B = σ(A0 + √ΔZ)``.
Proximal map and its derivatives:

    Â = argmin_A φ(A),   φ(A) = Σ_e (A_e − ω_e)²/(2 c_e V) + ℓ(B, A),
    g_e = (Â_e − ω_e)/(c_e V) = −∂ℓ/∂A_e(Â)                       (stationarity),
    ∂g/∂ω = −H_ℓ (I + V C H_ℓ)⁻¹,     C = diag(c),  H_ℓ = ∇²_A ℓ(B, Â)   (implicit differentiation),
    ∂g/∂h* = −(C⁻¹ + V H_ℓ)⁻¹ X,      X = ∂²ℓ/∂A∂h*                      (derivative form of m̂).

Conjugates (``α = N/D²``):

    q̂ = 2α Σ_e c_e E[g_e²],   σ̂ = −2α Σ_e c_e E[∂g_e/∂ω_e],
    m̂ = 2α Σ_e c_e E[∂g_e/∂h*_e]                                          (derivative form, default)
       = 2α Σ_e E[g_e (h*_e − (M/Q) ω_e)] / (Q0 − M²/Q)                  (Stein form, cross-check).

The two forms of ``m̂`` agree when the prox is a smooth function of the draws; the derivative form has
about half the per-sample spread (figure-1 point: relative standard deviation 0.32 against 0.69), and
the fixed point amplifies the error of ``m̂`` into ``Q`` (``δQ/Q ≈ 1.6 δm̂/m̂`` there), so it is the
default. The Stein form also counts the jumps of ``Â`` where the prox switches minimum; the reported
``multimodal`` fraction says whether that can matter, and the Stein value is reported beside it.

A Stein form of ``σ̂`` (``ω | h* ~ N((M/Q0)h*, c(Q − M²/Q0))``) is reported too: it includes the jumps of
``Â`` where the prox switches minimum, which the implicit Jacobian misses, so their difference measures
the effect of non-unique minimisers.

Observables: ``E_pre = E ℓ(B, A_s)`` on a fresh sequence, where ``(A_s, A0)`` has exactly the law of
``(ω, h*)`` above (so the same draws are used), and ``L_pre = E ℓ(B, Â)`` (the training data term per
sequence). Linear σ: ``E_pre = T(T+1)(Q0 − 2M + Q + Δ/2)``. :func:`fresh_test_error` evaluates ``E_pre``
with its own, larger set of draws (no prox needed). :func:`training_preactivations` evaluates ``(Â, A0, Z)``
at given draws: the law of the training sequences (:mod:`theory.laws.reused`, reused sequences).

Non-uniqueness of the prox (softmax makes ``φ`` non-convex when ``V`` is large): modified Newton (the
step :func:`theory.channels.prox.modified_newton_step`, iterations driven from Python) from three deterministic
starts — ``ω`` (the prior point), the zero-loss interpolant closest to ``ω`` (the symmetric ``H`` with
``σ(H) = B``, shifted along ``11ᵀ``, the null direction of the row-softmax), and their linear-response
combination ``(ω + 4V·H)/(1 + 4V)`` — keeping the lowest ``φ``. Per sample: ``converged`` (small gradient, positive
Hessian), ``multimodal`` (another start ended at a different local minimum), ``ambiguous`` (two distinct
minima with equal ``φ`` to 1e-6 relative). The fractions are reported.

Draws are fixed (common random numbers): for a given ``n`` and ``key`` the map ``(Q, M, V) → hats`` is
deterministic, and is compiled once per ``(T, σ, n)``. By default they are randomised quasi-Monte Carlo
points (scrambled Sobol', :func:`theory.draws.sobol_normals`; the scramble is seeded by ``key``, so different keys
are independent replicas whose spread is an honest error bar). At the figure-1 point with n = 4096 the
spread of the solved ``Q`` over keys is 0.2 % against 2.0 % for i.i.d. draws with the Stein ``m̂``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model.laws import activation, n_entries, to_entries, to_matrix, variance_factors
from model.stats import mean_sem
from theory.channels.prox import backtrack_if_stalled, modified_newton_step, start_agreement
from theory.draws import sobol_normals, sobol_size
from theory.states import PretrainHats

N_ITER = 30
V_MIN = 1e-9
GTOL = 1e-7
NEWTON_STOP = 1e-8


def sequence_loss(A, B, sigma: str, beta):
    """``ℓ(B, A) = Σ_{a,b} (σ(A)_ab − B_ab)²`` over the ordered entries (batched over leading axes)."""
    d = activation(A, sigma, beta) - B
    return jnp.sum(d * d, axis=(-1, -2))


def _interpolant(omega, B, c, T: int, sigma: str, beta):
    """A zero-loss point: the symmetric ``H`` with ``σ(H) = B``, moved along the all-ones entry vector
    (the null direction of the row-softmax) to minimise ``Σ_e (H_e − ω_e)²/c_e``. Linear: ``(B + Bᵀ)/2``."""
    if sigma == "linear":
        return to_entries(0.5 * (B + B.T), T)
    L = jnp.log(B) / beta
    k = L[0, :] - L[:, 0]  # row shifts: H_ab = L_ab + k_a is symmetric
    H = L + k[:, None]
    h = to_entries(0.5 * (H + H.T), T)
    t = jnp.sum((omega - h) / c) / jnp.sum(1.0 / c)
    return h + t


def small_inverse(A):
    """Inverse of a small ``K × K`` matrix by Gauss–Jordan elimination without pivoting, unrolled in plain
    ``jnp`` ops, and its smallest pivot (for a symmetric ``A``: ``min pivot > 0`` ⟺ ``A`` positive definite).

    Used instead of ``jnp.linalg``: batched LAPACK custom calls fan out on XLA's intra-op pool and two of
    them running concurrently on the 2-thread pool of this machine deadlocked (both waiting for sub-tasks).
    """
    K = A.shape[-1]
    M = jnp.concatenate([A, jnp.eye(K, dtype=A.dtype)], axis=-1)
    pivots = []
    for k in range(K):
        piv = M[k, k]
        pivots.append(piv)
        row = M[k] / piv
        M = M - M[:, k:k + 1] * row[None, :]
        M = M.at[k].set(row)
    return M[:, K:], jnp.min(jnp.stack(pivots))


def _phi_factory(omega, B, Vp, c, T: int, sigma: str, beta):
    def loss(z):
        return sequence_loss(to_matrix(z, T), B, sigma, beta)

    def phi(z):
        return jnp.sum((z - omega) ** 2 / (2.0 * c * Vp)) + loss(z)

    return loss, phi


@partial(jax.jit, static_argnames=("T", "sigma"))
def _setup(Q, M, V, Q0, delta, beta, xi, zeta, eta, *, T: int, sigma: str):
    """Channel draws at ``(Q, M, V)`` and the three starts of every sample (module doc)."""
    c = jnp.asarray(variance_factors(T))
    r = jnp.where(Q > 1e-300, M / jnp.where(Q > 1e-300, Q, 1.0), 0.0)
    res = jnp.maximum(Q0 - r * M, 0.0)
    omega = jnp.sqrt(c * Q) * xi
    hstar = r * omega + jnp.sqrt(c * res) * zeta
    z_noise = jnp.sqrt(c / 2.0) * eta
    noisy = hstar + jnp.sqrt(delta) * z_noise
    B = activation(to_matrix(noisy, T), sigma, beta)
    Vp = jnp.maximum(V, V_MIN)
    h_int = jax.vmap(lambda o, b: _interpolant(o, b, c, T, sigma, beta))(omega, B)
    starts = jnp.stack([omega, h_int, (omega + 4.0 * Vp * h_int) / (1.0 + 4.0 * Vp)], axis=1)
    return omega, hstar, z_noise, noisy, B, starts


def _positive_pivots(H):
    return small_inverse(H)[1] > 0


def _inverse_direction(A, g):
    return -small_inverse(A)[0] @ g


@partial(jax.jit, static_argnames=("T", "sigma"))
def _newton_step(Zs, omega, B, V, beta, *, T: int, sigma: str):
    """One modified-Newton step on every start of every sample (``Zs``: ``(n, 3, K)``):
    :func:`theory.channels.prox.modified_newton_step` with the linear algebra of :func:`small_inverse` and no
    gradient candidate (pure Newton where ``∇²φ`` is positive definite, else shifted by a Gershgorin bound,
    then the best of the step sizes ``1 … 1/32``, kept only if ``φ`` decreases; where none decreases it, the
    gradient step backtracked, :func:`theory.channels.prox.backtrack_if_stalled`).
    Returns the new points and the largest scaled gradient norm before the step."""
    c = jnp.asarray(variance_factors(T))
    Vp = jnp.maximum(V, V_MIN)
    floor = 1e-3 / Vp
    scale = 1.0 / Vp + 1.0

    def one(z, o, b):
        _, phi = _phi_factory(o, b, Vp, c, T, sigma, beta)
        best, best_val, phi_z, g, descent = modified_newton_step(
            phi, z, floor, solve=_inverse_direction, positive_definite=_positive_pivots, gradient_step=False)
        # where no Newton step size lowers φ (a strongly concave point: saturated softmax at large β)
        best, best_val = backtrack_if_stalled(phi, z, best, best_val, phi_z, descent)
        return jnp.where(best_val < phi_z, best, z), jnp.linalg.norm(g) / (scale * (1.0 + jnp.linalg.norm(z)))

    per_start = jax.vmap(one, in_axes=(0, None, None))
    Zn, gn = jax.vmap(per_start)(Zs, omega, B)
    return Zn, jnp.max(gn)


@partial(jax.jit, static_argnames=("T", "sigma"))
def _finish(Zs, omega, hstar, noisy, B, Q, M, V, Q0, beta, *, T: int, sigma: str):
    """Keep the lowest-``φ`` start of each sample; derivatives and per-sample terms (module doc)."""
    c = jnp.asarray(variance_factors(T))
    Vp = jnp.maximum(V, V_MIN)

    def one(zs, o, h, y, b):
        loss, phi = _phi_factory(o, b, Vp, c, T, sigma, beta)
        vals = jax.vmap(phi)(zs)
        k = jnp.argmin(vals)
        z = zs[k]
        gl = jax.grad(loss)(z)
        Hl = jax.hessian(loss)(z)
        Hphi = jnp.diag(1.0 / (c * Vp)) + Hl
        gphi = (z - o) / (c * Vp) + gl
        Hphi_inv, min_piv = small_inverse(Hphi)
        scale = 1.0 / Vp + 1.0
        converged = (jnp.linalg.norm(gphi) < GTOL * scale * (1.0 + jnp.linalg.norm(z))) & (min_piv > 0)
        multimodal, ambiguous = start_agreement(zs, vals, k)
        g = -gl
        # (I + V C H_ℓ)⁻¹ = H_φ⁻¹ C⁻¹/V  and  (C⁻¹ + V H_ℓ)⁻¹ = H_φ⁻¹/V
        dg_domega = -Hl @ (Hphi_inv / (c[None, :] * Vp))

        def loss_teacher(za, zh):
            Bh = activation(to_matrix(zh, T), sigma, beta)
            return sequence_loss(to_matrix(za, T), Bh, sigma, beta)

        X = jax.jacfwd(jax.grad(loss_teacher, argnums=0), argnums=1)(z, y)
        dg_dh = -(Hphi_inv @ X) / Vp  # = C ∂g/∂h*: carries the factor c_e
        return dict(
            A=z, g=g,
            s_sigma=-jnp.sum(c * jnp.diag(dg_domega)),
            s_m_der=jnp.sum(jnp.diag(dg_dh)),
            L=loss(z), E=loss(o),
            converged=converged, multimodal=multimodal, ambiguous=ambiguous,
        )

    out = jax.vmap(one)(Zs, omega, hstar, noisy, B)
    g = out["g"]
    r = jnp.where(Q > 1e-300, M / jnp.where(Q > 1e-300, Q, 1.0), 0.0)
    out["s_q"] = jnp.sum(c * g * g, axis=1)
    out["s_m"] = jnp.sum(g * (hstar - r * omega), axis=1)
    out["s_sigma_stein"] = -jnp.sum(g * (omega - (M / Q0) * hstar), axis=1)
    return out


def _channel_core(Q, M, V, Q0, delta, beta, xi, zeta, eta, *, T: int, sigma: str, n_iter: int):
    """Per-sample channel terms. The Newton iterations are driven from Python (one jitted batched step
    each, stopping once every start's scaled gradient ``‖∇φ‖/((1/V + 1)(1 + ‖z‖))`` is below ``NEWTON_STOP``
    = 1e-8, 10× below the acceptance test ``GTOL``; the floating-point floor of that quantity is
    ~1e-9, so a tighter stop would only burn the ``n_iter`` cap). Driving the loop from Python (rather
    than an XLA while loop, as :func:`theory.channels.prox.newton_minimise` does) gives that batch-wide early stop."""
    omega, hstar, z_noise, noisy, B, Zs = _setup(Q, M, V, Q0, delta, beta, xi, zeta, eta, T=T, sigma=sigma)
    n_done = 0
    for n_done in range(1, n_iter + 1):
        Zs, gmax = _newton_step(Zs, omega, B, V, beta, T=T, sigma=sigma)
        if float(gmax) < NEWTON_STOP:
            break
    out = _finish(Zs, omega, hstar, noisy, B, Q, M, V, Q0, beta, T=T, sigma=sigma)
    out["omega"], out["hstar"], out["z_noise"] = omega, hstar, z_noise
    out["newton_steps"] = n_done
    return out


DRAW_METHODS = ("sobol", "mc")


@dataclass(frozen=True)
class ChannelDraws:
    """Fixed standard-normal draws ``ξ, ζ, η`` of shape ``(n, K)`` (common random numbers)."""

    xi: jax.Array
    zeta: jax.Array
    eta: jax.Array

    @staticmethod
    def make(T: int, n: int, key: int | jax.Array = 0, method: str = "sobol") -> "ChannelDraws":
        """``method='sobol'`` (default, integer ``key``): randomised quasi-Monte Carlo
        (:func:`theory.draws.sobol_normals` in ``3K`` dimensions, ``n`` rounded up to a power of two), the scramble
        seeded by ``key``; different keys are independent replicas. ``method='mc'``: i.i.d. draws from
        ``jax.random`` (``key`` an int or a ``jax.random`` key)."""
        K = n_entries(T)
        if method == "sobol":
            if not isinstance(key, (int, np.integer)):
                raise ValueError("Sobol' draws need an integer key (the scramble seed)")
            z = sobol_normals(3 * K, sobol_size(n), int(key))
            return ChannelDraws(*(jnp.asarray(z[:, i * K:(i + 1) * K]) for i in range(3)))
        if method != "mc":
            raise ValueError(f"method = {method!r} is unknown: allowed {DRAW_METHODS}")
        base = jax.random.PRNGKey(key) if isinstance(key, (int, np.integer)) else key
        k = jax.random.split(base, 3)
        return ChannelDraws(*(jax.random.normal(ki, (n, K), dtype=jnp.float64) for ki in k))

    def __len__(self) -> int:
        return int(self.xi.shape[0])


@dataclass(frozen=True)
class ChannelResult:
    """Conjugates, their MC standard errors, the observables and the prox diagnostics at ``(Q, M, V)``.

    ``hats`` uses the derivative ``m̂`` (module doc) unless ``m_hat_form='stein'`` was asked;
    ``m_hat_stein``, ``m_hat_derivative`` and ``sigma_hat_stein`` are the separate estimators. ``sem``
    is the i.i.d. standard error of the sample mean (an upper bound with quasi-Monte Carlo draws).
    """

    hats: PretrainHats
    sem: dict
    E_pre: float
    E_pre_sem: float
    L_pre: float
    L_pre_sem: float
    m_hat_stein: float
    m_hat_derivative: float
    sigma_hat_stein: float
    frac_converged: float
    frac_multimodal: float
    frac_ambiguous: float
    n: int


def channel(
    Q: float, M: float, V: float, *, T: int, sigma: str, alpha: float, delta: float, Q0: float,
    beta: float = 1.0, draws: ChannelDraws, n_iter: int = N_ITER, m_hat_form: str = "derivative",
) -> ChannelResult:
    """Channel half-step ``(Q, M, V) → (m̂, q̂, σ̂)`` and ``E_pre, L_pre`` by Monte Carlo (module doc).

    The Stein ``m̂`` divides by ``Q0 − M²/Q``; below 1e-8 the derivative form is used instead.
    """
    if sigma not in ("linear", "softmax"):
        raise ValueError(f"sigma = {sigma!r} is unknown: allowed 'softmax' or 'linear'")
    if m_hat_form not in ("stein", "derivative"):
        raise ValueError(f"m_hat_form = {m_hat_form!r} is unknown: allowed 'stein' or 'derivative'")
    if not (Q >= 0 and V >= 0 and Q0 > 0 and delta >= 0 and alpha > 0 and beta > 0):
        raise ValueError(f"channel needs Q ≥ 0, V ≥ 0, Q0 > 0, Δ ≥ 0, α > 0, β > 0 (got Q={Q}, V={V}, "
                         f"Q0={Q0}, Δ={delta}, α={alpha}, β={beta})")
    out = _channel_core(float(Q), float(M), float(V), float(Q0), float(delta), float(beta),
                        draws.xi, draws.zeta, draws.eta, T=T, sigma=sigma, n_iter=n_iter)
    res = Q0 - (M * M / Q if Q > 1e-300 else 0.0)
    q, q_se = mean_sem(out["s_q"])
    s, s_se = mean_sem(out["s_sigma"])
    md, md_se = mean_sem(out["s_m_der"])
    if res > 1e-8:
        ms, ms_se = mean_sem(np.asarray(out["s_m"]) / res)
    else:
        ms, ms_se = md, md_se
    res0 = Q - M * M / Q0
    ss = mean_sem(np.asarray(out["s_sigma_stein"]) / res0)[0] if res0 > 1e-8 else float("nan")
    m_main, m_se = (ms, ms_se) if m_hat_form == "stein" else (md, md_se)
    E, E_se = mean_sem(out["E"])
    L, L_se = mean_sem(out["L"])
    a2 = 2.0 * alpha
    return ChannelResult(
        hats=PretrainHats(m_hat=a2 * m_main, q_hat=a2 * q, sigma_hat=a2 * s),
        sem={"m_hat": a2 * m_se, "q_hat": a2 * q_se, "sigma_hat": a2 * s_se, "m_hat_stein": a2 * ms_se},
        E_pre=E, E_pre_sem=E_se, L_pre=L, L_pre_sem=L_se,
        m_hat_stein=a2 * ms, m_hat_derivative=a2 * md, sigma_hat_stein=a2 * ss,
        frac_converged=float(np.mean(out["converged"])), frac_multimodal=float(np.mean(out["multimodal"])),
        frac_ambiguous=float(np.mean(out["ambiguous"])), n=len(draws),
    )


def fresh_test_error(
    Q: float, M: float, *, T: int, sigma: str, delta: float, Q0: float, beta: float = 1.0,
    n: int = 32768, key: int = 1,
) -> tuple[float, float]:
    """``E_pre = E ℓ(σ(A0 + √ΔZ), A_s)`` with ``(A_s, A0)`` GOE-like of off-diagonal covariance
    ``[[Q, M], [M, Q0]]`` (diagonal twice it), ``Z`` as in MODEL.md §2; returns ``(mean, sem)``.
    No prox is needed, so this is cheap and can use more draws than the channel (Sobol' draws, ``n``
    rounded up to a power of two; ``sem`` is the i.i.d. formula, an upper bound for quasi-Monte Carlo)."""
    d = ChannelDraws.make(T, n, key)
    c = jnp.asarray(variance_factors(T))
    r = M / Q if Q > 1e-300 else 0.0
    res = max(Q0 - r * M, 0.0)
    A_s = jnp.sqrt(c * Q) * d.xi
    A0 = r * A_s + jnp.sqrt(c * res) * d.zeta
    B = activation(to_matrix(A0 + math.sqrt(delta) * jnp.sqrt(c / 2.0) * d.eta, T), sigma, beta)
    return mean_sem(sequence_loss(to_matrix(A_s, T), B, sigma, beta))


def training_preactivations(Q: float, M: float, V: float, *, T: int, sigma: str, delta: float, Q0: float,
                            beta: float, draws: ChannelDraws, n_iter: int = N_ITER):
    """The frozen student's pre-activation on its own training sequences: ``(Â, A0, Z)``, ``(n, T, T)`` each,
    at the channel draws ``draws`` and overlaps ``(Q, M, V)``: the multistart prox ``Â`` of the module doc,
    the teacher's ``A0 = h*`` and the noise ``Z`` of the same sequence (its label is ``σ(A0 + √ΔZ)X``).
    The law of reused sequences (:func:`theory.laws.reused.training_law`)."""
    out = _channel_core(Q, M, V, Q0, delta, beta, draws.xi, draws.zeta, draws.eta, T=T, sigma=sigma, n_iter=n_iter)
    return to_matrix(out["A"], T), to_matrix(out["hstar"], T), to_matrix(out["z_noise"], T)
