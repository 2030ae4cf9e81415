"""Pre-training ERM of MODEL.md §3: the factorised problem over ``W`` and, for linear ``σ`` and
``κ ≥ 1``, the equivalent convex problem over ``S ⪰ 0`` with a trace penalty (a cross-check)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from model.laws import activation
from simulate.layer import attention_preactivation, output_sq_error
from simulate.optimize import FitInfo, lbfgs


#: Memory the intermediates of one chunk of the pre-training loss may take (bytes): the sequences are processed
#: in chunks of :func:`chunk_size` so that peak memory is the data plus this, whatever ``N`` is. Runs whose
#: intermediates fit in one chunk (every ``D ≤ 400`` at ``α = 0.1, T = 3, κ = 1``) are computed in one piece,
#: exactly as before chunking existed.
CHUNK_BYTES = 2**30


def chunk_size(T: int, P: int, budget: int | None = None) -> int:
    """Sequences per chunk: the intermediates take about ``4 T P`` floats per sequence (``XW``, its cotangent,
    the ``T×T`` blocks; drawing ``X`` about three times its size), so ``⌊budget / (32 T P)⌋`` sequences (at
    least one); ``budget`` defaults to :data:`CHUNK_BYTES`."""
    return max(1, int(CHUNK_BYTES if budget is None else budget) // (4 * 8 * T * P))


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@partial(jax.jit, static_argnames=("sigma",))
def _data_term(W: Array, X: Array, G: Array, B: Array, sigma: str, beta: float) -> Array:
    E = activation(attention_preactivation(X, W), sigma, beta) - B
    return jnp.sum(output_sq_error(E, G))


def pretrain_data_term(W: Array, X: Array, G: Array, B: Array, sigma: str, beta: float,
                       chunk: int | None = None) -> Array:
    """``Σ_μ (1/D)‖σ(A_W(X_μ)) X_μ − y_μ‖_F²`` with ``y_μ = B_μ X_μ``, summed over chunks of ``chunk`` sequences
    (default :func:`chunk_size`)."""
    size = chunk or chunk_size(X.shape[1], W.shape[1])
    if X.shape[0] <= size:
        return _data_term(W, X, G, B, sigma, beta)
    return sum(_data_term(W, jnp.asarray(X[c]), G[c], B[c], sigma, beta) for c in _chunks(X.shape[0], size))


_data_value_and_grad = jax.jit(jax.value_and_grad(_data_term), static_argnames=("sigma",))


def _objective(W, X, G, B, lam, sigma, beta):
    return (_data_term(W, X, G, B, sigma, beta) + lam * jnp.sum(W * W)) / X.shape[-1] ** 2


_objective_value_and_grad = jax.jit(jax.value_and_grad(_objective), static_argnames=("sigma",))


def pretrain_value_and_grad(W: Array, X: Array, G: Array, B: Array, lam: float, sigma: str, beta: float,
                            chunk: int | None = None) -> tuple[Array, Array]:
    """The pre-training objective ``F(W) = (Σ_μ (1/D)‖σ(A_W(X_μ))X_μ − y_μ‖_F² + λ‖W‖_F²) / D²`` and its gradient,
    accumulated over chunks of ``chunk`` sequences (default :func:`chunk_size`): peak memory is the data plus
    one chunk's intermediates."""
    D = X.shape[-1]
    size = chunk or chunk_size(X.shape[1], W.shape[1])
    if X.shape[0] <= size:
        return _objective_value_and_grad(W, X, G, B, lam, sigma, beta)
    value, grad = lam * jnp.sum(W * W), 2.0 * lam * W
    for c in _chunks(X.shape[0], size):
        v, g = _data_value_and_grad(W, jnp.asarray(X[c]), G[c], B[c], sigma, beta)  # X may live on the host
        value, grad = value + v, grad + g
    return value / D**2, grad / D**2


@dataclass(frozen=True)
class PretrainFit:
    """Trained pre-training weights ``Ŵ ∈ R^{D×P}`` and how the fit ended (objective divided by ``D²``)."""

    W: Array
    info: FitInfo


def train_pretrain(
    key: Array,
    X: Array,
    G: Array,
    B: Array,
    *,
    P: int,
    lam: float,
    sigma: str,
    beta: float,
    init_scale: float = 1.0,
    gtol: float = 1e-9,
    accept: float = 1e-6,
    max_iter: int = 5000,
    memory: int = 20,
) -> PretrainFit:
    """``Ŵ = argmin_W Σ_μ (1/D)‖σ(A_W(X_μ))X_μ − y_μ‖_F² + λ‖W‖_F²`` by L-BFGS from ``W ~ N(0, init_scale²)``."""
    D = X.shape[-1]
    W0 = init_scale * jax.random.normal(key, (D, P))

    def vg(flat):
        v, g = pretrain_value_and_grad(jnp.reshape(flat, (D, P)), X, G, B, lam, sigma, beta)
        return v, np.ravel(g)

    flat, info = lbfgs(vg, np.ravel(np.asarray(W0)), scale=D * P, gtol=gtol, accept=accept, max_iter=max_iter,
                       memory=memory)
    return PretrainFit(W=jnp.reshape(jnp.asarray(flat), (D, P)), info=info)


