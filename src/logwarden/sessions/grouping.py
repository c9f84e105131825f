"""Grouping parsed events into sessions, the unit DeepLog models.

Three grouping modes, exactly one per configuration:

* **By identifier** (``id_pattern`` or ``id_field``). ``id_pattern`` is a regular
  expression searched in the record content (or in the raw line with
  ``search_raw_line``); every match is an id: group 1 when the pattern has a capturing
  group, else the whole match. A line holding two different ids belongs to both
  sessions; the same id twice in one line counts once. ``id_field`` takes the id from a
  header field instead. Lines without an id are counted as ``no_session_id`` (and those
  of them whose ``Level`` field says WARN, ERROR, FATAL or the like, ``SEVERE_LEVELS``,
  as ``no_session_id_severe`` too) and, by default, left out of every session: a catch-all session would splice unrelated
  executions into one sequence and teach the model paths that never happen. With
  ``keep_unidentified`` they go into one session whose id is ``UNIDENTIFIED_ID``.
  A session closes at the end of input (``flush``), after ``idle_timeout`` seconds of
  event time without an entry, or when it is the least recently active one and
  ``max_open`` sessions are already open (counted as ``evicted_session``). A later
  entry with the same id then starts a new session with the same id.
* **Count windows** (``window_size``, ``window_step``; the step defaults to the size,
  which gives tumbling windows). Window ``k`` holds events ``k*step .. k*step+size-1``
  and is named ``w000123``. At the end of input the events not yet covered by a complete
  window are emitted in one last, shorter window; shorter windows that would only repeat
  already emitted events are not emitted.
* **Time windows** (``time_window`` seconds, ``time_step`` defaulting to the window,
  i.e. tumbling). Windows are aligned to multiples of the step since the epoch, so the
  same event lands in the same window whatever the input starts with; a window is named
  by its UTC start, e.g. ``2008-11-09T20:35:00Z``. Empty windows (gaps) are not emitted.
  An event without a timestamp is placed at the last seen timestamp (counted as
  ``no_timestamp``); untimed events before the first timestamp wait for it (at most
  ``MAX_PENDING_UNTIMED``; more, or none ever arriving, counts ``no_timestamp_dropped``).
  An event whose windows have all closed already (out-of-order input) is placed at the
  current clock and counted as ``late_event``.

Event time is a watermark: the largest timestamp seen so far. Timestamps that are not
finite or beyond +-1e11 s (year 5138; a parse error, not a time) are treated as missing
and counted as ``bad_timestamp``. In id mode, a line whose timestamp is more than the idle
timeout (without one, ``BACKWARD_LIMIT``) before the event time is counted as
``time_went_back``, and as ``input_went_back`` too when it is the first timed line of an
input (a file read after the one it precedes: rotated logs given newest first), where
separate runs meet and their sessions of the same id merge: it is kept where it is, as the
log has it (``TimeOrder`` counts the same on the column paths).

Every entry gets an elapsed time: seconds since the previous entry of the same session,
0.0 for the first entry of a session, None when either timestamp is missing. Out-of-order
input gives negative values, kept as they are (they are what the log says).
"""

from __future__ import annotations

import copy
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from itertools import pairwise
from operator import is_not, itemgetter
from types import MappingProxyType
from typing import Any, overload

from logwarden.errors import ConfigError
from logwarden.records import SEVERE_LEVELS, Event, Line, Param, Record, Stats

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

#: Identifier regexes for common systems (use as ``SessionConfig(id_pattern=...)``):
#:
#: * ``hdfs``: an HDFS block id, ``blk_-123...`` (signed 64-bit), the DeepLog HDFS session.
#: * ``openstack``: the instance UUID in nova's ``[instance: <uuid>]`` marker.
#: * ``request``: an OpenStack style request id ``req-<uuid>``.
#: * ``uuid``: any RFC 4122 style UUID (8-4-4-4-12 hex digits) standing as a word.
SESSION_PRESETS: Mapping[str, str] = MappingProxyType(
    {
        "hdfs": r"(blk_-?\d+)",
        "openstack": rf"\[instance: ({_UUID})\]",
        "request": rf"\b(req-{_UUID})\b",
        "uuid": rf"\b({_UUID})\b",
    }
)

