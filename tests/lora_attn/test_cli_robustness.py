"""The command line under bad input, odd files and interruptions: the exit status is always one of
``lora_attn.exit_codes.ALL``, never a traceback, no file left half-written or lost, ``--json`` is strict JSON,
every check before any work (README, *Exit codes, limits and resuming*).

The property test throws random flag values and file states at :func:`lora_attn.cli.main` in-process, with the
heavy work (``theory.solve``, ``simulate.run``) replaced by fakes that return every kind of number (NaN, ±inf,
non-converged) or are interrupted; a few real subprocesses check the same from the outside.
"""

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulate
import theory
from lora_attn import exit_codes
from lora_attn.cli import main
from model.jsonsafe import loads_strict
from model.observables import OBSERVABLES
from simulate.run import SimulationResult, sizes
from theory import TheoryPoint

REPO = Path(__file__).resolve().parents[2]
LORA_ATTN = [sys.executable, "-c", "import sys; from lora_attn.cli import main; sys.exit(main())"]


# ------------------------------------------------------------------------------------------------- fakes
class _Fakes:
    """Stand-ins for the heavy work; ``mode`` picks what they do on the next calls."""

    def __init__(self):
        self.mode = "ok"
        self.calls = 0

    def _values(self):
        special = {"ok": 1.5, "nan": math.nan, "inf": math.inf}
        v = special.get(self.mode, 1.5)
        return {name: (v if i % 3 == 0 else 0.5 + i) for i, name in enumerate(OBSERVABLES)}

    def solve(self, params, *, stage="both", **kw):
        theory.check(params, stage=stage, **{k: kw[k] for k in ("pretrain", "q0", "n_mc", "bayes") if k in kw})
        self.calls += 1
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        converged = self.mode != "not_converged"
        obs = self._values() if converged else dict.fromkeys(OBSERVABLES, math.nan)
        return TheoryPoint(params=params, stage=stage, observables=obs, converged=converged,
                           diagnostics={"pretrain": {"residual": math.inf, "status":
                                                     "converged" if converged else "max_steps"}})

    def run(self, params, D, seeds, *, seed=0, n_test=None, **kw):
        sizes(params, D, n_test)
        self.calls += 1
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        obs = self._values()
        per_seed = pd.DataFrame({**{k: [v] * seeds for k, v in obs.items()}, "pretrain_grad_norm": [1e-9] * seeds,
                                 "finetune_grad_norm": [math.inf] * seeds, "pretrain_converged": [True] * seeds,
                                 "finetune_converged": [True] * seeds})
        return SimulationResult(params=params, D=D, seeds=seeds, seed=seed, observables=obs,
                                sem={k: math.nan for k in obs}, per_seed=per_seed)


@pytest.fixture
def fakes(monkeypatch):
    f = _Fakes()
    monkeypatch.setattr(theory, "solve", f.solve)
    monkeypatch.setattr(simulate, "run", f.run)
    return f


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: --help (0) or an unparsable command line (2)
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------------- the property test
_VALID = st.sampled_from(["1", "2", "3", "0.5", "0.1", "10"])
_ODD = st.sampled_from(["0", "-1", "1e-12", "1e308", "nan", "inf", "-inf", "abc", "", "18446744073709551617",
                        "1e400", "3.0", "0x10"])
_NUMBERS = st.one_of(_VALID, _VALID, _ODD)  # two thirds valid: the file states are reached too
_PARAM_FLAGS = st.sampled_from(["--T", "--beta", "--kappa0", "--alpha", "--alpha-prime", "--lam", "--lam-prime",
                                "--delta", "--reuse", "--active-rho", "--pool-ratio", "--recalibrate"])
_FILE_STATES = st.sampled_from(["absent", "dir", "garbage", "table", "truncated", "other_sweep", "proc", "upper"])


