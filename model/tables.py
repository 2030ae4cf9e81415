"""Parameter grids and tidy tables on disk: one row per parameter point, one column per parameter and observable.

A sweep is the Cartesian product of the ``--vary`` axes applied to a base :class:`Params` (:func:`grid`).
Each point is computed by a *point function* (theory, simulation, or both) that may take the previous
point's state as a warm start (:func:`run_sweep`); rows are written as they finish, atomically
(:func:`atomic_write`: a reader never sees half a file), so an interrupted sweep resumes from its output file.

Resuming (:func:`run_sweep`): the existing table is checked row by row: a row cut short (a truncated file) is not
done and is computed again; a row that is no point of this sweep (other fixed parameters, axes, ``D``, ``n_mc``,
...) means the table belongs to another sweep, which is refused (:class:`ParameterError`) unless ``overwrite``.
Output paths are checked before any work (:func:`check_output_path`, :func:`check_writable_folder`); tables are
created with the permissions of the umask, like any other file.
"""

from __future__ import annotations

import csv
import io
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

from model.params import OMITTED_AT_DEFAULT, PARAM_NAMES, ParameterError, Params
_INT_PARAMS = {"T", "rank", "teacher_rank"}
_TEXT_PARAMS = {"sigma", "recalibrate"}


def _convert(name: str, text: str) -> Any:
    if name in _INT_PARAMS:
        try:
            return int(text)
        except ValueError:
            raise ParameterError(f"{name} = {text!r} is not an integer: allowed integers ≥ 1") from None
    if name in _TEXT_PARAMS:
        if name == "recalibrate" and text not in ("delta", "error", "optimal", "none"):
            try:
                return float(text)
            except ValueError:
                raise ParameterError(f"recalibrate = {text!r}: allowed a number > 0, 'delta', 'error', 'optimal' "
                                     "or 'none'") from None
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
    overwrite: bool = False,
) -> pd.DataFrame:
    """Evaluate ``point_fn(params, warm) -> (row, warm)`` along ``points`` (warm-starting each from the
    previous one) and return a tidy DataFrame: the parameters, then ``extra_columns`` (e.g. ``D``), then
    the row's observables. With ``out`` (``.csv`` or ``.parquet``) the table is rewritten atomically after
    every point, and points already present there are not recomputed (resume; module doc): a table holding
    rows of another sweep raises :class:`ParameterError` before any work, unless ``overwrite`` (then it is
    replaced). Ctrl-C raises :class:`SweepInterrupted`, which says how many points are saved."""
    points = list(points)
    extra = dict(extra_columns or {})
    done = load_resumable(out, points, extra, overwrite=overwrite) if out is not None else {}
    rows: list[dict[str, Any]] = []
    warm = None
    saved = 0
    try:
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
                shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()
                                  if k in ("E_pre", "E_ft", "o_w", "converged"))
                print(f"[sweep] {i + 1}/{len(points)} {_short(p, points)}: {shown} ({time.perf_counter() - t0:.1f} s)",
                      file=sys.stderr, flush=True)
            if out is not None:
                _write_atomic(pd.DataFrame(rows), out)
                saved = len(rows)
    except KeyboardInterrupt:
        if out is None:
            raise
        kept = saved if saved else len(done)
        raise SweepInterrupted(f"{kept} of {len(points)} points are saved in {out}; the same command resumes "
                               "from there") from None
    table = pd.DataFrame(rows)
    if out is not None:
        _write_atomic(table, out)
    return table


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_sweep`; ``note`` says what is saved and how to resume."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = note


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
    """A number as a rounded float (``1``, ``1.0`` and ``np.int64(1)`` are one value: a CSV reads a column back as
    floats when any of its values is one), NaN as text, anything else as it is."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "nan" if math.isnan(v) else round(float(v), 12)
    return v


def load_resumable(out: str | os.PathLike, points: Sequence[Params], extra: dict[str, Any], *,
                   overwrite: bool = False) -> dict[str, dict[str, Any]]:
    """The rows of an existing table ``out`` that are points of this sweep (``points`` with the
    ``extra`` columns), by point key: the work already done. A truncated row (fewer fields than the header) is
    not done (it is computed again); a table that cannot be read, or that holds a row which is no point of this
    sweep, raises :class:`ParameterError` (it belongs to another sweep, whose rows would be lost), unless
    ``overwrite``: then nothing is done and the table will be replaced."""
    path = Path(out)
    if overwrite or not path.exists():
        return {}
    hint = "use --overwrite to replace it, or another --out"
    try:
        table, cut = _read_complete(path)
    except Exception as err:  # any reader error: the file is no table of this project
        raise ParameterError(f"--out {str(out)!r} exists but cannot be read as a table ({type(err).__name__}: "
                             f"{err}); {hint}") from None
    if cut:
        print(f"[sweep] {out}: {cut} incomplete row(s) (a truncated file) will be computed again",
              file=sys.stderr, flush=True)
    wanted = {_point_key(p, extra) for p in points}
    done = {}
    for i, row in enumerate(table.to_dict("records")):
        try:
            p = Params(**{k: _restore(k, row[k]) for k in PARAM_NAMES if not _omitted(k, row)})
            key = _point_key(p, {k: row[k] for k in extra})
        except (KeyError, ParameterError, TypeError, ValueError):
            key = None
        if key not in wanted:
            shown = ", ".join(f"{k}={row.get(k)!r}" for k in (*PARAM_NAMES, *extra) if k in row)
            raise ParameterError(f"--out {str(out)!r} holds rows of another sweep (row {i + 1}: {shown}), "
                                 f"which this one would lose; {hint}")
        done[key] = row
    return done


def _read_complete(path: Path) -> tuple[pd.DataFrame, int]:
    """The table at ``path`` without its incomplete rows, and how many were dropped. A CSV row is complete when
    it has as many fields as the header (a file cut short ends in a partial row); Parquet files are written
    whole or not at all."""
    if _suffix(path) == ".parquet":
        return pd.read_parquet(path), 0
    text = path.read_text()
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        raise ValueError("empty file")
    header, body = records[0], [r for r in records[1:] if r]
    complete = [len(r) == len(header) for r in body]
    if body and not text.endswith("\n"):
        complete[-1] = False  # cut within its last field (0.12 of 0.1234) or just before its newline
    cut = complete.count(False)
    if not cut:
        return pd.read_csv(path), 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(r for r, ok in zip(body, complete) if ok)
    return pd.read_csv(io.StringIO(buf.getvalue())), cut


def _omitted(name: str, row: dict[str, Any]) -> bool:
    """A field :meth:`Params.to_dict` leaves out at its default (the ranks) is absent or NaN in a row: the
    default applies."""
    if name not in OMITTED_AT_DEFAULT:
        return False
    v = row.get(name)
    return v is None or (isinstance(v, float) and math.isnan(v))


def _restore(name: str, v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if name in _INT_PARAMS:
        return int(v)
    if name == "recalibrate" and isinstance(v, str) and v not in ("delta", "error", "optimal"):
        return float(v)
    return v


def _suffix(path: Path) -> str:
    """The extension, case-insensitively (``t.CSV`` is a CSV table)."""
    return path.suffix.lower()


def _read(path: Path) -> pd.DataFrame:
    if _suffix(path) == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def check_output_path(out: str | os.PathLike, flag: str = "--out") -> Path:
    """The output must be ``.csv`` or ``.parquet`` (any case; Parquet needs pyarrow), not a folder, in an existing
    folder where a file can be created (:func:`check_writable_folder`); an existing file must be writable.
    Raises :class:`ParameterError` naming ``flag``."""
    path = Path(out)
    if _suffix(path) not in (".csv", ".parquet"):
        raise ParameterError(f"{flag} {str(out)!r}: allowed a .csv or .parquet file")
    if _suffix(path) == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ParameterError(f"{flag} *.parquet needs pyarrow (pip install pyarrow); use .csv otherwise") from None
    if path.is_dir():
        raise ParameterError(f"{flag} {str(out)!r} is a folder: allowed a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ParameterError(f"{flag} {str(out)!r} exists and is not writable")
    check_writable_folder(path.parent, flag, of=str(out))
    return path


def check_writable_folder(folder: str | os.PathLike, flag: str, *, of: str | None = None,
                          create: bool = False) -> Path:
    """``folder`` exists (or, with ``create``, can be made), is a folder, and a file can be created in it (tried:
    a temporary file is made and removed). Raises :class:`ParameterError` naming ``flag`` (and ``of``, the path
    given, when the folder is its parent)."""
    path = Path(folder)
    what = f"{flag} {of!r}: folder {str(path)!r}" if of is not None else f"{flag} {str(path)!r}"
    if create and not path.exists():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ParameterError(f"{what} cannot be created ({err.strerror or err})") from None
    if not path.exists():
        raise ParameterError(f"{what} does not exist")
    if not path.is_dir():
        raise ParameterError(f"{what} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ParameterError(f"{what} is not writable ({err.strerror or err})") from None
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
        # mkstemp makes the file private (0600); give it the mode an ordinary new file gets (the umask), or
        # that of the file it replaces
        os.chmod(tmp, _mode_of(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_of(path: Path) -> int:
    """The permission bits of an existing ``path``, else those of a new file under the current umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _parquet_ready(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text-or-number column as text (Parquet keeps one type per column: ``recalibrate``
    mixes ``'optimal'`` and numbers); missing values stay missing."""
    fixed = {}
    for col in table.columns:
        if table[col].dtype != object:
            continue
        kinds = {type(v) for v in table[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1 and str in kinds:
            fixed[col] = table[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v))
                                        else str(v))
    return table.assign(**fixed) if fixed else table


def _write_atomic(table: pd.DataFrame, out: str | os.PathLike) -> None:
    path = Path(out)

    def write(tmp: str) -> None:
        if _suffix(path) == ".parquet":
            _parquet_ready(table).to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)

    atomic_write(path, write, suffix=".tmp" + _suffix(path))
