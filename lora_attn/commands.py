"""The work behind each ``lora-attn`` subcommand: ``params`` already validated, the flags parsed.

Each ``cmd_<name>(args, params)`` calls the library (:func:`simulate.run`, :func:`theory.solve`,
:func:`validation.sweep.sweep_table`, :func:`validation.workflow.run_validation`), prints, and returns the exit
status. :mod:`lora_attn.cli` imports this module only after the parameters have been checked, so bad input
and ``--help`` do not wait for JAX.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import simulate
import theory
from model.params import ParameterError, Params
from model.tables import check_output_path, write_table
from validation.compare import format_table, plot_validation, rs_note
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
    result = simulate.run(params, args.D, args.seeds, seed=args.seed, n_test=args.n_test, n_restarts=args.restarts,
                          pretrain_solver=args.pretrain_solver, progress=not args.json, cache_dir=args.cache_dir,
                          train_gram=args.train_gram)
    if args.json:
        json.dump(result.to_json_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_table(result)
    return 0


def _bayes_arg(value: str | None) -> bool | str:
    return {None: False, "all": True, "pretrain": "pretrain", "finetune": "finetune"}[value]


def cmd_sweep(args: argparse.Namespace, params: Params) -> int:
    table, not_converged = sweep_table(
        params, args.vary, out=args.out, run_simulation=args.simulate,
        run_theory=args.theory or not args.simulate,
        stage=args.stage, bayes=_bayes_arg(args.bayes), n_mc=args.n_mc, D=args.D, seeds=args.seeds, seed=args.seed,
        cache_dir=args.cache_dir)
    print(f"lora-attn sweep: {len(table)} points written to {args.out}")
    if not_converged:
        print(f"lora-attn sweep: the theory did not converge at {not_converged} point(s) "
              "(converged = False in the table)", file=sys.stderr)
        return 4
    return 0


def _parse_sizes(text: str) -> list[int]:
    try:
        Ds = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ParameterError(f"--D {text!r}: allowed a comma-separated list of integers D ≥ 2") from None
    if not Ds or Ds[0] < 2:
        raise ParameterError(f"--D {text!r}: allowed a comma-separated list of integers D ≥ 2")
    return Ds


def cmd_validate(args: argparse.Namespace, params: Params) -> int:
    if args.out is not None:
        check_output_path(args.out)
    run = run_validation(params, Ds=_parse_sizes(args.D), seeds=args.seeds, seed=args.seed, z_max=args.z_max,
                         criterion=args.criterion, n_mc=args.n_mc, replicas=args.replicas,
                         finetune_keys=args.finetune_keys, train_gram=args.train_gram,
                         pretrain_from=args.pretrain_from, theory_at_infinity=args.theory_at_infinity,
                         cache_dir=args.cache_dir)
    print(format_table(run.validation))
    if args.out is not None:
        write_table(run.validation.table, args.out)
    if args.plot is not None:
        print(f"[validate] plot: {plot_validation(run.validation, args.plot)}", file=sys.stderr)
    if not run.converged:
        print("lora-attn validate: the theory did not converge", file=sys.stderr)
        return 4
    return 0 if run.validation.ok else 1


def cmd_theory(args: argparse.Namespace, params: Params) -> int:
    if args.stage == "finetune" and args.pretrain is None:
        raise ParameterError("stage 'finetune' needs the pre-training order parameters: --pretrain Q0=..,Q=..,M=..")
    pre = theory.parse_pretrain(args.pretrain) if args.pretrain is not None and args.stage == "finetune" else None
    if args.q0 <= 0:
        raise ParameterError(f"q0 = {args.q0} is out of range: allowed q0 > 0")
    # the Bayes-optimal pre-training baseline is cheap and always given; --bayes adds the fine-tuning one
    bayes = True if args.bayes else "pretrain"
    result = theory.solve(params, stage=args.stage, pretrain=pre, q0=args.q0, bayes=bayes, n_mc=args.n_mc)
    if args.json:
        json.dump(result.to_json_dict(), sys.stdout)
        sys.stdout.write("\n")
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
    return 0 if result.converged else 4
