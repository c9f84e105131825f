"""Streaming detection: the stages of ``detect``, driven one line at a time.

A :class:`StreamDetector` wraps a loaded :class:`~logwarden.detect.Detector` and takes raw
lines as they arrive (in batches, for speed; a batch of one line is fine):

* each line is split by the bundle's log format and parsed by its template miner in
  match-only mode, so keys keep the meaning the model learnt; a line that matches no
  template gets a key ``U<id>`` from a second miner that learns (the new template is kept,
  counted in ``stats["new_template"]`` and listed by ``new_templates``), exactly as batch
  ``detect`` reads unknown lines;
* it joins its open session (by the session id regex, or a count window), with its elapsed
  time since the session's previous entry;
* it is checked at once: by the key model (the ``window`` keys before it predict it: an
  unseen key or one ranked out is reported at that entry), and when the key is normal, by
  the parameter model of its (key, predecessor) unit;
* a session closes after ``session_timeout`` seconds of *log* time without an entry (the
  clock is the largest timestamp seen), when ``max_open`` sessions are open and it is the
  idlest (counted as ``evicted_session``), or on :meth:`flush`; an early end is checked
  then.

What comes out are :class:`Emitted` verdicts. An anomalous session is emitted when its
first anomalous entry arrives (``final`` False: its ``length`` and ``score`` so far), and
again when it closes (``final`` True, same ``key``): then the verdict is the one batch
``detect`` gives for the whole session (length, score, the raw lines around the anomaly).
A normal session is emitted once, when it closes. ``key`` (session id and the sequence
number of its first line) names the session instance for idempotent storage.

Equality with batch ``detect`` (same sessions flagged, same reason, detector and entry):
the key model sees the same windows; the parameter models see, for each entry, the
``param_window`` vectors before it in the unit's series in batch order (sessions in order
of first appearance, then position), built from what has arrived so far. Batch ``detect``
also puts entries of an earlier-starting session that arrive *later* before them; a
stream cannot, so with sessions that interleave, an LSTM parameter model can see a
different history and, near its threshold, decide otherwise. ``tests/test_service_stream``
and ``bench/service_equality.py`` measure how often (on the simulator's logs: never so
far). Sessions also match batch sessions only while no idle timeout splits one (batch
``detect`` closes sessions at the end of input).

The whole state (open sessions, the parameter histories, the unknown-line miner,
counters) round-trips through :meth:`to_state` / :meth:`from_state` as JSON-ready data, so
a service can checkpoint it and replay its journal from there after a crash.
"""

from __future__ import annotations

import base64
import copy
import math
import re
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from logwarden.detect import Detector, Verdict, key_reason
from logwarden.errors import ConfigError, StateError
from logwarden.io.formats import LogFormat, get_format
from logwarden.io.ingest import session_config
from logwarden.models import END, PAD, PROB_FLOOR, UNK
from logwarden.models.keys import RULES
from logwarden.models.params import START, EntryScorer, numeric_value
from logwarden.parsing import CREATED, TemplateMiner
from logwarden.records import SEVERE_LEVELS, Event, Line, Param, Record, Stats
from logwarden.service.cache import RowCache
from logwarden.sessions import Session
from logwarden.sessions.grouping import BACKWARD_LIMIT, TIMESTAMP_LIMIT, ids_in

__all__ = ["STATE_SCHEMA", "Emitted", "LineParser", "ParsedLine", "StreamConfig", "StreamDetector"]

STATE_SCHEMA = "logwarden.stream/1"
# A verdict and what its session's score depends on (``StreamDetector._score_state``).
_ScoreState = tuple[Verdict, float, bool, bool, float, float, float]

# Lines between two prunings of the parameter histories.
_PRUNE_LINES = 20_000

#: Lines over which ``input_warnings`` judges the conditions batch commands warn about
#: (``cli.common``: half the lines without a session id, 1% going back in log time, ...).
#: Recent lines, not all since the start: a service runs for months, and counts since its
#: start would hide a source that went wrong today behind weeks of good lines, then warn
#: for weeks after it was fixed. The counts since the start are in /metrics.
RECENT_LINES = 10_000
# Lines between two marks of the counts: the window holds RECENT_LINES lines to this many
# more (fewer at the start).
_RECENT_STEP = 1_000
# The counts the window keeps (``lines``: every line, as a batch read's ``lines_read``).
_RECENT_COUNTS = (
    "lines", "empty_line", "unmatched_format", "no_session_id", "no_session_id_severe",
    "time_went_back", "bad_timestamp",
)  # fmt: skip


@dataclass(frozen=True)
class StreamConfig:
    """Settings of the streaming detector (the model's own settings come from its bundle)."""

    session_timeout: float | None = None  # seconds of log time; None: close on flush only
    max_open: int | None = 200_000  # open sessions at most; the idlest is closed beyond
    # Sessions per parameter unit kept for the histories of later sessions, at most
    # (beyond it the oldest closed ones go; only a session that stays open for very long
    # makes the structure grow this far).
    history_sessions: int = 4096
    # Shapes the model's parser caches while streaming, per generation (two; the recently
    # used kept). The batch default (100k) is sized for one run; a service runs for
    # months, and its working set of shapes is small: on the simulator 1.4k new shapes per
    # 100k lines, 91% never seen again (hex ids). With 20,000 cleared when full, the parse
    # worker's memory rose by about 10 MB over the first minutes; 2,048 parse as fast.
    parser_cache: int = 2048
    # Windows whose key probabilities (and (window, key) pairs whose fold statistics) are
    # kept, per generation of the caches (two generations, the recently used kept; see
    # service.cache). A stream meets new windows as long as it runs: bounded, in arrays
    # allocated at start: about 8 x cache_windows x (vocabulary + window) bytes for the
    # probabilities (2 MB for 50 keys and windows of 10, 33 MB for 1,000 keys).
    cache_windows: int = 4096

    def __post_init__(self) -> None:
        if self.session_timeout is not None and not (
            math.isfinite(self.session_timeout) and self.session_timeout > 0
        ):
            raise ConfigError(
                f"session_timeout must be a positive number of seconds, got {self.session_timeout!r}",
                field="session_timeout",
            )
        if self.max_open is not None and self.max_open < 1:
            raise ConfigError("max_open must be >= 1", field="max_open")
        if self.history_sessions < 1:
            raise ConfigError("history_sessions must be >= 1", field="history_sessions")
        if self.parser_cache < 1:
            raise ConfigError("parser_cache must be >= 1", field="parser_cache")
        if self.cache_windows < 1:
            raise ConfigError("cache_windows must be >= 1", field="cache_windows")


@dataclass
class Emitted:
    """A verdict as the stream gives it (see the module docstring)."""

    key: str  # "<session id>@<sequence number of its first line>": one session instance
    verdict: Verdict
    final: bool  # True once the session has closed
    seq: int  # the line (or flush) that produced it
    closed_by: str | None = None  # end | idle | evicted | window, when final
    lines: list[str] | None = None  # final anomalous sessions: all their raw lines


