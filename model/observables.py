"""The observables of MODEL.md §4: their names, and the definitions the theory and the simulator share.

Names (the contract: theory and simulation report the same observables under the same names):
:data:`OBSERVABLES` (both stages, in report order), :data:`RANDOM_CONTROL` (the ``*_random`` control of an
active selection), and the groups below. Definitions:

- the frozen weights' rescaling ``β_W`` (:func:`recalibration`): 1, a given number, or ``M/Q``;
- the noise felt by the LoRA, ``Δ_eff`` = off-diagonal mean square of ``A_{W0} − β_W A_Ŵ + √ΔZ``
  (:func:`offdiag_squares`), whose ``D → ∞`` value on fresh sequences is
  ``Δ/2 + Q0 − 2β_W M + β_W² Q`` (:func:`delta_eff`);
- the LoRA overlap ``o_w = |m|/√(q q0)`` (:func:`lora_overlap`);
- at rank ``r`` (MODEL.md §8, :func:`observable_names`): the subspace overlap ``o_U`` (:func:`subspace_overlap`)
  and the principal cosines (:func:`principal_cosines`) of the ``r×r``, ``r×r*``, ``r*×r*`` overlaps.
"""

from __future__ import annotations

import math

import model.precision  # noqa: F401  (float64 JAX before any array)
import jax.numpy as jnp
import numpy as np

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
#: The Bayes-optimal baselines: pre-training, fine-tuning (conditioning on the frozen ``Ŵ``), and the two-stage
#: fine-tuning baseline (conditioning on the pre-training data: :mod:`theory.bayes.two_stage`).
BAYES_PRETRAIN = ("Q_BO", "E_pre_BO")
BAYES_FINETUNE = ("q_BO", "E_ft_BO")
BAYES_TWO_STAGE = ("q_BO2", "E_ft_BO2")


#: The rank-one LoRA overlaps that a LoRA of rank ``r`` (MODEL.md §8) replaces by :data:`RANK_LORA` and the
#: principal cosines (:func:`cosine_names`): ``q, m`` become ``r×r``, ``r×r*`` matrices.
RANK_ONE_LORA = ("q0", "q", "m", "o_w")
#: Rotation invariants of the rank-``r`` overlaps (MODEL.md §8): ``Tr q0``, ``Tr q``, the subspace overlap ``o_U``.
RANK_LORA = ("tr_q0", "tr_q", "o_U")
#: With active selection at rank ``r``, the random control's observables (``<name>_random``).
RANK_RANDOM_CONTROL = ("tr_q", "o_U", "E_ft", "L_ft", "delta_eff")


def cosine_names(rank: int, teacher_rank: int) -> tuple[str, ...]:
    """``cos_1, …, cos_k``, ``k = min(r, r*)``: the principal cosines, largest first (:func:`principal_cosines`)."""
    return tuple(f"cos_{i + 1}" for i in range(min(rank, teacher_rank)))


def observable_names(rank: int = 1, teacher_rank: int = 1) -> tuple[str, ...]:
    """The observables a run reports, in order: :data:`OBSERVABLES` at ``r = r* = 1``, else
    :func:`rank_observable_names`."""
    return OBSERVABLES if rank == 1 and teacher_rank == 1 else rank_observable_names(rank, teacher_rank)


def rank_observable_names(rank: int, teacher_rank: int) -> tuple[str, ...]:
    """The rank-``r`` observables (MODEL.md §8), in order: :data:`OBSERVABLES` with :data:`RANK_ONE_LORA`
    replaced by :data:`RANK_LORA` and the principal cosines (at ``r = r* = 1`` too, for the rank-``r`` code)."""
    i = OBSERVABLES.index(RANK_ONE_LORA[0])
    rest = tuple(n for n in OBSERVABLES[i:] if n not in RANK_ONE_LORA)
    return OBSERVABLES[:i] + RANK_LORA + cosine_names(rank, teacher_rank) + rest


