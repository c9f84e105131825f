"""Tests for logwarden.sessions: id grouping, windows, streaming closing, elapsed times."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logwarden.records import Event, Line, Record, Stats
from logwarden.sessions import (
    SESSION_PRESETS,
    UNIDENTIFIED_ID,
    Session,
    SessionConfig,
    SessionConfigError,
    Sessionizer,
    group,
)

HDFS = SESSION_PRESETS["hdfs"]


def make_event(
    content: str,
    ts: float | None = None,
    key: int = 0,
    *,
    fields: dict[str, str] | None = None,
    raw: str | None = None,
    lineno: int = 1,
) -> Event:
    line = Line(text=content if raw is None else raw, source="t.log", offset=0, lineno=lineno)
    record = Record(line=line, content=content, fields=fields or {}, timestamp=ts)
    return Event(record=record, key=key, template=content, params=[])


def numbered(timestamps: list[float | None]) -> list[Event]:
    """Events whose key is their position, so that membership reads as key lists."""
    return [make_event(f"e{i}", ts, key=i, lineno=i + 1) for i, ts in enumerate(timestamps)]


def iso_base(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# -- grouping by identifier ------------------------------------------------------------


def hdfs_lines() -> list[Event]:
    return [
        make_event("Receiving block blk_1 src: /10.0.0.1", 0.0, key=1),
        make_event("Receiving block blk_-2 src: /10.0.0.2", 1.0, key=1),
        make_event("Deleting block blk_1 file /data/current/blk_1", 3.0, key=2),
        make_event("ask 10.0.0.3 to delete blk_1 blk_-2", 4.0, key=3),
        make_event("Verification succeeded for nothing", 6.0, key=4),
        make_event("Served block blk_-2 to /10.0.0.4", 10.0, key=5),
    ]


def test_hdfs_interleaved_two_blocks_in_one_line() -> None:
    events = hdfs_lines()
    stats = Stats()
    sessions = group(events, SessionConfig(id_pattern=HDFS), stats)
    assert [s.id for s in sessions] == ["blk_1", "blk_-2"]
    blk1, blk2 = sessions
    # The line naming blk_1 twice is in blk_1 once; the line with both is in both.
    assert blk1.events == [events[0], events[2], events[3]]
    assert blk2.events == [events[1], events[3], events[5]]
    assert blk1.keys == [1, 2, 3]
    assert blk2.keys == [1, 3, 5]
    # By hand: blk_1 at 0, 3, 4; blk_-2 at 1, 4, 10.
    assert blk1.elapsed == [0.0, 3.0, 1.0]
    assert blk2.elapsed == [0.0, 3.0, 6.0]
    assert (blk1.start, blk1.end, len(blk1)) == (0.0, 4.0, 3)
    assert stats["no_session_id"] == 1
    assert all(s.closed_by == "end" for s in sessions)


def test_unidentified_lines_kept_on_request() -> None:
    events = hdfs_lines()
    stats = Stats()
    sessions = group(events, SessionConfig(id_pattern=HDFS, keep_unidentified=True), stats)
    assert [s.id for s in sessions] == ["blk_1", "blk_-2", UNIDENTIFIED_ID]
    assert sessions[2].events == [events[4]]
    assert stats["no_session_id"] == 1  # counted whether kept or not


def test_pattern_without_group_uses_whole_match_and_group_one_otherwise() -> None:
    event = make_event("job 17 started by user 42")
    whole = group([event], SessionConfig(id_pattern=r"job \d+"))
    assert [s.id for s in whole] == ["job 17"]
    captured = group([event], SessionConfig(id_pattern=r"user (\d+)"))
    assert [s.id for s in captured] == ["42"]
    # With two groups, group 1 is the id; a match where it did not take part has none.
    stats = Stats()
    two = group(
        [event, make_event("task 9")], SessionConfig(id_pattern=r"job (\d+)|task (\d+)"), stats
    )
    assert [s.id for s in two] == ["17"]
    assert stats["no_session_id"] == 1


def test_empty_matches_are_not_ids() -> None:
    stats = Stats()
    events = [make_event("abc"), make_event("x1"), make_event("")]
    sessions = group(events, SessionConfig(id_pattern=r"\d*"), stats)
    assert [s.id for s in sessions] == ["1"]
    assert stats["no_session_id"] == 2
    one_empty = group([make_event("x")], SessionConfig(id_pattern=r"(\d*)x"), stats)
    assert one_empty == []
    assert stats["no_session_id"] == 3


def test_id_field_and_raw_line_search() -> None:
    events = [
        make_event("GET /a", 1.0, fields={"req": "r1"}, raw="r1 GET /a"),
        make_event("GET /b", 2.0, fields={"req": "r2"}, raw="r2 GET /b"),
        make_event("GET /c", 3.0, fields={}, raw="?? GET /c"),
        make_event("POST /a", 4.0, fields={"req": "r1"}, raw="r1 POST /a"),
    ]
    stats = Stats()
    by_field = group(events, SessionConfig(id_field="req"), stats)
    assert [(s.id, [e.record.content for e in s.events]) for s in by_field] == [
        ("r1", ["GET /a", "POST /a"]),
        ("r2", ["GET /b"]),
    ]
    assert stats["no_session_id"] == 1
    # The id is only in the raw line (header), not in the content.
    assert group(events, SessionConfig(id_pattern=r"\br\d\b")) == []
    raw = group(events, SessionConfig(id_pattern=r"\b(r\d)\b", search_raw_line=True))
    assert [s.id for s in raw] == ["r1", "r2"]
    assert raw[0].elapsed == [0.0, 3.0]


def test_presets_match_real_looking_ids() -> None:
    nova = (
        "[instance: 3edec1e4-9678-4a3a-a21b-a145a4ee5e61] Terminating instance "
        "req-9bc36dd9-91c5-4314-898a-47625eb93b09"
    )
    assert re.findall(SESSION_PRESETS["openstack"], nova) == [
        "3edec1e4-9678-4a3a-a21b-a145a4ee5e61"
    ]
    assert re.findall(SESSION_PRESETS["request"], nova) == [
        "req-9bc36dd9-91c5-4314-898a-47625eb93b09"
    ]
    assert re.findall(SESSION_PRESETS["uuid"], nova) == [
        "3edec1e4-9678-4a3a-a21b-a145a4ee5e61",
        "9bc36dd9-91c5-4314-898a-47625eb93b09",
    ]
    assert re.findall(HDFS, "blk_-123 and blk_45") == ["blk_-123", "blk_45"]


# -- elapsed times and timestamps ------------------------------------------------------


def test_elapsed_with_missing_timestamps() -> None:
    events = [make_event(f"blk_7 step {i}", ts) for i, ts in enumerate([1.0, None, 4.0, 6.5])]
    (session,) = group(events, SessionConfig(id_pattern=HDFS))
    # None next to a missing timestamp on either side; 2.5 between 4.0 and 6.5.
    assert session.elapsed == [0.0, None, None, 2.5]
    (first_untimed,) = group([make_event("blk_7", None), make_event("blk_7", 3.0)], _hdfs())
    assert first_untimed.elapsed == [0.0, None]
    assert first_untimed.start == first_untimed.end == 3.0


def test_start_and_end_are_the_timestamp_span() -> None:
    events = [make_event("blk_1", ts) for ts in (5.0, None, 2.0, 9.0, 7.0)]
    (session,) = group(events, _hdfs())
    assert (session.start, session.end) == (2.0, 9.0)
    assert session.elapsed == [0.0, None, None, 7.0, -2.0]  # out of order kept as is
    untimed = Session("x", [make_event("x")], [0.0])
    assert (untimed.start, untimed.end) == (None, None)


def test_bad_timestamps_count_as_missing() -> None:
    stats = Stats()
    bad = [math.inf, math.nan, 1e300, -1e12]
    events = [make_event("blk_1", t) for t in (1.0, *bad, 2.0)]
    sz = Sessionizer(SessionConfig(id_pattern=HDFS, idle_timeout=10.0), stats)
    assert [sz.push(e) for e in events] == [[]] * 6  # none of them moved the clock
    (session,) = sz.flush()
    assert session.elapsed == [0.0, None, None, None, None, None]
    assert stats["bad_timestamp"] == 4
    stats = Stats()
    windows = group(numbered([5.0, 1e300, math.nan]), SessionConfig(time_window=60.0), stats)
    assert [(w.id, w.keys) for w in windows] == [("1970-01-01T00:00:00Z", [0, 1, 2])]
    assert (stats["bad_timestamp"], stats["no_timestamp"]) == (2, 2)


def _hdfs(**kwargs: object) -> SessionConfig:
    return SessionConfig(id_pattern=HDFS, **kwargs)  # type: ignore[arg-type]


# -- streaming: idle timeout and eviction ----------------------------------------------


def test_idle_timeout_closes_in_stream_and_flush_closes_the_rest() -> None:
    a0, b1, a3, b9 = (
        make_event("blk_1 a", 0.0),
        make_event("blk_2 b", 1.0),
        make_event("blk_1 c", 3.0),
        make_event("blk_2 d", 9.0),
    )
    sz = Sessionizer(_hdfs(idle_timeout=5.0))
    assert sz.push(a0) == sz.push(b1) == sz.push(a3) == []
    assert sz.open_count == 2
    closed = sz.push(b9)  # clock 9: blk_2 idle 8 s, blk_1 idle 6 s, both > 5
    assert [(s.id, s.events, s.closed_by) for s in closed] == [
        ("blk_2", [b1], "idle"),
        ("blk_1", [a0, a3], "idle"),
    ]
    rest = sz.flush()
    assert [(s.id, s.events, s.closed_by) for s in rest] == [("blk_2", [b9], "end")]
    assert sz.open_count == 0
    # Batch: the same split, ordered by first appearance.
    batch = group([a0, b1, a3, b9], _hdfs(idle_timeout=5.0))
    assert [(s.id, s.events) for s in batch] == [
        ("blk_1", [a0, a3]),
        ("blk_2", [b1]),
        ("blk_2", [b9]),
    ]
    # Without a timeout everything waits for flush.
    no_timeout = Sessionizer(_hdfs())
    assert [no_timeout.push(e) for e in (a0, b1, a3, b9)] == [[], [], [], []]
    assert [(s.id, s.events) for s in no_timeout.flush()] == [
        ("blk_1", [a0, a3]),
        ("blk_2", [b1, b9]),
    ]


def test_idle_timeout_boundary_and_untimed_entries() -> None:
    # Exactly idle_timeout apart is not idle yet.
    same = group([make_event("blk_1", 0.0), make_event("blk_1", 5.0)], _hdfs(idle_timeout=5.0))
    assert [len(s) for s in same] == [2]
    # Entries before the first timestamp count as active when the clock starts (at 10).
    sz = Sessionizer(_hdfs(idle_timeout=5.0))
    assert sz.push(make_event("blk_1", None)) == []
    assert sz.push(make_event("blk_2", 10.0)) == []
    assert sz.push(make_event("blk_3", 15.0)) == []
    closed = sz.push(make_event("blk_3", 15.5))
    assert [s.id for s in closed] == ["blk_1", "blk_2"]


def test_max_open_evicts_least_recently_active() -> None:
    stats = Stats()
    sz = Sessionizer(_hdfs(max_open=2), stats)
    a1, b, a2, c = (make_event(t) for t in ("blk_1 x", "blk_2 x", "blk_1 y", "blk_3 x"))
    assert sz.push(a1) == sz.push(b) == sz.push(a2) == []
    evicted = sz.push(c)  # blk_2 is idlest: blk_1 had an entry after it
    assert [(s.id, s.events, s.closed_by) for s in evicted] == [("blk_2", [b], "evicted")]
    assert stats["evicted_session"] == 1
    assert sz.open_count == 2
    assert [(s.id, s.events) for s in sz.flush()] == [("blk_1", [a1, a2]), ("blk_3", [c])]


def test_max_open_with_two_ids_in_one_line() -> None:
    stats = Stats()
    sessions = group([make_event("blk_1 blk_2")], _hdfs(max_open=1), stats)
    assert [(s.id, s.closed_by) for s in sessions] == [("blk_1", "evicted"), ("blk_2", "end")]
    assert stats["evicted_session"] == 1


def test_many_sessions_close_without_scanning_all() -> None:
    # 20,000 sessions, each idle after one entry: all but the last few close on the way.
    sz = Sessionizer(_hdfs(idle_timeout=2.0))
    closed = 0
    for i in range(20_000):
        closed += len(sz.push(make_event(f"blk_{i}", float(i))))
        assert sz.open_count <= 3
    assert closed + len(sz.flush()) == 20_000


# -- count windows ---------------------------------------------------------------------


def keys_of(sessions: list[Session]) -> list[list[int]]:
    return [s.keys for s in sessions]


def test_tumbling_count_windows() -> None:
    sessions = group(numbered([None] * 7), SessionConfig(window_size=3))
    assert keys_of(sessions) == [[0, 1, 2], [3, 4, 5], [6]]
    assert [s.id for s in sessions] == ["w000000", "w000001", "w000002"]
    assert [s.closed_by for s in sessions] == ["window", "window", "end"]


def test_sliding_count_windows_exact_membership() -> None:
    step1 = group(numbered([None] * 5), SessionConfig(window_size=3, window_step=1))
    # Shorter trailing windows [3, 4] and [4] would only repeat events: not emitted.
    assert keys_of(step1) == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    step2 = group(numbered([None] * 7), SessionConfig(window_size=4, window_step=2))
    # Event 6 is in no full window, so the window starting at 4 is emitted short.
    assert keys_of(step2) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6]]
    assert [s.id for s in step2] == ["w000000", "w000001", "w000002"]
    short = group(numbered([None] * 2), SessionConfig(window_size=5, window_step=2))
    assert keys_of(short) == [[0, 1]]
    assert group([], SessionConfig(window_size=3)) == []


def test_count_windows_stream_and_elapsed() -> None:
    events = numbered([0.0, 1.0, 3.0, 6.0, 10.0])
    sz = Sessionizer(SessionConfig(window_size=3, window_step=1))
    emitted = [[s.keys for s in sz.push(e)] for e in events]
    assert emitted == [[], [], [[0, 1, 2]], [[1, 2, 3]], [[2, 3, 4]]]
    assert sz.flush() == []
    windows = group(events, SessionConfig(window_size=3, window_step=1))
    assert [s.elapsed for s in windows] == [[0.0, 1.0, 2.0], [0.0, 2.0, 3.0], [0.0, 3.0, 4.0]]
    # After flush a new stream starts, with window names carrying on.
    more = [sz.push(e) for e in numbered([None] * 3)]
    assert [s.id for s in more[-1]] == ["w000003"]


# -- time windows ----------------------------------------------------------------------


def test_tumbling_time_windows_with_gaps() -> None:
    base = iso_base(2008, 11, 9, 20, 30)  # a multiple of 10 s
    offsets = [0.0, 3.0, 9.5, 10.0, 35.0, 36.0, 59.75]
    events = numbered([base + o for o in offsets])
    sessions = group(events, SessionConfig(time_window=10.0))
    assert [(s.id, s.keys) for s in sessions] == [
        ("2008-11-09T20:30:00Z", [0, 1, 2]),
        ("2008-11-09T20:30:10Z", [3]),
        ("2008-11-09T20:30:30Z", [4, 5]),
        ("2008-11-09T20:30:50Z", [6]),
    ]
    assert sessions[0].elapsed == [0.0, 3.0, 6.5]


def test_sliding_time_windows_stream() -> None:
    base = iso_base(2020, 1, 1)
    events = numbered([base + o for o in (0.0, 4.0, 6.0, 12.0)])
    sz = Sessionizer(SessionConfig(time_window=10.0, time_step=5.0))
    out = [[(s.id, s.keys) for s in sz.push(e)] for e in events]
    # Windows start every 5 s and last 10 s: [-5, 5), [0, 10), [5, 15), [10, 20).
    assert out == [
        [],
        [],
        [("2019-12-31T23:59:55Z", [0, 1])],
        [("2020-01-01T00:00:00Z", [0, 1, 2])],
    ]
    assert [(s.id, s.keys) for s in sz.flush()] == [
        ("2020-01-01T00:00:05Z", [2, 3]),
        ("2020-01-01T00:00:10Z", [3]),
    ]


def test_late_event_joins_only_its_open_windows() -> None:
    stats = Stats()
    config = SessionConfig(time_window=10.0, time_step=5.0)
    sessions = group(numbered([0.0, 12.0, 7.0]), config, stats)
    # At 12, windows [-5, 5) and [0, 10) closed; 7 still fits [5, 15), not late.
    assert [(s.id, s.keys) for s in sessions] == [
        ("1969-12-31T23:59:55Z", [0]),
        ("1970-01-01T00:00:00Z", [0]),
        ("1970-01-01T00:00:05Z", [1, 2]),
        ("1970-01-01T00:00:10Z", [1]),
    ]
    assert sessions[2].elapsed == [0.0, -5.0]
    assert stats["late_event"] == 0


def test_fractional_time_window_names() -> None:
    sessions = group(numbered([0.2, 0.7]), SessionConfig(time_window=0.5))
    assert [(s.id, s.keys) for s in sessions] == [
        ("1970-01-01T00:00:00Z", [0]),
        ("1970-01-01T00:00:00.5Z", [1]),
    ]


def test_time_windows_missing_and_late_timestamps() -> None:
    stats = Stats()
    sessions = group(numbered([0.0, None, 12.0]), SessionConfig(time_window=10.0), stats)
    assert [s.keys for s in sessions] == [[0, 1], [2]]  # untimed at the last seen time
    assert sessions[0].elapsed == [0.0, None]
    assert stats["no_timestamp"] == 1

    stats = Stats()
    lead = group(numbered([None, None, 5.0, 15.0]), SessionConfig(time_window=10.0), stats)
    assert [s.keys for s in lead] == [[0, 1, 2], [3]]  # leading ones wait for a time
    assert stats["no_timestamp"] == 2

    stats = Stats()
    assert group(numbered([None] * 3), SessionConfig(time_window=10.0), stats) == []
    assert stats["no_timestamp_dropped"] == 3

    stats = Stats()
    late = group(numbered([0.0, 25.0, 3.0, 21.0]), SessionConfig(time_window=10.0), stats)
    # 3.0 arrives after its window closed: kept, at the clock (25), and counted.
    assert [(s.id, s.keys) for s in late] == [
        ("1970-01-01T00:00:00Z", [0]),
        ("1970-01-01T00:00:20Z", [1, 2, 3]),
    ]
    assert stats["late_event"] == 1


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (SessionConfig(), "exactly one"),
        (SessionConfig(id_pattern=HDFS, window_size=3), "exactly one"),
        (SessionConfig(id_pattern=HDFS, id_field="req"), "exactly one"),
        (SessionConfig(id_pattern="blk_(\\d+"), "does not compile"),
        (SessionConfig(id_pattern=""), "non-empty"),
        (SessionConfig(id_field=""), "non-empty"),
        (SessionConfig(id_field="req", search_raw_line=True), "search_raw_line"),
        (SessionConfig(window_size=0), "positive integer"),
        (SessionConfig(window_size=True), "positive integer"),  # type: ignore[arg-type]
        (SessionConfig(window_size=3, window_step=0), "positive integer"),
        (SessionConfig(window_size=3, window_step=4), "must not exceed"),
        (SessionConfig(window_size=5000, window_step=1), "over 1000 windows"),
        (SessionConfig(window_step=2), "exactly one"),
        (SessionConfig(id_pattern=HDFS, window_step=2), "window_step needs window_size"),
        (SessionConfig(time_window=-1.0), "positive number"),
        (SessionConfig(time_window=math.nan), "positive number"),
        (SessionConfig(time_window="60"), "number of seconds"),  # type: ignore[arg-type]
        (SessionConfig(time_window=10.0, time_step=20.0), "must not exceed"),
        (SessionConfig(window_size=3, time_step=1.0), "time_step needs time_window"),
        (SessionConfig(id_pattern=HDFS, idle_timeout=0.0), "idle_timeout"),
        (SessionConfig(id_pattern=HDFS, max_open=0), "max_open"),
        (SessionConfig(window_size=3, idle_timeout=5.0), "only to id sessions"),
        (SessionConfig(time_window=3.0, max_open=5), "only to id sessions"),
        (SessionConfig(window_size=3, keep_unidentified=True), "keep_unidentified"),
    ],
)
def test_config_validation(config: SessionConfig, needle: str) -> None:
    with pytest.raises(SessionConfigError) as info:
        Sessionizer(config)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_valid_configs_are_accepted() -> None:
    for config in (
        SessionConfig(id_pattern=HDFS, idle_timeout=0.5, max_open=1, keep_unidentified=True),
        SessionConfig(id_field="req"),
        SessionConfig(id_pattern=r"\d+", search_raw_line=True),
        SessionConfig(window_size=1),
        SessionConfig(window_size=10, window_step=10),
        SessionConfig(time_window=60, time_step=15),
    ):
        config.validate()
        assert Sessionizer(config).flush() == []


# -- streaming equals batch; random streams ---------------------------------------------

ID_TOKENS = ["blk_1", "blk_2", "blk_-3", "blk_44"]
WORDS = ["x", "blk_", "blk_-", "done", "", "blk_2x"]  # near misses that still match or not
TIMESTAMPS = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e300, -1e200, 1.5e9]),
)
EVENTS = st.lists(
    st.tuples(
        st.lists(st.sampled_from(ID_TOKENS + WORDS), max_size=5),
        TIMESTAMPS,
    ),
    max_size=40,
)


def build(spec: list[tuple[list[str], float | None]]) -> list[Event]:
    return [
        make_event(" ".join(tokens), ts, key=i, lineno=i + 1) for i, (tokens, ts) in enumerate(spec)
    ]


def expected_elapsed(events: list[Event]) -> list[float | None]:
    """Elapsed times by the definition, non-finite timestamps counting as missing."""
    times = [
        t if t is not None and abs(t) < 1e11 else None for t in (e.record.timestamp for e in events)
    ]
    out: list[float | None] = [0.0] if events else []
    for prev, cur in pairwise(times):
        out.append(None if prev is None or cur is None else cur - prev)
    return out


def expected_ids(event: Event) -> set[str]:
    """Ids by token, independent of the regex: whole tokens that are HDFS block ids,
    plus the block id that starts "blk_2x" (the preset has no word boundary)."""
    ids = set()
    for token in event.record.content.split():
        if token in ID_TOKENS:
            ids.add(token)
        elif token == "blk_2x":
            ids.add("blk_2")
    return ids


@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_random_streams_id_mode_membership(spec: list[tuple[list[str], float | None]]) -> None:
    events = build(spec)
    stats = Stats()
    sessions = group(events, _hdfs(), stats)
    sz = Sessionizer(_hdfs())
    streamed = [s for e in events for s in sz.push(e)] + sz.flush()
    assert streamed == sessions  # no timeout, no eviction: all at flush, same order
    assert len({s.id for s in sessions}) == len(sessions)
    for session in sessions:
        want = [e for e in events if session.id in expected_ids(e)]
        assert session.events == want  # exactly its events, in stream order
        assert session.elapsed == expected_elapsed(want)
    for event in events:
        holders = {s.id for s in sessions if any(x is event for x in s.events)}
        assert holders == expected_ids(event)
    assert stats["no_session_id"] == sum(1 for e in events if not expected_ids(e))


@settings(max_examples=150, deadline=None)
@given(
    EVENTS,
    st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e5)),
    st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
)
def test_random_streams_with_closing_lose_nothing(
    spec: list[tuple[list[str], float | None]], timeout: float | None, max_open: int | None
) -> None:
    events = build(spec)
    stats = Stats()
    sessions = group(events, _hdfs(idle_timeout=timeout, max_open=max_open), stats)
    # Sessions of one id, in order, concatenate to exactly the events with that id.
    for sid in ID_TOKENS:
        joined = [e for s in sessions if s.id == sid for e in s.events]
        assert joined == [e for e in events if sid in expected_ids(e)]
    assert stats["evicted_session"] == sum(s.closed_by == "evicted" for s in sessions)
    if timeout is None and max_open is not None:
        assert stats["evicted_session"] >= len({s.id for s in sessions}) - max_open
    sz = Sessionizer(_hdfs(idle_timeout=timeout, max_open=max_open))
    for event in events:
        sz.push(event)
        assert max_open is None or sz.open_count <= max_open


@settings(max_examples=150, deadline=None)
@given(
    EVENTS,
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
)
def test_random_count_windows_cover_every_event(
    spec: list[tuple[list[str], float | None]], size: int, step: int
) -> None:
    step = min(step, size)
    events = build(spec)
    windows = group(events, SessionConfig(window_size=size, window_step=step))
    covered: set[int] = set()
    for n, window in enumerate(windows):
        keys = window.keys
        assert keys == list(range(n * step, n * step + len(keys)))  # contiguous, in place
        assert 1 <= len(keys) <= size
        assert window.elapsed == expected_elapsed(window.events)
        covered.update(keys)
    assert covered == set(range(len(events)))


@settings(max_examples=150, deadline=None)
@given(
    EVENTS,
    st.sampled_from([(10.0, 10.0), (10.0, 5.0), (25.0, 10.0), (0.3, 0.1), (1e4, 1e4)]),
)
def test_random_time_windows_never_lose_silently(
    spec: list[tuple[list[str], float | None]], sizes: tuple[float, float]
) -> None:
    events = build(spec)
    stats = Stats()
    windows = group(events, SessionConfig(time_window=sizes[0], time_step=sizes[1]), stats)
    seen = {id(e) for w in windows for e in w.events}
    lost = sum(id(e) not in seen for e in events)
    assert lost == stats["no_timestamp_dropped"]
    assert len({w.id for w in windows}) == len(windows)
    for window in windows:
        assert window.events and len(window.elapsed) == len(window.events)


# -- real data -------------------------------------------------------------------------


def read_contents(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["Content"] for row in csv.DictReader(handle)]


def test_hdfs_2k_sessions_match_independent_count(shared_data: Callable[..., Path]) -> None:
    contents = read_contents(shared_data("loghub-2k", "HDFS", "HDFS_2k.log_structured.csv"))
    events = [make_event(c, lineno=i + 1) for i, c in enumerate(contents)]
    stats = Stats()
    sessions = group(events, _hdfs(), stats)
    blocks = set()
    memberships = 0
    for content in contents:
        found = set(re.findall(r"blk_-?[0-9]+", content))
        blocks |= found
        memberships += len(found)
    assert len(sessions) == len(blocks)
    assert {s.id for s in sessions} == blocks
    assert sum(len(s) for s in sessions) == memberships
    assert stats["no_session_id"] == sum(1 for c in contents if "blk_" not in c)


def test_openstack_2k_instances_match_independent_count(
    shared_data: Callable[..., Path],
) -> None:
    contents = read_contents(
        shared_data("loghub-2k", "OpenStack", "OpenStack_2k.log_structured.csv")
    )
    events = [make_event(c) for c in contents]
    sessions = group(events, SessionConfig(id_pattern=SESSION_PRESETS["openstack"]))
    marker = "[instance: "
    instances = {
        c[i + len(marker) : i + len(marker) + 36] for c in contents if (i := c.find(marker)) >= 0
    }
    assert len(sessions) == len(instances) > 0
    assert {s.id for s in sessions} == instances
