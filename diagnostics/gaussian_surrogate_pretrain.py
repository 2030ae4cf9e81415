"""Pre-training ERM on the Gaussian-equivalent model: the assumption of the replica theory made exact.

The model's pre-activation of a sequence is ``A_e = ⟨X^e, S̄⟩`` with token sensing ``X^{ab} ∝ x_a x_bᵀ``.
Here every entry ``e = (a ≤ b)`` of every sequence gets its own i.i.d. Gaussian sensing matrix ``G_e``
(entries of variance ``c_e``: 2 on the diagonal of ``A``, 1 off it), ``A_e = ⟨G_e, S̄⟩/√D``, for the
student ``S̄ = WWᵀ/√(PD)`` and the teacher alike, and the loss is ``‖σ(A) − σ(A0 + √ΔZ)‖_F²`` (token Gram
``I_T``). Weight decay, sizes, optimiser and observables are those of the simulator (``P = P0 = D``).
If the theory matches this model and not the token model, the difference is a property of the tokens.

Usage: ``python diagnostics/gaussian_surrogate_pretrain.py OUT.csv T ALPHA LAM D1,D2,... START:STOP
[--sigma softmax|linear] [--delta 0.5]``. Appends one row per ``(D, seed)`` to ``OUT.csv`` (resumes).
Memory grows as ``α D⁴`` (``D = 100``: 0.5 GB; ``D = 150``: 2.4 GB).
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from model.laws import to_matrix, variance_factors
from simulate.optimize import lbfgs

COLUMNS = ["D", "seed", "Q0", "Q", "M", "E_pre", "L_pre", "grad_norm", "seconds", "trace"]


def sensing(key, n: int, T: int, D: int):
    """``n`` sequences × ``T(T+1)/2`` i.i.d. Gaussian sensing matrices (flattened), variance ``c_e``."""
    c = jnp.sqrt(jnp.asarray(variance_factors(T)))
    return jax.random.normal(key, (n, c.shape[0], D * D)) * c[None, :, None]


def preactivation(G, S, T: int, D: int):
    """``A_e = ⟨G_e, S̄⟩/√D`` as symmetric ``T × T`` matrices."""
    return to_matrix(jnp.einsum("nkq,q->nk", G, S.ravel()) / jnp.sqrt(D), T)


def act(A, sigma: str):
    return jax.nn.softmax(A, axis=-1) if sigma == "softmax" else A


def noise(key, n: int, T: int):
    Z = jax.random.normal(key, (n, T, T))
    return 0.5 * (Z + jnp.swapaxes(Z, 1, 2))


def fit_erm(preactivation_of, B, D: int, *, lam: float, sigma: str, key):
    """``Ŵ = argmin_W ‖σ(A(W)) − B‖_F² + λ‖W‖_F²`` over ``W ∈ R^{D×D}`` (objective divided by ``D²``), by the
    simulator's L-BFGS from ``W ~ N(0, 1)``; ``preactivation_of(W)`` gives the ``(N, T, T)`` pre-activations."""

    def objective(w_flat):
        E = act(preactivation_of(w_flat.reshape(D, D)), sigma) - B
        return (jnp.sum(E * E) + lam * jnp.sum(w_flat * w_flat)) / D**2

    value_and_grad = jax.jit(jax.value_and_grad(objective))

    def fun(x):
        v, g = value_and_grad(jnp.asarray(x))
        return v, np.asarray(g)

    x, info = lbfgs(fun, np.asarray(jax.random.normal(key, (D * D,))), scale=D * D)
    return jnp.asarray(x).reshape(D, D), info


def one_seed(D: int, seed: int, *, T: int, alpha: float, lam: float, sigma: str, delta: float) -> list:
    t0 = time.perf_counter()
    N = int(alpha * D * D)
    key = jax.random.fold_in(jax.random.PRNGKey(1000), seed)
    k = [jax.random.fold_in(key, i) for i in range(6)]
    W0 = jax.random.normal(k[0], (D, D))
    S0 = W0 @ W0.T / D
    G = sensing(k[1], N, T, D)
    B = act(preactivation(G, S0, T, D) + np.sqrt(delta) * noise(k[2], N, T), sigma)

    W, info = fit_erm(lambda W: preactivation(G, W @ W.T / D, T, D), B, D, lam=lam, sigma=sigma, key=k[3])
    S = W @ W.T / D
    E_train = act(preactivation(G, S, T, D), sigma) - B
    Gt = sensing(k[4], 2000, T, D)
    E_test = act(preactivation(Gt, S, T, D), sigma) - act(
        preactivation(Gt, S0, T, D) + np.sqrt(delta) * noise(k[5], 2000, T), sigma)
    return [D, seed, float(jnp.sum(S0 * S0) / D), float(jnp.sum(S * S) / D), float(jnp.sum(S * S0) / D),
            float(jnp.mean(jnp.sum(E_test**2, axis=(1, 2)))), float(jnp.sum(E_train**2) / N), info.grad_norm,
            round(time.perf_counter() - t0, 1), float(jnp.trace(S) / D)]


def run_cli(doc: str, columns: list[str], one_seed_fn, options=()) -> None:
    """``OUT.csv T ALPHA LAM D1,D2,... START:STOP [--sigma] [--delta] [options]``: one row per ``(D, seed)``
    (and per value of the extra options) appended to ``OUT.csv``; rows already there are skipped."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("T", type=int)
    ap.add_argument("alpha", type=float)
    ap.add_argument("lam", type=float)
    ap.add_argument("sizes", help="comma-separated D")
    ap.add_argument("seeds", help="START:STOP")
    ap.add_argument("--sigma", choices=("softmax", "linear"), default="softmax")
    ap.add_argument("--delta", type=float, default=0.5)
    for name, choices in options:
        ap.add_argument(f"--{name}", choices=choices, default=choices[0])
    args = ap.parse_args()
    extra = {name: getattr(args, name) for name, _ in options}
    done = set()
    if os.path.exists(args.out) and os.path.getsize(args.out) > 0:
        done = {(int(r["D"]), int(r["seed"]), *(r[n] for n in extra)) for r in csv.DictReader(open(args.out))}
    with open(args.out, "a", newline="") as fh:
        writer = csv.writer(fh)
        if fh.tell() == 0:
            writer.writerow(columns)
        for D in (int(x) for x in args.sizes.split(",")):
            for seed in range(*(int(x) for x in args.seeds.split(":"))):
                if (D, seed, *extra.values()) in done:
                    continue
                row = one_seed_fn(D, seed, T=args.T, alpha=args.alpha, lam=args.lam, sigma=args.sigma,
                                  delta=args.delta, **extra)
                writer.writerow(row)
                fh.flush()
                print(dict(zip(columns, row)), flush=True)


def main() -> None:
    run_cli(__doc__, COLUMNS, one_seed)


if __name__ == "__main__":
    main()
