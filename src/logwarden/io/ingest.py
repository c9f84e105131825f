"""The stages driven over files: raw log lines to keyed sessions.

``sources -> formats -> parsing -> sessions``, as the batch commands (``train``,
``detect``, ``eval``, the demo) need it: every session with its log keys (template ids as
``E<id>``), the template text of each key, and the raw lines for explanations.

Two paths give the same result. The object path builds a ``Line``, ``Record``, ``Event``
and ``Param`` objects per line and groups them with ``sessions.group``; it serves every
session configuration. The column path (id sessions closed at the end of input, the
CLI's case) keeps per-line columns in a ``SessionTable``, and when the miner only matches
(detection) scans batches of lines in forked worker processes; ``tests/test_pipeline.py``
compares both paths on the same inputs, bad ones included. One difference remains by
design: a ``Session`` built from a table has lines with source ``""`` and line numbers
counted across all inputs.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from itertools import chain, pairwise
from typing import Any

from logwarden.errors import ConfigError
from logwarden.io.formats import LogFormat, get_format
from logwarden.io.sources import LineReader, SelectedLineReader, SourceConfig, StreamStart
from logwarden.parsing import TemplateMiner
from logwarden.records import SEVERE_LEVELS, Event, Stats
from logwarden.sessions.grouping import (
    SESSION_PRESETS,
    TIMESTAMP_LIMIT,
    FlatValues,
    RowTexts,
    Session,
    SessionConfig,
    SessionLines,
    SessionTable,
    TimeOrder,
    gather,
    group,
)


@dataclass
class RawSessions:
    """Sessions read from raw logs."""

    ids: list[str]
    keys: list[list[str]]  # per session, its log keys (``E<id>``; ``U<id>`` for unknown lines)
    lines: Sequence[Sequence[str]]  # per session, its raw lines
    templates: dict[str, str]  # key -> template text
    miner: TemplateMiner
    stats: Stats = field(default_factory=Stats)
    events: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (input, what went wrong)
    # with events, params, elapsed times: a SessionTable on the fast path
    sessions: Sequence[Session] = field(default_factory=list)
    # Object path: the input line number (from 1 over all inputs, empty lines counted) of
    # every entry in input order, the order in which window sessions hold them.
    line_ids: list[int] = field(default_factory=list)
    # Where each input starts among the lines read (``LineReader.files``): a line number
    # names its file (``io.sources.file_of``).
    files: list[tuple[int, str]] = field(default_factory=list)


def session_config(
    session: str | None,
    window: int | None,
    *,
    in_line: bool = False,
    idle_timeout: float | None = None,
) -> SessionConfig:
    """``--session REGEX|PRESET`` or ``--window N`` as a SessionConfig; ``in_line``: the
    regex searches the whole raw line, header included; ``idle_timeout``: id sessions
    complete after that many seconds of log time without a line (windows ignore it)."""
    if window is not None:
        if in_line:
            raise ConfigError(
                "session_in_line goes with a session id regex, not a window",
                field="session_in_line",
            )
        return SessionConfig(window_size=window)
    if not session:
        raise ConfigError(
            "session (an id regex or preset name) or a window of N lines is needed for raw input",
            field="session",
        )
    return SessionConfig(
        id_pattern=SESSION_PRESETS.get(session, session),
        search_raw_line=in_line,
        idle_timeout=idle_timeout,
    )


def read_raw_sessions(
    inputs: Sequence[str],
    fmt_spec: str,
    config: SessionConfig,
    miner: TemplateMiner | None = None,
    learn: bool = True,
    max_line_bytes: int = 65536,
    workers: int = 0,
    only: Collection[str] | None = None,
    keep_values: Mapping[int, Collection[int]] | None = None,
) -> RawSessions:
    """Parse raw logs into keyed sessions.

    ``learn``: templates are created and generalised (training). Otherwise the miner only
    matches, so that the keys of a trained model keep their meaning; lines matching no
    template get keys ``U<id>`` from a separate miner, which the model has never seen.
    ``workers``: processes that scan lines in parallel when the miner only matches (0, the
    default: none). Forking is the caller's decision: ``default_workers`` gives the CLI's
    choice, and a process with threads (a web server) should keep 0. ``only``: these
    session ids are all that is wanted (sessions grouped by an id pattern): lines naming
    none of them are not parsed (``SelectedLineReader``). ``keep_values``: on the column
    path of a matching miner, only these parameter values (see ``SessionStream``).

    For speed on large inputs, callers may turn the cyclic garbage collector off around
    this call (the CLI does): millions of small lists and strings, none in a reference
    cycle, are rescanned by it over and over (measured: 40% of the reading time).
    """
    fmt = get_format(fmt_spec)
    config.validate()
    stats = Stats()
    miner = miner or TemplateMiner()
    unknown = TemplateMiner()
    source = SourceConfig(max_line_bytes=max_line_bytes)
    reader = (
        SelectedLineReader(list(inputs), only, source, stats)
        if only and config.id_pattern is not None
        else LineReader(list(inputs), source, stats)
    )
    if _fast_path_applies(fmt, config, miner):
        n = workers if workers > 0 and not learn and _fork_available() else 0
        keep = None if learn else keep_values
        return _read_fast(reader, fmt, config, miner, unknown, learn, stats, n, keep)
    events: list[Event] = []
    line_ids: list[int] = []
    unknown_keys: set[int] = set()
    for line_id, record in enumerate(fmt.records(reader, stats), 1):
        if not record.line.text:
            stats.add("empty_line")
            continue
        line_ids.append(line_id)
        event = miner.parse_record(record, learn=learn)
        if event is None:
            event = unknown.parse_record(record, learn=True)
            assert event is not None
            unknown_keys.add(id(event))
        events.append(event)
    grouped = group(events, config, stats)
    templates: dict[str, str] = {}
    labelled: dict[int, str] = {}  # an event of a line naming several sessions: once

    def key_of(e: Event) -> str:
        label = labelled.get(id(e))
        if label is not None:
            return label
        if id(e) in unknown_keys:
            k = unknown.resolve(e.key)
            label = f"U{k}"
            templates[label] = unknown.templates_[k].text
            e.key = -k  # never a known template id: no parameter model applies
            e.template = templates[label]
        else:
            k = miner.resolve(e.key)  # ids handed out before a merge point to the survivor
            label = f"E{k}"
            templates[label] = miner.templates_[k].text
            e.key = k
            e.template = templates[label]  # the final text, as the fast path gives it
        labelled[id(e)] = label
        return label

    keys = [[key_of(e) for e in s.events] for s in grouped]
    return RawSessions(
        ids=[s.id for s in grouped],
        keys=keys,
        lines=[[e.record.line.text for e in s.events] for s in grouped],
        templates=templates,
        miner=miner,
        stats=stats,
        events=len(events),
        errors=list(reader.errors),
        files=reader.files,
        sessions=grouped,
        line_ids=line_ids,
    )


# --- the fast path ---------------------------------------------------------------------------


def _starts(counts: list[list[int]]) -> Sequence[int]:
    """Offsets of each line's values in the flat list, and the end."""
    import numpy as np

    flat = np.fromiter(chain.from_iterable(counts), dtype=np.int64)
    out: Sequence[int] = np.concatenate([[0], np.cumsum(flat)]).astype(np.int64)
    return out


