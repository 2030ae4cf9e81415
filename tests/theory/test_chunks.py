"""Bounded memory by chunks (theory/chunks.py): the same numbers as one batch."""

import numpy as np
import pytest

import theory.chunks as chunks
from model.params import Params
from theory.channels.lora import error_draws, finetune_hats, fresh_errors
from theory.laws.mixture import channel_samples
from theory.states import FinetuneOverlaps, PretrainState


def test_chunk_size_bounds():
    assert chunks.chunk_size(100.0, 10, budget=1000) == 10
    assert chunks.chunk_size(300.0, 10, budget=1000) == 3
    assert chunks.chunk_size(1e12, 10, budget=1000) == 1


def test_in_chunks_concatenates_in_order():
    x = np.arange(10.0)
    out = chunks.in_chunks(lambda a: (2 * a, a**2), (x,), 3)
    np.testing.assert_array_equal(out[0], 2 * x)
    np.testing.assert_array_equal(out[1], x**2)


@pytest.mark.parametrize("sigma", ["linear", pytest.param("softmax", marks=pytest.mark.slow)])  # softmax: 30 s
def test_the_finetuning_channel_in_chunks_gives_the_same_numbers(monkeypatch, sigma):
    params = Params(sigma=sigma)
    pre = PretrainState(Q0=2.0, Q=1.5, M=1.2)
    samples, _ = channel_samples(params, pre, 1.0, 64, 0)
    ov = FinetuneOverlaps(0.6, 0.5, 0.1)
    whole = finetune_hats(params, ov, samples, 1.0)
    draws = error_draws(0, 1, 256, params.T)
    errors = fresh_errors(params, 0.6, 0.5, 1.0, (1.5, 1.2, 2.25), 0.8, draws)
    # 25 samples a chunk: 3 chunks of the channel, 11 of the test draws
    monkeypatch.setattr("theory.channels.lora.chunk_size",
                        lambda per, n, budget=None: chunks.chunk_size(per, n, budget=25 * per))
    parts = finetune_hats(params, ov, samples, 1.0)
    # the batch compiled at another size rounds differently (measured, linear T = 3: 6e-10 relative on the
    # conjugates, 4e-8 on their standard errors): bounded by the fixed point's own stopping tolerance (rtol 1e-6),
    # far below the Monte-Carlo error (1e-2). A batch that fits one chunk (T ≤ 10 at n_mc = 4000) is not split.
    for a, b in ((parts[0].__dict__, whole[0].__dict__), (parts[1], whole[1]), (parts[2], whole[2])):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-12)
    assert fresh_errors(params, 0.6, 0.5, 1.0, (1.5, 1.2, 2.25), 0.8, draws) == pytest.approx(errors, rel=1e-6)
