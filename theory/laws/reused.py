"""The reused law of the frozen pair (fraction ``e`` of the fine-tuning sequences; MODEL.md §3, §5.5).

A reused pre-training sequence keeps its teacher pre-activation ``A_{W0}`` and its noise ``Z``, and the frozen
model's pre-activation on it is its *training* pre-activation, the pre-training proximal map
``Â_train = prox_V(ω; y)`` with ``ω`` GOE-like of parameter ``Q``, ``A_{W0} = (M/Q)ω + √(Q0 − M²/Q)·G``,
``y = A_{W0} + √Δ Z`` (THEORY_NOTES §3.4): ``A = β_W Â_train``, ``H = A_{W0} + √ΔZ``. Linear σ in closed form,
``Â_train = (ω + 4V y)/(1 + 4V)`` entrywise; softmax by the pre-training channel's multistart prox
(:func:`theory.channels.pretrain.training_preactivations`). It needs the pre-training susceptibility ``V``.

Noise felt, linear σ: ``Δ_eff = (1 − 4Va)²(Q0 + Δ/2) + a²Q − 2a(1 − 4Va)M`` with ``a = β_W/(1 + 4V)``; at
``β_W = 1`` this is the training residual ``(Q0 − 2M + Q + Δ/2)/(1 + 4V)²``. Softmax: its Monte-Carlo value.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from model.laws import to_matrix, variance_factors
from model.params import ParameterError, Params
from theory.channels.pretrain import ChannelDraws, training_preactivations
from theory.states import PretrainState


def training_law(params: Params, pre: PretrainState, key, n: int):
    """``n`` draws of the law of the pre-training TRAINING pre-activations: ``(Â_train, A0, Z)``, arrays of shape
    ``(n, T, T)``: the frozen student's pre-activation ``Â`` on a training sequence (the pre-training proximal
    map at ``pre``'s ``(Q, M, V)``), the teacher's ``A0 = A_{W0}(X)`` and the noise ``Z`` (``Z_aa ~ N(0,1)``,
    ``Z_ab ~ N(0,1/2)``) of that same sequence, so that its label is ``σ(A0 + √ΔZ)X``. ``(ω, A0)`` are GOE-like
    with off-diagonal covariance ``[[Q, M], [M, Q0]]``, from i.i.d. channel draws of ``key``
    (:meth:`theory.channels.pretrain.ChannelDraws.make`, ``method='mc'``). Linear σ in closed form,
    ``Â_e = (ω_e + 4V ȳ_e)/(1 + 4V)`` with ``ȳ = A0 + √ΔZ`` (THEORY_NOTES §3.4: weight-``w`` target ``ȳ``,
    ``w c = 2`` for every entry); softmax by the multistart prox.

    Args:
        params: uses ``T, sigma, beta, delta``.
        pre: ``Q0, Q, M`` and ``V`` (a :class:`theory.states.PretrainState` with ``V``, or a
            :class:`theory.stages.pretrain.PretrainResult`).
        key: a ``jax.random`` key (or an int seed).
        n: number of sequences.
    """
    T, sigma = params.T, params.sigma
    draws = ChannelDraws.make(T, n, key, method="mc")
    Q, M, V, Q0 = float(pre.Q), float(pre.M), float(pre.V), float(pre.Q0)
    if sigma != "linear":
        return training_preactivations(Q, M, V, T=T, sigma=sigma, delta=float(params.delta), Q0=Q0,
                                       beta=float(params.beta), draws=draws)
    c = jnp.asarray(variance_factors(T))
    r = M / Q if Q > 1e-300 else 0.0
    res = max(Q0 - r * M, 0.0)
    omega = jnp.sqrt(c * Q) * draws.xi
    hstar = r * omega + jnp.sqrt(c * res) * draws.zeta
    z_noise = jnp.sqrt(c / 2.0) * draws.eta
    ybar = hstar + math.sqrt(params.delta) * z_noise
    A_hat = (omega + 4.0 * V * ybar) / (1.0 + 4.0 * V)
    return to_matrix(A_hat, T), to_matrix(hstar, T), to_matrix(z_noise, T)


def _needs_V(pre: PretrainState, what: str) -> None:
    if not pre.has_susceptibility:
        raise ParameterError(f"{what} needs the pre-training susceptibility V: pass a PretrainResult "
                             "or PretrainState(Q0, Q, M, V), not only (Q0, Q, M)")


def reused_pairs(params: Params, pre: PretrainState, beta_W: float, key, n: int):
    """``n`` reused-sequence pairs ``A = β_W Â_train``, ``H = A0 + √Δ Z`` (same sequence's ``A0, Z``;
    :func:`training_law`)."""
    _needs_V(pre, "reuse > 0")
    A_tr, A0, Z = training_law(params, pre, key, n)
    return beta_W * A_tr, A0 + math.sqrt(params.delta) * Z


def reused_delta_eff_linear(delta: float, pre: PretrainState, beta_W: float = 1.0) -> float:
    """Linear σ: off-diagonal variance of ``H − β_W Â_train`` on a reused sequence,
    ``(1 − 4Va)²(Q0 + Δ/2) + a²Q − 2a(1 − 4Va)M``, ``a = β_W/(1 + 4V)`` (module doc)."""
    _needs_V(pre, "the reused-sequence Δ_eff")
    V = pre.V
    a = beta_W / (1 + 4 * V)
    b = 1 - 4 * V * a
    return b * b * (pre.Q0 + delta / 2) + a * a * pre.Q - 2 * a * b * pre.M