class ContentReader:
    """A line's message as the format gives it (the whole line when it does not match).
    A class, not a closure: a ``SessionTable`` holding one goes to worker processes."""

    def __init__(self, fmt: LogFormat) -> None:
        self.regex = fmt.regex
        self.has_content = "Content" in fmt.regex.groupindex

    def __call__(self, text: str) -> str:
        m = self.regex.fullmatch(text.strip())
        if m is None:
            return text
        return (m.group("Content") or "") if self.has_content else ""


def _content_reader(fmt: LogFormat) -> Callable[[str], str]:
    return ContentReader(fmt)


def _fast_path_applies(fmt: object, config: SessionConfig, miner: TemplateMiner) -> bool:
    """Id sessions closed only at the end of input, a loghub format, no user masks: the
    common case, read without per-line objects. Other configurations take ``group``."""
    return (
        type(fmt) is LogFormat
        and config.id_pattern is not None
        and config.idle_timeout is None
        and config.max_open is None
        and not config.keep_unidentified
        and not miner.config.masks
    )


@dataclass
class _Batch:
    """What the per-line work gives for one batch of lines (see ``_Scan``)."""

    empty_at: list[int]  # positions of empty lines in the batch (skipped)
    keys: list[int | None]  # per kept line; None: no template matched (an unknown line)
    stamps: list[float | None]
    values: list[str]  # every kept line's parameter values, one after the other
    counts: list[int]  # how many values each kept line has
    kinds: list[tuple[str, ...]]
    # session id -> its kept lines in this batch, ids in order of first appearance
    groups: dict[str, list[int]]
    unknown: dict[int, str]  # kept line -> its message, for the lines without a template
    unmatched: int = 0
    bad_format_ts: int = 0
    bad_ts: int = 0  # timestamps out of range (elapsed times treat them as missing)
    no_id: int = 0
    no_id_severe: int = 0  # of no_id, lines of a severe level (SEVERE_LEVELS)
    valid: list[float | None] = field(default_factory=list)
    multi: dict[int, list[str]] = field(default_factory=dict)  # kept line -> its ids, in
    # line order, for the lines that name more than one session

    def __reduce__(self) -> tuple[Any, ...]:
        # A worker's batch goes back with its values as one string (see _packed): pickling
        # them one by one was most of what a scanning worker spent on its results.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["values"] = _packed(self.values)
        return (_unpickle_batch, (state,))


def _packed(texts: list[str]) -> list[str] | str:
    """``texts`` as one string, when none holds a newline (values never do: input is
    split on them): one string pickles as a copy, a list string by string (3x the time
    for short strings; for whole lines the join costs what it saves). ``_unpacked``
    gives the list back."""
    if texts:
        joined = "\n".join(texts)
        if joined.count("\n") == len(texts) - 1:
            return joined
    return texts


def _unpacked(texts: list[str] | str) -> list[str]:
    return texts.split("\n") if isinstance(texts, str) else texts


def _unpickle_batch(state: dict[str, Any]) -> _Batch:
    state["values"] = _unpacked(state["values"])
    return _Batch(**state)


# A key none of whose values is kept.
_NO_VALUES: tuple[int, frozenset[int]] = (0, frozenset())


class _Scan:
    """The per-line work of the fast path, one batch at a time: format, timestamp, template
    and parameters, session ids. It keeps no state between batches that changes results in
    match-only mode, so batches can be scanned in worker processes."""

    def __init__(
        self,
        fmt: LogFormat,
        config: SessionConfig,
        miner: TemplateMiner,
        learn: bool,
        keep_values: Mapping[int, Collection[int]] | None = None,
    ) -> None:
        import re

        self.fmt = fmt
        self.miner = miner
        self.learn = learn
        # Per key, how many leading values a line keeps and which of them read as empty
        # (see SessionStream's keep_values); None: every value.
        self.keep: dict[int, tuple[int, frozenset[int]]] | None = None
        if keep_values is not None:
            self.keep = {}
            for key, wanted in keep_values.items():
                n = max(wanted, default=-1) + 1
                self.keep[int(key)] = (n, frozenset(range(n)) - frozenset(wanted))
        pattern = re.compile(config.id_pattern or "")
        self.findall = pattern.findall if pattern.groups <= 1 else None
        self.finditer = pattern.finditer
        self.raw_line = config.search_raw_line
        self.kinds_of: dict[int, tuple[object, tuple[str, ...]]] = {}  # id(slots) -> kinds

    def __call__(self, batch: list[str]) -> _Batch:
        fmt = self.fmt
        match = fmt.regex.fullmatch
        groupindex = fmt.regex.groupindex
        content_group = groupindex.get("Content")
        level_group = groupindex.get("Level")
        times = fmt.parse_time
        parse = self.miner.parse_slots
        learn = self.learn
        findall, finditer, raw_line = self.findall, self.finditer, self.raw_line
        kinds_of = self.kinds_of
        keep = self.keep
        out = _Batch([], [], [], [], [], [], {}, {})
        keys, stamps, values, counts, kinds, groups = (
            out.keys, out.stamps, out.values, out.counts, out.kinds, out.groups,
        )  # fmt: skip
        # The valid timestamps: the stamps themselves (one list, pickled once) unless one
        # is out of range, whose row is None in a copy.
        valid: dict[int, None] = {}
        bad_before = fmt.bad_timestamps
        names: tuple[str, ...] = ()
        name_groups: tuple[int, ...] = ()
        last_a: str | None = None
        last_b: str | None = None
        last_ts: float | None = None
        for i, text in enumerate(batch):
            if not text:  # counted as an empty line only (it was an unmatched one too)
                out.empty_at.append(i)
                continue
            m = match(text.strip())
            ts: float | None = None
            if m is None:
                out.unmatched += 1
                content = text
            else:
                content = (m.group(content_group) or "") if content_group else ""
                if fmt.time_fields:
                    if fmt.time_fields is not names:
                        names = fmt.time_fields
                        name_groups = tuple(groupindex[n] for n in names)
                        last_ts = None
                    if len(name_groups) == 2:  # date and time, the usual case
                        a, b = m.group(*name_groups)
                        if last_ts is not None and b == last_b and a == last_a:
                            ts = last_ts  # the line before's time text (many lines a second)
                        else:
                            joined = (
                                a + " " + b if a is not None and b is not None else (a or b or "")
                            )
                            ts = times(joined) if joined else None
                            last_a, last_b, last_ts = a, b, ts
                    else:
                        parts = [g for g in m.group(*name_groups, 0)[:-1] if g is not None]
                        joined = " ".join(parts)
                        ts = times(joined) if joined else None
                    if ts is None:  # the object path's fallbacks and counting
                        fields = {k: v for k, v in m.groupdict().items() if v is not None}
                        fields.pop("Content", None)
                        ts = fmt.timestamp(fields)
            key, vals, slots, _ = parse(content, learn)
            row = len(keys)
            if key is None:
                out.unknown[row] = content
            keys.append(key)
            stamps.append(ts)  # as the record has it; elapsed times use the valid ones
            if ts is not None and not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT:
                out.bad_ts += 1
                valid[row] = None  # on a copy, made below
            if keep is not None and key is not None:
                n, blank = keep.get(key, _NO_VALUES)
                vals = vals[:n]
                if blank:
                    vals = ["" if i in blank else v for i, v in enumerate(vals)]
            values.extend(vals)
            counts.append(len(vals))
            got = kinds_of.get(id(slots))
            if got is None:
                got = kinds_of[id(slots)] = (slots, tuple(s.kind for s in slots))
            kinds.append(got[1])
            where = text if raw_line else content
            if findall is not None:
                found = findall(where)
            else:
                found = [g for mm in finditer(where) if (g := mm.group(1))]
            if len(found) > 1:
                found = [i for i in dict.fromkeys(found) if i]
                if len(found) > 1:
                    out.multi[row] = found
            elif found and not found[0]:
                found = []
            if not found:
                out.no_id += 1
                if level_group and m is not None:
                    level = m.group(level_group)
                    if level and level.strip().upper() in SEVERE_LEVELS:
                        out.no_id_severe += 1
            for sid in found:
                rows = groups.get(sid)
                if rows is None:
                    groups[sid] = [row]
                else:
                    rows.append(row)
        out.bad_format_ts = fmt.bad_timestamps - bad_before
        if valid:
            out.valid = [None if r in valid else t for r, t in enumerate(stamps)]
        else:
            out.valid = stamps
        return out


