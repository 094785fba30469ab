"""The in-memory vector index: IVF agrees with exact search, filters hold, a thin filter still finds k."""

from __future__ import annotations

import numpy as np
import pytest

from imagine.errors import InputError
from imagine.index.ann import EXACT_MAX, VectorIndex


def _clustered(n: int, dim: int = 32, centers: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centers, dim)).astype(np.float32)
    label = rng.integers(0, centers, n)
    data = middle[label] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True), label, middle


def _exact(data, query, k, mask=None):
    scores = data @ (query / np.linalg.norm(query))
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return set(np.argsort(-scores)[:k])


def test_ivf_finds_what_exact_search_finds():
    data, label, middle = _clustered(EXACT_MAX + 10_000)
    kinds = np.where(label % 2 == 0, "text", "image")
    index = VectorIndex(data, {"kind": list(kinds)})
    assert index.centroids is not None, "past EXACT_MAX rows the index is an IVF"
    rng = np.random.default_rng(1)
    recall = []
    for _ in range(30):
        query = middle[rng.integers(0, len(middle))] + 0.3 * rng.normal(size=data.shape[1]).astype(np.float32)
        got = index.search(query, 10, {"kind": "text"})  # one value as a plain string
        assert len(got) == 10 and all(kinds[row] == "text" for row, _ in got)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        recall.append(len({row for row, _ in got} & _exact(data, query, 10, kinds == "text")) / 10)
    assert np.mean(recall) >= 0.9


def test_a_thin_filter_still_returns_k_rows():
    data, _, _ = _clustered(EXACT_MAX + 5_000, seed=2)
    sources = ["rare.txt" if i % 997 == 0 else "common.txt" for i in range(len(data))]
    index = VectorIndex(data, {"source": sources})
    got = index.search(data[5], 10, {"source": ["rare.txt"]})
    rare = {i for i, s in enumerate(sources) if s == "rare.txt"}
    assert len(got) == 10 and {row for row, _ in got} <= rare
    assert {row for row, _ in got} == _exact(data, data[5], 10, np.array([s == "rare.txt" for s in sources]))


def test_small_indexes_are_exact_and_unknown_values_match_nothing():
    data, _, _ = _clustered(500, seed=3)
    index = VectorIndex(data, {"kind": ["text"] * 500})
    assert index.centroids is None
    assert {row for row, _ in index.search(data[7], 5)} == _exact(data, data[7], 5)
    assert index.search(data[7], 5, {"kind": ["video"]}) == []
    with pytest.raises(InputError, match="the index holds 32"):
        index.search(np.ones(8), 5)
