"""Wall time of one simulation point (both stages, one seed) at the figure-1 parameters.

Usage: ``python benchmarks/bench_simulate.py [--D 100 150 200] [--sigma softmax linear] [--repeats 1]``.
The first call at each (D, σ) compiles; it is timed separately and excluded from the steady-state time.
"""

from __future__ import annotations

import argparse
import time

from model.params import Params
from simulate import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--D", type=int, nargs="+", default=[100, 150, 200])
    ap.add_argument("--sigma", nargs="+", default=["softmax", "linear"])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"{'sigma':>8} {'D':>5} {'first (s)':>10} {'steady (s)':>11} {'pre iters':>10} {'pre |g|':>9} {'ft iters':>9}")
    for sigma in args.sigma:
        for D in args.D:
            params = Params(sigma=sigma)
            t0 = time.perf_counter()
            r = run(params, D, 1, seed=0)
            first = time.perf_counter() - t0
            times = []
            for rep in range(args.repeats):
                t0 = time.perf_counter()
                r = run(params, D, 1, seed=1 + rep)
                times.append(time.perf_counter() - t0)
            d = r.per_seed.iloc[0]
            print(f"{sigma:>8} {D:>5} {first:>10.2f} {min(times):>11.2f} {int(d.pretrain_iters):>10} "
                  f"{d.pretrain_grad_norm:>9.1e} {int(d.finetune_iters):>9}", flush=True)


if __name__ == "__main__":
    main()