# The scanner of a worker process, set by the pool's initializer (inherited through fork).
_WORKER_SCAN: _Scan | None = None


def _init_worker(scan: _Scan) -> None:
    global _WORKER_SCAN
    _WORKER_SCAN = scan
    _yield_to_parent()


#: How much lower a worker process's priority is than its parent's (``nice``). The parent
#: reads, merges and hands out the work, which no worker can do for it: with as many
#: workers as cores at an equal priority it got 2/3 of a core on 2 cores while the workers
#: were busy, and they then waited for its next batches. Lower, the scheduler gives the
#: parent a core whenever it has work (1M HDFS lines, 2 cores: 6-7% less wall time with
#: IN_FLIGHT below; 2 and 10 did no better than 5).
WORKER_NICENESS = 5

#: Scan batches in flight per worker: enough that the workers have work queued while the
#: parent makes a chunk of sessions or compacts its columns (a few tenths of a second at a
#: time); each batch is about a megabyte of text.
IN_FLIGHT = 12


def _yield_to_parent() -> None:
    import os

    with contextlib.suppress(OSError, AttributeError):  # os.nice is POSIX only
        os.nice(WORKER_NICENESS)


def _scan_in_worker(batch: list[str]) -> _Batch:
    assert _WORKER_SCAN is not None
    return _WORKER_SCAN(batch)


#: Inputs at least this large (bytes on disk) are scanned in worker processes when the
#: miner only matches (detection) and more than one core is usable.
PARALLEL_MIN_BYTES = 32 << 20


def usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether this process may fork workers by default: on Linux (macOS's system
    libraries do not survive fork), with no other thread running and PyTorch not loaded
    (forking a process with other threads can deadlock the child)."""
    import sys
    import threading

    return (
        sys.platform.startswith("linux")
        and threading.active_count() == 1
        and "torch" not in sys.modules
    )


def _fork_available() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def default_workers(inputs: Sequence[str], learn: bool) -> int:
    """The CLI's choice of scan workers: one per usable core, up to 4, for inputs of
    ``PARALLEL_MIN_BYTES`` or more when the miner only matches and ``can_fork()``; else 0
    (a learning miner is sequential; without fork, workers cost more than they save)."""
    import contextlib
    import os

    if learn or not _fork_available():
        return 0
    cores = usable_cores()
    if cores < 2 or not can_fork():
        return 0
    size = 0
    for name in inputs:
        with contextlib.suppress(OSError):  # stdin, globs, missing files: reported later
            size += os.path.getsize(name)
    return min(cores, 4) if size >= PARALLEL_MIN_BYTES else 0


def _scan_in_workers(
    reader: LineReader,
    scan: _Scan,
    workers: int,
    merge: Callable[[list[str], _Batch], None],
    stats: Stats,
) -> None:
    """Scan batches in forked worker processes, merging results in input order. A few
    batches per worker are in flight at a time, so memory stays bounded. If a worker dies
    (killed for memory, say), the batches it had are scanned here and the rest too."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("fork")
    inflight: deque[tuple[list[str], Future[_Batch] | None]] = deque()
    executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(scan,)
    )

    def broken() -> None:
        """A worker died: the pool is unusable; every batch not scanned yet is scanned here
        (counted once)."""
        nonlocal executor
        stats.add("worker_died")
        assert executor is not None
        executor.shutdown(wait=False, cancel_futures=True)
        executor = None

    def submit(batch: list[str]) -> Future[_Batch] | None:
        if executor is None:
            return None
        try:
            return executor.submit(_scan_in_worker, batch)
        except BrokenProcessPool:  # the death was noticed before a result showed it
            broken()
            return None

    def settle() -> None:
        batch, future = inflight.popleft()
        res = None
        if future is not None and executor is not None:
            try:
                res = future.result()
            except BrokenProcessPool:
                broken()
        merge(batch, res if res is not None else scan(batch))

    try:
        for batch in reader.text_batches():
            inflight.append((batch, submit(batch)))
            if len(inflight) >= IN_FLIGHT * workers:
                settle()
        while inflight:
            settle()
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _read_fast(
    reader: LineReader,
    fmt: LogFormat,
    config: SessionConfig,
    miner: TemplateMiner,
    unknown: TemplateMiner,
    learn: bool,
    stats: Stats,
    workers: int = 0,
    keep_values: Mapping[int, Collection[int]] | None = None,
) -> RawSessions:
    """``read_raw_sessions`` as columns: the same sessions, keys, lines, templates and
    counts as the object path (format -> miner -> ``group``), differential-tested.
    ``workers`` > 0 scans batches in that many forked processes (match-only miners)."""
    scan = _Scan(fmt, config, miner, learn, keep_values)
    texts: list[str] = []
    keys: list[int] = []  # template ids; unknown lines: -(unknown miner id)
    stamps: list[float | None] = []
    valid: list[float | None] = []  # None where the timestamp is missing or out of range
    values: list[str] = []  # all parameter values in line order (see FlatValues)
    counts: list[list[int]] = []  # per batch, values per line
    override: dict[int, list[str]] = {}  # unknown lines' values (scanned as having none)
    kinds: list[tuple[str, ...]] = []
    members: list[list[int]] = []
    index: dict[str, int] = {}
    ids: list[str] = []
    unmatched = no_id = no_id_severe = empty = bad_ts = bad_format = 0
    order = TimeOrder(config.idle_timeout)
    # The rows' input line numbers differ from row + 1 once an empty line was read: per
    # batch its first row and first input line, and the numbers of those with empty lines.
    read = 0
    batches: list[tuple[int, int]] = []
    renumbered: dict[int, list[int]] = {}

    def merge(batch: list[str], res: _Batch) -> None:
        nonlocal empty, unmatched, bad_format, bad_ts, no_id, no_id_severe, read
        if isinstance(batch, StreamStart):
            order.start_input()
        order.feed(res.valid)
        first = read + 1
        read += len(batch)
        batches.append((len(texts), first))
        if res.empty_at:
            empty += len(res.empty_at)
            gone = set(res.empty_at)
            batch = [t for i, t in enumerate(batch) if i not in gone]
            renumbered[len(texts)] = _kept_numbers(first, len(batch) + len(gone), res.empty_at)
        unmatched += res.unmatched
        bad_format += res.bad_format_ts
        bad_ts += res.bad_ts
        no_id += res.no_id
        no_id_severe += res.no_id_severe
        base = len(texts)
        texts.extend(batch)
        for j, content in res.unknown.items():
            # Unknown lines get ids from one miner, in line order, whoever scanned them.
            key, vals, slots, _ = unknown.parse_slots(content, True)
            res.keys[j] = -key  # type: ignore[operator]
            override[base + j] = vals
            res.kinds[j] = tuple(sl.kind for sl in slots)
        keys.extend(res.keys)  # type: ignore[arg-type]
        stamps.extend(res.stamps)
        values.extend(res.values)
        counts.append(res.counts)
        kinds.extend(res.kinds)
        valid.extend(res.valid)
        # A batch's sessions in order of their first line, as line-by-line grouping would
        # meet them.
        for sid, rows in res.groups.items():
            at = [base + r for r in rows] if base else rows
            pos = index.get(sid)
            if pos is None:
                index[sid] = len(members)
                ids.append(sid)
                members.append(at)
            else:
                members[pos].extend(at)

    if workers > 0:
        _scan_in_workers(reader, scan, workers, merge, stats)
    else:
        for batch in reader.text_batches():
            merge(batch, scan(batch))
    for reason, n in (
        ("unmatched_format", unmatched),
        ("empty_line", empty),
        ("no_session_id", no_id),
        ("no_session_id_severe", no_id_severe),
        ("bad_timestamp", bad_format + bad_ts),
    ):
        if n:
            stats.add(reason, n)
    order.add_to(stats.add)

    line_keys, labels, texts_by_key = _resolve_keys(keys, miner, unknown)
    session_keys = [[labels[line_keys[r]] for r in rows] for rows in members]
    used = {line_keys[r] for rows in members for r in rows}  # keys of lines in sessions
    table = SessionTable(
        ids, members, texts, _content_reader(fmt), line_keys, stamps,
        FlatValues(values, _starts(counts), override), kinds,
        texts_by_key, valid, line_numbers=_line_numbers(len(texts), batches, renumbered),
    )  # fmt: skip
    return RawSessions(
        ids=ids,
        keys=session_keys,
        lines=[[texts[r] for r in rows] for rows in members],
        templates={labels[r]: texts_by_key[r] for r in sorted(used, key=lambda r: (r < 0, abs(r)))},
        miner=miner,
        stats=stats,
        events=len(texts),
        errors=list(reader.errors),
        files=reader.files,
        sessions=table,
    )


# --- worker processes shared by the stages --------------------------------------------------

# The tasks of a worker process, set by the pool's initializer (inherited through fork).
_WORKER_TASKS: Mapping[str, Callable[[Any], Any]] = {}


def _per_session(column: list[str], bounds: Sequence[int]) -> list[list[str]]:
    """``column``'s rows cut at ``bounds``: each session's, in C (slices, not a step a row)."""
    return [column[a:b] for a, b in pairwise(bounds)]


def _resolve_keys(
    keys: Sequence[int], miner: TemplateMiner, unknown: TemplateMiner
) -> tuple[list[int], dict[int, str], dict[int, str]]:
    """Per line, its key resolved (ids handed out before a template merge point to the
    survivor; unknown lines keep a negative id, which no model knows), and per resolved
    key its label (``E<id>``, ``U<id>``) and template text."""
    resolved: dict[int, int] = {}
    labels: dict[int, str] = {}
    texts_by_key: dict[int, str] = {}
    for k in set(keys):
        if k < 0:
            r = -unknown.resolve(-k)
            labels[r] = f"U{-r}"
            texts_by_key[r] = unknown.templates_[-r].text
        else:
            r = miner.resolve(k)
            labels[r] = f"E{r}"
            texts_by_key[r] = miner.templates_[r].text
        resolved[k] = r
    return list(map(resolved.__getitem__, keys)), labels, texts_by_key


def _init_tasks(tasks: Mapping[str, Callable[[Any], Any]]) -> None:
    global _WORKER_TASKS
    _WORKER_TASKS = tasks
    # One BLAS thread per worker: the workers already take every core, and OpenBLAS
    # threads fighting over them made the scoring's matrix products 3x slower (measured
    # on 2 cores; the service's detector process does the same).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _yield_to_parent()