class _Entry:
    """One entry of an open session: what checking it and explaining it later need."""

    __slots__ = ("elapsed", "kinds", "label", "seq", "text", "tkey", "ts", "values")

    def __init__(
        self,
        seq: int,
        text: str,
        label: str,
        tkey: int,
        ts: float | None,
        elapsed: float | None,
        values: list[str],
        kinds: tuple[str, ...],
    ) -> None:
        self.seq = seq
        self.text = text
        self.label = label  # log key label: E<id> (known template) or U<id> (unknown)
        self.tkey = tkey  # template id as the parameter models know it (negative: unknown)
        self.ts = ts  # timestamp as elapsed times use it (None: missing or out of range)
        self.elapsed = elapsed
        self.values = values
        self.kinds = kinds

    def to_list(self) -> list[Any]:
        return [
            self.seq, self.text, self.label, self.tkey, self.ts, self.elapsed,
            self.values, list(self.kinds),
        ]  # fmt: skip

    @classmethod
    def from_list(cls, v: Sequence[Any]) -> _Entry:
        return cls(
            int(v[0]), str(v[1]), str(v[2]), int(v[3]), v[4], v[5],
            [str(x) for x in v[6]], tuple(str(x) for x in v[7]),
        )  # fmt: skip


class _Open:
    """A session being built."""

    __slots__ = (
        "active", "closed_by", "counts", "cut_run", "entries", "first_seq", "fold_max", "idx",
        "key_flagged", "low_prob", "order", "param_lp", "reported", "rule_p", "ruled", "sid",
        "top_rank",
    )  # fmt: skip

    def __init__(self, sid: str, order: int, first_seq: int) -> None:
        self.sid = sid
        self.order = order  # first-appearance counter: batch order of sessions
        self.first_seq = first_seq
        self.entries: list[_Entry] = []
        self.idx: list[int] = []  # key model indices of the entries
        self.counts: dict[int, int] = {}  # occurrences of each index so far (count rule)
        self.active: float | None = None  # log clock at its last entry
        self.reported: Verdict | None = None  # the verdict emitted at its anomalous entry
        # What the session's score needs (``DeepLog.session_scores``), so far: the lowest
        # probability of a key a probability cut may flag (``models.session_statistic``),
        # the highest rank (top-g), whether a rule fired and the tail probability of the
        # rules that fired (``KeyModel.sessions_rule_p``; 1.0: none), whether the key model
        # flagged it, and the lowest log10 tail probability of an entry the parameter
        # models checked.
        self.low_prob = math.inf
        self.top_rank = 0
        self.ruled = False
        self.rule_p = 1.0
        self.key_flagged = False
        self.param_lp = 0.0
        self.closed_by = "end"
        # The fold check (``KeyModel.fold_statistics``): whether the probability cut flagged
        # an entry so far, and from then on each fold model's statistic of the session so
        # far (None: not computed yet; rebuilt from ``idx`` when needed).
        self.cut_run = False
        self.fold_max: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"{self.sid}@{self.first_seq}"

    def reindex(self, index: dict[str, int]) -> None:
        """Key indices and their counts under a model's vocabulary (restore, switch)."""
        self.idx = [index.get(e.label, UNK) for e in self.entries]
        self.fold_max = None
        self.counts = {}
        for t in self.idx:
            self.counts[t] = self.counts.get(t, 0) + 1

    def labels(self) -> list[str]:
        return [e.label for e in self.entries]


class UnitHistory:
    """The vectors of one parameter unit, per session, in batch order (see the module
    docstring): the history of an entry is the ``window`` vectors before it."""

    __slots__ = ("by_order", "orders", "tail", "tail_orders", "tail_window")

    def __init__(self) -> None:
        self.by_order: dict[int, list[list[float]]] = {}
        self.orders: list[int] = []  # sorted
        # The last ``tail_window`` vectors of all, oldest first, and their sessions' orders
        # (None: to be rebuilt): the history of a session newer than every one holding this
        # unit, the common case (a session meets most units once). Replaced, never changed
        # in place: a caller may hold it.
        self.tail: list[list[float]] | None = None
        self.tail_orders: list[int] = []
        self.tail_window = 0

    def before(self, order: int, window: int) -> list[list[float]]:
        by_order = self.by_order
        orders = self.orders
        if not orders or order > orders[-1]:
            if self.tail is None or self.tail_window != window:
                self._rebuild_tail(window)
            return self.tail  # type: ignore[return-value]
        own = by_order.get(order)
        need = window
        if own is not None:
            if len(own) >= window:
                return own[-window:]
            need -= len(own)
        return self._walk(bisect_left(orders, order) - 1, need, own or [])

    def _walk(self, i: int, need: int, own: list[list[float]]) -> list[list[float]]:
        """The last ``need`` vectors of the sessions at ``orders[: i + 1]``, then ``own``."""
        by_order = self.by_order
        orders = self.orders
        parts: list[list[list[float]]] = []
        while need > 0 and i >= 0:
            got = by_order[orders[i]]
            if len(got) >= need:
                parts.append(got[-need:])
                break
            parts.append(got)
            need -= len(got)
            i -= 1
        out: list[list[float]] = []
        for part in reversed(parts):
            out += part
        return out + own if own else out

    def _rebuild_tail(self, window: int) -> None:
        tail: list[list[float]] = []
        tail_orders: list[int] = []
        by_order = self.by_order
        for o in reversed(self.orders):
            if len(tail) >= window:
                break
            got = by_order[o][-(window - len(tail)) :]
            tail[:0] = got
            tail_orders[:0] = [o] * len(got)
        self.tail, self.tail_orders, self.tail_window = tail, tail_orders, window

    def add(self, order: int, vec: list[float]) -> None:
        got = self.by_order.get(order)
        orders = self.orders
        last = not orders or order >= orders[-1]  # the vector goes at the end of all
        if got is None:
            self.by_order[order] = [vec]
            if last:
                orders.append(order)
            else:
                insort(orders, order)
        else:
            got.append(vec)
        tail = self.tail
        if tail is None:
            return
        w = self.tail_window
        if not last:
            # Below the tail's oldest session, when the tail is full, it comes before every
            # vector of the tail (an open session older than the latest few): no change.
            if w and (len(tail) < w or order >= self.tail_orders[0]):
                self.tail = None
        elif len(tail) < w:
            self.tail = [*tail, vec]
            self.tail_orders = [*self.tail_orders, order]
        elif w:
            self.tail = [*tail[1:], vec]
            self.tail_orders = [*self.tail_orders[1:], order]

    def prune(self, open_orders: list[int], window: int, cap: int) -> int:
        """Forget the sessions no later entry can reach: an entry of an open session (or of
        a new one, above all) sees the ``window`` vectors below its session's order, so a
        closed session is kept only while some open order above it still lacks vectors.
        ``open_orders``: every open session's order, descending. Returns how many were
        dropped past ``cap`` (an approximation, counted)."""
        orders = self.orders
        by_order = self.by_order
        keep: list[int] = []
        need = window  # what a new session (above everything) needs
        j = 0
        for o in reversed(orders):
            while j < len(open_orders) and open_orders[j] >= o:
                need = window  # an open session at or above o needs window below it
                j += 1
            if j and open_orders[j - 1] == o:
                keep.append(o)  # open: its later entries extend it
                need = window
            elif need > 0:
                keep.append(o)
                need -= len(by_order[o])
        forced = 0
        if len(keep) > cap:
            forced = len(keep) - cap
            keep = keep[:cap]
        if len(keep) != len(orders):
            kept = set(keep)
            for o in orders:
                if o not in kept:
                    del by_order[o]
            keep.reverse()
            self.orders = keep
            self.tail = None
        return forced


