"""Exact finite-``D`` factors of the data model that the ``D → ∞`` theory leaves out.

The layer's output carries the tokens: a test error is ``(1/D)‖E X‖_F² = Tr(E G E)`` with the token Gram
``G = XXᵀ/D``, which is ``I_T`` only as ``D → ∞`` (MODEL.md §7). For linear ``σ`` the error matrix of a
test sequence is ``E = (X Ψ Xᵀ − Tr(Ψ) I_T)/D − √Δ Z`` for a symmetric ``D×D`` matrix ``Ψ`` fixed by the
trained weights (``S_Ŵ + ŵŵᵀ − S_0 − w*w*ᵀ``, with ``β_W`` where recalibrated), which the test sequence
does not enter. Wick's theorem over the Gaussian tokens then gives, for any such ``Ψ`` and every ``D``,

    E_X[(1/D)‖(X Ψ Xᵀ − Tr Ψ I)X‖_F²/D²] = (1 + c_T/D) · T(T + 1) Tr(Ψ²)/D²,
    c_T = (T² + 3T + 4)/(T + 1)                      (c_3 = 5.5, MODEL.md §7's "+5.5/D"),

from the index patterns of ``Σ_abc E[F_ab (G_bc − δ_bc) F_ca]``: ``a = b = c`` (third cumulant of three
quadratic forms, ``8 Tr Ψ²``), two equal indices (``2 Tr Ψ²`` each, three patterns) and three distinct ones
(``Tr Ψ²``). The noise part ``Δ T(T + 1)/2`` is exact (``Z`` is independent of ``X``, ``E G = I``), and
the cross term vanishes. So the linear test errors at ``D`` are the ``D → ∞`` ones with their signal part
scaled by ``1 + c_T/D``; what remains of a gap is the finite-``D`` shift of ``Tr(Ψ²)/D²`` itself (the order
parameters), which this module does not model. For softmax ``σ`` the factor has no closed form (MODEL.md §7
measures it at ``≤ 1.5 %``) and the theory is left at ``D = ∞``.
"""

from __future__ import annotations

from typing import Any

from model.observables import TEST_ERRORS


def output_gram_constant(T: int) -> float:
    """``c_T = (T² + 3T + 4)/(T + 1)``: the relative ``1/D`` bias of a linear test error's signal part."""
    if T < 1:
        raise ValueError(f"T = {T}: allowed an integer T ≥ 1")
    return (T * T + 3 * T + 4) / (T + 1)


def output_gram_factor(T: int, D: int) -> float:
    """``1 + c_T/D = E_X[(1/D)‖F X‖_F²] / E_X[‖F‖_F²]`` for ``F = (XΨXᵀ − Tr Ψ I)/D``, any fixed ``Ψ``."""
    if D < 1:
        raise ValueError(f"D = {D}: allowed an integer D ≥ 1")
    return 1.0 + output_gram_constant(T) / D


def noise_error(T: int, delta: float) -> float:
    """``E Tr(Z²) Δ = Δ T(T + 1)/2``: the label-noise part of a test error, the same at every ``D``."""
    return delta * T * (T + 1) / 2.0


def linear_test_error_at(E_inf: float, *, T: int, D: int, delta: float) -> float:
    """A linear-``σ`` test error at finite ``D`` from its ``D → ∞`` value at the same order parameters:
    ``Δ T(T+1)/2 + (E_∞ − Δ T(T+1)/2)(1 + c_T/D)``."""
    noise = noise_error(T, delta)
    return noise + (E_inf - noise) * output_gram_factor(T, D)


def theory_at(name: str, value: float, D: int, params: Any) -> float:
    """The theory's ``value`` of observable ``name`` with the exact output-Gram factor of size ``D`` where
    one is known (linear ``σ`` test errors, :data:`model.observables.TEST_ERRORS`); ``value`` unchanged otherwise."""
    if params.sigma != "linear" or name not in TEST_ERRORS:
        return value
    return linear_test_error_at(value, T=params.T, D=D, delta=params.delta)


def sem_at(name: str, sem: float, D: int, params: Any) -> float:
    """A Monte-Carlo error of the theory scaled like :func:`theory_at` scales the value (bounded above by
    the factor, since the noise part is exact)."""
    if params.sigma != "linear" or name not in TEST_ERRORS:
        return sem
    return sem * output_gram_factor(params.T, D)

