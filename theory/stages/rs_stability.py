"""Replica-symmetric stability of the fine-tuning fixed point (MODEL.md §5.5; THEORY_NOTES §5.3).

The loss is not convex in ``w``, so the RS fixed point describes the ERM's global minimum only where it is
stable against replica-symmetry breaking. Every converged solve reports the replicon
``λ_R = α' E‖I − K⁻¹/v‖_F²`` (``diagnostics["replicon"]``, ``"replicon_sem"``), the fraction of samples whose
prox minimiser jumps between coexisting minima (``"prox_jump_frac"``, :func:`prox_jump_fraction`; a positive
density of jumps makes ``λ_R`` infinite) and ``"rs_stable"`` (:func:`rs_stability`). Measured (softmax,
``T = 3``, ``λ' = 0.5``, the figure-1 pre-training): ``λ_R = 0.095, 0.23, 0.79 ± 0.20`` at ``α' = 10, 3, 1``,
and at ``α' = 0.5`` jumps in 0.2 % of the samples: unstable, and the simulations there find many minima within
1 % of the lowest objective with ``o_w`` from 0.01 to 0.63 (``D = 400``, ``diagnostics/finetune_landscape.py``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model.params import Params
from theory.channels.lora import ChannelSamples, after, channel_inputs, prox_objective, target
from theory.channels.prox import distinct, newton_minimise, prox_multistart
from theory.states import FinetuneOverlaps


#: Step of the discontinuity probe of :func:`prox_jump_fraction`: ``ω → ω + JUMP_STEP·√q·u``, ``u ~ N(0, I_T)``.
JUMP_STEP = 0.05
#: Fewest samples the solver probes for jumps: at softmax ``α' = 0.5``, ``λ' = 0.5`` 8 of 4000 jump, so 600 draws
#: (the figures' ``n_mc``) would see none with probability 0.3.
JUMP_SAMPLES = 4000


@partial(jax.jit, static_argnames=("sigma", "n_iter"))
def _prox_discontinuities(q, m, v, q0, beta, xi, eta, A, H, u, h, sigma: str, n_iter: int):
    """Per sample: whether the prox's global minimiser jumps between ``ω`` and ``ω' = ω + h√q u`` (the label and
    the frozen pair held fixed). The two ends are joined by local descent: from ``χ̂(ω)`` on ``φ_ω'`` and from
    ``χ̂(ω')`` on ``φ_ω``; on a continuous branch each lands on the other end's minimiser. A switch of the global
    minimum between two coexisting minima (a Maxwell point) or the loss of a basin (a fold) fails one of them,
    with the multistart's minimiser the lower of the two at that end."""
    omega, cs = channel_inputs(q, m, q0, xi, eta)

    def one(om, c, Ai, Hi, ui):
        label = target(c, Hi, q0, sigma, beta)
        phi_at = lambda o: prox_objective(o, v, q, Ai, label, sigma, beta)  # noqa: E731

        phi0 = phi_at(om)
        z0 = prox_multistart(phi0, om, v, n_iter=n_iter)[0]
        # one minimisation after the other (each input + after(the previous result), exact): side by side, their
        # batched LAPACK calls (jaxlib 0.10) can deadlock the thread pool they share on a 2-CPU machine
        om1 = om + h * jnp.sqrt(q) * ui + after(z0)
        phi1 = phi_at(om1)
        z1 = prox_multistart(phi1, om1, v, n_iter=n_iter)[0]
        forward = newton_minimise(phi1, z0 + after(z1), n_iter, v)
        backward = newton_minimise(phi0, z1 + after(forward), n_iter, v)
        # a distinct end counts only if the multistart's minimiser is the lower one there (else the multistart,
        # not the prox, was discontinuous)
        return ((distinct(forward, z1) & (phi1(z1) <= phi1(forward)))
                | (distinct(backward, z0) & (phi0(z0) <= phi0(backward))))

    return jax.vmap(one)(omega, cs, A, H, u)


def prox_jump_fraction(params: Params, ov: FinetuneOverlaps, samples: ChannelSamples, q0: float, n_iter: int = 20,
                       key: int = 0) -> float:
    """The fraction of ``samples`` whose prox minimiser jumps between ``ω`` and ``ω + JUMP_STEP·√q·u``,
    ``u ~ N(0, I_T)`` from the fixed key (:func:`_prox_discontinuities`)."""
    u = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(key), 7), samples.xi.shape)
    jumps = _prox_discontinuities(ov.q, ov.m, ov.v, q0, params.beta, samples.xi, samples.eta, samples.A, samples.H,
                                  u, JUMP_STEP, sigma=params.sigma, n_iter=n_iter)
    return float(np.mean(np.asarray(jumps)))


def rs_stability(replicon: float, replicon_sem: float, jump_frac: float) -> bool:
    """The replicon (de Almeida–Thouless) check of a zero-temperature RS fixed point.

    A perturbation ``δw ⊥ (ŵ, w*)`` moves every ``ω`` by ``δω = Xδw/√D`` (i.i.d. over tokens), each sequence
    answers with ``δg = (∂g/∂ω)δω``, and the ridge prior maps ``Σ_ν X_νᵀδg_ν/√D`` back as ``v·(·)``. The gain of
    that loop is the replicon

        λ_R = α' v² E‖∂g/∂ω‖_F² = α' E‖I − K⁻¹/v‖_F²,    K = I/v + ∇²_zℓ(χ̂)

    (``diagnostics["replicon"]``, from :func:`theory.channels.lora.finetune_hats`), and RS is stable only where
    ``λ_R < 1``. For a convex loss ``0 ⪯ I − K⁻¹/v ≺ I``, so ``λ_R ≤ v v̂``. A jump of the global minimiser
    ``χ̂(ω)`` (coexisting minima of the prox whose order switches) puts a delta function into ``∂χ̂/∂ω``; its
    square makes ``λ_R`` infinite, so RS is unstable wherever such jumps have a positive density, whatever the
    local part (``diagnostics["prox_jump_frac"]``, :func:`prox_jump_fraction`; about ``prox_jump_frac / JUMP_STEP``
    jumps per unit of ``ω/√q``; 0 without probing where no sample's prox has two minima,
    ``prox_multimodal_frac = 0``; probed on at least ``JUMP_SAMPLES`` draws). Stable: ``λ_R + 3·sem < 1`` and no
    jump among the samples."""
    return bool(replicon + 3 * replicon_sem < 1.0 and jump_frac == 0.0)
