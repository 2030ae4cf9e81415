"""Tests of theory.priors.spectrum: free convolution of the Wishart teacher with a semicircle."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.priors.spectrum import Semicircle, SpikedSpectrum, mmse_den

CASES = [(0.5, 0.3), (0.5, 0.01), (0.2, 0.02), (2.0, 0.1), (1.0, 1.0)]


@pytest.mark.parametrize("kappa0,delta", CASES)
def test_moments_exact(kappa0, delta):
    s = SpikedSpectrum(kappa0, delta)
    assert s.moment(0) == pytest.approx(1.0, abs=1e-10)
    assert s.moment(1) == pytest.approx(math.sqrt(kappa0), abs=1e-10)
    assert s.moment(2) == pytest.approx(1 + kappa0 + delta, abs=1e-10)


@pytest.mark.parametrize(
    "kappa0,delta,edges",
    [
        (0.5, 0.3, [(-0.8883, 4.2449)]),
        (0.5, 0.01, [(-0.1474, 0.1322), (0.1465, 4.1255)]),
        (0.2, 0.02, [(-0.2550, 0.2505), (0.6995, 4.6895)]),
        (2.0, 0.1, [(-0.1128, 4.1796)]),
    ],
)
def test_band_edges_theory_notes(kappa0, delta, edges):
    bands = SpikedSpectrum(kappa0, delta).bands
    assert len(bands) == len(edges)
    np.testing.assert_allclose(np.array(bands), np.array(edges), atol=1e-4)


def test_density_vanishes_outside_and_is_positive_inside():
    s = SpikedSpectrum(0.5, 0.01)
    (a, b), (c, d) = s.bands
    gap = np.linspace(b, c, 7)[1:-1]
    assert np.all(s.density(gap) == 0)
    assert np.all(s.density(np.array([a - 1e-6, d + 1e-6])) == 0)
    assert np.all(s.density(np.linspace(a, b, 9)[1:-1]) > 0)
    assert np.all(s.density(np.linspace(c, d, 9)[1:-1]) > 0)


def test_theory_notes_numbers():
    s = SpikedSpectrum(0.5, 0.3)
    assert s.int_mu3() == pytest.approx(0.110702, abs=1e-6)
    assert mmse_den(0.3, 0.5) == pytest.approx(0.168889, abs=1e-6)
    assert mmse_den(0.01, 0.5) == pytest.approx(0.007423, abs=1e-6)
    assert mmse_den(0.1, 2.0) == pytest.approx(0.086547, abs=1e-6)


def test_rie_attains_mmse():
    # q = ∫ ξ² dμ_Y = Q0 − mmse_den, with ξ(x) = x − 2Δ H(x) (THEORY_NOTES §4 item 6: 1.331111)
    s = SpikedSpectrum(0.5, 0.3)
    q = s.integrate(lambda x: s.rie(x) ** 2)
    assert q == pytest.approx(1.331111, abs=1e-6)
    assert q == pytest.approx(1.5 - mmse_den(0.3, 0.5), abs=1e-10)
    # and the RIE is unbiased for the overlap: ∫ ξ x dμ − Δ·(2∫ξH dμ)... via the mean: ∫ ξ dμ = √κ0
    assert s.integrate(s.rie) == pytest.approx(math.sqrt(0.5), abs=1e-10)


def test_stieltjes_off_axis_matches_quadrature():
    s = SpikedSpectrum(0.5, 0.01)
    z = np.array([0.1 - 0.05j, 2.0 - 0.3j, 5.0 + 1.0j, -0.3 - 0.01j])
    t, w = s.nodes(n=256)
    direct = (w[None, :] / (z[:, None] - t[None, :])).sum(axis=1)
    np.testing.assert_allclose(s.stieltjes(z), direct, atol=1e-8)
    assert np.all(s.stieltjes(z).imag * z.imag < 0)


def test_hilbert_on_and_off_support():
    s = SpikedSpectrum(0.5, 0.3)
    x_out = np.array([-2.0, 6.0])
    t, w = s.nodes(n=256)
    np.testing.assert_allclose(s.hilbert(x_out), (w[None, :] / (x_out[:, None] - t[None, :])).sum(1), atol=1e-12)
    # on the support: H from the cubic equals Re g(x − iη) as η → 0
    x_in = np.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(s.hilbert(x_in), s.stieltjes(x_in - 1e-9j).real, atol=1e-6)


def test_scaled_spectrum_from_hats():
    m_hat, q_hat, kappa0 = 1.7, 0.4, 0.5
    s = SpikedSpectrum.from_hats(kappa0, m_hat, q_hat)
    assert s.moment(0) == pytest.approx(1.0, abs=1e-10)
    assert s.moment(1) == pytest.approx(m_hat * math.sqrt(kappa0), abs=1e-10)
    assert s.moment(2) == pytest.approx(m_hat**2 * (1 + kappa0) + q_hat, abs=1e-10)
    y = SpikedSpectrum(kappa0, q_hat / m_hat**2)
    x = np.array([0.3, 1.0, 4.0])
    np.testing.assert_allclose(s.density(x), y.density(x / m_hat) / m_hat)
    np.testing.assert_allclose(s.hilbert(x), y.hilbert(x / m_hat) / m_hat)
    sc = SpikedSpectrum.from_hats(kappa0, 0.0, q_hat)
    assert isinstance(sc, Semicircle)
    assert sc.moment(2) == pytest.approx(q_hat, abs=1e-12)
    with pytest.raises(ValueError, match="q_hat"):
        SpikedSpectrum.from_hats(kappa0, 1.0, 0.0)


def test_bad_input():
    with pytest.raises(ValueError, match="kappa0"):
        SpikedSpectrum(-1.0, 0.1)
    with pytest.raises(ValueError, match="delta"):
        SpikedSpectrum(0.5, 0.0)
    with pytest.raises(ValueError, match="delta"):
        mmse_den(-0.1, 0.5)


def test_mmse_limits():
    for k in (0.2, 0.5, 1.0, 3.0):
        assert mmse_den(0.0, k) == 0.0
        assert mmse_den(math.inf, k) == 1.0
        slope = 2 * k - k * k if k < 1 else 1.0
        assert mmse_den(1e-6, k) / 1e-6 == pytest.approx(slope, rel=2e-3)
        assert mmse_den(1e3, k) == pytest.approx(1.0, abs=2e-3)
        # the asymptotic branches join the quadrature continuously
        lo, hi = 1e-9 * 0.999, 1e-9 * 1.001
        assert mmse_den(lo, k) / lo == pytest.approx(mmse_den(hi, k) / hi, rel=1e-4)
        lo, hi = 1e4 * 0.999, 1e4 * 1.001
        assert (1 - mmse_den(lo, k)) * lo == pytest.approx((1 - mmse_den(hi, k)) * hi, rel=1e-3)
    # κ0 → ∞ (semicircle prior): mmse_den(Δ) → Δ/(1+Δ)
    assert mmse_den(0.5, 400.0) == pytest.approx(0.5 / 1.5, abs=2e-3)


def test_against_sampled_matrix():
    rng = np.random.default_rng(1)
    d, kappa0, delta = 700, 0.5, 0.3
    p0 = int(kappa0 * d)
    W0 = rng.standard_normal((d, p0))
    G = rng.standard_normal((d, d))
    Y = W0 @ W0.T / math.sqrt(p0 * d) + math.sqrt(delta) * (G + G.T) / math.sqrt(2 * d)
    ev = np.linalg.eigvalsh(Y)
    s = SpikedSpectrum(kappa0, delta)
    # ∫μ³ = E_{λ~μ}[μ(λ)²] evaluated on the sample eigenvalues
    assert np.mean(s.density(ev) ** 2) == pytest.approx(s.int_mu3(), abs=2e-3)
    xs = np.linspace(-0.5, 4.0, 10)
    emp = np.searchsorted(ev, xs) / d
    theo = np.array([s.cdf(x) for x in xs])
    assert np.max(np.abs(emp - theo)) < 0.01


@settings(max_examples=25, deadline=None)
@given(kappa0=st.floats(0.01, 10.0), delta=st.floats(1e-6, 50.0))
def test_property_mass_positivity_mmse(kappa0, delta):
    s = SpikedSpectrum(kappa0, delta)
    assert s.moment(0) == pytest.approx(1.0, abs=1e-7)
    x = np.linspace(s.support[0] - 1, s.support[1] + 1, 301)
    assert np.all(s.density(x) >= 0)
    m = mmse_den(delta, kappa0)
    assert 0.0 <= m <= min(delta, 1.0)
    assert mmse_den(delta * 1.2, kappa0) > m
