"""Bayes-optimal state evolution of pre-training (MODEL.md §4–5 item 6; THEORY_NOTES §1.4, §2).

Scalar order parameter Q_BO = (1/D)Tr(Ŝ̄ S̄0) (= M = Q by Nishimori); V = Q0 − Q_BO, Q0 = 1 + κ0.

Output channel. A label y = σ(h + √Δ Z)X reveals (X known, Gram invertible) σ(h'), h' = h + √Δ Z. The noise
has the same entry structure as the posterior of h: Var(√Δ Z_e) = c_e Δ/2, Var(h_e | ω) = c_e V
(c = 2 on the diagonal, 1 off it). After whitening by C^{-1/2} both are isotropic, so observing k linear
functionals of h' gives E[Σ_e c_e g_e²] = k/(V + Δ/2) and q̂ = 2α k/(V + Δ/2):
- linear σ observes all T(T+1)/2 entries:       q̂ = α T(T+1)/(V + Δ/2);
- softmax (any β > 0) loses only the all-ones direction (row shifts must be equal to keep symmetry):
  k = T(T+1)/2 − 1,                                 q̂ = K α/(V + Δ/2),  K = T² + T − 2.
Prior (matrix denoising, §2.3):  V = mmse_den(1/q̂; κ0).  Combined:  V = mmse_den((V + Δ/2)/(K_σ α)),
solved by a bracketed scalar root-finder in V ∈ [0, 1] (brentq), not by iteration.

Test error on a fresh noisy sequence: given the data, h'_e ~ N(ω_e, c_e(V + Δ/2)) with ω_e ~ N(0, c_e Q_BO), so
  E_pre_BO = E_ω Σ_{a,b} Var[σ(h')_ab | ω]
- linear: T(T+1)(V + Δ/2) (ordered entries: T diagonal of variance 2s, T(T−1) off-diagonal of variance s);
- softmax: Monte Carlo in JAX (fixed key, vmap + jit), unbiased within-ω sample variance, standard error
  from the spread over ω.
The test sequence is fresh, so nothing of its own h' is observed: its posterior is the full Gaussian above.
(For a *training* sequence the posterior of h' would instead be a point mass on the observed K/2-dimensional
part plus the Gaussian N(·, (V + Δ/2)) along the whitened all-ones direction; softmax is blind to that
direction, so the training-sample error is 0 — it is not what E_pre measures.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from model.laws import goe_like
from model.params import Params
from theory.priors.spectrum import mmse_den


@dataclass(frozen=True)
class BayesPretrainResult:
    """Bayes-optimal pre-training: Q_BO, mmse = Q0 − Q_BO (= V), E_pre_BO ± E_pre_BO_sem, q̂, diagnostics.

    ``converged``: the root-finder met its tolerance (or the perfect-recovery branch V = 0 was certified);
    ``n_roots``: sign changes of V − mmse_den(...) seen on a scan of [0, 1] (> 1 would signal a first-order
    transition; the largest-V root, the one reached from an uninformed start, is returned).
    """

    Q_BO: float
    mmse: float
    E_pre_BO: float
    E_pre_BO_sem: float
    q_hat: float
    converged: bool
    n_roots: int
    status: str


def n_observed(T: int, sigma: str) -> int:
    """K_σ with q̂ = K_σ α/(V + Δ/2): T(T+1) (linear), T² + T − 2 (softmax)."""
    if T < 1:
        raise ValueError(f"T = {T} is out of range: allowed T ≥ 1")
    if sigma == "linear":
        return T * (T + 1)
    if sigma == "softmax":
        return T * T + T - 2
    raise ValueError(f"sigma = {sigma!r} is out of range: allowed 'softmax' or 'linear'")


def solve_state(K_alpha: float, kappa0: float, delta: float, *, xtol: float = 1e-13, scan: int = 12) -> tuple[float, bool, int, str]:
    """Solve V = mmse_den((V + Δ/2)/(Kα); κ0) for V ∈ [0, 1]. Returns (V, converged, n_roots, status).

    Δ = 0: V = 0 is always a solution; it is the answer iff V − mmse_den(V/(Kα)) ≥ 0 for V → 0+, i.e.
    Kα ≥ lim mmse_den(ε)/ε = 2κ0 − κ0² (κ0 < 1) or 1 (κ0 ≥ 1) — the threshold α_c.
    """
    if not (K_alpha >= 0 and math.isfinite(K_alpha)):
        raise ValueError(f"K·alpha = {K_alpha} is out of range: allowed 0 ≤ Kα < ∞")
    if K_alpha == 0:
        return 1.0, True, 1, "no information"

    def F(V: float) -> float:
        return V - float(mmse_den((V + delta / 2) / K_alpha, kappa0))

    lo = 0.0
    if delta == 0:
        eps = 1e-10
        if F(eps) >= 0:
            return 0.0, True, 1, "perfect recovery (V = 0)"
        lo = eps
    grid = np.linspace(lo, 1.0, scan) if scan > 1 else np.array([lo, 1.0])
    vals = np.array([F(v) for v in grid])
    changes = np.nonzero(np.sign(vals[:-1]) != np.sign(vals[1:]))[0]
    if vals[0] == 0:
        return float(grid[0]), True, max(1, len(changes)), "root at bracket end"
    if len(changes) == 0:
        return float("nan"), False, 0, "no sign change in [0, 1]"
    i = changes[-1]
    V, info = brentq(F, grid[i], grid[i + 1], xtol=xtol, rtol=4 * np.finfo(float).eps, full_output=True)
    return float(V), bool(info.converged), len(changes), "converged" if info.converged else info.flag


def softmax_test_error(
    T: int, beta: float, Q: float, s: float, *, n_outer: int = 4096, n_inner: int = 64, seed: int = 0
) -> tuple[float, float]:
    """E_ω Σ_{a,b} Var[softmax(β h')_ab | ω],  ω = √Q·G_1,  h' = ω + √s·G_2  (G_i GOE-like, c_e structure).

    Returns (mean, standard error over the n_outer draws of ω). Fixed ``seed`` (common random numbers).
    """
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    omega = jnp.sqrt(Q) * goe_like(k1, (n_outer,), T)
    xi = jnp.sqrt(s) * goe_like(k2, (n_outer, n_inner), T)

    @jax.jit
    def per_omega(om, x):
        p = jax.nn.softmax(beta * (om[None] + x), axis=-1)
        return jnp.sum(jnp.var(p, axis=0, ddof=1))

    v = np.asarray(jax.vmap(per_omega)(omega, xi))
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def solve_bayes_pretrain(params: Params, *, n_outer: int = 4096, n_inner: int = 64, seed: int = 0) -> BayesPretrainResult:
    """Bayes-optimal pre-training for ``params`` (uses T, sigma, beta, kappa0, alpha, delta).

    V solves V = mmse_den((V + Δ/2)/(K_σ α); κ0); Q_BO = 1 + κ0 − V; q̂ = K_σ α/(V + Δ/2);
    E_pre_BO = T(T+1)(V + Δ/2) (linear) or the Monte Carlo of :func:`softmax_test_error` (softmax).
    """
    T, delta, kappa0 = params.T, params.delta, params.kappa0
    K = n_observed(T, params.sigma)
    V, ok, n_roots, status = solve_state(K * params.alpha, kappa0, delta)
    Q0 = 1.0 + kappa0
    s = V + delta / 2
    q_hat = K * params.alpha / s if s > 0 else math.inf
    if params.sigma == "linear":
        E, sem = T * (T + 1) * s, 0.0
    elif s == 0:
        E, sem = 0.0, 0.0
    else:
        E, sem = softmax_test_error(T, params.beta, Q0 - V, s, n_outer=n_outer, n_inner=n_inner, seed=seed)
    return BayesPretrainResult(
        Q_BO=Q0 - V, mmse=V, E_pre_BO=E, E_pre_BO_sem=sem, q_hat=q_hat, converged=ok, n_roots=n_roots, status=status
    )
