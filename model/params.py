"""The parameters of the model of ``MODEL.md``, validated once, on construction.

Every other part of the project (theory, simulation, command line, figures) takes a :class:`Params`.
The names are the contract with ``MODEL.md`` §5 (symbols in the field docs below). Each field's metadata
also says how the command line reads it (``flag_type``), so the flags are generated from this class.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Union

SIGMAS = ("softmax", "linear")

Recalibration = Union[float, Literal["optimal"], None]


class ParameterError(ValueError):
    """A parameter outside its allowed range; the message names the parameter and the range."""


def _float_or_inf(text: str) -> float:
    """A command-line number; ``inf`` allowed (``float`` accepts it)."""
    return float(text)


def _recalibration(text: str) -> float | str:
    """A command-line ``β_W``: ``optimal`` or a number."""
    return text if text == "optimal" else float(text)


def _doc(symbol: str, text: str, flag_type: Any = float, **flag: Any) -> dict[str, Any]:
    """Field metadata: the MODEL.md symbol, the doc, and how the command line parses the flag
    (``flag_type``: a callable on the text; ``flag``: extra ``argparse`` keywords such as ``choices``)."""
    return {"symbol": symbol, "doc": text, "flag_type": flag_type, "flag": flag}


@dataclass(frozen=True, kw_only=True)
class Params:
    """All parameters of MODEL.md §5 (both stages), validated on construction.

    Defaults are the figure-1 configuration of MODEL.md §6 with the unlisted defaults
    ``σ = softmax, β = 1, κ0 = κ = 1, Δ = 0.5, e = 0``.
    """

    T: int = field(default=3, metadata=_doc("T", "sequence length (tokens per sequence), T ≥ 1", int))
    sigma: str = field(
        default="softmax",
        metadata=_doc("σ", "activation of the attention matrix: 'softmax' (row-wise, of βA) or 'linear'", str,
                     choices=SIGMAS),
    )
    beta: float = field(default=1.0, metadata=_doc("β", "softmax inverse temperature, β > 0"))
    kappa0: float = field(default=1.0, metadata=_doc("κ0", "teacher width ratio P0/D, κ0 > 0"))
    kappa: float = field(default=1.0, metadata=_doc("κ", "student width ratio P/D, κ > 0"))
    alpha: float = field(default=0.1, metadata=_doc("α", "pre-training sample ratio N/D², α > 0"))
    alpha_prime: float = field(
        default=3.0, metadata=_doc("α'", "fine-tuning sample ratio N'/D, α' > 0 (unused with active_rho)")
    )
    lam: float = field(default=0.1, metadata=_doc("λ", "pre-training weight decay on ‖W‖_F², λ ≥ 0"))
    lam_prime: float = field(
        default=0.5,
        metadata=_doc("λ'", "fine-tuning ridge on ‖w‖², λ' ≥ 0 (inf: no adaptation)", _float_or_inf),
    )
    delta: float = field(default=0.5, metadata=_doc("Δ", "pre-activation noise variance, Δ ≥ 0"))
    reuse: float = field(
        default=0.0, metadata=_doc("e", "fraction of fine-tuning sequences reused from pre-training, 0 ≤ e ≤ 1")
    )
    recalibrate: Recalibration = field(
        default=None,
        metadata=_doc("β_W", "frozen weights √β_W·Ŵ in fine-tuning: a number > 0, 'optimal' (= M/Q), or None (= 1)",
                     _recalibration),
    )
    active_rho: float | None = field(
        default=None,
        metadata=_doc("ρ", "active fine-tuning: kept fraction of the pool, 0 < ρ ≤ 1; None = no selection"),
    )
    pool_ratio: float = field(
        default=100.0, metadata=_doc("ᾱ'", "active fine-tuning pool ratio (pool size ⌊ᾱ' D⌋), ᾱ' > 0")
    )

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> "Params":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{name: value}`` (JSON-serialisable; ``inf`` stays a float)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def effective_alpha_prime(self) -> float:
        """The fine-tuning sample ratio actually used: ``ρ ᾱ'`` with active selection, else ``α'``."""
        if self.active_rho is not None:
            return self.active_rho * self.pool_ratio
        return self.alpha_prime

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, Any]]:
        """``(name, symbol, doc, default)`` for every field: the notation table."""
        return [
            (f.name, f.metadata["symbol"], f.metadata["doc"], f.default) for f in dataclasses.fields(cls)
        ]


def _finite_number(name: str, value: Any, allowed: str, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} = {value!r} is not a number: allowed {allowed}")
    x = float(value)
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise ParameterError(f"{name} = {value!r} is not finite: allowed {allowed}")
    return x


def _check(name: str, value: Any, ok, allowed: str, *, allow_inf: bool = False) -> None:
    x = _finite_number(name, value, allowed, allow_inf=allow_inf)
    if not ok(x):
        raise ParameterError(f"{name} = {value!r} is out of range: allowed {allowed}")


def _validate(p: Params) -> None:
    if isinstance(p.T, bool) or not isinstance(p.T, int) or p.T < 1:
        raise ParameterError(f"T = {p.T!r} is out of range: allowed an integer T ≥ 1")
    if p.sigma not in SIGMAS:
        raise ParameterError(f"sigma = {p.sigma!r} is unknown: allowed one of {', '.join(SIGMAS)}")
    _check("beta", p.beta, lambda x: x > 0, "beta > 0")
    _check("kappa0", p.kappa0, lambda x: x > 0, "kappa0 > 0")
    _check("kappa", p.kappa, lambda x: x > 0, "kappa > 0")
    _check("alpha", p.alpha, lambda x: x > 0, "alpha > 0")
    _check("alpha_prime", p.alpha_prime, lambda x: x > 0, "alpha_prime > 0")
    _check("lam", p.lam, lambda x: x >= 0, "lam ≥ 0")
    _check("lam_prime", p.lam_prime, lambda x: x >= 0, "lam_prime ≥ 0 (inf allowed)", allow_inf=True)
    _check("delta", p.delta, lambda x: x >= 0, "delta ≥ 0")
    _check("reuse", p.reuse, lambda x: 0 <= x <= 1, "0 ≤ reuse ≤ 1")
    if p.recalibrate is not None and p.recalibrate != "optimal":
        _check("recalibrate", p.recalibrate, lambda x: x > 0, "recalibrate > 0, 'optimal' or None")
    if p.active_rho is not None:
        _check("active_rho", p.active_rho, lambda x: 0 < x <= 1, "0 < active_rho ≤ 1")
    _check("pool_ratio", p.pool_ratio, lambda x: x > 0, "pool_ratio > 0")
    if p.active_rho is not None and p.reuse > 0:
        raise ParameterError(
            "reuse > 0 and active_rho cannot be combined: active selection draws a fresh pool "
            "(allowed: reuse = 0 when active_rho is set)"
        )


#: Every parameter name, in field order (the columns of a table's parameter part).
PARAM_NAMES = tuple(f.name for f in dataclasses.fields(Params))

#: The parameters the pre-training depends on (MODEL.md §3): none of the fine-tuning ones.
PRETRAIN_FIELDS = ("T", "sigma", "beta", "kappa0", "kappa", "alpha", "lam", "delta")


def pretrain_key(params: Params) -> tuple[Any, ...]:
    """The values of :data:`PRETRAIN_FIELDS` at ``params``: two points with the same key share their
    pre-training (theory and simulation alike)."""
    return tuple(getattr(params, name) for name in PRETRAIN_FIELDS)