@dataclass(slots=True)
class _Check:
    """One entry to check, in arrival order."""

    session: _Open
    pos: int
    window: tuple[int, ...]  # key indices before it
    target: int
    unit: tuple[int, int | None] | None = None
    vec: list[float] | None = None
    history: list[list[float]] | None = None
    # results
    prob: float = 0.0
    rank: int = 0
    flag: bool = False
    cut: bool = False  # the probability cut flagged it (before the fold check)
    param_row: tuple[Any, int] | None = None  # (ParamScores, row) when a parameter model fired
    param_lp: float = 0.0  # the entry's log10 tail probability under its parameter model
    new: bool = False  # a transition no normal training session holds (the rule)
    over: bool = False  # the occurrence of its key past the most a normal session held


@dataclass(slots=True)
class _Close:
    session: _Open
    window: tuple[int, ...]
    seq: int
    length: int = 0  # the session's entries (the length rule)
    prob: float = 0.0
    rank: int = 0
    flag: bool = False
    new: bool = False
    cut: bool = False


# A line as ``LineParser.parse`` gives it: whether the format matched, the timestamp, the
# template key of the model's parser (None: no template matched), the parameter values and
# their kinds, the session ids (None when sessions are windows), the message when no
# template matched (the stream's own miner learns it then; else None), and whether it is a
# line without a session id at a severe level (``no_session_id_severe``).
ParsedLine = tuple[
    bool, float | None, Any, list[str], tuple[str, ...], list[str] | None, str | None, bool
]


class LineParser:
    """What a stream does to each line that needs no session state: the format (message
    and timestamp), the model's parser in match-only mode, the session ids. Apart from
    ``StreamDetector`` so that another process can run it (``service.parse_worker``); its
    results depend on the model and the line only."""

    def __init__(self, detector: Detector, fmt: LogFormat | None = None) -> None:
        spec = detector.input
        if detector.miner is None or not spec.format:
            raise ConfigError("the model has no parser state", field="format")
        self.miner: TemplateMiner = detector.miner
        self.format: LogFormat = fmt if fmt is not None else get_format(spec.format)
        self._content_group = self.format.regex.groupindex.get("Content")
        self._level_group = self.format.regex.groupindex.get("Level")
        self._time_names: tuple[str, ...] = ()
        self._time_groups: tuple[int, ...] = ()
        sc = session_config(spec.session, spec.window, in_line=spec.session_in_line)
        self._pattern = re.compile(sc.id_pattern) if sc.id_pattern else None
        self._with_ids = sc.window_size is None and self._pattern is not None
        self._findall = self._pattern is not None and self._pattern.groups <= 1
        self._raw_line = sc.search_raw_line

    def parse(self, texts: Iterable[str]) -> tuple[list[ParsedLine], int]:
        """Each line's ``ParsedLine``; and how many timestamps the format could not read."""
        fmt = self.format
        bad = fmt.bad_timestamps
        read = self._read
        match = self.miner.parse_slots
        ids_of = self._ids if self._with_ids else None
        out: list[ParsedLine] = []
        for text in texts:
            content, ts, matched, level = read(text)
            if not text:
                out.append((matched, None, None, [], (), None, None, False))
                continue
            key, values, slots, _ = match(content, False)
            ids = ids_of(text, content) if ids_of is not None else None
            severe = ids == [] and level is not None and level.strip().upper() in SEVERE_LEVELS
            if key is None:
                out.append((matched, ts, None, [], (), ids, content, severe))
            else:
                kinds = tuple(sl.kind for sl in slots)
                out.append((matched, ts, key, values, kinds, ids, None, severe))
        return out, fmt.bad_timestamps - bad

    def _read(self, text: str) -> tuple[str, float | None, bool, str | None]:
        """A line's message, timestamp, whether the format matched, and its ``Level`` field
        (None: none), as the format's ``parse`` gives them, without building a Line and a
        Record (the fast path of raw ingest does the same)."""
        fmt = self.format
        if type(fmt) is not LogFormat:  # JSON lines and other kinds: their own parse
            rec = fmt.parse(Line(text, "", 0, 0))
            return rec.content, rec.timestamp, rec.matched, rec.fields.get("Level")
        m = fmt.regex.fullmatch(text.strip())
        if m is None:
            return text, None, False, None
        group = self._content_group
        content = (m.group(group) or "") if group else ""
        level = m.group(self._level_group) if self._level_group else None
        if not fmt.time_fields:
            return content, None, True, level
        if fmt.time_fields is not self._time_names:  # the format may switch its choice
            self._time_names = fmt.time_fields
            self._time_groups = tuple(fmt.regex.groupindex[n] for n in fmt.time_fields)
        groups = self._time_groups
        if len(groups) == 2:
            a, b = m.group(*groups)
            joined = a + " " + b if a is not None and b is not None else (a or b or "")
        else:
            joined = " ".join(g for g in m.group(*groups, 0)[:-1] if g is not None)
        ts = fmt.parse_time(joined) if joined else None
        if ts is None:  # the format's fallbacks, and its count of bad timestamps
            fields = {k: v for k, v in m.groupdict().items() if v is not None}
            fields.pop("Content", None)
            ts = fmt.timestamp(fields)
        return content, ts, True, level

    def _ids(self, text: str, content: str) -> list[str]:
        assert self._pattern is not None
        return ids_in(self._pattern, self._findall, text if self._raw_line else content)


