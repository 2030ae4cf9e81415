"""Property tests of the R^T proximal solver (theory/channels/prox.py) on problems whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from theory.channels.prox import newton_steps, prox_multistart, start_agreement


T = 3
_floats = st.floats(-2.0, 2.0, allow_nan=False)


# The losses take their data (ω, A or c, V) as arguments of one compiled function, so that the examples of a
# property share one compilation instead of tracing a new closure each (about 1.5 s an example).
def _quadratic_phi(w, A, V):
    return lambda z: jnp.sum((z - w) ** 2) / (2 * V) + 0.5 * z @ (A @ z)


def _quartic_phi(w, c, V):
    return lambda z: jnp.sum((z - w) ** 2) / (2 * V) + (jnp.sum(z**2) - c) ** 2


_quadratic_prox = jax.jit(lambda w, A, V: prox_multistart(_quadratic_phi(w, A, V), w, V))
_quartic_prox = jax.jit(lambda w, c, V: prox_multistart(_quartic_phi(w, c, V), w, V))
_quartic_newton = jax.jit(lambda w, c, V: newton_steps(_quartic_phi(w, c, V), w, 200, V, gtol=0.0))


@settings(max_examples=40, deadline=None)
@given(omega=st.lists(_floats, min_size=T, max_size=T), entries=st.lists(_floats, min_size=T * T, max_size=T * T),
       V=st.floats(0.05, 5.0))
def test_quadratic_prox_is_the_linear_solve(omega, entries, V):
    """φ(z) = ‖z − ω‖²/(2V) + ½ zᵀAz with A ⪰ 0 has the unique minimiser (I/V + A)⁻¹ ω/V."""
    B = np.array(entries).reshape(T, T)
    A = B @ B.T / T
    w = jnp.array(omega)
    z, converged, multimodal, _ = _quadratic_prox(w, jnp.array(A), V)
    exact = np.linalg.solve(np.eye(T) / V + A, np.array(omega) / V)
    assert bool(converged) and not bool(multimodal)
    # one Newton step is exact on a quadratic: only float64 round-off remains
    np.testing.assert_allclose(np.asarray(z), exact, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(omega=st.lists(_floats, min_size=T, max_size=T), target=st.floats(-1.0, 3.0), V=st.floats(0.05, 5.0))
def test_quartic_prox_is_a_minimum_below_omega_and_zero(omega, target, V):
    """A double-well loss (‖z‖² − c)²: the kept point is stationary, has a positive-definite Hessian, and its
    objective is not above those of ω, of 0 and of the radial points at the bottom of the well."""
    # at ω = 0 the minimisers of the isotropic loss form a sphere: no minimum is isolated (Hessian singular)
    assume(float(np.linalg.norm(omega)) > 1e-3)
    w = jnp.array(omega)
    phi = _quartic_phi(w, target, V)
    z, converged, _, _ = _quartic_prox(w, target, V)
    assert bool(converged)
    assert float(jnp.linalg.norm(jax.grad(phi)(z))) < 1e-6 * (1 / V + 1) * (1 + float(jnp.linalg.norm(z)))
    assert float(jnp.linalg.eigvalsh(jax.hessian(phi)(z))[0]) > 0
    candidates = [w, jnp.zeros(T)]
    if target > 0 and float(jnp.linalg.norm(w)) > 0:
        candidates.append(w / jnp.linalg.norm(w) * np.sqrt(target))
    assert all(float(phi(z)) <= float(phi(c)) + 1e-12 for c in candidates)


def test_start_agreement_flags():
    zs = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    multimodal, ambiguous = start_agreement(zs, jnp.array([0.0, 1.0, 0.0]), 0)
    assert bool(multimodal) and not bool(ambiguous)
    multimodal, ambiguous = start_agreement(zs, jnp.array([0.0, 0.0, 0.0]), 0)
    assert bool(multimodal) and bool(ambiguous)
    multimodal, ambiguous = start_agreement(zs[jnp.array([0, 2])], jnp.array([0.0, 0.0]), 0)
    assert not bool(multimodal) and not bool(ambiguous)


@settings(max_examples=25, deadline=None)
@given(omega=st.lists(_floats, min_size=T, max_size=T), target=st.floats(-1.0, 3.0), V=st.floats(0.05, 5.0))
# found by hypothesis: from ω the Newton step lands near the concave point z ≈ 0.04·e3, where the shifted step
# and the gradient step of length 1/curvature both overshoot; the iteration stopped there (‖∇φ‖ = 0.70)
@example(omega=[0.0, 0.0, 2.0], target=0.25, V=3.0)
def test_newton_stops_when_no_step_lowers_the_objective(omega, target, V):
    """With an unreachable gradient test (gtol = 0) the iteration still stops, at a minimum, once no step size
    lowers φ: it does not run to its cap (under vmap one such sample would set the cost of the whole batch)."""
    w = jnp.array(omega)
    phi = _quartic_phi(w, target, V)
    z, steps = _quartic_newton(w, target, V)
    assert int(steps) < 60
    assert float(jnp.linalg.norm(jax.grad(phi)(z))) < 1e-7 * (1 / V + 1) * (1 + float(jnp.linalg.norm(z)))
    # the batched loop gives each sample its own answer, to the precision of the stop (‖∇φ‖ of about 1e-8
    # divided by the smallest Hessian eigenvalue; the 1/V part alone would give V·1e-8)
    zb, _ = jax.vmap(_quartic_newton, in_axes=(0, None, None))(jnp.stack([w, 2 * w + 0.3]), target, V)
    np.testing.assert_allclose(np.asarray(zb[0]), np.asarray(z), rtol=0, atol=1e-7 * (1 + V))


def test_prox_leaves_a_strongly_concave_start():
    """Every start near the maximum z = 0 of φ (Hessian ≈ −11.8 I): the Gershgorin-shifted Newton step is then
    nearly singular and overshoots at every step size; the gradient step of length 1/curvature gets out. Found
    by hypothesis (ω = 0.01·(1, −0.7, 0.2), V = 5, c = 3: the prox stayed at ω, unconverged)."""
    w = 0.01 * jnp.array([1.0, -0.7, 0.2])
    V, c = 5.0, 3.0
    phi = lambda z: jnp.sum((z - w) ** 2) / (2 * V) + (jnp.sum(z**2) - c) ** 2  # noqa: E731
    z, converged, _, _ = prox_multistart(phi, w, V)
    assert bool(converged) and float(jnp.linalg.eigvalsh(jax.hessian(phi)(z))[0]) > 0
    assert float(phi(z)) < float(phi(w)) - 1.0