def _run_task(name: str, arg: Any) -> Any:
    return _WORKER_TASKS[name](arg)


class WorkerPool:
    """Forked worker processes that run named tasks: the scanner's batches and, for the
    detectors, the scoring of completed sessions. The tasks (and the parser and models they
    hold) are inherited through fork, never sent; only their arguments and results travel.

    ``submit`` returns a future, or None once a worker has died (killed for memory, say):
    the caller then runs the task itself with ``run_here`` (counted as ``worker_died``).
    With ``workers`` 0 no process is started and every task runs here.
    """

    def __init__(
        self,
        workers: int,
        tasks: Mapping[str, Callable[[Any], Any]],
        stats: Stats | None = None,
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.tasks = dict(tasks)
        self.stats = stats if stats is not None else Stats()  # counts worker_died
        self.workers = workers if workers > 0 and _fork_available() else 0
        self._executor: ProcessPoolExecutor | None = None
        if self.workers:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_tasks,
                initargs=(self.tasks,),
            )

    def add(self, name: str, task: Callable[[Any], Any]) -> None:
        """Register a task before the first ``submit`` (workers start on first use and
        inherit the tasks registered by then)."""
        self.tasks[name] = task

    def submit(self, name: str, arg: Any) -> Future[Any] | None:
        from concurrent.futures.process import BrokenProcessPool

        if self._executor is None:
            return None
        try:
            return self._executor.submit(_run_task, name, arg)
        except BrokenProcessPool:
            self._died()
            return None

    def run_here(self, name: str, arg: Any) -> Any:
        return self.tasks[name](arg)

    def result(self, name: str, arg: Any, future: Future[Any] | None) -> Any:
        """The task's result: the future's, or computed here if it has none or its worker
        died (then no further task goes to workers)."""
        from concurrent.futures.process import BrokenProcessPool

        if future is not None and self._executor is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                self._died()
        return self.run_here(name, arg)

    def _died(self) -> None:
        self.stats.add("worker_died")
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- streaming: sessions scored as soon as they are complete ---------------------------------


def streaming_applies(fmt_spec: str, config: SessionConfig, miner: TemplateMiner) -> bool:
    """Whether ``SessionStream`` completes sessions while reading (id sessions of a loghub
    format, no user masks, no ``max_open``); otherwise it reads the whole input first."""
    import dataclasses

    fmt = get_format(fmt_spec)
    return _fast_path_applies(fmt, dataclasses.replace(config, idle_timeout=None), miner)


class SessionStream:
    """Raw logs to completed sessions, a chunk at a time, in bounded memory.

    A session is complete when the input ends, or when the log clock (the largest valid
    timestamp read so far) passes its last activity by more than ``config.idle_timeout``
    seconds: exactly ``Sessionizer``'s rule, whatever the batch boundaries or the number
    of workers. A line of a session closed that way starts a new session with the same id
    (no line is lost); it counts as ``reopened_session`` when it comes within 10 timeouts
    of log time after the close (ids are remembered that long, not forever). Chunks of ``chunk_sessions``
    sessions (the last one fewer) come in order of first appearance, the order of
    ``read_raw_sessions`` and of ``group`` (the parameter models' series follow it): a
    completed session waits for those that started before it. When more than
    ``max_waiting`` wait (one session open for very long), the waiting ones go ahead and
    the long one comes when it completes (counted as ``late_session``).

    Memory: the lines of open and waiting sessions, the batches in flight and one chunk;
    the lines of sessions given out are dropped once ``compact_rows`` lines are held. The miner only matches (detection); keys ``U<n>`` of
    lines no template matches come from a separate miner as in ``read_raw_sessions`` (their
    labels are fixed when a session's chunk is made). Configurations without the column
    path (window sessions, masks, ``max_open``, other formats) read the whole input and
    give it as one chunk. ``stats``, ``errors``, ``events`` and ``templates`` are complete
    once the iteration ends.

    ``keep_values``: per key (template id), the positions of the parameter values to
    keep; the others before the last one kept read as empty, those after it and every
    value of a key not named are dropped (lines no template matches keep theirs). A
    detector's parameter models read a few positions of a few keys (HDFS: one of three or
    four values, of four keys of fourteen): the rest only costs passing, gathering and
    holding. None: every value.

        stream = SessionStream(paths, fmt, config, miner, pool=pool)
        for chunk in stream:   # RawSessions with a SessionTable
            ...
    """

    def __init__(
        self,
        inputs: Sequence[str],
        fmt_spec: str,
        config: SessionConfig,
        miner: TemplateMiner,
        *,
        pool: WorkerPool | None = None,
        chunk_sessions: int = 8192,
        max_line_bytes: int = 65536,
        compact_rows: int = 1 << 18,
        max_waiting: int = 1 << 16,
        stats: Stats | None = None,
        keep_values: Mapping[int, Collection[int]] | None = None,
    ) -> None:
        config.validate()
        self.keep_values = keep_values
        self.compact_rows = max(1, compact_rows)
        self.max_waiting = max(1, max_waiting)
        self.inputs = list(inputs)
        self.fmt_spec = fmt_spec
        self.fmt = get_format(fmt_spec)
        self.config = config
        self.miner = miner
        self.pool = pool
        self.chunk_sessions = max(1, chunk_sessions)
        self.max_line_bytes = max_line_bytes
        self.stats = stats if stats is not None else Stats()
        self.errors: list[tuple[str, str]] = []
        self.events = 0  # log entries read (empty lines excluded)
        self.sessions = 0
        self.templates: dict[str, str] = {}  # every key given so far -> template text
        self.max_open = 0  # most sessions open at once
        # The sessions the end of input completed (all of them without an idle timeout;
        # still active then: a log cut there may have cut them short), by id: the input
        # line of the session's last entry and the log clock at it (before the first
        # timestamp, the first one; NaN without any); and the log clock when the input
        # ended (NaN: no timestamp).
        self.open_at_end: dict[str, tuple[int, float]] = {}
        self.end_clock = math.nan
        # Where each input starts among the lines read (the reader's, as it reads).
        self.files: list[tuple[int, str]] = []
        if pool is not None and streaming_applies(fmt_spec, config, miner):
            pool.add("scan", _Scan(self.fmt, config, miner, False, keep_values))

    def __iter__(self) -> Iterator[RawSessions]:
        if not streaming_applies(self.fmt_spec, self.config, self.miner):
            raw = read_raw_sessions(
                self.inputs, self.fmt_spec, self.config, self.miner, learn=False,
                max_line_bytes=self.max_line_bytes,
            )  # fmt: skip
            self.stats, self.errors, self.events = raw.stats, list(raw.errors), raw.events
            self.files = raw.files
            self.sessions = len(raw.ids)
            self.templates.update(raw.templates)
            if raw.ids:
                yield raw
            return
        yield from _Streamer(self).run()


