"""Fine-tuning with the LoRA tokens decoupled from the frozen extensive part, against the model, per seed.

In the model the LoRA pre-activation ``R_w(X) = ((Xw)(Xw)ᵀ − ‖w‖²I)/D`` and the frozen residual
``A_{W0}(X) − A_Ŵ(X)`` share the tokens ``X``; they are uncorrelated at leading order but dependent at
``O(1/√D)`` (MODEL.md §7). The ``D → ∞`` channel treats them as independent. *Decoupled*: the extensive
parts come from the tokens ``X`` of a sequence and the LoRA parts (student and teacher) from independent
tokens ``X'``, with the token Gram ``I_T`` in the loss, for training and test sequences alike.

Per seed, the pre-training is the model's (L-BFGS on ``W``); both fine-tunings use the same frozen ``Ŵ``,
and the theory (:func:`theory.solve`, ``stage="finetune"``) is fed that seed's measured ``Q0, Q, M, q0``,
so the seed-to-seed spread of the pre-training cancels in ``sim − theory``.

Usage: ``python diagnostics/decoupled_finetune.py D SEEDS ALPHA_PRIME LAM_PRIME [--out FILE.csv] [--n-mc 4000]``
(softmax, other parameters at the MODEL.md defaults). Prints the mean ``sim − theory`` with its standard
error for ``q, o_w, E_ft, L_ft, E_frozen``, both settings, and the paired coupled − decoupled difference.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from model.laws import activation
from model.params import Params
from simulate.data import sample_batch, sample_teacher
from simulate.finetune import finetune_data_term, train_finetune
from simulate.layer import attention_preactivation, lora_preactivation, output_sq_error
from simulate.measure import lora_overlaps, order_parameters
from simulate.pretrain import train_pretrain
from simulate.run import sizes

NAMES = ("q", "o_w", "E_ft", "L_ft", "E_frozen")
MODES = ("coupled", "decoupled")


def one_seed(p: Params, D: int, seed: int, n_mc: int, n_test: int = 4000) -> dict[str, dict[str, float]]:
    key = jax.random.fold_in(jax.random.PRNGKey(77), seed)
    k = [jax.random.fold_in(key, i) for i in range(8)]
    sz = sizes(p, D)
    teacher = sample_teacher(k[0], D, sz.P0)
    pre = sample_batch(k[1], sz.N, p.T, teacher)
    W = train_pretrain(k[2], pre.X, pre.G, pre.pretrain_target(p.delta, p.sigma, p.beta), P=sz.P, lam=p.lam,
                       sigma=p.sigma, beta=p.beta).W
    op = order_parameters(W, teacher.W0)
    ft, ft_lora = sample_batch(k[3], sz.N_prime, p.T, teacher), sample_batch(k[4], sz.N_prime, p.T, teacher)
    te, te_lora = sample_batch(k[5], n_test, p.T, teacher), sample_batch(k[6], n_test, p.T, teacher)
    out = {}
    for mode in MODES:
        batches = []
        for ext, lora in ((ft, ft_lora), (te, te_lora)):
            if mode == "coupled":
                batches.append((ext.X, ext.G, ext.finetune_target(p.delta, p.sigma, p.beta)))
            else:
                eye = jnp.broadcast_to(jnp.eye(p.T), ext.G.shape)
                B = activation(ext.A0 + lora.R_star + np.sqrt(p.delta) * ext.Z, p.sigma, p.beta)
                batches.append((lora.X, eye, B))
        (X_l, G, B), (Xt_l, Gt, Bt) = batches
        A_frozen, At_frozen = attention_preactivation(ft.X, W), attention_preactivation(te.X, W)
        fit = train_finetune(k[7], X_l, G, A_frozen, B, lam_prime=p.lam_prime, sigma=p.sigma, beta=p.beta,
                             n_restarts=3)
        o = lora_overlaps(fit.w, teacher.w_star)
        o["L_ft"] = float(finetune_data_term(fit.w, X_l, G, A_frozen, B, p.sigma, p.beta)) / sz.N_prime
        A_ft = At_frozen + lora_preactivation(Xt_l, fit.w)
        o["E_ft"] = float(jnp.mean(output_sq_error(activation(A_ft, p.sigma, p.beta) - Bt, Gt)))
        o["E_frozen"] = float(jnp.mean(output_sq_error(activation(At_frozen, p.sigma, p.beta) - Bt, Gt)))
        th = theory.solve(p, stage="finetune", pretrain=theory.PretrainState(**op), q0=o["q0"], bayes=False,
                          n_mc=n_mc)
        out[mode] = {**o, **op, **{f"{n}_theory": th.observables[n] for n in NAMES}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("D", type=int)
    ap.add_argument("seeds", type=int)
    ap.add_argument("alpha_prime", type=float)
    ap.add_argument("lam_prime", type=float)
    ap.add_argument("--n-mc", type=int, default=4000)
    ap.add_argument("--out", default=None, help="per-seed table (.csv)")
    args = ap.parse_args()
    p = Params(sigma="softmax", alpha_prime=args.alpha_prime, lam_prime=args.lam_prime)
    rows = []
    for s in range(args.seeds):
        r = one_seed(p, args.D, s, args.n_mc)
        rows += [{"mode": m, "seed": s, **r[m]} for m in MODES]
        print(f"seed {s}: " + ", ".join(f"{m} E_ft {r[m]['E_ft']:.4f} (theory {r[m]['E_ft_theory']:.4f})"
                                        for m in MODES), flush=True)
    if args.out:
        pd.DataFrame(rows).to_csv(args.out, index=False)

    def stat(x: np.ndarray) -> str:
        se = x.std(ddof=1) / np.sqrt(len(x))
        return f"{x.mean():+.4f} ± {se:.4f} (z {x.mean() / se:+.1f})"

    for m in MODES:
        g = [r for r in rows if r["mode"] == m]
        print(f"D = {args.D}, {m:9s} sim − theory: " + " | ".join(
            f"{n} {stat(np.array([r[n] - r[n + '_theory'] for r in g]))}" for n in NAMES))
    c, d = ([r for r in rows if r["mode"] == m] for m in MODES)
    print(f"D = {args.D}, coupled − decoupled: " + " | ".join(
        f"{n} {stat(np.array([a[n] - b[n] for a, b in zip(c, d)]))}" for n in NAMES))


if __name__ == "__main__":
    main()