def _flags(command):
    common = [(_PARAM_FLAGS, _NUMBERS), (st.just("--sigma"), st.sampled_from(["linear", "softmax", "relu"]))]
    per = {
        "theory": [(st.just("--stage"), st.sampled_from(["both", "pretrain", "finetune", "x"])),
                   (st.just("--pretrain"), st.sampled_from(["Q0=2,Q=1.5,M=1.2", "garbage", "Q0=1,Q=1"])),
                   (st.just("--q0"), _NUMBERS), (st.just("--n-mc"), _NUMBERS)],
        "simulate": [(st.just("--D"), _NUMBERS), (st.just("--seeds"), _NUMBERS), (st.just("--seed"), _NUMBERS),
                     (st.just("--restarts"), _NUMBERS), (st.just("--n-test"), _NUMBERS)],
        "sweep": [(st.just("--D"), _NUMBERS), (st.just("--seeds"), _NUMBERS), (st.just("--seed"), _NUMBERS),
                  (st.just("--n-mc"), _NUMBERS), (st.just("--stage"), st.sampled_from(["both", "pretrain"])),
                  (st.just("--vary"), st.sampled_from(["lam=0.1,0.2", "lam=0.1,-1", "nope=1", "T=2,3",
                                                       "recalibrate=delta,0.5"]))],
    }[command]
    return st.lists(st.one_of(*(st.tuples(f, v) for f, v in common + per)), max_size=4)


def _prepare(state, folder: Path) -> str:
    """The --out of a sweep in ``state``; returns its path."""
    path = folder / ("t.CSV" if state == "upper" else "t.csv")
    table = pd.DataFrame({"T": [3], "sigma": ["linear"], "lam": [0.1], "E_pre": [1.0], "converged": [True]})
    if state == "dir":
        path.mkdir()
    elif state == "garbage":
        path.write_bytes(b"\x00\x01 not,a\ntable")
    elif state in ("table", "truncated", "other_sweep"):
        table.to_csv(path, index=False)
        if state == "truncated":
            path.write_text(path.read_text()[:-4])
        if state == "other_sweep":
            pd.concat([table, table.assign(lam=9.0)]).to_csv(path, index=False)
    elif state == "proc":
        return "/proc/lora-attn-test/t.csv"
    return str(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["theory", "simulate", "sweep"]), data=st.data(), json_out=st.booleans(),
       mode=st.sampled_from(["ok", "nan", "inf", "not_converged", "interrupt"]), state=_FILE_STATES,
       simulate_sweep=st.booleans(), cache=st.sampled_from([None, "new", "proc"]))
def test_random_command_lines_end_in_a_documented_status(fakes, command, data, json_out, mode, state,
                                                          simulate_sweep, cache):
    fakes.mode = mode
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        argv = [command]
        for flag, value in data.draw(_flags(command)):
            argv += [flag, value]
        if command == "simulate" and "--D" not in argv:
            argv += ["--D", "10"]
        if command == "simulate" and cache is not None:
            argv += ["--cache-dir", str(folder / "cache") if cache == "new" else "/proc/lora-attn-test"]
        out = None
        if command == "sweep":
            if "--vary" not in argv:
                argv += ["--vary", "lam=0.1,0.2"]
            out = _prepare(state, folder)
            argv += ["--out", out]
            if simulate_sweep:
                argv += ["--simulate"] + ([] if "--D" in argv else ["--D", "10"])
        if json_out and command != "sweep":
            argv.append("--json")
        before = {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()}

        rc, stdout, stderr = _run(argv)

        assert rc in exit_codes.ALL, (argv, rc, stderr)
        assert "Traceback" not in stderr and "Traceback" not in stdout, (argv, stderr)
        if rc == exit_codes.INTERRUPTED:
            assert stderr.strip().splitlines()[-1].startswith(f"lora-attn {command}: interrupted: ")
        if rc == exit_codes.BAD_INPUT:
            assert "error" in stderr
            # refused before any work: nothing computed, no file touched
            assert fakes.calls == 0, argv
            after = {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()
                     if p.name != "cache"}
            assert after == before, argv
        if json_out and command != "sweep" and rc in (exit_codes.OK, exit_codes.NOT_CONVERGED):
            loads_strict(stdout)
        # no temporary file left behind, the table whole
        assert not [p for p in folder.iterdir() if ".tmp" in p.name], argv
        if out is not None and rc in (exit_codes.OK, exit_codes.NOT_CONVERGED, exit_codes.INTERRUPTED) \
                and Path(out).is_file():
            pd.read_csv(out)
    fakes.calls = 0


