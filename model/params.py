"""The parameters of the model of ``MODEL.md``, validated once, on construction.

Every other part of the project (theory, simulation, command line, figures) takes a :class:`Params`.
The names are the contract with ``MODEL.md`` §5 (symbols in the field docs below). Each field's metadata
also says how the command line reads it (``flag_type``), so the flags are generated from this class.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Union

SIGMAS = ("softmax", "linear")

Recalibration = Union[float, Literal["delta", "error", "optimal"], None]

#: Named recalibrations: ``delta`` = ``M/Q`` (the ``Δ_eff`` minimiser), ``error`` = the ``E_ft`` minimiser over
#: ``β_W`` (found by the theory), ``optimal`` = the deprecated name of ``delta``.
RECALIBRATIONS = ("delta", "error", "optimal")
#: Laws of the simulated fine-tuning teacher ``U*`` (:func:`simulate.data.sample_teacher`).
TEACHER_LAWS = ("gaussian", "orthogonal")


class ParameterError(ValueError):
    """A parameter outside its allowed range; the message names the parameter and the range."""


def _float_or_inf(text: str) -> float:
    """A command-line number; ``inf`` allowed (``float`` accepts it)."""
    return float(text)


def _recalibration(text: str) -> float | str:
    """A command-line ``β_W``: ``delta``, ``error``, ``optimal`` (deprecated: ``delta``) or a number."""
    return text if text in RECALIBRATIONS else float(text)


def _doc(symbol: str, text: str, flag_type: Any = float, omit_at_default: bool = False, **flag: Any) -> dict[str, Any]:
    """Field metadata: the MODEL.md symbol, the doc, and how the command line parses the flag
    (``flag_type``: a callable on the text; ``flag``: extra ``argparse`` keywords such as ``choices``).
    ``omit_at_default``: :meth:`Params.to_dict` leaves the field out while it has its default (the rank fields:
    rank-one outputs — JSON, tables, cache keys — stay those of the model before ranks existed)."""
    return {"symbol": symbol, "doc": text, "flag_type": flag_type, "flag": flag, "omit_at_default": omit_at_default}


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
        metadata=_doc("β_W", "frozen weights √β_W·Ŵ in fine-tuning: a number > 0, 'delta' (= M/Q, minimises Δ_eff), "
                      "'error' (minimises E_ft, found by the theory), None (= 1); 'optimal' is the deprecated "
                      "name of 'delta'",
                     _recalibration),
    )
    active_rho: float | None = field(
        default=None,
        metadata=_doc("ρ", "active fine-tuning: kept fraction of the pool, 0 < ρ ≤ 1; None = no selection"),
    )
    pool_ratio: float = field(
        default=100.0, metadata=_doc("ᾱ'", "active fine-tuning pool ratio (pool size ⌊ᾱ' D⌋), ᾱ' > 0")
    )
    rank: int = field(
        default=1, metadata=_doc("r", "LoRA rank (U ∈ R^{D×r}, MODEL.md §8), an integer r ≥ 1", int, omit_at_default=True)
    )
    teacher_rank: int = field(
        default=1,
        metadata=_doc("r*", "rank of the fine-tuning teacher (U* ∈ R^{D×r*}, MODEL.md §8), an integer r* ≥ 1", int,
                      omit_at_default=True),
    )
    teacher_law: str = field(
        default="gaussian",
        metadata=_doc("U*", "law of the simulated fine-tuning teacher: 'gaussian' (i.i.d. N(0,1) entries, MODEL.md "
                      "§8) or 'orthogonal' (U*ᵀU*/D = I exactly at every D: Haar-orthogonal columns of norm √D), a "
                      "finite-size control with the same D → ∞ theory", str, omit_at_default=True,
                      choices=TEACHER_LAWS),
    )

    def __post_init__(self) -> None:
        # numpy (or other numbers.Real) scalars are taken wherever Python numbers are, and stored as Python ones
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            plain = _plain_scalar(value)
            if plain is not value:
                object.__setattr__(self, f.name, plain)
        _validate(self)

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> "Params":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{name: value}`` (JSON-serialisable; ``inf`` stays a float). The rank fields
        (``rank``, ``teacher_rank``) and ``teacher_law`` appear only when they differ from their defaults (1, 1,
        ``'gaussian'``; :data:`OMITTED_AT_DEFAULT`), so a rank-one point has the dictionary, table columns and
        cache keys it had before they existed;
        ``Params(**d)`` restores the defaults."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (f.metadata["omit_at_default"] and getattr(self, f.name) == f.default)}

    @property
    def rank_one(self) -> bool:
        """Whether ``r = r* = 1``: the rank-one code paths of MODEL.md §1–7; otherwise the rank-``r`` ones (§8)."""
        return self.rank == 1 and self.teacher_rank == 1

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


def _plain_scalar(value: Any) -> Any:
    """A numpy integer as ``int``, a numpy (or other ``numbers.Real``) float as ``float``, a ``str`` subclass as
    ``str``; anything else (``bool``, ``None``, text, an invalid value) unchanged, for :func:`_validate` to judge."""
    if value is None or isinstance(value, bool) or type(value) in (int, float, str):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral) and not _is_bool(value):
        return int(value)
    if isinstance(value, numbers.Real) and not _is_bool(value):
        try:
            return float(value)
        except (OverflowError, ValueError):
            return value
    return value


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")


def _finite_number(name: str, value: Any, allowed: str, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} = {value!r} is not a number: allowed {allowed}")
    try:
        x = float(value)
    except OverflowError:
        raise ParameterError(f"{name} = {value!r} is not finite: allowed {allowed}") from None
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
    if p.recalibrate is not None and p.recalibrate not in RECALIBRATIONS:
        _check("recalibrate", p.recalibrate, lambda x: x > 0, "recalibrate > 0, 'delta', 'error', 'optimal' or None")
    if p.active_rho is not None:
        _check("active_rho", p.active_rho, lambda x: 0 < x <= 1, "0 < active_rho ≤ 1")
    _check("pool_ratio", p.pool_ratio, lambda x: x > 0, "pool_ratio > 0")
    if p.teacher_law not in TEACHER_LAWS:
        raise ParameterError(f"teacher_law = {p.teacher_law!r} is unknown: allowed one of {', '.join(TEACHER_LAWS)}")
    for name in ("rank", "teacher_rank"):
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParameterError(f"{name} = {v!r} is out of range: allowed an integer {name} ≥ 1")
    if p.active_rho is not None and p.reuse > 0:
        raise ParameterError(
            "reuse > 0 and active_rho cannot be combined: active selection draws a fresh pool "
            "(allowed: reuse = 0 when active_rho is set)"
        )


#: Every parameter name, in field order (the columns of a table's parameter part).
PARAM_NAMES = tuple(f.name for f in dataclasses.fields(Params))

#: The fields :meth:`Params.to_dict` leaves out while they have their default (the ranks, 1; the teacher law, gaussian).
OMITTED_AT_DEFAULT = tuple(f.name for f in dataclasses.fields(Params) if f.metadata["omit_at_default"])

#: The parameters the pre-training depends on (MODEL.md §3): none of the fine-tuning ones.
PRETRAIN_FIELDS = ("T", "sigma", "beta", "kappa0", "kappa", "alpha", "lam", "delta")


def pretrain_key(params: Params) -> tuple[Any, ...]:
    """The values of :data:`PRETRAIN_FIELDS` at ``params``: two points with the same key share their
    pre-training (theory and simulation alike)."""
    return tuple(getattr(params, name) for name in PRETRAIN_FIELDS)