_NO_ORDER = (math.inf, 0)  # after every session's order


class _Streamer:
    """The state of one ``SessionStream`` iteration (see there)."""

    REMEMBER = 10  # idle timeouts for which a closed session's id is remembered

    def __init__(self, stream: SessionStream) -> None:
        self.s = stream
        self.scan = _Scan(stream.fmt, stream.config, stream.miner, False, stream.keep_values)
        self.unknown = TemplateMiner()
        self.content_of = ContentReader(stream.fmt)
        self.timeout = stream.config.idle_timeout
        # Columns of the lines kept (rows), as in _read_fast; rows of completed sessions
        # are dropped by _compact.
        self.texts: list[str] = []
        self.keys: list[int] = []
        self.stamps: list[float | None] = []
        # Rows whose timestamp is out of range (None among the valid ones, which are the
        # stamps everywhere else: one column, not two).
        self.invalid: set[int] = set()
        self.values: list[str] = []
        self.vstart = _Starts()  # row r's values: values[vstart[r]:vstart[r + 1]]
        self.override: dict[int, list[str]] = {}
        self.kinds: list[tuple[str, ...]] = []
        # row -> its input line number (from 1 across the inputs, empty lines counted)
        self.numbers: list[int] = []
        self.lines_read = 0
        # Open sessions by last activity (the least active first): id -> [rows, order,
        # activity]; activity is the log clock at the session's last line (NaN before the
        # first timestamp, which then counts as the first clock, as in Sessionizer).
        self.open: OrderedDict[str, list[Any]] = OrderedDict()
        # Completed sessions wait in ``finished`` until every session that started before
        # them is complete too; then they are ``ready``, in order of first appearance (the
        # order of ``read_raw_sessions``, which the parameter models' series follow).
        self.finished: list[tuple[tuple[int, int], str, list[int]]] = []  # a heap: order, id, rows
        self.ready: list[tuple[str, list[int], tuple[int, int]]] = []  # id, rows, order
        # A session's order: the line number of its first line and the place of its id
        # among that line's ids (Sessionizer's order; a line can start several sessions).
        self.open_orders: list[tuple[int, int]] = []  # a heap of the open sessions' orders
        # in open_orders but complete (lazy removal)
        self.closed_orders: set[tuple[int, int]] = set()
        self.released = (0, 0)  # the largest order made ready
        self.multi: dict[int, list[str]] = {}  # the batch's rows that name several ids
        self.late = 0  # sessions made ready after later ones (the wait was too long)
        self.clock = math.nan
        self.first_clock = math.nan
        self.counts = dict.fromkeys(
            (
                "unmatched_format",
                "empty_line",
                "no_session_id",
                "no_session_id_severe",
                "bad_timestamp",
            ),
            0,
        )
        self.reopened = 0
        self.order = TimeOrder(self.timeout)
        self.compact_at = stream.compact_rows
        # Ids of sessions closed for idleness (and the log clock then), for REMEMBER
        # timeouts: a line of one of them counts as a reopened session.
        self.closed_at: OrderedDict[str, float] = OrderedDict()

    # -- reading -------------------------------------------------------------------------

    def batches(self, reader: LineReader) -> Iterator[tuple[list[str], _Batch]]:
        """Scanned batches in input order (in the pool's workers when it has any)."""
        from collections import deque

        pool = self.s.pool
        if pool is None or pool.workers == 0:
            for batch in reader.text_batches():
                yield batch, self.scan(batch)
            return
        inflight: deque[tuple[list[str], Any]] = deque()
        for batch in reader.text_batches():
            inflight.append((batch, pool.submit("scan", batch)))
            if len(inflight) >= IN_FLIGHT * pool.workers:
                b, fut = inflight.popleft()
                yield b, pool.result("scan", b, fut)
        while inflight:
            b, fut = inflight.popleft()
            yield b, pool.result("scan", b, fut)

    def run(self) -> Iterator[RawSessions]:
        s = self.s
        reader = LineReader(s.inputs, SourceConfig(max_line_bytes=s.max_line_bytes), s.stats)
        s.files = reader.files  # filled as the inputs are read
        for batch, res in self.batches(reader):
            self.merge(batch, res)
            self._release()
            s.max_open = max(s.max_open, len(self.open))
            while len(self.ready) >= s.chunk_sessions:
                yield self.chunk(s.chunk_sessions)
            if len(self.texts) >= self.compact_at:
                self._compact()
                # Amortised: the next compaction waits until as many rows came again.
                self.compact_at = max(s.compact_rows, 2 * len(self.texts))
        # End of input: what is still open completes, in order of first appearance.
        rest = sorted(self.open.items(), key=lambda kv: kv[1][1])
        self.open.clear()
        first, numbers = self.first_clock, self.numbers
        s.open_at_end = {
            sid: (numbers[st[0][-1]], first if math.isnan(st[2]) else st[2]) for sid, st in rest
        }
        s.end_clock = self.clock
        for sid, st in rest:
            self._finish(sid, st[0], st[1])
        self._release()
        while self.ready:
            yield self.chunk(s.chunk_sessions)
        for reason, n in self.counts.items():
            if n:
                s.stats.add(reason, n)
        self.order.add_to(s.stats.add)
        if self.reopened:
            s.stats.add("reopened_session", self.reopened)
        if self.late:
            s.stats.add("late_session", self.late)
        s.errors = list(reader.errors)

    def merge(self, batch: list[str], res: _Batch) -> None:
        counts = self.counts
        if isinstance(batch, StreamStart):
            self.order.start_input()
        self.order.feed(res.valid)
        first = self.lines_read + 1  # the batch's first input line
        self.lines_read += len(batch)
        if res.empty_at:
            counts["empty_line"] += len(res.empty_at)
            gone = set(res.empty_at)
            batch = [t for i, t in enumerate(batch) if i not in gone]
            self.numbers.extend(_kept_numbers(first, len(batch) + len(gone), res.empty_at))
        else:
            self.numbers.extend(range(first, first + len(batch)))
        counts["unmatched_format"] += res.unmatched
        counts["bad_timestamp"] += res.bad_format_ts + res.bad_ts
        counts["no_session_id"] += res.no_id
        counts["no_session_id_severe"] += res.no_id_severe
        base = len(self.texts)
        self.texts.extend(batch)
        self.s.events += len(batch)
        for j, content in res.unknown.items():
            key, vals, slots, _ = self.unknown.parse_slots(content, True)
            res.keys[j] = -key  # type: ignore[operator]
            self.override[base + j] = vals
            res.kinds[j] = tuple(sl.kind for sl in slots)
        self.keys.extend(res.keys)  # type: ignore[arg-type]
        self.stamps.extend(res.stamps)
        if res.valid is not res.stamps:
            self.invalid.update(
                base + r
                for r, (t, v) in enumerate(zip(res.stamps, res.valid, strict=True))
                if v is None and t is not None
            )
        self.values.extend(res.values)
        self.vstart.extend(res.counts)
        self.kinds.extend(res.kinds)
        self.multi = {base + r: found for r, found in res.multi.items()} if res.multi else {}
        # The log clock after each line of the batch (NaN before the first timestamp): the
        # running maximum of the valid times, in C (fmax passes over NaN, a missing time).
        clock = self.clock
        clocks: list[float] = []
        if res.valid:
            import numpy as np

            times = np.array(res.valid, dtype=np.float64)  # None: NaN
            if math.isnan(self.first_clock):
                timed = np.flatnonzero(~np.isnan(times))
                if len(timed):
                    self.first_clock = float(times[timed[0]])
            times[0] = np.fmax(times[0], clock)
            clocks = np.fmax.accumulate(times).tolist()
            clock = clocks[-1]
        self.clock = clock
        timeout = self.timeout
        self._group(res.groups, base, clocks, timeout)
        if timeout is None:
            return
        # Sessions idle for longer than the timeout at the batch's end complete.
        if not math.isnan(clock):
            limit = clock - timeout
            first = self.first_clock
            opened = self.open
            while opened:
                sid, st = next(iter(opened.items()))
                active = st[2] if not math.isnan(st[2]) else first
                if active >= limit:
                    break
                opened.popitem(last=False)
                self._finish(sid, st[0], st[1])
                self.closed_at[sid] = clock
                self.closed_at.move_to_end(sid)
            # Ids closed for idleness are remembered for a while, to count comebacks.
            horizon = clock - self.REMEMBER * timeout
            closed_at = self.closed_at
            while closed_at and next(iter(closed_at.values())) < horizon:
                closed_at.popitem(last=False)

    def _group(
        self,
        groups: dict[str, list[int]],
        base: int,
        clocks: list[float],
        timeout: float | None = None,
    ) -> None:
        opened = self.open
        if timeout is None:  # no idle timeout: sessions only complete at the end
            for sid, rows in groups.items():
                st = opened.get(sid)
                at = [base + r for r in rows] if base else rows
                if st is None:
                    opened[sid] = [at, self._opened(at[0], sid), clocks[rows[-1]]]
                else:
                    st[0].extend(at)
                    st[2] = clocks[rows[-1]]
            return
        first = self.first_clock
        touched: list[tuple[int, str]] = []
        for sid, rows in groups.items():
            st = opened.get(sid)
            end = clocks[rows[-1]]
            low = clocks[rows[0]]  # a new session: its own first line
            if st is not None:
                low = st[2] if not math.isnan(st[2]) else first
            if end - timeout <= low:  # no line of this group comes after an idle gap
                at = [base + r for r in rows]
                if st is None:
                    st = opened[sid] = [at, self._opened(at[0], sid), end]
                else:
                    st[0].extend(at)
                    st[2] = end
            else:
                # Sessionizer closes a session at the clock advance that leaves it idle
                # past the timeout: a later line of its id starts a new session.
                for r in rows:
                    c = clocks[r]
                    if st is not None and not math.isnan(c):
                        active = st[2] if not math.isnan(st[2]) else first
                        if c - timeout > active:
                            del opened[sid]
                            self._finish(sid, st[0], st[1])
                            self.reopened += 1
                            st = None
                    if st is None:
                        st = opened[sid] = [[base + r], self._opened(base + r, sid), c]
                    else:
                        st[0].append(base + r)
                        st[2] = c
            touched.append((rows[-1], sid))
        # Keep the open sessions ordered by last activity, the idlest first.
        touched.sort()
        for _, sid in touched:
            opened.move_to_end(sid)

    def _opened(self, row: int, sid: str) -> tuple[int, int]:
        if self.closed_at.pop(sid, None) is not None:
            self.reopened += 1  # closed for idleness, and back
        ids = self.multi.get(row)
        order = (self.numbers[row], ids.index(sid) if ids else 0)
        heapq.heappush(self.open_orders, order)
        return order

    def _finish(self, sid: str, rows: list[int], order: tuple[int, int]) -> None:
        self.closed_orders.add(order)
        if order < self.released:  # later sessions went ahead of it (see max_waiting)
            self.ready.append((sid, rows, order))
            self.late += 1
            return
        heapq.heappush(self.finished, (order, sid, rows))

    def _release(self) -> None:
        """Make ready the completed sessions that no open one started before (after each
        batch: the sessions a batch opens are all known by then)."""
        heap, closed = self.open_orders, self.closed_orders
        while heap and heap[0] in closed:
            closed.discard(heapq.heappop(heap))
        low = heap[0] if heap else _NO_ORDER
        finished = self.finished
        if len(finished) > self.s.max_waiting:
            # A session open for very long holds back every later one: let them go
            # ahead (counted as late_session) rather than keep them all in memory.
            low = _NO_ORDER
        while finished and finished[0][0] < low:
            order, sid, rows = heapq.heappop(finished)
            self.ready.append((sid, rows, order))
            self.released = order

    def chunk(self, n: int) -> RawSessions:
        """The first ``n`` completed sessions as a ``RawSessions`` over a table of their own
        lines (line numbers count every kept line read, as in ``read_raw_sessions``)."""
        s = self.s
        done, self.ready = self.ready[:n], self.ready[n:]
        # Every column gathered in one C-level pass (itemgetter) over the chunk's rows.
        flat = list(chain.from_iterable(rows for _, rows, _ in done))
        keys, stamps, kinds, line_ids = (
            gather(col, flat) for col in (self.keys, self.stamps, self.kinds, self.numbers)
        )
        # The raw lines are read where asked (events, anomalous verdicts): views over this
        # buffer, which a compaction replaces rather than changes.
        texts = RowTexts(self.texts, flat)
        valid = stamps
        if self.invalid:
            bad = self.invalid
            valid = [None if r in bad else t for r, t in zip(flat, stamps, strict=True)]
        # A chunk's sessions hold consecutive rows of its table: ranges, not lists of every
        # row (built and pickled to a scoring worker, 11M of them at full HDFS size).
        members: list[Sequence[int]] = []
        bounds = [0]
        begin = 0
        for _, rows, _ in done:
            members.append(range(begin, begin + len(rows)))
            begin += len(rows)
            bounds.append(begin)
        values, starts = _take_values(self.values, self.vstart.array(), flat)
        override = _take_override(self.override, flat)
        miner, unknown = s.miner, self.unknown
        line_keys, labels, texts_by_key = _resolve_keys(keys, miner, unknown)
        ids = [sid for sid, _, _ in done]
        table = SessionTable(
            ids, members, texts, self.content_of, line_keys, stamps,
            FlatValues(values, starts, override), kinds, texts_by_key, valid,
            line_numbers=line_ids,
        )  # fmt: skip
        templates = {
            labels[r]: texts_by_key[r]
            for r in sorted(set(line_keys), key=lambda r: (r < 0, abs(r)))
        }
        s.templates.update(templates)
        s.sessions += len(ids)
        return RawSessions(
            ids=ids,
            keys=_per_session(list(map(labels.__getitem__, line_keys)), bounds),
            lines=SessionLines(self.texts, flat, bounds),
            templates=templates,
            miner=miner,
            stats=s.stats,
            events=len(texts),
            sessions=table,
            line_ids=line_ids,
            files=s.files,
        )

    def _compact(self) -> None:
        """Drop the rows of completed sessions and of lines without a session: keep the
        open sessions' rows (and those of completed sessions not yet in a chunk)."""
        import numpy as np

        kept = chain.from_iterable(
            chain(
                (st[0] for st in self.open.values()),
                (rows for _, _, rows in self.finished),
                (rows for _, rows, _ in self.ready),
            )
        )
        rows = np.sort(np.fromiter(kept, dtype=np.int64))
        keep = rows.tolist()
        # Old row -> new row, looked up in C (a dict built row by row cost more).
        table = np.full(len(self.texts), -1, dtype=np.int64)
        table[rows] = np.arange(len(rows), dtype=np.int64)
        new_of = table.tolist().__getitem__
        self.texts = gather(self.texts, keep)
        self.keys = gather(self.keys, keep)
        self.stamps = gather(self.stamps, keep)
        self.invalid = {new_of(r) for r in self.invalid if table[r] >= 0}
        self.kinds = gather(self.kinds, keep)
        values, vstart = _take_values(self.values, self.vstart.array(), rows)
        self.values, self.vstart = values, _Starts(vstart)
        self.override = _take_override(self.override, rows)
        # Rows renumbered: their line numbers stay those of the input.
        self.numbers = gather(self.numbers, keep)
        for st in self.open.values():
            st[0] = list(map(new_of, st[0]))
        self.finished = [(o, sid, list(map(new_of, rs))) for o, sid, rs in self.finished]
        heapq.heapify(self.finished)  # the same order; heapify keeps it a heap
        self.ready = [(sid, list(map(new_of, rs)), o) for sid, rs, o in self.ready]


