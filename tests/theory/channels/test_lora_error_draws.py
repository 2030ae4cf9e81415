"""theory.channels.lora.error_draws: fixed test draws, kept for the next call of a sweep when small."""

import numpy as np

from theory.channels import lora


def test_the_same_arguments_give_the_same_draws_and_other_keys_others(monkeypatch):
    a = lora.error_draws(0, 1, 1000, 3)
    assert lora.error_draws(0, 1, 1000, 3) is a  # kept: not redrawn along a sweep
    b = lora.error_draws(1, 1, 1000, 3)
    assert b is not a and not np.allclose(np.asarray(a[0]), np.asarray(b[0]))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(lora.error_draws(0, 1, 1000, 3), a))


def test_large_draw_sets_are_not_kept(monkeypatch):
    monkeypatch.setattr(lora, "ERROR_DRAWS_MEMO_SIZE", 10)
    lora._ERROR_DRAWS.clear()
    a = lora.error_draws(0, 1, 64, 2)
    assert lora.error_draws(0, 1, 64, 2) is not a and not lora._ERROR_DRAWS