#: Session id of the catch-all session for lines without an id (``keep_unidentified``).
UNIDENTIFIED_ID = "<unidentified>"

#: Untimed events held back in time-window mode until the first timestamp arrives.
MAX_PENDING_UNTIMED = 10_000

# Bounds each event's fan-out (and the memory of open windows): a size/step ratio above
# this is almost surely a typo (e.g. a step in milliseconds instead of seconds).
_MAX_WINDOWS_PER_EVENT = 1000

_EPOCH = datetime(1970, 1, 1)

# Timestamps outside +-TIMESTAMP_LIMIT seconds are garbage; excluding them keeps window indexes
# and names finite and lets one bad line not push the idle clock into the far future.
TIMESTAMP_LIMIT = 1e11


#: Seconds a line's time may lie before the latest time read before it without counting as
#: ``time_went_back``, for id sessions without an idle timeout (with one: the timeout).
#: Lines of concurrent processes or hosts interleave seconds or minutes apart; an hour
#: back is another run (a rotated log read after a newer one).
BACKWARD_LIMIT = 3600.0


class TimeOrder:
    """What ``Sessionizer`` counts of log time going back, for the column paths that see
    the valid timestamps a batch at a time (``io.ingest``): lines more than ``limit``
    seconds before the latest time read before them (``time_went_back``), and inputs whose
    first timed line is one (``input_went_back``; ``start_input`` when an input begins)."""

    __slots__ = ("clock", "inputs_back", "limit", "lines_back", "pending")

    def __init__(self, limit: float | None) -> None:
        self.limit = limit if limit is not None else BACKWARD_LIMIT
        self.clock = -math.inf  # the latest valid time read
        self.lines_back = 0
        self.inputs_back = 0
        self.pending = False  # an input began and no timed line of it was read yet

    def start_input(self) -> None:
        self.pending = True

    def feed(self, valid: Sequence[float | None]) -> None:
        """The next lines' valid timestamps (None: missing or out of range)."""
        times = list(filter(_is_time, valid))
        if not times:
            return
        clock, limit = self.clock, self.limit
        if self.pending:
            self.pending = False
            if times[0] < clock - limit:
                self.inputs_back += 1
        top = max(times)
        if min(times) >= max(clock, top) - limit:  # no line goes back that far: no loop
            self.clock = max(clock, top)
            return
        for t in times:
            if t > clock:
                clock = t
            elif t < clock - limit:
                self.lines_back += 1
        self.clock = clock

    def add_to(self, add: Callable[[str, int], Any]) -> None:
        """Add the counts with ``add(reason, n)`` (``Stats.add``), those that are not 0."""
        if self.lines_back:
            add("time_went_back", self.lines_back)
        if self.inputs_back:
            add("input_went_back", self.inputs_back)


# Whether a timestamp is there (not None), in C: filter calls it for every line.
_is_time = partial(is_not, None)


def ids_in(pattern: re.Pattern[str], findall: bool, text: str) -> list[str]:
    """The session ids ``pattern`` finds in ``text``, in order, each once, none empty.
    ``findall``: the pattern has at most one group (else group 1 is the id)."""
    if findall:
        ids: list[str] = pattern.findall(text)
        if len(ids) == 1:
            return ids if ids[0] else []
    else:
        # findall would give tuples; group 1 is the id and may not have taken part.
        ids = [g for m in pattern.finditer(text) if (g := m.group(1))]
    if len(ids) > 1:
        return [i for i in dict.fromkeys(ids) if i]
    return ids


class SessionConfigError(ConfigError):
    """An invalid session configuration; the message is one line for the user."""


