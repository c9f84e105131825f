"""``pipeline.read_raw_sessions``: its column fast path gives what the object path gives.

The object path (``formats -> parsing -> sessions.group``) runs for configurations the fast
path does not cover; ``max_open`` set far beyond the session count selects it here without
changing any result, so both can be compared on the same input.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from logwarden.io.formats import get_format
from logwarden.io.ingest import RawSessions, read_raw_sessions
from logwarden.models.params import build_series
from logwarden.parsing import TemplateMiner
from logwarden.parsing.miner import Slot
from logwarden.records import Line
from logwarden.sessions import SessionConfig, SessionTable
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

FMT = "<Date> <Time> <Level> <Content>"


def both(
    path: Path, fmt: str, pattern: str, *, raw_line: bool = False, **kw: object
) -> tuple[RawSessions, RawSessions]:
    fast = read_raw_sessions(
        [str(path)], fmt, SessionConfig(id_pattern=pattern, search_raw_line=raw_line), **kw
    )
    slow_kw = dict(kw)
    if isinstance(kw.get("miner"), TemplateMiner):  # the miner learns: give each its own
        slow_kw["miner"] = TemplateMiner.from_state(*kw["miner"].to_state())  # type: ignore[union-attr]
    slow = read_raw_sessions(
        [str(path)],
        fmt,
        SessionConfig(id_pattern=pattern, search_raw_line=raw_line, max_open=10**9),
        **slow_kw,
    )
    assert isinstance(fast.sessions, SessionTable)
    assert not isinstance(slow.sessions, SessionTable)
    return fast, slow


def assert_same(fast: RawSessions, slow: RawSessions) -> None:
    assert fast.ids == slow.ids
    assert fast.keys == slow.keys
    assert fast.lines == slow.lines
    assert fast.templates == slow.templates
    assert fast.stats.counts == slow.stats.counts
    assert fast.events == slow.events
    assert len(fast.sessions) == len(slow.sessions)
    for a, b in zip(fast.sessions, slow.sessions, strict=True):
        assert (a.id, a.elapsed, a.keys) == (b.id, b.elapsed, b.keys)
        for e, f in zip(a.events, b.events, strict=True):
            assert (e.key, e.template, e.params) == (f.key, f.template, f.params)
            assert (e.record.content, e.record.timestamp) == (f.record.content, f.record.timestamp)
            assert e.record.line.text == f.record.line.text
    sa, sb = build_series(fast.sessions), build_series(slow.sessions)
    assert sa.keys() == sb.keys()
    for unit, x in sa.items():
        y = sb[unit]
        assert (x.positions, x.irregular, x.prev) == (y.positions, y.irregular, y.prev)
        np.testing.assert_array_equal(x.values, y.values)
        np.testing.assert_array_equal(x.refs, y.refs)


def test_simulated_logs_train_and_match_only(tmp_path: Path) -> None:
    train, test = tmp_path / "train.log", tmp_path / "test.log"
    simulate(SimConfig(seed=41, sessions=400, normal_only=True)).write(train)
    simulate(SimConfig(seed=42, sessions=300, anomaly_rate=0.3)).write(test)
    fast, slow = both(train, SIM_FORMAT, SIM_SESSION_REGEX)
    assert_same(fast, slow)
    # Detection: the trained parser matches only; lines it cannot match get U keys.
    fast_t, slow_t = both(
        test, SIM_FORMAT, SIM_SESSION_REGEX, miner=fast.miner, learn=False
    )  # fmt: skip
    assert_same(fast_t, slow_t)
    assert any(k.startswith("U") for keys in fast_t.keys for k in keys)


BAD_LINES = [
    "2026-03-01 10:00:00.100 INFO job j-1 started with 4 workers",
    "",  # empty
    "2026-03-01 10:00:00.250 INFO job j-1 read 1.5 MB in 20ms",
    "not-a-log-line j-1",  # does not match the format: whole line is the content
    "2026-02-30 10:00:01.000 INFO job j-2 started with 2 workers",  # no such date
    "9999-12-31 23:59:59.000 INFO job j-2 read 3 KB in 5ms",  # beyond the timestamp limit
    "2026-03-01 10:00:02.000 INFO copy from j-1 to j-2 of 7 blocks",  # two ids: both
    "2026-03-01 10:00:02.500 INFO job j-1 j-1 retried 1 times",  # one id twice: once
    "2026-03-01 10:00:03.000 INFO heartbeat 12 ok",  # no id
    "2026-03-01 10:00:03.\udcff00 INFO job j-3 odd \x00 bytes",
    "2026-03-01 10:00:04.000 INFO job j-3 read " + "9" * 50 + " MB in 1ms",
    "2026-03-01 10:00:04.500 WARN job j-1 done",
]


def test_bad_input_counts_and_multi_id_lines_match(tmp_path: Path) -> None:
    log = tmp_path / "bad.log.gz"
    data = "\n".join(BAD_LINES).encode("utf-8", "surrogateescape") + b"\n"
    log.write_bytes(gzip.compress(data))
    fast, slow = both(log, FMT, r"\bj-\d+")
    assert_same(fast, slow)
    counts = fast.stats.counts
    assert counts["empty_line"] == 1 and counts["unmatched_format"] == 1
    assert counts["bad_timestamp"] >= 3 and counts["no_session_id"] == 1
    assert counts["invalid_utf8"] == 1 and counts["nul_bytes"] == 1
    assert fast.ids[:3] == ["j-1", "j-2", "j-3"]
    copy_line = BAD_LINES[6]
    assert sum(copy_line in lines for lines in fast.lines) == 2


def test_lines_without_id_count_their_warnings_and_errors_alike(tmp_path: Path) -> None:
    """Lines without a session id are judged by nothing: those of a level that says
    something went wrong are counted apart (no_session_id_severe), by the column path,
    the object path and the stream alike."""
    from logwarden.io.ingest import SessionStream

    log = tmp_path / "levels.log"
    rows = [
        "INFO job j-1 started",
        "ERROR disk full on node 3",
        "WARN slow heartbeat",
        "INFO heartbeat ok",
        "WARNING retrying later",
        "FATAL out of memory",
        "ERROR job j-1 failed",  # has an id: judged
        "error lower-case level",
        "not-a-log-line ERROR",  # matches no format: no level
    ]
    lines = [
        r if r.startswith("not") else f"2026-03-01 10:00:{i:02d} {r}" for i, r in enumerate(rows)
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fast, slow = both(log, FMT, r"\bj-\d+")
    assert_same(fast, slow)
    assert fast.stats["no_session_id"] == 7 and fast.stats["no_session_id_severe"] == 5
    assert "no_session_id_severe" not in fast.stats.problems()  # a part of no_session_id
    for timeout in (None, 1.0):
        cfg = SessionConfig(id_pattern=r"\bj-\d+", idle_timeout=timeout)
        stream = SessionStream([str(log)], FMT, cfg, fast.miner)
        list(stream)
        counts = stream.stats.counts.copy()
        counts.pop("reopened_session", None)  # j-1 after 6 s, with the 1 s timeout
        assert counts == fast.stats.counts


@pytest.mark.parametrize("batch_bytes", [None, 120])
def test_time_going_back_is_counted_alike_on_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes: int | None
) -> None:
    """Rotated logs given newest first: the older file's sessions merged with the newer's
    of the same id, without a word. Lines further back than the idle timeout (an hour
    without one) count as time_went_back, and a file whose first timed line is one as
    input_went_back, by the object path, the column path and the stream alike."""
    from logwarden.io import ingest
    from logwarden.io.ingest import SessionStream
    from logwarden.io.sources import SourceConfig

    if batch_bytes is not None:  # a line or two a batch: files start mid-way of nothing
        monkeypatch.setattr(
            ingest, "SourceConfig", lambda **kw: SourceConfig(chunk_bytes=batch_bytes, **kw)
        )

    def log(name: str, day: int, extra: list[str] = ()) -> str:
        rows = [f"2026-03-{day:02d} 10:00:{i:02d} INFO job j-{i % 3} step {i}" for i in range(9)]
        path = tmp_path / name
        path.write_text("\n".join([*extra, *rows]) + "\n", encoding="utf-8")
        return str(path)

    # Its first lines untimed (no match) and empty: the first timed line decides.
    older = log("app.log.1", 1, ["not a log line j-1", ""])
    newer = log("app.log", 2)
    late = log("late.log", 2, ["2026-03-02 09:30:00 INFO job j-1 late by half an hour"])
    cases = [
        ([newer, older], 9, 1),  # newest first: every line of the older one goes back
        ([older, newer], 0, 0),
        ([newer, newer], 0, 0),  # the same times again: not an hour back
        ([newer, late, older], 9, 1),  # half an hour back: within the hour
    ]
    pattern = r"\bj-\d+"
    for paths, lines_back, inputs_back in cases:
        fast = read_raw_sessions(paths, FMT, SessionConfig(id_pattern=pattern))
        slow = read_raw_sessions(paths, FMT, SessionConfig(id_pattern=pattern, max_open=10**9))
        assert isinstance(fast.sessions, SessionTable)
        assert fast.stats.counts == slow.stats.counts, paths
        assert fast.stats["time_went_back"] == lines_back, paths
        assert fast.stats["input_went_back"] == inputs_back, paths
        stream = SessionStream(paths, FMT, SessionConfig(id_pattern=pattern), fast.miner)
        list(stream)
        assert stream.stats.counts == fast.stats.counts
    # With an idle timeout, the timeout is how far back a line may go: half an hour too.
    paths = [newer, late, older]
    cfg = SessionConfig(id_pattern=pattern, idle_timeout=60.0)
    slow = read_raw_sessions(paths, FMT, cfg)
    stream = SessionStream(paths, FMT, cfg, slow.miner)
    list(stream)
    assert slow.stats["time_went_back"] == 10 and slow.stats["input_went_back"] == 2
    assert stream.stats.counts == slow.stats.counts


@pytest.mark.parametrize(
    ("pattern", "raw_line"),
    [
        (r"(j)-(\d+)", False),  # two groups: group 1 is the id (finditer path)
        (r"(?:INFO|WARN) job (j-\d+)", True),  # searched in the whole line
    ],
)
def test_id_pattern_variants_match(tmp_path: Path, pattern: str, raw_line: bool) -> None:
    log = tmp_path / "v.log"
    log.write_text("\n".join(BAD_LINES[:9]) + "\n", encoding="utf-8")
    fast, slow = both(log, FMT, pattern, raw_line=raw_line)
    assert_same(fast, slow)
    assert fast.ids


def test_configurations_outside_the_fast_path_use_group(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("\n".join(BAD_LINES[:9]) + "\n", encoding="utf-8")
    windows = read_raw_sessions([str(log)], FMT, SessionConfig(window_size=3))
    assert not isinstance(windows.sessions, SessionTable) and windows.ids
    timed = read_raw_sessions([str(log)], FMT, SessionConfig(id_pattern=r"j-\d", idle_timeout=1))
    assert not isinstance(timed.sessions, SessionTable)


def test_worker_processes_give_the_same_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detection scans batches in forked workers on large inputs; small batches here force
    many of them, with unknown lines and bad input spread across batches."""
    from logwarden.io import ingest as pipeline
    from logwarden.io.sources import SourceConfig

    train, test = tmp_path / "train.log", tmp_path / "test.log"
    simulate(SimConfig(seed=51, sessions=300, normal_only=True)).write(train)
    mixed = simulate(SimConfig(seed=52, sessions=300, anomaly_rate=0.3))
    lines = mixed.lines[:]
    for i, bad in zip(range(50, len(lines), 700), BAD_LINES, strict=False):
        lines.insert(i, bad)
    test.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    state = read_raw_sessions([str(train)], SIM_FORMAT, cfg).miner.to_state()[0]
    # Many small batches, counted as the reader hands them out.
    monkeypatch.setattr(pipeline, "SourceConfig", lambda **kw: SourceConfig(chunk_bytes=4096, **kw))
    batches = 0
    real = pipeline.LineReader.text_batches

    def counted(self: pipeline.LineReader) -> object:
        nonlocal batches
        for batch in real(self):
            batches += 1
            yield batch

    monkeypatch.setattr(pipeline.LineReader, "text_batches", counted)
    runs = [
        read_raw_sessions(
            [str(test)],
            SIM_FORMAT,
            SessionConfig(id_pattern=SIM_SESSION_REGEX),
            miner=TemplateMiner.from_state(state),
            learn=False,
            workers=workers,
        )
        for workers in (0, 2)
    ]
    assert batches > 20
    serial, parallel = runs
    assert_same(parallel, serial)
    assert any(k.startswith("U") for keys in parallel.keys for k in keys)
    assert parallel.stats["unmatched_format"] >= 1 and parallel.stats["empty_line"] >= 1


