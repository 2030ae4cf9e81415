"""Monte-Carlo precision of the softmax pre-training theory: the spread of the SOLVED fixed point over
independent draw sets, for i.i.d. against scrambled-Sobol' draws and the Stein against the derivative
estimator of ``m̂`` (:mod:`theory.channels.pretrain`).

Usage: ``python benchmarks/bench_channel_precision.py [--n 4096] [--keys 8] [--T 3] [--alpha 0.1] [--lam 0.1]``.
Prints, per configuration, the mean and the standard deviation over keys of ``Q, M, V, E_pre, L_pre`` and
the time per solve. The standard deviation is the error of ONE solve; it is what a validation must add
to the simulation's error bar. Nothing is asserted (a measurement, not a test).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import theory.channels.pretrain as channel_module
from model.params import Params
from theory.stages.pretrain import solve_pretrain

FIELDS = ("Q", "M", "V", "E_pre", "L_pre")


def spread(params: Params, *, n: int, keys: int, method: str, form: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and standard deviation over ``keys`` independent solves, and the mean seconds per solve."""
    make = channel_module.ChannelDraws.make
    channel_module.ChannelDraws.make = staticmethod(lambda T, n_, key=0, method_=method: make(T, n_, key, method_))
    try:
        rows, t0 = [], time.perf_counter()
        for k in range(keys):
            r = solve_pretrain(params, n_mc=n, key=100 + k, m_hat_form=form)
            rows.append([getattr(r, f) for f in FIELDS])
        secs = (time.perf_counter() - t0) / keys
    finally:
        channel_module.ChannelDraws.make = staticmethod(make)
    a = np.array(rows)
    return a.mean(axis=0), a.std(axis=0, ddof=1), secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--T", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--lam", type=float, default=0.1)
    args = ap.parse_args()
    params = Params(sigma="softmax", T=args.T, alpha=args.alpha, lam=args.lam)
    solve_pretrain(params, n_mc=args.n)  # compile
    print(f"softmax pre-training, T={args.T}, α={args.alpha}, λ={args.lam}, n={args.n}, {args.keys} keys")
    print(f"{'draws':<6} {'m̂ form':<11} " + " ".join(f"{f + ' mean ± sd':>22}" for f in FIELDS) + "   s/solve")
    for method in ("mc", "sobol"):
        for form in ("stein", "derivative"):
            mean, sd, secs = spread(params, n=args.n, keys=args.keys, method=method, form=form)
            cells = " ".join(f"{m:>11.5f} ± {s:<8.5f}" for m, s in zip(mean, sd))
            print(f"{method:<6} {form:<11} {cells}   {secs:.1f}")


if __name__ == "__main__":
    main()
