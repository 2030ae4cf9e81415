"""Rank-r theory against rank one (MODEL.md §8): time per map evaluation and per fine-tuning point, per unit of
the channel dimension ``r·T``.

``python benchmarks/bench_rank.py [--sigma linear softmax] [--T 2 3] [--ranks 1 2 4] [--n-mc 1000] [--points]``

For each σ, ``T`` and ``(r, r*)`` (``r* = min(r, 2)``; ``r = r* = 1`` twice: the rank-one code of
:mod:`theory.channels.lora` and the rank-``r`` code of :mod:`theory.channels.lora_rank`): the steady time of one
evaluation of the channel's conjugates with every prox start (best of ``--repeats`` after a compiling call), and
with ``--points`` the wall time of one fine-tuning point (``theory.solve(stage="finetune")``, cold, compilation
included) with its number of map evaluations. The last column divides by ``r·T`` and by the rank-one value.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import model.precision  # noqa: F401
import theory
from model.params import Params
from theory.channels.lora import ChannelSamples, channel_draws, finetune_hats
from theory.channels.lora_rank import RankOverlaps, RankSamples, rank_channel_draws, rank_hats
from theory.laws.mixture import channel_samples
from theory.states import FinetuneOverlaps, PretrainState

PRE = PretrainState(Q0=1.5, Q=1.673, M=1.451)


def _best(f, repeats: int) -> float:
    f()  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def map_time(sigma: str, T: int, r: int, s: int, n_mc: int, repeats: int, rank_code: bool) -> float:
    p = Params(T=T, sigma=sigma, kappa0=0.5, alpha=0.2, lam=0.1, alpha_prime=3.0, lam_prime=0.5, rank=r,
               teacher_rank=s)
    pairs, _ = channel_samples(p, PRE, 1.0, n_mc, 0)
    if not rank_code:
        xi, eta, *_ = channel_draws(jax.random.fold_in(jax.random.PRNGKey(0), 0), len(pairs), T)
        samples = ChannelSamples(xi=xi, eta=eta, A=pairs.A, H=pairs.H)
        ov = FinetuneOverlaps(q=0.9, m=0.8, v=0.3)
        return _best(lambda: finetune_hats(p, ov, samples, 1.0), repeats)
    xi, eta = rank_channel_draws(jax.random.fold_in(jax.random.PRNGKey(0), 0), len(pairs), T, r, s)
    samples = RankSamples(xi=xi, eta=eta, A=pairs.A, H=pairs.H)
    k = min(r, s)
    ov = RankOverlaps(q=0.9 * np.eye(r), m=0.8 * np.eye(r, s) * (np.arange(r)[:, None] < k), V=0.3 * np.eye(r))
    return _best(lambda: rank_hats(p, ov, samples, np.eye(s)), repeats)


def point_time(sigma: str, T: int, r: int, s: int, n_mc: int) -> tuple[float, int, bool]:
    p = Params(T=T, sigma=sigma, kappa0=0.5, alpha=0.2, lam=0.1, alpha_prime=3.0, lam_prime=0.5, rank=r,
               teacher_rank=s)
    t = time.perf_counter()
    pt = theory.solve(p, stage="finetune", pretrain=PRE, bayes=False, n_mc=n_mc, n_test=4096)
    return time.perf_counter() - t, int(pt.n_steps.get("finetune", 0)), bool(pt.converged)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sigma", nargs="+", default=["linear", "softmax"])
    ap.add_argument("--T", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--n-mc", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points", action="store_true", help="also time one fine-tuning point per (σ, T, r)")
    args = ap.parse_args()
    print("| σ | T | r | r* | code | map evaluation | per r·T | ÷ rank one per r·T |"
          + (" point (cold) | map evaluations |" if args.points else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if args.points else ""))
    configs = [(1, 1, False)] + [(r, 1 if r == 1 else 2, True) for r in args.ranks]
    for sigma in args.sigma:
        for T in args.T:
            base = None
            for r, s, rank_code in configs:
                t = map_time(sigma, T, r, s, args.n_mc, args.repeats, rank_code)
                per = t / (r * T)
                base = per if base is None else base
                row = (f"| {sigma} | {T} | {r} | {s} | {'rank r' if rank_code else 'rank one'} | {t * 1e3:.0f} ms | "
                       f"{per * 1e3:.0f} ms | {per / base:.2f} |")
                if args.points:
                    if rank_code and r == 1:  # theory.solve takes the rank-one code at r = r* = 1
                        row += " — | — |"
                    else:
                        w, n, ok = point_time(sigma, T, r, s, args.n_mc)
                        row += f" {w:.1f} s | {n}{'' if ok else ' (not converged)'} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
