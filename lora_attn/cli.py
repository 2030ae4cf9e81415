"""The ``lora-attn`` command line: ``simulate``, ``theory``, ``sweep``, ``validate``. Parsing and dispatch only.

Every subcommand takes one flag per parameter of :class:`model.params.Params`, generated from the fields'
metadata (defaults as MODEL.md §6); the parameters are validated before anything heavy is loaded, then
:mod:`lora_attn.commands` does the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Any, Sequence

from model.params import PARAM_NAMES, ParameterError, Params
from lora_attn import exit_codes


def _flag_type(name: str, parse: Any, doc: str):
    """``parse`` for argparse, with an error that names the parameter and what it allows."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} = {text!r} is not understood: allowed {doc}") from None
    convert.__name__ = name
    return convert


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`Params` (``--alpha-prime`` for ``alpha_prime``), generated from the
    fields' metadata: the MODEL.md symbol and doc in the help, the parser and choices, the default."""
    g = parser.add_argument_group("model parameters (MODEL.md §5)")
    for f in dataclasses.fields(Params):
        meta = f.metadata
        default = "none" if f.default is None else f.default
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                       type=_flag_type(f.name, meta["flag_type"], meta["doc"]), **meta["flag"],
                       help=f"{meta['symbol']}: {meta['doc']} (default {default})")


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """Where the simulations' seeds run (:mod:`simulate.executors`): the unit of work is one
    ``(parameters, D, seed)``; with ``--cache-dir`` each finished seed is stored, so a rerun resumes."""
    g = parser.add_argument_group("where the simulations run")
    g.add_argument("--executor", choices=("serial", "local", "dask"), default="serial",
                   help="serial (default: here, one seed after the other), local (a pool of --workers processes), "
                        "dask (a dask.distributed cluster at --scheduler, or a LocalCluster of --workers processes)")
    g.add_argument("--workers", type=int, default=None, help="processes of a local pool or LocalCluster "
                                                             "(default: the number of CPUs)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler (tcp://host:8786), with --executor dask")


