"""Peak memory of the pre-training data and one loss-and-gradient evaluation against ``D``, chunked and not.

``python benchmarks/bench_memory.py [--D 500 700] [--T 3] [--alpha 0.1]``: each ``(D, mode)`` runs in its own
process (peak RSS is per process); ``mode = one-piece`` raises the chunk budget above the run's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import jax
import model.precision
import simulate.pretrain as sp
from simulate.data import sample_batch, sample_teacher
D, T, alpha, budget = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
if budget > 0:
    sp.CHUNK_BYTES = int(budget)
N = int(alpha * D * D)
teacher = sample_teacher(jax.random.PRNGKey(0), D, D)
b = sample_batch(jax.random.PRNGKey(1), N, T, teacher)
B = b.pretrain_target(0.5, "softmax", 1.0)
rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
W = jax.random.normal(jax.random.PRNGKey(2), (D, D))
for _ in range(2):
    t0 = time.perf_counter()
    v, g = sp.pretrain_value_and_grad(W, b.X, b.G, B, 0.1, "softmax", 1.0)
    g.block_until_ready()
print(json.dumps({"D": D, "N": N, "chunk": sp.chunk_size(T, D), "X_MiB": N * T * D * 8 / 2**20,
                  "peak_data_MiB": rss_data, "peak_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "eval_s": time.perf_counter() - t0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--D", type=int, nargs="+", default=[500, 700])
    ap.add_argument("--T", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.1)
    args = ap.parse_args()
    print(f"{'D':>5} {'mode':>9} {'N':>7} {'chunk':>7} {'X MiB':>7} {'peak data':>10} {'peak':>7} {'eval s':>7}")
    for D in args.D:
        for mode, budget in (("chunked", 0), ("one-piece", 1e13)):
            out = subprocess.run([sys.executable, "-c", CHILD, str(D), str(args.T), str(args.alpha), str(budget)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            chunk = r["chunk"] if mode == "chunked" else r["N"]
            print(f"{D:>5} {mode:>9} {r['N']:>7} {chunk:>7} {r['X_MiB']:>7.0f} {r['peak_data_MiB']:>10.0f} "
                  f"{r['peak_MiB']:>7.0f} {r['eval_s']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
