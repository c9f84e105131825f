"""DeepLog's parameter-value models (section 3 of the method): performance and value anomalies.

For every log key (and predecessor, below), the entries form a multivariate time series of
*feature vectors*, in time order across sessions (session order, then position in it):

* dimension 0 is the **elapsed time** since the previous entry of the same session
  (``Session.elapsed``; 0.0 for a session's first entry, missing when a timestamp is);
* the other dimensions are the entry's **numeric parameters**, in template order: ints,
  floats, sizes (in bytes) and durations (in seconds), see ``numeric_value``.

Identifiers, IPs, hex values, paths, host names, timestamps and free text are *not*
features: their values name things rather than measure them, so a distance between two of
them means nothing (``blk_1`` is not "close" to ``blk_2``).

The elapsed time of an entry depends on which entry came before it: in an HDFS block's life,
``Received block`` arrives seconds after ``Receiving block`` (the transfer) but milliseconds
after another ``Received block`` (the replicas finish together). One series per key mixes
those, and a transfer 20x slower hides inside the mixture. So by default
(``by_predecessor``) a key's entries are split by their predecessor key in the session,
and each *unit* ``(key, predecessor)`` with at least ``min_samples`` entries gets its own
model: the duration of that transition. The key's entries after rarer predecessors share one
unit ``(key, None)``. Predecessor 0 is the start of a session. An entry whose predecessor
was never seen before its key is left to the key model (that transition is itself new).

Which parameter positions of a key are features (its *layout*) is fixed at training: the
most common set of numeric positions among its entries. An entry where one of those
parameters is missing or not numeric ("-", "n/a") gets NaN in that dimension and counts as
irregular. Missing dimensions are masked out of the training loss and skipped when scoring.

Two models, chosen per unit by the number of training entries:

* ``lstm`` (at least ``min_samples`` entries): each dimension normalised with the mean and
  standard deviation of the training part (a constant dimension gets std 1, so nothing is
  divided by zero); an LSTM regression predicts the next vector from the previous
  ``window`` vectors (mean squared error over the observed dimensions); the series is split
  in time order into training and validation parts, the per-entry errors on the validation
  part are modelled as a Gaussian, and an entry whose error is beyond the two-sided
  ``confidence`` interval is anomalous, as in the paper. Two refinements, for real
  distributions: the Gaussian is fitted to the cube root of the errors (an MSE is far from
  Gaussian, its cube root is close), and the bound is raised where the errors' own upper
  tail is heavier than the Gaussian's (see ``_tail_bound``).
* ``robust`` (fewer entries): per dimension the median and the MAD scaled to a standard
  deviation; an entry is anomalous when a dimension is further away than the Student-t
  prediction interval for a sample of that size allows (Bonferroni over dimensions).

Units with fewer than ``min_contextual`` entries (all robust ones, and small LSTM ones)
flag only values outside the range their training values spanned, widened by
``range_margin`` of its width: a few hundred validation errors cannot pin down a 99.9%
tail, and real distributions (a size that is usually the block size and sometimes anything
below it) put normal values far out in a Gaussian's tail.

A numeric parameter that grows with the log is a *counter* (a task id, a sequence number,
an offset): an identifier, not a measurement, so it is not a feature. Bounded by its
training range, every later value is "too large" (a time split flags every later window).
It is learned per key and parameter position from the key's training entries in log order
(sessions in order, entries in order; see ``counter_positions``): its values rise with
that order nearly always (rank correlation at least ``COUNTER_RHO``), and nearly every value
reaches the largest one seen a tenth of the entries before it (at least ``COUNTER_RECORDS``
of them) and every quarter of the entries goes past the maxima before it, so its range
keeps growing with the amount of data. A measurement that merely
trends (a latency creeping up, free memory) has noise around its trend, and a value rarely
reaches an earlier maximum; one that resets per session (a retry count) does not rise
across sessions. The decision is kept with the models (``counters``) and the counter's
position is left out of the key's layout, so it is neither modelled nor scored.

Elapsed time counts only when it is *longer* than expected (``slower_only``): a step that
is faster than usual is not a performance problem, and near zero, millisecond timestamps
make "faster" mostly rounding.

Training runs in PyTorch, one mini-batched network per unit (at most ``max_steps``
optimizer steps); scoring runs in NumPy from the exported weights (``to_state`` /
``from_state``), so detection does not import PyTorch.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import chain, pairwise
from statistics import NormalDist
from typing import Any

import numpy as np

from logwarden.errors import ConfigError
from logwarden.models.numpy_nets import ParamNetNumpy, ParamNetStack
from logwarden.records import Param
from logwarden.sessions import FlatValues, Session, SessionTable, gather

STATE_VERSION = 1

#: The predecessor of a session's first entry.
START = 0
#: A model's unit: (key, predecessor key), predecessor None for "any other".
Unit = tuple[int, "int | None"]

#: Parameter kinds that can carry a numeric feature.
NUMERIC_KINDS = frozenset({"int", "float", "size", "duration"})

# Sizes: SI prefixes for KB/MB/..., binary for KiB/MiB/...; a bare "b" is bytes (logs that
# print bits say "bit"/"bps", which the parser does not classify as a size).
_SIZE_UNITS = {
    "": 1.0,
    "b": 1.0,
    "byte": 1.0,
    "bytes": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "pb": 1e15,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
    "tib": 1024.0**4,
    "pib": 1024.0**5,
}
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
}
_NUMBER_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s]*)\s*")

#: Counters (see the module docstring): at least this many observed values and distinct
#: values, a rank correlation with log order of at least ``COUNTER_RHO``, at least
#: ``COUNTER_RECORDS`` of the values at or above the maximum of those a tenth of the
#: entries earlier, and a maximum that grows from each quarter of the entries to the next.
COUNTER_MIN_ENTRIES = 20
COUNTER_MIN_DISTINCT = 10
COUNTER_RHO = 0.95
COUNTER_RECORDS = 0.8

# Normalised history values are clipped to this many standard deviations before entering
# the network, so that one wild value does not also make the next few predictions wild.
_INPUT_CLIP = 10.0


def numeric_value(param: Param) -> float | None:
    """The numeric value of a parameter: ints and floats as they are, sizes in bytes,
    durations in seconds; None for other kinds and for values that do not parse or are not
    finite."""
    return _numeric(param.value, param.kind)


def _numeric(value: str, kind: str) -> float | None:
    if kind not in NUMERIC_KINDS:
        return None
    try:
        if kind == "int" or kind == "float":
            v = float(value)
        else:
            m = _NUMBER_UNIT.fullmatch(value)
            if m is None:
                return None
            units = _SIZE_UNITS if kind == "size" else _DURATION_UNITS
            unit = m.group(2) if kind == "duration" else m.group(2).lower()
            scale = units.get(unit)
            if scale is None:
                return None
            v = float(m.group(1)) * scale
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


# --- features -------------------------------------------------------------------------------


@dataclass
class KeySeries:
    """The feature vectors of one key's entries, in time order.

    ``values[i]`` is ``[elapsed, numeric params at positions...]`` with NaN where missing;
    ``refs[i]`` is ``(session index, entry index)`` of the entry, to map scores back.
    ``prev`` is the predecessor key of every entry (0: the session's start), or None for a
    key's entries after any other predecessor.
    """

    key: int
    positions: tuple[int, ...]  # parameter positions of dimensions 1..d-1
    values: np.ndarray  # float64 (n, 1 + len(positions))
    refs: np.ndarray  # int64 (n, 2)
    irregular: int = 0  # entries whose numeric parameters did not match the layout
    prev: int | None = None
    # Numeric positions left out of the layout as counters (training only, see the module).
    counters: tuple[int, ...] = ()

    @property
    def unit(self) -> Unit:
        return (self.key, self.prev)

    @property
    def dim(self) -> int:
        return 1 + len(self.positions)

    def __len__(self) -> int:
        return len(self.values)


_Flat = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    Sequence[Sequence[str]], Sequence[Sequence[str]],
]  # fmt: skip


def _flatten(sessions: Iterable[Session]) -> _Flat:
    """Every entry of ``sessions`` as columns: session, position, key, predecessor key,
    elapsed time (NaN: missing), the line it reads its parameters from, and the per-line
    parameter values and kinds (per entry for Session objects)."""
    if isinstance(sessions, SessionTable):
        # Columns straight from the fast reader: no Event or Param objects.
        members = sessions.members
        lens = np.fromiter((len(m) for m in members), dtype=np.int64, count=len(members))
        total = int(lens.sum())
        rows = np.fromiter(chain.from_iterable(members), dtype=np.int64, count=total)
        sess = np.repeat(np.arange(len(members), dtype=np.int64), lens)
        pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        line_keys, line_clock = sessions.line_keys, sessions.clock
        if total != len(line_keys) or not np.array_equal(rows, np.arange(total)):
            # Only the members' rows: a table may hold more lines than its sessions.
            wanted = rows.tolist()
            line_keys, line_clock = gather(line_keys, wanted), gather(line_clock, wanted)
        # (A stream's chunk holds its sessions' rows in order: the columns as they are.)
        keys = np.array(line_keys, dtype=np.int64)
        clock = np.array(line_clock, dtype=np.float64)  # None: NaN
        first = pos == 0
        prevs = np.where(first, START, np.roll(keys, 1)) if total else keys.copy()
        with np.errstate(invalid="ignore"):
            elapsed = np.where(first, 0.0, clock - np.roll(clock, 1)) if total else clock
        return sess, pos, keys, prevs, elapsed, rows, sessions.values, sessions.kinds
    sess_l: list[int] = []
    pos_l: list[int] = []
    keys_l: list[int] = []
    prevs_l: list[int] = []
    el_l: list[float] = []
    vals: list[list[str]] = []
    kinds: list[tuple[str, ...]] = []
    for si, session in enumerate(sessions):
        elapsed_s = session.elapsed
        prev = START
        for ei, event in enumerate(session.events):
            el = elapsed_s[ei] if ei < len(elapsed_s) else None
            sess_l.append(si)
            pos_l.append(ei)
            keys_l.append(event.key)
            prevs_l.append(prev)
            el_l.append(math.nan if el is None else el)
            vals.append([p.value for p in event.params])
            kinds.append(tuple(p.kind for p in event.params))
            prev = event.key
    n = len(keys_l)
    return (
        np.array(sess_l, np.int64), np.array(pos_l, np.int64), np.array(keys_l, np.int64),
        np.array(prevs_l, np.int64), np.array(el_l, np.float64), np.arange(n, dtype=np.int64),
        vals, kinds,
    )  # fmt: skip


def _column(
    line_values: Sequence[Sequence[str]],
    line_kinds: Sequence[Sequence[str]],
    lines: list[int],
    p: int,
) -> np.ndarray:
    """The numeric values of parameter ``p`` of the given lines (NaN where not numeric)."""
    kinds = {k[p] if p < len(k) else "" for k in set(map(line_kinds.__getitem__, lines))}
    if (
        isinstance(line_values, FlatValues)
        and kinds <= {"int", "float", ""}
        and line_values.override.keys().isdisjoint(lines)
    ):
        # Gathered from the flat list in NumPy; lines without the parameter stay NaN.
        strs, has = line_values.column(np.asarray(lines, dtype=np.int64), p)
        try:
            got = strs.astype(np.float64)
        except (ValueError, OverflowError):
            pass
        else:
            col = np.full(len(lines), np.nan)
            col[has] = np.where(np.isfinite(got), got, np.nan)
            return col
    if kinds <= {"int", "float"}:
        # Plain numbers everywhere: one conversion in NumPy, the same float() parsing.
        try:
            col = np.array([line_values[r][p] for r in lines], dtype=np.float64)
        except (ValueError, IndexError, OverflowError):
            pass
        else:
            return np.where(np.isfinite(col), col, np.nan)
    return np.array([_value_at(line_values[r], line_kinds[r], p) for r in lines], np.float64)


def _value_at(values: Sequence[str], kinds: Sequence[str], p: int) -> float:
    if p < len(values) and p < len(kinds):
        v = _numeric(values[p], kinds[p])
        if v is not None:
            return v
    return math.nan


def _numeric_positions(values: Sequence[str], kinds: Sequence[str]) -> tuple[int, ...]:
    return tuple(
        i for i, (v, k) in enumerate(zip(values, kinds, strict=False)) if _numeric(v, k) is not None
    )


def counter_positions(values: np.ndarray, positions: Sequence[int]) -> tuple[int, ...]:
    """The positions (of ``positions``, the dimensions 1.. of ``values``, one key's
    feature vectors in log order) whose values are counters: they rise with log order
    nearly always and keep reaching new maxima as the data grows (see the module
    docstring)."""
    found: list[int] = []
    for d, p in enumerate(positions, start=1):
        x = values[:, d]
        x = x[~np.isnan(x)]
        n = len(x)
        if n < COUNTER_MIN_ENTRIES or len(np.unique(x)) < COUNTER_MIN_DISTINCT:
            continue
        # Spearman's rank correlation with the order (ties ranked in order: a run of equal
        # values, a stage's tasks, counts as rising).
        ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)
        rho = float(np.corrcoef(np.arange(n, dtype=np.float64), ranks)[0, 1])
        if not rho >= COUNTER_RHO:
            continue
        # Concurrent sessions interleave a counter's values a little: each value is
        # compared with the largest of those at least a tenth of the entries before it.
        lag = max(1, n // 10)
        records = float(np.mean(x[lag:] >= np.maximum.accumulate(x)[: n - lag]))
        # And the range keeps growing: every quarter of the entries reaches past the
        # largest value before it (a value that rises and then stays is bounded).
        tops = [float(q.max()) for q in np.array_split(x, 4)]
        growing = all(b > a for a, b in pairwise(tops))
        if records >= COUNTER_RECORDS and growing:
            found.append(p)
    return tuple(found)


def build_series(
    sessions: Iterable[Session],
    layouts: Mapping[int, tuple[int, ...]] | None = None,
    units: Collection[Unit] | None = None,
    by_predecessor: bool = True,
    min_samples: int = 100,
    keys: Collection[int] | None = None,
) -> dict[Unit, KeySeries]:
    """The feature series of ``sessions``, one per unit ``(key, predecessor)`` (of the
    given ``keys`` only, when given).

    ``layouts`` gives each key's feature positions and ``units`` the units to use (a fitted
    model's); entries of a pair that is not a unit go to ``(key, None)``. Without ``units``
    (training), a ``(key, predecessor)`` pair with at least ``min_samples`` entries is a
    unit when ``by_predecessor``. Keys not in ``layouts`` get the most common set of numeric
    positions of their entries here, less the counters among them (``counter_positions``,
    named in each series' ``counters``); keys with no numeric parameter have elapsed time
    alone.
    """
    # Not named ``keys``: the entries' key column below is.
    wanted = None if keys is None else {int(k) for k in keys}
    sess, pos, entry_keys, prevs, elapsed, rows, line_values, line_kinds = _flatten(sessions)
    out: dict[Unit, KeySeries] = {}
    if len(entry_keys) == 0:
        return out
    # Entries of one key in session order, then position: a stable sort by key.
    order = np.argsort(entry_keys, kind="stable")
    sorted_keys = entry_keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(order)]
    # Keys in order of first appearance, as the entries came.
    for i in np.argsort(order[starts], kind="stable"):
        idx = order[starts[i] : ends[i]]
        key = int(sorted_keys[starts[i]])
        if wanted is not None and key not in wanted:
            continue
        lines = rows[idx].tolist()
        n = len(lines)
        counters: tuple[int, ...] = ()
        if layouts is not None and key in layouts:
            layout = tuple(layouts[key])
            regular = np.ones(n, dtype=bool)  # only training counts irregular entries
        else:
            found = [_numeric_positions(line_values[r], line_kinds[r]) for r in lines]
            layout = Counter(found).most_common(1)[0][0]
            regular = np.fromiter((f == layout for f in found), dtype=bool, count=n)
        refs = np.stack([sess[idx], pos[idx]], axis=1)
        values = np.full((n, 1 + len(layout)), np.nan)
        el = elapsed[idx]
        values[:, 0] = np.where(np.isfinite(el), el, np.nan)
        for d, p in enumerate(layout, start=1):
            values[:, d] = _column(line_values, line_kinds, lines, p)
        if layouts is None or key not in layouts:
            counters = counter_positions(values, layout)
            if counters:
                keep = [0] + [d for d, p in enumerate(layout, start=1) if p not in counters]
                layout = tuple(p for p in layout if p not in counters)
                values = values[:, keep]
        key_prevs = prevs[idx]
        distinct, first_at, counts = np.unique(key_prevs, return_index=True, return_counts=True)
        if units is not None:
            own = {int(p) for p in distinct if (key, int(p)) in units}
        elif by_predecessor:
            own = {int(p) for p, c in zip(distinct, counts, strict=True) if c >= min_samples}
        else:
            own = set()
        mine = np.isin(key_prevs, list(own)) if own else np.zeros(n, dtype=bool)
        # Units in order of their first entry, like the entries themselves.
        firsts: list[tuple[int, int | None]] = [
            (int(f), int(p)) for p, f in zip(distinct, first_at, strict=True) if int(p) in own
        ]
        if not mine.all():
            firsts.append((int(np.flatnonzero(~mine)[0]), None))
        for _, p in sorted(firsts, key=lambda t: t[0]):
            sel = np.flatnonzero(~mine if p is None else key_prevs == p)
            irregular = int((~regular[sel]).sum())
            out[(key, p)] = KeySeries(key, layout, values[sel], refs[sel], irregular, p, counters)
    return out


# --- configuration and results ----------------------------------------------------------------


@dataclass
class ParamModelConfig:
    """Hyperparameters of the per-key parameter models (see the module docstring)."""

    window: int = 5  # history vectors before the predicted one
    hidden: int = 16
    layers: int = 1
    epochs: int = 40
    max_steps: int = 150  # per unit: optimizer steps at most, however long its series
    batch_size: int = 256
    learning_rate: float = 0.01
    validation: float = 0.2  # last fraction of each key's series, for the error Gaussian
    confidence: float = 0.999  # two-sided interval; the paper reports 0.98, 0.99, 0.999
    min_samples: int = 100  # fewer entries: the robust model
    # Units with fewer entries flag only values outside the range seen in training: their
    # error tail cannot be estimated at a 99.9% level from so few validation errors.
    min_contextual: int = 1000
    # How far past its training range a small unit's value must lie, as a fraction of the
    # range's width (in log units for logged dimensions): the largest of n normal values
    # is exceeded by the next one with probability 1/(n + 1), too often at n = 100.
    range_margin: float = 0.25
    by_predecessor: bool = True  # one model per (key, predecessor) with min_samples entries
    slower_only: bool = True  # elapsed time is anomalous only when longer than expected
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.window >= 1, "window", "window must be >= 1"),
            (self.hidden >= 1 and self.layers >= 1, "hidden", "hidden and layers must be >= 1"),
            (self.epochs >= 1, "epochs", "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size", "batch_size must be >= 1"),
            (self.max_steps >= 1, "max_steps", "max_steps must be >= 1"),
            (self.learning_rate > 0, "learning_rate", "learning_rate must be > 0"),
            (0.0 < self.validation < 1.0, "validation", "validation must be in (0, 1)"),
            (0.5 <= self.confidence < 1.0, "confidence", "confidence must be in [0.5, 1)"),
            (self.min_samples >= 2, "min_samples", "min_samples must be >= 2"),
            (self.range_margin >= 0, "range_margin", "range_margin must be >= 0"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(msg, field=name)

    @property
    def z(self) -> float:
        """Standard normal quantile of the two-sided interval (0.999 -> 3.29)."""
        return NormalDist().inv_cdf(1.0 - self.tail)

    @property
    def tail(self) -> float:
        """Probability beyond the interval's upper bound (0.999 -> 0.0005)."""
        return (1.0 - self.confidence) / 2.0


@dataclass
class ParamScores:
    """Scores of one key's entries (arrays of length n, in the series' order).

    ``dim`` is the dimension that deviated most (0 = elapsed; -1 when nothing was observed),
    ``constant`` whether that dimension had a single value in training,
    ``expected``/``observed`` its predicted (lstm) or median (robust) and actual values in
    the original units, ``sigmas`` the signed deviation in standard deviations of that
    dimension, ``error`` the per-entry MSE (lstm) or largest absolute deviation in robust
    sigmas (robust), compared with ``threshold``. ``model`` is "lstm", "robust" or "none"
    (a key without a parameter model: never flagged here).
    """

    key: int
    model: str
    anomalous: np.ndarray
    dim: np.ndarray
    expected: np.ndarray
    observed: np.ndarray
    sigmas: np.ndarray
    error: np.ndarray
    threshold: float
    refs: np.ndarray
    prev: int | None = None  # the unit's predecessor (see KeySeries)
    constant: np.ndarray | None = None
    # log10 of each entry's tail probability under its unit's error model (0: no evidence),
    # below log10(level) exactly where ``anomalous``; ``level`` is the per-entry tail
    # probability of the interval (0.0005 at 99.9%).
    log10_p: np.ndarray | None = None
    level: float = 1.0


@dataclass
class _KeyModel:
    kind: str  # "lstm" | "robust"
    positions: tuple[int, ...]
    center: np.ndarray  # lstm: training mean; robust: median
    scale: np.ndarray  # lstm: training std; robust: MAD sigma (never 0)
    threshold: float  # lstm: error threshold; robust: z
    info: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    # Per dimension: NaN = modelled as is, else modelled as log(max(x, 0) + offset).
    log_offset: np.ndarray | None = None
    # The range guard's bounds (``ParamModels._range_guard``), derived, not state.
    guard_bounds: tuple[tuple[Any, ...], np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Raw feature values -> the model's units (log for skewed, non-negative dims)."""
        if self.log_offset is None:
            return values
        return _apply_log(values, self.log_offset)

    def untransform(self, values: np.ndarray, dims: np.ndarray) -> np.ndarray:
        """Model units -> raw units, for values of the given dimensions."""
        if self.log_offset is None:
            return values
        off = self.log_offset[dims]
        plain = np.isnan(off)
        # np.where, not np.nan_to_num: the same values, a tenth of the call's cost on the
        # handful of rows a stream scores at a time.
        return np.where(
            plain, values, np.exp(np.minimum(values, 700.0)) - np.where(plain, 0.0, off)
        )


# --- the models -------------------------------------------------------------------------------


class ParamModels:
    """One parameter model per unit ``(key, predecessor)``: ``fit`` normal series, ``score``
    new ones. Series come from ``build_series`` (training) or ``series`` (scoring)."""

    def __init__(self, config: ParamModelConfig | None = None) -> None:
        self.config = config or ParamModelConfig()
        self.models: dict[Unit, _KeyModel] = {}
        # Per key, the numeric positions learnt to be counters (not features).
        self.counters: dict[int, tuple[int, ...]] = {}

    @property
    def layouts(self) -> dict[int, tuple[int, ...]]:
        """Feature positions per key."""
        return {k: m.positions for (k, _), m in self.models.items()}

    def summary(self) -> dict[str, Any]:
        """Counts for reports: units, LSTM and robust models, keys, training entries."""
        kinds = Counter(m.kind for m in self.models.values())
        return {
            "units": len(self.models),
            "lstm": kinds["lstm"],
            "robust": kinds["robust"],
            "keys": len({k for k, _ in self.models}),
            "entries": sum(int(m.info.get("entries", 0)) for m in self.models.values()),
            "confidence": self.config.confidence,
            "counters": {str(k): list(p) for k, p in sorted(self.counters.items())},
        }

    def build(self, sessions: Iterable[Session]) -> dict[Unit, KeySeries]:
        """Training series of ``sessions``, split into units as this config says."""
        cfg = self.config
        return build_series(
            sessions, by_predecessor=cfg.by_predecessor, min_samples=cfg.min_samples
        )

    def series(
        self, sessions: Iterable[Session], keys: Collection[int] | None = None
    ) -> dict[Unit, KeySeries]:
        """Scoring series of ``sessions``, with this model's layouts and units, for the keys
        that have a model (of ``keys`` only, when given)."""
        modelled = {k for k, _ in self.models}
        wanted = modelled if keys is None else modelled & set(keys)
        return build_series(sessions, self.layouts, units=set(self.models), keys=wanted)

    def fit(self, series: Mapping[Any, KeySeries]) -> ParamModels:
        """Fit one model per series (replacing earlier ones for its unit); returns self."""
        cfg = self.config
        for s in sorted(series.values(), key=lambda s: _unit_name(s.unit)):
            if s.counters:
                self.counters[s.key] = s.counters
            observed = int(np.any(~np.isnan(s.values), axis=1).sum())
            if observed == 0:
                continue  # nothing to learn; the key model still covers the key
            if len(s) >= cfg.min_samples and _split(len(s), cfg.validation)[1] >= 2:
                self.models[s.unit] = _fit_lstm(s, cfg)
            else:
                self.models[s.unit] = _fit_robust(s, cfg)
        return self

    def fit_few(self, series: Mapping[Any, KeySeries]) -> ParamModels:
        """Fit units from few entries (operator feedback on a handful of sessions).

        A series with ``min_samples`` entries is fitted as at training. A shorter one gets
        robust statistics made cautious: a median and MAD of five values can make a
        scale several times too small, and every normal value past it an alarm. So the
        scale is never below the sample standard deviation, nor, when the key already has
        a unit (another predecessor), below that unit's scale, in that unit's units (its
        log transform). Elapsed times of a key never seen are taken in log units, as
        durations mostly are. Returns self.
        """
        cfg = self.config
        for s in sorted(series.values(), key=lambda s: _unit_name(s.unit)):
            if s.counters:
                self.counters[s.key] = s.counters
            if not np.any(~np.isnan(s.values)):
                continue
            if len(s) >= cfg.min_samples and _split(len(s), cfg.validation)[1] >= 2:
                self.models[s.unit] = _fit_lstm(s, cfg)
                continue
            known = [
                m for (k, _), m in self.models.items() if k == s.key and m.positions == s.positions
            ]
            like = max(known, key=lambda m: int(m.info.get("entries", 0)), default=None)
            self.models[s.unit] = _fit_cautious(s, cfg, like)
        return self

    def score(
        self,
        series: Mapping[Any, KeySeries],
        history: Mapping[Unit, np.ndarray] | None = None,
    ) -> dict[Any, ParamScores]:
        """Per series, per entry: anomalous or not, and why (see ``ParamScores``).
        ``history``: per unit, the value vectors that came before the series (the end of
        an earlier batch's series, as ``tails`` keeps it), so that a log scored a batch at a
        time gets the scores of one series."""
        if history is None:
            return {name: self.score_key(s) for name, s in series.items()}
        return {name: self.score_key(s, history.get(s.unit)) for name, s in series.items()}

    def tails(
        self,
        series: Mapping[Any, KeySeries],
        history: Mapping[Unit, np.ndarray] | None = None,
    ) -> dict[Unit, np.ndarray]:
        """The ``history`` of the next batch: per unit, the last ``window`` value vectors
        of ``history`` followed by this batch's series."""
        w = self.config.window
        out = dict(history or {})
        for s in series.values():
            before = out.get(s.unit)
            values = s.values if before is None else np.concatenate([before, s.values])
            out[s.unit] = values[-w:].copy()
        return out

    def tails_of(
        self, sessions: Iterable[Session], history: Mapping[Unit, np.ndarray] | None = None
    ) -> dict[Unit, np.ndarray]:
        """``tails(series(sessions), history)``, with only the last ``window`` entries of
        each unit turned into value vectors: what a log scored a batch of sessions at a
        time needs for the next batch (see ``tails``), without the whole series."""
        w = self.config.window
        out = dict(history or {})
        _, _, entry_keys, prevs, elapsed, rows, line_values, line_kinds = _flatten(sessions)
        if len(entry_keys) == 0:
            return out
        layouts = self.layouts  # every modelled key's
        units = set(self.models)
        for key in (int(k) for k in np.unique(entry_keys)):
            if key not in layouts:
                continue
            idx = np.flatnonzero(entry_keys == key)
            key_prevs = prevs[idx]
            own = [int(p) for p in np.unique(key_prevs) if (key, int(p)) in units]
            mine = np.isin(key_prevs, own) if own else np.zeros(len(idx), dtype=bool)
            picks: list[tuple[Unit, np.ndarray]] = [
                ((key, p), idx[key_prevs == p][-w:]) for p in own
            ]
            if not mine.all():
                picks.append(((key, None), idx[~mine][-w:]))
            layout = tuple(layouts[key])
            for unit, sel in picks:
                values = np.full((len(sel), 1 + len(layout)), np.nan)
                el = elapsed[sel]
                values[:, 0] = np.where(np.isfinite(el), el, np.nan)
                lines = rows[sel].tolist()
                for d, p in enumerate(layout, start=1):
                    values[:, d] = _column(line_values, line_kinds, lines, p)
                before = out.get(unit)
                values = values if before is None else np.concatenate([before, values])
                out[unit] = values[-w:].copy()
        return out

    def score_key(self, s: KeySeries, history: np.ndarray | None = None) -> ParamScores:
        m = self.models.get(s.unit)
        n = len(s)
        if m is None:
            nan = np.full(n, np.nan)
            return ParamScores(
                s.key, "none", np.zeros(n, bool), np.full(n, -1), nan, nan.copy(),
                nan.copy(), nan.copy(), math.inf, s.refs, s.prev, None, np.zeros(n),
                self.config.tail,
            )  # fmt: skip
        if s.positions != m.positions:
            raise ValueError(
                f"key {s.key}: series layout {s.positions} differs from the model's "
                f"{m.positions}; build it with ParamModels.series or the model's layouts"
            )
        z = (m.transform(s.values) - m.center) / m.scale
        windows = None
        if m.kind == "lstm":
            if history is not None and len(history):
                before = (m.transform(history) - m.center) / m.scale
                windows = _windows(np.concatenate([before, z]), self.config.window)[len(before) :]
            else:
                windows = _windows(z, self.config.window)
        return self._score(m, s, z, windows)

    def score_with_history(
        self,
        unit: Unit,
        values: np.ndarray,
        history: np.ndarray,
        net: ParamNetNumpy | None = None,
    ) -> ParamScores:
        """Score entries of ``unit`` each with its own history, as ``score_key`` scores a
        series: ``values`` (n, d) are the entries' feature vectors, ``history`` (n,
        window, d) the vectors before each one in the unit's series (NaN rows in front
        where the series had fewer: they enter as 0, as a series' start does). Streaming
        detection uses it; ``net``: the unit's network, when the caller keeps it built."""
        m = self.models[unit]
        key, prev = unit
        n = len(values)
        s = KeySeries(key, m.positions, values, np.zeros((n, 2), np.int64), 0, prev)
        z = (m.transform(values) - m.center) / m.scale
        windows = None
        if m.kind == "lstm":
            h = history.reshape(-1, values.shape[1])
            hz = ((m.transform(h) - m.center) / m.scale).reshape(history.shape)
            # NaN (no history yet) enters as 0; infinities are clipped like any large value.
            windows = np.clip(np.where(np.isnan(hz), 0.0, hz), -_INPUT_CLIP, _INPUT_CLIP).astype(
                np.float32
            )
        return self._score(m, s, z, windows, net)

    def entry_scorer(self) -> EntryScorer:
        """A scorer of single entries across units (see ``EntryScorer``)."""
        return EntryScorer(self)

    def network(self, unit: Unit) -> ParamNetNumpy:
        """The NumPy network of an LSTM unit (built from its weights)."""
        return ParamNetNumpy(self.models[unit].weights, self.config.layers)

    def _score(
        self,
        m: _KeyModel,
        s: KeySeries,
        z: np.ndarray,
        windows: np.ndarray | None,
        net: ParamNetNumpy | None = None,
        pred: np.ndarray | None = None,
    ) -> ParamScores:
        """The scores of ``s`` (``z``: its normalised values); an LSTM unit's predictions
        come from ``pred`` when given (``EntryScorer``), else from ``windows``."""
        n = len(s)
        guard = self._range_guard(m, s.values)
        if m.kind == "lstm":
            if pred is None:
                assert windows is not None
                net = net if net is not None else ParamNetNumpy(m.weights, self.config.layers)
                pred = net.predict(windows)
            dev = self._deviation(z - pred, guard)
            sq = dev * dev
            count = (~np.isnan(sq)).sum(axis=1)
            error = np.where(count > 0, np.nansum(sq, axis=1) / np.maximum(count, 1), np.nan)
            expected_n = pred
        else:
            dev = self._deviation(z, guard)
            absdev = np.abs(dev)
            error = np.where(np.any(~np.isnan(absdev), axis=1), _nanmax_rows(absdev), np.nan)
            expected_n = np.zeros_like(z)
        dim = _nanargmax_rows(np.abs(dev))
        rows = np.arange(n)
        safe = np.maximum(dim, 0)
        has = dim >= 0
        expected_t = expected_n[rows, safe] * m.scale[safe] + m.center[safe]
        expected = np.where(has, m.untransform(expected_t, safe), np.nan)
        observed = np.where(has, s.values[rows, safe], np.nan)
        sigmas = np.where(has, dev[rows, safe], np.nan)
        anomalous = np.where(np.isnan(error), False, error > m.threshold)
        constant_dims = m.info.get("constant_dims")
        constant = np.isin(dim, constant_dims) if constant_dims else np.zeros(n, dtype=bool)
        level = self.config.tail
        log10_p = _log10_tail(m, error, z.shape[1])
        # The decision stays the bound's; the probability only ranks (and agrees with it).
        top = math.log10(level)
        log10_p = np.where(
            anomalous, np.minimum(log10_p, np.nextafter(top, -math.inf)), np.maximum(log10_p, top)
        )
        return ParamScores(
            s.key, m.kind, anomalous, dim, expected, observed, sigmas, error, m.threshold,
            s.refs, s.prev, constant, log10_p, level,
        )  # fmt: skip

    def alias(self, new_key: int, old_key: int) -> int:
        """Give ``new_key`` (a reworded message) copies of ``old_key``'s units, as a key and
        as a predecessor, where it has none yet; returns how many were added. The values a
        step logs do not change with its wording."""
        added = 0
        for (key, prev), m in list(self.models.items()):
            unit: Unit | None = None
            if key == old_key:
                unit = (new_key, prev)
            elif prev == old_key:
                unit = (key, new_key)
            if unit is not None and unit not in self.models:
                self.models[unit] = replace(
                    m,
                    center=m.center.copy(),
                    scale=m.scale.copy(),
                    info={**m.info, "alias_of": _unit_name((key, prev))},
                    weights={k: v.copy() for k, v in m.weights.items()},
                    log_offset=None if m.log_offset is None else m.log_offset.copy(),
                )
                added += 1
        return added

    def accept(self, s: KeySeries) -> int:
        """Make the model of ``s``'s unit take the entries it flags in ``s`` as normal
        (operator feedback); returns how many it flagged.

        A unit that guards with its training range (robust and small ones) widens the range
        to hold them; a contextual LSTM unit raises its error threshold just above theirs.
        Nothing else changes: the model's centre, scale and weights stay as trained.
        """
        m = self.models.get(s.unit)
        if m is None:
            return 0
        hit = self.score_key(s).anomalous
        n = int(hit.sum())
        if n == 0:
            return 0
        if self._range_guard(m, s.values[hit]) is not None:
            values = s.values[hit]
            low, high = list(m.info["low"]), list(m.info["high"])
            for j in range(values.shape[1]):
                col = values[:, j][~np.isnan(values[:, j])]
                if len(col):
                    lo, hi = float(col.min()), float(col.max())
                    low[j] = lo if low[j] is None else min(low[j], lo)
                    high[j] = hi if high[j] is None else max(high[j], hi)
            m.info["low"], m.info["high"] = low, high
        still = self.score_key(s)
        if still.anomalous.any():  # no range guard, or not enough: the threshold moves
            m.threshold = float(np.nanmax(still.error[still.anomalous])) * (1.0 + 1e-6)
        m.info["accepted"] = int(m.info.get("accepted", 0)) + n
        return n

    def _deviation(self, dev: np.ndarray, inside: np.ndarray | None) -> np.ndarray:
        if self.config.slower_only:
            dev = _one_sided(dev)
        if inside is not None:
            dev = np.where(inside, 0.0, dev)
        return dev

    def _range_guard(self, m: _KeyModel, values: np.ndarray) -> np.ndarray | None:
        """Where a small unit's values lie within their training range (never flagged)."""
        if m.kind == "lstm" and m.info.get("entries", 0) >= self.config.min_contextual:
            return None
        low = m.info.get("low")
        high = m.info.get("high")
        if low is None or high is None:
            return None
        # The bounds in model units, kept while the range lists and log offsets are the
        # same objects (``accept`` replaces the lists): a stream asks every few entries.
        got = m.guard_bounds
        key = (low, high, m.log_offset, self.config.range_margin)
        if got is None or any(a is not b for a, b in zip(got[0], key, strict=True)):
            lo = np.array([[np.nan if v is None else v for v in low]], dtype=np.float64)
            hi = np.array([[np.nan if v is None else v for v in high]], dtype=np.float64)
            lo, hi = m.transform(lo)[0], m.transform(hi)[0]
            margin = (hi - lo) * self.config.range_margin
            got = m.guard_bounds = (key, lo - margin, hi + margin)
        t = m.transform(values)
        with np.errstate(invalid="ignore"):
            return (t >= got[1]) & (t <= got[2])

    def beyond_range(self, unit: Unit, dim: int, value: float) -> dict[str, Any] | None:
        """For a unit that guards with its training range (robust and small ones, see
        ``_range_guard``), when ``value`` of dimension ``dim`` lies beyond that range and
        its margin: ``{"range": [low, high], "limit": bound}``, the training range and the
        widened bound the value passed, in the original units (what an explanation
        states: the sigmas of such a unit need not be large). None otherwise."""
        m = self.models.get(unit)
        if m is None or not math.isfinite(value) or not 0 <= dim < len(m.center):
            return None
        row = np.zeros((1, len(m.center)))
        row[0, dim] = value
        inside = self._range_guard(m, row)
        low, high = m.info.get("low"), m.info.get("high")
        if inside is None or inside[0, dim] or low is None or high is None:
            return None
        lo, hi = low[dim], high[dim]
        if lo is None or hi is None or m.guard_bounds is None:
            return None
        above = bool(m.transform(row)[0, dim] > m.guard_bounds[2][dim])
        bound = m.guard_bounds[2 if above else 1][dim]
        limit = float(m.untransform(np.array([bound]), np.array([dim]))[0])
        return {"range": [float(lo), float(hi)], "limit": round(limit, 6)}

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A JSON-ready description and the weight arrays (``"<unit>/<tensor>"``; a unit is
        ``"<key><-<predecessor>"``, ``*`` for any other predecessor)."""
        units: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for unit, m in sorted(self.models.items(), key=lambda kv: _unit_name(kv[0])):
            name = _unit_name(unit)
            units[name] = {
                "model": m.kind,
                "positions": list(m.positions),
                "center": [float(v) for v in m.center],
                "scale": [float(v) for v in m.scale],
                "threshold": float(m.threshold),
                "log_offset": None
                if m.log_offset is None
                else [None if math.isnan(v) else float(v) for v in m.log_offset],
                "info": m.info,
            }
            for tensor, w in m.weights.items():
                arrays[f"{name}/{tensor}"] = w
        meta = {
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "units": units,
            "counters": {str(k): list(p) for k, p in sorted(self.counters.items())},
        }
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ParamModels:
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported parameter model state version {meta.get('version')!r}")
        try:
            self = cls(ParamModelConfig(**meta["config"]))
            used: set[str] = set()
            for name, d in meta["units"].items():
                unit = _parse_unit(name)
                prefix = f"{name}/"
                weights = {
                    k[len(prefix) :]: np.asarray(w, dtype=np.float32)
                    for k, w in arrays.items()
                    if k.startswith(prefix)
                }
                used.update(prefix + k for k in weights)
                if d["model"] not in ("lstm", "robust"):
                    raise ValueError(f"unknown model {d['model']!r}")
                if d["model"] == "lstm":
                    ParamNetNumpy(weights, self.config.layers)  # all tensors there, or KeyError
                center = np.asarray(d["center"], dtype=np.float64)
                scale = np.asarray(d["scale"], dtype=np.float64)
                positions = tuple(int(p) for p in d["positions"])
                if center.shape != (1 + len(positions),) or scale.shape != center.shape:
                    raise ValueError("normalisation does not match the layout")
                raw_off = d.get("log_offset")
                log_offset = (
                    None
                    if raw_off is None
                    else np.array([np.nan if v is None else v for v in raw_off], np.float64)
                )
                if log_offset is not None and log_offset.shape != center.shape:
                    raise ValueError("log offsets do not match the layout")
                self.models[unit] = _KeyModel(
                    d["model"], positions, center, scale, float(d["threshold"]),
                    dict(d.get("info", {})), weights, log_offset,
                )  # fmt: skip
            if set(arrays) - used:
                raise ValueError(f"weights of no unit: {sorted(set(arrays) - used)[:3]}")
            # Bundles from before counters were learnt have none: their layouts hold
            # every numeric position, as they were trained.
            self.counters = {
                int(k): tuple(int(p) for p in v) for k, v in meta.get("counters", {}).items()
            }
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed parameter model state: {e!r}") from e
        return self


class EntryScorer:
    """Entries of many units scored in one vectorised pass: per entry, whether its unit's
    model flags it and its log10 tail probability, the values ``score_with_history`` gives
    unit by unit. A stream checks a few dozen units per step with a handful of entries
    each, where the per-unit calls cost more than the arithmetic: here the units of each
    dimension count share one set of array operations (no padding, so every row's
    arithmetic is its unit's own) and their LSTMs run as one ``ParamNetStack`` (the float32
    sums of its matrix products may differ from one network's in the last bit).
    ``explain`` gives a unit's entries as ``ParamScores`` from the same predictions.

    Built from the models as they are: a caller that changes them (``accept``, ``alias``,
    ``fit``) builds a new one."""

    def __init__(self, models: ParamModels) -> None:
        self._models = models
        cfg = models.config
        self.units = list(models.models)
        self.index = {u: i for i, u in enumerate(self.units)}
        self.window = cfg.window
        self._slower_only = cfg.slower_only
        self._top = math.log10(cfg.tail)
        # Per unit: its dimension count, its row in that count's table.
        self.dim = [1 + len(models.models[u].positions) for u in self.units]
        self._row: list[int] = []
        groups: dict[int, list[Unit]] = {}
        for u, d in zip(self.units, self.dim, strict=True):
            self._row.append(len(groups.setdefault(d, [])))
            groups[d].append(u)
        self._tables = {d: _UnitTable(models, us, d) for d, us in groups.items()}

    def score(
        self,
        units: Sequence[int],
        values: Sequence[Sequence[float]],
        histories: Sequence[Sequence[Sequence[float]]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """``units[i]``: entry i's unit (an index into ``self.units``), ``values[i]`` its
        feature vector, ``histories[i]`` the vectors before it in the unit's series (at most
        ``window``, oldest first; ignored for a robust unit). Returns (anomalous, log10 tail
        probability) per entry."""
        anomalous, log10_p, _ = self.score_explained(units, values, histories, explain=False)
        return anomalous, log10_p

    def score_explained(
        self,
        units: Sequence[int],
        values: Sequence[Sequence[float]],
        histories: Sequence[Sequence[Sequence[float]]],
        explain: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[ParamScores, int]]]:
        """``score``, and the flagged entries as ``ParamScores`` (entry -> (scores of its
        unit's flagged entries, its row)) from the same predictions: the explanation's
        numbers are the flag's, whatever else was in the batch."""
        n = len(units)
        anomalous = np.zeros(n, dtype=bool)
        log10_p = np.zeros(n)
        explained: dict[int, tuple[ParamScores, int]] = {}
        by_dim: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            by_dim.setdefault(self.dim[u], []).append(i)
        for d, rows in by_dim.items():
            tab = self._tables[d]
            r = np.array([self._row[units[i]] for i in rows], dtype=np.int64)
            v = np.array([values[i] for i in rows], dtype=np.float64).reshape(len(rows), d)
            z = (tab.transform(v, r) - tab.center[r]) / tab.scale[r]
            dev, pred = self._deviations(tab, r, v, z, [histories[i] for i in rows])
            a, lp = self._judge(tab, r, v, dev)
            anomalous[rows] = a
            log10_p[rows] = lp
            if not explain:
                continue
            flagged: dict[int, list[int]] = {}
            for j in np.flatnonzero(a).tolist():
                flagged.setdefault(units[rows[j]], []).append(j)
            for u, js in flagged.items():
                sc = self._explain(u, v[js], z[js], pred[js])
                for k, j in enumerate(js):
                    if sc.anomalous[k]:  # as the flag (the same numbers)
                        explained[rows[j]] = (sc, k)
        return anomalous, log10_p, explained

    def explain(
        self,
        unit: int,
        values: Sequence[Sequence[float]],
        histories: Sequence[Sequence[Sequence[float]]],
    ) -> ParamScores:
        """Entries of one unit (as ``score`` takes them) as ``ParamScores``, flags and tail
        probabilities equal to ``score``'s: what a verdict's explanation reads."""
        d = self.dim[unit]
        tab = self._tables[d]
        n = len(values)
        r = np.full(n, self._row[unit], dtype=np.int64)
        v = np.array(values, dtype=np.float64).reshape(n, d)
        z = (tab.transform(v, r) - tab.center[r]) / tab.scale[r]
        pred = np.full((n, d), np.nan)
        if self._models.models[self.units[unit]].kind == "lstm":
            pred = tab.stack_predict(self._windows(tab, r, histories, d), r)
        return self._explain(unit, v, z, pred)

    def _explain(self, unit: int, v: np.ndarray, z: np.ndarray, pred: np.ndarray) -> ParamScores:
        u = self.units[unit]
        m = self._models.models[u]
        s = KeySeries(u[0], m.positions, v, np.zeros((len(v), 2), np.int64), 0, u[1])
        return self._models._score(m, s, z, None, pred=pred if m.kind == "lstm" else None)

    def _windows(
        self,
        tab: _UnitTable,
        r: np.ndarray,
        histories: Sequence[Sequence[Sequence[float]]],
        d: int,
    ) -> np.ndarray:
        """The LSTM's inputs: each history normalised, NaN rows in front where it is shorter
        than the window, NaN as 0 and clipped (as ``score_with_history`` makes them)."""
        w = self.window
        pad = [math.nan] * d
        # One flat list, then one array: NumPy reading nested lists (discovering their
        # shape) cost 2.5x as much, a few percent of a streaming detector's time.
        numbers: list[float] = []
        for h in histories:
            if len(h) < w:
                numbers += pad * (w - len(h))
            for v in h:
                numbers += v
        hist = np.array(numbers, dtype=np.float64).reshape(len(histories), w, d)
        rr = np.repeat(r, w)
        flat = hist.reshape(-1, d)
        hz = ((tab.transform(flat, rr) - tab.center[rr]) / tab.scale[rr]).reshape(hist.shape)
        return np.clip(np.where(np.isnan(hz), 0.0, hz), -_INPUT_CLIP, _INPUT_CLIP).astype(
            np.float32
        )

    def _deviations(
        self,
        tab: _UnitTable,
        r: np.ndarray,
        v: np.ndarray,
        z: np.ndarray,
        histories: Sequence[Sequence[Sequence[float]]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per entry: z minus the LSTM's prediction (LSTM units) or z itself (robust), one
        sided on elapsed time, 0 inside a guarded unit's range (``ParamModels._score``);
        and the predictions (NaN for robust units)."""
        dev = z.copy()
        pred = np.full(z.shape, np.nan)
        lstm = np.flatnonzero(tab.lstm[r])
        if len(lstm):
            at = lstm.tolist()
            windows = self._windows(tab, r[lstm], [histories[i] for i in at], v.shape[1])
            pred[lstm] = tab.stack_predict(windows, r[lstm])
            dev[lstm] = z[lstm] - pred[lstm]
        if self._slower_only:
            dev = _one_sided(dev)
        return np.where(tab.inside(v, r), 0.0, dev), pred

    def _judge(
        self, tab: _UnitTable, r: np.ndarray, v: np.ndarray, dev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # lstm: the mean squared deviation over observed dimensions; robust: the largest.
        sq = dev * dev
        count = (~np.isnan(sq)).sum(axis=1)
        mse = np.where(count > 0, np.nansum(sq, axis=1) / np.maximum(count, 1), np.nan)
        absdev = np.abs(dev)
        worst = np.where(np.any(~np.isnan(absdev), axis=1), _nanmax_rows(absdev), np.nan)
        error = np.where(tab.lstm[r], mse, worst)
        anomalous = np.where(np.isnan(error), False, error > tab.threshold[r])
        lp = tab.log10_tail(error, r)
        top = self._top
        lp = np.where(anomalous, np.minimum(lp, np.nextafter(top, -math.inf)), np.maximum(lp, top))
        return anomalous, lp


class _UnitTable:
    """The units of one dimension count, as arrays (one row per unit) for ``EntryScorer``;
    each row holds the same numbers the unit's own scoring uses."""

    def __init__(self, models: ParamModels, units: list[Unit], d: int) -> None:
        ms = [models.models[u] for u in units]
        self.units = units
        k = len(ms)
        self.lstm = np.array([m.kind == "lstm" for m in ms], dtype=bool)
        self.center = np.array([m.center for m in ms], dtype=np.float64).reshape(k, d)
        self.scale = np.array([m.scale for m in ms], dtype=np.float64).reshape(k, d)
        self.offset = np.array(
            [np.full(d, np.nan) if m.log_offset is None else m.log_offset for m in ms],
            dtype=np.float64,
        ).reshape(k, d)
        self.threshold = np.array([m.threshold for m in ms], dtype=np.float64)
        # The range guard's bounds in model units (NaN bounds: a unit without the guard).
        lo = np.full((k, d), np.nan)
        hi = np.full((k, d), np.nan)
        self.guarded = np.zeros(k, dtype=bool)
        for i, m in enumerate(ms):
            if models._range_guard(m, np.zeros((1, d))) is not None:
                assert m.guard_bounds is not None
                lo[i], hi[i] = m.guard_bounds[1], m.guard_bounds[2]
                self.guarded[i] = True
        self.lo, self.hi = lo, hi
        # The tail: per unit the constants ``_log10_tail`` computes, as it computes them.
        nu = np.ones(k)
        norm = np.ones(k)
        mu = np.zeros(k)
        fit = np.zeros(k, dtype=bool)
        fit_u = np.zeros(k)
        fit_share = np.zeros(k)
        fit_denom = np.ones(k)
        offset_lp = np.zeros(k)
        for i, m in enumerate(ms):
            info = m.info
            if m.kind == "lstm":
                n = max(int(info.get("error_cbrt_n", info.get("validation_entries", 2))), 2)
                mu[i] = float(info.get("error_cbrt_mean", 1.0))
                sd = float(info.get("error_cbrt_std", 1.0))
                norm[i] = sd * math.sqrt(1.0 + 1.0 / n)
                got = info.get("tail_fit")
                if got:
                    u, beta, share = (float(x) for x in got)
                    fit[i] = True
                    fit_u[i], fit_share[i] = u, math.log10(share)
                    fit_denom[i] = beta * math.log(10.0)
            else:
                n = max(int(info.get("entries", 2)), 2)
                norm[i] = math.sqrt(1.0 + 1.0 / n)
                offset_lp[i] = math.log10(d)
            nu[i] = float(max(n - 1, 1))
        self.nu, self.norm, self.mu = nu, norm, mu
        self.fit, self.fit_u, self.fit_share, self.fit_denom = fit, fit_u, fit_share, fit_denom
        self.offset_lp = offset_lp
        self.coef = (8 * nu + 1) / (8 * nu + 3)
        # The LSTM units' networks, stacked: row i of the table is network net_of[i].
        lstm_units = [u for u, m in zip(units, ms, strict=True) if m.kind == "lstm"]
        self.net_of = np.cumsum(self.lstm) - 1
        self.stack = ParamNetStack([models.network(u) for u in lstm_units]) if lstm_units else None

    def stack_predict(self, windows: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The predictions of LSTM rows ``r`` (table rows) for their windows."""
        assert self.stack is not None
        return self.stack.predict(windows, self.net_of[r])

    def transform(self, v: np.ndarray, r: np.ndarray) -> np.ndarray:
        """``_KeyModel.transform`` of each row with its unit's log offsets."""
        off = self.offset[r]
        logged = ~np.isnan(off)
        if not logged.any():
            return v
        with np.errstate(invalid="ignore"):
            return np.where(logged, np.log(np.maximum(v, 0.0) + off), v)

    def inside(self, v: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Where a guarded unit's values lie within its widened training range."""
        t = self.transform(v, r)
        with np.errstate(invalid="ignore"):
            within = (t >= self.lo[r]) & (t <= self.hi[r])
        return within & self.guarded[r][:, None]

    def log10_tail(self, error: np.ndarray, r: np.ndarray) -> np.ndarray:
        """``_log10_tail`` per row with its unit's constants."""
        out = np.zeros(len(error))
        ok = ~np.isnan(error)
        if not ok.any():
            return out
        e = error[ok]
        rk = r[ok]
        lstm = self.lstm[rk]
        root = np.cbrt(e)
        t = np.where(lstm, (root - self.mu[rk]) / self.norm[rk], e / self.norm[rk])
        nu = self.nu[rk]
        zz = self.coef[rk] * np.sqrt(nu * np.log1p(t * t / nu))
        lp = log10_normal_sf(np.where(t < 0, -zz, zz))
        fit = self.fit[rk]
        if fit.any():
            tail = self.fit_share[rk] - np.maximum(root - self.fit_u[rk], 0.0) / self.fit_denom[rk]
            lp = np.where(fit, np.maximum(lp, np.minimum(tail, 0.0)), lp)
        lp = np.where(lstm & (root <= _MIN_ROOT_ERROR), 0.0, lp)
        lp = np.where(lstm, lp, self.offset_lp[rk] + lp)
        out[ok] = np.minimum(lp, 0.0)
        return out


def _unit_name(unit: Unit) -> str:
    key, prev = unit
    return f"{key}<-{'*' if prev is None else prev}"


def _parse_unit(name: str) -> Unit:
    key, sep, prev = name.partition("<-")
    if not sep:
        raise ValueError(f"bad unit name {name!r}")
    return int(key), None if prev == "*" else int(prev)


def _one_sided(dev: np.ndarray) -> np.ndarray:
    """Deviations with a shorter-than-expected elapsed time (dimension 0) counted as 0."""
    out = dev.copy()
    out[:, 0] = np.where(out[:, 0] < 0, 0.0, out[:, 0])  # NaN stays NaN
    return out


# --- fitting ----------------------------------------------------------------------------------


def _split(n: int, validation: float) -> tuple[int, int]:
    n_val = max(1, round(n * validation))
    return n - n_val, n_val


def _skew(col: np.ndarray) -> float:
    sd = col.std()
    return float(((col - col.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def _choose_log(v: np.ndarray) -> np.ndarray:
    """Per dimension: the offset of a log transform, or NaN to model the values as they are.

    Timings and sizes are usually right-skewed (log-normal like): on the raw scale their
    tail makes the Gaussian error model flag normal slow entries, while in log units a 10x
    slower step is a fixed, large shift. A dimension is logged when its training values are
    non-negative, right-skewed, and less skewed after the transform. The offset (a tenth of
    the median positive value) keeps zeros (a session's first entry) finite.
    """
    out = np.full(v.shape[1], np.nan)
    for j in range(v.shape[1]):
        col = v[:, j][~np.isnan(v[:, j])]
        pos = col[col > 0]
        if len(col) < 3 or len(pos) == 0 or col.min() < 0:
            continue
        # At least the resolution of the values (the smallest gap between two distinct
        # values): with millisecond timestamps, 0 ms and 1 ms are not orders of magnitude
        # apart, however small the typical gap.
        distinct = np.unique(col)
        step = float(np.diff(distinct).min()) if len(distinct) > 1 else float(pos.min())
        off = max(0.1 * float(np.median(pos)), step)
        raw_skew = _skew(col)
        if raw_skew > 0.5 and abs(_skew(np.log(col + off))) < abs(raw_skew):
            out[j] = off
    return out


def _apply_log(values: np.ndarray, log_offset: np.ndarray) -> np.ndarray:
    logged = ~np.isnan(log_offset)
    if not logged.any():
        return values
    out = values.copy()
    # Negative values (out-of-order timestamps) count as 0, the smallest the model knows.
    out[:, logged] = np.log(np.maximum(values[:, logged], 0.0) + log_offset[logged])
    return out


def _fit_robust(s: KeySeries, cfg: ParamModelConfig) -> _KeyModel:
    log_offset = _choose_log(s.values)
    v = _apply_log(s.values, log_offset)
    d = v.shape[1]
    center = np.zeros(d)
    scale = np.ones(d)
    for j in range(d):
        col = v[:, j][~np.isnan(v[:, j])]
        if len(col) == 0:
            continue
        med = float(np.median(col))
        sigma = 1.4826 * float(np.median(np.abs(col - med)))  # MAD -> sigma for a Gaussian
        if sigma <= 0:
            # Over half the values equal: fall back to the plain std, then to 1 (constant).
            sigma = float(col.std()) or 1.0
        center[j], scale[j] = med, sigma
    # A prediction interval for one new value of a sample of this size (Student t, wider
    # than z for small samples), Bonferroni over the dimensions since each is tested.
    n = max(int(np.any(~np.isnan(v), axis=1).sum()), 2)
    bound = _t_quantile(cfg.tail / d, n - 1) * math.sqrt(1.0 + 1.0 / n)
    info = {"entries": len(s), "irregular": s.irregular, "constant_dims": _constant_dims(v)}
    info.update(_ranges(s.values))
    return _KeyModel("robust", s.positions, center, scale, bound, info, {}, log_offset)


def _fit_cautious(s: KeySeries, cfg: ParamModelConfig, like: _KeyModel | None) -> _KeyModel:
    """Robust statistics of a short series with a scale floor (see ParamModels.fit_few)."""
    if like is not None:
        log_offset = like.log_offset.copy() if like.log_offset is not None else None
    else:
        log_offset = _choose_log(s.values)
        el = s.values[:, 0][~np.isnan(s.values[:, 0])]
        pos = el[el > 0]
        if math.isnan(log_offset[0]) and len(pos) and el.min() >= 0:
            log_offset[0] = 0.1 * float(np.median(pos))
    v = _apply_log(s.values, log_offset) if log_offset is not None else s.values
    d = v.shape[1]
    center = np.zeros(d)
    scale = np.ones(d)
    for j in range(d):
        col = v[:, j][~np.isnan(v[:, j])]
        if len(col) == 0:
            continue
        med = float(np.median(col))
        sigma = max(
            1.4826 * float(np.median(np.abs(col - med))),
            float(col.std(ddof=1)) if len(col) > 1 else 0.0,
            float(like.scale[j]) if like is not None else 0.0,
        )
        center[j], scale[j] = med, sigma if sigma > 0 else 1.0
    n = max(int(np.any(~np.isnan(v), axis=1).sum()), 2)
    bound = _t_quantile(cfg.tail / d, n - 1) * math.sqrt(1.0 + 1.0 / n)
    info: dict[str, Any] = {
        "entries": len(s),
        "irregular": s.irregular,
        "constant_dims": _constant_dims(v),
        "from_feedback": True,
    }
    info.update(_ranges(s.values))
    return _KeyModel("robust", s.positions, center, scale, bound, info, {}, log_offset)


def _t_quantile(p: float, nu: int) -> float:
    """Upper ``p`` quantile of Student's t with ``nu`` degrees of freedom.

    The Cornish-Fisher expansion around the normal quantile (Abramowitz and Stegun
    26.7.5): within 1% of the exact value for nu >= 5 at the tails used here (4% low at
    nu = 3, rougher below). No SciPy needed for one number.
    """
    z = NormalDist().inv_cdf(1.0 - p)
    nu_f = float(max(nu, 1))
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / nu_f + g2 / nu_f**2 + g3 / nu_f**3 + g4 / nu_f**4


def _ranges(v: np.ndarray) -> dict[str, list[float | None]]:
    """Per dimension the smallest and largest training value (None: never observed)."""
    low: list[float | None] = []
    high: list[float | None] = []
    for j in range(v.shape[1]):
        col = v[:, j][~np.isnan(v[:, j])]
        low.append(float(col.min()) if len(col) else None)
        high.append(float(col.max()) if len(col) else None)
    return {"low": low, "high": high}


def _constant_dims(v: np.ndarray) -> list[int]:
    """Dimensions with one observed value in training (deviations there are in raw units)."""
    out = []
    for j in range(v.shape[1]):
        col = v[:, j][~np.isnan(v[:, j])]
        if len(col) and float(col.min()) == float(col.max()):
            out.append(j)
    return out


def _mean_std(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs = ~np.isnan(v)
    count = obs.sum(axis=0)
    filled = np.where(obs, v, 0.0)
    mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), 0.0)
    var = np.where(obs, (v - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    std = np.sqrt(var)
    # Constant (or never observed) dimensions: std 1, so nothing is divided by zero and a
    # change of the constant still shows as a deviation in the original units.
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return mean, std


def _windows(z: np.ndarray, window: int) -> np.ndarray:
    """History windows (n, window, d): the ``window`` vectors before each entry.

    Missing values enter as 0 (the training mean); the first entries' history is padded
    with zeros likewise, so every entry is scored. Inputs are clipped (see _INPUT_CLIP).
    """
    n, d = z.shape
    x = np.zeros((n + window, d), dtype=np.float32)
    x[window:] = np.clip(np.nan_to_num(z, nan=0.0), -_INPUT_CLIP, _INPUT_CLIP)
    view = np.lib.stride_tricks.sliding_window_view(x, (window, d))[:n, 0]
    return np.ascontiguousarray(view)


# Below this error (in squared standard deviations, cube-rooted) nothing is anomalous: a
# key whose values the network predicts exactly (a constant elapsed time of 0) would
# otherwise flag the last bits of floating-point noise.
_MIN_ROOT_ERROR = 0.1
# The upper fraction of validation errors fitted by the tail model.
_TAIL_FRACTION = 0.1


def _tail_fit(roots: np.ndarray) -> tuple[float, float, float] | None:
    """The exponential tail of the errors' top ``_TAIL_FRACTION``: (u, mean excess, share
    above u), or None with fewer than 20 errors or no excess."""
    if len(roots) < 20:
        return None
    u = float(np.quantile(roots, 1.0 - _TAIL_FRACTION))
    excess = roots[roots > u] - u
    if len(excess) == 0:
        return None
    return u, float(excess.mean()), len(excess) / len(roots)


def _tail_bound(roots: np.ndarray, confidence: float) -> float:
    """The bound the validation errors' own upper tail gives for the interval.

    Peaks over threshold: the top ``_TAIL_FRACTION`` of the (cube-rooted) errors above
    their quantile ``u`` are fitted with an exponential (mean excess ``beta``), which puts
    the upper tail probability ``(1 - confidence) / 2`` at ``u + beta * ln(fraction / p)``.
    For Gaussian errors this lies a little beyond the Gaussian bound; for the mixtures real
    keys produce (a size that is usually the block size, sometimes anything below it) it
    lies well beyond it, where the Gaussian would flag a few percent of normal entries.
    """
    if len(roots) < 20:
        return 0.0
    u = float(np.quantile(roots, 1.0 - _TAIL_FRACTION))
    excess = roots[roots > u] - u
    if len(excess) == 0:
        return u
    p = (1.0 - confidence) / 2.0
    frac = len(excess) / len(roots)
    return u + float(excess.mean()) * math.log(frac / p)


def _fit_lstm(s: KeySeries, cfg: ParamModelConfig) -> _KeyModel:
    n_train, _ = _split(len(s), cfg.validation)
    log_offset = _choose_log(s.values[:n_train])
    values = _apply_log(s.values, log_offset)
    mean, std = _mean_std(values[:n_train])
    z = (values - mean) / std
    x = _windows(z, cfg.window)
    weights, info = _train(x[:n_train], z[:n_train], cfg)
    net = ParamNetNumpy(weights, cfg.layers)
    dev = z[n_train:] - net.predict(x[n_train:])
    if cfg.slower_only:
        dev = _one_sided(dev)
    sq = dev * dev
    count = (~np.isnan(sq)).sum(axis=1)
    errors = (np.nansum(sq, axis=1) / np.maximum(count, 1))[count > 0]
    # The Gaussian is fitted to the cube root of the errors (Wilson-Hilferty): an MSE is a
    # scaled chi-square, far from Gaussian (a Gaussian on the raw errors flags 1.4-1.7% of
    # normal entries at the 99.9% interval); its cube root is close to Gaussian (measured:
    # 0.06-0.09%). The threshold is cubed back, so it is still a threshold on the MSE.
    roots = np.cbrt(errors)
    n_val = len(roots)
    if n_val >= 2:
        mu, sd = float(roots.mean()), float(roots.std(ddof=1))
    else:  # too little validation data: a wide default (errors of a mean predictor)
        mu, sd, n_val = 1.0, 1.0, 2
    # A perfectly predictable key (all errors equal) would otherwise flag any rounding.
    sd = max(sd, 1e-6, 0.01 * mu)
    # The Gaussian's interval for a new error, with its mean and std estimated from n_val
    # errors: a Student t prediction interval (3.29 sd at 0.999 and n large, 3.9 at n 20).
    gauss = mu + _t_quantile(cfg.tail, n_val - 1) * math.sqrt(1.0 + 1.0 / n_val) * sd
    tail = _tail_bound(roots, cfg.confidence)
    threshold = max(gauss, tail, _MIN_ROOT_ERROR) ** 3
    info.update(
        {
            "entries": len(s),
            "train_entries": n_train,
            "validation_entries": len(errors),
            "irregular": s.irregular,
            "constant_dims": _constant_dims(values[:n_train]),
            **_ranges(s.values[:n_train]),
            "error_cbrt_mean": mu,
            "error_cbrt_std": sd,
            "gaussian_bound": gauss**3,
            "tail_bound": tail**3,
            "error_cbrt_n": n_val,
            "tail_fit": _tail_fit(roots),
            "logged_dims": [int(j) for j in np.flatnonzero(~np.isnan(log_offset))],
        }
    )
    return _KeyModel("lstm", s.positions, mean, std, threshold, info, weights, log_offset)


def _train(
    x: np.ndarray, z: np.ndarray, cfg: ParamModelConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    threads = torch.get_num_threads()
    # One thread: the networks are tiny and a second thread only spins (see models.py).
    torch.set_num_threads(1)
    try:
        return _train_torch(x, z, cfg)
    finally:
        torch.set_num_threads(threads)


def _train_torch(
    x: np.ndarray, z: np.ndarray, cfg: ParamModelConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    from logwarden.models.nets import ParamNet

    d = z.shape[1]
    # Seeded per key (not once for all keys) so that a key's model does not depend on
    # which other keys were trained before it.
    torch.manual_seed(cfg.seed)

    keep = np.any(~np.isnan(z), axis=1)  # entries with nothing observed teach nothing
    x_all = torch.as_tensor(x[keep], dtype=torch.float32)
    mask_np = ~np.isnan(z[keep])
    y_all = torch.as_tensor(np.nan_to_num(z[keep], nan=0.0), dtype=torch.float32)
    m_all = torch.as_tensor(mask_np, dtype=torch.float32)
    net = ParamNet(d, cfg.hidden, cfg.layers)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(x_all)
    loss_value = math.nan
    # Long series are redundant (a step's durations repeat the same distribution): past
    # max_steps more passes change little and cost linear time, so training stops there.
    steps = 0
    epochs = 0
    while epochs < cfg.epochs and steps < cfg.max_steps:
        epochs += 1
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        seen = 0
        for start in range(0, n, cfg.batch_size):
            if steps >= cfg.max_steps:
                break
            steps += 1
            idx = perm[start : start + cfg.batch_size]
            seen += len(idx)
            m = m_all[idx]
            # MSE over the observed dimensions only: missing values give no gradient.
            loss = (((net(x_all[idx]) - y_all[idx]) ** 2) * m).sum() / m.sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        loss_value = total / max(seen, 1)
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return weights, {"epochs": epochs, "steps": steps, "loss": loss_value}


# --- inference in NumPy -----------------------------------------------------------------------


def _log10_tail(m: _KeyModel, error: np.ndarray, dims: int) -> np.ndarray:
    """log10 of each entry's upper tail probability under its unit's error model: for an
    LSTM unit the larger of the Student-t (on cube-rooted errors) and the exponential tail
    fitted to the validation errors (the bound is the larger of the two quantiles), for a
    robust unit the Student-t of the largest deviation, Bonferroni over dimensions. 0 where
    there is no evidence (nothing observed, or within the floor)."""
    out = np.zeros(len(error))
    ok = ~np.isnan(error)
    if not ok.any():
        return out
    e = error[ok]
    info = m.info
    if m.kind == "lstm":
        r = np.cbrt(e)
        n = max(int(info.get("error_cbrt_n", info.get("validation_entries", 2))), 2)
        mu = float(info.get("error_cbrt_mean", 1.0))
        sd = float(info.get("error_cbrt_std", 1.0))
        lp = _log10_t_sf((r - mu) / (sd * math.sqrt(1.0 + 1.0 / n)), n - 1)
        fit = info.get("tail_fit")
        if fit:
            u, beta, share = (float(v) for v in fit)
            tail = math.log10(share) - np.maximum(r - u, 0.0) / (beta * math.log(10.0))
            lp = np.maximum(lp, np.minimum(tail, 0.0))
        lp = np.where(r <= _MIN_ROOT_ERROR, 0.0, lp)
    else:
        n = max(int(info.get("entries", 2)), 2)
        lp = math.log10(dims) + _log10_t_sf(e / math.sqrt(1.0 + 1.0 / n), n - 1)
    out[ok] = np.minimum(lp, 0.0)
    return out


def _log10_t_sf(t: np.ndarray, nu: int) -> np.ndarray:
    """log10 P(T >= t) for Student's t with ``nu`` degrees of freedom: Wallace's (1959)
    normal approximation, z = (8 nu + 1) / (8 nu + 3) * sqrt(nu * ln(1 + t^2 / nu)); a
    ranking score, so a few percent off is fine."""
    nu_f = float(max(nu, 1))
    t = np.asarray(t, dtype=np.float64)
    z = (8 * nu_f + 1) / (8 * nu_f + 3) * np.sqrt(nu_f * np.log1p(t * t / nu_f))
    return log10_normal_sf(np.where(t < 0, -z, z))


def log10_normal_sf(z: np.ndarray) -> np.ndarray:
    """log10 P(Z >= z) for a standard normal, vectorised and without underflow: erfc by
    Abramowitz and Stegun 7.1.26 below z = 3 (absolute error 1.5e-7), the asymptotic
    series of Mills' ratio above (relative error under 2%)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    low = z < 3.0
    x = np.abs(z[low]) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erfc = poly * np.exp(-x * x)
    sf = np.where(z[low] >= 0, 0.5 * erfc, 1.0 - 0.5 * erfc)
    out[low] = np.log10(np.maximum(sf, 1e-300))
    zh = z[~low]
    inv2 = 1.0 / (zh * zh)
    series = 1.0 - inv2 + 3.0 * inv2**2 - 15.0 * inv2**3
    ln = -0.5 * zh * zh - np.log(zh) - 0.5 * math.log(2 * math.pi) + np.log(series)
    out[~low] = ln / math.log(10.0)
    return out


def _nanargmax_rows(a: np.ndarray) -> np.ndarray:
    """Column of each row's largest value ignoring NaN; -1 for all-NaN rows."""
    filled = np.where(np.isnan(a), -np.inf, a)
    idx = filled.argmax(axis=1) if a.shape[1] else np.zeros(len(a), dtype=np.int64)
    if a.shape[1]:
        idx[np.all(np.isnan(a), axis=1)] = -1
    return idx.astype(np.int64)


def _nanmax_rows(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), -np.inf, a).max(axis=1)