# ------------------------------------------------------------------------------------------ targeted cases
def test_a_sweep_resumed_with_non_converged_rows_exits_4(fakes, tmp_path):
    out = str(tmp_path / "s.csv")
    fakes.mode = "not_converged"
    assert _run(["sweep", "--vary", "lam=0.1,0.2", "--sigma", "linear", "--out", out])[0] == 4
    fakes.mode = "ok"
    rc, _, err = _run(["sweep", "--vary", "lam=0.1,0.2,0.3", "--sigma", "linear", "--out", out])
    assert rc == 4 and "2 of the table's 3" in err and fakes.calls == 3
    table = pd.read_csv(out)
    assert table["E_pre"].isna().tolist() == [True, True, False]  # non-converged: no number


def test_a_sweep_of_other_parameters_is_refused_then_overwrites(fakes, tmp_path):
    out = str(tmp_path / "s.csv")
    assert _run(["sweep", "--vary", "lam=0.1,0.2", "--sigma", "linear", "--out", out])[0] == 0
    before = Path(out).read_text()
    rc, _, err = _run(["sweep", "--vary", "lam=0.1,0.2", "--sigma", "linear", "--alpha", "0.3", "--out", out])
    assert rc == 2 and "another sweep" in err and "--overwrite" in err and Path(out).read_text() == before
    rc, _, _ = _run(["sweep", "--vary", "lam=0.1,0.2", "--sigma", "linear", "--alpha", "0.3", "--out", out,
                     "--overwrite"])
    assert rc == 0 and list(pd.read_csv(out)["alpha"]) == [0.3, 0.3]


def test_an_interrupted_sweep_says_what_is_saved_and_resumes(fakes, tmp_path, monkeypatch):
    out = str(tmp_path / "s.csv")
    real = fakes.solve

    def second_interrupted(params, **kw):
        if fakes.calls == 1:
            raise KeyboardInterrupt
        return real(params, **kw)

    monkeypatch.setattr(theory, "solve", second_interrupted)
    rc, _, err = _run(["sweep", "--vary", "lam=0.1,0.2,0.3", "--sigma", "linear", "--out", out])
    assert rc == 130 and err.strip().splitlines()[-1] == (
        f"lora-attn sweep: interrupted: 1 of 3 points are saved in {out}; the same command resumes from there")
    monkeypatch.setattr(theory, "solve", real)
    assert _run(["sweep", "--vary", "lam=0.1,0.2,0.3", "--sigma", "linear", "--out", out])[0] == 0
    assert fakes.calls == 3 and len(pd.read_csv(out)) == 3


@pytest.mark.parametrize("argv, match", [
    (["theory", "--stage", "pretrain", "--pretrain", "garbage"], "--pretrain does not apply"),
    (["theory", "--stage", "pretrain", "--q0", "2"], "--q0 does not apply"),
    (["sweep", "--vary", "lam=0.1", "--D", "0", "--seeds", "-5"], "--D, --seeds do not apply without --simulate"),
    (["sweep", "--vary", "lam=0.1", "--simulate", "--D", "10", "--n-mc", "10"], "--n-mc does not apply"),
    (["simulate", "--D", "10", "--restarts", "-1"], "--restarts"),
    (["simulate", "--D", "10", "--seed", "18446744073709551617"], "--seed"),
    (["simulate", "--D", "10", "--seed", "-1"], "--seed"),
    (["simulate", "--D", "10", "--cache-dir", "/proc/foo"], "--cache-dir"),
    (["simulate", "--D", "10", "--pretrain-solver", "convex"], "convex"),
    (["theory", "--sigma", "linear", "--T", "100"], "T = 100"),
    (["theory", "--sigma", "linear", "--alpha", "1e308", "--stage", "pretrain"], "alpha"),
])
def test_bad_input_exits_2_before_any_work(fakes, argv, match, tmp_path):
    if argv[0] == "sweep":
        argv = argv + ["--out", str(tmp_path / "x.csv")]
    rc, _, err = _run(argv)
    assert rc == 2 and match in err and fakes.calls == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["/proc/x.csv", "DIR", "x.txt"])
