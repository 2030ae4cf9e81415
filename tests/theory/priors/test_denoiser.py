"""Tests of theory.priors.denoiser: the analytic prior half-step of the pre-training fixed point."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.priors.denoiser import prior_step, prior_step_sampled
from theory.states import PretrainHats, PretrainOverlaps
from theory.fixed_point import fixed_point

KAPPA0, Q0, DELTA, LAM = 0.5, 1.5, 0.1, 0.05


def _t1_fixed_point(kappa, alpha):
    """T = 1 ERM fixed point of THEORY_NOTES §3.2 (hats written here, in the test only)."""

    def step(o):
        den = o.V + 0.25
        hats = PretrainHats(
            m_hat=2 * alpha / den, q_hat=2 * alpha * (Q0 - 2 * o.M + o.Q + DELTA / 2) / den**2, sigma_hat=2 * alpha / den
        )
        return prior_step(hats, kappa0=KAPPA0, kappa=kappa, lam=LAM).overlaps

    res = fixed_point(step, PretrainOverlaps(Q=1.0, M=0.8, V=0.5), damping=0.3, rtol=1e-10, atol=1e-12, max_steps=500)
    assert res.converged
    return res.value


def test_t1_fixed_point_kappa1_theory_notes():
    o = _t1_fixed_point(1.0, 0.5)
    assert (o.Q, o.M, o.V) == pytest.approx((1.48655, 1.44249, 0.64743), abs=1e-5)
    assert Q0 + o.Q - 2 * o.M == pytest.approx(0.10157, abs=1e-5)
    den = o.V + 0.25
    hats = PretrainHats(2 * 0.5 / den, 2 * 0.5 * (Q0 - 2 * o.M + o.Q + DELTA / 2) / den**2, 2 * 0.5 / den)
    assert prior_step(hats, kappa0=KAPPA0, kappa=1.0, lam=LAM).trace == pytest.approx(0.7275, abs=1e-4)


def test_t1_fixed_point_alpha_045():
    o = _t1_fixed_point(1.0, 0.45)
    assert (o.Q, o.M, o.V) == pytest.approx((1.46892, 1.42182, 0.85764), abs=1e-5)
    assert Q0 + o.Q - 2 * o.M == pytest.approx(0.12529, abs=1e-5)


def test_t1_fixed_point_kappa03_truncated():
    # THEORY_NOTES §7 quotes (1.51450, 1.40772, 0.34299), 𝓔 = 0.19905 from a grid computation; the band-wise
    # quadrature (stable to 1e-12 in n_nodes) gives 𝓔 = 0.198979, σ = 0.343061: a 7e-5 gap, hence abs=1e-4.
    o = _t1_fixed_point(0.3, 0.5)
    assert (o.Q, o.M, o.V) == pytest.approx((1.51450, 1.40772, 0.34299), abs=1e-4)
    assert Q0 + o.Q - 2 * o.M == pytest.approx(0.19905, abs=1e-4)


@pytest.mark.parametrize("kappa", [1.0, pytest.param(0.3, marks=pytest.mark.slow), pytest.param(2.0, marks=pytest.mark.slow)])
def test_against_sampled_finite_d(kappa):
    hats = PretrainHats(m_hat=1.0, q_hat=0.5, sigma_hat=1.2)
    th = prior_step(hats, kappa0=KAPPA0, kappa=kappa, lam=LAM)
    samples = [prior_step_sampled(hats, kappa0=KAPPA0, kappa=kappa, lam=LAM, d=400, seed=s) for s in range(2)]
    for name in ("Q", "M", "V", "trace"):
        val = np.mean([getattr(r, name) for r, _ in samples])
        assert val == pytest.approx(getattr(th, name), abs=1e-2), name


def test_quadrature_converged_in_nodes():
    hats = PretrainHats(m_hat=0.7, q_hat=2.0, sigma_hat=0.9)
    a = prior_step(hats, kappa0=0.3, kappa=0.5, lam=0.1, n_nodes=128)
    b = prior_step(hats, kappa0=0.3, kappa=0.5, lam=0.1, n_nodes=1024)
    assert (a.Q, a.M, a.V, a.trace) == pytest.approx((b.Q, b.M, b.V, b.trace), abs=1e-10)


def test_exact_scalings_and_limits():
    hats = PretrainHats(m_hat=1.3, q_hat=0.4, sigma_hat=1.0)
    r1 = prior_step(hats, kappa0=KAPPA0, kappa=1.0, lam=LAM)
    r2 = prior_step(PretrainHats(1.3, 0.4, 2.0), kappa0=KAPPA0, kappa=1.0, lam=LAM)
    # f ∝ 1/σ̂: Q ∝ σ̂^-2, V, M, trace ∝ σ̂^-1
    assert r2.Q == pytest.approx(r1.Q / 4, rel=1e-12)
    assert (r2.M, r2.V, r2.trace) == pytest.approx((r1.M / 2, r1.V / 2, r1.trace / 2), rel=1e-12)
    # threshold above the spectrum: Ŝ = 0
    r0 = prior_step(hats, kappa0=KAPPA0, kappa=1.0, lam=10.0)
    assert (r0.Q, r0.M, r0.V, r0.trace) == (0.0, 0.0, 0.0, 0.0)
    # λ = 0, huge κ: V = 2∫f H dμ ≥ 0 and the Stein M stays below √(Q Q0) (Cauchy–Schwarz)
    r = prior_step(hats, kappa0=KAPPA0, kappa=5.0, lam=0.0)
    assert r.V > 0 and r.M < math.sqrt(r.Q * Q0)
    # m̂ = 0: Ŝ independent of S̄0, M = √κ0 (1/D)Tr Ŝ
    rz = prior_step(PretrainHats(0.0, 0.4, 1.0), kappa0=KAPPA0, kappa=1.0, lam=0.0)
    assert rz.M == pytest.approx(math.sqrt(KAPPA0) * rz.trace, rel=1e-12)
    # κ ≥ 1 never truncates; κ < 1 keeps a mass κ above x_κ
    assert r1.x_kappa is None


def test_bad_input():
    with pytest.raises(ValueError, match="sigma_hat"):
        prior_step(PretrainHats(1.0, 0.5, 0.0), kappa0=0.5, kappa=1.0, lam=0.1)
    with pytest.raises(ValueError, match="lam"):
        prior_step(PretrainHats(1.0, 0.5, 1.0), kappa0=0.5, kappa=1.0, lam=-1.0)
    with pytest.raises(ValueError, match="q_hat"):
        prior_step(PretrainHats(1.0, 0.0, 1.0), kappa0=0.5, kappa=1.0, lam=0.1)



@settings(max_examples=20, deadline=None)
@given(
    m_hat=st.floats(0.05, 5.0),
    q_hat=st.floats(0.01, 5.0),
    sigma_hat=st.floats(0.1, 5.0),
    kappa0=st.floats(0.05, 4.0),
    kappa=st.floats(0.05, 3.0),
    lam=st.floats(0.0, 1.0),
)
def test_property_prior_step(m_hat, q_hat, sigma_hat, kappa0, kappa, lam):
    r = prior_step(PretrainHats(m_hat, q_hat, sigma_hat), kappa0=kappa0, kappa=kappa, lam=lam)
    assert r.Q >= 0 and r.trace >= 0 and r.V >= 0
    # Cauchy–Schwarz: M = Tr(Ŝ S̄0)/D ≤ √(Q Q0), and ∫f² ≥ (∫f)²
    assert r.M <= math.sqrt(r.Q * (1 + kappa0)) + 1e-9
    assert r.Q >= r.trace**2 - 1e-12
    if kappa >= 1:
        # f is monotone and 1/σ̂-Lipschitz: every divided difference lies in [0, 1/σ̂]
        assert r.V <= 1 / sigma_hat + 1e-12
    else:
        assert r.x_kappa is not None
