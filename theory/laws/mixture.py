"""The channel samples of the fine-tuning: the frozen pairs of the data the fine-tuning sees (MODEL.md §5.5).

The fine-tuning data are a mixture: a fraction ``1 − e`` of fresh sequences and ``e`` of reused pre-training
sequences (:mod:`theory.laws.reused`); with active selection every pair comes from the selected law
(:mod:`theory.laws.selected`). The conjugates are the same expectations over that mixture; ``(ω, χ*)`` keep
their law (``w*`` is independent of the pre-training data and of the score at leading order). ``delta_eff``
is the off-diagonal variance of ``H − A`` over the sequences the fine-tuning sees (the simulator's
definition): ``(1 − e)Δ_eff^fresh + eΔ_eff^reused``, or ``Δ_eff(ρ)``; the test errors stay on fresh sequences.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from model.observables import delta_eff, offdiag_squares
from model.params import Params
from theory.channels.lora import ChannelSamples, channel_draws
from theory.laws.fresh import frozen_pair, noise_law, optimal_delta_eff
from theory.laws.reused import reused_delta_eff_linear, reused_pairs
from theory.laws.selected import c_T, selected_delta_eff, selected_pairs
from theory.states import PretrainState


def offdiag_mean_square(A, H) -> tuple[float, float]:
    """Monte-Carlo ``Δ_eff``: mean (and standard error) over samples of the mean square of the
    off-diagonal entries of ``H − A`` (:func:`model.observables.offdiag_squares`)."""
    per = jnp.mean(offdiag_squares(jnp.asarray(H) - jnp.asarray(A)), axis=-1)
    n = per.shape[0]
    return float(jnp.mean(per)), float(jnp.std(per, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def channel_samples(params: Params, pre: PretrainState, beta_W: float, n_mc: int, key: int, *,
                    fresh_only: bool = False) -> tuple[ChannelSamples, dict[str, Any]]:
    """The ``n_mc`` channel samples the fine-tuning sees, with fixed keys (``fold_in(PRNGKey(key), ·)``,
    :func:`theory.channels.lora.channel_draws`):

    * fresh (``e = 0``, no selection, or ``fresh_only``): ``(A, H)`` from
      :func:`theory.laws.fresh.noise_law` — exactly the draws of the fresh channel;
    * reuse ``e``: the first ``round(e·n_mc)`` pairs from the training law
      (:func:`theory.laws.reused.reused_pairs`), the rest fresh (stratified mixture, same ``ξ, η``);
    * active ``ρ``: all pairs from the selected law (:func:`theory.laws.selected.selected_pairs`).

    Returns the samples and ``{"delta_eff": …}`` plus its parts (module doc; closed forms where they exist,
    the MC mean of the reused pairs for softmax reuse) and the fresh ``"noise_law"``.
    """
    T = params.T
    law = noise_law(params, pre, beta_W)
    base = jax.random.PRNGKey(key)
    xi, eta, G1, G2 = channel_draws(jax.random.fold_in(base, 0), n_mc, T)
    n_mc = int(xi.shape[0])
    A, H = frozen_pair(tuple(float(x) for x in law), G1, G2)
    d_fresh = delta_eff(params.delta, pre.Q0, pre.Q, pre.M, beta_W)
    info: dict[str, Any] = {"delta_eff": d_fresh, "delta_eff_fresh": d_fresh, "noise_law": law}
    if fresh_only:
        return ChannelSamples(xi, eta, A, H), info
    if params.active_rho is not None:
        rho = float(params.active_rho)
        A, H = selected_pairs(params, pre, beta_W, jax.random.fold_in(base, 3), n_mc, rho)
        d_sel = selected_delta_eff(params.delta, pre, rho, T, beta_W)
        mc, mc_se = offdiag_mean_square(A, H)
        info.update({"delta_eff": d_sel, "delta_eff_selected_mc": mc, "delta_eff_selected_mc_se": mc_se,
                     "c_T": c_T(T, rho), "delta_eff_rho0": optimal_delta_eff(params.delta, pre)})
    elif params.reuse > 0:
        e = float(params.reuse)
        n_r = int(round(e * n_mc))
        if n_r > 0:
            A_r, H_r = reused_pairs(params, pre, beta_W, jax.random.fold_in(base, 2), n_r)
            A = jnp.concatenate([A_r, A[n_r:]])
            H = jnp.concatenate([H_r, H[n_r:]])
            mc, mc_se = offdiag_mean_square(A_r, H_r)
        else:
            mc, mc_se = float("nan"), float("nan")
        if params.sigma == "linear":
            d_re = reused_delta_eff_linear(params.delta, pre, beta_W)
        else:
            d_re = mc
        info.update({"delta_eff": (1 - e) * d_fresh + e * d_re, "delta_eff_reused": d_re,
                     "delta_eff_reused_mc": mc, "delta_eff_reused_mc_se": mc_se, "n_reused_samples": n_r})
    return ChannelSamples(xi, eta, A, H), info