# ---------------------------------------------------------------- convex cross-check (linear σ, κ ≥ 1)


def _preactivation_from_S(X: Array, S: Array) -> Array:
    """``A(X) = (X S Xᵀ − Tr(S) I)/D`` for a symmetric ``S`` (``S = WWᵀ/√P``)."""
    D = X.shape[-1]
    A = jnp.einsum("nad,de,nbe->nab", X, S, X) / D
    return A - jnp.trace(S) / D * jnp.eye(X.shape[1], dtype=X.dtype)


def _linear_data_term_S(S, X, G, B):
    return jnp.sum(output_sq_error(_preactivation_from_S(X, S) - B, G))


_linear_data_grad_S = jax.jit(jax.value_and_grad(_linear_data_term_S))


def _psd_trace_prox(S: np.ndarray, shift: float) -> np.ndarray:
    """``argmin_{S'⪰0} ½‖S' − S‖² + shift·Tr S'``: eigenvalues shifted by ``−shift`` and clipped at 0."""
    evals, evecs = np.linalg.eigh(0.5 * (S + S.T))
    return (evecs * np.maximum(evals - shift, 0.0)) @ evecs.T


def train_pretrain_convex(
    X: Array,
    G: Array,
    B: Array,
    *,
    P: int,
    lam: float,
    max_iter: int = 20000,
    tol: float = 1e-10,
) -> tuple[Array, FitInfo]:
    """Linear ``σ``, ``κ ≥ 1``: ``min_{S ⪰ 0} Σ_μ (1/D)‖(A_S(X_μ) − B_μ)X_μ‖_F² + λ√P Tr S`` by FISTA.

    With ``S = WWᵀ/√P`` and ``P ≥ D`` this is the same problem as :func:`train_pretrain` (``‖W‖_F² =
    √P Tr S``); the minimiser is returned as a ``W ∈ R^{D×D}`` factor, ``W = P^{1/4} U diag(√s)``, so the
    rest of the simulator treats both solutions alike (a factor with ``D`` columns gives ``WWᵀ/√D = S``).
    Stops when the relative change of ``S`` per step is below ``tol``.
    """
    D = X.shape[-1]
    X, G, B = (jnp.asarray(a) for a in (X, G, B))
    shift_per_step = lam * np.sqrt(P)
    # Lipschitz constant of the gradient of the quadratic data term, by power iteration.
    rng = np.random.default_rng(0)
    V = rng.standard_normal((D, D))
    V = (V + V.T) / 2
    _, g0 = _linear_data_grad_S(jnp.zeros((D, D)), X, G, B)
    g0 = np.asarray(g0)
    Lip = 1.0
    for _ in range(50):
        V /= np.linalg.norm(V)
        _, gv = _linear_data_grad_S(jnp.asarray(V), X, G, B)
        HV = np.asarray(gv) - g0
        Lip = float(np.sum(HV * V))
        V = HV
    step = 1.0 / (1.05 * Lip)
    S = np.zeros((D, D))
    Y, t = S.copy(), 1.0
    n_iter, rel = 0, np.inf
    for n_iter in range(1, max_iter + 1):
        _, g = _linear_data_grad_S(jnp.asarray(Y), X, G, B)
        S_new = _psd_trace_prox(Y - step * np.asarray(g), step * shift_per_step)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        Y = S_new + ((t - 1) / t_new) * (S_new - S)
        rel = np.linalg.norm(S_new - S) / max(np.linalg.norm(S_new), 1e-300)
        S, t = S_new, t_new
        if rel < tol:
            break
    value, _ = _linear_data_grad_S(jnp.asarray(S), X, G, B)
    objective = (float(value) + shift_per_step * np.trace(S)) / D**2
    evals, evecs = np.linalg.eigh(S)
    W = (D ** 0.25) * evecs * np.sqrt(np.maximum(evals, 0.0))
    info = FitInfo(
        objective=objective, grad_norm=float(rel), n_iter=n_iter, converged=bool(rel < tol),
        message="FISTA; grad_norm holds the last relative step ‖ΔS‖/‖S‖",
    )
    return jnp.asarray(W), info