@dataclass
class SessionConfig:
    """How to group events into sessions; set exactly one of ``id_pattern``,
    ``id_field``, ``window_size`` or ``time_window`` (see the module docstring)."""

    id_pattern: str | None = None
    id_field: str | None = None
    search_raw_line: bool = False
    window_size: int | None = None
    window_step: int | None = None  # None: same as window_size (tumbling)
    time_window: float | None = None  # seconds
    time_step: float | None = None  # None: same as time_window (tumbling)
    idle_timeout: float | None = None  # seconds of event time; None: close only at flush
    max_open: int | None = None  # None: unbounded
    keep_unidentified: bool = False

    def validate(self) -> None:
        """Raise SessionConfigError if the configuration is unusable."""
        modes = [
            name
            for name in ("id_pattern", "id_field", "window_size", "time_window")
            if getattr(self, name) is not None
        ]
        if len(modes) != 1:
            found = ", ".join(modes) if modes else "none"
            raise SessionConfigError(
                f"set exactly one of id_pattern, id_field, window_size, time_window (got: {found})"
            )
        mode = modes[0]
        id_mode = mode in ("id_pattern", "id_field")
        if mode == "id_pattern":
            _compile(self.id_pattern)
        if mode == "id_field" and (not isinstance(self.id_field, str) or not self.id_field):
            raise SessionConfigError("id_field must be a non-empty field name")
        if self.search_raw_line and mode != "id_pattern":
            raise SessionConfigError("search_raw_line applies only with id_pattern")
        if not id_mode:
            for name in ("idle_timeout", "max_open"):
                if getattr(self, name) is not None:
                    raise SessionConfigError(f"{name} applies only to id sessions, not windows")
            if self.keep_unidentified:
                raise SessionConfigError("keep_unidentified applies only to id sessions")
        if self.window_step is not None and mode != "window_size":
            raise SessionConfigError("window_step needs window_size")
        if self.time_step is not None and mode != "time_window":
            raise SessionConfigError("time_step needs time_window")
        if mode == "window_size":
            size = _positive_int("window_size", self.window_size)
            step = (
                size if self.window_step is None else _positive_int("window_step", self.window_step)
            )
            _check_step("window_size", "window_step", size, step)
        if mode == "time_window":
            width = _positive_seconds("time_window", self.time_window)
            step = (
                width if self.time_step is None else _positive_seconds("time_step", self.time_step)
            )
            _check_step("time_window", "time_step", width, step)
        if self.idle_timeout is not None:
            _positive_seconds("idle_timeout", self.idle_timeout)
        if self.max_open is not None:
            _positive_int("max_open", self.max_open)


