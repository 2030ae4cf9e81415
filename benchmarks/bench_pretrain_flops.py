"""How close the pre-training's loss-and-gradient comes to this machine's matmul rate, against ``D``.

Usage: ``python benchmarks/bench_pretrain_flops.py [--D 100 150 200 300] [--sigma softmax] [--repeats 5]``.

One evaluation of ``F(W)`` and ``∇F`` (:func:`simulate.pretrain.pretrain_value_and_grad`, the unit of an L-BFGS
iteration) at the figure-1 parameters costs, in its leading terms, ``XW`` (``2NTDP`` flops) and ``Xᵀ(∂F/∂(XW))``
(``2NTDP``): ``4NTDP = 4ακT·D⁴`` with ``N = αD²``, ``P = κD``; the ``T×T`` blocks add ``O(NT²P)``. The machine's
rate is measured in the same run: a float64 ``n×n`` matrix product (``2n³`` flops, ``n = 2048``) by the same JAX,
best of ``--repeats``. Printed: time per evaluation (best of ``--repeats``, after a compiling call), the achieved
GFLOP/s and its fraction of the matmul rate.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import model.precision  # noqa: F401
from model.params import Params
from simulate.data import sample_batch, sample_teacher
from simulate.pretrain import pretrain_value_and_grad
from simulate.run import sizes


def best_time(f, repeats: int) -> float:
    jax.block_until_ready(f())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_rate(n: int, repeats: int) -> float:
    """GFLOP/s of a float64 ``n×n`` product."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n))
    dot = jax.jit(jnp.dot)
    return 2 * n**3 / best_time(lambda: dot(a, b), repeats) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--D", type=int, nargs="+", default=[100, 150, 200, 300])
    ap.add_argument("--sigma", default="softmax")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    peak = matmul_rate(2048, args.repeats)
    print(f"float64 matmul (n = 2048): {peak:.1f} GFLOP/s")
    print(f"{'D':>5} {'N':>7} {'GFLOP/eval':>11} {'s/eval':>8} {'GFLOP/s':>8} {'of matmul':>10}")
    p = Params(sigma=args.sigma)
    for D in args.D:
        sz = sizes(p, D)
        teacher = sample_teacher(jax.random.PRNGKey(0), D, sz.P0)
        batch = sample_batch(jax.random.PRNGKey(1), sz.N, p.T, teacher)
        B = batch.pretrain_target(p.delta, p.sigma, p.beta)
        W = jax.random.normal(jax.random.PRNGKey(2), (D, sz.P))
        flops = 4 * sz.N * p.T * D * sz.P + 4 * sz.N * p.T**2 * sz.P
        t = best_time(lambda: pretrain_value_and_grad(W, batch.X, batch.G, B, p.lam, p.sigma, p.beta), args.repeats)
        rate = flops / t / 1e9
        print(f"{D:>5} {sz.N:>7} {flops / 1e9:>11.2f} {t:>8.4f} {rate:>8.1f} {rate / peak:>10.0%}", flush=True)


if __name__ == "__main__":
    main()
