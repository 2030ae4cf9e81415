"""What the theory computes, and at what cost: the accepted ranges of ``T`` and ``α`` (README, *Exit codes,
limits and resuming*). Checked by :func:`theory.check` before any work.

Cost in ``T`` (measured on 2 shared CPUs, default ``n_mc = 4000``; the fine-tuning channel's per-sample batches
are chunked to about 1 GB, :mod:`theory.chunks`, so memory stays bounded at every accepted ``T``):

* linear ``σ``: the pre-training and the test errors are in closed form; the fine-tuning channel costs about
  ``T³`` per sample (:data:`COST`: ``T = 30`` in 3 min and 2.9 GB).
* softmax ``σ``: the pre-training channel works on the ``K = T(T+1)/2`` entries of a ``T × T`` matrix (its
  Newton steps invert ``K × K`` Hessians, unrolled at compile time) and the test errors are Monte-Carlo
  integrals in ``2T + T(T+1)`` dimensions: compile time and cost grow as ``K³ ~ T⁶`` (one channel evaluation:
  1.9 s at ``T = 4``, 10.7 s at ``T = 6``; its working set, not chunked, 0.6 and 1.4 GB).
"""

from __future__ import annotations

from model.params import ParameterError, Params

#: The largest ``T`` the theory accepts, per ``σ`` (above: :class:`ParameterError`, exit 2).
T_MAX = {"linear": 30, "softmax": 6}
#: Above this ``T`` the command line states the expected cost (:func:`cost_note`) before the work starts.
T_QUICK = {"linear": 10, "softmax": 3}
#: Measured cost of one point at ``T`` (``lora-attn theory --json``, both stages, default settings, 2 shared
#: CPUs, ``/usr/bin/time -v``): ``(seconds, peak GB)``.
COST = {
    "linear": {10: (28, 0.9), 20: (89, 1.9), 30: (184, 2.9)},
    "softmax": {6: (299, 1.5)},
}
#: Beyond ``α = 1e12`` the pre-training has recovered the teacher to double precision (``Q = M = Q0`` to 1e-12
#: from ``α ≈ 1e6`` on) and the prior's spectrum (``Δ_eff = q̂/m̂² → 0``) can no longer be resolved.
ALPHA_MAX = 1e12


def check_limits(params: Params, *, stage: str, n_mc: int) -> None:
    """Refuse a point outside the theory's range (:class:`ParameterError`, before any work)."""
    t_max = T_MAX[params.sigma]
    if params.T > t_max:
        raise ParameterError(f"T = {params.T} is out of range for the {params.sigma} theory: allowed 1 ≤ T ≤ {t_max} "
                             f"(cost grows as {'T³' if params.sigma == 'linear' else 'T⁶'}; README, Exit codes, "
                             "limits and resuming)")
    if stage != "finetune" and params.alpha > ALPHA_MAX:
        raise ParameterError(f"alpha = {params.alpha!r} is out of range for the pre-training theory: allowed "
                             f"0 < alpha ≤ {ALPHA_MAX:g} (beyond it Q = M = Q0 to double precision)")


def cost_note(params: Params, *, stage: str = "both") -> str | None:
    """A sentence stating the expected cost of a point at a large ``T`` (``None`` at a quick ``T``)."""
    if params.T <= T_QUICK[params.sigma]:
        return None
    known = {T: c for T, c in COST[params.sigma].items() if c[0] is not None}
    above = [T for T in sorted(known) if T >= params.T]
    ref = above[0] if above else max(known, default=None)
    if ref is None:
        return f"T = {params.T} is slow for the {params.sigma} theory (minutes to hours a point)"
    seconds, gb = known[ref]
    return (f"T = {params.T}: expect up to about {seconds / 60:.0f} min and {gb:.1f} GB a point "
            f"(measured at T = {ref} on 2 CPUs; the Bayes-optimal fine-tuning adds to it)")
