"""The supervised variant for labelled logs without session ids (the Brno term project).

Where DeepLog learns normal sessions and flags what it cannot predict, this model learns
from labelled lines which windows of an interleaved log are anomalous. The log-key and
parameter models are merged into one network, as the term project proposes:

* every entry (non-empty input line) becomes a feature vector: its log key (an
  embedding; keys seen fewer than ``min_count`` times in training are the unknown key, so
  that it is trained), its numeric parameters (per key and slot: sign(x) log(1 + |x|),
  normalised with the training mean and standard deviation, clipped to +-10, of which only
  the excess beyond +-2 deviations is kept, rounded to 1/4), and its categorical
  parameters and header fields one-hot encoded (per position up to ``max_categories``
  values whose share of anomalous training lines is 3 binomial deviations or more from the
  overall share; the rest as "other");
* the window of the last ``window`` entries (step 1; padding before the first) goes
  through an LSTM and a sigmoid: the probability that the window holds an anomalous line.
  With ``context`` the LSTM reads the last ``context`` entries for that window (the
  label and the verdict are still the window's): when sessions interleave, the telling
  line of an anomalous session often came before the window that holds its other lines.
  With ``target="line"`` the network learns whether the line it ends at is anomalous,
  and a window's probability is the highest of its lines' (its label is still whether
  it holds an anomalous line): a line's label depends on its own session alone.
  With ``ensemble`` N networks (seeds ``seed`` to ``seed + N - 1``, each trained as
  below) give the mean of their probabilities. With ``span`` the LSTM carries its state
  along the log: the entries are cut into spans of ``span`` from the first, each read
  from a zero state after the ``context`` entries before it, and every entry of a span
  gets its probability (a line's still depends on nothing after it).

Training uses the windows ending at each entry (with ``span``: spans drawn at random
places every epoch), labelled anomalous when any line in them is (with the line target:
by the entry's own line), with binary cross-entropy. The last
``validation`` part of the training data, in time order, is kept out of training. It
stops training when the average precision of its windows (judged as detection judges
them) stops improving (the best epoch's weights are kept), chooses the class weight from
the label ratio (anomalous rows weighted 1, or by the ratio of normal to anomalous
training rows: whichever gives the better average precision; or ``pos_weight`` when
given), and sets the probability threshold at the F1 optimum of its windows. Test data is
never involved.

Detection runs in NumPy from the saved weights (no PyTorch import): identical entries
share one input projection, identical windows are scored once, and the recurrent
products are taken in blocks small enough for one BLAS thread.

The deployable unit (log format, parser state and this model) and the per-line verdicts
are ``logwarden.detect.SupervisedDetector`` and ``LineVerdicts``.
"""

from __future__ import annotations

import math
import numbers
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from logwarden import __version__
from logwarden.errors import BundleError, ConfigError, DataError, NotFittedError
from logwarden.io.datasets import LineLabels
from logwarden.io.entries import LineStream
from logwarden.models.numpy_nets import pad_columns, rows_times

__all__ = [
    "FIRST_KEY",
    "MODEL_NAME",
    "OTHER",
    "PAD",
    "THIN_VALIDATION",
    "UNK",
    "Features",
    "SupervisedConfig",
    "SupervisedDeepLog",
    "Tokens",
    "WindowNetNumpy",
    "average_precision",
    "best_f1_threshold",
    "rolling_max",
    "span_rows",
    "tokenize",
    "window_labels",
    "windows_of",
]

PAD = 0  # key index before the first entry
UNK = 1  # a key never seen in training
FIRST_KEY = 2
NONE = 0  # categorical code: the entry has no value at this position
OTHER = 1  # a value outside the position's vocabulary
FIRST_VALUE = 2

MODEL_NAME = "supervised"
TARGETS = ("window", "line")

_CLIP = 10.0  # normalised numeric values are clipped to this many standard deviations
_USUAL = 2.0  # ... then only their excess beyond +-_USUAL standard deviations is kept
_GRID = 4.0  # ... and rounded to 1/_GRID: identical entries then share one input projection
# Fewer anomalous entries than this in the validation part: its average precision and
# best-F1 threshold rest on a handful of lines and swing with them (loghub-2k BGL's time
# split holds 1; the bench's window F1 there swings 0.41-0.55 over model seeds). Training
# warns.
THIN_VALIDATION = 10
_SPAN_DRAWS = 4  # training spans that hold an entry, per epoch (see _span_draws)
# Rows per recurrent product: OpenBLAS runs products of m*n*k <= 2^19 on one thread. On a
# busy 2-core machine its threads spin, and a step took 10x longer with them (measured).
_BLAS_ONE_THREAD = 1 << 19


