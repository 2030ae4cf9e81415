"""GAMP for Bayes-optimal LoRA fine-tuning at finite D (validation of :mod:`theory.bayes.finetune`).

Sequence single-index GAMP (THEORY_NOTES §5.1 'AMP_BO_2w' with k = 1): the design rows are the tokens
``x_{μa}/√D``, the channel couples the T tokens of a sequence through ``P(Y_μ | χ_μ)`` of
:mod:`theory.bayes.finetune`; prior ``w ~ N(0, I_D)``. With scalar variances (i.i.d. design):

    ω_μ = X_μ ŵ/√D − V g_μ^{old},              V = v̂
    g_μ, ∂g_μ = g_out(Y_μ; ω_μ, V)             (importance-sampled posterior moments, fixed keys)
    A = −(1/D) Σ_μ Tr ∂g_μ,   b = (1/√D) Σ_μ X_μᵀ g_μ + A ŵ
    ŵ = b/(1 + A),            v̂ = 1/(1 + A)    (Gaussian prior denoiser)

with damping 0.5 on ``(g, ŵ, v̂)`` and, by default, ``A = (1/D)Σ‖g‖²`` (Nishimori). The O(D^{-1/2})
cross-token Onsager terms ``(x_a·x_b/D) v̂ g_b`` and the fluctuation of ``‖x_a‖²/D`` are dropped.

Data: project building blocks (``simulate.data.sample_teacher``, ``sample_batch``) and a *synthetic*
frozen ``Ŵ = [c1 W0, c2 W1]`` (``W1`` an independent Gaussian ``D × P1``), so that
``S̃_Ŵ = a S̃0 + b S̃1`` exactly; its ``(Q0, Q, M)`` are measured at finite D with
``simulate.measure.order_parameters``. For the channel only the joint law of ``(A0, A_Ŵ)`` matters, which
this reproduces with prescribed ``Q, M`` (a trained ``Ŵ`` gives the same law with other values).
The statistician's observation per sequence is ``Y = H̃ − (M/Q) A_Ŵ`` with ``H̃ = B'`` (linear) or the
symmetric representative of ``log B'/β`` (softmax, defined up to ``c 11ᵀ``, which the channel ignores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model.params import ParameterError, Params
from simulate.data import sample_batch, sample_teacher
from simulate.layer import attention_preactivation
from simulate.measure import order_parameters
from theory import PretrainState
from theory.bayes.finetune import antithetic_normals, delta_bo, g_out, posterior_preactivations


@dataclass(frozen=True)
class AmpInstance:
    """One finite-D fine-tuning instance: observations ``Y`` ``(N', T, T)``, tokens ``X`` ``(N', T, D)``,
    the teacher ``w*``, the measured pre-training overlaps and a fresh test set."""

    X: jax.Array
    Y: jax.Array
    w_star: jax.Array
    pre: PretrainState
    X_test: jax.Array
    A_test: jax.Array  # (M/Q) A_Ŵ on the test sequences
    B_test: jax.Array  # B' on the test sequences


@dataclass(frozen=True)
class AmpResult:
    """AMP outcome: ``q = ‖ŵ‖²/D``, ``m = |ŵ·w*|/D``, ``q0 = ‖w*‖²/D``, the Bayes test error with the
    AMP posterior (``E_ft``, its standard error over test sequences), iterations and convergence."""

    q: float
    m: float
    q0: float
    E_ft: float
    E_ft_se: float
    n_iter: int
    converged: bool
    delta_BO: float
    pre: PretrainState


def symmetric_logits(B: jax.Array, beta: float) -> jax.Array:
    """A symmetric ``H̃`` with ``softmax(βH̃) = B`` row-wise, defined up to ``c 11ᵀ``:
    ``H̃_ab = log B_ab/β − r_a`` with ``r_a = r_0 + (log B_a0 − log B_0a)/β`` (row 0 as reference)."""
    L = jnp.log(B) / beta
    r = L[..., :, 0] - L[..., 0, :]
    return L - r[..., :, None]


def make_instance(key: jax.Array, params: Params, D: int, *, a: float = 0.7, b: float = 0.5,
                  kappa1: float = 1.0, n_test: int = 2000) -> AmpInstance:
    """Sample ``w*, W0``, a synthetic ``Ŵ`` with ``S̃_Ŵ = a S̃0 + b S̃1``, ``N' = ⌊α' D⌋`` fine-tuning
    sequences and ``n_test`` fresh test sequences (labels of MODEL.md §2)."""
    if a < 0 or b < 0 or a + b == 0:
        raise ParameterError(f"(a, b) = ({a}, {b}) is out of range: allowed a, b ≥ 0, a + b > 0")
    T = params.T
    P0 = max(1, int(round(params.kappa0 * D)))
    P1 = max(1, int(round(kappa1 * D)))
    k_t, k_1, k_tr, k_te = jax.random.split(key, 4)
    teacher = sample_teacher(k_t, D, P0)
    W1 = jax.random.normal(k_1, (D, P1))
    P = P0 + P1
    W_hat = jnp.concatenate([math.sqrt(a * math.sqrt(P / P0)) * teacher.W0,
                             math.sqrt(b * math.sqrt(P / P1)) * W1], axis=1)
    pre = PretrainState(**order_parameters(W_hat, teacher.W0))
    n = int(math.floor(params.alpha_prime * D))

    def observe(batch):
        A_hat = attention_preactivation(batch.X, W_hat)
        B = batch.finetune_target(params.delta, params.sigma, params.beta)
        H = B if params.sigma == "linear" else symmetric_logits(B, params.beta)
        return H - pre.shrink * A_hat, pre.shrink * A_hat, B

    tr = sample_batch(k_tr, n, T, teacher)
    te = sample_batch(k_te, n_test, T, teacher)
    Y, _, _ = observe(tr)
    _, A_test, B_test = observe(te)
    return AmpInstance(X=tr.X, Y=Y, w_star=teacher.w_star, pre=pre, X_test=te.X, A_test=A_test, B_test=B_test)


@partial(jax.jit, static_argnames=("project", "n_inner"))
def _channel(Y, omega, V, keys, dbo, *, project, n_inner):
    T = Y.shape[-1]

    def one(args):
        Yi, om, ki = args
        g, dg, _ = g_out(Yi, om, V, antithetic_normals(ki, n_inner, T), dbo, project)
        return g, dg

    return jax.lax.map(one, (Y, omega, keys), batch_size=512)


def run_amp(inst: AmpInstance, params: Params, *, seed: int = 0, n_inner: int = 512, max_iter: int = 60,
            damping: float = 0.5, tol: float = 1e-4, init_scale: float = 0.1,
            nishimori: bool = True) -> AmpResult:
    """Iterate GAMP from a random ``ŵ ~ N(0, init_scale² I)`` (no information on ``w*``).

    Stops when ``‖ŵ_new − ŵ‖²/D < tol``. Optional damping acts on ``g`` and ``(ŵ, v̂)`` together
    (damping ``ŵ`` alone breaks the Onsager cancellation: the overlap then flips sign every step and
    stalls near ``q ≈ 0``, seen at ``D = 500, α' = 0.5``; undamped, it oscillates with period 2 at
    ``α' = 2``). ``nishimori=True`` uses ``A = (1/D)Σ‖g‖²`` (equal to ``−(1/D)Σ Tr ∂g`` on the Nishimori
    line, less noisy than the importance-sampled covariance).
    """
    X, Y = inst.X, inst.Y
    n, T, D = X.shape
    dbo = delta_bo(params.delta, inst.pre)
    project = params.sigma == "softmax"
    key = jax.random.PRNGKey(seed)
    keys = jax.random.split(jax.random.fold_in(key, 1), n)
    w = init_scale * jax.random.normal(jax.random.fold_in(key, 0), (D,))
    v = 1.0
    g = jnp.zeros((n, T))
    Xs = X / math.sqrt(D)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        V = v
        omega = jnp.einsum("ntd,d->nt", Xs, w) - V * g
        g_new, dg = _channel(Y, omega, V, keys, dbo, project=project, n_inner=n_inner)
        g = damping * g + (1 - damping) * g_new
        if nishimori:
            A = float(jnp.sum(g_new * g_new) / D)
        else:
            A = max(float(-jnp.sum(jnp.trace(dg, axis1=1, axis2=2)) / D), 1e-12)
        bvec = jnp.einsum("ntd,nt->d", Xs, g_new) + A * w
        w_new = damping * w + (1 - damping) * bvec / (1.0 + A)
        v_new = damping * v + (1 - damping) / (1.0 + A)
        diff = float(jnp.sum((w_new - w) ** 2) / D)
        w, v = w_new, v_new
        if diff < tol:
            converged = True
            break
    q = float(w @ w / D)
    m = abs(float(w @ inst.w_star / D))
    q0 = float(inst.w_star @ inst.w_star / D)
    E, E_se = _test_error(inst, params, w, q, dbo)
    return AmpResult(q=q, m=m, q0=q0, E_ft=E, E_ft_se=E_se, n_iter=it, converged=converged, delta_BO=dbo,
                     pre=inst.pre)


def _test_error(inst: AmpInstance, params: Params, w, q: float, dbo: float, n_inner: int = 256):
    """``mean ‖E[B' | ω, A_Ŵ] − B'‖_F²`` on the test set with ``χ | ŵ ~ N(Xŵ/√D, (1 − q) I)``.

    Linear σ: ``E[B'] = ωωᵀ − qI + (M/Q)A_Ŵ``; softmax: ``n_inner`` MC draws of ``(χ, N)`` per sequence.
    """
    D = inst.X_test.shape[-1]
    T = inst.X_test.shape[1]
    omega = jnp.einsum("ntd,d->nt", inst.X_test, w) / math.sqrt(D)
    if params.sigma == "linear":
        pred = omega[:, :, None] * omega[:, None, :] - q * jnp.eye(T) + inst.A_test
    else:
        # at finite D, q = ‖ŵ‖²/D can exceed the prior's q0 = 1 (e.g. when ‖w*‖²/D > 1)
        pred = _softmax_predictor(omega, inst.A_test, max(1.0 - q, 0.0), dbo, params.beta, jax.random.PRNGKey(7),
                                  n_inner=n_inner)
    err = np.asarray(jnp.sum((pred - inst.B_test) ** 2, axis=(1, 2)))
    return float(err.mean()), float(err.std(ddof=1) / math.sqrt(err.size))


@partial(jax.jit, static_argnames=("n_inner",))
def _softmax_predictor(omega, mu, V, dbo, beta, key, *, n_inner):
    keys = jax.random.split(key, omega.shape[0])

    def one(args):
        om, m, ki = args
        return jnp.mean(jax.nn.softmax(beta * posterior_preactivations(om, m, V, dbo, ki, n_inner), axis=-1), axis=0)

    return jax.lax.map(one, (omega, mu, keys), batch_size=128)
