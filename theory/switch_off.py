"""The switch-off branch ``ŵ = 0`` of LoRA fine-tuning: the fine-tuning map linearised at ``q → 0``
(MODEL.md §5.5; THEORY_NOTES §5.3).

At ``q = m = 0`` the channel's loss (:mod:`theory.channels.lora`) is, near ``z = 0``,

    ℓ(z; 0) = ‖σ(A + zzᵀ) − L‖_F² = ℓ0 + ½ zᵀH0z + O(z⁴),   zᵀH0z = 4⟨σ(A) − L, Dσ_A[zzᵀ]⟩,

``L = σ(H + χ*χ*ᵀ − q0 I)`` the label, ``χ* ~ N(0, q0 I_T)``; so ``H0 = ∇²_zℓ(0; 0)`` and the centring
derivative is ``∂_qℓ = −Σ_a ∂ℓ/∂A_aa = −½ Tr H0``. Wherever ``I + vH0 ≻ 0`` the prox is linear,
``χ̂ = (I + vH0)⁻¹ω`` and ``g = G_v ω`` with

    G_v = −H0(I + vH0)⁻¹.

Put into the conjugates of :func:`theory.channels.lora.finetune_hats` and the ridge prior
(:func:`theory.priors.ridge.prior_update`) this gives, at ``q = m = 0``:

* the susceptibility, ``1/v = λ_eff + v̂`` with ``λ_eff = 2λ' − α' E Tr H0`` and ``v̂ = −α' E Tr G_v``:

      1/v = 2λ' − α' E Tr H0 − α' E Tr G_v;                                        (V)

* the ``m`` direction (Stein's lemma twice on ``(ω, χ*)`` jointly Gaussian, ``Cov = m I``):
  ``m̂ = α' m (E[χ*ᵀG_vχ*] − q0 E Tr G_v)/q0²``, so ``m ← a·m`` with

      a(v) = α' v (E[χ*ᵀG_vχ*]/q0 − E Tr G_v);                                     (informed growth)

* the ``q`` direction at ``m = 0``: ``q ← b·q`` with ``b(v) = α' v² E‖G_v‖_F²`` — the replicon of the
  zero fixed point (:mod:`theory.stages.rs_stability`), and the lower edge of the Hessian's bulk at ``w = 0``
  where it reaches 1 (``dλ'/dv = (b − 1)/(2v²)`` along (V)).

``q = m = 0`` is a fixed point of the Monte-Carlo map when every sample has ``I + vH0 ≻ 0`` (for linear σ,
``φ(z) = zᵀ(I/(2v) + 2R)z + ‖z‖⁴`` with ``H0 = 4R``, so ``z = 0`` is then the prox's global minimiser), and a
stable one when ``a < 1`` and ``b < 1``. Along (V) ``v`` falls as ``λ'`` grows and ``a``, ``b`` grow with ``v``,
so the zero solution is stable exactly for ``λ' ≥ λ'_c``:

    2λ'_c = 1/v_c + α' E Tr G_{v_c} + α' E Tr H0,   v_c = min(v_a, v_b),   a(v_a) = 1,  b(v_b) = 1.

At ``v_c = v_a`` (the informed mechanism) this is ``2λ'_c = α'(E[χ*ᵀG_vχ*] + E Tr H0)`` with
``1/v = α' E[χ*ᵀG_vχ* − Tr G_v]`` (``q0 = 1``). ``E Tr H0 = 4E⟨σ(A) − L, Dσ_A[I]⟩`` is 0 for linear σ but not for
softmax. For linear σ ``H0`` is unbounded below, so strictly a fraction ``P(I + vH0 ⊁ 0)`` of the samples keeps
``q`` positive above ``λ'_c`` (a tail of order ``exp(−λ'/2)`` at large ``λ'``); the Monte-Carlo map, like this
module, sees the samples it draws.

Everything here is a function of the per-sample eigenvalues ``h`` of ``H0`` and the squared projections
``p = (u_iᵀχ*)²`` on its eigenvectors (:class:`ZeroCurvature`), computed once from the channel samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from model.params import Params
from theory.channels.lora import ChannelSamples, _fit, target


@dataclass(frozen=True)
class ZeroCurvature:
    """Per-sample curvature of the channel loss at ``z = 0``, ``q = m = 0``.

    Attributes:
        h: ``(n, T)`` eigenvalues of ``H0 = ∇²_zℓ(0; 0)``.
        p: ``(n, T)`` squared projections ``(u_iᵀχ*)²`` of the teacher's ``χ* = √q0 η`` on the eigenvectors.
        tr_h0: ``E Tr H0`` (the centring ridge is ``λ_eff = 2λ' − α' E Tr H0``).
        ell0: ``E ℓ(0; 0)``: ``L_ft`` at ``ŵ = 0``.
        q0: ``‖w*‖²/D``.
    """

    h: np.ndarray
    p: np.ndarray
    tr_h0: float
    ell0: float
    q0: float

    @property
    def v_max(self) -> float:
        """The largest ``v`` with ``I + vH0 ≻ 0`` on every sample (``inf`` if no ``H0`` has a negative eigenvalue)."""
        lo = float(np.min(self.h))
        return math.inf if lo >= 0 else -1.0 / lo

    def _r(self, v: float) -> np.ndarray:
        return self.h / (1.0 + v * self.h)

    def tr_g(self, v: float) -> float:
        """``E Tr G_v = −E Σ_i h_i/(1 + v h_i)``."""
        return -float(np.mean(np.sum(self._r(v), axis=1)))

    def chi_g_chi(self, v: float) -> float:
        """``E[χ*ᵀG_vχ*] = −E Σ_i p_i h_i/(1 + v h_i)``."""
        return -float(np.mean(np.sum(self.p * self._r(v), axis=1)))

    def g2(self, v: float) -> float:
        """``E‖G_v‖_F² = E Σ_i h_i²/(1 + v h_i)²``."""
        return float(np.mean(np.sum(self._r(v) ** 2, axis=1)))

    def growth_m(self, alpha_prime: float, v: float) -> float:
        """``a(v) = α' v (E[χ*ᵀG_vχ*]/q0 − E Tr G_v)`` (module doc)."""
        return alpha_prime * v * (self.chi_g_chi(v) / self.q0 - self.tr_g(v))

    def growth_q(self, alpha_prime: float, v: float) -> float:
        """``b(v) = α' v² E‖G_v‖_F²``: the replicon of the zero fixed point."""
        return alpha_prime * v * v * self.g2(v)

    def lam_prime_of_v(self, alpha_prime: float, v: float) -> float:
        """``λ'`` whose zero-solution susceptibility is ``v``: ``2λ' = 1/v + α' E Tr G_v + α' E Tr H0`` (V)."""
        return 0.5 * (1.0 / v + alpha_prime * self.tr_g(v) + alpha_prime * self.tr_h0)


