"""Definitions the theory and the simulator share: β_W rules, Δ_eff, o_w."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.laws import goe_like, model_noise
from model.observables import (FINETUNE_FED, OBSERVABLES, RANDOM_CONTROL, delta_eff, lora_overlap, offdiag_squares,
                               random_control_names, recalibration)

finite = st.floats(0.05, 5.0)


def test_beta_W_rules():
    assert recalibration(None, 1.2, 2.0) == 1.0
    assert recalibration("optimal", 1.2, 2.0) == pytest.approx(0.6)
    assert recalibration("optimal", 0.0, 0.0) == 1.0  # Ŵ = 0: nothing to rescale
    assert recalibration(1.7, 1.2, 2.0) == 1.7


@given(Q0=finite, Q=finite, rho=st.floats(-0.99, 0.99), delta=st.floats(0.0, 2.0), beta_W=st.floats(0.0, 3.0))
def test_delta_eff_is_smallest_at_the_optimal_recalibration(Q0, Q, rho, delta, beta_W):
    M = rho * math.sqrt(Q * Q0)
    best = delta_eff(delta, Q0, Q, M, recalibration("optimal", M, Q))
    assert best == pytest.approx(delta / 2 + Q0 - M * M / Q, rel=1e-12, abs=1e-12)
    assert delta_eff(delta, Q0, Q, M, beta_W) >= best - 1e-12
    assert delta_eff(delta, Q0, Q, M) == delta_eff(delta, Q0, Q, M, 1.0)


def test_the_measured_delta_eff_has_the_closed_form_mean():
    """Off-diagonal mean square of A0 − β_W A_Ŵ + √ΔZ for GOE-like (A_Ŵ, A0) of covariance [[Q, M], [M, Q0]]."""
    Q0, Q, M, delta, beta_W, T, n = 2.0, 0.8, 0.9, 0.5, 1.3, 3, 60_000
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    A_hat = math.sqrt(Q) * goe_like(k[0], n, T)
    A0 = (M / Q) * A_hat + math.sqrt(Q0 - M * M / Q) * goe_like(k[1], n, T)
    R = A0 - beta_W * A_hat + math.sqrt(delta) * model_noise(k[2], n, T)
    per = np.asarray(jnp.mean(offdiag_squares(R), axis=-1))
    assert per.shape == (n,)
    assert abs(per.mean() - delta_eff(delta, Q0, Q, M, beta_W)) < 5 * per.std() / math.sqrt(n)


@given(m=st.floats(-3, 3), q=finite, q0=finite)
def test_the_lora_overlap_has_the_sign_of_w_removed(m, q, q0):
    assert lora_overlap(m, q, q0) == lora_overlap(-m, q, q0) >= 0
    assert math.isnan(lora_overlap(m, 0.0, q0))


def test_observable_name_groups_are_consistent():
    assert set(FINETUNE_FED) <= set(OBSERVABLES) and set(RANDOM_CONTROL) <= set(OBSERVABLES)
    assert random_control_names() == tuple(f"{n}_random" for n in RANDOM_CONTROL)