class StreamDetector:
    """The streaming form of ``detect`` for a raw-log Detector (see the module docstring)."""

    def __init__(self, detector: Detector, config: StreamConfig | None = None) -> None:
        self.config = config if config is not None else StreamConfig()
        spec = detector.input
        if spec.input_format != "raw":
            raise ConfigError(
                f"streaming needs a model trained on raw logs (this one reads {spec.input_format})",
                field="input_format",
            )
        if not spec.format:
            raise ConfigError("the model has no log format", field="format")
        if detector.miner is None:
            raise ConfigError("the model has no parser state", field="format")
        self.format: LogFormat = get_format(spec.format)
        sc = session_config(spec.session, spec.window, in_line=spec.session_in_line)
        sc.validate()
        self._window_size = sc.window_size
        # How far a line's time may lie before the clock without counting as
        # ``time_went_back``: the session timeout, as batch reads count it (or an hour).
        timeout = self.config.session_timeout
        self._back = timeout if timeout is not None else BACKWARD_LIMIT
        self.unknown = TemplateMiner()  # templates of lines the model's parser does not know
        self._bound_shapes(self.unknown)
        self.stats = Stats()
        # Marks of the counts (``_RECENT_COUNTS``), oldest first: the first is where the
        # recent window starts (``recent_input``).
        self._recent: deque[dict[str, int]] = deque([self._counts_now()])
        self._open: OrderedDict[str, _Open] = OrderedDict()  # by last activity
        self._clock: float | None = None  # largest valid timestamp seen (log time)
        self._first_clock: float | None = None
        self._order = 0
        self._k_window = 0  # index of the next count window
        self._history: dict[tuple[int, int | None], UnitHistory] = {}
        self._seen: list[tuple[str, str, float | None, int]] | None = None  # for observers
        self.sessions_closed = 0
        self.anomalies = 0
        # Watchers of the stream (a drift tracker): ``entries(batch)`` with the entries of
        # each ``process`` call as (key, session, timestamp, seq), in arrival order, before
        # ``closed(verdict, keys)`` for each session that call closed.
        self.observers: list[Any] = []
        self.use(detector)

    # -- the model -----------------------------------------------------------------------------

    def use(self, detector: Detector) -> None:
        """Switch to another (e.g. updated) detector from the next line on. Open sessions
        keep their entries; the parameter histories start again (their units may differ)."""
        if self.__dict__.get("detector") is not None and detector.input != self.detector.input:
            raise ConfigError("a new model must read input as the old one", field="input")
        self.detector = detector
        self.model = detector.model
        self.key_model = _key_model(self.model)
        # Per rule, the tail probability of a session it flags (as batch scoring takes it).
        self._rule_rates = self.key_model.rule_rates()
        self.miner: TemplateMiner = detector.miner  # type: ignore[assignment]
        self._bound_shapes(self.miner)
        self.parser = LineParser(detector, self.format)
        self.h = self.key_model.config.window
        self.params = getattr(self.model, "params_", None)
        self.param_window = self.params.config.window if self.params is not None else 0
        self._layouts = self.params.layouts if self.params is not None else {}
        self._units = set(self.params.models) if self.params is not None else set()
        self._contextual = {
            u for u, m in (self.params.models.items() if self.params is not None else ())
            if m.kind == "lstm"
        }  # fmt: skip
        self._index = self.key_model.index
        self._history = {}
        # window -> the key model's probabilities after it
        km, h, size = self.key_model, self.h, self.config.cache_windows
        pad = np.full((1, h), PAD, dtype=np.int32)
        self._probs = RowCache(size, h, km.net.probabilities(pad).shape[1], np.float32)
        # (window, key) -> the fold models' statistics and whether they judge it (1/0): the
        # fold check asks them for every entry of a session once the cut has flagged it,
        # and windows repeat. Within a step, ``_fold_ahead`` keeps what the step may ask.
        self._fold_cache: RowCache | None = None
        if km.fold_check:
            folds = len(km.fold_statistics(pad, np.array([END]))[0])
            self._fold_cache = RowCache(size, h + 1, folds + 1, np.float64)
        self._step_folds: dict[tuple[tuple[int, ...], int], tuple[np.ndarray, bool]] = {}
        self._scorer: EntryScorer | None = None  # built at the first entry to score
        self._next_prune = 0
        index = self.key_model.index
        for s in self._open.values():
            s.reindex(index)
        for key, text in self.unknown_templates().items():
            self.model.templates_.setdefault(key, text)

    def _bound_shapes(self, miner: TemplateMiner) -> None:
        """A bound for a long run on a miner's shape cache (StreamConfig.parser_cache);
        results do not depend on it. The unknown-line miner too: it parses every line the
        model's parser does not know, and it had the batch default (100,000 shapes a
        generation); on a log with many new messages its cache would grow for hours."""
        miner.config.cache_size = min(miner.config.cache_size, self.config.parser_cache)

    # -- input ---------------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        return len(self._open)

    def cache_sizes(self) -> dict[str, int]:
        """Entries in the caches of the networks' answers (bounded: ``cache_windows``)."""
        fold = self._fold_cache
        return {"windows": len(self._probs), "fold": 0 if fold is None else len(fold)}

    def process(self, lines: Iterable[tuple[int, str]]) -> list[Emitted]:
        """Take lines ``(sequence number, text)`` in order; return what they produced."""
        lines = lines if isinstance(lines, list) else list(lines)
        parsed, bad = self.parser.parse([text for _, text in lines])
        return self.process_parsed([(lines, parsed, bad)])

    def process_parsed(
        self,
        chunks: Iterable[tuple[Sequence[tuple[int, str]], Sequence[ParsedLine], int]],
        before_checks: Callable[[], None] | None = None,
    ) -> list[Emitted]:
        """``process`` for lines that a ``LineParser`` of the same model parsed, perhaps in
        another process (``service.parse_worker``): chunks of (lines, what ``parse`` gave
        for them, its count of unreadable timestamps), in order, checked together as one
        call of ``process`` checks its lines. ``before_checks``: called once every line is
        in its session, before the models check them (the detector process hands the next
        lines to its parser then)."""
        timeline: list[_Check | _Close] = []
        self._seen = seen = [] if self.observers else None
        stats = self.stats
        window = self._window_size is not None
        n = 0
        for lines, parsed, bad in chunks:
            if len(lines) != len(parsed):
                raise ValueError("a parse for every line")
            n += len(lines)
            for (seq, text), (matched, ts, key, values, kinds, ids, content, severe) in zip(
                lines, parsed, strict=True
            ):
                if not text:
                    stats.add("empty_line")
                    continue
                if not matched:
                    stats.add("unmatched_format")
                if key is None:
                    assert content is not None
                    ukey, values, slots, change = self.unknown.parse_slots(content, True)
                    assert ukey is not None
                    r = self.unknown.resolve(ukey)
                    label = f"U{r}"
                    tkey = -r
                    kinds = tuple(sl.kind for sl in slots)
                    if change == CREATED:
                        stats.add("new_template")
                        self.model.templates_.setdefault(label, self.unknown.templates_[r].text)
                else:
                    r = self.miner.resolve(key)
                    label = f"E{r}"
                    tkey = r
                if ts is not None and not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT:
                    stats.add("bad_timestamp")
                    ts = None
                if window:
                    self._push_window(seq, text, label, tkey, ts, values, kinds, timeline)
                else:
                    if severe:
                        stats.add("no_session_id_severe")
                    self._push_id(seq, text, ids or [], label, tkey, ts, values, kinds, timeline)
            if bad:
                stats.add("bad_timestamp", bad)
        stats.add("lines", n)
        self._mark_recent()
        if seen:
            for obs in self.observers:
                obs.entries(seen)
        self._seen = None
        if before_checks is not None:
            before_checks()
        return self._decide(timeline)

    def flush(self, seq: int = -1) -> list[Emitted]:
        """Close every open session now (end of input, or a flush request)."""
        timeline: list[_Check | _Close] = []
        for s in sorted(self._open.values(), key=lambda s: s.order):
            s.closed_by = "end"
            timeline.append(self._closing(s, seq))
        self._open.clear()
        self._clock = self._first_clock = None
        return self._decide(timeline)

    # -- what batch commands warn about, over the recent lines ----------------------------------

    def _counts_now(self) -> dict[str, int]:
        return {k: self.stats[k] for k in _RECENT_COUNTS}

    def _mark_recent(self) -> None:
        marks, lines = self._recent, self.stats["lines"]
        if lines - marks[-1]["lines"] >= _RECENT_STEP:
            marks.append(self._counts_now())
        while len(marks) > 1 and marks[1]["lines"] <= lines - RECENT_LINES:
            marks.popleft()

    def recent_input(self) -> Stats:
        """The counts of the recent lines (``RECENT_LINES``; all since the start while
        fewer), as a batch read's: every line in ``lines_read``."""
        base = self._recent[0]
        out = Stats()
        for k in _RECENT_COUNTS:
            n = self.stats[k] - base.get(k, 0)
            if n > 0:
                out.add("lines_read" if k == "lines" else k, n)
        return out

    def input_warnings(self) -> list[dict[str, Any]]:
        """The conditions batch commands warn about (``cli.common``: the same predicates),
        over the recent lines (``recent_input``), each as ``kind`` (the count's name),
        ``lines`` (how many), ``of`` (of how many: the lines parsed, or those that matched
        the format for ``bad_timestamp``) and ``message``; none when all is well."""
        from logwarden.cli.common import (
            has_level,
            many_went_back,
            mostly_no_id,
            mostly_unmatched,
            mostly_unread_times,
            parsed_lines,
        )

        w = self.recent_input()
        lines = parsed_lines(w)
        last = f"of the last {lines:,} lines"
        out: list[dict[str, Any]] = []

        def warn(kind: str, of: int, message: str, **more: Any) -> None:
            out.append({"kind": kind, "lines": w[kind], "of": of, **more, "message": message})

        if mostly_unmatched(w):
            warn("unmatched_format", lines, f"{w['unmatched_format']:,} {last} do not match "
                 "the model's log format: does the source send another kind of log?")  # fmt: skip
        if mostly_no_id(w):
            severe = w["no_session_id_severe"] if has_level(self.detector.input.format) else None
            at = "" if severe is None else f" ({severe:,} of them at level WARN, ERROR or FATAL)"
            warn("no_session_id", lines, f"{w['no_session_id']:,} {last} hold no session id "
                 f"and were not judged{at}: check the source, or the session regex the model "
                 "was trained with", severe=severe)  # fmt: skip
        if many_went_back(w):
            timeout = self.config.session_timeout
            limit = f"the session timeout ({timeout:g} s)" if timeout else "an hour"
            warn("time_went_back", lines, f"{w['time_went_back']:,} {last} go back in log "
                 f"time further than {limit}: separate runs, or sources sent out of order, "
                 "merge into sessions of one id that never go idle")  # fmt: skip
        if mostly_unread_times(w):
            matched = lines - w["unmatched_format"]
            warn("bad_timestamp", matched, f"the time of {w['bad_timestamp']:,} of the last "
                 f"{matched:,} lines that match the format could not be read: no session goes "
                 "idle on them, and the timing models see no time between entries")  # fmt: skip
        return out

    def new_templates(self) -> dict[str, str]:
        """Templates of lines that matched none of the model's (key -> template text)."""
        return self.unknown_templates()

    def unknown_templates(self) -> dict[str, str]:
        u = self.unknown
        return {f"U{k}": t.text for k, t in sorted(u.templates_.items())}

    # -- grouping ------------------------------------------------------------------------------

    def _push_id(
        self,
        seq: int,
        text: str,
        ids: list[str],
        label: str,
        tkey: int,
        ts: float | None,
        values: list[str],
        kinds: tuple[str, ...],
        timeline: list[_Check | _Close],
    ) -> None:
        if ts is not None:
            if self._clock is None or ts > self._clock:
                if self._clock is None:
                    self._first_clock = ts
                self._clock = ts
                if self.config.session_timeout is not None:
                    self._expire(seq, timeline)
            elif ts < self._clock - self._back:  # back in time: another run, or source?
                self.stats.add("time_went_back")
        if not ids:
            self.stats.add("no_session_id")
            return
        opened = self._open
        max_open = self.config.max_open
        for sid in ids:
            s = opened.get(sid)
            if s is None:
                if max_open is not None and len(opened) >= max_open:
                    _, old = opened.popitem(last=False)
                    old.closed_by = "evicted"
                    self.stats.add("evicted_session")
                    timeline.append(self._closing(old, seq))
                s = opened[sid] = _Open(sid, self._order, seq)
                self._order += 1
            else:
                opened.move_to_end(sid)
            self._add(s, seq, text, label, tkey, ts, values, kinds, timeline)
            s.active = self._clock

    def _expire(self, seq: int, timeline: list[_Check | _Close]) -> None:
        assert self._clock is not None and self.config.session_timeout is not None
        limit = self._clock - self.config.session_timeout
        opened = self._open
        while opened:
            s = next(iter(opened.values()))
            active = s.active if s.active is not None else self._first_clock
            if active is not None and active >= limit:
                break
            opened.popitem(last=False)
            s.closed_by = "idle"
            timeline.append(self._closing(s, seq))

    def _push_window(
        self,
        seq: int,
        text: str,
        label: str,
        tkey: int,
        ts: float | None,
        values: list[str],
        kinds: tuple[str, ...],
        timeline: list[_Check | _Close],
    ) -> None:
        size = self._window_size
        assert size is not None
        if not self._open:
            sid = f"w{self._k_window:06d}"
            self._k_window += 1
            self._open[sid] = _Open(sid, self._order, seq)
            self._order += 1
        s = next(iter(self._open.values()))
        self._add(s, seq, text, label, tkey, ts, values, kinds, timeline)
        if len(s.entries) >= size:
            self._open.clear()
            s.closed_by = "window"
            timeline.append(self._closing(s, seq))

    def _add(
        self,
        s: _Open,
        seq: int,
        text: str,
        label: str,
        tkey: int,
        ts: float | None,
        values: list[str],
        kinds: tuple[str, ...],
        timeline: list[_Check | _Close],
    ) -> None:
        entries = s.entries
        pos = len(entries)
        if pos == 0:
            elapsed: float | None = 0.0
            prev = START
        else:
            last = entries[-1]
            elapsed = None if ts is None or last.ts is None else ts - last.ts
            prev = last.tkey
        entries.append(_Entry(seq, text, label, tkey, ts, elapsed, values, kinds))
        target = self._index.get(label, UNK)
        h = self.h
        idx = s.idx
        window = idx[-h:] if pos >= h else [PAD] * (h - pos) + idx
        idx.append(target)
        nth = s.counts[target] = s.counts.get(target, 0) + 1
        check = _Check(s, pos, tuple(window), target, over=self.key_model.count_over(target, nth))
        units = self._units
        if units and tkey in self._layouts:
            unit: tuple[int, int | None] = (tkey, prev)
            if unit not in units:
                unit = (tkey, None)
            if unit in units:
                vec = [math.nan if elapsed is None else float(elapsed)]
                for p in self._layouts[tkey]:
                    vec.append(_number(values, kinds, p))
                check.unit = unit
                check.vec = vec
                if unit in self._contextual:  # only an LSTM unit reads its history
                    hist = self._history.get(unit)
                    if hist is None:
                        hist = self._history[unit] = UnitHistory()
                    check.history = hist.before(s.order, self.param_window)
                    hist.add(s.order, vec)
        timeline.append(check)
        if self._seen is not None:
            self._seen.append((label, s.sid, ts, seq))

    def _closing(self, s: _Open, seq: int) -> _Close:
        h = self.h
        idx = s.idx
        window = idx[-h:] if len(idx) >= h else [PAD] * (h - len(idx)) + idx
        return _Close(s, tuple(window), seq, len(idx))

    # -- checking ------------------------------------------------------------------------------

    def _key_scores(self, items: Sequence[_Check | _Close]) -> None:
        """Probability and rank of each observed key (END at a close), and the flags."""
        if not items:
            return
        km = self.key_model
        n = len(items)
        targets = np.array([END if isinstance(it, _Close) else it.target for it in items])
        windows = np.array([it.window for it in items], dtype=np.int32).reshape(n, -1)
        prob = np.zeros(n, dtype=np.float32)
        rank = np.full(n, km.vocab_size + 1, dtype=np.int64)  # an unknown key's
        known = np.flatnonzero(targets != UNK)
        if len(known):
            rows = self._probs.fetch(windows[known], self._net_probs)
            p = rows[np.arange(len(known)), targets[known]]
            rows[:, [PAD, UNK]] = -1.0  # rows is a copy: ranked among the real keys and END
            prob[known] = p
            rank[known] = (rows > p[:, None]).sum(axis=1) + 1
        flags = km.threshold.flags(rank, prob)
        positions = np.array([it.length if isinstance(it, _Close) else it.pos for it in items])
        new = km.new_transitions(windows, targets, positions)
        for it, pr, rk, f, t, nw in zip(
            items, prob.tolist(), rank.tolist(), flags.tolist(), targets.tolist(), new.tolist(),
            strict=True,
        ):  # fmt: skip
            it.prob, it.rank = pr, rk
            it.new = bool(nw)
            it.cut = bool(f)
            # The rules; the cut joins in _decide, through the fold check when the model has it.
            it.flag = t == UNK or it.new or (isinstance(it, _Check) and it.over)

    def _window_probs(self, window: tuple[int, ...]) -> np.ndarray:
        return self._probs.fetch(np.array([window]), self._net_probs)[0]

    def _net_probs(self, windows: np.ndarray) -> np.ndarray:
        """The network's probabilities after each window, asked in sorted order (as batch
        detect asks its distinct windows: prefixes together)."""
        order = np.lexsort(windows.T[::-1])
        out = np.empty((len(windows), self._probs.value_width), dtype=np.float32)
        out[order] = self.key_model.net.probabilities(windows[order])
        return out

    def _param_scores(self, checks: Sequence[_Check]) -> None:
        """Score the entries that have a parameter model, all in one pass, the flagged ones
        with their ``ParamScores`` (what the verdict's explanation reads)."""
        if self.params is None or not checks:
            return
        if self._scorer is None:
            self._scorer = self.params.entry_scorer()
        scorer = self._scorer
        index = scorer.index
        _, log10_p, explained = scorer.score_explained(
            [index[c.unit] for c in checks],  # type: ignore[index]
            [c.vec for c in checks],  # type: ignore[misc]
            [c.history or [] for c in checks],
        )
        for c, lp in zip(checks, log10_p.tolist(), strict=True):
            c.param_lp = lp
        for i, row in explained.items():
            checks[i].param_row = row

    def _decide(self, timeline: list[_Check | _Close]) -> list[Emitted]:
        if not timeline:
            return []
        self._key_scores(timeline)
        self._fold_ahead(timeline)
        checks = [it for it in timeline if isinstance(it, _Check)]
        self._param_scores([c for c in checks if c.unit is not None])
        out: list[Emitted] = []
        # Verdict scores are computed together after the loop (one vectorised call, not one
        # per verdict), from what each session held when its verdict was made.
        scored: list[_ScoreState] = []
        closed: list[tuple[Verdict, list[str]]] = []
        for it in timeline:
            s = it.session
            target = END if isinstance(it, _Close) else it.target
            # The positions the session statistic takes (models.keys.session_statistic).
            if target != UNK and UNK not in it.window and it.rank > 1 and it.prob < s.low_prob:
                s.low_prob = it.prob
            if it.rank > s.top_rank:
                s.top_rank = it.rank
            over = isinstance(it, _Check) and it.over
            if target == UNK or it.new or over:
                s.ruled = True
                for name, fired in zip(RULES, (target == UNK, it.new, over), strict=True):
                    if fired:
                        s.rule_p = min(s.rule_p, self._rule_rates[name])
            if not it.flag and (it.cut or s.cut_run):
                it.flag = self._cut_flags(s, it, target)
            s.key_flagged = s.key_flagged or it.flag
            if isinstance(it, _Check) and not it.flag and it.unit is not None:
                s.param_lp = min(s.param_lp, it.param_lp)
            if isinstance(it, _Check):
                if s.reported is not None or not (it.flag or it.param_row is not None):
                    continue
                v = self._key_verdict(it) if it.flag else self._param_verdict(it)
                scored.append(self._score_state(v, s))
                self._diagnose(v, s)
                s.reported = v
                self.anomalies += 1
                out.append(Emitted(s.key, v, False, s.entries[it.pos].seq))
                continue
            # a close
            self.sessions_closed += 1
            length = len(s.entries)
            if s.reported is None and it.flag:
                v = self._end_verdict(s, it)
                self.anomalies += 1
            elif s.reported is not None:
                v = copy.copy(s.reported)  # the entry's verdict stays as it was emitted
                v.length = length
                if v.position is not None and v.reason != "early_end":
                    p = v.position
                    v.lines = [e.text for e in s.entries[max(0, p - 3) : p + 2]]
            else:
                v = Verdict(s.sid, False, length, 0.0)
            scored.append(self._score_state(v, s))
            if v.anomalous:  # against the whole session now, as batch detect diagnoses it
                self._diagnose(v, s)
            raw = [e.text for e in s.entries] if v.anomalous else None
            out.append(Emitted(s.key, v, True, it.seq, s.closed_by, raw))
            if self.observers:
                closed.append((v, s.labels()))
        self._set_scores(scored)
        self._step_folds.clear()
        for v, labels in closed:
            for obs in self.observers:
                obs.closed(v, labels)
        self._prune()
        return out

    def _cut_flags(self, s: _Open, it: _Check | _Close, target: int) -> bool:
        """Whether the probability cut flags this entry (or end): as ``KeyModel.assess``
        decides it, the cut having flagged this or an earlier entry, then, when the model
        has the fold check, the fold models' p-value of the session so far at most the
        level (or the folds cannot judge this entry)."""
        km = self.key_model
        if not km.fold_check or s.ruled or s.key_flagged:
            # No check; or the key model flagged the session already (a rule, this entry
            # included, or the check): from there on, as in batch, the cut alone.
            return it.cut
        s.cut_run = True
        pos = it.pos if isinstance(it, _Check) else len(s.idx)
        if s.fold_max is None:  # the entries before this one, once
            assert km.calibration is not None and km.calibration.fold_tails is not None
            s.fold_max = np.zeros(len(km.calibration.fold_tails))  # statistics are >= 0
            for stats, _ in self._fold_stats(_prefix_pairs(s.idx[:pos], self.h)):
                s.fold_max = np.maximum(s.fold_max, stats)
        ((stats, judged),) = self._fold_stats([(it.window, target)])
        s.fold_max = np.maximum(s.fold_max, stats)
        assert km.threshold.level is not None
        ok = float(km.fold_p(s.fold_max[:, None])[0]) <= km.threshold.level
        return ok or (it.cut and not judged)

    def _fold_ahead(self, timeline: Sequence[_Check | _Close]) -> None:
        """The fold statistics the fold check may ask of this step, in one call per fold
        model: every entry of a session the cut has flagged, in this step or before (a
        superset: ``_cut_flags`` decides in order which it asks)."""
        if not self.key_model.fold_check:
            return
        cut = {id(it.session): it.session for it in timeline if it.cut and not it.flag}
        pairs = {
            (it.window, END if isinstance(it, _Close) else it.target)
            for it in timeline
            if not it.flag and (it.session.cut_run or id(it.session) in cut)
        }
        for s in cut.values():
            if s.fold_max is None:  # its entries so far, for the prefix
                pairs.update(_prefix_pairs(s.idx, self.h))
        self._fold_stats(list(pairs))

    def _fold_stats(
        self, pairs: Sequence[tuple[tuple[int, ...], int]]
    ) -> list[tuple[np.ndarray, bool]]:
        """The fold models' statistics of (window, key) pairs and whether the folds judge
        them: those of this step kept in a dict (``_cut_flags`` asks them one at a time),
        the others from the cache, the missing ones computed in one call per fold model."""
        got = self._step_folds
        missing = [p for p in dict.fromkeys(pairs) if p not in got]
        if missing:
            assert self._fold_cache is not None
            rows = np.array([(*w, t) for w, t in missing], dtype=np.int32)
            h = self.h
            fold = self.key_model.fold_statistics

            def compute(keys: np.ndarray) -> np.ndarray:
                stats, judged = fold(keys[:, :h], keys[:, h].astype(np.int64))
                return np.column_stack([stats.T, judged])

            values = self._fold_cache.fetch(rows, compute)
            for pair, v in zip(missing, values, strict=True):
                got[pair] = (v[:-1], bool(v[-1]))
        return [got[p] for p in pairs]

    def _diagnose(self, v: Verdict, s: _Open) -> None:
        """The workflow diagnosis of an anomalous verdict, when the model has workflows
        (against the entries so far; at the close, the whole session)."""
        workflows = getattr(self.model, "workflows_", None)
        if workflows is None or v.position is None or not hasattr(v, "diagnosis"):
            return
        from logwarden.workflow.diagnose import diagnose

        lines = [e.text for e in s.entries]
        v.diagnosis = diagnose(
            workflows, s.labels(), v.position, v.reason or "", self.model.templates_, lines
        )

    @staticmethod
    def _score_state(v: Verdict, s: _Open) -> _ScoreState:
        """What the session's score so far depends on, for ``_set_scores``."""
        low = s.low_prob if math.isfinite(s.low_prob) else 1.0
        statistic = -math.log10(max(float(np.float32(low)), PROB_FLOOR))
        return v, statistic, s.ruled, s.key_flagged, float(s.top_rank), s.param_lp, s.rule_p

    def _set_scores(self, scored: list[_ScoreState]) -> None:
        """Each verdict's score, as batch detection scores its session (one call)."""
        if not scored:
            return
        _, stat, ruled, flagged, rank, plp, rule_p = zip(*scored, strict=True)
        scores = self.model.session_scores(
            np.array(stat), np.array(ruled), np.array(flagged), np.array(rank),
            None if self.params is None else np.array(plp), rule_p=np.array(rule_p),
        )  # fmt: skip
        for (v, *_), score in zip(scored, scores.tolist(), strict=True):
            v.score = float(score)

    def _expected(self, window: tuple[int, ...]) -> list[dict[str, Any]]:
        probs = self._window_probs(window)
        top = self.key_model.expected(probs[None, :], self.model.explain_top)[0]
        templates = self.model.templates_
        return [
            {"key": k, "template": templates.get(k), "probability": round(p, 4)} for k, p in top
        ]

    def _key_verdict(self, c: _Check) -> Verdict:
        s = c.session
        p = c.pos
        labels = s.labels()
        observed = labels[p]
        reason = "unseen_key" if c.target == UNK else key_reason(c.new, c.over)
        v = Verdict(
            s.sid, True, p + 1, 0.0, reason, "keys", p, observed,
            self.model.templates_.get(observed), round(c.prob, 6),
            c.rank if c.target != UNK else None,
            labels[max(0, p - self.h) : p], self._expected(c.window),
            [e.text for e in s.entries[max(0, p - 3) : p + 2]],
        )  # fmt: skip
        if reason == "count_exceeded":
            v.count, v.max_count = self.model.count_detail(labels, p)
        return v

    def _end_verdict(self, s: _Open, c: _Close) -> Verdict:
        p = len(s.entries)
        labels = s.labels()
        return Verdict(
            s.sid, True, p, 0.0, "early_end", "keys", p, "<end>",
            self.model.templates_.get("<end>"), round(c.prob, 6), c.rank,
            labels[max(0, p - self.h) : p], self._expected(c.window),
            [e.text for e in s.entries[max(0, p - 3) : p + 2]],
        )  # fmt: skip

    def _param_verdict(self, c: _Check) -> Verdict:
        s = c.session
        p = c.pos
        labels = s.labels()
        assert c.param_row is not None
        sc, j = c.param_row
        session = Session(s.sid, [self._event(e) for e in s.entries[: p + 1]])
        deviation = self.model.deviation(sc, j, labels, session, p)
        observed = labels[p]
        return Verdict(
            s.sid, True, p + 1, 0.0,
            "performance" if deviation["dimension"] == "elapsed" else "parameter",
            "params", p, observed, self.model.templates_.get(observed),
            window=labels[max(0, p - self.h) : p], deviation=deviation,
            lines=[e.text for e in s.entries[max(0, p - 3) : p + 2]],
        )  # fmt: skip

    @staticmethod
    def _event(e: _Entry) -> Event:
        record = Record(Line(e.text, "", e.seq, e.seq), "", {}, e.ts, True)
        params = [Param(v, k) for v, k in zip(e.values, e.kinds, strict=False)]
        return Event(record, e.tkey, "", params)

    def _prune(self) -> None:
        # Every few thousand lines: it walks every open session and every unit's history.
        if not self._history or self.stats["lines"] < self._next_prune:
            return
        self._next_prune = self.stats["lines"] + _PRUNE_LINES
        open_orders = sorted((s.order for s in self._open.values()), reverse=True)
        cap = self.config.history_sessions
        forced = 0
        for hist in self._history.values():
            forced += hist.prune(open_orders, self.param_window, cap)
        if forced:
            self.stats.add("history_dropped", forced)

    # -- state ---------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to go on exactly where this detector is, as JSON-ready data
        (not the model: the caller keeps which model it runs)."""
        return {
            "schema": STATE_SCHEMA,
            "config": asdict(self.config),
            "stats": self.stats.as_dict(),
            "clock": self._clock,
            "first_clock": self._first_clock,
            "order": self._order,
            "k_window": self._k_window,
            "sessions_closed": self.sessions_closed,
            "anomalies": self.anomalies,
            "unknown": self.unknown.to_state()[0],
            "bad_timestamps": self.format.bad_timestamps,
            "recent": list(self._recent),
            "open": [
                {
                    "sid": s.sid,
                    "order": s.order,
                    "first_seq": s.first_seq,
                    "active": s.active,
                    "reported": None if s.reported is None else _verdict_state(s.reported),
                    "low_prob": None if not math.isfinite(s.low_prob) else s.low_prob,
                    "top_rank": s.top_rank,
                    "ruled": s.ruled,
                    "rule_p": s.rule_p,
                    "key_flagged": s.key_flagged,
                    "cut_run": s.cut_run,
                    "param_lp": s.param_lp,
                    "entries": [e.to_list() for e in s.entries],
                }
                for s in self._open.values()  # in activity order
            ],
            # Vectors as base64 float64 (exact, and far cheaper than JSON numbers).
            "history": [_history_state(unit, h) for unit, h in self._history.items() if h.orders],
        }

    @classmethod
    def from_state(
        cls, detector: Detector, state: dict[str, Any], config: StreamConfig | None = None
    ) -> StreamDetector:
        """A detector that goes on from ``state`` (``to_state``) with ``detector``."""
        if not isinstance(state, dict) or state.get("schema") != STATE_SCHEMA:
            found = state.get("schema") if isinstance(state, dict) else type(state).__name__
            raise StateError(f"not a stream state of schema {STATE_SCHEMA} (found {found!r})")
        try:
            cfg = config if config is not None else StreamConfig(**state["config"])
            self = cls.__new__(cls)
            self.config = cfg
            # The constructor's setup, without the model switch's reset of open sessions.
            fresh = cls(detector, cfg)
            self.__dict__.update(fresh.__dict__)
            self.unknown = TemplateMiner.from_state(state["unknown"])
            self._bound_shapes(self.unknown)
            self.stats = Stats()
            for k, v in state["stats"].items():
                self.stats.add(str(k), int(v))
            self._clock = state["clock"]
            self._first_clock = state["first_clock"]
            self._order = int(state["order"])
            self._k_window = int(state["k_window"])
            self.sessions_closed = int(state["sessions_closed"])
            self.anomalies = int(state["anomalies"])
            self.format.bad_timestamps = int(state.get("bad_timestamps", 0))
            # An older state has no marks: the window starts at the checkpoint.
            marks = [{str(k): int(v) for k, v in m.items()} for m in state.get("recent") or []]
            self._recent = deque(marks or [self._counts_now()])
            index = self.key_model.index
            for o in state["open"]:
                s = _Open(str(o["sid"]), int(o["order"]), int(o["first_seq"]))
                s.active = o["active"]
                s.entries = [_Entry.from_list(e) for e in o["entries"]]
                s.reindex(index)
                s.reported = None if o["reported"] is None else _verdict_from(o["reported"])
                s.low_prob = math.inf if o["low_prob"] is None else float(o["low_prob"])
                s.top_rank = int(o["top_rank"])
                s.ruled = bool(o.get("ruled", False))
                # A state from before the rules' own rates: the rules' joint rate.
                joint = self.key_model.calibration
                older = joint.rule_p if s.ruled and joint is not None else 1.0
                s.rule_p = float(o.get("rule_p", older))
                s.key_flagged = bool(o.get("key_flagged", s.reported is not None))
                s.cut_run = bool(o.get("cut_run", False))
                s.param_lp = float(o.get("param_lp", 0.0))
                self._open[s.sid] = s
            for item in state["history"]:
                unit, h = _history_from(item)
                self._history[unit] = h
            for key, text in self.unknown_templates().items():
                self.model.templates_.setdefault(key, text)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise StateError(f"corrupt stream state: {exc}") from None
        return self


def _prefix_pairs(idx: Sequence[int], h: int) -> list[tuple[tuple[int, ...], int]]:
    """The (window, key) pairs of a session's first ``len(idx)`` entries (PAD in front)."""
    padded = [PAD] * h + list(idx)
    return [(tuple(padded[j : j + h]), k) for j, k in enumerate(idx)]


