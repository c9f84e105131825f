"""The streaming detector's bounded cache of network answers (service.cache)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logwarden.service.cache import RowCache


def answer(keys: np.ndarray) -> np.ndarray:
    """A stand-in for a network: a row that depends on every key of the window."""
    k = keys.astype(np.float64)
    return np.column_stack([k.sum(axis=1), (k * np.arange(1, k.shape[1] + 1)).sum(axis=1)])


class Counting:
    def __init__(self) -> None:
        self.asked: list[tuple[int, ...]] = []

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        self.asked += [tuple(r) for r in keys.tolist()]
        return answer(keys)


def test_each_missing_key_is_computed_once_then_served_from_the_cache() -> None:
    c = RowCache(64, 3, 2, np.float64)
    keys = np.array([[1, 2, 3], [4, 5, 6], [1, 2, 3], [0, 0, 0]])
    f = Counting()
    np.testing.assert_array_equal(c.fetch(keys, f), answer(keys))
    assert sorted(f.asked) == [(0, 0, 0), (1, 2, 3), (4, 5, 6)]
    assert (c.hits, c.misses) == (0, 3)
    g = Counting()
    np.testing.assert_array_equal(c.fetch(keys[::-1], g), answer(keys[::-1]))
    assert g.asked == [] and len(c) == 3 and (c.hits, c.misses) == (4, 3)
    assert c.fetch(np.zeros((0, 3)), g).shape == (0, 2)


@settings(max_examples=150, deadline=None)
@example(  # a key found in the young generation just before it rotated went out too soon
    [[(0, 0), (0, 1), (0, 5)], [(0, 2), (1, 0), (0, 3), (0, 4), (0, 1)],
     [(0, 0), (0, 2), (0, 5), (1, 0)], [(0, 1)]],
    5,
)  # fmt: skip
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=20),
        max_size=25,
    ),
    st.integers(1, 6),
)
def test_answers_are_right_and_memory_bounded_whatever_is_forgotten(
    batches: list[list[tuple[int, int]]], size: int
) -> None:
    c = RowCache(size, 2, 2, np.float64)
    recent: list[tuple[int, int]] = []  # distinct keys, most recently used last
    small = True  # no batch had more distinct keys than a generation holds
    for batch in batches:
        small = small and len(set(batch)) <= size
        keys = np.array(batch)
        f = Counting()
        np.testing.assert_array_equal(c.fetch(keys, f), answer(keys))
        assert len(f.asked) == len(set(f.asked))  # each missing key asked once
        if small:  # the latest `size` keys were kept
            assert not set(f.asked) & set(recent[-size:])
        assert len(c) <= 2 * size
        for k in dict.fromkeys(batch):
            if k in recent:
                recent.remove(k)
            recent.append(k)


def test_keys_that_share_a_hash_are_told_apart() -> None:
    # Every key in one slot chain and one hash: found by comparing the keys themselves.
    c = RowCache(8, 2, 2, np.float64, hasher=lambda keys: np.full(len(keys), 7, dtype=np.uint64))
    keys = np.array([[i, j] for i in range(3) for j in range(2)] * 2)
    f = Counting()
    np.testing.assert_array_equal(c.fetch(keys, f), answer(keys))
    assert len(f.asked) == 6
    np.testing.assert_array_equal(c.fetch(keys[::-1], f), answer(keys[::-1]))
    assert len(f.asked) == 6


def test_a_key_used_in_the_old_generation_survives_the_next_rotation() -> None:
    c = RowCache(2, 1, 2, np.float64)
    f = Counting()
    for k in ([0], [1], [2], [3]):  # 0 and 1 fill a generation, 2 and 3 the next
        c.fetch(np.array([k]), f)
    c.fetch(np.array([[0]]), f)  # in the old generation: copied back to the young one
    assert f.asked == [(0,), (1,), (2,), (3,)]
    c.fetch(np.array([[4]]), f)  # rotates: the generation of 0 and 1 is dropped
    c.fetch(np.array([[0]]), f)
    assert f.asked[-1] == (4,)
    c.fetch(np.array([[1]]), f)
    assert f.asked[-1] == (1,)


def test_the_memory_is_taken_when_the_cache_is_made() -> None:
    c = RowCache(1000, 10, 50, np.float32)
    before = c.nbytes

    def wide(keys: np.ndarray) -> np.ndarray:
        return np.repeat(answer(keys), 25, axis=1)

    for start in range(0, 5000, 500):  # five times what it holds
        keys = np.arange(start * 10, (start + 500) * 10).reshape(500, 10)
        np.testing.assert_array_equal(c.fetch(keys, wide), wide(keys).astype(np.float32))
    assert len(c) <= 2000
    assert c.nbytes == before >= 2 * 1000 * (10 * 4 + 50 * 4)
    with pytest.raises(ValueError, match="size"):
        RowCache(0, 1, 1)
