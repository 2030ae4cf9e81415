"""Checks of the command line made before any work: ranges of the options that are not model parameters, output
and cache folders, and flags that do not apply to what was asked (README, *Exit codes, limits and resuming*).

:func:`given_flags` says which options were typed (a default is not a choice); :func:`check_args` raises
:class:`model.params.ParameterError` (exit 2) for a value out of range, a path that cannot be written, or a
flag whose work would not run, and returns warnings (printed on stderr) for model parameters that the chosen
stage does not use.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from model.params import ParameterError, Params
from model.tables import check_output_path, check_writable_folder

#: ``jax.random.PRNGKey`` takes a signed 64-bit seed; a negative one is refused by numpy's generators.
SEED_MAX = 2**63 - 1

#: Parameters only the fine-tuning uses, and only the pre-training uses (MODEL.md §3, §5).
FINETUNE_ONLY = ("alpha_prime", "lam_prime", "reuse", "recalibrate", "active_rho", "pool_ratio", "rank",
                 "teacher_rank", "teacher_law")
PRETRAIN_ONLY = ("kappa0", "kappa", "alpha", "lam")


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations of the options present in ``argv`` (``argv[0]`` the subcommand), however abbreviated:
    ``argv`` parsed again with every default suppressed."""
    if not argv:
        return set()
    sub = _subparser(parser, argv[0])
    if sub is None:
        return set()
    saved = [(a, a.default, a.required) for a in sub._actions]
    try:
        for a in sub._actions:
            a.default, a.required = argparse.SUPPRESS, False
        ns, _ = sub.parse_known_args(list(argv[1:]), argparse.Namespace())
    finally:
        for a, default, required in saved:
            a.default, a.required = default, required
    return set(vars(ns)) - set(sub._defaults)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _at_least(args: argparse.Namespace, dest: str, low: int) -> None:
    value = getattr(args, dest, None)
    if value is not None and value < low:
        raise ParameterError(f"{_flag(dest)} {value} is out of range: allowed an integer {dest} ≥ {low}")


def _seed(args: argparse.Namespace) -> None:
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ParameterError(f"--seed {seed} is out of range: allowed an integer 0 ≤ seed ≤ 2^63 − 1")


def _refuse(given: set[str], dests: Sequence[str], why: str) -> None:
    typed = [_flag(d) for d in dests if d in given]
    if typed:
        raise ParameterError(f"{', '.join(typed)} {'does' if len(typed) == 1 else 'do'} not apply {why}")


def _unused(given: set[str], dests: Sequence[str], why: str) -> list[str]:
    typed = [_flag(d) for d in dests if d in given]
    return [f"{', '.join(typed)} {'is' if len(typed) == 1 else 'are'} not used {why}"] if typed else []


def check_args(args: argparse.Namespace, params: Params, given: set[str]) -> list[str]:
    """Every check of ``args`` that needs no computation (module doc); returns the warnings to print."""
    command = args.command_name
    # flags that do not apply first: their values are not the problem
    warnings = _check_sweep(args, given) if command == "sweep" else \
        _check_theory(args, given) if command == "theory" else []
    for dest in ("seeds", "restarts", "n_test", "workers"):
        _at_least(args, dest, 1)
    _at_least(args, "n_mc", 2)
    _seed(args)
    if getattr(args, "cache_dir", None) is not None:
        check_writable_folder(args.cache_dir, "--cache-dir", create=True)
    if getattr(args, "pretrain_solver", "lbfgs") == "convex" and (params.sigma != "linear" or params.kappa < 1):
        raise ParameterError("--pretrain-solver convex needs --sigma linear and --kappa ≥ 1")
    if command == "sweep":
        check_output_path(args.out)
    return warnings


def _check_sweep(args: argparse.Namespace, given: set[str]) -> list[str]:
    if not args.simulate:
        _refuse(given, ("D", "seeds", "seed", "cache_dir", "executor", "workers", "scheduler"),
                "without --simulate (the theory is solved at D = ∞)")
    elif not args.theory:
        _refuse(given, ("stage", "bayes", "n_mc"), "with --simulate alone (add --theory for the theory columns)")
    if args.stage != "pretrain" or args.simulate:  # the simulations run both stages
        return []
    warnings = _unused(given, FINETUNE_ONLY, "by --stage pretrain")
    warnings += _unused(given, ("n_mc",), "by --stage pretrain (Monte-Carlo draws of the fine-tuning channel)")
    if args.bayes == "finetune":
        warnings.append("--bayes finetune is not used by --stage pretrain")
    return warnings


def _check_theory(args: argparse.Namespace, given: set[str]) -> list[str]:
    # with --stage pretrain the warning for every fine-tuning parameter (FINETUNE_ONLY) covers it
    simulated_only = [] if args.stage == "pretrain" else _unused(
        given, ("teacher_law",), "by the theory (it sets the simulated teacher; as D → ∞ both laws give q0 = I)")
    return simulated_only + _check_theory_stage(args, given)


def _check_theory_stage(args: argparse.Namespace, given: set[str]) -> list[str]:
    if args.stage != "finetune":
        _refuse(given, ("pretrain",), f"to --stage {args.stage}: the pre-training order parameters are solved "
                                      "(--pretrain feeds --stage finetune)")
    if args.stage == "pretrain":
        _refuse(given, ("q0",), "to --stage pretrain (‖w*‖²/D of the fine-tuning)")
        warnings = _unused(given, FINETUNE_ONLY, "by --stage pretrain")
        warnings += _unused(given, ("n_mc",), "by --stage pretrain (Monte-Carlo draws of the fine-tuning channel)")
        warnings += _unused(given, ("bayes",), "by --stage pretrain (the Bayes-optimal pre-training is always given)")
        return warnings
    if args.stage == "finetune":
        return _unused(given, PRETRAIN_ONLY, "by --stage finetune (the pre-training enters through --pretrain)")
    return []
