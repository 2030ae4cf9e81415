"""Prior half-step of the ERM pre-training fixed point, in the D → ∞ limit (free probability).

``(m̂, q̂, σ̂) → (Q, M, V, (1/D) Tr Ŝ)``: :func:`prior_step` (``prior_step(hats, kappa0=…, kappa=…, lam=…)``,
a :class:`PriorResult` whose ``.overlaps`` is the next :class:`theory.states.PretrainOverlaps`), and its
finite-d cross-check :func:`prior_step_sampled`.

Equations (THEORY_NOTES §3.2, §4; MODEL.md symbols, V = the susceptibility σ of §3.2):
- M_mat = m̂ S̄0 + √q̂ Z (Wishart teacher of ratio κ0, GOE Z): its spectral law μ_M is
  μ_Y(x/m̂)/m̂ with Y = S̄0 + √Δ_eff Z, Δ_eff = q̂/m̂² (:mod:`theory.priors.spectrum`).
- Denoiser on the eigenvalues x of M_mat: f(x) = max(x − 2λ, 0)/σ̂ · 1[x ≥ x_κ], x_κ the (1−κ)-quantile
  of μ_M when κ < 1 (top-κD truncation), no truncation when κ ≥ 1.
- Q = ∫ f² dμ_M,   (1/D) Tr Ŝ = ∫ f dμ_M,
  V = ∫∫ (f(x) − f(y))/(x − y) dμ_M dμ_M = 2 ∫ f H_M dμ_M   (H_M = P.V. Hilbert transform of μ_M),
  M = [∫ x f dμ_M − q̂ V] / m̂   (Stein identity, §4 item 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory.priors.spectrum import DEFAULT_NODES, Semicircle, SpikedSpectrum
from theory.states import PretrainHats, PretrainOverlaps


@dataclass(frozen=True)
class PriorResult:
    """Output of :func:`prior_step`: Q, M, V, trace = (1/D) Tr Ŝ, threshold x_κ (None if not truncating)."""

    Q: float
    M: float
    V: float
    trace: float
    x_kappa: float | None
    n_nodes: int

    @property
    def overlaps(self) -> PretrainOverlaps:
        return PretrainOverlaps(Q=self.Q, M=self.M, V=self.V)


def _check(hats: PretrainHats, kappa0: float, kappa: float, lam: float) -> None:
    if not (math.isfinite(hats.m_hat) and hats.m_hat >= 0):
        raise ValueError(f"m_hat = {hats.m_hat} is out of range: allowed 0 ≤ m̂ < ∞")
    if not (math.isfinite(hats.q_hat) and hats.q_hat > 0):
        raise ValueError(f"q_hat = {hats.q_hat} is out of range: allowed 0 < q̂ < ∞")
    if not (math.isfinite(hats.sigma_hat) and hats.sigma_hat > 0):
        raise ValueError(f"sigma_hat = {hats.sigma_hat} is out of range: allowed 0 < σ̂ < ∞")
    if not (math.isfinite(kappa0) and kappa0 > 0):
        raise ValueError(f"kappa0 = {kappa0} is out of range: allowed 0 < κ0 < ∞")
    if not (kappa > 0):
        raise ValueError(f"kappa = {kappa} is out of range: allowed κ > 0")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam = {lam} is out of range: allowed 0 ≤ λ < ∞")


def prior_step(
    hats: PretrainHats, *, kappa0: float, kappa: float, lam: float, n_nodes: int = DEFAULT_NODES
) -> PriorResult:
    """Prior half-step (m̂, q̂, σ̂) → (Q, M, V, (1/D)Tr Ŝ) in the D → ∞ limit.

    With μ_M the law of m̂ S̄0 + √q̂ Z, cut = max(2λ, x_κ) (x_κ = (1−κ)-quantile of μ_M if κ < 1, else
    cut = 2λ) and f(x) = (x − 2λ)/σ̂ for x ≥ cut, 0 otherwise:

        Q = ∫ f² dμ_M,   trace = ∫ f dμ_M,   V = 2 ∫ f H_M dμ_M,   M = (∫ x f dμ_M − q̂ V)/m̂.

    For m̂ = 0 (or q̂/m̂² > 1e12, where μ_M is taken as the semicircle of variance q̂), Ŝ is independent
    of S̄0 and M = √κ0 · trace (rotation invariance); the Stein quotient would be 0/0 there.
    ``n_nodes``: Gauss–Legendre nodes per band segment (:mod:`theory.priors.spectrum`).
    """
    _check(hats, kappa0, kappa, lam)
    spec = SpikedSpectrum.from_hats(kappa0, hats.m_hat, hats.q_hat)
    thr = 2.0 * lam
    x_kappa = spec.quantile(1.0 - kappa, n_nodes) if kappa < 1 else None
    cut = thr if x_kappa is None else max(thr, x_kappa)
    x, w = spec.nodes(lo=cut, n=n_nodes)
    f = (x - thr) / hats.sigma_hat
    Q = float(np.dot(w, f * f))
    trace = float(np.dot(w, f))
    V = 2.0 * float(np.dot(w, f * spec.hilbert_inside(x)))
    if not isinstance(spec, Semicircle):
        M = (float(np.dot(w, x * f)) - hats.q_hat * V) / hats.m_hat
    else:
        M = math.sqrt(kappa0) * trace
    return PriorResult(Q=Q, M=M, V=V, trace=trace, x_kappa=x_kappa, n_nodes=n_nodes)


def prior_step_sampled(
    hats: PretrainHats, *, kappa0: float, kappa: float, lam: float, d: int, seed: int = 0
) -> tuple[PriorResult, float]:
    """Finite-d cross-check of :func:`prior_step` (THEORY_NOTES §3.2), by diagonalising one sample.

    M_mat = m̂ S̄0 + √q̂ Z − 2λ I with eigenpairs (ν_i, o_i), f_i = max(ν_i, 0)/σ̂ on the top ⌈κd⌉ modes,
    Ŝ = Σ f_i o_i o_iᵀ; Q = (1/d)Σ f_i², M = (1/d)Tr(Ŝ S̄0),
    V = (1/d²)[2·#{f_i > 0}/σ̂ + Σ_{i≠j} (f_i − f_j)/(ν_i − ν_j)].
    Not used by the theory. Returns ``(result, Q0_sample)`` with the sample's own Q0 = (1/d)Tr S̄0²
    (finite-d comparisons must use it, THEORY_NOTES §4 pitfall (a)).
    """
    _check(hats, kappa0, kappa, lam)
    rng = np.random.default_rng(seed)
    p0 = max(1, int(round(kappa0 * d)))
    W0 = rng.standard_normal((d, p0))
    S0 = W0 @ W0.T / math.sqrt(p0 * d)
    G = rng.standard_normal((d, d))
    Z = (G + G.T) / math.sqrt(2 * d)
    nu, O = np.linalg.eigh(hats.m_hat * S0 + math.sqrt(hats.q_hat) * Z - 2 * lam * np.eye(d))
    f = np.maximum(nu, 0.0) / hats.sigma_hat
    if kappa < 1:
        keep = int(math.ceil(kappa * d))
        f[: d - keep] = 0.0
    S = (O * f) @ O.T
    dnu = nu[:, None] - nu[None, :]
    np.fill_diagonal(dnu, 1.0)
    dd = (f[:, None] - f[None, :]) / dnu
    np.fill_diagonal(dd, 0.0)
    V = (2 * np.count_nonzero(f) / hats.sigma_hat + dd.sum()) / d**2
    res = PriorResult(
        Q=float(np.mean(f**2)),
        M=float(np.sum(S * S0) / d),
        V=float(V),
        trace=float(np.mean(f)),
        x_kappa=None,
        n_nodes=0,
    )
    return res, float(np.sum(S0 * S0) / d)
