"""The gap extrapolated to ``D = ∞``: a weighted fit ``gap(D) = a + b·x(D)`` with honest errors.

``x(D) = 1/D`` (``"inv_D"``, the default) or ``1/√D`` (``"inv_sqrt_D"``, a slower finite-size decay, e.g.
a third cumulant of the tokens, README). With gaps ``g_i`` at ``k`` sizes, simulation errors ``s_i`` (from
``n`` seeds, ``ν_i`` degrees of freedom each) and weights ``1/s_i²``, the intercept is the linear combination
``a = Σ_i c_i g_i`` of the weighted least-squares fit (``Σ c_i = 1``, ``Σ c_i x_i = 0``), and

- its simulation variance is ``Σ c_i² s_i²`` with the Welch–Satterthwaite degrees of freedom
  ``(Σ c_i² s_i²)² / Σ c_i⁴ s_i⁴/ν_i``;
- the theory's Monte-Carlo error is one error common to every size (one solve, carried to each ``D``), so it
  enters as ``(Σ c_i τ_i)²`` (for ``x = 1/D`` and linear test errors, whose ``τ_i`` carry the factor
  ``1 + c_T/D``, this is exactly the ``D = ∞`` error ``τ²``);
- the fit has ``k − 2`` residual degrees of freedom. With two sizes a straight line goes through both
  points: nothing checks the form ``a + b·x``, and :attr:`Extrapolation.checked` is false (the verdict
  does not rest on such a fit). With three or more the residual ``χ² = Σ (g_i − a − b x_i)²/s_i²`` is
  reported; when ``χ²/(k − 2) > 1`` the scatter about the line is larger than the seeds explain, so the
  simulation variance is multiplied by ``χ²/(k − 2)`` and the degrees of freedom are capped at ``k − 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from model.params import ParameterError
from validation.verdict import GapEstimate, welch_satterthwaite

#: The forms ``x(D)`` of the fit ``gap = a + b·x(D)``.
FORMS = {"inv_D": lambda D: 1.0 / D, "inv_sqrt_D": lambda D: 1.0 / np.sqrt(D)}
#: How each form reads in a table.
FORM_LABELS = {"inv_D": "a + b/D", "inv_sqrt_D": "a + b/√D"}


def check_form(form: str) -> str:
    """``form``, or :class:`ParameterError` unless it is one of :data:`FORMS`."""
    if form not in FORMS:
        raise ParameterError(f"extrapolation = {form!r} is unknown: allowed one of {', '.join(FORMS)}")
    return form


@dataclass(frozen=True)
class Extrapolation:
    """Result of :func:`extrapolate` (the module doc); NaN fields where fewer than two sizes have an error.

    Attributes:
        a, b: intercept (the gap at ``D = ∞``) and slope.
        sim_var: simulation variance of ``a`` (scaled by ``χ²/(k − 2)`` when that exceeds 1).
        sim_dof: its degrees of freedom (Welch–Satterthwaite over the sizes).
        theory_var: the theory's Monte-Carlo variance at the intercept.
        chi2, chi2_dof: the residual and its degrees of freedom ``k − 2`` (NaN, 0 with two sizes).
        scale: the factor applied to ``sim_var`` (1 when none).
        sizes: ``k``, the sizes in the fit.
        form: ``"inv_D"`` or ``"inv_sqrt_D"``.
    """

    a: float
    b: float
    sim_var: float
    sim_dof: float
    theory_var: float
    chi2: float
    chi2_dof: int
    scale: float
    sizes: int
    form: str = "inv_D"

    @property
    def a_err(self) -> float:
        return math.sqrt(self.sim_var + self.theory_var) if math.isfinite(self.sim_var) else math.nan

    @property
    def checked(self) -> bool:
        """Whether the fit has a residual to check its form with (three sizes or more)."""
        return self.chi2_dof >= 1

    def estimate(self, seeds: int, lost: int = 1, theory_dof: float = math.inf) -> GapEstimate:
        """The intercept as a :class:`validation.verdict.GapEstimate`."""
        cap = float(self.chi2_dof) if self.scale > 1.0 else math.inf
        return GapEstimate(gap=self.a, sim_var=self.sim_var, sim_dof=self.sim_dof, seeds=seeds, lost=lost,
                           theory_var=self.theory_var, theory_dof=theory_dof, dof_cap=cap)


def extrapolate(Ds: Sequence[float], gaps: Sequence[float], sems: Sequence[float], dofs: Sequence[float],
                theory_sems: Sequence[float] | None = None, form: str = "inv_D") -> Extrapolation:
    """Weighted least squares of ``gap = a + b·x(D)`` (the module doc). Sizes whose gap or error is not
    finite and positive are left out."""
    check_form(form)
    Ds, gaps, sems, dofs = (np.asarray(v, dtype=float) for v in (Ds, gaps, sems, dofs))
    tau = np.zeros_like(gaps) if theory_sems is None else np.asarray(theory_sems, dtype=float)
    ok = np.isfinite(gaps) & np.isfinite(sems) & (sems > 0) & np.isfinite(tau)
    k = int(ok.sum())
    if k < 2 or len(set(Ds[ok])) < 2:
        nan = math.nan
        return Extrapolation(nan, nan, nan, nan, nan, nan, 0, 1.0, k, form)
    x = FORMS[form](Ds[ok])
    X = np.stack([np.ones(k), x], axis=1)
    w = 1.0 / sems[ok] ** 2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    weights = cov @ (X.T * w)  # row 0: the c_i of the intercept
    a, b = weights @ gaps[ok]
    c = weights[0]
    parts = c**2 * sems[ok] ** 2
    sim_var = float(parts.sum())
    sim_dof = welch_satterthwaite(parts, dofs[ok])
    theory_var = float((c @ tau[ok]) ** 2)
    resid = gaps[ok] - (a + b * x)
    chi2_dof = k - 2
    chi2 = float(np.sum(w * resid**2)) if chi2_dof >= 1 else math.nan
    scale = chi2 / chi2_dof if chi2_dof >= 1 and chi2 > chi2_dof else 1.0
    return Extrapolation(a=float(a), b=float(b), sim_var=sim_var * scale, sim_dof=sim_dof, theory_var=theory_var,
                         chi2=chi2, chi2_dof=chi2_dof, scale=scale, sizes=k, form=form)