def _number(values: list[str], kinds: tuple[str, ...], p: int) -> float:
    """Parameter ``p`` as a feature (NaN: missing or not numeric), as batch scoring reads it."""
    if p >= len(values) or p >= len(kinds):
        return math.nan
    kind = kinds[p]
    if kind == "int" or kind == "float":  # the common case, without building a Param
        try:
            v = float(values[p])
        except (ValueError, OverflowError):
            return math.nan
        return v if math.isfinite(v) else math.nan
    got = numeric_value(Param(values[p], kind))
    return math.nan if got is None else got


def _key_model(model: Any) -> Any:
    km = getattr(model, "model_", None)
    if km is None:
        raise ConfigError("the detector's model is not fitted", field="model")
    return km


def _history_state(unit: tuple[int, int | None], h: UnitHistory) -> dict[str, Any]:
    counts = [len(h.by_order[o]) for o in h.orders]
    flat = [v for o in h.orders for v in h.by_order[o]]
    data = np.asarray(flat, dtype="<f8")
    return {
        "unit": list(unit),
        "orders": list(h.orders),
        "counts": counts,
        "dim": int(data.shape[1]) if data.ndim == 2 else 0,
        "data": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def _history_from(item: dict[str, Any]) -> tuple[tuple[int, int | None], UnitHistory]:
    u = item["unit"]
    unit = (int(u[0]), None if u[1] is None else int(u[1]))
    dim = int(item["dim"])
    flat = np.frombuffer(base64.b64decode(item["data"]), dtype="<f8")
    rows = flat.reshape(-1, dim).tolist() if dim else []
    h = UnitHistory()
    at = 0
    for o, n in zip(item["orders"], item["counts"], strict=True):
        h.by_order[int(o)] = rows[at : at + int(n)]
        h.orders.append(int(o))
        at += int(n)
    if at != len(rows):
        raise ValueError("history counts do not match its vectors")
    return unit, h


_VERDICT_FIELDS = (
    "session", "anomalous", "length", "score", "reason", "detector", "position", "observed",
    "observed_template", "probability", "rank", "window", "expected", "lines", "deviation",
    "count", "max_count",
)  # fmt: skip


def _verdict_state(v: Verdict) -> dict[str, Any]:
    d = {k: getattr(v, k) for k in _VERDICT_FIELDS}
    diagnosis = getattr(v, "diagnosis", None)
    if diagnosis is not None:
        d["diagnosis"] = diagnosis.to_dict()
    return d


def _verdict_from(d: dict[str, Any]) -> Verdict:
    v = Verdict(**{k: d[k] for k in _VERDICT_FIELDS if k in d})
    if d.get("diagnosis") is not None:
        from logwarden.workflow.diagnose import Diagnosis

        v.diagnosis = Diagnosis.from_dict(d["diagnosis"])
    return v