def _compile(pattern: object) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise SessionConfigError(
            "id_pattern must be a non-empty regular expression", field="id_pattern"
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SessionConfigError(
            f"id_pattern {pattern!r} does not compile: {exc}", field="id_pattern"
        ) from None


def _positive_int(name: str, value: object) -> int:
    # bool is an int subclass; True as a window size is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SessionConfigError(f"{name} must be a positive integer (got {value!r})", field=name)
    return value


def _positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SessionConfigError(f"{name} must be a number of seconds (got {value!r})")
    # Window ids carry microseconds: a smaller step would give windows the same name.
    if not math.isfinite(value) or value < 1e-6:
        raise SessionConfigError(f"{name} must be a positive number of seconds (got {value!r})")
    return float(value)


def _check_step(size_name: str, step_name: str, size: float, step: float) -> None:
    if step > size:
        raise SessionConfigError(
            f"{step_name} ({step:g}) must not exceed {size_name} ({size:g}): "
            "events between windows would be lost"
        )
    if size / step > _MAX_WINDOWS_PER_EVENT:
        raise SessionConfigError(
            f"{step_name} ({step:g}) is too small for {size_name} {size:g}: each event "
            f"would be in over {_MAX_WINDOWS_PER_EVENT} windows"
        )


@dataclass(slots=True)
class Session:
    """One session: its entries in arrival order and their elapsed times.

    ``closed_by`` tells why it was emitted: ``end`` (flush), ``idle`` (idle timeout),
    ``evicted`` (``max_open``; likely incomplete) or ``window`` (a full window).
    """

    id: str
    events: list[Event] = field(default_factory=list)
    elapsed: list[float | None] = field(default_factory=list)
    closed_by: str = "end"
    # Sort key for group(): first appearance (id mode) or window index (window modes).
    _order: int = field(default=0, repr=False, compare=False)

    @property
    def keys(self) -> list[int]:
        return [e.key for e in self.events]

    @property
    def start(self) -> float | None:
        """Earliest known timestamp of its entries, None if none has one."""
        known = [t for e in self.events if (t := e.record.timestamp) is not None]
        return min(known) if known else None

    @property
    def end(self) -> float | None:
        """Latest known timestamp of its entries, None if none has one."""
        known = [t for e in self.events if (t := e.record.timestamp) is not None]
        return max(known) if known else None

    def __len__(self) -> int:
        return len(self.events)


class _Open:
    """A session being built, with what closing and elapsed times need."""

    __slots__ = ("active", "last_ts", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.last_ts: float | None = None  # timestamp of its last entry
        self.active: float | None = None  # event clock at its last entry (id mode)

    def add(self, event: Event, ts: float | None) -> None:
        s = self.session
        if not s.events:
            s.elapsed.append(0.0)
        elif ts is None or self.last_ts is None:
            s.elapsed.append(None)
        else:
            s.elapsed.append(ts - self.last_ts)
        s.events.append(event)
        self.last_ts = ts


def _iso(t: float) -> str:
    try:
        dt = _EPOCH + timedelta(seconds=t)
    except (OverflowError, ValueError):
        return f"t{t!r}"  # beyond datetime's range; still unique and readable
    text = dt.isoformat()  # microseconds only when non-zero
    return (text.rstrip("0") if "." in text else text) + "Z"


class Sessionizer:
    """Streaming grouping: ``push`` each event, then ``flush`` at the end of input.

    Memory is the open sessions (bounded by ``max_open`` in id mode) or the open
    windows. ``flush`` ends the stream; events pushed after it start a new one.
    """

    def __init__(self, config: SessionConfig, stats: Stats | None = None) -> None:
        config.validate()
        self.config = config
        self.stats = stats if stats is not None else Stats()
        self._clock: float | None = None  # largest timestamp seen (event time)
        self._push: Callable[[Event], list[Session]]
        self._flush: Callable[[], list[Session]]
        self._windows: OrderedDict[int, _Open] = OrderedDict()  # window modes
        # Id mode, ordered by last activity: an entry moves its session to the end, and
        # since activity is the monotonic event clock, the front is always the idlest.
        self._open: OrderedDict[str, _Open] = OrderedDict()
        if config.window_size is not None:
            self._size = config.window_size
            self._step = config.window_step or config.window_size
            self._n = 0  # events in this stream
            self._next_k = 0  # index of the next count window
            self._covered = 0  # stream position up to which emitted windows cover
            self._prev_ts: float | None = None  # timestamp of the previous event
            self._push, self._flush = self._push_count, self._flush_count
        elif config.time_window is not None:
            self._width = float(config.time_window)
            self._tstep = float(config.time_step or config.time_window)
            ratio = self._width / self._tstep
            # When the width is a whole number of steps, the window count per event is
            # fixed; deriving it from one floor avoids float disagreement between two.
            self._per_event = round(ratio) if abs(ratio - round(ratio)) < 1e-9 else 0
            self._pending: list[Event] = []
            self._push, self._flush = self._push_time, self._flush_time
        else:
            self._pattern = _compile(config.id_pattern) if config.id_pattern is not None else None
            self._field = config.id_field
            self._raw = config.search_raw_line
            # findall yields group 1 (or the whole match) directly unless there are 2+ groups.
            self._findall = self._pattern is not None and self._pattern.groups <= 1
            self._timeout = config.idle_timeout
            self._max_open = config.max_open
            self._keep = config.keep_unidentified
            self._seq = 0  # first-appearance counter, the order of group() and flush()
            self._first_clock: float | None = None
            self._back = config.idle_timeout if config.idle_timeout is not None else BACKWARD_LIMIT
            # The input of the last line (a new source, or a line number not after the last
            # one's: a new input began), and whether no timed line of it was read yet.
            self._source: str | None = None
            self._lineno = 0
            self._new_input = False
            self._push, self._flush = self._push_id, self._flush_id

    @property
    def open_count(self) -> int:
        """Sessions or windows currently open."""
        return len(self._open) + len(self._windows)

    def push(self, event: Event) -> list[Session]:
        """Add one event; return the sessions that closed because of it (idle ones
        least recently active first, then any evicted), usually none."""
        return self._push(event)

    def flush(self) -> list[Session]:
        """End of input: return every session still open, in order of first appearance."""
        return self._flush()

    def _timestamp(self, record: Record) -> float | None:
        ts = record.timestamp
        if ts is not None and not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT:
            self.stats.add("bad_timestamp")
            return None
        return ts

    # -- id mode ---------------------------------------------------------------------

    def _ids(self, record: Record) -> list[str]:
        pattern = self._pattern
        if pattern is None:
            value = record.fields.get(self._field)  # type: ignore[arg-type]
            return [value] if value else []
        return ids_in(pattern, self._findall, record.line.text if self._raw else record.content)

    def _push_id(self, event: Event) -> list[Session]:
        # The hot path of id mode: kept inline, one dict lookup per id.
        record = event.record
        ts = record.timestamp
        closed: list[Session] = []
        line = record.line
        if line.lineno <= self._lineno or line.source != self._source:
            self._new_input = True
            self._source = line.source
        self._lineno = line.lineno
        if ts is not None:
            if not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT:  # also False for NaN
                self.stats.add("bad_timestamp")
                ts = None
            elif self._clock is None or ts > self._clock:
                if self._clock is None:
                    self._first_clock = ts
                self._clock = ts
                self._new_input = False
                if self._timeout is not None:
                    self._expire(closed)
            else:
                if ts < self._clock - self._back:  # back in time: another run?
                    self.stats.add("time_went_back")
                    if self._new_input:
                        self.stats.add("input_went_back")
                self._new_input = False
        ids = self._ids(record)
        if not ids:
            self.stats.add("no_session_id")
            level = record.fields.get("Level")
            if level and level.strip().upper() in SEVERE_LEVELS:
                self.stats.add("no_session_id_severe")
            if not self._keep:
                return closed
            ids = [UNIDENTIFIED_ID]
        opened = self._open
        clock = self._clock
        for sid in ids:
            state = opened.get(sid)
            if state is None:
                if self._max_open is not None and len(opened) >= self._max_open:
                    _, old = opened.popitem(last=False)
                    old.session.closed_by = "evicted"
                    self.stats.add("evicted_session")
                    closed.append(old.session)
                state = _Open(Session(sid, [event], [0.0], _order=self._seq))
                self._seq += 1
                opened[sid] = state
            else:
                opened.move_to_end(sid)
                last = state.last_ts
                session = state.session
                session.events.append(event)
                session.elapsed.append(None if ts is None or last is None else ts - last)
            state.last_ts = ts
            state.active = clock
        return closed

    def _expire(self, closed: list[Session]) -> None:
        limit = self._clock - self._timeout  # type: ignore[operator]
        opened = self._open
        while opened:
            state = next(iter(opened.values()))
            # Entries before the first timestamp count as active when the clock started.
            active = state.active if state.active is not None else self._first_clock
            if active >= limit:  # type: ignore[operator]
                break
            opened.popitem(last=False)
            state.session.closed_by = "idle"
            closed.append(state.session)

    def _flush_id(self) -> list[Session]:
        out = [s.session for s in sorted(self._open.values(), key=lambda s: s.session._order)]
        self._open.clear()
        self._clock = self._first_clock = None
        self._source, self._lineno = None, 0
        return out

    # -- count windows ---------------------------------------------------------------

    def _push_count(self, event: Event) -> list[Session]:
        ts = self._timestamp(event.record)
        windows = self._windows
        if self._n % self._step == 0:
            k = self._next_k
            self._next_k += 1
            windows[k] = _Open(Session(f"w{k:06d}", _order=k))
        self._n += 1
        # Open windows are contiguous runs ending at the previous event, so the elapsed
        # time is the same in all of them except a window this event starts.
        prev = self._prev_ts
        gap = None if ts is None or prev is None else ts - prev
        self._prev_ts = ts
        for state in windows.values():
            session = state.session
            session.elapsed.append(gap if session.events else 0.0)
            session.events.append(event)
        # Windows open in order and grow together: only the oldest can be full.
        k, oldest = next(iter(windows.items()))
        if len(oldest.session.events) < self._size:
            return []
        del windows[k]
        oldest.session.closed_by = "window"
        self._covered = self._n
        return [oldest.session]

    def _flush_count(self) -> list[Session]:
        out: list[Session] = []
        if self._windows:
            k, oldest = next(iter(self._windows.items()))
            # Later open windows are suffixes of the oldest: emitting them would only
            # repeat events. The oldest is emitted only if it holds uncovered events.
            if self._n > self._covered:
                out.append(oldest.session)
                self._next_k = k + 1
            else:
                self._next_k = k
        self._windows.clear()
        self._n = self._covered = 0
        self._prev_ts = None
        return out

    # -- time windows ----------------------------------------------------------------

    def _range(self, t: float) -> tuple[int, int]:
        """Indexes of the first and last window holding time ``t``."""
        hi = math.floor(t / self._tstep)
        if self._per_event:
            return hi - self._per_event + 1, hi
        return min(hi, math.floor((t - self._width) / self._tstep) + 1), hi

    def _push_time(self, event: Event) -> list[Session]:
        ts = self._timestamp(event.record)
        if ts is None:
            self.stats.add("no_timestamp")
            if self._clock is None:
                if len(self._pending) < MAX_PENDING_UNTIMED:
                    self._pending.append(event)
                else:
                    self.stats.add("no_timestamp_dropped")
                return []
            at = self._clock
        else:
            at = ts
        closed: list[Session] = []
        windows = self._windows
        if self._clock is None or at > self._clock:
            self._clock = at
            first_open = self._range(at)[0]
            while windows:
                k = next(iter(windows))
                if k >= first_open:
                    break
                state = windows.pop(k)
                state.session.closed_by = "window"
                closed.append(state.session)
        lo, hi = self._range(at)
        first_open = self._range(self._clock)[0]
        if hi < first_open:
            # All of its windows closed already: keep it, at the current clock.
            self.stats.add("late_event")
            lo, hi = self._range(self._clock)
        lo = max(lo, first_open)
        pending = self._pending
        for k in range(lo, hi + 1):
            state = windows.get(k)
            if state is None:
                state = windows[k] = _Open(Session(_iso(k * self._tstep), _order=k))
            for early in pending:
                state.add(early, None)
            state.add(event, ts)
        pending.clear()
        return closed

    def _flush_time(self) -> list[Session]:
        out = [state.session for state in self._windows.values()]
        if self._pending:
            self.stats.add("no_timestamp_dropped", len(self._pending))
            self._pending.clear()
        self._windows.clear()
        self._clock = None
        return out


def group(
    events: Iterable[Event], config: SessionConfig, stats: Stats | None = None
) -> list[Session]:
    """Group a whole input into sessions, ordered by first appearance (id sessions) or
    by window (windows). Closing rules are those of ``Sessionizer``."""
    sessionizer = Sessionizer(config, stats)
    out: list[Session] = []
    for event in events:
        closed = sessionizer._push(event)  # skips one call layer on the hot path
        if closed:
            out.extend(closed)
    out.extend(sessionizer.flush())
    out.sort(key=lambda s: s._order)
    return out


class FlatValues(Sequence[list[str]]):
    """Every line's parameter values in one flat list: line ``r`` has
    ``flat[start[r]:start[r + 1]]``, or ``override[r]`` when given there. One list of
    strings instead of a list per line: far cheaper to build and to pass between
    processes, and a parameter's column can be gathered without a Python loop.

    Pickled as one string of all the values and their lengths (a third of the time of
    pickling the strings one by one, in the process that sends a chunk of sessions to a
    worker); the unpickled copy cuts only the values it is asked for, and builds the list
    on the first use of ``flat``."""

    def __init__(
        self, flat: list[str], start: Sequence[int], override: Mapping[int, list[str]]
    ) -> None:
        import numpy as np

        self._flat: list[str] | None = flat
        self.start = np.asarray(start, dtype=np.int64)
        self.override = dict(override)
        self._array: Any = None
        self._joined = ""
        self._ends: Any = None  # per value, where it ends in _joined (unpickled copies)

    @property
    def flat(self) -> list[str]:
        if self._flat is None:
            self._flat = self._cut(range(len(self._ends)))
        return self._flat

    def _cut(self, which: Iterable[int]) -> list[str]:
        joined, ends = self._joined, self._ends
        return [joined[ends[k - 1] if k else 0 : ends[k]] for k in which]

    def __reduce__(self) -> tuple[Any, ...]:
        import numpy as np

        if self._flat is None:
            joined, ends = self._joined, self._ends
        else:
            flat = self._flat
            joined = "".join(flat)
            ends = np.cumsum(np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)))
        return (
            _unpickle_values,
            (joined, np.asarray(ends, dtype=np.int64), self.start, self.override),
        )

    def __len__(self) -> int:
        return len(self.start) - 1

    @overload
    def __getitem__(self, r: int) -> list[str]: ...
    @overload
    def __getitem__(self, r: slice) -> list[list[str]]: ...
    def __getitem__(self, r: int | slice) -> list[str] | list[list[str]]:
        if isinstance(r, slice):
            return [self[i] for i in range(*r.indices(len(self)))]
        if r < 0:
            r += len(self)
        got = self.override.get(r)
        if got is not None:
            return got
        a, b = int(self.start[r]), int(self.start[r + 1])
        if self._flat is None:
            return self._cut(range(a, b))
        return self._flat[a:b]

    def column(self, rows: Any, p: int) -> tuple[Any, Any]:
        """Parameter ``p`` of the given lines (a NumPy int array): (values as an object
        array, mask of the lines that have it). Lines in ``override`` are not handled."""
        import numpy as np

        begin = self.start[rows]
        has = (self.start[rows + 1] - begin) > p
        at = begin[has] + p
        if self._flat is None:  # an unpickled copy: only these values are cut
            out = np.empty(len(at), dtype=object)
            out[:] = self._cut(at.tolist())
            return out, has
        if self._array is None:
            self._array = np.array(self._flat, dtype=object)
        return self._array[at], has


