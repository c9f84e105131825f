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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

from logwarden.errors import ConfigError
from logwarden.io.formats import LogFormat, get_format
from logwarden.io.sources import LineReader, SourceConfig
from logwarden.parsing import TemplateMiner
from logwarden.records import Event, Stats
from logwarden.sessions.grouping import (
    SESSION_PRESETS,
    TIMESTAMP_LIMIT,
    FlatValues,
    Session,
    SessionConfig,
    SessionTable,
    group,
)


@dataclass
class RawSessions:
    """Sessions read from raw logs."""

    ids: list[str]
    keys: list[list[str]]  # per session, its log keys (``E<id>``; ``U<id>`` for unknown lines)
    lines: list[list[str]]  # per session, its raw lines
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


def session_config(
    session: str | None, window: int | None, *, in_line: bool = False
) -> SessionConfig:
    """``--session REGEX|PRESET`` or ``--window N`` as a SessionConfig; ``in_line``: the
    regex searches the whole raw line, header included."""
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
    return SessionConfig(id_pattern=SESSION_PRESETS.get(session, session), search_raw_line=in_line)


def read_raw_sessions(
    inputs: Sequence[str],
    fmt_spec: str,
    config: SessionConfig,
    miner: TemplateMiner | None = None,
    learn: bool = True,
    max_line_bytes: int = 65536,
    workers: int = 0,
) -> RawSessions:
    """Parse raw logs into keyed sessions.

    ``learn``: templates are created and generalised (training). Otherwise the miner only
    matches, so that the keys of a trained model keep their meaning; lines matching no
    template get keys ``U<id>`` from a separate miner, which the model has never seen.
    ``workers``: processes that scan lines in parallel when the miner only matches (0, the
    default: none). Forking is the caller's decision: ``default_workers`` gives the CLI's
    choice, and a process with threads (a web server) should keep 0.

    For speed on large inputs, callers may turn the cyclic garbage collector off around
    this call (the CLI does): millions of small lists and strings, none in a reference
    cycle, are rescanned by it over and over (measured: 40% of the reading time).
    """
    fmt = get_format(fmt_spec)
    config.validate()
    stats = Stats()
    miner = miner or TemplateMiner()
    unknown = TemplateMiner()
    reader = LineReader(list(inputs), SourceConfig(max_line_bytes=max_line_bytes), stats)
    if _fast_path_applies(fmt, config, miner):
        n = workers if workers > 0 and not learn and _fork_available() else 0
        return _read_fast(reader, fmt, config, miner, unknown, learn, stats, n)
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

    def key_of(e: Event) -> str:
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


def _content_reader(fmt: LogFormat) -> Callable[[str], str]:
    """A line's message as the format gives it (the whole line when it does not match)."""
    match = fmt.regex.fullmatch
    has_content = "Content" in fmt.regex.groupindex

    def content_of(text: str) -> str:
        m = match(text.strip())
        if m is None:
            return text
        return (m.group("Content") or "") if has_content else ""

    return content_of


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
    valid: list[float | None] = field(default_factory=list)


