"""Wall times of the theory: one point per stage and σ, a warm-started curve, and the pre-training prior
step (free probability) against a sampled-GOE deterministic-equivalent step at ``d = 400``.

Usage: ``python benchmarks/bench_theory.py [--sigma linear softmax] [--n-mc 4000] [--curve 8] [--repeats 3]
[--skip-bayes] [--only prior]``. Prints tables (nothing is asserted; these are measurements, not tests).

- *point*: each stage of :func:`theory.solve` at the figure-1 parameters (λ = 0.1, λ' = 0.5). ``first``
  includes JAX compilation; ``steady`` is the best of ``--repeats`` calls at a neighbouring point (cold
  start) and ``warm`` the same point started from the previous point's fixed point.
- *curve*: :func:`theory.sweep` over ``α'`` (``--curve`` points, 0.3 … 20), warm against cold.
- *prior step*: one prior half-step ``(m̂, q̂, σ̂) → (Q, M, V)`` at the conjugates of the linear figure-1
  pre-training fixed point. Free probability (:func:`theory.priors.denoiser.prior_step`, Gauss–Legendre
  quadrature on the spectrum) against the sampled step (:func:`theory.priors.denoiser.prior_step_sampled`:
  draw ``S̄0`` and a GOE at ``d = 400``, diagonalise, threshold the eigenvalues) — the approach of the
  public scripts of the field. Accuracy: distance to a reference free-probability step with 4× the
  quadrature nodes; for the sampled step, the rms error of one draw and of the mean of ``--samples`` draws
  (fluctuation plus an ``O(1/d)`` finite-size bias), and the number of draws needed to bring the
  fluctuation to 1e-3.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import numpy as np

import theory
from model.params import ParameterError, Params
from theory import PretrainState
from theory.priors.denoiser import prior_step, prior_step_sampled
from theory.priors.spectrum import DEFAULT_NODES
from theory.stages.pretrain import solve_pretrain


def _clock(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_points(sigmas, n_mc: int, repeats: int, bayes: bool) -> None:
    print(f"\n## theory: one point (figure-1 parameters, n_mc = {n_mc})")
    print(f"{'sigma':>8} {'part':>16} {'first (s)':>10} {'steady (s)':>11} {'warm (s)':>9} {'steps cold/warm':>16}")
    for sigma in sigmas:
        p = Params(sigma=sigma)
        nb = p.replace(alpha_prime=3.3, lam=0.12)
        cases = [
            ("pretrain (ERM)", dict(stage="pretrain", bayes=False), "pretrain"),
            ("Bayes pretrain", dict(stage="pretrain", bayes="pretrain"), None),
            ("both (ERM)", dict(stage="both", bayes=False, n_mc=n_mc), "finetune"),
        ]
        if bayes:
            cases.append(("Bayes finetune", dict(stage="both", bayes="finetune", n_mc=n_mc), None))
        base_pre = None
        for name, kw, part in cases:
            try:
                first, r0 = _clock(lambda: theory.solve(p, **kw))
            except ParameterError as err:
                print(f"{sigma:>8} {name:>16}   not available: {str(err)[:60]}")
                continue
            times, warm_times = [], []
            cold = warm = None
            for _ in range(repeats):
                t, cold = _clock(lambda: theory.solve(nb, **kw))
                times.append(t)
                t, warm = _clock(lambda: theory.solve(nb, init=r0.warm, **kw))
                warm_times.append(t)
            if name == "Bayes pretrain":
                # the part itself: the ERM pre-training (cheap) is subtracted by timing it alone
                t_erm = min(_clock(lambda: theory.solve(nb, stage="pretrain", bayes=False))[0] for _ in range(repeats))
                steady = max(min(times) - t_erm, 0.0)
                print(f"{sigma:>8} {name:>16} {first:>10.3f} {steady:>11.3f} {'—':>9} {'—':>16}")
                continue
            if name == "Bayes finetune":
                steady = min(times) - base_pre if base_pre is not None else min(times)
                print(f"{sigma:>8} {name:>16} {first:>10.2f} {steady:>11.2f} {'—':>9} {'—':>16}")
                continue
            if name == "both (ERM)":
                base_pre = min(times)
            steps = f"{sum(cold.n_steps.values())}/{sum(warm.n_steps.values())}"
            print(f"{sigma:>8} {name:>16} {first:>10.3f} {min(times):>11.3f} {min(warm_times):>9.3f} {steps:>16}")
        # the fine-tuning stage alone, from given order parameters (available for every σ)
        pre = PretrainState(Q0=2.0, Q=2.2, M=1.9)
        first, r0 = _clock(lambda: theory.solve(p, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc))
        tc = [_clock(lambda: theory.solve(nb, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc)) for _ in range(repeats)]
        tw = [_clock(lambda: theory.solve(nb, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc, init=r0.warm))
              for _ in range(repeats)]
        steps = f"{tc[0][1].n_steps['finetune']}/{tw[0][1].n_steps['finetune']}"
        print(f"{sigma:>8} {'finetune alone':>16} {first:>10.3f} {min(t for t, _ in tc):>11.3f} "
              f"{min(t for t, _ in tw):>9.3f} {steps:>16}", flush=True)


def bench_curves(sigmas, n_mc: int, n_points: int) -> None:
    print(f"\n## theory: a curve of {n_points} points over α' ∈ [0.3, 20] (stage both, n_mc = {n_mc})")
    print(f"{'sigma':>8} {'warm (s)':>9} {'cold (s)':>9} {'per point warm (s)':>19} {'steps warm/cold':>16}")
    grid = list(np.geomspace(0.3, 20.0, n_points))
    for sigma in sigmas:
        p = Params(sigma=sigma)
        try:
            theory.solve(p, bayes=False, n_mc=n_mc)  # compile outside the timing
        except ParameterError as err:
            print(f"{sigma:>8}   not available: {str(err)[:60]}")
            continue
        tw, warm = _clock(lambda: theory.sweep(p, {"alpha_prime": grid}, n_mc=n_mc, progress=False, warm=True))
        tc, cold = _clock(lambda: theory.sweep(p, {"alpha_prime": grid}, n_mc=n_mc, progress=False, warm=False))
        sw = int(warm["n_steps_finetune"].sum() + warm["n_steps_pretrain"].sum())
        sc = int(cold["n_steps_finetune"].sum() + cold["n_steps_pretrain"].sum())
        print(f"{sigma:>8} {tw:>9.2f} {tc:>9.2f} {tw / n_points:>19.3f} {f'{sw}/{sc}':>16}", flush=True)


def bench_prior(d: int, samples: int, repeats: int) -> None:
    p = Params(sigma="linear")
    fp = solve_pretrain(p)
    hats, lam_q = fp.hats, p.lam * math.sqrt(p.kappa)
    kw = dict(kappa0=p.kappa0, kappa=p.kappa, lam=lam_q)
    ref = prior_step(hats, n_nodes=4 * DEFAULT_NODES, **kw)
    t_fp = min(_clock(lambda: prior_step(hats, **kw))[0] for _ in range(max(repeats, 5)))
    ours = prior_step(hats, **kw)
    draws = []
    t_s = []
    for s in range(samples):
        t, (res, _) = _clock(lambda: prior_step_sampled(hats, d=d, seed=s, **kw))
        t_s.append(t)
        draws.append(res)
    t_one = statistics.median(t_s)
    print(f"\n## pre-training prior step at the linear figure-1 fixed point (m̂ = {hats.m_hat:.4g}, q̂ = {hats.q_hat:.4g}, "
          f"σ̂ = {hats.sigma_hat:.4g}, 2λ = {2 * lam_q:.3g})")
    print(f"reference: free probability with {4 * DEFAULT_NODES} nodes per band segment: "
          f"Q = {ref.Q:.8f}, M = {ref.M:.8f}, V = {ref.V:.8f}")
    print(f"{'method':>34} {'time (s)':>10} {'|ΔQ|':>10} {'|ΔM|':>10} {'|ΔV|':>10}")
    print(f"{'free probability (' + str(DEFAULT_NODES) + ' nodes)':>34} {t_fp:>10.4f} {abs(ours.Q - ref.Q):>10.2e} "
          f"{abs(ours.M - ref.M):>10.2e} {abs(ours.V - ref.V):>10.2e}")
    errs = {n: np.array([getattr(r, n) - getattr(ref, n) for r in draws]) for n in ("Q", "M", "V")}
    print(f"{f'sampled GOE, d = {d}, one draw':>34} {t_one:>10.4f} "
          + " ".join(f"{np.sqrt(np.mean(errs[n] ** 2)):>10.2e}" for n in ("Q", "M", "V")) + "   (rms over draws)")
    mean_err = {n: abs(errs[n].mean()) for n in ("Q", "M", "V")}
    print(f"{f'sampled, mean of {samples} draws':>34} {t_one * samples:>10.4f} "
          + " ".join(f"{mean_err[n]:>10.2e}" for n in ("Q", "M", "V")) + "   (bias + noise/√draws)")
    print(f"time ratio, one sampled step / one free-probability step: {t_one / t_fp:,.0f}×")
    worst_fp = max(abs(ours.Q - ref.Q), abs(ours.M - ref.M), abs(ours.V - ref.V))
    sd = max(errs[n].std(ddof=1) for n in ("Q", "M", "V"))
    bias = max(mean_err.values())
    print(f"accuracy of the free-probability step: {worst_fp:.1e}; a sampled step at d = {d} has a spread of "
          f"{sd:.1e} per draw; the mean of {samples} draws is off by {bias:.1e} (noise/√draws = {sd / math.sqrt(samples):.1e}; "
          f"a finite-d bias O(1/d) = {1 / d:.1e} remains however many draws are averaged)")
    target = 1e-3
    need = math.ceil((sd / target) ** 2)
    print(f"to bring the sampled noise to {target:g} takes ≈ {need} draws = {need * t_one:.1f} s per step, "
          f"{need * t_one / t_fp:,.0f}× the free-probability step; the pre-training fixed point takes "
          f"{fp.n_steps} steps: {fp.n_steps * t_fp:.2f} s (free probability) against "
          f"{fp.n_steps * need * t_one / 60:.1f} min (sampled)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigma", nargs="+", default=["linear", "softmax"])
    ap.add_argument("--n-mc", type=int, default=4000)
    ap.add_argument("--curve", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--d", type=int, default=400)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--skip-bayes", action="store_true", help="leave out the Bayes-optimal fine-tuning (10–30 s)")
    ap.add_argument("--only", choices=("points", "curves", "prior"), default=None)
    args = ap.parse_args()
    if args.only in (None, "prior"):
        bench_prior(args.d, args.samples, args.repeats)
    if args.only in (None, "points"):
        bench_points(args.sigma, args.n_mc, args.repeats, not args.skip_bayes)
    if args.only in (None, "curves"):
        bench_curves(args.sigma, args.n_mc, args.curve)


if __name__ == "__main__":
    main()
