"""The ``lora-attn`` command line: ``simulate``, ``theory``, ``sweep``, ``validate``.

Every subcommand takes one flag per parameter of :class:`lora_attn.params.Params` (defaults as
MODEL.md §6); parameters are validated before any work starts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

from lora_attn.params import SIGMAS, ParameterError, Params

_DEFAULTS = Params()


def _float_or_inf(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (or 'inf'), got {text!r}") from None


def _recalibration(text: str) -> float | str:
    if text == "optimal":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'optimal', got {text!r}") from None


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per parameter (MODEL.md §5 symbols in the help)."""
    g = parser.add_argument_group("model parameters (MODEL.md §5)")
    d = _DEFAULTS
    g.add_argument("--T", type=int, default=d.T, help=f"sequence length T (default {d.T})")
    g.add_argument("--sigma", choices=SIGMAS, default=d.sigma, help=f"activation σ (default {d.sigma})")
    g.add_argument("--beta", type=float, default=d.beta, help=f"softmax inverse temperature β (default {d.beta})")
    g.add_argument("--kappa0", type=float, default=d.kappa0, help=f"teacher width ratio κ0 (default {d.kappa0})")
    g.add_argument("--kappa", type=float, default=d.kappa, help=f"student width ratio κ (default {d.kappa})")
    g.add_argument("--alpha", type=float, default=d.alpha, help=f"pre-training ratio α = N/D² (default {d.alpha})")
    g.add_argument("--alpha-prime", type=float, default=d.alpha_prime,
                   help=f"fine-tuning ratio α' = N'/D (default {d.alpha_prime})")
    g.add_argument("--lam", type=float, default=d.lam, help=f"pre-training weight decay λ (default {d.lam})")
    g.add_argument("--lam-prime", type=_float_or_inf, default=d.lam_prime,
                   help=f"fine-tuning ridge λ' ('inf' = frozen) (default {d.lam_prime})")
    g.add_argument("--delta", type=float, default=d.delta, help=f"pre-activation noise Δ (default {d.delta})")
    g.add_argument("--reuse", type=float, default=d.reuse, help=f"reused fraction e ∈ [0,1] (default {d.reuse})")
    g.add_argument("--recalibrate", type=_recalibration, default=d.recalibrate,
                   help="recalibration β_W: a number > 0 or 'optimal' (= M/Q) (default: none, β_W = 1)")
    g.add_argument("--active-rho", type=float, default=d.active_rho,
                   help="active fine-tuning: kept fraction ρ ∈ (0,1] of the pool (default: no selection)")
    g.add_argument("--pool-ratio", type=float, default=d.pool_ratio,
                   help=f"active pool ratio ᾱ' (pool ⌊ᾱ'D⌋) (default {d.pool_ratio})")


def params_from_args(args: argparse.Namespace) -> Params:
    """Build (and validate) :class:`Params` from parsed flags."""
    return Params(
        T=args.T, sigma=args.sigma, beta=args.beta, kappa0=args.kappa0, kappa=args.kappa, alpha=args.alpha,
        alpha_prime=args.alpha_prime, lam=args.lam, lam_prime=args.lam_prime, delta=args.delta,
        reuse=args.reuse, recalibrate=args.recalibrate, active_rho=args.active_rho, pool_ratio=args.pool_ratio,
    )


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


