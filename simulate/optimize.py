"""L-BFGS on a jitted JAX objective (scipy's L-BFGS-B driver, float64), with a stationarity report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize


@dataclass(frozen=True)
class FitInfo:
    """How a minimisation ended.

    Attributes:
        objective: final value of the objective (in the caller's normalisation).
        grad_norm: ``‖∇F‖ · √n_params`` for the O(1)-normalised objective ``F``: the first-order change of
            ``F`` under a perturbation of unit RMS per parameter (dimensionless, O(1) at a random point).
        n_iter: L-BFGS iterations.
        converged: whether ``grad_norm ≤ accept · max(1, |F|)`` was reached.
        message: the driver's stopping message.
    """

    objective: float
    grad_norm: float
    n_iter: int
    converged: bool
    message: str


def lbfgs(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    scale: float,
    gtol: float = 1e-9,
    accept: float = 1e-6,
    max_iter: int = 5000,
    memory: int = 20,
) -> tuple[np.ndarray, FitInfo]:
    """Minimise ``F(x)`` given ``value_and_grad(x) -> (F, ∇F)`` on a flat float64 vector.

    ``scale = n_params`` rescales ``F`` for the driver so that its gradient entries are O(1) and the
    projected-gradient tolerance ``gtol`` (on ``max_i |∂F/∂x_i| · n``) is meaningful. The fit counts as
    converged when the reported ``grad_norm = ‖∇F‖ √n_params`` is at most ``accept · max(1, |F|)``
    (relative to the objective: a sum of many O(1) terms cannot be made stationary beyond its own
    rounding, and the driver stops once ``F`` no longer decreases at relative precision 1e-15). ``memory``: the
    number of correction pairs L-BFGS keeps.
    """
    n = x0.size

    def fun(x):
        v, g = value_and_grad(x)
        return float(v) * scale, np.asarray(g, dtype=np.float64) * scale

    res = minimize(
        fun,
        np.asarray(x0, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxfun": 2 * max_iter, "gtol": gtol, "ftol": 1e-15, "maxcor": memory},
    )
    _, g = value_and_grad(res.x)
    grad_norm = float(np.linalg.norm(np.asarray(g)) * np.sqrt(n))
    info = FitInfo(
        objective=float(res.fun) / scale,
        grad_norm=grad_norm,
        n_iter=int(res.nit),
        converged=bool(grad_norm <= accept * max(1.0, abs(float(res.fun) / scale))),
        message=str(res.message),
    )
    return res.x, info