@partial(jax.jit, static_argnames=("sigma",))
def _zero_curvature_samples(q0, beta, eta, A, H, sigma: str):
    chi_star = jnp.sqrt(q0) * eta

    def one(cs, Ai, Hi):
        label = target(cs, Hi, q0, sigma, beta)
        z0 = jnp.zeros_like(cs)
        H0 = jax.hessian(_fit, argnums=0)(z0, 0.0, Ai, label, sigma, beta)
        H0 = 0.5 * (H0 + H0.T)
        h, U = jnp.linalg.eigh(H0)
        return h, (U.T @ cs) ** 2, jnp.trace(H0), _fit(z0, 0.0, Ai, label, sigma, beta)

    return jax.vmap(one)(chi_star, A, H)


def zero_curvature(params: Params, samples: ChannelSamples, q0: float = 1.0) -> ZeroCurvature:
    """:class:`ZeroCurvature` on the channel's own samples (their ``η`` and frozen pairs ``(A, H)``)."""
    h, p, tr, ell = (np.asarray(x) for x in _zero_curvature_samples(
        float(q0), float(params.beta), samples.eta, samples.A, samples.H, sigma=params.sigma))
    return ZeroCurvature(h=h, p=p, tr_h0=float(tr.mean()), ell0=float(ell.mean()), q0=float(q0))


