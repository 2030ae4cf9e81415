"""The pre-training order parameters that the fine-tuning theories take as input."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lora_attn.params import ParameterError


@dataclass(frozen=True)
class PretrainOrderParams:
    """Order parameters of the frozen ``Ŵ`` (MODEL.md §4): ``Q0 = Tr S̃0²/D``, ``Q = Tr S̃²/D``,
    ``M = Tr S̃S̃0/D``. Requires ``Q0 > 0``, ``Q ≥ 0``, ``M² ≤ Q Q0`` (Cauchy–Schwarz)."""

    Q0: float
    Q: float
    M: float

    def __post_init__(self) -> None:
        for name in ("Q0", "Q", "M"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ParameterError(f"{name} = {x!r} is not a finite number")
        if self.Q0 <= 0:
            raise ParameterError(f"Q0 = {self.Q0} is out of range: allowed Q0 > 0")
        if self.Q < 0:
            raise ParameterError(f"Q = {self.Q} is out of range: allowed Q ≥ 0")
        if self.M * self.M > self.Q * self.Q0 * (1 + 1e-9) + 1e-12:
            raise ParameterError(f"M = {self.M} is out of range: allowed M² ≤ Q·Q0 = {self.Q * self.Q0}")

    @property
    def shrink(self) -> float:
        """``M/Q``: the regression coefficient of ``A0`` on ``A_Ŵ`` (0 when ``Ŵ = 0``)."""
        return self.M / self.Q if self.Q > 0 else 0.0

    @property
    def residual(self) -> float:
        """``Q0 − M²/Q``: per-``c_e`` variance of ``A0`` given ``A_Ŵ``."""
        return max(self.Q0 - self.M * self.shrink, 0.0)
