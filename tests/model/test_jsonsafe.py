"""Strict JSON out of every --json (model/jsonsafe.py): no NaN or Infinity tokens, values kept."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from model.jsonsafe import dumps, loads_strict, plain

_leaf = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20), st.booleans(),
                  st.none(), st.text(max_size=5), st.floats(width=32).map(np.float32), st.integers(-5, 5).map(np.int64))
_tree = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                     max_leaves=20)


def _expected(x):
    if isinstance(x, dict):
        return {str(k): _expected(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_expected(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


@given(_tree)
def test_any_tree_is_strict_json_with_its_values(tree):
    assert loads_strict(dumps(tree)) == _expected(tree)


def test_the_conventions():
    assert plain({"a": float("nan"), "b": -math.inf, "c": (1, 2.5), 3: np.array([1.0, np.inf])}) == \
        {"a": None, "b": "-inf", "c": [1, 2.5], "3": [1.0, "inf"]}
    assert float(plain(math.inf)) == math.inf
