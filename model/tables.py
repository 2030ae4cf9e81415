"""Parameter grids and tidy tables on disk: one row per parameter point, one column per parameter and observable.

A sweep is the Cartesian product of the ``--vary`` axes applied to a base :class:`Params` (:func:`grid`).
Each point is computed by a *point function* (theory, simulation, or both) that may take the previous
point's state as a warm start (:func:`run_sweep`); rows are written as they finish, atomically
(:func:`atomic_write`: a reader never sees half a file), so an interrupted sweep resumes from its output file.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from model.params import PARAM_NAMES, ParameterError, Params
_INT_PARAMS = {"T"}
_TEXT_PARAMS = {"sigma", "recalibrate"}


def _convert(name: str, text: str) -> Any:
    if name in _INT_PARAMS:
        try:
            return int(text)
        except ValueError:
            raise ParameterError(f"{name} = {text!r} is not an integer: allowed integers ≥ 1") from None
    if name in _TEXT_PARAMS:
        if name == "recalibrate" and text not in ("optimal", "none"):
            try:
                return float(text)
            except ValueError:
                raise ParameterError(f"recalibrate = {text!r}: allowed a number > 0, 'optimal' or 'none'") from None
        return None if text == "none" else text
    if name == "active_rho" and text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"{name} = {text!r} is not a number") from None


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """``"NAME=v1,v2,..."`` or ``"NAME=start:stop:num"`` (``num`` points, linear; ``log:start:stop:num``
    for log spacing) → ``(name, values)``. The name is a :class:`Params` field (``-`` may replace ``_``)."""
    if "=" not in spec:
        raise ParameterError(f"--vary {spec!r}: expected NAME=v1,v2,... or NAME=start:stop:num")
    name, _, rhs = spec.partition("=")
    name = name.strip().replace("-", "_")
    if name not in PARAM_NAMES:
        raise ParameterError(f"--vary {name!r} is not a parameter: allowed one of {', '.join(PARAM_NAMES)}")
    rhs = rhs.strip()
    if ":" in rhs:
        parts = rhs.split(":")
        log = parts[0] == "log"
        if log:
            parts = parts[1:]
        if len(parts) != 3:
            raise ParameterError(f"--vary {spec!r}: a range is start:stop:num (or log:start:stop:num)")
        try:
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ParameterError(f"--vary {spec!r}: start and stop must be numbers and num an integer") from None
        if num < 1:
            raise ParameterError(f"--vary {spec!r}: num = {num} is out of range: allowed num ≥ 1")
        if log and (start <= 0 or stop <= 0):
            raise ParameterError(f"--vary {spec!r}: a log range needs start > 0 and stop > 0")
        grid = np.geomspace(start, stop, num) if log else np.linspace(start, stop, num)
        values = [int(round(v)) if name in _INT_PARAMS else float(v) for v in grid]
    else:
        values = [_convert(name, v.strip()) for v in rhs.split(",") if v.strip()]
    if not values:
        raise ParameterError(f"--vary {spec!r}: no values")
    return name, values


def grid(base: Params, axes: Sequence[tuple[str, list[Any]]]) -> list[Params]:
    """The Cartesian product of ``axes`` applied to ``base`` (last axis fastest); every point is validated
    before any work starts."""
    names = [n for n, _ in axes]
    if len(set(names)) != len(names):
        raise ParameterError(f"--vary names a parameter twice: {names}")
    return [base.replace(**dict(zip(names, combo))) for combo in itertools.product(*(v for _, v in axes))]


PointFn = Callable[[Params, Any], tuple[dict[str, Any], Any]]


def run_sweep(
    points: Iterable[Params],
    point_fn: PointFn,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    extra_columns: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Evaluate ``point_fn(params, warm) -> (row, warm)`` along ``points`` (warm-starting each from the
    previous one) and return a tidy DataFrame: the parameters, then ``extra_columns`` (e.g. ``D``), then
    the row's observables. With ``out`` (``.csv`` or ``.parquet``) the table is rewritten atomically after
    every point, and points already present there are not recomputed (resume)."""
    points = list(points)
    extra = dict(extra_columns or {})
    done = _load_existing(out, extra) if out is not None else {}
    rows: list[dict[str, Any]] = []
    warm = None
    for i, p in enumerate(points):
        key = _point_key(p, extra)
        if key in done:
            rows.append(done[key])
            if progress:
                print(f"[sweep] {i + 1}/{len(points)} cached: {_short(p, points)}", file=sys.stderr, flush=True)
            continue
        t0 = time.perf_counter()
        values, warm = point_fn(p, warm)
        row = {**_param_columns(p), **extra, **values}
        rows.append(row)
        if progress:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items() if k in ("E_pre", "E_ft", "o_w", "converged"))
            print(f"[sweep] {i + 1}/{len(points)} {_short(p, points)}: {shown} ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr, flush=True)
        if out is not None:
            _write_atomic(pd.DataFrame(rows), out)
    table = pd.DataFrame(rows)
    if out is not None:
        _write_atomic(table, out)
    return table


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _short(p: Params, points: list[Params]) -> str:
    varying = [n for n in PARAM_NAMES if len({repr(getattr(q, n)) for q in points}) > 1]
    return ", ".join(f"{n}={getattr(p, n)}" for n in varying) or "base point"


def _param_columns(p: Params) -> dict[str, Any]:
    d = p.to_dict()
    # a tidy table keeps one type per column: None ↔ missing
    return {k: (np.nan if v is None else v) for k, v in d.items()}


def _point_key(p: Params, extra: dict[str, Any]) -> str:
    cols = {**_param_columns(p), **extra}
    return repr(sorted((k, _canon(v)) for k, v in cols.items()))


def _canon(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else round(float(v), 12)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _load_existing(out: str | os.PathLike, extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    path = Path(out)
    if not path.exists():
        return {}
    table = _read(path)
    done = {}
    for row in table.to_dict("records"):
        try:
            p = Params(**{k: _restore(k, row[k]) for k in PARAM_NAMES})
        except (KeyError, ParameterError, TypeError):
            continue
        done[_point_key(p, {k: row.get(k) for k in extra})] = row
    return done


def _restore(name: str, v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if name == "T":
        return int(v)
    if name == "recalibrate" and isinstance(v, str) and v != "optimal":
        return float(v)
    return v


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def check_output_path(out: str | os.PathLike) -> Path:
    """The output must be ``.csv`` or ``.parquet`` (the latter needs pyarrow) in an existing folder."""
    path = Path(out)
    if path.suffix not in (".csv", ".parquet"):
        raise ParameterError(f"--out {str(out)!r}: allowed a .csv or .parquet file")
    if path.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ParameterError("--out *.parquet needs pyarrow (pip install pyarrow); use .csv otherwise") from None
    if not path.parent.exists():
        raise ParameterError(f"--out {str(out)!r}: folder {str(path.parent)!r} does not exist")
    return path


def write_table(table: pd.DataFrame, out: str | os.PathLike) -> None:
    """Write ``table`` to ``out`` (``.csv`` or ``.parquet``) atomically (a reader never sees half a file)."""
    _write_atomic(table, out)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by :func:`write_table` (``.csv`` or ``.parquet``)."""
    return _read(Path(path))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = ".tmp") -> None:
    """Create ``path`` through ``write(tmp)`` on a temporary file in the same folder, then rename it into place:
    a reader sees the old file or the whole new one, never half of one; on failure nothing is left behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(table: pd.DataFrame, out: str | os.PathLike) -> None:
    path = Path(out)

    def write(tmp: str) -> None:
        if path.suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)

    atomic_write(path, write, suffix=".tmp" + path.suffix)
