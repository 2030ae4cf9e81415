"""Fine-tuning ERM of MODEL.md §3: a rank-one LoRA vector ``w`` on top of the frozen pre-activations."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from simulate.layer import activation, lora_preactivation, output_sq_error
from simulate.optimize import FitInfo, lbfgs


@partial(jax.jit, static_argnames=("sigma",))
def finetune_data_term(w: Array, X: Array, G: Array, A_frozen: Array, B: Array, sigma: str, beta: float) -> Array:
    """``Σ_ν (1/D)‖σ(A_frozen + R_w(X_ν)) X_ν − y'_ν‖_F²`` with ``y'_ν = B_ν X_ν``."""
    E = activation(A_frozen + lora_preactivation(X, w), sigma, beta) - B
    return jnp.sum(output_sq_error(E, G))


def finetune_objective(w, X, G, A_frozen, B, lam_prime, sigma, beta):
    """The fine-tuning objective divided by ``D``: ``[data term + λ'‖w‖²] / D``. Even in ``w``."""
    D = X.shape[-1]
    return (finetune_data_term(w, X, G, A_frozen, B, sigma, beta) + lam_prime * jnp.dot(w, w)) / D


_finetune_value_and_grad = jax.jit(jax.value_and_grad(finetune_objective), static_argnames=("sigma",))


@dataclass(frozen=True)
class FinetuneFit:
    """Trained LoRA vector ``ŵ`` (best of the restarts) and how the fits ended.

    Attributes:
        w: the minimiser with the lowest objective among the restarts.
        info: the fit that produced it.
        restart_objectives: final objective (divided by ``D``) of every restart.
    """

    w: Array
    info: FitInfo
    restart_objectives: tuple[float, ...]


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
) -> FinetuneFit:
    """``ŵ = argmin_w Σ_ν (1/D)‖σ(A_Ŵ + R_w)X_ν − y'_ν‖_F² + λ'‖w‖²`` by L-BFGS with restarts.

    ``w = 0`` is a stationary point (a saddle when learning is possible), so every restart starts away
    from it, at ``w ~ N(0, init_scale² I_D)``; the restart with the lowest objective is kept.
    ``λ' = ∞`` returns ``ŵ = 0`` (no adaptation).
    """
    D = X.shape[-1]
    if np.isinf(lam_prime):
        info = FitInfo(objective=float("nan"), grad_norm=0.0, n_iter=0, converged=True, message="lam_prime = inf")
        return FinetuneFit(w=jnp.zeros(D), info=info, restart_objectives=())

    def vg(w):
        v, g = _finetune_value_and_grad(jnp.asarray(w), X, G, A_frozen, B, lam_prime, sigma, beta)
        return v, np.asarray(g)

    best = None
    objectives = []
    for k in jax.random.split(key, n_restarts):
        w0 = init_scale * jax.random.normal(k, (D,))
        w, info = lbfgs(vg, np.asarray(w0), scale=D, gtol=gtol, accept=accept, max_iter=max_iter)
        objectives.append(info.objective)
        if best is None or info.objective < best[1].objective:
            best = (w, info)
    return FinetuneFit(w=jnp.asarray(best[0]), info=best[1], restart_objectives=tuple(objectives))
