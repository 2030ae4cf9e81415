"""Pre-training ERM with rank-one token sensing, shared or not between the entries of a sequence.

The model's pre-activation entry ``e = (a ≤ b)`` of a sequence is ``A_e = (u_eᵀ S v_e − δ_ab Tr S)/D`` with
``u_e = x_a, v_e = x_b``: every entry is sensed by the sequence's own tokens, so the ``T(T+1)/2`` entries
of one sequence share them. Two sensings, the same code path, the loss of the ``D → ∞`` theory
(``‖σ(A) − σ(A0 + √ΔZ)‖_F²``, token Gram ``I_T``) in both:

- ``tokens``: ``u_e, v_e`` are the sequence's tokens (the model with ``--train-gram identity``);
- ``entries``: every entry of every sequence gets its own Gaussian vectors (``u_e = v_e`` on the
  diagonal, independent ``u_e, v_e`` off it). Each entry keeps the exact finite-``D`` law of the model
  (the diagonal skew of MODEL.md §7 included); the dependence between the entries of a sequence is gone.

With ``diagnostics/gaussian_surrogate_pretrain.py`` (Gaussian sensing matrices: neither skew nor shared
tokens) this splits a gap between theory and model into the part of each entry's non-Gaussian law and the
part of the shared tokens, and, run over ``D``, measures how each decays.

Usage: ``python diagnostics/token_structure_pretrain.py OUT.csv T ALPHA LAM D1,D2,... START:STOP
[--sensing tokens|entries] [--sigma softmax|linear] [--delta 0.5]``. One row per ``(D, seed)`` is
appended to ``OUT.csv`` (a rerun resumes). Seeds are those of the Gaussian surrogate script (same teacher
``W0`` for the same ``(D, seed)``), so differences between the three sensings are paired.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from gaussian_surrogate_pretrain import act, fit_erm, noise, run_cli  # (run as a script)
from model.laws import to_matrix

COLUMNS = ["D", "seed", "sensing", "Q0", "Q", "M", "E_pre", "L_pre", "grad_norm", "seconds", "trace"]
SENSINGS = ("tokens", "entries")


def sensing_vectors(key, n: int, T: int, D: int, sensing: str):
    """``(U, V)`` of shape ``(n, K, D)``, ``K = T(T+1)/2``, in the entry order of ``triu_indices(T)``."""
    r, c = np.triu_indices(T)
    if sensing == "tokens":
        X = jax.random.normal(key, (n, T, D))
        return X[:, r], X[:, c]
    ku, kv = jax.random.split(key)
    U = jax.random.normal(ku, (n, r.size, D))
    V = jnp.where(jnp.asarray(r == c)[None, :, None], U, jax.random.normal(kv, (n, r.size, D)))
    return U, V


def preactivation(U, V, W, T: int):
    """``A_e = (u_eᵀ S v_e − δ_ab Tr S)/D`` with ``S = WWᵀ/√P``, as symmetric ``T × T`` matrices."""
    D, P = W.shape
    r, c = np.triu_indices(T)
    trace_S = jnp.sum(W * W) / jnp.sqrt(P)
    v = (jnp.einsum("nkp,nkp->nk", U @ W, V @ W) / jnp.sqrt(P) - jnp.asarray(r == c) * trace_S) / D
    return to_matrix(v, T)


def one_seed(D: int, seed: int, *, T: int, alpha: float, lam: float, sigma: str, delta: float,
             sensing: str) -> list:
    t0 = time.perf_counter()
    N = int(alpha * D * D)
    key = jax.random.fold_in(jax.random.PRNGKey(1000), seed)
    k = [jax.random.fold_in(key, i) for i in range(6)]
    W0 = jax.random.normal(k[0], (D, D))
    U, V = sensing_vectors(k[1], N, T, D, sensing)
    B = act(preactivation(U, V, W0, T) + np.sqrt(delta) * noise(k[2], N, T), sigma)

    W, info = fit_erm(lambda W: preactivation(U, V, W, T), B, D, lam=lam, sigma=sigma, key=k[3])
    S, S0 = W @ W.T / D, W0 @ W0.T / D
    E_train = act(preactivation(U, V, W, T), sigma) - B
    n_test = 20 * D
    Ut, Vt = sensing_vectors(k[4], n_test, T, D, sensing)
    E_test = act(preactivation(Ut, Vt, W, T), sigma) - act(
        preactivation(Ut, Vt, W0, T) + np.sqrt(delta) * noise(k[5], n_test, T), sigma)
    return [D, seed, sensing, float(jnp.sum(S0 * S0) / D), float(jnp.sum(S * S) / D),
            float(jnp.sum(S * S0) / D), float(jnp.mean(jnp.sum(E_test**2, axis=(1, 2)))),
            float(jnp.sum(E_train**2) / N), info.grad_norm, round(time.perf_counter() - t0, 1),
            float(jnp.trace(S) / D)]


def main() -> None:
    run_cli(__doc__, COLUMNS, one_seed, options=(("sensing", SENSINGS),))


if __name__ == "__main__":
    main()
