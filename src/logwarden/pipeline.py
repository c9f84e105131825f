"""The stages driven over files: raw log lines to keyed sessions.

``sources -> formats -> parsing -> sessions``, as the batch commands (``train``,
``detect``, ``eval``, the demo) need it: every session with its log keys (template ids as
``E<id>``), the template text of each key, and the raw lines for explanations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .formats import get_format
from .parsing import TemplateMiner
from .records import Event, Stats
from .sessions import SESSION_PRESETS, Session, SessionConfig, group
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
    sessions: list[Session] = field(default_factory=list)  # with events, params, elapsed times


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
