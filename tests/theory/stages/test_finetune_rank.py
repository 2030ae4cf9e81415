"""The rank-r fine-tuning fixed point (MODEL.md §8): its canonical frame, refusals, and at r = r* = 1 the
rank-one theory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import model.precision  # noqa: F401
import theory
from model.observables import principal_cosines, subspace_overlap
from model.params import ParameterError, Params
from theory.channels.lora_rank import RankOverlaps
from theory.stages.finetune import solve_finetune
from theory.stages.finetune_rank import canonical_frame, solve_finetune_rank
from theory.states import PretrainState

PRE = PretrainState(Q0=2.0, Q=1.2, M=1.0)


def _random_overlaps(rng, r, s):
    G = rng.normal(size=(r + s, r + s + 3))
    C = G @ G.T / (r + s + 3)
    A = rng.normal(size=(r, r))
    return RankOverlaps(q=C[:r, :r], m=C[:r, r:], V=A @ A.T + 0.1 * np.eye(r)), C[r:, r:]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(1, 4), s=st.integers(1, 3))
def test_canonical_frame_keeps_the_invariants_and_is_a_projection(seed, r, s):
    rng = np.random.default_rng(seed)
    ov, _ = _random_overlaps(rng, r, s)
    q0 = np.eye(s)
    c = canonical_frame(ov)
    for f in (np.trace, lambda a: np.linalg.eigvalsh(a)):
        np.testing.assert_allclose(f(c.q), f(ov.q), atol=1e-10)
        np.testing.assert_allclose(f(c.V), f(ov.V), atol=1e-10)
    assert subspace_overlap(c.q, c.m, q0) == pytest.approx(subspace_overlap(ov.q, ov.m, q0), abs=1e-10)
    np.testing.assert_allclose(principal_cosines(c.q, c.m, q0), principal_cosines(ov.q, ov.m, q0), atol=1e-10)
    k = min(r, s)
    off = c.m.copy()
    off[np.arange(k), np.arange(k)] = 0
    assert np.all(np.abs(off) < 1e-10) and np.all(np.diag(c.m[:k, :k]) >= 0)
    again = canonical_frame(c)
    for a, b in ((again.q, c.q), (again.m, c.m), (again.V, c.V)):
        np.testing.assert_allclose(a, b, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_rotated_overlaps_share_a_canonical_frame(seed):
    rng = np.random.default_rng(seed)
    r, s = 3, 2
    ov, _ = _random_overlaps(rng, r, s)
    O, Os = ortho_group.rvs(r, random_state=seed), ortho_group.rvs(s, random_state=seed + 7)
    a = canonical_frame(ov)
    b = canonical_frame(RankOverlaps(O.T @ ov.q @ O, O.T @ ov.m @ Os, O.T @ ov.V @ O))
    for x, y in ((a.q, b.q), (a.m, b.m), (a.V, b.V)):
        np.testing.assert_allclose(x, y, atol=1e-8)


def test_rank_r_refuses_the_error_recalibration_before_any_work():
    with pytest.raises(ParameterError, match="recalibrate"):
        theory.check(Params(rank=2, recalibrate="error"))


@pytest.mark.slow
@pytest.mark.parametrize("sigma", ["linear", "softmax"])
def test_rank_one_fixed_point_is_the_rank_one_theory(sigma):
    # the same draws and map (test_lora_rank); both stop at |step(x) − x| < 1e-9 + 1e-6|x| under the same schedule,
    # so their fixed points agree to a few times that
    p = Params(T=2, sigma=sigma, alpha_prime=3.0, lam_prime=0.5)
    a = solve_finetune(p, PRE, n_mc=400, n_test=4096)
    b = solve_finetune_rank(p, PRE, n_mc=400, n_test=4096)
    assert a.converged and b.converged
    for x, y in ((a.q, b.tr_q), (a.m, float(b.m[0, 0])), (a.v, b.tr_v), (a.o_w, b.o_U), (a.o_w, b.cosines[0]),
                 (a.E_ft, b.E_ft), (a.L_ft, b.L_ft), (a.E_frozen, b.E_frozen)):
        assert y == pytest.approx(x, rel=1e-5, abs=1e-8)
