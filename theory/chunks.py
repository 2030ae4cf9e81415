"""Bounded memory for the per-sample Monte-Carlo integrands: a batch is evaluated in chunks whose working set
stays under :data:`CHUNK_BYTES`, one after the other.

A vmapped integrand keeps, per sample, arrays of about ``bytes_per_sample`` (measured: the fine-tuning channel
with its Hessians and Jacobians in ``R^T`` holds about ``50 T³`` bytes a sample; 4000 samples at ``T = 20`` took
1.9 GB at its peak). Each chunk is brought back to host memory before the next one is dispatched, so chunks never
run side by side (which would undo the bound). A batch compiled at another size rounds differently (measured:
6e-10 relative on the fine-tuning conjugates, 4e-8 on their standard errors, far below their Monte-Carlo error); a batch that fits is evaluated
in one call, as before (the fine-tuning channel up to ``T = 10`` at ``n_mc = 4000``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

#: Working-set budget of one chunk.
CHUNK_BYTES = 1 << 30


def chunk_size(bytes_per_sample: float, n: int, budget: int = CHUNK_BYTES) -> int:
    """The largest number of samples whose working set fits ``budget`` (at least 1, at most ``n``)."""
    return int(min(n, max(1, budget // max(1.0, bytes_per_sample))))


def in_chunks(fn: Callable[..., Sequence[Any]], batched: Sequence[Any], chunk: int) -> list[np.ndarray]:
    """``fn(*batched)`` (a tuple of per-sample arrays, leading axis the samples) evaluated on successive slices of
    ``chunk`` samples, each brought to host memory before the next is dispatched; the outputs concatenated
    (numpy arrays)."""
    n = len(batched[0])
    if chunk >= n:
        return [np.asarray(o) for o in fn(*batched)]
    parts = []
    for i in range(0, n, chunk):
        parts.append([np.asarray(o) for o in fn(*(a[i:i + chunk] for a in batched))])
    return [np.concatenate(col) for col in zip(*parts)]
