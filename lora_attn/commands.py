"""The work behind each ``lora-attn`` subcommand: ``params`` already validated, the flags parsed.

Each ``cmd_<name>(args, params)`` calls the library (:func:`simulate.run`, :func:`theory.solve`,
:func:`validation.sweep.sweep_table`, :func:`validation.workflow.run_validation`), prints, and returns the exit
status. :mod:`lora_attn.cli` imports this module only after the parameters have been checked, so bad input
and ``--help`` do not wait for JAX.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import simulate
import theory
from model.params import ParameterError, Params
from model.tables import check_output_path, write_table
from lora_attn import exit_codes
from model import jsonsafe
from theory import progress
from theory.limits import cost_note
from validation.compare import check_plot_path, check_writable_folder, format_table, plot_validation, rs_note
from validation.sweep import sweep_table
from validation.workflow import run_validation


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _print_table(result) -> None:
    p = result.params
    print(f"lora-attn simulate: D = {result.D}, seeds = {result.seeds} (base seed {result.seed})")
    print("params: " + ", ".join(f"{k}={v}" for k, v in p.to_dict().items()))
    width = max(len(n) for n in result.observables)
    print(f"{'observable':<{width}}  {'mean':>12}  {'sem':>10}")
    for name, mean in result.observables.items():
        print(f"{name:<{width}}  {_fmt(mean):>12}  {_fmt(result.sem[name]):>10}")
    diag = result.per_seed
    for col in ("pretrain_grad_norm", "finetune_grad_norm"):
        print(f"{col} (max over seeds): {_fmt(float(diag[col].max()))}")


def cmd_simulate(args: argparse.Namespace, params: Params) -> int:
    with executor_from_args(args) as executor:
        result = simulate.run(params, args.D, args.seeds, seed=args.seed, n_test=args.n_test,
                              n_restarts=args.restarts, pretrain_solver=args.pretrain_solver, progress=True,
                              cache_dir=args.cache_dir, train_gram=args.train_gram, executor=executor)
    if args.json:
        print(jsonsafe.dumps(result.to_json_dict()))
    else:
        _print_table(result)
    return 0


def executor_from_args(args: argparse.Namespace):
    """The executor of ``--executor/--workers/--scheduler`` (:func:`simulate.executors.make_executor`; a context
    manager that releases its workers); bad settings raise :class:`ParameterError` before any work."""
    from simulate.executors import make_executor
    return make_executor(getattr(args, "executor", "serial"), workers=getattr(args, "workers", None),
                         scheduler=getattr(args, "scheduler", None))


def _bayes_arg(value: str | None) -> bool | str:
    return {None: False, "all": True, "pretrain": "pretrain", "finetune": "finetune", "two_stage": "two_stage"}[value]


def cmd_sweep(args: argparse.Namespace, params: Params) -> int:
    with executor_from_args(args) as executor, progress.report("sweep"):
        table, not_converged = sweep_table(
            params, args.vary, out=args.out, run_simulation=args.simulate,
            run_theory=args.theory or not args.simulate,
            stage=args.stage, bayes=_bayes_arg(args.bayes), n_mc=args.n_mc, D=args.D, seeds=args.seeds,
            seed=args.seed, cache_dir=args.cache_dir, executor=executor, overwrite=args.overwrite)
    print(f"lora-attn sweep: {len(table)} points written to {args.out}")
    if not_converged:
        print(f"lora-attn sweep: the theory did not converge at {not_converged} of the table's {len(table)} point(s) "
              "(converged = False, observables empty)", file=sys.stderr)
        return exit_codes.NOT_CONVERGED
    return exit_codes.OK


def _parse_sizes(text: str) -> list[int]:
    try:
        Ds = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ParameterError(f"--D {text!r}: allowed a comma-separated list of integers D ≥ 2") from None
    if not Ds or Ds[0] < 2:
        raise ParameterError(f"--D {text!r}: allowed a comma-separated list of integers D ≥ 2")
    return Ds


#: The exit status of each verdict of ``validate``.
VERDICT_EXIT = {"agree": exit_codes.OK, "disagree": exit_codes.DISAGREE, "inconclusive": exit_codes.INCONCLUSIVE}


def cmd_validate(args: argparse.Namespace, params: Params) -> int:
    Ds = _parse_sizes(args.D)
    if args.z_max is not None:
        if not (math.isfinite(args.z_max) and args.z_max > 0):
            raise ParameterError(f"--z-max {args.z_max}: allowed a finite number > 0 "
                                 "(and it is deprecated: see --level)")
        print("lora-attn validate: --z-max is deprecated and ignored: the verdict is a Student-t test per observable "
              "with Holm's correction at the family-wise --level (README, validate)", file=sys.stderr)
    if args.out is not None:
        check_output_path(args.out)
        check_writable_folder(args.out, "--out")
    if args.plot is not None:
        check_plot_path(args.plot)
    with executor_from_args(args) as executor:
        run = run_validation(params, Ds=Ds, seeds=args.seeds, seed=args.seed, level=args.level,
                             tolerance=args.tolerance, abs_tolerance=args.abs_tolerance, criterion=args.criterion,
                             extrapolation=args.extrapolation, control_variate=args.control_variate, n_mc=args.n_mc,
                             replicas=args.replicas, finetune_keys=args.finetune_keys, train_gram=args.train_gram,
                             pretrain_from=args.pretrain_from, theory_at_infinity=args.theory_at_infinity,
                             cache_dir=args.cache_dir,
                             executor=executor if getattr(args, "executor", "serial") != "serial" else None)
    print(format_table(run.validation))
    if args.out is not None:
        write_table(run.validation.table, args.out)
    if args.plot is not None:
        print(f"[validate] plot: {plot_validation(run.validation, args.plot)}", file=sys.stderr)
    if not run.converged:
        print("lora-attn validate: the theory did not converge: no verdict", file=sys.stderr)
        return exit_codes.NOT_CONVERGED
    return VERDICT_EXIT[run.validation.verdict]


def cmd_theory(args: argparse.Namespace, params: Params) -> int:
    if args.stage == "finetune" and args.pretrain is None:
        raise ParameterError("stage 'finetune' needs the pre-training order parameters: --pretrain Q0=..,Q=..,M=..")
    pre = theory.parse_pretrain(args.pretrain) if args.pretrain is not None and args.stage == "finetune" else None
    if args.q0 <= 0:
        raise ParameterError(f"q0 = {args.q0} is out of range: allowed q0 > 0")
    # the Bayes-optimal pre-training baseline is cheap and always given; --bayes adds the fine-tuning one
    bayes = "two_stage" if getattr(args, "bayes_two_stage", False) else True if args.bayes else "pretrain"
    theory.check(params, stage=args.stage, pretrain=pre, q0=args.q0, n_mc=args.n_mc, bayes=bayes)
    note = cost_note(params, stage=args.stage)
    if note:
        print(f"lora-attn theory: {note}", file=sys.stderr)
    with progress.report("theory"):  # on stderr, whatever the output format
        result = theory.solve(params, stage=args.stage, pretrain=pre, q0=args.q0, bayes=bayes, n_mc=args.n_mc)
    for part, reason in not_converged_reasons(result):
        print(f"lora-attn theory: {part} did not converge: {reason} (its observables are reported empty)",
              file=sys.stderr)
    if args.json:
        print(jsonsafe.dumps(result.to_json_dict()))
    else:
        print(f"lora-attn theory --stage {result.stage}: converged = {result.converged}")
        if result.pretrain is not None:
            p = result.pretrain
            print(f"pre-training order parameters: Q0 = {p.Q0:g}, Q = {p.Q:g}, M = {p.M:g}")
        for name, value in result.observables.items():
            print(f"{name:<10} {_fmt(value):>12}")
        note = rs_note(result.diagnostics.get("finetune", {}))
        if note:
            print(f"warning: the fine-tuning fixed point{note}; the replica-symmetric numbers are not expected "
                  "to be exact there (README, Theory against simulation)")
    return exit_codes.OK if result.converged else exit_codes.NOT_CONVERGED


def not_converged_reasons(result) -> list[tuple[str, str]]:
    """``(part, why)`` for every part of a :class:`theory.TheoryPoint` that did not converge."""
    out = []
    for part, diag in result.diagnostics.items():
        if not isinstance(diag, dict) or part == "mc_sem":
            continue
        status = diag.get("status")
        if status in (None, "converged", "root", "not modelled"):
            continue
        why = diag.get("reason") or f"status {status}" + (f", residual {diag['residual']:.3g}"
                                                         if isinstance(diag.get("residual"), float) else "")
        out.append((part, why))
    return out if not result.converged else []


def _parse_bounds(items: list[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, rng = item.partition("=")
        lo, sep2, hi = rng.partition(":")
        try:
            if not (sep and sep2):
                raise ValueError
            out[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise ParameterError(f"--bounds {item!r}: allowed NAME=lo:hi") from None
    return out


def cmd_optimize(args: argparse.Namespace, params: Params) -> int:
    """``lora-attn optimize``: :func:`theory.optimize` (README, Prescriptions)."""
    if args.out is not None:
        check_output_path(args.out)
    over = [n.strip() for n in args.over.split(",") if n.strip()]
    res = theory.optimize(params, minimize=args.minimize, over=over, bounds=_parse_bounds(args.bounds),
                          n_grid=args.n_grid, xtol=args.xtol, n_mc=args.n_mc, progress=not args.json)
    if args.out is not None:
        write_table(res.curve, args.out)
    if args.json:
        print(jsonsafe.dumps(res.to_json_dict()))
    else:
        print(f"lora-attn optimize: minimise {res.minimize} over {', '.join(res.over)} ({res.method})")
        for n, v in res.argmin.items():
            print(f"argmin {n:<12} {_fmt(v):>12}   bounds {res.bounds[n]}")
        if res.over == ("rank",):  # discrete: every value was solved
            for row in res.curve.itertuples():
                print(f"rank {row.rank}: {res.minimize} = {_fmt(row.value)}")
        print(f"minimum {res.minimize} = {_fmt(res.minimum)}; converged = {res.converged}; "
              f"{res.n_evaluations} evaluations ({res.excluded} not converged, excluded); unimodal = {res.unimodal}")
        if res.point is not None:
            o = res.point.observables
            print("at the minimiser: " + ", ".join(f"{k} = {_fmt(o[k])}" for k in
                                                     ("E_ft", "E_frozen", "delta_eff", "beta_W", "q", "o_w", "tr_q",
                                                      "o_U") if k in o))
        for note in res.notes:
            print(f"note: {note}")
    return exit_codes.OK if res.converged else exit_codes.NOT_CONVERGED


def cmd_thresholds(args: argparse.Namespace, params: Params) -> int:
    """``lora-attn thresholds``: :func:`theory.thresholds` (README, Prescriptions)."""
    lo, sep, hi = args.rs_bounds.partition(":")
    try:
        rs_bounds = (float(lo), float(hi))
    except ValueError:
        raise ParameterError(f"--rs-bounds {args.rs_bounds!r}: allowed lo:hi") from None
    th = theory.thresholds(params, bayes=not args.no_bayes, rs_along=args.rs_along, rs_bounds=rs_bounds,
                           mismatch=args.mismatch, n_mc=args.n_mc)
    if args.json:
        print(jsonsafe.dumps(th.to_json_dict()))
        return exit_codes.OK
    lc = th.lam_prime_c
    print(f"lora-attn thresholds at alpha_prime = {lc.alpha_prime:g}, lam_prime = {params.lam_prime:g}")
    print(f"switch-off ridge   lam_prime_c = {_fmt(lc.lam_prime_c)} ({lc.mechanism}; w = 0 above it)")
    print(f"ERM weak recovery  alpha_prime_c(lam_prime) = {_fmt(th.alpha_prime_c)} (w = 0 below it)")
    if th.bayes_alpha_prime_c is not None:
        print(f"Bayes-optimal      alpha_prime_c = {_fmt(th.bayes_alpha_prime_c[0])} ± {_fmt(th.bayes_alpha_prime_c[1])} "
              "(given the ERM weights)")
    if th.bayes_alpha_prime_c_two_stage is not None:
        bo2 = th.bayes_alpha_prime_c_two_stage
        print(f"Bayes-optimal      alpha_prime_c = {_fmt(bo2[0])} ± {_fmt(bo2[1])} (given the pre-training data)")
    if th.rs_boundary is not None:
        b = th.rs_boundary
        print(f"RS boundary along {b.along}: {_fmt(b.value)} (bracket {b.bracket}, stable at ends {b.stable_at})")
    if th.mismatch is not None:
        print(f"mismatch crossing  lam_prime_x = {_fmt(th.mismatch.lam_prime_x)}")
    return exit_codes.OK


def cmd_finite_size_study(args: argparse.Namespace, params: Params) -> int:
    """``lora-attn finite-size-study``: :func:`validation.finite_size_study.run_study` for each ``--study``."""
    from validation.finite_size_study import check_studies, run_study

    names = check_studies(args.study)
    Ds = _parse_sizes(args.D)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {args.out!r} is a file: allowed a folder (created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ParameterError(f"--out {args.out!r}: cannot create this folder ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise ParameterError(f"--out {args.out!r}: this folder is not writable")
    status = exit_codes.OK
    with executor_from_args(args) as executor:
        for name in names:
            run = run_study(name, Ds=Ds, seeds=args.seeds, out=args.out, executor=executor, cache_dir=args.cache_dir,
                            extrapolation=args.extrapolation)
            print(f"[finite-size-study] {name}: {run.validation.verdict} -> {out / name}.csv, .png, .txt",
                  file=sys.stderr)
            if not run.converged:
                status = exit_codes.NOT_CONVERGED
    return status