def rank_fed_names(rank: int, teacher_rank: int) -> tuple[str, ...]:
    """The rank-``r`` counterpart of :data:`FINETUNE_FED`: the fine-tuning observables of
    :func:`rank_observable_names` the theory predicts from the pre-training it is fed (``tr_q, o_U, cos_k, E_ft,
    L_ft, E_frozen, delta_eff``; ``tr_q0`` is an input, as ``q0`` is)."""
    return tuple(n for n in rank_observable_names(rank, teacher_rank) if n not in PRETRAIN_THEORY and n != "tr_q0")


def random_control_names(rank_one: bool = True) -> tuple[str, ...]:
    """``<name>_random`` for every name of :data:`RANDOM_CONTROL` (:data:`RANK_RANDOM_CONTROL` at rank ``r``)."""
    return tuple(f"{name}_random" for name in (RANDOM_CONTROL if rank_one else RANK_RANDOM_CONTROL))


def recalibration(recalibrate, M: float, Q: float) -> float:
    """``β_W`` of the frozen weights ``√β_W Ŵ``: 1 (``None``), the number given, or ``'delta'`` = ``M/Q``
    (the minimiser of :func:`delta_eff`; 1 when ``Q = 0``: ``Ŵ = 0`` leaves nothing to rescale; ``'optimal'`` is
    its deprecated name). ``'error'`` (the ``E_ft`` minimiser) is no function of ``(M, Q)``: the fine-tuning
    theory finds it (:func:`theory.stages.finetune.solve_finetune`), and a simulation takes the number it
    reports (``beta_W``)."""
    if recalibrate is None:
        return 1.0
    if recalibrate in ("delta", "optimal"):
        return M / Q if Q > 0 else 1.0
    if recalibrate == "error":
        from model.params import ParameterError
        raise ParameterError("recalibrate = 'error' (argmin over β_W of E_ft) is found by the theory: solve it "
                             "(lora-attn optimize --over beta_W, or the theory's beta_W) and pass the number; "
                             "allowed here: a number > 0, 'delta' or None")
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


def _psd_inverse_sqrt(a: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """``a^{-1/2}`` of a symmetric PSD matrix, as a pseudo-inverse: eigenvalues below
    ``rtol·max`` treated as zero (a rank-deficient ``q``: columns of ``Û`` shrunk to zero by the ridge)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    keep = w > rtol * max(float(w.max(initial=0.0)), 0.0)
    inv = np.zeros_like(w)
    inv[keep] = 1.0 / np.sqrt(w[keep])
    return (v * inv) @ v.T


def subspace_overlap(q, m, q0) -> float:
    """``o_U = √(Tr(mᵀ q⁺ m) / Tr q0)`` (MODEL.md §8; ``q⁺`` the pseudo-inverse): the fraction of the teacher's
    directions captured by the span of ``Û``; ``o_w`` at ``r = r* = 1``. NaN when ``q = 0`` (``Û = 0``)."""
    q, m, q0 = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (q, m, q0))
    if not np.trace(q) > 0:
        return float("nan")
    s = _psd_inverse_sqrt(q)
    return math.sqrt(max(float(np.sum((s @ m) ** 2)), 0.0) / float(np.trace(q0)))


def principal_cosines(q, m, q0) -> np.ndarray:
    """The singular values of ``q^{-1/2} m q0^{-1/2}``, largest first, ``min(r, r*)`` of them (MODEL.md §8):
    the cosines of the principal angles between the spans of ``Û`` and ``U*``; ``o_w`` at ``r = r* = 1``.
    Pseudo-inverse square roots (a direction of ``Û`` shrunk to zero counts as a cosine 0); NaN when ``q = 0``."""
    q, m, q0 = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (q, m, q0))
    k = min(m.shape)
    if not np.trace(q) > 0:
        return np.full(k, np.nan)
    c = np.linalg.svd(_psd_inverse_sqrt(q) @ m @ _psd_inverse_sqrt(q0), compute_uv=False)
    return np.sort(c)[::-1][:k]