class DyingMiner(TemplateMiner):
    """A match-only miner whose worker processes die on one message (as a kill for memory
    would: no cleanup, no result); the parent process parses it normally."""

    parent = 0
    marker = ""

    def parse_slots(
        self, content: str, learn: bool = True
    ) -> tuple[int | None, list[str], list[Slot], str]:
        if os.getpid() != self.parent and content == self.marker:
            os._exit(9)
        return super().parse_slots(content, learn)


def test_a_worker_that_dies_costs_time_not_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-run (out of memory, say): its batches are scanned in the parent
    and nothing is lost; the summary counts it."""
    from logwarden.io import ingest as pipeline
    from logwarden.io.sources import SourceConfig

    log = tmp_path / "m.log"
    simulate(SimConfig(seed=61, sessions=300, anomaly_rate=0.2)).write(log)
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    state = read_raw_sessions([str(log)], SIM_FORMAT, cfg).miner.to_state()[0]
    monkeypatch.setattr(pipeline, "SourceConfig", lambda **kw: SourceConfig(chunk_bytes=4096, **kw))
    serial = read_raw_sessions(
        [str(log)], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX),
        miner=TemplateMiner.from_state(state), learn=False, workers=0,
    )  # fmt: skip
    miner = DyingMiner.from_state(state)
    assert isinstance(miner, DyingMiner)
    miner.parent = os.getpid()
    # The message of a line early in the log: the forked workers inherit the miner.
    miner.marker = get_format(SIM_FORMAT).parse(Line(serial.lines[4][0], "m", 0, 1)).content
    broken = read_raw_sessions(
        [str(log)], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX),
        miner=miner, learn=False, workers=2,
    )  # fmt: skip
    assert broken.stats["worker_died"] == 1
    assert broken.ids == serial.ids and broken.keys == serial.keys
    assert broken.lines == serial.lines
    counts = dict(broken.stats.counts)
    counts.pop("worker_died")
    assert counts == dict(serial.stats.counts)
