"""The stages driven over files: raw log lines to keyed sessions.

``sources -> formats -> parsing -> sessions``, as the batch commands (``train``,
``detect``, ``eval``, the demo) need it: every session with its log keys (template ids as
``E<id>``), the template text of each key, and the raw lines for explanations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .formats import LogFormat, get_format
from .parsing import TemplateMiner
from .records import Event, Stats
from .sessions import _TS_LIMIT, SESSION_PRESETS, Session, SessionConfig, SessionTable, group
from .sources import LineReader, SourceConfig


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


def session_config(
    session: str | None, window: int | None, *, in_line: bool = False
) -> SessionConfig:
    """``--session REGEX|PRESET`` or ``--window N`` as a SessionConfig; ``in_line``: the
    regex searches the whole raw line, header included."""
    if window is not None:
        if in_line:
            raise ValueError("--session-in-line goes with --session, not --window")
        return SessionConfig(window_size=window)
    if not session:
        raise ValueError("raw input needs --session REGEX (or a preset name) or --window N")
    return SessionConfig(id_pattern=SESSION_PRESETS.get(session, session), search_raw_line=in_line)


def read_raw_sessions(
    inputs: Sequence[str],
    fmt_spec: str,
    config: SessionConfig,
    miner: TemplateMiner | None = None,
    learn: bool = True,
    max_line_bytes: int = 65536,
) -> RawSessions:
    """Parse raw logs into keyed sessions.

    ``learn``: templates are created and generalised (training). Otherwise the miner only
    matches, so that the keys of a trained model keep their meaning; lines matching no
    template get keys ``U<id>`` from a separate miner, which the model has never seen.
    """
    fmt = get_format(fmt_spec)
    config.validate()
    stats = Stats()
    miner = miner or TemplateMiner()
    unknown = TemplateMiner()
    reader = LineReader(list(inputs), SourceConfig(max_line_bytes=max_line_bytes), stats)
    if _fast_path_applies(fmt, config, miner):
        return _read_fast(reader, fmt, config, miner, unknown, learn, stats)
    events: list[Event] = []
    unknown_keys: set[int] = set()
    for record in fmt.records(reader, stats):
        if not record.line.text:
            stats.add("empty_line")
            continue
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
        else:
            k = miner.resolve(e.key)  # ids handed out before a merge point to the survivor
            label = f"E{k}"
            templates[label] = miner.templates_[k].text
            e.key = k
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
    )


# --- the fast path ---------------------------------------------------------------------------


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


def _read_fast(
    reader: LineReader,
    fmt: LogFormat,
    config: SessionConfig,
    miner: TemplateMiner,
    unknown: TemplateMiner,
    learn: bool,
    stats: Stats,
) -> RawSessions:
    """``read_raw_sessions`` as columns: the same sessions, keys, lines, templates and
    counts as the object path (format -> miner -> ``group``), differential-tested."""
    import re

    match = fmt.regex.fullmatch
    groupindex = fmt.regex.groupindex
    content_group = groupindex.get("Content")
    times = fmt._times
    pattern = re.compile(config.id_pattern or "")
    findall = pattern.findall if pattern.groups <= 1 else None
    finditer = pattern.finditer
    raw_line = config.search_raw_line
    parse = miner._parse

    texts: list[str] = []
    contents: list[str] = []
    keys: list[int] = []  # template ids; unknown lines: -(unknown miner id)
    stamps: list[float | None] = []
    valid: list[float | None] = []  # None where the timestamp is missing or out of range
    values: list[list[str]] = []
    kinds: list[tuple[str, ...]] = []
    kinds_of: dict[int, tuple[list[object], tuple[str, ...]]] = {}  # id(slots) -> kinds
    members: list[list[int]] = []
    index: dict[str, int] = {}
    ids: list[str] = []
    unmatched = no_id = empty = bad_ts = 0
    bad_before = fmt.bad_timestamps
    names: tuple[str, ...] = ()
    name_groups: tuple[int, ...] = ()
    for batch in reader.text_batches():
        for text in batch:
            m = match(text.strip())
            ts: float | None = None
            if m is None:
                unmatched += 1
                content = text
            else:
                content = (m.group(content_group) or "") if content_group else ""
                if fmt._time_names:
                    if fmt._time_names is not names:
                        names = fmt._time_names
                        name_groups = tuple(groupindex[n] for n in names)
                    parts = [g for g in m.group(*name_groups, 0)[:-1] if g is not None]
                    joined = " ".join(parts)
                    ts = times(joined) if joined else None
                    if ts is None:  # the object path's fallbacks and counting
                        fields = {k: v for k, v in m.groupdict().items() if v is not None}
                        fields.pop("Content", None)
                        ts = fmt._timestamp(fields)
            if not text:
                empty += 1
                continue
            key, vals, slots, _ = parse(content, learn)
            if key is None:
                key, vals, slots, _ = unknown._parse(content, True)
                key = -key  # type: ignore[operator]
            row = len(texts)
            texts.append(text)
            contents.append(content)
            keys.append(key)  # type: ignore[arg-type]
            stamps.append(ts)  # as the record has it; elapsed times use the valid ones
            if ts is not None and not -_TS_LIMIT < ts < _TS_LIMIT:
                bad_ts += 1
                ts = None
            valid.append(ts)
            values.append(vals)
            got = kinds_of.get(id(slots))
            if got is None:
                got = kinds_of[id(slots)] = (slots, tuple(s.kind for s in slots))  # type: ignore[arg-type]
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
                no_id += 1
                continue
            for sid in found:
                pos = index.get(sid)
                if pos is None:
                    index[sid] = len(members)
                    ids.append(sid)
                    members.append([row])
                else:
                    members[pos].append(row)
    for reason, n in (
        ("unmatched_format", unmatched),
        ("empty_line", empty),
        ("no_session_id", no_id),
    ):
        if n:
            stats.add(reason, n)
    if fmt.bad_timestamps != bad_before:
        stats.add("bad_timestamp", fmt.bad_timestamps - bad_before)
    if bad_ts:
        stats.add("bad_timestamp", bad_ts)

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
        ids, members, texts, contents, line_keys, stamps, values, kinds, texts_by_key, valid
    )
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