@dataclass(frozen=True)
class SwitchOff:
    """The switch-off threshold at one ``α'`` (module doc).

    Attributes:
        lam_prime_c: ``λ'_c``: ``ŵ = 0`` is the stable fixed point for ``λ' ≥ λ'_c``.
        v_c: the zero solution's susceptibility at ``λ'_c``.
        mechanism: ``"informed"`` (``a = 1`` first: ``ŵ`` switches on along ``w*``) or ``"bulk"``
            (``b = 1`` first: an uninformed direction).
        v_a, v_b: where ``a = 1`` and ``b = 1`` (``inf`` when not reached below ``v_max``).
        tr_h0: ``E Tr H0``; ``chi_g_chi``: ``E[χ*ᵀG_vχ*]`` at ``v_c``.
    """

    lam_prime_c: float
    v_c: float
    mechanism: str
    v_a: float
    v_b: float
    tr_h0: float
    chi_g_chi: float
    alpha_prime: float


def _first_crossing(f, v_hi: float) -> float:
    """The smallest ``v ∈ (0, v_hi)`` with ``f(v) = 1`` for an ``f`` that starts at 0 (``inf`` if none):
    a log-spaced scan, then Brent's method on the first bracket."""
    vs = np.geomspace(v_hi * 1e-8 if math.isfinite(v_hi) else 1e-8, v_hi * (1 - 1e-9) if math.isfinite(v_hi) else 1e6,
                      400)
    prev_v, prev = None, None
    for v in vs:
        val = f(v) - 1.0
        if not math.isfinite(val):
            break
        if prev is not None and prev < 0 <= val:
            return brentq(lambda x: f(x) - 1.0, prev_v, v, xtol=1e-14, rtol=1e-12)
        prev_v, prev = v, val
    return math.inf


def switch_off_threshold(curv: ZeroCurvature, alpha_prime: float) -> SwitchOff:
    """``λ'_c(α')`` from the curvature (module doc): ``v_c = min(v_a, v_b)`` and (V) at ``v_c``."""
    ap = float(alpha_prime)
    v_a = _first_crossing(lambda v: curv.growth_m(ap, v), curv.v_max)
    v_b = _first_crossing(lambda v: curv.growth_q(ap, v), curv.v_max)
    v_c = min(v_a, v_b)
    if not math.isfinite(v_c):
        raise ValueError("no switch-off threshold: neither growth factor reaches 1 below v_max")
    return SwitchOff(lam_prime_c=curv.lam_prime_of_v(ap, v_c), v_c=v_c,
                     mechanism="informed" if v_a <= v_b else "bulk", v_a=v_a, v_b=v_b, tr_h0=curv.tr_h0,
                     chi_g_chi=curv.chi_g_chi(v_c), alpha_prime=ap)


@dataclass(frozen=True)
class ZeroSolution:
    """The zero solution at one ``λ'``: its susceptibility ``v`` from (V), the growth factors, and whether it is
    a stable fixed point of the Monte-Carlo map (``v < v_c``, equivalently ``λ' > λ'_c``)."""

    stable: bool
    v: float
    growth_m: float
    growth_q: float
    threshold: SwitchOff


def zero_susceptibility(curv: ZeroCurvature, alpha_prime: float, lam_prime: float, v_hi: float) -> float:
    """The root ``v ∈ (0, v_hi)`` of (V) at ``λ'`` (``λ'(v)`` falls from ``+inf`` on ``(0, v_hi)`` when
    ``v_hi ≤ v_b``); NaN when ``λ' ≤ λ'(v_hi)``."""
    if not lam_prime > curv.lam_prime_of_v(alpha_prime, v_hi):
        return math.nan
    return brentq(lambda x: curv.lam_prime_of_v(alpha_prime, x) - lam_prime, v_hi * 1e-12, v_hi, xtol=1e-15,
                  rtol=1e-13)


def zero_solution(curv: ZeroCurvature, params: Params) -> ZeroSolution:
    """Whether ``q = m = 0`` is the stable fixed point at ``params`` (``λ' > λ'_c(α')``), with its ``v`` (NaN
    where (V) has no root below ``v_b``, the bulk edge)."""
    ap, lp = params.effective_alpha_prime, float(params.lam_prime)
    thr = switch_off_threshold(curv, ap)
    stable = lp > thr.lam_prime_c
    v = zero_susceptibility(curv, ap, lp, thr.v_c if stable else min(thr.v_b, curv.v_max * (1 - 1e-9)))
    if not math.isfinite(v):
        return ZeroSolution(stable=False, v=math.nan, growth_m=math.nan, growth_q=math.nan, threshold=thr)
    return ZeroSolution(stable=stable, v=v, growth_m=curv.growth_m(ap, v), growth_q=curv.growth_q(ap, v),
                        threshold=thr)
