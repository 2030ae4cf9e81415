"""The observables of MODEL.md §4: their names, and the definitions the theory and the simulator share.

Names (the contract: theory and simulation report the same observables under the same names):
:data:`OBSERVABLES` (both stages, in report order), :data:`RANDOM_CONTROL` (the ``*_random`` control of an
active selection), and the groups below. Definitions:

- the frozen weights' rescaling ``β_W`` (:func:`recalibration`): 1, a given number, or ``M/Q``;
- the noise felt by the LoRA, ``Δ_eff`` = off-diagonal mean square of ``A_{W0} − β_W A_Ŵ + √ΔZ``
  (:func:`offdiag_squares`), whose ``D → ∞`` value on fresh sequences is
  ``Δ/2 + Q0 − 2β_W M + β_W² Q`` (:func:`delta_eff`);
- the LoRA overlap ``o_w = |m|/√(q q0)`` (:func:`lora_overlap`).
"""

from __future__ import annotations

import math

import model.precision  # noqa: F401  (float64 JAX before any array)
import jax.numpy as jnp

#: Observables of MODEL.md §4 measured by the simulator and predicted by the theory, in report order.
OBSERVABLES = (
    "Q0", "Q", "M", "E_pre", "L_pre",
    "q0", "q", "m", "o_w", "E_ft", "L_ft", "E_frozen", "delta_eff",
)
#: With active selection, these fine-tuning observables of a random subset of the same size (``<name>_random``).
RANDOM_CONTROL = ("q", "m", "o_w", "E_ft", "L_ft", "delta_eff")
#: What the pre-training theory reports (``V``: its susceptibility).
PRETRAIN_THEORY = ("Q0", "Q", "M", "V", "E_pre", "L_pre")
#: What the fine-tuning theory reports (``v``: its susceptibility; ``beta_W``: the rescaling it used).
FINETUNE_THEORY = ("q0", "q", "m", "v", "o_w", "E_ft", "L_ft", "E_frozen", "delta_eff", "beta_W")
#: The fine-tuning observables the theory predicts from the pre-training order parameters it is fed.
FINETUNE_FED = ("q", "m", "o_w", "E_ft", "L_ft", "E_frozen", "delta_eff")
#: Observables of the fine-tuning fixed point itself: the ones its replica-symmetry check concerns.
FINETUNE_FIXED_POINT = ("q", "m", "v", "o_w", "E_ft", "L_ft")
#: Test errors (fresh test sequences, weights fixed), with the random control's.
TEST_ERRORS = ("E_pre", "E_ft", "E_frozen", "E_ft_random")
#: The Bayes-optimal baselines: pre-training, fine-tuning.
BAYES_PRETRAIN = ("Q_BO", "E_pre_BO")
BAYES_FINETUNE = ("q_BO", "E_ft_BO")


def random_control_names() -> tuple[str, ...]:
    """``<name>_random`` for every name of :data:`RANDOM_CONTROL`."""
    return tuple(f"{name}_random" for name in RANDOM_CONTROL)


def recalibration(recalibrate, M: float, Q: float) -> float:
    """``β_W`` of the frozen weights ``√β_W Ŵ``: 1 (``None``), the number given, or ``'optimal'`` = ``M/Q``
    (the minimiser of :func:`delta_eff`; 1 when ``Q = 0``: ``Ŵ = 0`` leaves nothing to rescale)."""
    if recalibrate is None:
        return 1.0
    if recalibrate == "optimal":
        return M / Q if Q > 0 else 1.0
    return float(recalibrate)


def delta_eff(delta: float, Q0: float, Q: float, M: float, beta_W: float = 1.0) -> float:
    """``Δ_eff(β_W) = Δ/2 + Q0 − 2β_W M + β_W² Q``: off-diagonal variance of ``A_{W0} − β_W A_Ŵ + √ΔZ`` on
    fresh sequences as ``D → ∞`` (``(A_Ŵ, A_{W0})`` GOE-like with covariance ``[[Q, M], [M, Q0]]``)."""
    return delta / 2 + Q0 - 2 * beta_W * M + beta_W**2 * Q


def offdiag_squares(R):
    """The squared off-diagonal entries ``R_ab², a < b``, of each ``T×T`` matrix of ``R`` (``(..., T, T)`` →
    ``(..., T(T−1)/2)``): ``Δ_eff`` is their mean for ``R = A_{W0} − β_W A_Ŵ + √ΔZ``. ``T = 1`` has none;
    half the squared diagonal entry (its variance is twice an off-diagonal one) stands in for them."""
    T = R.shape[-1]
    if T == 1:
        return R[..., 0, :] ** 2 / 2
    iu = jnp.triu_indices(T, k=1)
    return R[..., iu[0], iu[1]] ** 2


def lora_overlap(m: float, q: float, q0: float) -> float:
    """``o_w = |m|/√(q q0)``: the cosine between ``ŵ`` and ``w*`` (NaN when ``q = 0``, ``ŵ = 0``)."""
    return abs(m) / math.sqrt(q * q0) if q > 0 else float("nan")
