"""The fresh law of the frozen pair (``e = 0``; MODEL.md §3, §5.5).

``(A_Ŵ, A_{W0})`` GOE-like with off-diagonal covariance ``[[Q, M], [M, Q0]]`` (diagonal twice it), ``Z``
independent (``Z_aa ~ N(0,1)``, ``Z_ab ~ N(0,1/2)``), ``A = β_W A_Ŵ``, ``H = A_{W0} + √ΔZ``: a GOE-like pair
of off-diagonal covariance ``[[β_W² Q, β_W M], [β_W M, Q0 + Δ/2]]``. Its noise ``Δ_eff`` = off-diagonal
variance of ``H − A`` is ``Δ/2 + Q0 − 2β_W M + β_W² Q`` (:func:`model.observables.delta_eff`).

What the fine-tuning solution depends on. Linear σ: the loss depends on ``H − A`` only, GOE-like of
parameter ``δ = Δ_eff``, so the pre-training enters only through ``Δ_eff``. Softmax: ``σ(A + ·)`` and
``σ(H + ·)`` are not functions of ``H − A``, so the solution depends on the three numbers
``(β_W² Q, β_W M, Q0 + Δ/2)`` (``Q0`` and ``Δ`` only through ``Q0 + Δ/2``), and on ``β``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from model.observables import delta_eff
from model.params import Params
from theory.states import PretrainState


def noise_law(params: Params, pre: PretrainState, beta_W: float) -> tuple[float, float, float]:
    """The only pre-training inputs of the channel, as ``(Q_A, M_AH, V_H)``: off-diagonal variance of
    the student's frozen part ``A``, its covariance with the label part ``H``, and ``Var H``.

    Linear σ: the loss depends on ``H − A`` only, so the law is represented by ``A = 0``,
    ``H ~ GOE(δ)``: ``(0, 0, delta_eff)``. Softmax: ``(β_W² Q, β_W M, Q0 + Δ/2)``.
    """
    if params.sigma == "linear":
        return 0.0, 0.0, delta_eff(params.delta, pre.Q0, pre.Q, pre.M, beta_W)
    return beta_W**2 * pre.Q, beta_W * pre.M, pre.Q0 + params.delta / 2


def frozen_pair(law, G1, G2):
    """``(A, H)`` from two independent GOE-like ``G1, G2`` with off-diagonal covariance ``[[Q_A, M], [M, V_H]]``
    (``law = (Q_A, M_AH, V_H)`` of :func:`noise_law`)."""
    QA, MAH, VH = law
    c = jnp.where(QA > 0, MAH / jnp.where(QA > 0, QA, 1.0), 0.0)
    A = jnp.sqrt(QA) * G1
    H = c * A + jnp.sqrt(jnp.maximum(VH - c * MAH, 0.0)) * G2
    return A, H


def teacher_given(pre: PretrainState, A_student, G):
    """``A_{W0} = (M/Q)A + √(Q0 − M²/Q)·G``: the teacher's pre-activation given the student's ``A`` (GOE-like ``G``)."""
    return pre.shrink * A_student + math.sqrt(pre.residual) * G


def optimal_delta_eff(delta: float, pre: PretrainState) -> float:
    """``min_{β_W} Δ_eff = Δ/2 + Q0 − M²/Q`` (at ``β_W = M/Q``)."""
    return delta / 2 + pre.Q0 - (pre.M**2 / pre.Q if pre.Q > 0 else 0.0)
