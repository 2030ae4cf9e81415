"""Fine-tuning ERM of MODEL.md §3: a rank-one LoRA vector ``w`` on top of the frozen pre-activations, or a
rank-``r`` LoRA ``U ∈ R^{D×r}`` (MODEL.md §8; the same functions with a ``D×r`` matrix, ``rank=r``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from model.laws import activation
from simulate.layer import lora_preactivation, output_sq_error
from simulate.optimize import FitInfo, lbfgs


@partial(jax.jit, static_argnames=("sigma",))
def finetune_data_term(w: Array, X: Array, G: Array, A_frozen: Array, B: Array, sigma: str, beta: float) -> Array:
    """``Σ_ν (1/D)‖σ(A_frozen + R_w(X_ν)) X_ν − y'_ν‖_F²`` with ``y'_ν = B_ν X_ν``."""
    E = activation(A_frozen + lora_preactivation(X, w), sigma, beta) - B
    return jnp.sum(output_sq_error(E, G))


def finetune_objective(w, X, G, A_frozen, B, lam_prime, sigma, beta):
    """The fine-tuning objective divided by ``D``: ``[data term + λ'‖w‖²] / D`` (``λ'‖U‖_F²`` for a ``D×r``
    matrix). Even in ``w``; invariant under ``U → UO``, ``O ∈ O(r)``."""
    D = X.shape[-1]
    ridge = jnp.sum(w * w) if w.ndim == 2 else jnp.dot(w, w)
    return (finetune_data_term(w, X, G, A_frozen, B, sigma, beta) + lam_prime * ridge) / D


_finetune_value_and_grad = jax.jit(jax.value_and_grad(finetune_objective), static_argnames=("sigma",))


@dataclass(frozen=True)
class FinetuneFit:
    """Trained LoRA vector ``ŵ`` (best of the restarts) and how the fits ended.

    Attributes:
        w: the minimiser with the lowest objective among the restarts (``(D,)``, or ``(D, r)`` with ``rank=r``).
        info: the fit that produced it.
        restart_objectives: final objective (divided by ``D``) of every start.
        best_start: index of the start that won (0: the saddle-escape start; −1: no training).
    """

    w: Array
    info: FitInfo
    restart_objectives: tuple[float, ...]
    best_start: int


def saddle_escape_start(X, G, A_frozen, B, *, lam_prime: float, sigma: str, beta: float,
                        rank: int | None = None) -> np.ndarray:
    """A data-driven start: the bottom eigenvector ``v`` of the Hessian of the objective at the saddle
    ``w = 0`` (the direction in which gradient flow leaves it), scaled by the best ``t`` of ``F(t v)``
    on a grid ``t ∈ √D·[0.05, 4]``. It uses only the training data (no teacher) and works for any ``σ``.

    With ``rank=r`` the start is ``t·[v_1 … v_r]``, the bottom ``r`` eigenvectors of the same ``D×D`` Hessian:
    at ``U = 0`` the objective's Hessian in ``U`` is that matrix once per column (the loss depends on ``U``
    through ``UUᵀ``, so the columns decouple at second order), and its bottom eigenspace is ``r``-fold
    degenerate; orthogonal columns span the ``r`` leading escape directions."""
    D = X.shape[-1]
    hess = jax.hessian(finetune_objective)(jnp.zeros(D), X, G, A_frozen, B, lam_prime, sigma, beta)
    _, vecs = np.linalg.eigh(np.asarray(hess))
    v = vecs[:, 0] if rank is None else vecs[:, :rank]
    scales = np.sqrt(D) * np.geomspace(0.05, 4.0, 24)
    values = [float(finetune_objective(jnp.asarray(t * v), X, G, A_frozen, B, lam_prime, sigma, beta)) for t in scales]
    return scales[int(np.argmin(values))] * v


def train_finetune(
    key: Array,
    X: Array,
    G: Array,
    A_frozen: Array,
    B: Array,
    *,
    lam_prime: float,
    sigma: str,
    beta: float,
    n_restarts: int = 3,
    init_scale: float = 1.0,
    gtol: float = 1e-10,
    accept: float = 1e-6,
    max_iter: int = 5000,
    rank: int | None = None,
) -> FinetuneFit:
    """``ŵ = argmin_w Σ_ν (1/D)‖σ(A_Ŵ + R_w)X_ν − y'_ν‖_F² + λ'‖w‖²`` by L-BFGS from several starts.

    The problem is non-convex and ``w = 0`` is a stationary point. Random starts alone get trapped in
    spurious minima at small ``α'`` (measured: linear σ, ``α' = 0.5``, ``D = 200`` — objective 3.43 from
    random starts against 2.69 from a start near ``w*``), so the first start is
    :func:`saddle_escape_start` and ``n_restarts`` more are random, ``w ~ N(0, init_scale² I_D)``; the
    lowest objective is kept. ``λ' = ∞`` returns ``ŵ = 0`` (no adaptation).

    ``rank=r`` (MODEL.md §8): ``Û ∈ R^{D×r}`` minimising ``… + λ'‖U‖_F²``, the same way (the saddle-escape start
    of rank ``r``, then random ``N(0, init_scale²)`` matrices; L-BFGS on the ``D·r`` entries). ``rank=1`` is the
    rank-one problem written with a ``D×1`` matrix: the same draws, and the same minimiser to rounding.
    """
    D = X.shape[-1]
    shape = (D,) if rank is None else (D, int(rank))
    if np.isinf(lam_prime):
        info = FitInfo(objective=float("nan"), grad_norm=0.0, n_iter=0, converged=True, message="lam_prime = inf")
        return FinetuneFit(w=jnp.zeros(shape), info=info, restart_objectives=(), best_start=-1)

    def vg(w):
        v, g = _finetune_value_and_grad(jnp.asarray(w).reshape(shape), X, G, A_frozen, B, lam_prime, sigma, beta)
        return v, np.asarray(g).ravel()

    starts = [saddle_escape_start(X, G, A_frozen, B, lam_prime=lam_prime, sigma=sigma, beta=beta, rank=rank)]
    starts += [np.asarray(init_scale * jax.random.normal(k, shape)) for k in jax.random.split(key, n_restarts)]
    best, best_index = None, -1
    objectives = []
    for i, w0 in enumerate(starts):
        w, info = lbfgs(vg, np.ravel(w0), scale=int(np.prod(shape)), gtol=gtol, accept=accept, max_iter=max_iter)
        objectives.append(info.objective)
        if best is None or info.objective < best[1].objective:
            best, best_index = (w, info), i
    return FinetuneFit(w=jnp.asarray(best[0]).reshape(shape), info=best[1], restart_objectives=tuple(objectives),
                       best_start=best_index)
