"""DeepLog's models. This module holds the log-key model (section 2 of the method).

The key model predicts the next log key of a session from the ``window`` keys before it:
an embedding, ``layers`` stacked LSTM layers of ``hidden`` units, and a softmax over the
vocabulary. Two reserved keys make every position of a session checkable:

* ``PAD`` fills the window before the first key, so the first keys are scored too;
* ``END`` is the key after the last one. The model learns where sessions end, so a
  session that stops early is caught at its end ("early end") instead of being flagged
  blindly for being short or missed for having nothing wrong in it.

A key never seen in training maps to ``UNK`` and is always anomalous.

Training runs in PyTorch on the *distinct* (window, next key) rows of the training
sessions, each weighted by how often it occurs: the gradient of an epoch is the same as
over all windows, for a fraction of the work (HDFS: 4.7k distinct rows for 100k windows).
Inference runs in NumPy from the same weights: no PyTorch import at detection time, which
matters for a command that must start, load and score 285k events in about two seconds.
Identical windows are scored once (``np.unique``), and a streaming scorer keeps an LRU
cache of windows.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np

from logwarden.errors import ConfigError
from logwarden.models.numpy_nets import KeyNetNumpy

PAD = 0  # before the first key of a session
END = 1  # after the last key of a session
UNK = 2  # a key never seen in training
FIRST_KEY = 3
RESERVED = ("<pad>", "<end>", "<unk>")


@dataclass
class KeyModelConfig:
    """Hyperparameters of the key model (paper defaults: window 10, g 9, 2 layers of 64)."""

    window: int = 10
    top_g: int | None = None  # fixed top-g threshold; None = automatic (see threshold)
    layers: int = 2
    hidden: int = 64
    embedding: int = 32
    epochs: int = 1000  # upper bound; training stops earlier once the loss settles
    patience: int = 30  # epochs without a 1% improvement before stopping
    batch_size: int = 512  # at most; smaller when there are few distinct windows
    learning_rate: float = 0.01
    holdout: float = 0.1  # fraction of normal training sessions kept aside for thresholds
    target_fpr: float = 0.005  # automatic threshold: false-positive rate on the held-out part
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"

    def __post_init__(self) -> None:
        checks = [
            (self.window >= 1, "window", "window must be >= 1"),
            (self.top_g is None or self.top_g >= 1, "top_g", "top_g must be >= 1"),
            (self.layers >= 1, "layers", "layers must be >= 1"),
            (
                self.hidden >= 1 and self.embedding >= 1,
                "hidden",
                "hidden and embedding must be >= 1",
            ),
            (
                self.epochs >= 1 and self.batch_size >= 1,
                "epochs",
                "epochs and batch_size must be >= 1",
            ),
            (self.learning_rate > 0, "learning_rate", "learning_rate must be > 0"),
            (0.0 <= self.holdout < 1.0, "holdout", "holdout must be in [0, 1)"),
            (0.0 < self.target_fpr < 1.0, "target_fpr", "target_fpr must be in (0, 1)"),
            (self.device in ("auto", "cpu", "cuda"), "device", "device must be auto, cpu or cuda"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(msg, field=name)


@dataclass
class Threshold:
    """When a position is anomalous: observed key ranked beyond ``g``, or its probability
    below ``tau`` (exactly one of the two is set)."""

    mode: str  # "top_g" | "probability"
    g: int | None = None
    tau: float | None = None
    target_fpr: float | None = None
    heldout_sessions: int = 0
    heldout_fpr: float | None = None  # measured on the held-out normal sessions

    def __post_init__(self) -> None:
        if self.mode == "top_g":
            if not isinstance(self.g, int) or isinstance(self.g, bool) or self.g < 1:
                raise ValueError(f"top_g threshold needs g >= 1, got {self.g!r}")
        elif self.mode == "probability":
            if not isinstance(self.tau, int | float) or not 0.0 < float(self.tau) <= 1.0:
                raise ValueError(f"probability threshold needs 0 < tau <= 1, got {self.tau!r}")
        else:
            raise ValueError(f"unknown threshold mode {self.mode!r}")

    def flags(self, rank: np.ndarray, prob: np.ndarray) -> np.ndarray:
        if self.mode == "top_g":
            assert self.g is not None
            return rank > self.g
        assert self.tau is not None
        return prob < self.tau


@dataclass
class Scores:
    """Per-position scores of a batch of sessions, flattened in session order."""

    offsets: np.ndarray  # session i owns positions offsets[i]:offsets[i+1]
    target: np.ndarray  # observed key index at each position (END at the last)
    rank: np.ndarray  # 1 = the most likely key; vocabulary size + 1 for UNK
    prob: np.ndarray  # probability of the observed key (0 for UNK)
    window_rows: np.ndarray  # index into ``windows`` of each position's window
    windows: np.ndarray  # distinct windows (key indices), shape (n, window)
    probs: np.ndarray | None = None  # distinct windows' probabilities, when kept


def session_rows(sessions: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """All (window, next key) rows of the sessions, as one int array (n, window + 1).

    Each session is padded with ``window`` PADs in front and one END behind, so it gives
    ``len + 1`` rows. Also returns the offsets of each session's rows.
    """
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    n_rows = lengths + 1
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(n_rows, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return np.zeros((0, window + 1), dtype=np.int32), offsets
    padded_len = lengths + window + 1
    flat = np.empty(int(padded_len.sum()), dtype=np.int32)
    starts = np.zeros(len(sessions), dtype=np.int64)
    np.cumsum(padded_len[:-1], out=starts[1:])
    # PADs everywhere, then each session's keys and its END in place.
    flat[:] = PAD
    if len(sessions):
        keys = np.concatenate(
            [np.asarray(s, dtype=np.int32) for s in sessions] + [np.empty(0, np.int32)]
        )
        key_pos = np.repeat(starts + window, lengths) + _ranges(lengths)
        flat[key_pos] = keys
        flat[starts + window + lengths] = END
    # Row r of session i starts at starts[i] + (r - offsets[i]).
    row_start = np.repeat(starts, n_rows) + _ranges(n_rows)
    view = np.lib.stride_tricks.sliding_window_view(flat, window + 1)
    return np.ascontiguousarray(view[row_start]), offsets


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [0..c0-1, 0..c1-1, ...]."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    idx = np.arange(total, dtype=np.int64)
    return idx - np.repeat(ends - counts, counts)


# --- inference in NumPy -------------------------------------------------------------------


# --- the key model --------------------------------------------------------------------------


@dataclass
class KeyModel:
    """The fitted key model: vocabulary, weights, threshold. Built by ``fit_key_model``."""

    config: KeyModelConfig
    keys: list[str]  # key label of each index >= FIRST_KEY (index = FIRST_KEY + position)
    weights: dict[str, np.ndarray]
    threshold: Threshold
    train_info: dict[str, Any] = field(default_factory=dict)
    # What training leaves for online updates (the estimator stores it; not model state):
    # the distinct (window, next key) rows of the training part with their counts, and the
    # encoded held-out sessions the threshold was chosen on.
    training_rows: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    heldout: list[np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.index = {k: i + FIRST_KEY for i, k in enumerate(self.keys)}
        outputs = len(self.keys) + FIRST_KEY
        for name in ("embed.weight", "out.weight"):
            w = self.weights.get(name)
            if w is None or w.ndim != 2 or w.shape[0] != outputs:
                raise ValueError(f"weights {name} do not fit a vocabulary of {len(self.keys)} keys")
        self.net = KeyNetNumpy(self.weights, self.config.layers)
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A JSON-ready description (config, vocabulary, threshold, training facts) and the
        network's weights."""
        meta = {
            "config": asdict(self.config),
            "keys": list(self.keys),
            "threshold": asdict(self.threshold),
            "train_info": self.train_info,
        }
        return meta, dict(self.weights)

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> KeyModel:
        """The model ``to_state`` described; ConfigError/ValueError when it does not fit."""
        return cls(
            KeyModelConfig(**meta["config"]),
            [str(k) for k in meta["keys"]],
            {k: np.asarray(v) for k, v in arrays.items()},
            Threshold(**meta["threshold"]),
            dict(meta.get("train_info", {})),
        )

    @property
    def vocab_size(self) -> int:
        """Keys the model can predict: the real keys and END."""
        return len(self.keys) + 1

    def label(self, index: int) -> str:
        return RESERVED[index] if index < FIRST_KEY else self.keys[index - FIRST_KEY]

    def encode(self, session: Iterable[str]) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(k, UNK) for k in session), dtype=np.int32)

    def encode_many(self, sessions: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        """Key indices of many sessions in one pass (keys are compared as strings)."""
        lengths = [len(s) for s in sessions]
        flat = map(str, chain.from_iterable(sessions))
        codes = np.fromiter(
            map(self.index.get, flat, repeat(UNK)), dtype=np.int32, count=sum(lengths)
        )
        return np.split(codes, np.cumsum(lengths)[:-1]) if sessions else []

    def score(self, sessions: Sequence[np.ndarray], keep_probs: bool = False) -> Scores:
        """Rank and probability of every observed key (and END) of encoded sessions."""
        h = self.config.window
        rows, offsets = session_rows(sessions, h)
        windows, inverse = _unique_rows(rows[:, :h], len(self.keys) + FIRST_KEY)
        probs = self.net.probabilities(windows) if len(windows) else np.zeros((0, self.net.outputs))
        target = rows[:, h]
        prob, rank = _rank_of(probs, inverse, target)
        unk = target == UNK
        prob[unk] = 0.0
        rank[unk] = self.vocab_size + 1
        return Scores(offsets, target, rank, prob, inverse, windows, probs if keep_probs else None)

    def grow(
        self, new_keys: Sequence[str], seed: int = 0, like: Mapping[str, str] | None = None
    ) -> KeyModel:
        """A copy with ``new_keys`` appended to the vocabulary (keys it knows are skipped).

        Every old weight is kept and old key indices do not change (new keys come last):
        the embedding gets a row per new key, drawn at the scale of the known keys' rows,
        and the output layer a row each, with the bias of the least likely known key, so
        that a new key starts improbable everywhere until fine-tuning teaches where it goes.
        ``like``: new key -> a known key it stands in for (a reworded message): the new
        key starts as a copy of that key's embedding and output rows instead.
        """
        added = [k for k in dict.fromkeys(str(k) for k in new_keys) if k not in self.index]
        weights = {k: v.copy() for k, v in self.weights.items()}
        if added:
            rng = np.random.default_rng(seed)
            n = len(added)
            emb = weights["embed.weight"]
            known = emb[FIRST_KEY:] if len(emb) > FIRST_KEY else emb
            scale = float(known.std()) or 1.0
            weights["embed.weight"] = np.vstack(
                [emb, rng.normal(0.0, scale, (n, emb.shape[1])).astype(emb.dtype)]
            )
            out_w = weights["out.weight"]
            w_scale = float(out_w[FIRST_KEY:].std()) if len(out_w) > FIRST_KEY else 0.01
            weights["out.weight"] = np.vstack(
                [out_w, rng.normal(0.0, w_scale, (n, out_w.shape[1])).astype(out_w.dtype)]
            )
            bias = weights["out.bias"]
            low = float(bias[FIRST_KEY:].min()) if len(bias) > FIRST_KEY else float(bias.min())
            weights["out.bias"] = np.concatenate([bias, np.full(n, low, dtype=bias.dtype)])
            for j, key in enumerate(added):
                twin = self.index.get((like or {}).get(key, ""))
                if twin is not None:
                    row = len(emb) + j
                    for name in ("embed.weight", "out.weight", "out.bias"):
                        weights[name][row] = weights[name][twin]
        return KeyModel(
            self.config,
            [*self.keys, *added],
            weights,
            self.threshold,
            dict(self.train_info),
        )

    def window_probs(self, window: np.ndarray) -> np.ndarray:
        """Probabilities after one window, through an LRU cache (streaming use)."""
        key = window.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        p = self.net.probabilities(window.reshape(1, -1))[0]
        self._cache[key] = p
        if len(self._cache) > 100_000:
            self._cache.popitem(last=False)
        return p

    def expected(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each row of probabilities, the k most likely next keys with their probabilities."""
        p = probs.copy()
        p[:, [PAD, UNK]] = -1.0  # never predicted
        k = min(k, p.shape[1] - 2)
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        vals = np.take_along_axis(probs, top, axis=1)
        labels = [self.label(i) for i in range(p.shape[1])]
        return [
            [(labels[i], float(v)) for i, v in zip(t_row, v_row, strict=True)]
            for t_row, v_row in zip(top.tolist(), vals.tolist(), strict=True)
        ]


def _unique_rows(rows: np.ndarray, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and the inverse index; rows packed into one int64 when they fit."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    bits = max(1, int(n_symbols - 1).bit_length())
    if bits * rows.shape[1] <= 62:
        packed = np.zeros(len(rows), dtype=np.int64)
        for col in range(rows.shape[1]):
            packed = (packed << bits) | rows[:, col].astype(np.int64)
        _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
        return rows[first], inverse.reshape(-1)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _rank_of(
    probs: np.ndarray, inverse: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Probability and rank of each row's target, computed once per distinct (window, target)."""
    n = len(target)
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    safe_target = np.where(target < probs.shape[1], target, 0)
    pair = inverse.astype(np.int64) * probs.shape[1] + safe_target
    uniq, pair_inv = np.unique(pair, return_inverse=True)
    w_idx = uniq // probs.shape[1]
    t_idx = uniq % probs.shape[1]
    p_obs = probs[w_idx, t_idx]
    rank = np.empty(len(uniq), dtype=np.int64)
    masked = probs.copy()
    masked[:, [PAD, UNK]] = -1.0  # not predictable keys do not take ranks
    for s in range(0, len(uniq), 65536):
        sl = slice(s, s + 65536)
        rank[sl] = (masked[w_idx[sl]] > p_obs[sl, None]).sum(axis=1) + 1
    pair_inv = pair_inv.reshape(-1)
    return p_obs[pair_inv].astype(np.float32), rank[pair_inv]


# --- training (PyTorch) -------------------------------------------------------------------


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return name


def train_weights(
    rows: np.ndarray,
    counts: np.ndarray,
    n_outputs: int,
    config: KeyModelConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the key network on distinct rows weighted by their counts; NumPy weights out."""
    import torch

    torch.manual_seed(config.seed)
    device = _device(config.device)
    # One CPU thread: these networks are small, and with a second thread PyTorch spins on a
    # busy core (measured here: a step took 0.5 s with 2 threads, 2 ms with 1 under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(rows, counts, n_outputs, config, progress, device)
    finally:
        torch.set_num_threads(threads)


def _train(
    rows: np.ndarray,
    counts: np.ndarray,
    n_outputs: int,
    config: KeyModelConfig,
    progress: Callable[[int, int, float], None] | None,
    device: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch
    from torch import nn

    from logwarden.models.nets import KeyNet

    h = config.window
    net = KeyNet(n_outputs, config.embedding, config.hidden, config.layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    x_all = torch.as_tensor(rows[:, :h], dtype=torch.long, device=device)
    y_all = torch.as_tensor(rows[:, h], dtype=torch.long, device=device)
    w_all = torch.as_tensor(counts, dtype=torch.float32, device=device)
    total_w = float(w_all.sum())
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    best = math.inf
    stale = 0
    epoch = 0
    loss_value = math.inf
    # Distinct windows are few (HDFS: 4.6k), so an epoch is a handful of batches; about 12
    # steps an epoch keep the number of updates, not the data size, in charge of convergence.
    batch = max(32, min(config.batch_size, -(-len(rows) // 12)))
    for epoch in range(1, config.epochs + 1):
        net.train()
        perm = torch.randperm(len(rows), generator=gen).to(device)
        epoch_loss = 0.0
        for s in range(0, len(rows), batch):
            idx = perm[s : s + batch]
            w = w_all[idx]
            loss = (loss_fn(net(x_all[idx]), y_all[idx]) * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss += float(loss.detach()) * float(w.sum())
        loss_value = epoch_loss / total_w
        if progress is not None:
            progress(epoch, config.epochs, loss_value)
        if loss_value < best * 0.99:
            best = loss_value
            stale = 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return weights, {"epochs": epoch, "loss": loss_value, "device": device}


def fit_key_model(
    sessions: Sequence[Sequence[str]],
    config: KeyModelConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> KeyModel:
    """Train the key model on normal sessions (sequences of key labels) and set its threshold."""
    config = config or KeyModelConfig()
    if not sessions:
        raise ValueError("no training sessions")
    rng = np.random.default_rng(config.seed)
    n = len(sessions)
    n_hold = round(n * config.holdout) if config.top_g is None else 0
    if config.top_g is None and n_hold < 1:
        raise ValueError(
            "the automatic threshold needs held-out sessions: give more sessions or set top_g (--top-g)"
        )
    order = rng.permutation(n)
    hold_idx = np.sort(order[:n_hold])
    train_idx = np.sort(order[n_hold:])
    train = [sessions[i] for i in train_idx]
    # Vocabulary in order of first appearance in the training part (deterministic).
    seen: dict[str, None] = {}
    for s in train:
        for k in s:
            seen.setdefault(k, None)
    keys = list(seen)
    index = {k: i + FIRST_KEY for i, k in enumerate(keys)}
    encoded = [np.fromiter((index[k] for k in s), dtype=np.int32, count=len(s)) for s in train]
    rows, _ = session_rows(encoded, config.window)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    n_outputs = len(keys) + FIRST_KEY
    weights, info = train_weights(distinct, counts, n_outputs, config, progress)
    info.update(
        {
            "sessions": n,
            "train_sessions": len(train),
            "heldout_sessions": n_hold,
            "windows": len(rows),
            "distinct_windows": len(distinct),
        }
    )
    placeholder = Threshold("top_g", g=config.top_g or 1)
    model = KeyModel(config, keys, weights, placeholder, info)
    model.training_rows = (distinct, counts)
    if config.top_g is not None:
        model.threshold = Threshold("top_g", g=config.top_g)
    else:
        held = [model.encode(sessions[i]) for i in hold_idx]
        model.heldout = held
        model.threshold = choose_threshold(model, held, config.target_fpr)
    return model


def choose_threshold(
    model: KeyModel, heldout: Sequence[np.ndarray], target_fpr: float
) -> Threshold:
    """The probability threshold that flags at most ``target_fpr`` of held-out normal sessions.

    Each held-out session's score is the lowest probability the model gave one of its keys
    (or its end); ``tau`` is set just below the k-th lowest score, k = floor(target * n), so
    that at most k sessions fall under it. Test labels are never involved.
    """
    scores = model.score(heldout)
    per_session = (
        np.minimum.reduceat(scores.prob, scores.offsets[:-1]) if len(heldout) else np.zeros(0)
    )
    per_session = np.sort(per_session.astype(np.float64))
    n = len(per_session)
    k = math.floor(target_fpr * n)
    # Sessions with a score strictly below tau are flagged; tau = the (k+1)-th lowest score.
    tau = float(per_session[k]) if n else 0.0
    tau = max(tau, 1e-12)
    flagged = int((per_session < tau).sum())
    return Threshold(
        "probability",
        tau=tau,
        target_fpr=target_fpr,
        heldout_sessions=n,
        heldout_fpr=flagged / n if n else None,
    )