def cmd_simulate(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    from simulate import run  # JAX is imported only when needed

    result = run(params, args.D, args.seeds, seed=args.seed, n_test=args.n_test, n_restarts=args.restarts,
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from lora_attn.sweep import check_output_path, grid, parse_vary, run_sweep

    base = params_from_args(args)
    axes = [parse_vary(v) for v in args.vary]
    points = grid(base, axes)
    check_output_path(args.out)
    use_theory = args.theory or not args.simulate
    bayes = _bayes_arg(args.bayes)
    if args.simulate:
        if args.D is None:
            raise ParameterError("sweep --simulate needs --D N (allowed an integer D ≥ 2)")
        from simulate.run import sizes

        for p in points:
            sizes(p, args.D)  # every point is checked before any work
    if use_theory:
        from theory.api import check

        if args.stage == "finetune":
            raise ParameterError("sweep --stage: allowed 'both' or 'pretrain' (fine-tuning alone needs measured "
                                 "pre-training order parameters: lora-attn theory --stage finetune)")
        for p in points:
            check(p, stage=args.stage, n_mc=args.n_mc, bayes=bayes)
    not_converged = []

    def point(p: Params, warm: Any) -> tuple[dict[str, Any], Any]:
        row: dict[str, Any] = {}
        if args.simulate:
            import simulate

            row.update(simulate.run(p, args.D, args.seeds, seed=args.seed, cache_dir=args.cache_dir).row())
        if not use_theory:
            return row, None
        import theory

        t = theory.solve(p, init=warm, stage=args.stage, bayes=bayes, n_mc=args.n_mc)
        if not t.converged:
            not_converged.append(p)
        trow = {k: v for k, v in t.row().items() if k not in p.to_dict()}
        if args.simulate:  # side by side: simulation under the plain names, theory as NAME_theory
            trow = {f"{k}_theory": v for k, v in trow.items()}
        row.update(trow)
        return row, t.warm

    extra: dict[str, Any] = {}
    if args.simulate:
        extra.update({"D": args.D, "seeds": args.seeds})
    if use_theory:
        from theory.api import bayes_label

        extra.update({"stage": args.stage, "n_mc": args.n_mc, "bayes": bayes_label(bayes)})
    table = run_sweep(points, point, out=args.out, extra_columns=extra)
    print(f"lora-attn sweep: {len(table)} points written to {args.out}")
    if not_converged:
        print(f"lora-attn sweep: the theory did not converge at {len(not_converged)} point(s) "
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


def cmd_validate(args: argparse.Namespace) -> int:
    from lora_attn.validate import (AtSize, compare, compare_paired, finetune_key_spread, finetune_names,
                                    format_table, merge_sems, paired_points, plot_validation, pretrain_inputs, rs_note,
                                    theory_at_measured_pretrain)
    from theory.api import check

    params = params_from_args(args)
    Ds = _parse_sizes(args.D)
    if args.seeds < 2:
        raise ParameterError(f"--seeds {args.seeds}: allowed seeds ≥ 2 (error bars need two seeds)")
    if args.z_max <= 0:
        raise ParameterError(f"--z-max {args.z_max}: allowed z_max > 0")
    if args.finetune_keys < 0:
        raise ParameterError(f"--finetune-keys {args.finetune_keys}: allowed an integer ≥ 0")
    from simulate.run import OBSERVABLES, sizes

    for D in Ds:
        sizes(params, D)
    check(params, stage="both", n_mc=args.n_mc, bayes=False, pretrain_replicas=args.replicas)
    if args.out is not None:
        from lora_attn.sweep import check_output_path

        check_output_path(args.out)
    import simulate
    import theory

    print(f"[validate] theory at {', '.join(f'{k}={v}' for k, v in params.to_dict().items())}",
          file=sys.stderr, flush=True)
    fed = args.pretrain_from == "simulation"
    at_size = AtSize() if args.theory_at_infinity else AtSize.for_params(params)
    if fed and params.reuse == 0:
        th = None
    else:
        th = theory.solve(params, stage="pretrain" if fed else "both", bayes=False, n_mc=args.n_mc,
                          pretrain_replicas=args.replicas)
    sims = []
    for D in Ds:
        print(f"[validate] simulating D = {D}, {args.seeds} seeds", file=sys.stderr, flush=True)
        sims.append(simulate.run(params, D, args.seeds, seed=args.seed, cache_dir=args.cache_dir,
                                 progress=True, train_gram=args.train_gram))
    if fed:
        V = th.observables["V"] if th is not None else None
        if V is not None:
            print(f"[validate] reused sequences: the pre-training susceptibility V = {V:.5g} is the theory's",
                  file=sys.stderr, flush=True)
        per_size, tsem, converged = [], {}, th is None or th.converged
        for sim in sims:
            rows, sems, ok = theory_at_measured_pretrain(params, sim, n_mc=args.n_mc, V=V, progress=True)
            per_size.append((sim.D, sim.per_seed, rows))
            tsem = merge_sems(tsem, sems)
            converged = converged and ok
            if args.finetune_keys >= 2:
                means = sim.per_seed[["Q0", "Q", "M", "q0"]].mean()
                order = pretrain_inputs(means.Q0, means.Q, means.M, V)
                tsem = merge_sems(tsem, finetune_key_spread(params, order, q0=float(means.q0), n_mc=args.n_mc,
                                                            keys=args.finetune_keys, progress=True))
        v = compare_paired(paired_points(per_size, finetune_names(params), tsem, at_size), z_max=args.z_max,
                           criterion=args.criterion)
    else:
        converged = th.converged
        note = rs_note(th.diagnostics.get("finetune", {}))
        if note:
            print(f"[validate] the fine-tuning fixed point{note}", file=sys.stderr, flush=True)
        names = OBSERVABLES + tuple(n for n in finetune_names(params) if n not in OBSERVABLES)
        tsem = dict(th.mc_sem)
        if args.finetune_keys >= 2 and th.converged and th.pretrain is not None:
            # the fine-tuning theory at the pre-training order parameters it was fed
            pre = pretrain_inputs(th.pretrain.Q0, th.pretrain.Q, th.pretrain.M,
                                  th.observables["V"] if params.reuse > 0 else None)
            spread = finetune_key_spread(params, pre, q0=1.0, n_mc=args.n_mc, keys=args.finetune_keys,
                                         names=finetune_names(params), progress=True)
            tsem = merge_sems(tsem, spread)
        v = compare(th.observables, sims, names=names, z_max=args.z_max, theory_sem=tsem,
                    criterion=args.criterion, at_size=at_size)
    print(format_table(v))
    if args.out is not None:
        from lora_attn.sweep import write_table

        write_table(v.table, args.out)
    if args.plot is not None:
        print(f"[validate] plot: {plot_validation(v, args.plot)}", file=sys.stderr)
    if not converged:
        print("lora-attn validate: the theory did not converge", file=sys.stderr)
        return 4
    return 0 if v.ok else 1


def cmd_theory(args: argparse.Namespace) -> int:
    import theory
    from lora_attn.validate import rs_note
    from theory.api import parse_pretrain

    params = params_from_args(args)
    if args.stage == "finetune" and args.pretrain is None:
        raise ParameterError("stage 'finetune' needs the pre-training order parameters: --pretrain Q0=..,Q=..,M=..")
    pre = parse_pretrain(args.pretrain) if args.pretrain is not None and args.stage == "finetune" else None
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
    sim.set_defaults(func=cmd_simulate)

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
    sw.set_defaults(func=cmd_sweep)

    th = sub.add_parser("theory", help="asymptotic (D → ∞) theory")
    add_param_flags(th)
    th.add_argument("--stage", choices=("both", "pretrain", "finetune"), default="both",
                    help="which stage (default both: pre-training chained into fine-tuning; linear σ only so far)")
    th.add_argument("--pretrain", default=None, metavar="Q0=..,Q=..,M=..[,V=..]",
                    help="pre-training order parameters fed to the fine-tuning theory")
    th.add_argument("--q0", type=float, default=1.0, help="‖w*‖²/D fed to the fine-tuning theory (default 1)")
    th.add_argument("--bayes", action="store_true", help="add the Bayes-optimal fine-tuning baseline (10–30 s)")
    th.add_argument("--n-mc", type=int, default=4000, help="Monte-Carlo draws of the fine-tuning channel")
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.set_defaults(func=cmd_theory)

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
    va.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ParameterError as err:
        print(f"lora-attn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