def _unpickle_values(
    joined: str, ends: Any, start: Any, override: Mapping[int, list[str]]
) -> FlatValues:
    values = FlatValues([], start, override)
    values._flat, values._joined, values._ends = None, joined, ends.tolist()
    return values


def gather(column: Sequence[Any], rows: Sequence[int]) -> list[Any]:
    """``[column[r] for r in rows]``, in C: the columns of a table's rows."""
    if len(rows) > 1:
        return list(itemgetter(*rows)(column))
    return [column[r] for r in rows]


class RowTexts(Sequence[str]):
    """``[texts[r] for r in rows]``, looked up when asked: the raw lines of a stream's
    chunk, which its sessions' events and the anomalous verdicts read, not all of them
    (copying every line of every chunk cost the main process a tenth of its time).
    Pickled as the plain list."""

    __slots__ = ("_rows", "_texts")

    def __init__(self, texts: Sequence[str], rows: Sequence[int]) -> None:
        self._texts = texts
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return gather(self._texts, self._rows[i])
        return self._texts[self._rows[i]]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


class SessionLines(Sequence[list[str]]):
    """Each session's raw lines, cut from ``texts`` when asked: session ``i`` has the
    lines ``rows[bounds[i]:bounds[i + 1]]`` (``attach_lines`` asks the anomalous ones
    only). Pickled as the plain lists."""

    __slots__ = ("_bounds", "_rows", "_texts")

    def __init__(self, texts: Sequence[str], rows: Sequence[int], bounds: Sequence[int]) -> None:
        self._texts = texts
        self._rows = rows
        self._bounds = bounds

    def __len__(self) -> int:
        return len(self._bounds) - 1

    @overload
    def __getitem__(self, i: int) -> list[str]: ...
    @overload
    def __getitem__(self, i: slice) -> list[list[str]]: ...
    def __getitem__(self, i: int | slice) -> list[str] | list[list[str]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("session index out of range")
        i %= n
        return gather(self._texts, self._rows[self._bounds[i] : self._bounds[i + 1]])

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


class SessionTable(Sequence[Session]):
    """Id sessions as columns over the lines read, what ``pipeline.read_raw_sessions``
    builds on its fast path instead of a ``Line``, ``Record``, ``Event`` and ``Param``
    objects for every line (five times less memory, and most of the reading time).

    ``members[i]`` lists the line indices of session ``i`` in order; the per-line columns
    are the raw text, the resolved log key, the timestamp (None: missing), the
    parameter values with their kinds, and ``clock``: the timestamps elapsed times use
    (None also where a timestamp is out of range, as ``group`` treats it).
    ``content_of`` gives a line's message again when a ``Session`` is built (the table does
    not keep a second copy of every line). Indexing gives a ``Session`` built on demand,
    equal to the one ``group`` builds (its lines have source ``""`` and a line number that
    counts every line read, across files). The parameter models read the columns directly
    (``param_models.build_series``).
    """

    def __init__(
        self,
        ids: list[str],
        members: Sequence[Sequence[int]],
        texts: Sequence[str],
        content_of: Callable[[str], str],
        keys: list[int],
        timestamps: list[float | None],
        values: Sequence[Sequence[str]],
        kinds: list[Sequence[str]],
        templates: Mapping[int, str],
        clock: list[float | None] | None = None,
        line_numbers: Sequence[int] | None = None,
    ) -> None:
        self.ids = ids
        self.members = members
        self.texts = texts
        self.has_texts = True  # see without_texts
        self.content_of = content_of
        self.line_keys = keys
        self.timestamps = timestamps
        self.values = values
        self.kinds = kinds
        self.templates = templates
        # Timestamps that elapsed times use: None where missing or out of range.
        self.clock = clock if clock is not None else timestamps
        # Each row's line number; None: row + 1 (a table of every line read).
        self.line_numbers = line_numbers

    def __len__(self) -> int:
        return len(self.members)

    @overload
    def __getitem__(self, i: int) -> Session: ...
    @overload
    def __getitem__(self, i: slice) -> list[Session]: ...
    def __getitem__(self, i: int | slice) -> Session | list[Session]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        rows = self.members[i]
        events = [self.event(r) for r in rows]
        ts = self.clock
        elapsed: list[float | None] = [0.0] if rows else []
        for a, b in pairwise(rows):
            ta, tb = ts[a], ts[b]
            elapsed.append(None if ta is None or tb is None else tb - ta)
        return Session(self.ids[i], events, elapsed, _order=i if i >= 0 else len(self) + i)

    def session_lines(self) -> list[list[str]] | None:
        """Each session's raw lines, in order (None for a table ``without_texts``)."""
        if not self.has_texts:
            return None
        return [gather(self.texts, rows) for rows in self.members]

    def without_texts(self) -> SessionTable:
        """This table without its raw lines, for a process that only scores it (verdicts
        get their lines where the texts are: ``estimator.attach_lines``): the texts were
        most of what went to scoring workers. Its events have empty texts and messages."""
        table = copy.copy(self)
        table.texts, table.has_texts = [], False
        return table

    def line_number(self, row: int) -> int:
        """The input line number of a row (kept lines counted from 1, across files)."""
        return row + 1 if self.line_numbers is None else self.line_numbers[row]

    def event(self, row: int) -> Event:
        """The ``Event`` of one line, built on demand."""
        key = self.line_keys[row]
        text = self.texts[row] if self.has_texts else ""
        line = Line(text, "", -1, self.line_number(row))
        record = Record(line, self.content_of(text) if text else "", {}, self.timestamps[row], True)
        params = [Param(v, k) for v, k in zip(self.values[row], self.kinds[row], strict=False)]
        return Event(record, key, self.templates.get(key, ""), params)
