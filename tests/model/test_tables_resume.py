"""Resuming a sweep from its table: row by row, never another sweep's table, nothing lost; output paths checked
before any work; tables created with the umask's permissions."""

import os
import stat

import pandas as pd
import pytest

from model.params import ParameterError, Params
from model.tables import (SweepInterrupted, check_output_path, check_writable_folder, grid, read_table, run_sweep,
                          write_table)


def _point(calls):
    def point(p, warm):
        calls.append(p.lam)
        return {"E_pre": 1.0 / (1.0 + p.lam), "converged": p.lam < 0.35}, None
    return point


POINTS = grid(Params(), [("lam", [0.1, 0.2, 0.3, 0.4])])


def test_a_truncated_last_row_is_computed_again(tmp_path):
    out = tmp_path / "s.csv"
    calls = []
    run_sweep(POINTS, _point(calls), out=out, progress=False)
    text = out.read_text()
    for cut in (len(text) - 3, len(text) - 1, text.rindex("\n", 0, len(text) - 1) + 5):
        out.write_text(text[:cut])
        calls.clear()
        table = run_sweep(POINTS, _point(calls), out=out, progress=False)
        assert calls == [0.4]  # only the cut row, every complete one resumed
        assert list(table["lam"]) == [0.1, 0.2, 0.3, 0.4] and table["E_pre"].notna().all()
    assert out.read_text() == text


def test_a_table_of_another_sweep_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "s.csv"
    run_sweep(POINTS, _point([]), out=out, progress=False)
    before = out.read_text()
    calls = []
    for other in (grid(Params(alpha=0.2), [("lam", [0.1, 0.2, 0.3, 0.4])]),  # another fixed parameter
                  POINTS[:2]):  # a smaller sweep would drop rows
        with pytest.raises(ParameterError, match="another sweep.*--overwrite"):
            run_sweep(other, _point(calls), out=out, progress=False)
    assert calls == [] and out.read_text() == before
    calls = []
    assert len(run_sweep(POINTS + grid(Params(), [("lam", [0.5])]), _point(calls), out=out, progress=False)) == 5
    assert calls == [0.5]  # a sweep extended by a point resumes
    table = run_sweep(POINTS[:1], _point(calls), out=out, progress=False, overwrite=True)
    assert len(table) == 1 and len(read_table(out)) == 1


def test_an_unreadable_table_is_refused_before_any_work(tmp_path):
    out = tmp_path / "s.parquet"
    out.write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(ParameterError, match="cannot be read"):
        run_sweep(POINTS, _point([]), out=out, progress=False)


def test_parquet_keeps_a_column_of_text_and_numbers(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "s.parquet"
    points = grid(Params(), [("recalibrate", [None, "delta", 0.5])])
    calls = []
    table = run_sweep(points, _point(calls), out=out, progress=False)
    assert len(table) == 3 and len(read_table(out)) == 3
    calls.clear()
    run_sweep(points, _point(calls), out=out, progress=False)
    assert calls == []  # every row found again


def test_tables_get_the_umask_permissions_and_keep_a_file_s_mode(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "t.CSV"  # any case of the extension
        write_table(pd.DataFrame({"a": [1]}), out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o640)
        write_table(pd.DataFrame({"a": [2]}), out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o640 and read_table(out)["a"].tolist() == [2]
    finally:
        os.umask(old)


@pytest.mark.parametrize("name, match", [("x.txt", "allowed a .csv"), ("missing/x.csv", "does not exist"),
                                          ("f.csv/x.csv", "not a folder")])
def test_output_paths_are_checked(tmp_path, name, match):
    (tmp_path / "f.csv").write_text("a\n")
    with pytest.raises(ParameterError, match=match):
        check_output_path(tmp_path / name)


def test_a_folder_path_named_csv_is_refused(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ParameterError, match="is a folder"):
        check_output_path(tmp_path / "d.csv")


def test_unwritable_folders_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="not writable|does not exist|cannot be created"):
        check_output_path("/proc/x.csv")
    with pytest.raises(ParameterError, match="--cache-dir"):
        check_writable_folder("/proc/foo", "--cache-dir", create=True)
    made = check_writable_folder(tmp_path / "new" / "cache", "--cache-dir", create=True)
    assert made.is_dir() and list(made.iterdir()) == []


def test_an_interrupted_sweep_says_what_is_saved(tmp_path):
    out = tmp_path / "s.csv"
    calls = []

    def point(p, warm):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _point(calls)(p, warm)

    with pytest.raises(SweepInterrupted) as err:
        run_sweep(POINTS, point, out=out, progress=False)
    assert "2 of 4 points are saved" in err.value.note and str(out) in err.value.note
    assert len(read_table(out)) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]
    calls.clear()
    run_sweep(POINTS, _point(calls), out=out, progress=False)
    assert calls == [0.3, 0.4]


def test_a_column_of_text_and_numbers_is_written_as_text_for_parquet():
    from model.tables import _parquet_ready

    table = pd.DataFrame({"recalibrate": [float("nan"), "delta", 0.5], "E": [1.0, 2.0, 3.0], "s": ["a", "b", None]})
    ready = _parquet_ready(table)
    assert ready["recalibrate"].tolist()[1:] == ["delta", "0.5"] and pd.isna(ready["recalibrate"].iloc[0])
    assert ready["E"].tolist() == [1.0, 2.0, 3.0] and ready["s"].tolist()[:2] == ["a", "b"]
