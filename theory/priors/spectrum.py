"""Free-probability toolkit: the D → ∞ spectrum of a Wishart teacher plus GOE noise.

The matrix is ``M = a·(S̄0 + √Δ Z)`` where ``S̄0 = W0W0ᵀ/√(P0 D)`` (W0 ∈ R^{D×P0} Gaussian, κ0 = P0/D,
mean eigenvalue √κ0, (1/D)Tr S̄0² → Q0 = 1 + κ0) and ``Z`` is a GOE with semicircle on [−2, 2].
``a = 1`` is the denoising channel ``Y = S̄0 + √Δ Z`` (THEORY_NOTES §2.3–2.5); the ERM prior uses
``M = m̂ S̄0 + √q̂ Z``, i.e. ``a = m̂`` and ``Δ = q̂/m̂²`` (§4 item 1), built by :meth:`SpikedSpectrum.from_hats`.

Conventions: g(z) = ∫ μ(t)/(z − t) dt; on the real axis we use g(x − i0) = H(x) + iπ μ(x), with H the
principal-value Hilbert transform. For Y (ρ = κ0) g solves the cubic (§2.4)

    Δ g³ − (x + √ρ Δ) g² + (√ρ x + 1 − ρ) g − √ρ = 0,

from the R-transform R(g) = √ρ/(1 − g/√ρ) + Δ g. Inside the support the cubic has one real root and a
complex pair u ± iv: then H = u, μ = v/π. The band edges are the real zeros of the cubic's discriminant
(a quartic in x); the support is where that discriminant is negative.

Integrals ∫ F dμ are computed band by band with x = c − h cos θ and Gauss–Legendre in θ: the density
vanishes like a square root at every edge, so μ(x) dx = μ(c − h cos θ) h sin θ dθ is smooth in θ and the
rule converges exponentially. Non-smooth points of F (kinks, jumps) are passed as ``breaks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Iterable

import numpy as np
from numpy.polynomial import Polynomial
from scipy.optimize import brentq
from scipy.special import roots_legendre

ArrayFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_NODES = 256


@lru_cache(maxsize=32)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = roots_legendre(n)
    t.flags.writeable = False
    w.flags.writeable = False
    return t, w


class _BandSpectrum:
    """Shared quadrature for a compactly supported law with square-root edges at every band end.

    Subclasses provide ``bands`` (sorted tuple of (lo, hi)), ``density(x)`` and ``hilbert_inside(x)``.
    """

    bands: tuple[tuple[float, float], ...]
    dips: tuple[float, ...] = ()  # near-zeros of μ inside a band (two bands about to merge): extra split points

    def density(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def hilbert_inside(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ quadrature
    def nodes(
        self, lo: float = -math.inf, hi: float = math.inf, breaks: Iterable[float] = (), n: int = DEFAULT_NODES
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nodes x_k and weights w_k with Σ_k w_k F(x_k) ≈ ∫_{lo}^{hi} F(x) μ(x) dx.

        Per band [l, u]: x = c − h cos θ (c, h = midpoint, half-width), θ-segments split at lo, hi and
        ``breaks``, an n-point Gauss–Legendre rule on each segment, weight μ(x)·h·sin θ.
        """
        t, w = _gauss_legendre(n)
        xs, ws = [], []
        brk = sorted([float(b) for b in breaks] + list(self.dips))
        for l, u in self.bands:
            a, b = max(l, lo), min(u, hi)
            if not a < b:
                continue
            c, h = 0.5 * (l + u), 0.5 * (u - l)
            pts = [a] + [p for p in brk if a < p < b] + [b]
            th = np.arccos(np.clip((c - np.asarray(pts)) / h, -1.0, 1.0))
            for t0, t1 in zip(th[:-1], th[1:]):
                if not t1 > t0:
                    continue
                theta = 0.5 * (t1 - t0) * t + 0.5 * (t1 + t0)
                x = c - h * np.cos(theta)
                xs.append(x)
                ws.append(0.5 * (t1 - t0) * w * h * np.sin(theta) * self.density(x))
        if not xs:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(xs), np.concatenate(ws)

    def integrate(
        self, F: ArrayFn, lo: float = -math.inf, hi: float = math.inf, breaks: Iterable[float] = (), n: int = DEFAULT_NODES
    ) -> float:
        """∫_{lo}^{hi} F(x) μ(x) dx (F vectorised; its non-smooth points in ``breaks``)."""
        x, w = self.nodes(lo, hi, breaks, n)
        return float(np.dot(w, F(x)))

    def moment(self, k: int, n: int = DEFAULT_NODES) -> float:
        """∫ x^k μ(x) dx."""
        return self.integrate(lambda x: x**k, n=n)

    def int_mu3(self, n: int = DEFAULT_NODES) -> float:
        """∫ μ(x)³ dx = E_{x~μ}[μ(x)²]."""
        return self.integrate(lambda x: self.density(x) ** 2, n=n)

    def cdf(self, x: float, n: int = DEFAULT_NODES) -> float:
        """μ((−∞, x])."""
        return self.integrate(lambda t: np.ones_like(t), hi=float(x), n=n)

    def quantile(self, p: float, n: int = DEFAULT_NODES) -> float:
        """x with μ((−∞, x]) = p, 0 < p < 1 (brentq on the CDF)."""
        if not 0.0 < p < 1.0:
            raise ValueError(f"p = {p} is out of range: allowed 0 < p < 1")
        lo, hi = self.bands[0][0], self.bands[-1][1]
        return float(brentq(lambda x: self.cdf(x, n) - p, lo, hi, xtol=1e-14 * (1 + abs(hi)), rtol=1e-14))

    @property
    def support(self) -> tuple[float, float]:
        return self.bands[0][0], self.bands[-1][1]

    def hilbert(self, x: np.ndarray | float, n: int = DEFAULT_NODES) -> np.ndarray:
        """P.V. H(x) = ∫ μ(t)/(x − t) dt: from the cubic on the support, by quadrature off it."""
        x = np.asarray(x, dtype=float)
        out = np.asarray(self.hilbert_inside(x), dtype=float).copy()
        inside = self.density(x) > 0
        off = ~inside
        if np.any(off):
            t, w = self.nodes(n=n)
            xo = x[off] if x.ndim else x.reshape(1)
            val = (w[None, :] / (xo[:, None] - t[None, :])).sum(axis=1)
            if x.ndim:
                out[off] = val
            else:
                out = val[0]
        return out


