"""The rank-``r`` fine-tuning map and what :func:`theory.fixed_point.phased_fixed_point` asks of it (MODEL.md §8).

The map is ``(q, m, V) ↦ canonical_frame(matrix_prior_update(rank_hats(q, m, V)))`` on fixed channel samples
(:mod:`theory.channels.lora_rank`, :mod:`theory.priors.matrix_ridge`), iterated on the packed matrices. This
module adds what the rank-one solver (:class:`theory.stages.finetune._LoraMap`) has and the rank-``r`` one
lacked: the full-map point of smallest residual, and the fixed point as a root of ``G(y) = step(y) − y``
(:func:`theory.fixed_point.root_fallback`) where damping and Anderson mixing fail (linear ``σ``, ``T = 2``,
``α' = 0.5``: the damped iteration oscillates with period two, as the rank-one map does there, whose Jacobian
has an eigenvalue ``≈ −28``).

The root is sought on the diagonal subspace (:func:`diagonal_coords`): ``q = diag(q_i)``, ``m`` rectangular-
diagonal ``(m_i)_{i<k}``, ``V = diag(v_i)``, ``2r + k`` coordinates (``(q, m, v)`` at ``r = r* = 1``). Why this
subspace, and why it is exact rather than an ansatz: the loss is invariant under a sign flip of any column of
``U`` (``χχᵀ = Σ_j χ_jχ_jᵀ``) and the teacher's law under a sign flip of any column of ``U*``, so the exact map
commutes with ``(q, m, V) ↦ (SqS, SmS*, SVS)`` for diagonal sign matrices ``S, S*``. A diagonal point is fixed by
every joint flip (``S*`` equal to ``S`` on the first ``k`` directions), so its image is too, and the only images
fixed by all of them are diagonal: the exact map sends the diagonal subspace into itself, and its fixed points
there are fixed points of the full map (every orbit that respects the flips meets it). The Monte-Carlo map
leaves it only by sampling error; its diagonal part (:meth:`RankMap.residual`) is the same estimator averaged
over the flipped copies of the draws. Off the diagonal nothing is solved, so an accepted root is checked
against the full map (:meth:`RankMap.off_diagonal_z`): the off-diagonal conjugates there must be zero within
their Monte-Carlo errors, or the fixed point is not reported. Unlike the canonical frame, the diagonal
coordinates stay smooth where ``m → 0`` or where singular values of ``m`` meet, where the gauge is undefined (a
root sought in the canonical frame's own coordinates made no progress there: ``hybr`` stopped at its start).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
from scipy.stats import norm

from model.params import Params
from theory import progress
from theory.channels.lora_rank import RankHats, RankOverlaps, RankSamples, rank_hats
from theory.channels.prox import START_SCALES
from theory.fixed_point import FixedPointResult
from theory.priors.matrix_ridge import matrix_prior_update

#: Family-wise level of the off-diagonal check of a root (:meth:`RankMap.off_diagonal_z`): a root is refused when
#: an off-diagonal conjugate is farther from zero than the two-sided Bonferroni quantile of its Monte-Carlo error.
OFF_DIAGONAL_LEVEL = 0.01


def canonical_frame(ov: RankOverlaps) -> RankOverlaps:
    """``(q, m, V)`` in the canonical frame of the module doc: with ``m = PSRᵀ`` (full SVD), the student rotated
    by ``P`` and the teacher by ``R`` (``q0 ∝ I`` is unchanged), the block of ``q`` outside the first
    ``rank(m) ≤ min(r, r*)`` student directions diagonalised, then the signs of student directions (with their
    teacher partners) chosen so that ``q_{1k} ≥ 0``. At ``r = r* = 1`` it maps ``m`` to ``|m|``."""
    q, m, V = ov.q, ov.m, ov.V
    r, s = m.shape
    P, S, Rt = np.linalg.svd(m, full_matrices=True)
    R = Rt.T
    k = min(r, s)
    if r > k:
        qp = P.T @ q @ P
        w, E = np.linalg.eigh(qp[k:, k:])
        E = E[:, ::-1]
        P = P.copy()
        P[:, k:] = P[:, k:] @ E
    qn = P.T @ q @ P
    signs = np.ones(r)
    for j in range(1, r):
        if qn[0, j] < 0:
            signs[j] = -1.0
    P = P * signs
    Rs = np.ones(s)
    Rs[:k] = signs[:k]
    R = R * Rs
    q2, m2, V2 = P.T @ q @ P, P.T @ m @ R, P.T @ V @ P
    return RankOverlaps(q=(q2 + q2.T) / 2, m=m2, V=(V2 + V2.T) / 2)


def pack(ov: RankOverlaps) -> np.ndarray:
    """``(q, m, V)`` as one vector (row-major, every entry): the iterate of the damped iteration."""
    return np.concatenate([ov.q.ravel(), ov.m.ravel(), ov.V.ravel()])


def unpack(x: np.ndarray, r: int, s: int) -> RankOverlaps:
    """Inverse of :func:`pack` (``q, V`` symmetrised)."""
    x = np.asarray(x, dtype=float)
    q = x[:r * r].reshape(r, r)
    m = x[r * r:r * r + r * s].reshape(r, s)
    V = x[r * r + r * s:].reshape(r, r)
    return RankOverlaps(q=(q + q.T) / 2, m=m, V=(V + V.T) / 2)


def diagonal_coords(ov: RankOverlaps) -> np.ndarray:
    """``(q_ii, m_ii (i < k), V_ii)``: the coordinates of the diagonal subspace (module doc)."""
    k = min(ov.m.shape)
    return np.concatenate([np.diag(ov.q), np.diag(ov.m)[:k], np.diag(ov.V)])


def from_diagonal(y: np.ndarray, r: int, s: int) -> RankOverlaps:
    """The diagonal point with coordinates ``y`` (inverse of :func:`diagonal_coords` there); ``2r`` coordinates
    ``(q_ii, V_ii)`` are a point of the uninformed part ``m = 0``."""
    k = min(r, s)
    y = np.asarray(y, dtype=float)
    m = np.zeros((r, s))
    if uninformed(y, r):
        return RankOverlaps(q=np.diag(y[:r]), m=m, V=np.diag(y[r:]))
    m[np.arange(k), np.arange(k)] = y[r:r + k]
    return RankOverlaps(q=np.diag(y[:r]), m=m, V=np.diag(y[r + k:]))


def uninformed(y: np.ndarray, r: int) -> bool:
    """Whether diagonal coordinates ``y`` are those of the uninformed part (``2r`` of them: no ``m``)."""
    return len(y) == 2 * r


def off_diagonal(a: np.ndarray) -> np.ndarray:
    """The entries of ``a`` off its (rectangular) diagonal, as a flat array."""
    mask = ~np.eye(*a.shape, dtype=bool)
    return a[mask]


def relative_residual(x: np.ndarray, y: np.ndarray, rtol: float, atol: float) -> float:
    """``max_i |y_i − x_i| / (atol + rtol |x_i|)``: the stopping measure of the iteration."""
    return float(np.max(np.abs(y - x) / (atol + rtol * np.abs(x)), initial=0.0))


def in_domain(ov: RankOverlaps) -> bool:
    """Where the map is defined: finite, ``V ≻ 0``, ``q ⪰ 0`` with at least one direction ``> 0``."""
    if not (np.all(np.isfinite(ov.q)) and np.all(np.isfinite(ov.m)) and np.all(np.isfinite(ov.V))):
        return False
    w = np.linalg.eigvalsh(ov.q)
    # a direction of q shrunk to zero may come back from the prior update at −1e-17: rounding, not a negative q
    return bool(np.linalg.eigvalsh(ov.V)[0] > 0 and w[-1] > 0 and w[0] >= -1e-12 * w[-1])


class RankMap:
    """The rank-``r`` map on fixed channel samples (module doc). Remembers the full-map point of smallest
    residual (where the root fallback starts)."""

    def __init__(self, params: Params, samples: RankSamples, q0: np.ndarray, *, n_iter: int, rtol: float,
                 atol: float, gauge: bool = True):
        self.params, self.samples, self.q0 = params, samples, q0
        self.r, self.s = params.rank, params.teacher_rank
        self.n_iter, self.rtol, self.atol, self.gauge = n_iter, rtol, atol, gauge
        self.best: tuple[float, RankOverlaps | None] = (math.inf, None)

    def hats(self, ov: RankOverlaps, scales: tuple[float, ...] = START_SCALES):
        """:func:`theory.channels.lora_rank.rank_hats` at ``ov`` with the prox started from ``scales``."""
        progress.tick("finetune_rank", tr_q=float(np.trace(ov.q)), tr_v=float(np.trace(ov.V)))
        return rank_hats(self.params, ov, self.samples, self.q0, self.n_iter, tuple(scales))

    def step(self, scales: tuple[float, ...]):
        """The map on packed overlaps with the prox started from ``s·ω``, ``s`` in ``scales``."""
        return partial(self._step, tuple(scales))

    def _step(self, scales: tuple[float, ...], x: np.ndarray) -> np.ndarray:
        ov = unpack(x, self.r, self.s)
        if not in_domain(ov):
            return np.full_like(x, np.nan)
        new = matrix_prior_update(self.hats(ov, scales)[0], self.q0)
        if new is None:
            # the centring ridge can make λ_eff I + V̂ indefinite; shrink V (a fixed point keeps V unchanged)
            return pack(RankOverlaps(ov.q, ov.m, ov.V / 2))
        y = pack(canonical_frame(new) if self.gauge else new)
        if scales == tuple(START_SCALES):
            res = relative_residual(x, y, self.rtol, self.atol)
            if res < self.best[0]:
                self.best = (res, ov)
        return y

    def verify(self, fp: FixedPointResult[np.ndarray]) -> tuple[bool, str, tuple[Any, ...]]:
        """``(ok, status, (point, hats, sem, diag))`` of a run: converged, finite, and a true fixed point (the
        conjugates evaluated afresh at the run's value, every prox start)."""
        ov = unpack(fp.value, self.r, self.s)
        if not (fp.converged and np.all(np.isfinite(fp.value))):
            return False, fp.status, (ov, None, {}, {})
        hats, sem, diag = self.hats(ov)
        if matrix_prior_update(hats, self.q0) is None:
            return False, "no_fixed_point", (ov, None, {}, {})
        return True, fp.status, (ov, hats, sem, diag)

    def residual(self, y: np.ndarray) -> tuple[np.ndarray | None, Any]:
        """``G(y) = diagonal_coords(prior_update(diag(hats(y)))) − y`` on the diagonal subspace (module doc): the
        conjugates' off-diagonal entries (zero but for sampling error there) are dropped before the prior
        update; on its uninformed part (``2r`` coordinates, ``m = 0``) ``m̂`` is dropped too. ``None`` outside the
        map's domain or where ``λ_eff I + V̂`` is not positive definite."""
        ov = from_diagonal(y, self.r, self.s)
        if not in_domain(ov):
            return None, None
        out = self.hats(ov)
        blind = uninformed(y, self.r)
        new = matrix_prior_update(diagonal_hats(out[0], uninformed=blind), self.q0)
        if new is None:
            return None, out
        g = diagonal_coords(new) - diagonal_coords(ov)
        return (np.concatenate([g[:self.r], g[-self.r:]]) if blind else g), out

    def root_starts(self) -> list[np.ndarray]:
        """The diagonal of the full-map point of smallest residual (canonical frame), its mirror with the signs
        of ``m`` flipped (the same fixed point in law), and its projection on the uninformed part ``m = 0``
        (where the informed fixed point has merged with it, ``m`` of the Monte-Carlo map is sampling error,
        and its Jacobian near-singular); none before a full-map evaluation."""
        b = self.best[1]
        if b is None:
            return []
        y = diagonal_coords(b)
        y[:self.r] = np.maximum(y[:self.r], 0.0)
        k = min(self.r, self.s)
        mirror = y.copy()
        mirror[self.r:self.r + k] *= -1
        return [y, mirror, np.concatenate([y[:self.r], y[-self.r:]])]

    def from_root(self, y: np.ndarray, out: Any) -> tuple[Any, ...]:
        """The payload of an accepted root ``y`` with the map's output there: the diagonal point with ``m ≥ 0``
        (the flip of a column of ``U*`` is a symmetry) and the full (not diagonal-projected) conjugates."""
        ov = from_diagonal(y, self.r, self.s)
        m = np.abs(ov.m)
        hats = out[0]
        signs = np.sign(np.diag(ov.m))
        signs[signs == 0] = 1.0
        k = min(self.r, self.s)
        flip = np.ones(self.s)
        flip[:k] = signs
        hats = RankHats(q_hat=hats.q_hat, m_hat=hats.m_hat * flip[None, :], V_hat=hats.V_hat, lam_eff=hats.lam_eff)
        return (RankOverlaps(q=ov.q, m=m, V=ov.V), hats, *out[1:])

    @staticmethod
    def off_diagonal_z(hats: RankHats, sem: dict[str, Any], *, blind: bool = False) -> tuple[float, float]:
        """``(z, z_max)``: the largest ``|ĥ_ij|/sem_ij`` over the entries a root of the diagonal map sets to zero
        (the off-diagonal entries of ``q̂, m̂, V̂``; with ``blind``, a root of the uninformed part, every entry of
        ``m̂``), and the two-sided Bonferroni quantile at :data:`OFF_DIAGONAL_LEVEL` over their number
        (``z ≤ z_max``: the full map keeps the root's subspace within Monte-Carlo error)."""
        zs = []
        for name in ("q_hat", "m_hat", "V_hat"):
            full = blind and name == "m_hat"
            h = np.ravel(getattr(hats, name)) if full else off_diagonal(np.asarray(getattr(hats, name)))
            e = np.ravel(sem[name]) if full else off_diagonal(np.asarray(sem[name]))
            if name != "m_hat":  # symmetric: each pair once
                r = hats.q_hat.shape[0]
                iu = [i * (r - 1) + j - (j > i) for i in range(r) for j in range(i + 1, r)]
                h, e = h[iu], e[iu]
            zs.extend(np.abs(h) / np.where(e > 0, e, np.inf))
        if not zs:
            return 0.0, math.inf
        return float(np.max(zs)), float(norm.isf(OFF_DIAGONAL_LEVEL / (2 * len(zs))))


def diagonal_hats(h: RankHats, *, uninformed: bool = False) -> RankHats:
    """The conjugates with their off-diagonal entries set to zero (their average over the sign flips of the
    module doc, at a diagonal point), and ``m̂`` entirely with ``uninformed`` (at ``m = 0`` every flip of a
    column of ``U*`` fixes the point, so the average of ``m̂`` over them is zero)."""
    mh = np.zeros_like(h.m_hat)
    k = min(mh.shape)
    if not uninformed:
        mh[np.arange(k), np.arange(k)] = np.diag(h.m_hat)[:k]
    return RankHats(q_hat=np.diag(np.diag(h.q_hat)), m_hat=mh, V_hat=np.diag(np.diag(h.V_hat)), lam_eff=h.lam_eff)
