"""Rank-r LoRA (MODEL.md §8): theory against finite-D simulation, and the E_ft-optimal rank against α'.

Usage: ``python diagnostics/rank_validation.py validate OUT.csv [D ...]`` (linear σ, T = 2: every ``(r, r*)`` in
{1, 2}², 6 seeds per D; each seed's pre-training is trained once and shared by the four ranks), and
``python diagnostics/rank_validation.py optimal-rank OUT.csv`` (theory only: E_ft against α' for r ∈ {1, 2, 4} at
r* = 2). The theory is fed the seed-averaged measured (Q0, Q, M) (``stage="finetune"``); the comparison is a
Student-t test of the seed mean against the theory value (the theory's own Monte-Carlo error added; linear test
errors carried to D by the output-Gram factor of theory.finite_size). ``lora-attn validate --pretrain-from simulation
--rank r --teacher-rank r*`` compares seed by seed (paired) with the library's verdict; this script is kept for its
table over four ranks at once.
"""

from __future__ import annotations

import math
import sys
import tempfile

import jax
import pandas as pd
from scipy import stats

import model.precision  # noqa: F401
import theory
from model.params import Params
from simulate.cache import PretrainCache
from simulate.run import run_seed
from theory import finite_size
from theory.states import PretrainState

BASE = Params(T=2, sigma="linear", kappa0=0.5, kappa=1.0, alpha=0.2, lam=0.1, alpha_prime=3.0, lam_prime=0.5)
RANKS = ((1, 1), (2, 1), (1, 2), (2, 2))
COMPARED = ("tr_q", "o_U", "cos_1", "E_ft", "L_ft")


def validate(out: str, sizes: list[int], seeds: int = 6, n_mc: int = 2000) -> pd.DataFrame:
    cache = PretrainCache(tempfile.mkdtemp(prefix="rank_val_"))
    rows = []
    for D in sizes:
        per = {rk: [] for rk in RANKS}
        for s in range(seeds):
            key = jax.random.fold_in(jax.random.PRNGKey(0), s)
            for r, rs in RANKS:
                p = BASE.replace(rank=r, teacher_rank=rs)
                res = run_seed(p, D, key, cache=cache, matrix_lora=True)
                per[(r, rs)].append(res.observables)
                print(f"[rank-val] D={D} seed={s} r={r} r*={rs}: " + ", ".join(
                    f"{k}={res.observables[k]:.4f}" for k in ("tr_q", "o_U", "E_ft")), file=sys.stderr, flush=True)
        for (r, rs), obs in per.items():
            df = pd.DataFrame(obs)
            p = BASE.replace(rank=r, teacher_rank=rs)
            pre = PretrainState(Q0=float(df.Q0.mean()), Q=float(df.Q.mean()), M=float(df.M.mean()))
            t = theory.solve(p, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc)
            if not p.rank_one:
                th = t.observables
            else:
                th = {"tr_q": t.observables["q"], "o_U": t.observables["o_w"], "cos_1": t.observables["o_w"],
                      **t.observables}
            sem_th = t.mc_sem
            for name in COMPARED:
                x = df[name].to_numpy()
                mean, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
                se_tot = math.sqrt(se**2 + float(sem_th.get(name, 0.0) or 0.0) ** 2)
                # linear test errors at D: the exact output-Gram factor 1 + c_T/D (any rank: theory.finite_size)
                th_D = finite_size.theory_at(name, float(th[name]), D, p)
                tstat = (mean - th_D) / se_tot if se_tot > 0 else float("nan")
                pval = float(2 * stats.t.sf(abs(tstat), len(x) - 1))
                rows.append({"D": D, "rank": r, "teacher_rank": rs, "observable": name, "sim": mean, "sim_sem": se,
                             "theory": th_D, "theory_inf": float(th[name]), "t": tstat, "p": pval,
                             "converged": t.converged})
        pd.DataFrame(rows).to_csv(out, index=False)
    table = pd.DataFrame(rows)
    table.to_csv(out, index=False)
    return table


def optimal_rank(out: str, alphas=(0.5, 1.0, 3.0, 10.0), ranks=(1, 2, 4), teacher_rank: int = 2,
                 sigma: str = "linear", n_mc: int = 400) -> pd.DataFrame:
    """Theory ``E_ft``, ``o_U`` against ``α'`` at ``r* = teacher_rank`` for each ``r`` (fed the BASE pre-training
    solved once), and the ``E_ft``-optimal rank per ``α'``."""
    base = BASE.replace(sigma=sigma, teacher_rank=teacher_rank)
    o = theory.solve(base, stage="pretrain", bayes=False).observables
    pre = PretrainState(Q0=o["Q0"], Q=o["Q"], M=o["M"])
    rows = []
    for a in alphas:
        for r in ranks:
            p = base.replace(rank=r, alpha_prime=float(a))
            t = theory.solve(p, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc)
            o = t.observables
            rows.append({"alpha_prime": a, "rank": r, "teacher_rank": teacher_rank, "E_ft": o["E_ft"],
                         "o_U": o["o_U"], "tr_q": o["tr_q"], "E_frozen": o["E_frozen"], "converged": t.converged,
                         "replicon": t.diagnostics.get("finetune", {}).get("replicon", float("nan"))})
            print(f"[rank-opt] α'={a} r={r}: E_ft={o['E_ft']:.4f} o_U={o['o_U']:.4f} conv={t.converged}",
                  file=sys.stderr, flush=True)
            pd.DataFrame(rows).to_csv(out, index=False)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    what, out = sys.argv[1], sys.argv[2]
    if what == "validate":
        validate(out, [int(x) for x in sys.argv[3:]] or [40])
    else:
        optimal_rank(out, sigma=sys.argv[3] if len(sys.argv) > 3 else "linear")
