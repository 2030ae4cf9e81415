"""Teachers, sequences, noise and labels of MODEL.md §2. Every sampler takes its key first.

The label noise ``Z`` is the model's law (:func:`model.laws.model_noise`), shared with the theory.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from model.laws import activation, model_noise
from simulate.layer import attention_preactivation, lora_preactivation, token_gram


@dataclass(frozen=True)
class Teacher:
    """Pre-training teacher ``W0 ∈ R^{D×P0}`` and fine-tuning direction ``w* ∈ R^D``, i.i.d. N(0, 1); for a
    teacher of rank ``r*`` (MODEL.md §8) ``w_star`` is the matrix ``U* ∈ R^{D×r*}`` (with orthogonal columns under
    ``Params.teacher_law = 'orthogonal'``, :func:`sample_teacher`)."""

    W0: Array
    w_star: Array


@dataclass(frozen=True)
class Batch:
    """A batch of ``n`` sequences with everything a loss needs.

    Attributes:
        X: tokens, ``(n, T, D)``.
        Z: pre-activation noise, ``(n, T, T)`` symmetric, ``Z_aa ~ N(0,1)``, ``Z_ab ~ N(0,1/2)``.
        A0: teacher pre-activations ``A_{W0}(X)``.
        R_star: teacher LoRA pre-activations ``R_{w*}(X)``.
        G: token Gram ``X Xᵀ / D``.
    """

    X: Array
    Z: Array
    A0: Array
    R_star: Array
    G: Array

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def take(self, idx: Array) -> "Batch":
        """The sub-batch of the sequences ``idx`` (each keeps its own noise)."""
        return Batch(*(a[idx] for a in (self.X, self.Z, self.A0, self.R_star, self.G)))

    def concat(self, other: "Batch") -> "Batch":
        """This batch's sequences followed by ``other``'s (each keeps its own noise)."""
        return Batch(*(jnp.concatenate([x, y]) for x, y in zip(
            (self.X, self.Z, self.A0, self.R_star, self.G), (other.X, other.Z, other.A0, other.R_star, other.G))))

    def pretrain_target(self, delta: float, sigma: str, beta: float) -> Array:
        """``B = σ(A_{W0} + √Δ Z)``: the pre-training labels are ``y = B X``."""
        return activation(self.A0 + jnp.sqrt(delta) * self.Z, sigma, beta)

    def finetune_target(self, delta: float, sigma: str, beta: float) -> Array:
        """``B' = σ(A_{W0} + R_{w*} + √Δ Z)``: the fine-tuning labels are ``y' = B' X``."""
        return activation(self.A0 + self.R_star + jnp.sqrt(delta) * self.Z, sigma, beta)


def sample_teacher(key: Array, D: int, P0: int, teacher_rank: int | None = None, law: str = "gaussian") -> Teacher:
    """``W0`` with ``P0`` columns and ``w*`` (``teacher_rank=None``) or ``U* ∈ R^{D×r*}`` (``teacher_rank = r*``),
    all entries i.i.d. N(0, 1). ``U*`` at ``r* = 1`` holds exactly the entries of ``w*`` (same key, same draws).

    ``law = 'orthogonal'`` (``Params.teacher_law``): the same draws made orthogonal, ``U* = √D·G R⁻¹`` from the
    QR factorisation ``G = QR`` with ``diag R > 0`` (Haar-distributed columns), so that ``q0 = U*ᵀU*/D = I`` at
    every ``D``, not only as ``D → ∞`` (for a vector: ``w* = √D·g/‖g‖``). ``W0`` is the same under both laws."""
    k0, k1 = jax.random.split(key)
    shape = (D,) if teacher_rank is None else (D, int(teacher_rank))
    u = jax.random.normal(k1, shape)
    if law == "orthogonal":
        u = orthogonal_columns(u)
    elif law != "gaussian":
        raise ValueError(f"law = {law!r} is unknown: allowed 'gaussian' or 'orthogonal'")
    return Teacher(W0=jax.random.normal(k0, (D, P0)), w_star=u)


def orthogonal_columns(g: Array) -> Array:
    """``√D·Q`` with ``g = QR``, ``diag R > 0``: columns orthogonal with squared norm ``D`` spanning those of ``g``
    (a vector: ``√D·g/‖g‖``)."""
    D = g.shape[0]
    if g.ndim == 1:
        return jnp.sqrt(D) * g / jnp.linalg.norm(g)
    q, r = jnp.linalg.qr(g)
    return jnp.sqrt(D) * q * jnp.sign(jnp.diag(r))[None, :]


def sample_batch(key: Array, n: int, T: int, teacher: Teacher, chunk: int | None = None) -> Batch:
    """``n`` fresh sequences ``X`` (i.i.d. N(0,1) tokens) with their noise and teacher pre-activations.

    Up to ``chunk`` sequences (default :func:`simulate.pretrain.chunk_size`, about 1 GiB of intermediates) are
    drawn at once, ``X = normal(k_X, (n, T, D))``. A larger batch is drawn chunk by chunk into host memory, chunk
    ``c`` from ``fold_in(k_X, c)`` (the same law, another draw of it), and its ``T × T`` blocks computed chunk by
    chunk, so that drawing it takes the memory of ``X`` plus one chunk, not several copies of ``X``.
    """
    from simulate.pretrain import chunk_size

    D = teacher.W0.shape[0]
    kx, kz = jax.random.split(key)
    size = chunk or chunk_size(T, max(D, teacher.W0.shape[1]))
    if n <= size:
        X = jax.random.normal(kx, (n, T, D))
        return Batch(
            X=X,
            Z=model_noise(kz, n, T),
            A0=attention_preactivation(X, teacher.W0),
            R_star=lora_preactivation(X, teacher.w_star),
            G=token_gram(X),
        )
    X = np.empty((n, T, D))
    A0, R_star, G = [], [], []
    for c, start in enumerate(range(0, n, size)):
        Xc = jax.random.normal(jax.random.fold_in(kx, c), (min(size, n - start), T, D))
        X[start:start + Xc.shape[0]] = np.asarray(Xc)
        A0.append(attention_preactivation(Xc, teacher.W0))
        R_star.append(lora_preactivation(Xc, teacher.w_star))
        G.append(token_gram(Xc))
    return Batch(X=X, Z=model_noise(kz, n, T), A0=jnp.concatenate(A0), R_star=jnp.concatenate(R_star),
                 G=jnp.concatenate(G))
