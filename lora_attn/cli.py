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
    sw.add_argument("--bayes", nargs="?", const="all", choices=("all", "pretrain", "finetune"), default=None,
                    help="add Bayes-optimal baselines (all, or one stage; the fine-tuning one costs 10–30 s a point)")
    sw.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel (theory)")
    sw.add_argument("--D", type=int, default=None, help="embedding dimension of the simulations")
    sw.add_argument("--seeds", type=int, default=2, help="seeds per simulated point (default 2)")
    sw.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    sw.add_argument("--cache-dir", default=None, help="reuse trained pre-training weights across points")
    sw.add_argument("--out", required=True, help="output table, .csv or .parquet (resumes if it exists)")
    sw.set_defaults(command_name="sweep")

    th = sub.add_parser("theory", help="asymptotic (D → ∞) theory")
    add_param_flags(th)
    th.add_argument("--stage", choices=("both", "pretrain", "finetune"), default="both",
                    help="which stage (default both: pre-training chained into fine-tuning)")
    th.add_argument("--pretrain", default=None, metavar="Q0=..,Q=..,M=..[,V=..]",
                    help="pre-training order parameters fed to the fine-tuning theory")
    th.add_argument("--q0", type=float, default=1.0, help="‖w*‖²/D fed to the fine-tuning theory (default 1)")
    th.add_argument("--bayes", action="store_true", help="add the Bayes-optimal fine-tuning baseline (10–30 s)")
    th.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel")
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.set_defaults(command_name="theory")

    va = sub.add_parser("validate", help="theory against simulation at several D, with z-scores and the 1/D trend")
    add_param_flags(va)
    va.add_argument("--D", default="100,150,200", help="comma-separated dimensions (default 100,150,200)")
    va.add_argument("--seeds", type=int, default=4, help="seeds per dimension (default 4)")
    va.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    va.add_argument("--z-max", type=float, default=3.0, help="disagreement threshold in standard errors (default 3)")
    va.add_argument("--criterion", choices=("largest", "extrapolated"), default="largest",
                    help="judge |z| at the largest D (default) or the a + b/D extrapolation to D = ∞")
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
    va.add_argument("--plot", default=None, metavar="PATH", help="draw gap against 1/D per observable (.png/.pdf)")
    va.set_defaults(command_name="validate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = params_from_args(args)
        # the library (JAX, the solvers) is loaded only once the parameters are known to be valid
        commands = importlib.import_module("lora_attn.commands")
        return getattr(commands, f"cmd_{args.command_name}")(args, params)
    except ParameterError as err:
        print(f"lora-attn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
