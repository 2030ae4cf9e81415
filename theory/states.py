"""The states the theory passes around: the pre-training state fed to fine-tuning, and the iterates and
conjugates of both fixed points (MODEL.md §4 symbols).

- :class:`PretrainState`: ``(Q0, Q, M)`` of the frozen ``Ŵ``, with the susceptibility ``V`` when known
  (reused sequences need it);
- pre-training: overlaps :class:`PretrainOverlaps` ``(Q, M, V)`` and conjugates :class:`PretrainHats`
  ``(m̂, q̂, σ̂)``;
- fine-tuning: overlaps :class:`FinetuneOverlaps` ``(q, m, v)`` and conjugates :class:`FinetuneHats`
  ``(q̂, m̂, v̂, λ_eff)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from model.params import ParameterError


def _finite(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


@dataclass(frozen=True)
class PretrainState:
    """Order parameters of the frozen ``Ŵ`` (MODEL.md §4): ``Q0 = Tr S̃0²/D``, ``Q = Tr S̃²/D``,
    ``M = Tr S̃S̃0/D``, and the pre-training susceptibility ``V`` (``Â_train = prox_V(ω)``) when known.

    Requires ``Q0 > 0``, ``Q ≥ 0``, ``M² ≤ Q Q0`` (Cauchy–Schwarz) and, when given, a finite ``V ≥ 0``.
    """

    Q0: float
    Q: float
    M: float
    V: float | None = None

    def __post_init__(self) -> None:
        for name in ("Q0", "Q", "M"):
            x = getattr(self, name)
            if not _finite(x):
                raise ParameterError(f"{name} = {x!r} is not a finite number")
        if self.Q0 <= 0:
            raise ParameterError(f"Q0 = {self.Q0} is out of range: allowed Q0 > 0")
        if self.Q < 0:
            raise ParameterError(f"Q = {self.Q} is out of range: allowed Q ≥ 0")
        if self.M * self.M > self.Q * self.Q0 * (1 + 1e-9) + 1e-12:
            raise ParameterError(f"M = {self.M} is out of range: allowed M² ≤ Q·Q0 = {self.Q * self.Q0}")
        if self.V is not None and not (isinstance(self.V, (int, float)) and math.isfinite(self.V) and self.V >= 0):
            raise ParameterError(f"V = {self.V!r} is out of range: allowed a finite V ≥ 0 (or None)")

    @classmethod
    def of(cls, pre: Any) -> "PretrainState":
        """The state of any object with attributes ``Q0, Q, M`` (e.g. a
        :class:`theory.stages.pretrain.PretrainResult`), with its ``V`` when it carries a finite ``V ≥ 0``."""
        if isinstance(pre, cls):
            return pre
        try:
            Q0, Q, M = float(pre.Q0), float(pre.Q), float(pre.M)
        except AttributeError:
            raise ParameterError(f"pre = {pre!r}: expected pre-training order parameters with Q0, Q, M") from None
        V = getattr(pre, "V", None)
        V = None if V is None or not (math.isfinite(float(V)) and float(V) >= 0) else float(V)
        return cls(Q0=Q0, Q=Q, M=M, V=V)

    @property
    def has_susceptibility(self) -> bool:
        """Whether ``V`` is known (reused sequences need it)."""
        return self.V is not None

    @property
    def shrink(self) -> float:
        """``M/Q``: the regression coefficient of ``A0`` on ``A_Ŵ`` (0 when ``Ŵ = 0``)."""
        return self.M / self.Q if self.Q > 0 else 0.0

    @property
    def residual(self) -> float:
        """``Q0 − M²/Q``: per-``c_e`` variance of ``A0`` given ``A_Ŵ``."""
        return max(self.Q0 - self.M * self.shrink, 0.0)


@dataclass(frozen=True)
class PretrainOverlaps:
    """Pre-training overlaps: ``Q = Tr S̃²/D``, ``M = Tr S̃S̃0/D``, ``V`` = susceptibility (σ of THEORY_NOTES §3.2)."""

    Q: float
    M: float
    V: float


@dataclass(frozen=True)
class PretrainHats:
    """Conjugate order parameters ``(m̂, q̂, σ̂)`` of pre-training."""

    m_hat: float
    q_hat: float
    sigma_hat: float


@dataclass(frozen=True)
class FinetuneOverlaps:
    """``q = ‖ŵ‖²/D``, ``m = ŵ·w*/D``, ``v`` = susceptibility (variance of the prox's Gaussian factor)."""

    q: float
    m: float
    v: float


@dataclass(frozen=True)
class FinetuneHats:
    """Conjugates ``q̂, m̂, v̂`` and the centring ridge ``lam_eff = 2λ' + 2α'E∂_qℓ``."""

    q_hat: float
    m_hat: float
    v_hat: float
    lam_eff: float
