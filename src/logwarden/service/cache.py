"""A bounded cache of the networks' answers, in arrays allocated once.

The streaming detector asks the key model for the probabilities after each window and the
fold models for their statistics of (window, key) pairs; windows repeat, so the answers are
cached. Kept as Python objects (a tuple key, an array or a tuple per entry, a dict slot),
each entry cost about 1.2 KB of resident memory where its data is 300 bytes, and the caches
took more than half an hour of a stream to fill: in a 30-minute soak they went from 14,000
to 27,700 entries, and the detector's memory grew with them by about 16 MB.
Here the keys and values are rows of arrays allocated (and touched) when the cache is
made, looked up and filled a batch at a time with NumPy: the bound is memory taken at start,
and a lookup of thousands of windows is a few vectorised passes, not a loop of dict probes.

Two generations, as the parser's shape cache: each ``size`` entries at most, found through
an open-addressing index (linear probing, at most half full); when the young one is full
it becomes the old one and the old one, emptied, the young one. A hit in the old one is copied back to the
young one, so what is used lately survives a rotation. Keys are compared in full: the hash
only places them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["RowCache", "row_hash"]

# Odd 64-bit multipliers (from splitmix64) for the key hash; arithmetic wraps modulo 2**64.
_MUL = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def row_hash(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of ``keys`` (non-negative integers)."""
    x = keys.astype(np.uint64)
    h = np.zeros(len(keys), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            h = (h ^ x[:, j]) * _MUL + np.uint64(j + 1)
        h ^= h >> np.uint64(30)
        h *= _MIX1
        h ^= h >> np.uint64(27)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    return h


class _Table:
    """One generation: ``size`` entries at most, their keys and values in rows filled in
    order; an index of ``cap`` slots (a power of two, at most half used) holds each
    entry's hash and row."""

    __slots__ = ("cap", "count", "hashes", "keys", "rows", "used", "values")

    def __init__(self, size: int, key_width: int, value_width: int, dtype: np.dtype) -> None:
        cap = 1 << max(1, (2 * size - 1).bit_length())
        self.cap = cap
        self.count = 0
        # np.full writes every page now (np.zeros would map them lazily, and the memory
        # would still be taken over the first hours).
        self.used = np.full(cap, False)
        self.hashes = np.full(cap, 1, dtype=np.uint64)
        self.rows = np.full(cap, -1, dtype=np.int32)
        self.keys = np.full((size, key_width), -1, dtype=np.int32)
        self.values = np.full((size, value_width), 0, dtype=dtype)

    def clear(self) -> None:
        self.used[:] = False
        self.count = 0

    def find(self, hashes: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """The row of each key, -1 where it is absent."""
        mask = np.uint64(self.cap - 1)
        out = np.full(len(keys), -1, dtype=np.int64)
        if self.count == 0:
            return out
        pending = np.arange(len(keys))
        slots = (hashes & mask).astype(np.int64)
        while len(pending):
            s = slots
            used = self.used[s]
            same = used & (self.hashes[s] == hashes[pending])
            if same.any():
                rows = self.rows[s[same]]
                same[same] = (self.keys[rows] == keys[pending[same]]).all(axis=1)
                out[pending[same]] = self.rows[s[same]]
            go_on = used & ~same  # probe the next slot; an empty one ends the search
            pending = pending[go_on]
            slots = (s[go_on] + 1) & (self.cap - 1)
        return out

    def insert(self, hashes: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
        """Add distinct keys, absent from the table, with room for them."""
        n = len(keys)
        rows = self.count + np.arange(n)
        self.keys[rows] = keys
        self.values[rows] = values
        pending = np.arange(n)
        slots = (hashes & np.uint64(self.cap - 1)).astype(np.int64)
        while len(pending):
            free = ~self.used[slots]
            # Several keys may reach the same free slot: the first takes it, the others
            # probe on (the slot is used now).
            taken, first = np.unique(slots[free], return_index=True)
            won = pending[free][first]
            self.used[taken] = True
            self.hashes[taken] = hashes[won]
            self.rows[taken] = rows[won]
            lost = np.ones(len(pending), dtype=bool)
            lost[np.flatnonzero(free)[first]] = False
            pending = pending[lost]
            slots = (slots[lost] + 1) & (self.cap - 1)
        self.count += n


class RowCache:
    """Rows of ``value_width`` numbers for rows of ``key_width`` non-negative int32 keys;
    at most ``2 * size`` entries, in memory allocated when it is made. ``hasher``: the
    64-bit hash of key rows (only places them: keys are compared in full)."""

    def __init__(
        self,
        size: int,
        key_width: int,
        value_width: int,
        dtype: type = np.float32,
        hasher: Callable[[np.ndarray], np.ndarray] = row_hash,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.hasher = hasher
        self.key_width = key_width
        self.value_width = value_width
        dt = np.dtype(dtype)
        self._young = _Table(size, key_width, value_width, dt)
        self._old = _Table(size, key_width, value_width, dt)
        self.hits = 0  # keys asked that were cached (each occurrence)
        self.misses = 0  # keys computed (each once per fetch)

    def __len__(self) -> int:
        return self._young.count + self._old.count

    @property
    def nbytes(self) -> int:
        """The memory of its arrays (all allocated when the cache was made)."""
        t = (self._young, self._old)
        return sum(a.nbytes for x in t for a in (x.used, x.hashes, x.rows, x.keys, x.values))

    def fetch(self, keys: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The rows of ``keys`` (n, key_width): from the cache, the missing ones from
        ``compute`` (called once, with each missing key once) and kept."""
        keys = np.ascontiguousarray(keys, dtype=np.int32).reshape(-1, self.key_width)
        n = len(keys)
        out = np.empty((n, self.value_width), dtype=self._young.values.dtype)
        if n == 0:
            return out
        hashes = self.hasher(keys)
        young = self._young
        row = young.find(hashes, keys)
        hit = row >= 0
        out[hit] = young.values[row[hit]]
        self.hits += int(hit.sum())
        if hit.all():
            return out
        rest = np.flatnonzero(~hit)
        ukeys, uhash, inverse = _distinct(keys[rest], hashes[rest])
        values = np.empty((len(ukeys), self.value_width), dtype=out.dtype)
        old_row = self._old.find(uhash, ukeys)
        in_old = old_row >= 0
        values[in_old] = self._old.values[old_row[in_old]]
        self.hits += int(in_old[inverse].sum())
        missing = np.flatnonzero(~in_old)
        if len(missing):
            self.misses += len(missing)
            values[missing] = np.asarray(compute(ukeys[missing])).reshape(len(missing), -1)
        out[rest] = values[inverse]
        self._put(uhash, ukeys, values, (keys[hit], hashes[hit], row[hit]))
        return out

    def _put(
        self,
        hashes: np.ndarray,
        keys: np.ndarray,
        values: np.ndarray,
        young_hits: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Add the entries, rotating when the young generation is full; the keys this
        fetch found there (``young_hits``: keys, hashes, rows) are used as lately as the
        others, so a rotation copies them into the new young generation (else a key used
        now went out at the next rotation but one, before keys used long before it)."""
        start = 0
        carried = False
        while start < len(keys):
            room = self.size - self._young.count
            if room == 0:
                self._young, self._old = self._old, self._young
                self._young.clear()
                if not carried:
                    carried = True
                    self._carry(*young_hits)
                continue
            part = slice(start, start + room)
            self._young.insert(hashes[part], keys[part], values[part])
            start += room

    def _carry(self, keys: np.ndarray, hashes: np.ndarray, rows: np.ndarray) -> None:
        """Copy entries of the old generation (at ``rows``, found in it as the young one
        before a rotation) into the emptied young one, when they fit."""
        if not len(keys):
            return
        ukeys, uhash, inverse = _distinct(keys, hashes)
        if len(ukeys) >= self.size:  # the batch alone fills it: the new entries go first
            return
        first = np.zeros(len(ukeys), dtype=np.int64)
        first[inverse[::-1]] = np.arange(len(inverse))[::-1]  # a row of each distinct key
        self._young.insert(uhash, ukeys, self._old.values[rows[first]])


def _distinct(keys: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of ``keys`` in the order they first appear (the young generation keeps
    the latest when a batch alone overfills it), their hashes, and each row's index among
    them."""
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not (keys[first][inverse] == keys).all():  # two keys with one hash: compare rows
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first = first[order]
    return keys[first], hashes[first], rank[inverse]