@dataclass
class SupervisedConfig:
    """Hyperparameters of the supervised model (term project: window 10, Adam 1e-3)."""

    window: int = 10  # entries per window (step 1): the unit judged and labelled
    hidden: int = 32
    layers: int = 1
    embedding: int = 16  # key embedding size
    max_numeric: int = 4  # numeric parameters per entry (the first ones of its template)
    max_categorical: int = 4  # categorical parameters per entry
    max_categories: int = 16  # one-hot vocabulary per position; the rest is "other"
    header_fields: bool = True  # header fields (level, component, ...) as categorical features
    min_count: int = 3  # training occurrences a key or value needs to be known (else unknown/other)
    epochs: int = 100  # upper bound; validation loss stops training earlier
    patience: int = 8  # epochs without a better validation loss before stopping
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation: float = 0.2  # last part of the training data (time order)
    pos_weight: float | None = None  # None: 1 or normal/anomalous ratio, chosen on validation
    seed: int = 0
    device: str = "auto"  # training only: "auto" (CUDA when present), "cpu", "cuda"
    # Entries the LSTM reads for the window ending at an entry (0: the window's own; last
    # here so that positional arguments keep their meaning). Interleaved sessions spread an
    # anomalous session's lines over far more than one window. Reading 30 for windows of
    # 10 (with the line target) scored better on every development set of the bench but
    # not reliably on its own draw, at 2-2.2x the detection time (below 50,000 lines/s on
    # a 2-core AMD EPYC): off by default.
    context: int = 0
    # What the network learns of the entry it ends at: "window", whether the window of the
    # last `window` entries holds an anomalous line (the term project), or "line", whether
    # the entry's own line is anomalous; a window's probability is then the highest of its
    # lines'. When sessions interleave, a window's label hangs on which session each of its
    # lines belongs to, that of a line on its own session alone.
    target: str = "window"
    # Networks trained, with seeds seed, seed + 1, ...; an entry's probability is their
    # mean. The validation part that picks each one's epoch and the threshold holds few
    # anomalies on small labelled sets, so one network's figures swing with its seed; the
    # mean of several swings less (the bench's hdfs with 4 overlapping, `--context 30
    # --target line`: window F1 0.15-0.35 for one network over 3 seeds, 0.381-0.386 for
    # 5). N times the training and detection time.
    ensemble: int = 1
    # With span > 0 the LSTM carries its state along the log instead of reading a window
    # per entry: the entries are cut into spans of `span` from the first, each read from
    # a zero state after the `context` entries before it, and it gives every entry of a
    # span its probability. (context + span) / span steps per entry instead of
    # max(window, context), and training reads spans at random places. The bench's hdfs
    # with 4 overlapping, context 100, span 100, line target, 3 networks: window F1
    # 0.370 +- 0.006 over 3 seeds, as fast to detect as the default (2-core AMD EPYC).
    span: int = 0

    def __post_init__(self) -> None:
        # Types first: window=2.5 or seed=None failed deep inside training (numpy, torch),
        # window="10" with a bare TypeError below.
        ints = ("window", "context", "hidden", "layers", "embedding", "max_numeric", "max_categorical",
                "max_categories", "min_count", "epochs", "patience", "batch_size", "seed",
                "ensemble", "span")  # fmt: skip
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name} must be an integer, got {value!r}", field=name)
        for name in ("learning_rate", "validation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{name} must be a number, got {value!r}", field=name)
        if self.pos_weight is not None and (
            isinstance(self.pos_weight, bool) or not isinstance(self.pos_weight, numbers.Real)
        ):
            raise ConfigError(
                f"pos_weight must be a number, got {self.pos_weight!r}", field="pos_weight"
            )
        if not isinstance(self.header_fields, bool):
            raise ConfigError("header_fields must be True or False", field="header_fields")
        checks = [
            ("seed", self.seed >= 0, "seed must be >= 0"),
            ("window", self.window >= 1, "window must be >= 1"),
            ("span", self.span >= 0, "span must be >= 0"),
            (
                "context",
                self.context >= 0
                if self.span
                else (self.context == 0 or self.context >= self.window),
                "context must be >= 0 with span"
                if self.span
                else "context must be 0 (the window) or >= window",
            ),
            ("ensemble", self.ensemble >= 1, "ensemble must be >= 1"),
            ("hidden", self.hidden >= 1, "hidden must be >= 1"),
            ("layers", self.layers >= 1, "layers must be >= 1"),
            ("embedding", self.embedding >= 1, "embedding must be >= 1"),
            ("max_numeric", self.max_numeric >= 0, "max_numeric must be >= 0"),
            ("max_categorical", self.max_categorical >= 0, "max_categorical must be >= 0"),
            ("max_categories", self.max_categories >= 1, "max_categories must be >= 1"),
            ("min_count", self.min_count >= 1, "min_count must be >= 1"),
            ("epochs", self.epochs >= 1, "epochs must be >= 1"),
            ("patience", self.patience >= 1, "patience must be >= 1"),
            ("batch_size", self.batch_size >= 1, "batch_size must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "learning_rate must be > 0"),
            ("validation", 0.0 < self.validation < 1.0, "validation must be in (0, 1)"),
            (
                "pos_weight",
                self.pos_weight is None or (math.isfinite(self.pos_weight) and self.pos_weight > 0),
                "pos_weight must be > 0",
            ),
            ("device", self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda"),
            ("target", self.target in TARGETS, "target must be window or line"),
        ]
        for name, ok, msg in checks:
            if not ok:
                raise ConfigError(msg, field=name)


# --- features -----------------------------------------------------------------------------------


def _numeric(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _number(text: str) -> float:
    v = _numeric(text)
    return math.nan if v is None else v


#: How far (in binomial standard deviations) the anomalous share of a categorical value's
#: lines must be from the overall share for the value to get its own one-hot slot.
INFORMATIVE_Z = 3.0


def _informative(
    seen: Counter[str], anomalous: Counter[str], rate: float, limit: int, min_count: int
) -> list[str]:
    """The values of one categorical position that tell something about the label: seen at
    least ``min_count`` times, with an anomalous share at least INFORMATIVE_Z binomial
    standard deviations from ``rate``; the ``limit`` most telling ones.

    Ids, pids, ports and addresses that only name things recur too, and one-hot slots for
    them let a network memorise the training windows (measured on development data: the
    validation loss turned after a few epochs). Values with no evidence share "other"."""
    if not 0.0 < rate < 1.0:
        return []
    scored = []
    for v, n in seen.items():
        if n < min_count:
            continue
        z = (anomalous[v] - n * rate) / math.sqrt(n * rate * (1.0 - rate))
        if abs(z) >= INFORMATIVE_Z:
            scored.append((-abs(z), v))
    return [v for _, v in sorted(scored)[:limit]]


def _squash(v: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): sizes, counts and times span orders of magnitude."""
    out: np.ndarray = np.sign(v) * np.log1p(np.abs(v))
    return out


@dataclass
class Features:
    """How entries become feature vectors; fitted on the training stream (JSON-ready)."""

    keys: list[int]  # template ids; index FIRST_KEY + i
    numeric: dict[int, list[tuple[int, float, float]]]  # key -> (slot, mean, std) per position
    categorical: dict[int, list[int]]  # key -> its categorical slots, one per position
    field_names: list[str]  # header fields, each a categorical position after the slots
    vocab: list[list[str]]  # per categorical position, its values (code FIRST_VALUE + i)
    max_numeric: int
    max_categorical: int

    @property
    def positions(self) -> int:
        """Categorical positions: parameter slots, then header fields."""
        return self.max_categorical + len(self.field_names)

    @property
    def onehot_sizes(self) -> list[int]:
        return [len(v) + FIRST_VALUE for v in self.vocab]

    @classmethod
    def fit(
        cls, stream: LineStream, config: SupervisedConfig, rows: np.ndarray, labels: np.ndarray
    ) -> Features:
        """Learn vocabularies and normalisation from the entries ``rows`` of ``stream``,
        whose lines are labelled ``labels`` (per entry of ``rows``)."""
        key_counts: Counter[int] = Counter()
        slots: dict[int, list[list[str]]] = {}  # key -> per slot, its values
        key_labels: dict[int, list[int]] = {}  # key -> the labels of its entries
        for i, y in zip(rows.tolist(), labels.tolist(), strict=True):
            key = stream.keys[i]
            if key is None:
                continue
            key_counts[key] += 1
            key_labels.setdefault(key, []).append(y)
            vals = stream.values[i]
            cols = slots.setdefault(key, [])
            n_before = key_counts[key] - 1
            while len(cols) < len(vals):
                cols.append([""] * n_before)  # a slot this key's earlier entries lacked
            for s, v in enumerate(vals):
                cols[s].append(v)
            for col in cols[len(vals) :]:
                col.append("")
        numeric: dict[int, list[tuple[int, float, float]]] = {}
        categorical: dict[int, list[int]] = {}
        seen: list[Counter[str]] = [Counter() for _ in range(config.max_categorical)]
        anomalous: list[Counter[str]] = [Counter() for _ in range(config.max_categorical)]
        for key, cols in slots.items():
            num: list[tuple[int, float, float]] = []
            cat: list[int] = []
            ys = key_labels[key]
            for s, col in enumerate(cols):
                parsed = [_numeric(v) for v in col]
                if all(p is not None for p in parsed):
                    if len(num) < config.max_numeric:
                        x = _squash(np.asarray(parsed, dtype=np.float64))
                        # The floor keeps a constant slot from dividing by zero while any
                        # change to it still stands out (1e-3 of a log unit).
                        num.append((s, float(x.mean()), max(float(x.std()), 1e-3)))
                elif len(cat) < config.max_categorical:
                    seen[len(cat)].update(v for v in col if v)
                    anomalous[len(cat)].update(v for v, y in zip(col, ys, strict=True) if v and y)
                    cat.append(s)
            if num:
                numeric[key] = num
            if cat:
                categorical[key] = cat
        names = list(stream.field_names) if config.header_fields else []
        at = [stream.field_names.index(n) for n in names]
        for _ in names:
            seen.append(Counter())
            anomalous.append(Counter())
        base = config.max_categorical
        for i, y in zip(rows.tolist(), labels.tolist(), strict=True):
            f = stream.fields[i]
            for j, a in enumerate(at):
                v = f[a]
                if v is not None:
                    seen[base + j][v] += 1
                    if y:
                        anomalous[base + j][v] += 1
        rate = float(labels.mean()) if len(labels) else 0.0
        vocab = [
            _informative(c, a, rate, config.max_categories, config.min_count)
            for c, a in zip(seen, anomalous, strict=True)
        ]
        # Keys rarer than min_count stay out of the vocabulary: in training they become the
        # unknown key, so the model learns what a key it has (almost) never seen means
        # (mostly: trouble) instead of meeting an untrained embedding at detection.
        keys = [k for k, c in key_counts.items() if c >= config.min_count]
        return cls(
            keys,
            numeric,
            categorical,
            names,
            vocab,
            config.max_numeric,
            config.max_categorical,
        )

    def encode(self, stream: LineStream) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per entry: key index (n,), numeric values (n, max_numeric) on the 1/_GRID grid,
        categorical codes (n, positions)."""
        n = len(stream)
        index = {k: i + FIRST_KEY for i, k in enumerate(self.keys)}
        key_idx = np.fromiter(
            (UNK if k is None else index.get(k, UNK) for k in stream.keys), dtype=np.int32, count=n
        )
        num = np.zeros((n, self.max_numeric), dtype=np.float32)
        cat = np.zeros((n, self.positions), dtype=np.int32)
        lookups = [{v: j + FIRST_VALUE for j, v in enumerate(vs)} for vs in self.vocab]
        by_key: dict[int, list[int]] = {}
        for i, k in enumerate(stream.keys):
            if k is not None and (k in self.numeric or k in self.categorical):
                by_key.setdefault(k, []).append(i)
        values = stream.values
        for k, rows in by_key.items():
            vals = [values[i] for i in rows]
            at = np.asarray(rows, dtype=np.int64)
            for p, (s, mean, std) in enumerate(self.numeric.get(k, ())):
                x = np.fromiter(
                    (_number(v[s]) if s < len(v) else math.nan for v in vals),
                    dtype=np.float64,
                    count=len(vals),
                )
                known = ~np.isnan(x)  # a value that does not parse counts as missing
                z = np.zeros(len(rows), dtype=np.float64)
                z[known] = (_squash(x[known]) - mean) / std
                num[at, p] = z
            for p, s in enumerate(self.categorical.get(k, ())):
                get = lookups[p].get
                cat[at, p] = [get(v[s], OTHER) if s < len(v) else NONE for v in vals]
        base = self.max_categorical
        for j, name in enumerate(self.field_names):
            if name not in stream.field_names:
                continue  # read with another format: no value (NONE)
            at = stream.field_names.index(name)
            get = lookups[base + j].get
            cat[:, base + j] = [NONE if f[at] is None else get(f[at], OTHER) for f in stream.fields]
        np.clip(num, -_CLIP, _CLIP, out=num)
        # Only the part beyond the usual band counts: inside it values vary at random (sizes,
        # ports, counters), and a network given them memorises windows by their values
        # (measured on development data: lower F1 on held-out windows).
        np.copysign(np.maximum(np.abs(num) - _USUAL, 0.0), num, out=num)
        num *= _GRID
        np.round(num, out=num)
        num /= _GRID
        return key_idx, num, cat

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "numeric": {str(k): [list(t) for t in v] for k, v in self.numeric.items()},
            "categorical": {str(k): v for k, v in self.categorical.items()},
            "field_names": self.field_names,
            "vocab": self.vocab,
            "max_numeric": self.max_numeric,
            "max_categorical": self.max_categorical,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Features:
        return cls(
            [int(k) for k in d["keys"]],
            {
                int(k): [(int(s), float(m), float(sd)) for s, m, sd in v]
                for k, v in d["numeric"].items()
            },
            {int(k): [int(s) for s in v] for k, v in d["categorical"].items()},
            [str(n) for n in d["field_names"]],
            [[str(x) for x in v] for v in d["vocab"]],
            int(d["max_numeric"]),
            int(d["max_categorical"]),
        )


@dataclass
class Tokens:
    """Distinct entries (tokens) and each entry's token: windows are sequences of tokens."""

    key: np.ndarray  # per token: key index
    num: np.ndarray  # per token: numeric values
    cat: np.ndarray  # per token: categorical codes
    of_entry: np.ndarray  # per entry: its token
    pad: int  # the token of the padding before the first entry


def tokenize(key: np.ndarray, num: np.ndarray, cat: np.ndarray) -> Tokens:
    """Identical feature vectors become one token (logs repeat themselves a lot)."""
    n = len(key)
    rows = np.empty((n + 1, 1 + num.shape[1] + cat.shape[1]), dtype=np.int32)
    rows[0] = 0  # padding: key PAD, numeric 0, every position NONE
    rows[1:, 0] = key
    rows[1:, 1 : 1 + num.shape[1]] = np.rint(num * _GRID).astype(np.int32)
    rows[1:, 1 + num.shape[1] :] = cat
    rows = np.ascontiguousarray(rows)
    view = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    distinct = rows[first]
    return Tokens(
        distinct[:, 0].copy(),
        distinct[:, 1 : 1 + num.shape[1]].astype(np.float32) / _GRID,
        distinct[:, 1 + num.shape[1] :].copy(),
        inverse[1:].astype(np.int64),
        int(inverse[0]),
    )


def windows_of(tokens: Tokens, h: int) -> np.ndarray:
    """The window of the last ``h`` tokens ending at each entry, (n, h), padded in front."""
    seq = np.concatenate([np.full(h - 1, tokens.pad, dtype=np.int64), tokens.of_entry])
    return np.lib.stride_tricks.sliding_window_view(seq, h)


def window_labels(entry_labels: np.ndarray, h: int) -> np.ndarray:
    """1 where any of the last ``h`` entries (the window ending there) is labelled 1."""
    padded = np.concatenate([np.zeros(h - 1, dtype=entry_labels.dtype), entry_labels])
    if len(entry_labels) == 0:
        return entry_labels.copy()
    out: np.ndarray = np.lib.stride_tricks.sliding_window_view(padded, h).max(axis=1)
    return out


def rolling_max(values: np.ndarray, h: int) -> np.ndarray:
    """Per entry, the highest of the last ``h`` values (float64; fewer before the
    ``h``-th)."""
    if len(values) == 0:
        return values.astype(np.float64)
    padded = np.concatenate([np.full(h - 1, -np.inf), values.astype(np.float64)])
    out: np.ndarray = np.lib.stride_tricks.sliding_window_view(padded, h).max(axis=1)
    return out


def span_rows(of_entry: np.ndarray, pad: int, warm: int, span: int) -> np.ndarray:
    """The entries (``of_entry``: each one's token) cut into spans of ``span`` from the
    first, each row a span after the ``warm`` tokens before it: (spans, warm + span),
    padded before the first entry and after the last."""
    m = max(1, -(-len(of_entry) // span))
    seq = np.concatenate(
        [
            np.full(warm, pad, dtype=np.int64),
            of_entry.astype(np.int64, copy=False),
            np.full(m * span - len(of_entry), pad, dtype=np.int64),
        ]
    )
    return seq[np.arange(m)[:, None] * span + np.arange(warm + span)[None, :]]


def _span_draws(
    tokens: Tokens, labels: np.ndarray, warm: int, span: int
) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An epoch's training rows with the state carried along: spans of ``span`` entries of
    ``labels``' (shorter when they are fewer), each after the ``warm`` before it, starting
    every span / _SPAN_DRAWS entries from a random offset (so an entry is read at
    several places of a span, and at other ones every epoch)."""
    n = len(labels)
    span = min(span, n)
    seq = np.concatenate([np.full(warm, tokens.pad, dtype=np.int64), tokens.of_entry[:n]])
    stride = max(1, span // _SPAN_DRAWS)
    steps = np.arange(warm + span)[None, :]
    outputs = np.arange(span)[None, :]

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts = np.arange(int(rng.integers(min(stride, n - span + 1))), n - span + 1, stride)
        y = labels[starts[:, None] + outputs]
        return seq[starts[:, None] + steps], y, np.ones(y.shape, dtype=np.float32)

    return draw


@dataclass
class _Val:
    """The validation part as training reads it: ``x`` rows of token ids, of whose network
    outputs the last ``keep`` count; of those (flattened), ``select`` (None: all) are the
    validation scores, labelled ``y`` and weighted ``c``."""

    x: np.ndarray
    keep: int
    select: np.ndarray | None
    y: np.ndarray
    c: np.ndarray


def _judged(
    score: np.ndarray, val: _Val, judged: tuple[np.ndarray, int, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation windows' scores, labels and counts from the scores of ``val``'s rows:
    the rows themselves (window target), or each window the highest of its lines' rows
    (``judged``: the windows' labels, the window, and the rows before the first)."""
    if judged is None:
        return score, val.y.astype(np.float64), val.c.astype(np.float64)
    window_y, h, skip = judged
    return rolling_max(score, h)[skip:], window_y, np.ones(len(window_y))


# --- inference in NumPy -----------------------------------------------------------------------


class WindowNetNumpy:
    """Forward pass of the supervised network from its weights (PyTorch LSTM layout)."""

    def __init__(self, weights: dict[str, np.ndarray], layers: int, features: Features) -> None:
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.layers = layers
        hsz = w["lstm.weight_hh_l0"].shape[1]
        self.hidden = hsz
        # Gates i, f, o first (one sigmoid), then g; sigmoid(x) = (tanh(x / 2) + 1) / 2, so
        # the i, f, o rows are halved once here and every gate takes one tanh.
        order = np.r_[0 : 2 * hsz, 3 * hsz : 4 * hsz, 2 * hsz : 3 * hsz]
        scale = np.ones(4 * hsz, dtype=np.float32)
        scale[: 3 * hsz] = 0.5
        lstm = {
            k: v[order] * (scale[:, None] if v.ndim == 2 else scale)
            for k, v in w.items()
            if k.startswith("lstm.")
        }
        self._wih = [lstm[f"lstm.weight_ih_l{k}"].T.copy() for k in range(layers)]
        self._whh = [lstm[f"lstm.weight_hh_l{k}"].T.copy() for k in range(layers)]
        self._b = [lstm[f"lstm.bias_ih_l{k}"] + lstm[f"lstm.bias_hh_l{k}"] for k in range(layers)]
        self._embed = w["embed.weight"]
        self._bout = float(w["out.bias"].reshape(-1)[0])
        self._features = features
        e, p = self._embed.shape[1], features.max_numeric
        # Every product goes through ``rows_times`` with padded weights: a window's
        # probability is then the same bits whatever other windows (and tokens) the input
        # holds, as the key network's (see ``numpy_nets``).
        self._wih_embed = pad_columns(self._wih[0][:e])
        self._wih_num = pad_columns(self._wih[0][e : e + p])
        self._wih_up = [None] + [pad_columns(m) for m in self._wih[1:]]
        self._whh_pad = [pad_columns(m) for m in self._whh]
        self._wout = pad_columns(w["out.weight"].reshape(-1, 1))
        expected = e + p + sum(features.onehot_sizes)
        if self._wih[0].shape[0] != expected:
            raise ValueError(
                f"input weights take {self._wih[0].shape[0]} features, the feature description"
                f" gives {expected}"
            )
        if self._embed.shape[0] != len(features.keys) + FIRST_KEY:
            raise ValueError("embedding does not fit the key vocabulary")

    def token_inputs(self, tokens: Tokens) -> np.ndarray:
        """The first layer's input projection of every token, (T, 4H)."""
        f = self._features
        w = self._wih[0]
        e = self._embed.shape[1]
        p = f.max_numeric
        gates = w.shape[1]
        x = rows_times(self._embed[tokens.key], self._wih_embed)[:, :gates]
        x += rows_times(tokens.num.astype(np.float32), self._wih_num)[:, :gates]
        x += self._b[0]
        at = e + p
        for pos, size in enumerate(f.onehot_sizes):
            x += w[at + tokens.cat[:, pos]]  # a one-hot times the weights: one row
            at += size
        return x.astype(np.float32)

    def logits(self, windows: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """Logit per window (rows of token ids; ``x0``: ``token_inputs``).

        Windows that share their first t tokens share the LSTM's state after t steps, so
        step t runs once per distinct prefix of length t (a trie walked breadth first), in
        blocks small enough for one BLAS thread."""
        n, steps = windows.shape
        hsz = self.hidden
        n_tokens = max(len(x0), 1)
        block = max(16, _BLAS_ONE_THREAD // (4 * hsz * hsz))
        hs = [np.zeros((1, hsz), dtype=np.float32) for _ in range(self.layers)]
        cs = [np.zeros((1, hsz), dtype=np.float32) for _ in range(self.layers)]
        node = np.zeros(n, dtype=np.int64)  # each window's prefix at the current depth
        for t in range(steps):
            if len(hs[0]) < n:
                child, node = np.unique(node * n_tokens + windows[:, t], return_inverse=True)
                node = node.reshape(-1)
                parent = child // n_tokens
                token = child % n_tokens
            else:
                # Every window has a prefix of its own by now (on interleaved logs after a
                # few steps): one row per window, in window order, without sorting.
                parent, token = node, windows[:, t]
                node = np.arange(n, dtype=np.int64)
            hs, cs = self._steps(x0, token, hs, cs, parent, block)
        out: np.ndarray = (rows_times(hs[-1], self._wout)[:, 0] + self._bout)[node]
        return out

    def _steps(
        self,
        x0: np.ndarray,
        token: np.ndarray,
        hs: list[np.ndarray],
        cs: list[np.ndarray],
        parent: np.ndarray | None,
        block: int,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One step of every layer for rows reading ``token`` (``x0``: the tokens' input
        projections), each continuing the state of row ``parent`` of ``hs``/``cs`` (None:
        of the same row); in blocks of ``block`` rows."""
        hsz = self.hidden
        gates = 4 * hsz
        m = len(token)
        new_h = [np.empty((m, hsz), dtype=np.float32) for _ in range(self.layers)]
        new_c = [np.empty((m, hsz), dtype=np.float32) for _ in range(self.layers)]
        for s in range(0, m, block):
            sl = slice(s, s + block)
            up = sl if parent is None else parent[sl]
            xs = x0[token[sl]]
            for layer in range(self.layers):
                if layer > 0:
                    xs = rows_times(new_h[layer - 1][sl], self._wih_up[layer])[:, :gates]
                    xs += self._b[layer]
                g = xs + rows_times(hs[layer][up], self._whh_pad[layer])[:, :gates]
                np.tanh(g, out=g)
                ifo = g[:, : 3 * hsz]
                ifo *= 0.5
                ifo += 0.5
                c = cs[layer][up] * g[:, hsz : 2 * hsz]
                c += g[:, :hsz] * g[:, 3 * hsz :]
                h = np.tanh(c)
                h *= g[:, 2 * hsz : 3 * hsz]
                new_h[layer][sl] = h
                new_c[layer][sl] = c
        return new_h, new_c

    def span_logits(self, rows: np.ndarray, x0: np.ndarray, warm: int) -> np.ndarray:
        """Logits of the entries of ``span_rows`` rows, in order (the padding after the
        last entry included): each row read from a zero state, its first ``warm`` tokens
        only to warm the state up."""
        m, steps = rows.shape
        hsz = self.hidden
        # Every row continues its own: blocks larger than the prefix walk's need no BLAS
        # threads (the products go in tiles) and take fewer Python steps (512 rows: 8%
        # less time than 128 for 2,000 spans of hidden 32; more gained nothing, measured).
        block = max(512, _BLAS_ONE_THREAD // (4 * hsz * hsz))
        hs = [np.zeros((m, hsz), dtype=np.float32) for _ in range(self.layers)]
        cs = [np.zeros((m, hsz), dtype=np.float32) for _ in range(self.layers)]
        top = np.empty((m, steps - warm, hsz), dtype=np.float32)
        for t in range(steps):
            hs, cs = self._steps(x0, rows[:, t], hs, cs, None, block)
            if t >= warm:
                top[:, t - warm] = hs[-1]
        out: np.ndarray = rows_times(top.reshape(-1, hsz), self._wout)[:, 0] + self._bout
        return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (np.tanh(0.5 * x.astype(np.float64)) + 1.0)
    return out


# --- training (PyTorch) -------------------------------------------------------------------------


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return name


def _train(
    tokens: Tokens,
    features: Features,
    rows: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]],
    val: _Val,
    pos_weight: float,
    config: SupervisedConfig,
    progress: Callable[[int, int, float], None] | None,
    judged: tuple[np.ndarray, int, int] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the network on the rows an epoch draws (``rows``: token ids, and per row the
    labels and weights of its last outputs); keep the weights of the epoch with the best
    validation average precision. With ``judged`` (line target: the window labels of the
    validation entries, the window, and the scores before them in ``val``), the validation
    scores are entries in order, judged as windows."""
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    device = _device(config.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small network: a second thread only spins (see models.py)
    try:
        n_keys = len(features.keys) + FIRST_KEY
        sizes = features.onehot_sizes
        static = np.zeros((len(tokens.key), features.max_numeric + sum(sizes)), dtype=np.float32)
        static[:, : features.max_numeric] = tokens.num
        at = features.max_numeric
        token_rows = np.arange(len(tokens.key))
        for pos, size in enumerate(sizes):
            static[token_rows, at + tokens.cat[:, pos]] = 1.0
            at += size
        d_in = config.embedding + static.shape[1]

        class WindowNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(n_keys, config.embedding)
                self.lstm = nn.LSTM(d_in, config.hidden, config.layers, batch_first=True)
                self.out = nn.Linear(config.hidden, 1)

            def forward(
                self, tok: torch.Tensor, key: torch.Tensor, stat: torch.Tensor, keep: int
            ) -> torch.Tensor:
                o, _ = self.lstm(torch.cat([self.embed(key[tok]), stat[tok]], dim=-1))
                return self.out(o[:, -keep:]).squeeze(-1)

        net = WindowNet().to(device)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
        key_t = torch.as_tensor(tokens.key, dtype=torch.long, device=device)
        stat_t = torch.as_tensor(static, device=device)
        x_val = torch.as_tensor(val.x, dtype=torch.long, device=device)
        gen = torch.Generator().manual_seed(config.seed)
        draw = np.random.default_rng(config.seed)
        has_anomalies = (
            bool((val.y * val.c).sum() > 0) if judged is None else bool(judged[0].sum() > 0)
        )

        def val_loss() -> float:
            """Minus the validation windows' average precision (or their loss when they
            hold no anomalous window): lower is better."""
            if len(val.y) == 0:
                return math.nan
            net.eval()
            logits = []
            with torch.no_grad():
                step = max(1, 4096 // val.keep)
                for s in range(0, len(x_val), step):
                    logit = net(x_val[s : s + step], key_t, stat_t, val.keep)
                    logits.append(logit.cpu().numpy().reshape(-1))
            score = np.concatenate(logits).astype(np.float64)
            if val.select is not None:
                score = score[val.select]
            if has_anomalies:
                return -average_precision(*_judged(score, val, judged))
            # Binary cross-entropy with logits, the positives weighted pos_weight.
            loss = pos_weight * val.y * np.logaddexp(0.0, -score) + (1 - val.y) * np.logaddexp(
                0.0, score
            )
            return float((loss * val.c).sum() / val.c.sum())

        pw = torch.tensor(pos_weight, device=device)
        loss_fn = nn.BCEWithLogitsLoss(reduction="none", pos_weight=pw)
        best, best_state, best_epoch, stale = math.inf, None, 0, 0
        epoch = 0
        train_loss = math.nan
        drawn = None
        for epoch in range(1, config.epochs + 1):
            net.train()
            # Windows are the same rows every epoch: made tensors (moved to the device) once.
            if (fresh := rows(draw)) is not drawn:
                drawn = fresh
                x, y, c = fresh
                x_all = torch.as_tensor(x, dtype=torch.long, device=device)
                y_all = torch.as_tensor(y, dtype=torch.float32, device=device)
                c_all = torch.as_tensor(c, dtype=torch.float32, device=device)
                keep = y.shape[1]
            perm = torch.randperm(len(x_all), generator=gen).to(device)
            # A batch holds batch_size windows, or batch_size / 16 spans (of 100 entries in
            # development, 16 per batch trained as well as 2 in two thirds of the time).
            per_batch = config.batch_size if keep == 1 else max(1, config.batch_size // 16)
            total = 0.0
            for s in range(0, len(x_all), per_batch):
                idx = perm[s : s + per_batch]
                cb = c_all[idx]
                logit = net(x_all[idx], key_t, stat_t, keep)
                loss = (loss_fn(logit, y_all[idx]) * cb).sum() / cb.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * float(cb.sum())
            train_loss = total / float(c_all.sum())
            current = val_loss()
            if progress is not None:
                progress(epoch, config.epochs, train_loss)
            if math.isnan(current):  # no validation windows: train to the bound
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                best_epoch = epoch
                continue
            if current < best:
                best, best_epoch, stale = current, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= config.patience:
                    break
        assert best_state is not None
        weights = {k: v.cpu().numpy().astype(np.float32) for k, v in best_state.items()}
        info = {
            "epochs": epoch,
            "best_epoch": best_epoch,
            "train_loss": round(train_loss, 6),
            "validation_ap": (round(-best, 6) if not math.isinf(best) and has_anomalies else None),
            "device": device,
        }
        return weights, info
    finally:
        torch.set_num_threads(threads)


def average_precision(score: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, ties as one step)."""
    order = np.argsort(-score, kind="stable")
    s, y, c = score[order], labels[order], counts[order]
    tp = np.cumsum(c * y)
    fp = np.cumsum(c * (1 - y))
    positives = tp[-1] if len(tp) else 0.0
    if positives <= 0:
        return 0.0
    last = np.r_[s[1:] != s[:-1], True]
    tp, fp = tp[last], fp[last]
    recall = tp / positives
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(
    prob: np.ndarray, labels: np.ndarray, counts: np.ndarray
) -> tuple[float, float]:
    """The probability threshold (flag at or above it) with the highest F1, and that F1."""
    order = np.argsort(-prob, kind="stable")
    p, y, c = prob[order], labels[order], counts[order]
    tp = np.cumsum(c * y)
    fp = np.cumsum(c * (1 - y))
    positives = float((c * y).sum())
    # Only the last row of a run of equal probabilities is a threshold one can set.
    last = np.r_[p[1:] != p[:-1], True]
    f1 = np.where(last, 2 * tp / (positives + tp + fp), -1.0)
    j = int(np.argmax(f1))
    return float(p[j]), float(f1[j])


# --- the model ----------------------------------------------------------------------------------


class SupervisedDeepLog:
    """The merged supervised model: ``fit`` on a labelled ``LineStream``, then per-entry
    window probabilities (``predict_proba``) and verdicts (``predict``); its state
    (``to_state``/``from_state``) goes into a bundle with the input settings and the parser
    (``logwarden.detect.SupervisedDetector``)."""

    def __init__(self, config: SupervisedConfig | None = None) -> None:
        self.config = config or SupervisedConfig()

    def fit(
        self,
        stream: LineStream,
        labels: Sequence[int] | LineLabels,
        templates: dict[int, str] | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> SupervisedDeepLog:
        """Learn from ``stream`` and one label per input line (``labels[i]``: line i + 1)."""
        started = time.perf_counter()
        cfg = self.config
        if not isinstance(stream, LineStream):
            raise TypeError(
                f"stream is a LineStream (SupervisedDetector.read gives one), got "
                f"{type(stream).__name__}"
            )
        if isinstance(labels, LineLabels):
            labels.check(stream.lines)
            labels = labels.labels
        if isinstance(labels, str | bytes) or not hasattr(labels, "__len__"):
            raise TypeError(f"labels is a sequence of 0/1, one per input line, got {labels!r:.40}")
        if len(labels) != stream.lines:
            raise DataError(f"{len(labels)} labels for {stream.lines} input lines")
        # 0 and 1 only: -1, 2 or 0.7 trained a meaningless model without a word.
        bad = next(
            (
                (i, y)
                for i, y in enumerate(labels, 1)
                if isinstance(y, str | bytes) or y not in (0, 1)
            ),
            None,
        )
        if bad is not None:
            raise DataError(f"line {bad[0]}: label {bad[1]!r}, where 0 (normal) or 1 (anomalous)")
        n = len(stream)
        if n < 2:
            raise DataError("supervised training needs at least 2 log entries")
        line_labels = np.asarray(labels, dtype=np.int8)
        entry_labels = line_labels[stream.line_ids - 1]
        cut = max(1, min(n - 1, math.floor(n * (1.0 - cfg.validation))))
        features = Features.fit(stream, cfg, np.arange(cut), entry_labels[:cut])
        key, num, cat = features.encode(stream)
        tokens = tokenize(key, num, cat)
        window_y = window_labels(entry_labels, cfg.window).astype(np.int8)
        by_line = cfg.target == "line"
        target_y = entry_labels if by_line else window_y
        judged = None
        # Validation judges windows, as detection does; with the line target each is the
        # highest of its lines, so the entries stay in order from the window's first line
        # before the cut (weight 0).
        lo = max(0, cut - cfg.window + 1) if by_line else cut
        weight = np.ones(n - lo, dtype=np.float32)
        weight[: cut - lo] = 0.0
        if by_line:
            judged = (window_y[cut:].astype(np.float64), cfg.window, cut - lo)
        rows: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]]
        if cfg.span:
            rows = _span_draws(tokens, target_y[:cut], cfg.context, cfg.span)
            grid = span_rows(tokens.of_entry, tokens.pad, cfg.context, cfg.span)
            val = _Val(grid, cfg.span, np.arange(lo, n), target_y[lo:], weight)
            distinct = None
        else:
            wins = windows_of(tokens, self.reach)
            train = _distinct_rows(wins[:cut], target_y[:cut])
            fixed = (train[0], train[1][:, None], train[2][:, None])
            rows = lambda _: fixed  # noqa: E731 - every epoch the same rows
            distinct = len(train[0])
            if by_line:
                val = _Val(np.ascontiguousarray(wins[lo:]), 1, None, target_y[lo:], weight)
            else:
                d = _distinct_rows(wins[cut:], window_y[cut:])
                val = _Val(d[0], 1, None, d[1], d[2])
        pos = float(target_y[:cut].sum())
        neg = cut - pos
        if pos == 0:
            raise DataError(
                f"no anomalous window in the training part (the first {1 - cfg.validation:.0%}"
                " of the entries): supervised training needs anomalous lines there"
            )
        val_pos = float(window_y[cut:].sum())
        if cfg.pos_weight is not None:
            candidates = [cfg.pos_weight]
        elif val_pos > 0 and neg > pos:
            # Unweighted, or balanced by the label ratio: the one with the better average
            # precision on the validation part. (On development data the unweighted one
            # mostly won: the threshold, set on validation, already copes with the ratio.)
            candidates = [1.0, neg / pos]
        else:
            candidates = [1.0]
        members = []
        for m in range(cfg.ensemble):
            member_cfg = replace(cfg, seed=cfg.seed + m)
            runs = []
            for weight in candidates:
                weights, info = _train(
                    tokens, features, rows, val, weight, member_cfg, progress, judged
                )
                runs.append((weights, info, weight))
            weights, info, pos_weight = max(
                runs,
                key=lambda r: -math.inf if r[1]["validation_ap"] is None else r[1]["validation_ap"],
            )
            info["pos_weight_candidates"] = {f"{w:.4g}": r["validation_ap"] for _, r, w in runs}
            info["pos_weight"] = round(pos_weight, 4)
            members.append((weights, info))
        self.features_ = features
        self.weights_ = {
            _member_prefix(m) + k: v
            for m, (weights, _) in enumerate(members)
            for k, v in weights.items()
        }
        self.templates_ = dict(templates if templates is not None else stream.templates)
        self.nets_ = _nets(self.weights_, cfg, features)
        info = dict(members[0][1])
        if cfg.ensemble > 1:
            info["members"] = [{"seed": cfg.seed + m, **i} for m, (_, i) in enumerate(members)]
        # The threshold from the NumPy forward pass that detection uses.
        if val_pos > 0:
            prob = self._line_proba(tokens)[lo:] if cfg.span else self._line_proba(tokens, val.x)
            threshold, f1 = best_f1_threshold(*_judged(prob, val, judged))
            rule = "validation F1"
        else:
            threshold, f1, rule = 0.5, None, "0.5 (no anomalous window in the validation part)"
        self.threshold_ = float(threshold)
        self.train_info_ = {
            **info,
            "entries": n,
            "lines": stream.lines,
            "train_entries": cut,
            "validation_entries": n - cut,
            "train_windows": cut,
            "distinct_train_windows": distinct,
            "anomalous_train_windows": int(window_y[:cut].sum()),
            "validation_windows": n - cut,
            "anomalous_validation_windows": int(val_pos),
            # The stopping epoch and the threshold rest on these lines alone (see
            # THIN_VALIDATION).
            "anomalous_validation_entries": int(entry_labels[cut:].sum()),
            "threshold_rule": rule,
            "validation_f1": None if f1 is None else round(f1, 4),
            "keys": len(features.keys),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return self

    def _fitted(self) -> list[WindowNetNumpy]:
        nets = getattr(self, "nets_", None)
        if nets is None:
            raise NotFittedError("this model is not fitted yet: call fit() or load()")
        return nets

    def _line_proba(self, tokens: Tokens, windows: np.ndarray | None = None) -> np.ndarray:
        """The mean of the networks' probabilities per row of ``windows``, or (with
        ``span``) per entry of ``tokens``."""
        nets = self._fitted()
        cfg = self.config
        grid = (
            None
            if windows is not None
            else span_rows(tokens.of_entry, tokens.pad, cfg.context, cfg.span)
        )

        def logits(net: WindowNetNumpy) -> np.ndarray:
            x0 = net.token_inputs(tokens)
            if windows is not None:
                return net.logits(windows, x0)
            return net.span_logits(grid, x0, cfg.context)[: len(tokens.of_entry)]

        prob = _sigmoid(logits(nets[0]))
        for net in nets[1:]:  # in a fixed order: a row's mean is the same bits in any batch
            prob += _sigmoid(logits(net))
        if len(nets) > 1:
            prob /= len(nets)
        return prob

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def reach(self) -> int:
        """Entries the LSTM reads for the window ending at an entry."""
        return max(self.config.window, self.config.context)

    def predict_proba(self, stream: LineStream) -> np.ndarray:
        """Per entry, the probability that the window ending at it is anomalous."""
        self._fitted()
        if len(stream) == 0:
            return np.zeros(0)
        tokens = tokenize(*self.features_.encode(stream))
        # Identical windows end at one node of the prefix walk: no need to find them first
        # (sorting the rows cost more than it saved: 0.33 s of 0.8 for 200,000 windows
        # of 10, of which 7% repeat; 1 s for windows of 30, of which none do).
        if self.config.span:
            prob = self._line_proba(tokens)
        else:
            prob = self._line_proba(tokens, windows_of(tokens, self.reach))
        return rolling_max(prob, self.window) if self.config.target == "line" else prob

    def predict(self, stream: LineStream) -> np.ndarray:
        """Per entry: True when the window ending at it is anomalous."""
        return self.predict_proba(stream) >= self.threshold_

    # -- state ----------------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A JSON-ready description and the weights (``supervised/...``)."""
        self._fitted()
        vocabulary = [
            {"index": i + FIRST_KEY, "key": f"E{k}", "template": self.templates_.get(k)}
            for i, k in enumerate(self.features_.keys)
        ]
        meta = {
            "logwarden_version": __version__,
            "model": MODEL_NAME,
            "detectors": [MODEL_NAME],
            "params": asdict(self.config),
            "vocabulary": vocabulary,
            "features": self.features_.to_dict(),
            "threshold": {
                "probability": self.threshold_,
                "rule": self.train_info_["threshold_rule"],
            },
            "train_info": self.train_info_,
        }
        return meta, {f"{MODEL_NAME}/{k}": v for k, v in self.weights_.items()}

    @classmethod
    def from_state(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> SupervisedDeepLog:
        """The model ``to_state`` described; BundleError when it is not a valid one."""
        if meta.get("model") != MODEL_NAME:
            raise BundleError("not a supervised model bundle (train it with --supervised)")
        try:
            # Bundles from before line targets learnt windows.
            est = cls(SupervisedConfig(**{"target": "window", **meta["params"]}))
            est.features_ = Features.from_dict(meta["features"])
            prefix = MODEL_NAME + "/"
            est.weights_ = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            th = float(meta["threshold"]["probability"])
            if not 0.0 <= th <= 1.0:
                raise ValueError(f"threshold {th} is not a probability")
            est.threshold_ = th
            est.train_info_ = dict(meta.get("train_info", {}))
            est.templates_ = {}
            for v in meta["vocabulary"]:
                key = str(v["key"])
                if v.get("template") is not None and key.startswith("E"):
                    est.templates_[int(key[1:])] = v["template"]
            est.nets_ = _nets(est.weights_, est.config, est.features_)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle content is not a valid supervised model: {exc}") from None
        return est


def _member_prefix(m: int) -> str:
    """Weight names of network ``m`` of an ensemble: the first keeps the plain names (so a
    bundle of one network is as before ensembles)."""
    return "" if m == 0 else f"member{m}."


def _nets(
    weights: Mapping[str, np.ndarray], config: SupervisedConfig, features: Features
) -> list[WindowNetNumpy]:
    """The ensemble's forward passes; ValueError when the weights are not its networks'."""
    members = [
        {
            k[len(_member_prefix(m)) :]: v
            for k, v in weights.items()
            if k.startswith(_member_prefix(m))
        }
        for m in range(config.ensemble)
    ]
    # The first network's names are every name: keep its own only.
    members[0] = {k: v for k, v in members[0].items() if not k.startswith("member")}
    if sum(map(len, members)) != len(weights):
        raise ValueError(f"weights of other networks than the {config.ensemble} of the ensemble")
    return [WindowNetNumpy(w, config.layers, features) for w in members]


def _distinct_rows(
    windows: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (window, label) rows and their counts."""
    if len(windows) == 0:
        return windows.copy(), labels.copy(), np.zeros(0, dtype=np.float32)
    rows = np.ascontiguousarray(np.column_stack([windows, labels.astype(windows.dtype)]))
    view = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, counts = np.unique(view, return_index=True, return_counts=True)
    distinct = rows[first]
    return distinct[:, :-1].copy(), distinct[:, -1].astype(np.int8), counts.astype(np.float32)
