"""The exact output-Gram factor of linear test errors (theory.finite_size) against the simulator's own
test error, and its use by the validation (``validation.compare``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.laws import activation
from model.params import Params
from simulate.data import sample_batch, sample_teacher
from simulate.layer import attention_preactivation, lora_preactivation, output_sq_error
from theory import finite_size
from validation.compare import AtSize, GapPoint, compare_paired, paired_points


def test_c3_is_model_md_s_measured_output_bias():
    assert finite_size.output_gram_constant(3) == 5.5
    assert finite_size.output_gram_factor(3, 100) == pytest.approx(1.055)


@given(T=st.integers(1, 8), D=st.integers(1, 10**6))
@settings(max_examples=50, deadline=None)
def test_factor_is_above_one_and_tends_to_one(T, D):
    f = finite_size.output_gram_factor(T, D)
    assert f > 1.0
    assert f - 1.0 == pytest.approx(finite_size.output_gram_constant(T) / D)
    assert finite_size.output_gram_factor(T, 10 * D) < f


@pytest.mark.parametrize("T, D, delta", [(3, 12, 0.5), (2, 9, 0.0), (4, 7, 1.0)])
def test_simulated_linear_test_error_has_the_exact_factor(T, D, delta):
    """The simulator's test error (1/D)‖(A_Ŵ + R_ŵ − A_W0 − R_w* − √Δ Z)X‖², averaged over many fresh test
    sequences for fixed weights, equals the D = ∞ error at the same weights, T(T+1) Tr(Ψ²)/D² + Δ T(T+1)/2,
    carried to D by theory.finite_size (Ψ = S_Ŵ + ŵŵᵀ − S_0 − w*w*ᵀ; Δ the noise variance)."""
    key = jax.random.PRNGKey(T * 100 + D)
    k_teacher, k_W, k_w, k_test = jax.random.split(key, 4)
    P = P0 = D
    teacher = sample_teacher(k_teacher, D, P0)
    W = 0.8 * jax.random.normal(k_W, (D, P))
    w = 0.5 * teacher.w_star + jax.random.normal(k_w, (D,))
    err_matrix = (W @ W.T - teacher.W0 @ teacher.W0.T) / math.sqrt(P) + jnp.outer(w, w) \
        - jnp.outer(teacher.w_star, teacher.w_star)
    E_inf = T * (T + 1) * float(jnp.sum(err_matrix**2)) / D**2 + finite_size.noise_error(T, delta)

    n = 400_000
    test = sample_batch(k_test, n, T, teacher)
    A = attention_preactivation(test.X, W) + lora_preactivation(test.X, w)
    err = output_sq_error(activation(A, "linear") - test.finetune_target(delta, "linear", 1.0), test.G)
    mean, sem = float(jnp.mean(err)), float(jnp.std(err) / math.sqrt(n))
    predicted = finite_size.linear_test_error_at(E_inf, T=T, D=D, delta=delta)
    assert abs(mean - predicted) < 4 * sem
    # the factor is resolved: the D = ∞ value is many standard errors away
    assert abs(mean - E_inf) > 10 * sem


def test_theory_at_touches_only_linear_test_errors():
    lin, soft = Params(sigma="linear", T=3, delta=0.5), Params(sigma="softmax", T=3, delta=0.5)
    assert finite_size.theory_at("E_ft", 2.0, 100, soft) == 2.0
    assert finite_size.theory_at("o_w", 0.9, 100, lin) == 0.9
    assert finite_size.theory_at("L_ft", 0.9, 100, lin) == 0.9
    noise = 0.5 * 3 * 4 / 2  # Δ T(T + 1)/2
    assert finite_size.theory_at("E_ft_random", 5.0, 100, lin) == pytest.approx(noise + (5.0 - noise) * 1.055)


def test_paired_points_compare_with_the_theory_at_each_D():
    params = Params(sigma="linear", T=3, delta=0.0)
    rng = np.random.default_rng(0)
    per_size = []
    for D in (100, 200, 400):
        th = pd.DataFrame({"E_ft": np.full(6, 1.0), "q": np.full(6, 0.5)})
        sim = pd.DataFrame({"E_ft": 1.0 + 5.5 / D + 1e-4 * rng.normal(size=6), "q": 0.5 + 1e-4 * rng.normal(size=6)})
        per_size.append((D, sim, th))
    at_D = compare_paired(paired_points(per_size, ["E_ft", "q"], at_size=AtSize.for_params(params)))
    assert at_D.ok
    row = at_D.table[(at_D.table.observable == "E_ft") & (at_D.table.D == 400)].iloc[0]
    assert row.theory == pytest.approx(1.0 + 5.5 / 400) and row.theory_inf == 1.0
    at_inf = compare_paired(paired_points(per_size, ["E_ft", "q"]))
    assert at_inf.disagree == ("E_ft",)
    assert GapPoint("x", 1, 2, 0.0, 0.0, 1.0).theory_inf is None
