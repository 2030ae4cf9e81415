"""JSON that every strict parser reads (``JSON.parse``, ``json.loads`` with ``parse_constant`` refusing).

Python's :mod:`json` writes ``NaN`` and ``Infinity``, which are not JSON. Every ``--json`` output goes through
:func:`dumps`: NaN (a value that does not exist: a non-converged observable, an undefined overlap) becomes
``null``; an infinite value (``lam_prime = inf``: no adaptation; a residual never computed) becomes the text
``"inf"`` or ``"-inf"``, which ``float()`` reads back; numpy and JAX scalars become Python numbers; any other
object its ``repr``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def plain(x: Any) -> Any:
    """``x`` with only strict-JSON values (module doc); dict keys as text, tuples as lists."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            x = x.item()
        except (TypeError, ValueError):  # an array of several values
            return plain(x.tolist()) if hasattr(x, "tolist") else repr(x)
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return repr(x)


def dumps(x: Any) -> str:
    """:func:`plain` of ``x`` as JSON text; ``allow_nan=False`` guarantees no ``NaN``/``Infinity`` slips through."""
    return json.dumps(plain(x), allow_nan=False)


def _refuse(token: str) -> Any:
    raise ValueError(f"not strict JSON: {token}")


def loads_strict(text: str) -> Any:
    """``json.loads`` refusing ``NaN``, ``Infinity`` and ``-Infinity`` (what a strict parser does)."""
    return json.loads(text, parse_constant=_refuse)