def params_from_args(args: argparse.Namespace) -> Params:
    """Build (and validate) :class:`Params` from parsed flags."""
    return Params(**{name: getattr(args, name) for name in PARAM_NAMES})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lora-attn",
        description="Theory and finite-size simulation of LoRA fine-tuning of a tied attention layer.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="finite-D simulation of both stages (the ground truth)")
    add_param_flags(sim)
    sim.add_argument("--D", type=int, required=True, help="embedding dimension D")
    sim.add_argument("--seeds", type=int, default=1, help="number of independent seeds averaged (default 1)")
    sim.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    sim.add_argument("--n-test", type=int, default=None, help="fresh test sequences (default 10·D)")
    sim.add_argument("--restarts", type=int, default=3, help="fine-tuning restarts (default 3)")
    sim.add_argument("--pretrain-solver", choices=("lbfgs", "convex"), default="lbfgs",
                     help="train W by L-BFGS (default) or solve the convex S ⪰ 0 problem (linear σ, κ ≥ 1)")
    sim.add_argument("--cache-dir", default=None,
                     help="store / reuse trained pre-training weights here (they depend on no fine-tuning flag)")
    sim.add_argument("--train-gram", choices=("tokens", "identity"), default="tokens",
                    help="token Gram XXᵀ/D in the training losses: the model's (default) or its D → ∞ limit I_T "
                         "(a diagnostic of the finite-D output effect)")
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    add_executor_flags(sim)
    sim.set_defaults(command_name="simulate")

    sw = sub.add_parser("sweep", help="parameter sweeps as tidy tables (one row per point)")
    add_param_flags(sw)
    sw.add_argument("--vary", action="append", required=True, metavar="NAME=v1,v2,...|NAME=start:stop:num",
                    help="an axis of the sweep (repeatable; log:start:stop:num for log spacing)")
    sw.add_argument("--simulate", action="store_true",
                    help="simulate every point (needs --D); without it the theory is solved")
    sw.add_argument("--theory", action="store_true",
                    help="with --simulate, add the theory beside the simulation (columns NAME_theory)")
    sw.add_argument("--stage", choices=("both", "pretrain"), default="both",
                    help="theory stage (default both: pre-training chained into fine-tuning)")
    sw.add_argument("--bayes", nargs="?", const="all", choices=("all", "pretrain", "finetune", "two_stage"),
                    default=None,
                    help="add Bayes-optimal baselines (all, or one stage; the fine-tuning one costs 10–30 s a point; "
                         "two_stage: all and the baseline conditioning on the pre-training data, q_BO2, E_ft_BO2)")
    sw.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel (theory)")
    sw.add_argument("--D", type=int, default=None, help="embedding dimension of the simulations")
    sw.add_argument("--seeds", type=int, default=2, help="seeds per simulated point (default 2)")
    sw.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    sw.add_argument("--cache-dir", default=None, help="reuse trained pre-training weights across points")
    sw.add_argument("--out", required=True, help="output table, .csv or .parquet (resumes if it exists)")
    sw.add_argument("--overwrite", action="store_true",
                    help="replace an --out table that holds another sweep's rows (refused otherwise: they would be "
                         "lost)")
    add_executor_flags(sw)
    sw.set_defaults(command_name="sweep")

    th = sub.add_parser("theory", help="asymptotic (D → ∞) theory")
    add_param_flags(th)
    th.add_argument("--stage", choices=("both", "pretrain", "finetune"), default="both",
                    help="which stage (default both: pre-training chained into fine-tuning)")
    th.add_argument("--pretrain", default=None, metavar="Q0=..,Q=..,M=..[,V=..]",
                    help="pre-training order parameters fed to the fine-tuning theory")
    th.add_argument("--q0", type=float, default=1.0, help="‖w*‖²/D fed to the fine-tuning theory (default 1)")
    th.add_argument("--bayes", action="store_true", help="add the Bayes-optimal fine-tuning baseline (10–30 s)")
    th.add_argument("--bayes-two-stage", action="store_true",
                    help="add both Bayes-optimal fine-tuning baselines: conditioning on Ŵ (q_BO, E_ft_BO) and on the "
                         "pre-training data (q_BO2, E_ft_BO2; README, Prescriptions)")
    th.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel")
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.set_defaults(command_name="theory")

    op = sub.add_parser("optimize", help="the parameter values that minimise an observable of the theory")
    add_param_flags(op)
    op.add_argument("--over", default="lam_prime", metavar="NAME[,NAME...]",
                    help="parameters to search (lam, lam_prime, beta_W, active_rho, alpha, alpha_prime, kappa, "
                         "pool_ratio, beta, reuse; default lam_prime); several: coordinate-wise; or the LoRA rank "
                         "alone (discrete: every rank in --bounds rank=lo:hi, default 1:4)")
    op.add_argument("--minimize", default="E_ft", help="observable to minimise (default E_ft)")
    op.add_argument("--bounds", action="append", default=[], metavar="NAME=lo:hi",
                    help="search interval of a parameter (repeatable; default per parameter)")
    op.add_argument("--n-grid", type=int, default=7, help="grid points before the bounded refinement (default 7)")
    op.add_argument("--xtol", type=float, default=1e-2,
                    help="tolerance on the search scale (log: relative; default 0.01)")
    op.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel")
    op.add_argument("--out", default=None, help="write the searched curve (.csv or .parquet)")
    op.add_argument("--json", action="store_true", help="print one JSON object")
    op.set_defaults(command_name="optimize")

    tr = sub.add_parser("thresholds", help="switch-off λ'_c, weak-recovery α'_c (ERM and Bayes), RS boundary, "
                                           "mismatch crossing λ'_×")
    add_param_flags(tr)
    tr.add_argument("--no-bayes", action="store_true", help="skip the Bayes-optimal α'_c (about 10 s)")
    tr.add_argument("--rs-along", choices=("alpha_prime", "lam_prime"), default=None,
                    help="also bisect the replica-symmetry boundary along this parameter (a few minutes)")
    tr.add_argument("--rs-bounds", default="0.3:10", metavar="lo:hi", help="bracket of --rs-along (default 0.3:10)")
    tr.add_argument("--mismatch", action="store_true",
                    help="also find λ'_× where reused and fresh sequences give the same E_ft (a few minutes)")
    tr.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel")
    tr.add_argument("--json", action="store_true", help="print one JSON object")
    tr.set_defaults(command_name="thresholds")

    va = sub.add_parser("validate", help="theory against simulation at several D: a family-wise test with its power, "
                                         "the 1/D trend, a verdict agree / disagree / inconclusive (exit 0 / 3 / 5)")
    add_param_flags(va)
    va.add_argument("--D", default="100,150,200", help="comma-separated dimensions (default 100,150,200)")
    va.add_argument("--seeds", type=int, default=4, help="seeds per dimension (default 4)")
    va.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    va.add_argument("--level", type=float, default=0.01,
                    help="family-wise level: the chance that some observable is said to disagree when the theory is "
                         "exact (Student-t per observable, Holm over them; default 0.01)")
    va.add_argument("--tolerance", type=float, default=0.05,
                    help="agree only if the run could see (80%% power) a gap of this fraction of |theory| in every "
                         "observable (default 0.05)")
    va.add_argument("--abs-tolerance", type=float, default=0.0,
                    help="absolute floor of that gap, for observables whose theory value is near 0 (default 0)")
    va.add_argument("--extrapolation", choices=("inv_D", "inv_sqrt_D"), default="inv_D",
                    help="the finite-size fit of the gap: a + b/D (default) or a + b/√D")
    va.add_argument("--control-variate", action="store_true",
                    help="estimate Q, M, E_pre, L_pre with the teacher's Q0 (exact mean) as a control variate, with 5 "
                         "seeds or more (default: plain seed means)")
    va.add_argument("--z-max", type=float, default=None, help="deprecated and ignored: the verdict is the test at --level")
    va.add_argument("--criterion", choices=("largest", "extrapolated"), default="largest",
                    help="test the gap at the largest D (default) or extrapolated to D = ∞ by the fit (needs 3 sizes)")
    va.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel (theory)")
    va.add_argument("--replicas", type=int, default=4,
                    help="independent Monte-Carlo replicas of the softmax pre-training theory, for its error bars "
                         "(default 4)")
    va.add_argument("--finetune-keys", type=int, default=4,
                    help="Monte-Carlo keys of the fine-tuning theory: the spread of its observables over them is "
                         "its error bar on q, m, o_w, … (added to the seeds' error; default 4; 0 or 1: only the "
                         "within-solve errors of E_ft, E_frozen, L_ft)")
    va.add_argument("--train-gram", choices=("tokens", "identity"), default="tokens",
                    help="token Gram XXᵀ/D in the training losses: the model's (default) or its D → ∞ limit I_T "
                         "(a diagnostic of the finite-D output effect)")
    va.add_argument("--pretrain-from", choices=("theory", "simulation"), default="theory",
                    help="the pre-training order parameters the fine-tuning theory is fed: the pre-training "
                         "theory's (default: both stages validated), or each seed's measured Q0, Q, M, q0 "
                         "(the fine-tuning stage alone, seed by seed; reused sequences take V from the theory)")
    va.add_argument("--theory-at-infinity", action="store_true",
                    help="compare with the D = ∞ theory at every D (default: linear-σ test errors carry the exact "
                         "output-Gram factor 1 + c_T/D of theory.finite_size, c_3 = 5.5)")
    va.add_argument("--cache-dir", default=None, help="reuse trained pre-training weights")
    va.add_argument("--out", default=None, help="write the table (.csv or .parquet)")
    va.add_argument("--plot", default=None, metavar="PATH",
                    help="draw gap against 1/D per observable (.png/.pdf/.svg)")
    add_executor_flags(va)
    va.set_defaults(command_name="validate")

    fs = sub.add_parser("finite-size-study",
                        help="the open finite-size questions (README) at large D, on any executor, with tables and plots")
    fs.add_argument("--study", action="append", default=[], metavar="NAME",
                    help="softmax_pretrain, softmax_finetune or linear_pretrain (repeatable; default all three)")
    fs.add_argument("--D", default="200,400,800,1600", help="comma-separated dimensions (default 200,400,800,1600)")
    fs.add_argument("--seeds", type=int, default=8, help="seeds per dimension (default 8)")
    fs.add_argument("--extrapolation", choices=("inv_D", "inv_sqrt_D"), default="inv_D",
                    help="the fit of the gap against D: a + b/D (default) or a + b/√D")
    fs.add_argument("--cache-dir", default=None, help="keep trained weights and finished seeds here (resumable)")
    fs.add_argument("--out", required=True, help="output folder: <study>.csv, <study>.png, <study>.txt")
    add_executor_flags(fs)
    # the studies carry their own parameters: the defaults fill the Params fields main() validates
    fs.set_defaults(command_name="finite_size_study",
                    **{f.name: f.default for f in dataclasses.fields(Params)})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the exit status is one of :data:`lora_attn.exit_codes.ALL` (README, *Exit codes*):
    bad input exits 2 before any work, Ctrl-C exits 130 with one line saying what was saved."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        from lora_attn.checks import check_args, given_flags  # pandas: loaded within reach of Ctrl-C

        params = params_from_args(args)
        for warning in check_args(args, params, given_flags(parser, argv)):
            print(f"lora-attn {args.command}: warning: {warning}", file=sys.stderr)
        # the library (JAX, the solvers) is loaded only once the parameters are known to be valid
        commands = importlib.import_module("lora_attn.commands")
        from model import compile_cache

        compile_cache.enable(compile_cache.user_folder())
        return getattr(commands, f"cmd_{args.command_name}")(args, params)
    except ParameterError as err:
        print(f"lora-attn: error: {err}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    except KeyboardInterrupt as err:
        print(f"lora-attn {args.command}: interrupted: {interrupt_note(args, err)}", file=sys.stderr)
        return exit_codes.INTERRUPTED


def interrupt_note(args: argparse.Namespace, err: BaseException) -> str:
    """What an interrupted command saved and how to resume it (one line)."""
    note = getattr(err, "note", None)
    if note:
        return note
    cache = getattr(args, "cache_dir", None)
    if args.command_name in ("simulate", "validate", "sweep") and cache is not None:
        return f"finished seeds and trained weights are kept in {cache}; the same command resumes from them"
    if args.command_name in ("simulate", "validate"):
        return "nothing was saved (with --cache-dir DIR finished seeds are kept and a rerun resumes)"
    return "nothing was saved; rerun the command"


if __name__ == "__main__":
    sys.exit(main())