def test_sweep_output_checked_before_any_work(fakes, tmp_path, out):
    (tmp_path / "DIR").mkdir()
    path = out if out.startswith("/") else str(tmp_path / out)
    rc, _, err = _run(["sweep", "--vary", "lam=0.1", "--sigma", "linear", "--out", path])
    assert rc == 2 and "--out" in err and fakes.calls == 0


def test_unused_model_flags_are_warned_about(fakes):
    rc, _, err = _run(["theory", "--stage", "pretrain", "--sigma", "linear", "--lam-prime", "2", "--n-mc", "10"])
    assert rc == 0 and "warning: --lam-prime is not used by --stage pretrain" in err and "--n-mc is not used" in err


def test_the_simulated_teacher_law_is_a_warning_for_the_theory(fakes):
    rc, _, err = _run(["theory", "--sigma", "linear", "--teacher-rank", "2", "--teacher-law", "orthogonal"])
    assert rc == 0 and "warning: --teacher-law is not used by the theory" in err
    rc, _, err = _run(["theory", "--sigma", "linear", "--teacher-law", "haar"])
    assert rc == 2 and "--teacher-law" in err and "gaussian" in err


def test_strict_json_with_infinite_and_missing_values(fakes):
    fakes.mode = "inf"
    for argv in (["theory", "--sigma", "linear", "--lam-prime", "inf", "--json"],
                 ["simulate", "--D", "10", "--json"]):
        rc, out, _ = _run(argv)
        assert rc == 0
        parsed = loads_strict(out)
        assert "inf" in json.dumps(parsed)
    parsed = loads_strict(_run(["theory", "--sigma", "linear", "--lam-prime", "inf", "--json"])[1])
    assert parsed["params"]["lam_prime"] == "inf"


def test_simulate_json_keeps_progress_on_stderr(monkeypatch):
    seen = {}

    def run(params, D, seeds, **kw):
        seen.update(kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate, "run", run)
    rc, _, err = _run(["simulate", "--D", "10", "--json"])
    assert seen["progress"] is True and rc == 130 and "nothing was saved" in err


# ------------------------------------------------------------------------------------ real subprocesses
def _subprocess(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(LORA_ATTN + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kw)


def test_subprocess_bad_input_and_strict_json(tmp_path):
    p = _subprocess(["sweep", "--vary", "lam=0.1", "--out", str(tmp_path)])
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--out" in p.stderr
    p = _subprocess(["theory", "--stage", "pretrain", "--sigma", "linear", "--lam-prime", "inf", "--json"])
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert loads_strict(p.stdout)["params"]["lam_prime"] == "inf"


def test_subprocess_ctrl_c_exits_130_with_one_line(tmp_path):
    out = tmp_path / "s.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # linear σ, small n_mc: a few seconds a point once compiled; interrupted as soon as the first row is saved
    proc = subprocess.Popen(LORA_ATTN + ["sweep", "--sigma", "linear", "--n-mc", "200", "--vary",
                                         "alpha_prime=1,1.5,2,2.5,3,3.5,4,4.5", "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before the interrupt")
    assert proc.returncode == 130 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("lora-attn sweep: interrupted: ") and "the same command resumes" in last
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    if out.exists():
        pd.read_csv(out)