def _cubic_physical_root(A: float, B: np.ndarray, C: np.ndarray, Dd: float) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the complex-pair root (Im ≥ 0) of A g³ + B g² + C g + D = 0.

    One real root r from Cardano's formula (well defined where the discriminant is negative), polished
    by Newton; then the quadratic cofactor A g² + B' g + C' (B' = B + A r, C' = C + B' r, or equivalently
    C' = −D/r, B' = (C' − C)/r when r is the large root) gives the pair
    −B'/(2A) ± i √(4AC' − B'²)/(2A). Where the cofactor has real roots, Im = 0 and Re is NaN.
    """
    p = (3 * A * C - B**2) / (3 * A**2)
    q = (2 * B**3 - 9 * A * B * C + 27 * A**2 * Dd) / (27 * A**3)
    disc = q**2 / 4 + p**3 / 27
    s = np.sqrt(np.maximum(disc, 0.0))
    sgn = np.where(q >= 0, 1.0, -1.0)
    u1 = np.cbrt(-q / 2 - sgn * s)
    with np.errstate(divide="ignore", invalid="ignore"):
        u2 = np.where(u1 != 0, -p / (3 * u1), 0.0)
    r = u1 + u2 - B / (3 * A)
    for _ in range(8):
        f = ((A * r + B) * r + C) * r + Dd
        fp = (3 * A * r + 2 * B) * r + C
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(fp != 0, f / fp, 0.0)
        r = r - step
    # deflation: forward (B' = B + A r, C' = C + B' r) cancels when A r ≈ −B (r the large root, small Δ);
    # then the backward form from the low-order end (C' = −D/r, B' = (C' − C)/r) is the stable one
    backward = np.abs(A * r) > 0.5 * np.abs(B)
    with np.errstate(divide="ignore", invalid="ignore"):
        Cp_b = -Dd / r
        Bp_b = (Cp_b - C) / r
    Bp_f = B + A * r
    Cp_f = C + Bp_f * r
    Bp = np.where(backward, Bp_b, Bp_f)
    Cp = np.where(backward, Cp_b, Cp_f)
    d2 = 4 * A * Cp - Bp**2
    im = np.where(d2 > 0, np.sqrt(np.maximum(d2, 0.0)) / (2 * A), 0.0)
    re = np.where(im > 0, -Bp / (2 * A), np.nan)
    return re, im


@dataclass(frozen=True)
class SpikedSpectrum(_BandSpectrum):
    """Law μ of ``scale·(S̄0 + √delta·Z)`` (κ0 = kappa0) in the D → ∞ limit.

    ``SpikedSpectrum(kappa0, delta)`` is μ_Y of the denoising channel; ``scale = m̂`` with
    ``delta = q̂/m̂²`` is μ_M of the ERM prior (μ_M(x) = μ_Y(x/m̂)/m̂, H_M(x) = H_Y(x/m̂)/m̂).
    """

    kappa0: float
    delta: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.kappa0) and self.kappa0 > 0):
            raise ValueError(f"kappa0 = {self.kappa0} is out of range: allowed 0 < κ0 < ∞")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"delta = {self.delta} is out of range: allowed 0 < Δ < ∞ (use mmse_den for Δ = 0)")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale = {self.scale} is out of range: allowed 0 < scale < ∞")

    @staticmethod
    def from_hats(kappa0: float, m_hat: float, q_hat: float) -> "_BandSpectrum":
        """μ_M of M = m̂ S̄0 + √q̂ Z: SpikedSpectrum(κ0, q̂/m̂², m̂), or a semicircle of variance q̂ if m̂ = 0.

        q̂ = 0 (no noise) would leave the Marchenko–Pastur atom of S̄0 unsmeared: rejected.
        """
        if not (math.isfinite(q_hat) and q_hat > 0):
            raise ValueError(f"q_hat = {q_hat} is out of range: allowed 0 < q̂ < ∞")
        if not (math.isfinite(m_hat) and m_hat >= 0):
            raise ValueError(f"m_hat = {m_hat} is out of range: allowed 0 ≤ m̂ < ∞")
        if m_hat == 0 or q_hat / m_hat**2 > 1e12:
            return Semicircle(variance=q_hat)
        return SpikedSpectrum(kappa0=kappa0, delta=q_hat / m_hat**2, scale=m_hat)

    # ------------------------------------------------------------------ cubic in Y units
    def _coeffs(self, u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        r = math.sqrt(self.kappa0)
        return self.delta, -(u + r * self.delta), r * u + 1 - self.kappa0, -r

    @cached_property
    def discriminant(self) -> Polynomial:
        """Discriminant of the cubic in g as a quartic in u = x/scale: 18ABCD − 4B³D + B²C² − 4AC³ − 27A²D²."""
        r, k, d = math.sqrt(self.kappa0), self.kappa0, self.delta
        A, Dd = Polynomial([d]), Polynomial([-r])
        B, C = Polynomial([-r * d, -1.0]), Polynomial([1 - k, r])
        return 18 * A * B * C * Dd - 4 * B**3 * Dd + B**2 * C**2 - 4 * A * C**3 - 27 * A**2 * Dd**2

    @cached_property
    def bands(self) -> tuple[tuple[float, float], ...]:
        """Sorted support intervals: where the discriminant quartic is negative (edges = its real zeros)."""
        P = self.discriminant
        dP = P.deriv()
        roots = P.roots()
        scale_u = 1.0 + math.sqrt(self.kappa0) + 2 * math.sqrt(self.delta)
        real = np.sort(roots[np.abs(roots.imag) < 1e-7 * scale_u].real)
        for _ in range(4):  # Newton polish of simple zeros
            d = dP(real)
            real = np.where(np.abs(d) > 0, real - P(real) / np.where(d == 0, 1, d), real)
        out = []
        for a, b in zip(real[:-1], real[1:]):
            if b > a and P(0.5 * (a + b)) < 0:
                out.append((float(a), float(b)))
        merged: list[tuple[float, float]] = []
        for a, b in out:  # a double zero inside one band would split it spuriously
            if merged and a - merged[-1][1] < 1e-12 * scale_u:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        if not merged:
            raise RuntimeError(f"no band found for κ0={self.kappa0}, Δ={self.delta}")
        return tuple((self.scale * a, self.scale * b) for a, b in merged)

    @cached_property
    def dips(self) -> tuple[float, ...]:
        """Real parts of the complex zeros of the discriminant that lie inside a band: just past the merging
        of two bands μ has a deep narrow minimum there, and splitting the quadrature at it restores fast
        convergence."""
        roots = self.discriminant.roots()
        cand = roots[np.abs(roots.imag) >= 1e-7 * (1.0 + math.sqrt(self.kappa0) + 2 * math.sqrt(self.delta))]
        out = [self.scale * float(r.real) for r in cand if abs(r.imag) < 0.5 * math.sqrt(self.delta)]
        return tuple(x for x in sorted(set(out)) if any(a < x < b for a, b in self.bands))

    def _g_real_axis(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(x, dtype=float) / self.scale
        A, B, C, Dd = self._coeffs(u)
        re, im = _cubic_physical_root(A, B, C, Dd)
        return re / self.scale, im / self.scale

    def density(self, x: np.ndarray | float) -> np.ndarray:
        """μ(x) = Im g(x − i0)/π (zero off the support)."""
        return self._g_real_axis(x)[1] / math.pi

    def hilbert_inside(self, x: np.ndarray | float) -> np.ndarray:
        """H(x) = Re g(x − i0) on the support (NaN off it; :meth:`hilbert` handles both)."""
        return self._g_real_axis(x)[0]

    def stieltjes(self, z: np.ndarray | complex) -> np.ndarray:
        """g(z) = ∫ μ(t)/(z − t) dt. Real z: g(x − i0) = H(x) + iπμ(x). Complex z: the cubic root with
        Im g of sign −Im z, the largest in modulus of Im (companion-matrix eigenvalues, batched)."""
        z = np.asarray(z)
        if not np.iscomplexobj(z) or np.all(z.imag == 0):
            xr = np.asarray(z.real, dtype=float)
            return self.hilbert(xr) + 1j * math.pi * self.density(xr)
        z = z.astype(complex)
        on_axis = z.imag == 0
        if np.any(on_axis):
            out = np.empty(z.shape, dtype=complex)
            out[on_axis] = self.stieltjes(z.real[on_axis])
            out[~on_axis] = self.stieltjes(z[~on_axis])
            return out
        u = z / self.scale
        A, B, C, Dd = self._coeffs(u)
        flat = np.atleast_1d(u).ravel()
        Bf, Cf = np.broadcast_to(B, u.shape).ravel(), np.broadcast_to(C, u.shape).ravel()
        comp = np.zeros((flat.size, 3, 3), dtype=complex)
        comp[:, 0, 0], comp[:, 0, 1], comp[:, 0, 2] = -Bf / A, -Cf / A, -Dd / A
        comp[:, 1, 0] = comp[:, 2, 1] = 1.0
        roots = np.linalg.eigvals(comp)
        sgn = -np.sign(np.atleast_1d(u).ravel().imag)[:, None]
        pick = np.argmax(sgn * roots.imag, axis=1)
        g = roots[np.arange(flat.size), pick].reshape(np.shape(u)) / self.scale
        return g

    def rie(self, x: np.ndarray | float) -> np.ndarray:
        """Bayes-optimal (RIE) eigenvalue map for the denoising channel (scale = 1): ξ(x) = x − 2Δ H(x)."""
        return np.asarray(x) - 2 * self.delta * self.scale**2 * self.hilbert(x)

    @property
    def mean(self) -> float:
        """Exact first moment scale·√κ0."""
        return self.scale * math.sqrt(self.kappa0)

    @property
    def second_moment(self) -> float:
        """Exact second moment scale²·(1 + κ0 + Δ)."""
        return self.scale**2 * (1 + self.kappa0 + self.delta)


@dataclass(frozen=True)
class Semicircle(_BandSpectrum):
    """Semicircle law of ``√variance·Z``: support [−2√v, 2√v], μ = √(4v − x²)/(2πv), H = x/(2v) inside."""

    variance: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.variance) and self.variance > 0):
            raise ValueError(f"variance = {self.variance} is out of range: allowed 0 < v < ∞")

    @property
    def bands(self) -> tuple[tuple[float, float], ...]:
        r = 2 * math.sqrt(self.variance)
        return ((-r, r),)

    def density(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.sqrt(np.maximum(4 * self.variance - x**2, 0.0)) / (2 * math.pi * self.variance)

    def hilbert_inside(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.where(x**2 < 4 * self.variance, x / (2 * self.variance), np.nan)


# ---------------------------------------------------------------------------- denoising MMSE
_DELTA_SMALL = 1e-9
_DELTA_LARGE = 1e4


def _mmse_den_scalar(delta: float, kappa0: float, n: int) -> float:
    if not (delta >= 0 and not math.isnan(delta)):
        raise ValueError(f"delta = {delta} is out of range: allowed 0 ≤ Δ ≤ ∞")
    if not (math.isfinite(kappa0) and kappa0 > 0):
        raise ValueError(f"kappa0 = {kappa0} is out of range: allowed 0 < κ0 < ∞")
    if delta == 0:
        return 0.0
    if math.isinf(delta):
        return 1.0
    if delta < _DELTA_SMALL:
        # degrees of freedom per D² of a rank-κ0 D symmetric matrix: mmse/Δ → 2κ0 − κ0² (κ0 < 1), 1 (κ0 ≥ 1)
        return delta * (2 * kappa0 - kappa0**2 if kappa0 < 1 else 1.0)
    if delta > _DELTA_LARGE:
        # prior of unit variance about √κ0·I: linear estimator, error O(Δ^-2) (below the quadrature's cancellation)
        return delta / (1 + delta)
    s = SpikedSpectrum(kappa0, delta)
    val = delta - (4 * math.pi**2 / 3) * delta**2 * s.int_mu3(n)
    return min(max(val, 0.0), delta)


def mmse_den(delta: float | np.ndarray, kappa0: float, n: int = DEFAULT_NODES) -> float | np.ndarray:
    """Matrix-denoising MMSE of S̄0 from Y = S̄0 + √Δ Z:  mmse_den(Δ) = Δ − (4π²/3) Δ² ∫ μ_Y³  (§2.3).

    Limits: Δ = 0 → 0; Δ → 0 → (2κ0 − κ0²)Δ (κ0 < 1) or Δ (κ0 ≥ 1); Δ → ∞ → Δ/(1 + Δ) → 1.
    Vectorised over Δ.
    """
    d = np.asarray(delta, dtype=float)
    if d.ndim == 0:
        return _mmse_den_scalar(float(d), kappa0, n)
    return np.array([_mmse_den_scalar(float(v), kappa0, n) for v in d.ravel()]).reshape(d.shape)