class _Scan:
    """The per-line work of the fast path, one batch at a time: format, timestamp, template
    and parameters, session ids. It keeps no state between batches that changes results in
    match-only mode, so batches can be scanned in worker processes."""

    def __init__(
        self, fmt: LogFormat, config: SessionConfig, miner: TemplateMiner, learn: bool
    ) -> None:
        import re

        self.fmt = fmt
        self.miner = miner
        self.learn = learn
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
        times = fmt.parse_time
        parse = self.miner.parse_slots
        learn = self.learn
        findall, finditer, raw_line = self.findall, self.finditer, self.raw_line
        kinds_of = self.kinds_of
        out = _Batch([], [], [], [], [], [], {}, {})
        keys, stamps, values, counts, kinds, groups, valid = (
            out.keys, out.stamps, out.values, out.counts, out.kinds, out.groups, out.valid,
        )  # fmt: skip
        bad_before = fmt.bad_timestamps
        names: tuple[str, ...] = ()
        name_groups: tuple[int, ...] = ()
        for i, text in enumerate(batch):
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
                    if len(name_groups) == 2:  # date and time, the usual case
                        a, b = m.group(*name_groups)
                        joined = a + " " + b if a is not None and b is not None else (a or b or "")
                    else:
                        parts = [g for g in m.group(*name_groups, 0)[:-1] if g is not None]
                        joined = " ".join(parts)
                    ts = times(joined) if joined else None
                    if ts is None:  # the object path's fallbacks and counting
                        fields = {k: v for k, v in m.groupdict().items() if v is not None}
                        fields.pop("Content", None)
                        ts = fmt.timestamp(fields)
            if not text:
                out.empty_at.append(i)
                continue
            key, vals, slots, _ = parse(content, learn)
            row = len(keys)
            if key is None:
                out.unknown[row] = content
            keys.append(key)
            stamps.append(ts)  # as the record has it; elapsed times use the valid ones
            if ts is not None and not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT:
                out.bad_ts += 1
                ts = None
            valid.append(ts)
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
            elif found and not found[0]:
                found = []
            if not found:
                out.no_id += 1
            for sid in found:
                rows = groups.get(sid)
                if rows is None:
                    groups[sid] = [row]
                else:
                    rows.append(row)
        out.bad_format_ts = fmt.bad_timestamps - bad_before
        return out


# The scanner of a worker process, set by the pool's initializer (inherited through fork).
_WORKER_SCAN: _Scan | None = None


def _init_worker(scan: _Scan) -> None:
    global _WORKER_SCAN
    _WORKER_SCAN = scan


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
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("fork")
    inflight: deque[tuple[list[str], Future[_Batch] | None]] = deque()
    executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(scan,)
    )

    def settle() -> None:
        nonlocal executor
        batch, future = inflight.popleft()
        res = None
        if future is not None and executor is not None:
            try:
                res = future.result()
            except BrokenProcessPool:
                stats.add("worker_died")
                executor.shutdown(wait=False, cancel_futures=True)
                executor = None
        merge(batch, res if res is not None else scan(batch))

    try:
        for batch in reader.text_batches():
            future = executor.submit(_scan_in_worker, batch) if executor is not None else None
            inflight.append((batch, future))
            if len(inflight) >= 3 * workers:
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
) -> RawSessions:
    """``read_raw_sessions`` as columns: the same sessions, keys, lines, templates and
    counts as the object path (format -> miner -> ``group``), differential-tested.
    ``workers`` > 0 scans batches in that many forked processes (match-only miners)."""
    scan = _Scan(fmt, config, miner, learn)
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
    unmatched = no_id = empty = bad_ts = bad_format = 0

    def merge(batch: list[str], res: _Batch) -> None:
        nonlocal empty, unmatched, bad_format, bad_ts, no_id
        if res.empty_at:
            empty += len(res.empty_at)
            gone = set(res.empty_at)
            batch = [t for i, t in enumerate(batch) if i not in gone]
        unmatched += res.unmatched
        bad_format += res.bad_format_ts
        bad_ts += res.bad_ts
        no_id += res.no_id
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
        ("bad_timestamp", bad_format + bad_ts),
    ):
        if n:
            stats.add(reason, n)

    # Ids handed out before a template merge point to the survivor; unknown lines keep a
    # negative id, which no model knows.
    resolved: dict[int, int] = {}
    texts_by_key: dict[int, str] = {}
    labels: dict[int, str] = {}
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
    line_keys = [resolved[k] for k in keys]
    session_keys = [[labels[line_keys[r]] for r in rows] for rows in members]
    used = {line_keys[r] for rows in members for r in rows}  # keys of lines in sessions
    table = SessionTable(
        ids, members, texts, _content_reader(fmt), line_keys, stamps,
        FlatValues(values, _starts(counts), override), kinds,
        texts_by_key, valid,
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
        sessions=table,
    )
