"""Forward passes of the models' networks in NumPy, from their PyTorch weights.

Detection imports no PyTorch: a command must start, load and score in about a second. Both
follow PyTorch's LSTM layout (gates i, f, g, o; ``lstm.weight_ih_lK`` ...), reordered to
i, f, o, g so that one sigmoid covers three gates.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

__all__ = [
    "HASH_MIX",
    "KeyNetNumpy",
    "ParamNetNumpy",
    "ParamNetStack",
    "distinct_rows",
    "pad_columns",
    "rows_times",
]

# Matrix products whose every row comes out the same whatever the other rows of the batch:
# OpenBLAS multiplies a single row another way (gemv) and, for an output width that is not
# a multiple of its kernels' (a vocabulary of 33 keys), small batches another way again,
# each with its own float32 rounding. A window's probabilities then depended on the
# windows computed with it, and a log scored by workers (each with its own cache of
# windows) differed from one process in the last digits of a score. So rows are multiplied
# in tiles of _TILE (the last one padded with zeros): every product BLAS sees has the same
# shape, whatever the batch; output widths are padded to a multiple of _COLUMNS too. The
# tile is small because within one product a row's rounding can depend on its place: on
# OpenBLAS's Haswell kernels (an AMD EPYC without AVX-512) rows of a 64-row tile came out
# three ways, of an 8-row tile one way (measured; a 64-row tile was fine on AVX-512).
_COLUMNS = 16


def pad_columns(w: np.ndarray) -> np.ndarray:
    """``w`` (k, n) with zero columns up to a multiple of ``_COLUMNS``."""
    extra = -w.shape[1] % _COLUMNS
    if not extra:
        return np.ascontiguousarray(w)
    return np.ascontiguousarray(np.pad(w, ((0, 0), (0, extra))))


_TILE = 8  # rows per product: each row's arithmetic the same, at any place in the batch


def rows_times(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w`` for a 2-D ``a``, each row computed as in any other batch (``w`` padded)."""
    n, k = a.shape
    tiles = -(-n // _TILE)
    if n % _TILE:
        a = np.concatenate([a, np.zeros((tiles * _TILE - n, k), dtype=a.dtype)])
    return np.matmul(a.reshape(tiles, _TILE, k), w).reshape(tiles * _TILE, w.shape[1])[:n]


#: The multiplier of ``distinct_rows``' hash (the golden ratio's 64-bit fraction).
HASH_MIX = 0x9E3779B97F4A7C15


def distinct_rows(a: np.ndarray, mix: int = HASH_MIX) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each distinct row of ``a`` (2-D, 4-byte items) and which one every
    row is, comparing bytes, not values (NaN equals NaN; 0.0 and -0.0 stay apart). Rows
    are told apart by a 64-bit hash of their bytes, sorted as integers (2.4x faster than
    sorting the rows' bytes), and the grouping is checked against the rows themselves: a
    collision falls back to sorting the bytes (``mix``: the hash's multiplier)."""
    n = a.shape[0]
    factor = np.uint64(mix)
    words = np.ascontiguousarray(a).view(np.uint32).reshape(n, -1)
    h = np.zeros(n, dtype=np.uint64)
    for column in words.T:
        h ^= column
        h *= factor
        h ^= h >> np.uint64(29)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not np.array_equal(words, words[first[inverse]]):
        rows = words.view(np.dtype((np.void, words.shape[1] * 4))).reshape(n)
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return first, inverse


class KeyNetNumpy:
    """Forward pass of the key network from its weights (PyTorch LSTM layout)."""

    _CHUNK = 1024  # rows of a depth at a time (about: a slice ends with its parents' children)

    def __init__(self, weights: dict[str, np.ndarray], layers: int) -> None:
        self.layers = layers
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        # PyTorch orders the gates i, f, g, o; i, f, o first lets one sigmoid cover them.
        hsz = w["lstm.weight_hh_l0"].shape[1]
        order = np.r_[0 : 2 * hsz, 3 * hsz : 4 * hsz, 2 * hsz : 3 * hsz]
        w = {k: (v[order] if k.startswith("lstm.") else v) for k, v in w.items()}
        # The first layer's input projection of every key, precomputed: a lookup, not a matmul.
        emb = w["embed.weight"]
        self._x0 = emb @ w["lstm.weight_ih_l0"].T + w["lstm.bias_ih_l0"] + w["lstm.bias_hh_l0"]
        self._whh = [pad_columns(w[f"lstm.weight_hh_l{k}"].T) for k in range(layers)]
        self._wih = [None] + [pad_columns(w[f"lstm.weight_ih_l{k}"].T) for k in range(1, layers)]
        self._b = [None] + [
            w[f"lstm.bias_ih_l{k}"] + w[f"lstm.bias_hh_l{k}"] for k in range(1, layers)
        ]
        hsz = self._whh[0].shape[0]
        _halve_sigmoid_gates([self._x0, *self._whh, *self._wih[1:], *self._b[1:]], hsz)
        self._wout = pad_columns(w["out.weight"].T)
        self._bout = w["out.bias"]
        self._vocab = len(self._bout)
        self.hidden = self._whh[0].shape[0]
        self._gates = 4 * self.hidden

    @property
    def outputs(self) -> int:
        """Size of the output layer (the vocabulary with the reserved keys)."""
        return self._vocab

    def probabilities(self, windows: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Softmax over the vocabulary for each window (n, window) -> (n, vocab).

        Windows that share their first t keys share the LSTM's state after t steps, so the
        network runs step t once per distinct prefix of length t (a trie walked breadth
        first), not once per window: on HDFS this is a fraction of the work. Windows are
        taken in batches; sorted input (as ``np.unique`` gives) keeps prefixes together,
        so that a batch recomputes few of the batch before's prefixes, and a small batch
        keeps the states in cache (the DeepLog split's 17,632 windows: 38 MB at their
        peak in one batch, 8 MB in batches of 2,048, and 10% faster).
        """
        out = np.empty((len(windows), self._vocab), dtype=np.float32)
        for s in range(0, len(windows), batch):
            out[s : s + batch] = self._forward_shared(windows[s : s + batch])
        return out

    def _forward_shared(self, windows: np.ndarray) -> np.ndarray:
        n, steps = windows.shape
        hsz = self.hidden
        n_keys = self._x0.shape[0]
        hs = [np.zeros((1, hsz), dtype=np.float32) for _ in range(self.layers)]
        cs = [np.zeros((1, hsz), dtype=np.float32) for _ in range(self.layers)]
        node = np.zeros(n, dtype=np.int64)  # each window's prefix node at the current depth
        for t in range(steps):
            child, node = np.unique(node * n_keys + windows[:, t], return_inverse=True)
            node = node.reshape(-1)
            parent = child // n_keys  # sorted: a node's children are next to each other
            key = child % n_keys
            m = len(child)
            new_h = [np.empty((m, hsz), dtype=np.float32) for _ in range(self.layers)]
            new_c = [np.empty((m, hsz), dtype=np.float32) for _ in range(self.layers)]
            # Parents a slice at a time, their children with them: the recurrent product
            # runs once per parent, not per child, and the gate arrays stay in cache.
            first_child = np.searchsorted(parent, np.arange(len(hs[0]) + 1))
            cuts = [*np.unique(parent[:: self._CHUNK]).tolist(), len(hs[0])]
            for up, to in itertools.pairwise(cuts):
                rows = slice(int(first_child[up]), int(first_child[to]))
                local = parent[rows] - up
                for layer in range(self.layers):
                    if layer == 0:
                        gates = self._x0[key[rows]]
                    else:
                        gates = rows_times(new_h[layer - 1][rows], self._wih[layer])
                        gates = gates[:, : self._gates] + self._b[layer]
                    gates += rows_times(hs[layer][up:to], self._whh[layer])[local, : self._gates]
                    c = new_c[layer][rows]
                    c[:] = cs[layer][up:to][local]
                    new_h[layer][rows] = _cell(gates, c, hsz)
            hs, cs = new_h, new_c
        logits = rows_times(hs[-1], self._wout)[:, : self._vocab] + self._bout
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits[node]


def _halve_sigmoid_gates(matrices: list[np.ndarray], hsz: int) -> None:
    """The sigmoid gates' columns (i, f, o: the first ``3 * hsz``) halved in place, once at
    load rather than every pre-activation in every pass (sigmoid(v) = (tanh(v / 2) + 1) / 2,
    see ``_cell``). Halving is exact in binary floating point, so every product and sum of
    a pass comes out as it would unhalved, halved."""
    for m in matrices:
        m[..., : 3 * hsz] *= 0.5


def _cell(g: np.ndarray, c: np.ndarray, hsz: int) -> np.ndarray:
    """One LSTM step from its gate pre-activations ``g`` (columns i, f, o, g; overwritten;
    the sigmoid gates' come halved, ``_halve_sigmoid_gates``): updates the cell state ``c``
    in place and returns the hidden state."""
    sig = g[:, : 3 * hsz]  # sigmoid(v) = (tanh(v / 2) + 1) / 2, in place: v / 2 given
    np.tanh(sig, out=sig)
    sig += 1.0
    sig *= 0.5
    cand = np.tanh(g[:, 3 * hsz :])
    c *= g[:, hsz : 2 * hsz]
    cand *= g[:, :hsz]
    c += cand
    h = np.tanh(c)
    h *= g[:, 2 * hsz : 3 * hsz]
    return h


class ParamNetNumpy:
    """Forward pass of ``ParamNet`` from its weights (PyTorch gate order i, f, g, o)."""

    _CHUNK = 4096  # rows at a time: the gate arrays stay in cache

    def __init__(self, weights: Mapping[str, np.ndarray], layers: int) -> None:
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.layers = layers
        hsz = w["lstm.weight_hh_l0"].shape[1]
        # Gate columns reordered to i, f, o, g: one sigmoid over three gates, one tanh.
        order = np.r_[0 : 2 * hsz, 3 * hsz : 4 * hsz, 2 * hsz : 3 * hsz]
        self.wih = [
            np.ascontiguousarray(w[f"lstm.weight_ih_l{k}"].T[:, order]) for k in range(layers)
        ]
        self.whh = [
            np.ascontiguousarray(w[f"lstm.weight_hh_l{k}"].T[:, order]) for k in range(layers)
        ]
        self.b = [(w[f"lstm.bias_ih_l{k}"] + w[f"lstm.bias_hh_l{k}"])[order] for k in range(layers)]
        _halve_sigmoid_gates([*self.wih, *self.whh, *self.b], hsz)
        self.wout = w["out.weight"].T
        self.bout = w["out.bias"]
        # The batch pass's weights, padded (see rows_times); the stack takes the others.
        self._wih = [pad_columns(m) for m in self.wih]
        self._whh = [pad_columns(m) for m in self.whh]
        self._wout = pad_columns(self.wout)
        self.hidden = hsz

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, window, d) normalised histories -> (n, d) predicted next vectors (float64).

        Equal histories are computed once: a row's prediction does not depend on the rows
        beside it (``rows_times``), and logs repeat them (HDFS at 1M lines: 40% of the
        histories are distinct: the same durations in the same steps)."""
        x = np.ascontiguousarray(x, dtype=np.float32)  # the network's own precision
        n = x.shape[0]
        inverse = None
        if n > 1:
            first, inverse = distinct_rows(x.reshape(n, -1))
            if len(first) < n:
                x = x[first]
            else:
                inverse = None
        m = x.shape[0]
        out = np.empty((m, self.wout.shape[1]), dtype=np.float64)
        for start in range(0, m, self._CHUNK):
            out[start : start + self._CHUNK] = self._predict(x[start : start + self._CHUNK])
        return out if inverse is None else out[inverse.reshape(-1)]

    def _predict(self, x: np.ndarray) -> np.ndarray:
        n, steps, _ = x.shape
        hsz = self.hidden
        seq = x.astype(np.float32)
        gates = 4 * hsz
        for layer in range(self.layers):
            # The input projection of all steps at once; only the recurrence loops.
            flat = seq.reshape(n * steps, seq.shape[2])
            proj = rows_times(flat, self._wih[layer])[:, :gates].reshape(n, steps, gates)
            proj += self.b[layer]
            h = np.zeros((n, hsz), dtype=np.float32)
            c = np.zeros((n, hsz), dtype=np.float32)
            outs = np.empty((n, steps, hsz), dtype=np.float32)
            whh = self._whh[layer]
            for t in range(steps):
                g = rows_times(h, whh)[:, :gates]
                g += proj[:, t]
                h = _cell(g, c, hsz)
                outs[:, t] = h
            seq = outs
        return rows_times(seq[:, -1], self._wout)[:, : len(self.bout)] + self.bout


class ParamNetStack:
    """Forward passes of several ``ParamNetNumpy`` of one shape at once, each row through
    its own network's weights (gathered per row). A stream scores a few entries of each of
    dozens of units per step: one pass over all of them costs a fraction of one call per
    unit, whose cost is the per-call overhead of a dozen small array operations per step.
    The arithmetic is the same; only the order of the float32 sums inside a matrix product
    may differ from a single network's (last-bit differences)."""

    def __init__(self, nets: list[ParamNetNumpy]) -> None:
        if not nets:
            raise ValueError("no networks to stack")
        first = nets[0]
        self.layers = first.layers
        self.hidden = first.hidden
        self.wih = [np.stack([n.wih[k] for n in nets]) for k in range(self.layers)]
        self.whh = [np.stack([n.whh[k] for n in nets]) for k in range(self.layers)]
        self.b = [np.stack([n.b[k] for n in nets]) for k in range(self.layers)]
        self.wout = np.stack([n.wout for n in nets])
        self.bout = np.stack([n.bout for n in nets])

    def predict(self, x: np.ndarray, which: np.ndarray) -> np.ndarray:
        """(n, window, d) normalised histories and each row's network (an index into the
        stacked list) -> (n, d) predicted next vectors (float64)."""
        n, steps, _ = x.shape
        hsz = self.hidden
        seq = x.astype(np.float32)
        for layer in range(self.layers):
            proj = np.matmul(seq, self.wih[layer][which]) + self.b[layer][which][:, None, :]
            whh = self.whh[layer][which]
            h = np.zeros((n, hsz), dtype=np.float32)
            c = np.zeros((n, hsz), dtype=np.float32)
            outs = np.empty((n, steps, hsz), dtype=np.float32)
            for t in range(steps):
                g = np.matmul(h[:, None, :], whh)[:, 0]
                g += proj[:, t]
                h = _cell(g, c, hsz)
                outs[:, t] = h
            seq = outs
        last = np.matmul(seq[:, -1][:, None, :], self.wout[which])[:, 0] + self.bout[which]
        return last.astype(np.float64)
