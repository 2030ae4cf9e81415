"""The Bayes-optimal fine-tuning curve ``α' ↦ (q_BO, E_ft_BO)`` parametrised by the overlap ``q``.

The state evolution of :mod:`theory.bayes.finetune` is ``q = q̂/(1 + q̂)`` with ``q̂ = α' G(q)``,
``G(q) = E‖g_out(Y; ω, V)‖²`` (``ω = √q η``, ``V = 1 − q``), and ``G`` depends on ``q``,
``Δ_BO = Δ/2 + Q0 − M²/Q``, ``T`` and ``σ``, not on ``α'``. Its fixed points along ``α'`` at fixed pre-training are therefore the graph of

    α'(q) = q / ((1 − q) G(q)),        0 < q < 1,

one evaluation of ``G`` per point instead of a damped iteration of 15–20 (:func:`curve_point`). ``G`` is
evaluated by :func:`theory.bayes.finetune._qhat_samples` with the same fixed keys and sizes as
:func:`theory.bayes.finetune.solve_bayes_finetune`, so ``q`` is the exact fixed point of the map that solver
iterates, at ``α'(q)``. Where ``α'(q)`` increases with ``q`` the fixed point at each ``α'`` is unique (and the
iteration reaches it); where it decreases, several fixed points coexist (a first-order transition) and
:func:`curve_point` says so through ``monotone`` of neighbouring points (the caller compares). ``E_ft_BO`` is
:func:`theory.bayes.finetune.bayes_error` at ``q``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np

from model.params import ParameterError, Params
from theory.bayes.finetune import _check_mc, _qhat_samples, _validate, bayes_error
from theory.states import PretrainState


@dataclass(frozen=True)
class CurvePoint:
    """One fixed point of the Bayes-optimal fine-tuning state evolution.

    Attributes:
        q: ``q_BO = m`` (Nishimori), the overlap of the posterior mean with ``w*``.
        alpha_prime: the ``α'`` at which ``q`` is the fixed point, ``q/((1 − q)G(q))``.
        G, G_se: ``E‖g_out‖²`` at ``q`` and its Monte-Carlo standard error.
        alpha_prime_se: the error of ``α'`` from ``G_se`` (``α' G_se/G``).
        E_ft_BO, E_ft_BO_se: the Bayes test error at ``q`` and its Monte-Carlo error (0 for linear σ).
        ess_min: smallest importance-sampling effective sample size over the channel draws.
        delta_BO: ``Δ/2 + Q0 − M²/Q``.
    """

    q: float
    alpha_prime: float
    G: float
    G_se: float
    alpha_prime_se: float
    E_ft_BO: float
    E_ft_BO_se: float
    ess_min: float
    delta_BO: float


def curve_point(params: Params, pre: PretrainState, q: float, *, seed: int = 0, n_outer: int = 4000,
                n_inner: int = 1024, n_outer_error: int = 4000, n_inner_error: int = 256) -> CurvePoint:
    """The fixed point ``q`` of the Bayes-optimal state evolution and the ``α'`` it belongs to (module doc).

    ``params`` fixes ``T, σ, β, Δ`` (its ``α'`` is not used); ``pre`` the pre-training ``(Q0, Q, M)``. Monte-Carlo
    sizes and ``seed`` as in :func:`theory.bayes.finetune.solve_bayes_finetune` (the same keys)."""
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not (0.0 < float(q) < 1.0):
        raise ParameterError(f"q = {q!r} is out of range: allowed 0 < q < 1")
    q = float(q)
    dbo = _validate(params, pre, 0.5)
    _check_mc(n_outer, n_inner)
    g2, _, ess = _qhat_samples(q, dbo, jax.random.PRNGKey(seed), T=params.T, project=params.sigma == "softmax",
                               n_outer=n_outer, n_inner=n_inner)
    g2 = np.asarray(g2)
    G = float(g2.mean())
    G_se = float(g2.std(ddof=1)) / math.sqrt(n_outer)
    ap = q / ((1.0 - q) * G) if G > 0 else math.inf
    E, E_se = bayes_error(q, params, pre, n_outer=n_outer_error, n_inner=n_inner_error, seed=seed + 1)
    return CurvePoint(q=q, alpha_prime=ap, G=G, G_se=G_se, alpha_prime_se=ap * G_se / G if G > 0 else math.nan,
                      E_ft_BO=E, E_ft_BO_se=E_se, ess_min=float(np.min(np.asarray(ess))), delta_BO=dbo)
