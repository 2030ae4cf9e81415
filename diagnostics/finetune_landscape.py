"""The local minima of the fine-tuning objective of one simulated seed, reached from many starts.

The simulator keeps the lowest objective of a few starts (:func:`simulate.finetune.train_finetune`). Where the
replica-symmetric theory is stable (``diagnostics["rs_stable"]``, :func:`theory.stages.rs_stability.rs_stability`)
every start should end at the same minimiser, up to ``±w``; where it is not, the objective has many minima of nearly
the same value and very different overlaps, and the minimiser a finite run reports is neither unique nor
self-averaging. This script lists, per seed, the minima reached from the saddle-escape start, from the
teacher ``w*`` (and ``w*/2``) and from ``--starts`` random starts ``w ~ N(0, I_D)``, sorted by objective
``α'L_ft + λ'q`` (the objective divided by ``D``, as in the theory's ``ground_state_energy``), with ``o_w`` and ``q``.

Usage: ``python diagnostics/finetune_landscape.py --sigma S --alpha-prime A --lam-prime L --D 400 --seeds 0,1
[--starts 12] [--cache-dir DIR] [--out FILE.csv]`` (other parameters at the MODEL.md defaults, or as flags
``--T --alpha --lam --delta``). The pre-training of each seed is the simulator's (``--cache-dir`` reuses it),
and seed ``s`` is seed ``s`` of ``lora-attn simulate --seed 0``.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from model.params import Params
from model.tables import write_table
from simulate.cache import PretrainCache
from simulate.finetune import _finetune_value_and_grad, saddle_escape_start
from simulate.layer import attention_preactivation
from simulate.measure import lora_overlaps
from simulate.optimize import lbfgs
from simulate.run import run_seed


def seed_minima(params: Params, D: int, seed: int, *, starts: int, cache: PretrainCache | None) -> pd.DataFrame:
    """One row per start: the minimum it reached (``objective``, ``o_w``, ``q``, ``converged``)."""
    r = run_seed(params, D, jax.random.fold_in(jax.random.PRNGKey(0), seed), cache=cache, keep_state=True)
    st = r.state
    batch, teacher = st["finetune_batch"], st["teacher"]
    A_frozen = st["beta_W"] * attention_preactivation(batch.X, st["W_hat"])
    B = batch.finetune_target(params.delta, params.sigma, params.beta)

    def value_and_grad(w):
        v, g = _finetune_value_and_grad(jnp.asarray(w), batch.X, batch.G, A_frozen, B, params.lam_prime,
                                        params.sigma, params.beta)
        return v, np.asarray(g)

    w_star = np.asarray(teacher.w_star)
    inits = {"saddle": saddle_escape_start(batch.X, batch.G, A_frozen, B, lam_prime=params.lam_prime,
                                           sigma=params.sigma, beta=params.beta),
             "teacher": w_star, "teacher/2": 0.5 * w_star}
    for i, k in enumerate(jax.random.split(jax.random.PRNGKey(1000 + seed), starts)):
        inits[f"random{i}"] = np.asarray(jax.random.normal(k, (D,)))
    rows = []
    for name, w0 in inits.items():
        w, info = lbfgs(value_and_grad, w0, scale=D, gtol=1e-10, accept=1e-6, max_iter=5000)
        o = lora_overlaps(jnp.asarray(w), teacher.w_star)
        rows.append({"D": D, "seed": seed, "start": name, "objective": info.objective, "o_w": o["o_w"],
                     "q": o["q"], "converged": info.converged})
    return pd.DataFrame(rows).assign(**params.to_dict()).sort_values("objective", ignore_index=True)


def summary(df: pd.DataFrame) -> str:
    """Per seed: the lowest objective, the spread of the objectives, and the ``o_w`` range of the minima within
    1 % of the lowest."""
    lines = []
    for seed, g in df.groupby("seed"):
        best = g.objective.min()
        near = g[g.objective <= best + 0.01 * abs(best)]
        lines.append(f"seed {seed}: lowest objective {best:.6f} (start {g.start.iloc[0]}, o_w {g.o_w.iloc[0]:.4f}, "
                     f"q {g.q.iloc[0]:.4f}); objectives span {g.objective.max() - best:.2e}; "
                     f"{len(near)} of {len(g)} minima within 1 %, o_w from {near.o_w.min():.4f} to {near.o_w.max():.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sigma", choices=("linear", "softmax"), required=True)
    ap.add_argument("--alpha-prime", type=float, required=True)
    ap.add_argument("--lam-prime", type=float, required=True)
    ap.add_argument("--T", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--delta", type=float, default=0.5)
    ap.add_argument("--D", type=int, required=True)
    ap.add_argument("--seeds", default="0", help="comma-separated seed indices")
    ap.add_argument("--starts", type=int, default=12, help="random starts per seed")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    params = Params(sigma=a.sigma, T=a.T, alpha=a.alpha, lam=a.lam, alpha_prime=a.alpha_prime,
                    lam_prime=a.lam_prime, delta=a.delta)
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.D < 2 or a.starts < 0 or min(seeds) < 0:
        ap.error("need D ≥ 2, starts ≥ 0 and seeds ≥ 0")
    cache = PretrainCache(a.cache_dir) if a.cache_dir else None
    frames = []
    for s in seeds:
        df = seed_minima(params, a.D, s, starts=a.starts, cache=cache)
        frames.append(df)
        print(summary(df), flush=True)
        for row in df.itertuples():
            print(f"   {row.objective:.6f}  {row.start:>9}  o_w {row.o_w:.4f}  q {row.q:.4f}"
                  f"{'' if row.converged else '  (not converged)'}", file=sys.stderr, flush=True)
    if a.out:
        write_table(pd.concat(frames, ignore_index=True), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