def _line_numbers(
    rows: int, batches: list[tuple[int, int]], renumbered: Mapping[int, list[int]]
) -> list[int] | None:
    """Each row's input line number, or None where it is row + 1 throughout (no empty
    line was read): ``batches`` (first row, first input line) of every batch,
    ``renumbered`` the numbers of the batches with empty lines, by first row."""
    if not renumbered:
        return None
    import numpy as np

    starts = np.array([b[0] for b in batches] + [rows], dtype=np.int64)
    firsts = np.array([b[1] for b in batches], dtype=np.int64)
    # Rows of a batch without empty lines: its first line plus the place in the batch.
    out = np.arange(rows, dtype=np.int64) + np.repeat(firsts - starts[:-1], np.diff(starts))
    for row, numbers in renumbered.items():
        out[row : row + len(numbers)] = numbers
    return out.tolist()


def _kept_numbers(first: int, n: int, empty_at: Sequence[int]) -> list[int]:
    """The input line numbers of a batch's non-empty lines: ``n`` lines from ``first``,
    without those at ``empty_at`` (in NumPy: a batch holds thousands of lines)."""
    import numpy as np

    return np.delete(np.arange(first, first + n, dtype=np.int64), empty_at).tolist()


class _Starts:
    """Where each row's parameter values start in the flat list (row r's are
    ``values[at[r]:at[r + 1]]``), grown a batch at a time in NumPy: chunks and compactions
    index it, and a list of every row's start was turned into an array for each of them
    (a fifth of their time at 11M HDFS lines)."""

    __slots__ = ("_parts", "last")

    def __init__(self, at: Any = None) -> None:
        import numpy as np

        first = np.zeros(1, dtype=np.int64) if at is None else np.asarray(at, dtype=np.int64)
        self._parts = [first]
        self.last = int(first[-1])

    def extend(self, counts: Sequence[int]) -> None:
        """The next rows, ``counts[i]`` values each."""
        import numpy as np

        if len(counts):
            part = np.cumsum(np.asarray(counts, dtype=np.int64))
            part += self.last
            self._parts.append(part)
            self.last = int(part[-1])

    def array(self) -> Any:
        """Every row's start and the end, as one int64 array."""
        import numpy as np

        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]


def _take_values(values: list[str], vstart: Any, rows: Any) -> tuple[list[str], Any]:
    """The parameter values of ``rows`` one after the other (row r's are
    ``values[vstart[r]:vstart[r + 1]]``), and where each row's start (an int64 array): in
    NumPy and C, not a Python step per row. Rows with an override hold no values there."""
    import numpy as np

    at = np.asarray(vstart, dtype=np.int64)
    r = np.asarray(rows, dtype=np.int64)
    begin = at[r]
    lens = at[r + 1] - begin
    starts = np.zeros(len(r) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    total = int(starts[-1])
    if total == 0:
        return [], starts
    # Each value's index: its row's first index plus its place within the row.
    idx = np.repeat(begin - starts[:-1], lens) + np.arange(total, dtype=np.int64)
    return gather(values, idx.tolist()), starts


def _take_override(override: Mapping[int, list[str]], rows: Any) -> dict[int, list[str]]:
    """``override`` renumbered to the positions of ``rows`` (every position of a row it
    names: a line of several sessions is in ``rows`` once for each), found in C, not by a
    Python step per row (few rows have one)."""
    import numpy as np

    if not override:
        return {}
    r = np.asarray(rows, dtype=np.int64)
    named = np.fromiter(override, dtype=np.int64, count=len(override))
    at = np.flatnonzero(np.isin(r, named))
    return {j: override[k] for j, k in zip(at.tolist(), r[at].tolist(), strict=True)}
