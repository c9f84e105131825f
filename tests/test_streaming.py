"""Bounded-memory detection: sessions scored as soon as they are complete.

``io.ingest.SessionStream`` completes id sessions while reading (idle past the timeout in
log time, or the end of input) with exactly ``Sessionizer``'s rule; ``Detector.stream``
scores them a chunk at a time, in worker processes or not, and gives the verdicts of the
whole-input run (``Detector.read`` + ``verdicts``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logwarden.cli import main
from logwarden.detect import DeepLog, Detector
from logwarden.detect.detector import InputSpec, idle_timeout_from
from logwarden.errors import ConfigError
from logwarden.io.ingest import (
    WORKER_NICENESS,
    SessionStream,
    WorkerPool,
    read_raw_sessions,
    session_config,
)
from logwarden.parsing import TemplateMiner
from logwarden.sessions import SessionConfig, SessionTable
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

FMT = "<Date> <Time> <Level> <Content>"
FAST = ["--hidden", "16", "--layers", "1", "--device", "cpu", "--folds", "2", "-q"]
RAW = ["--format", SIM_FORMAT, "--session", SIM_SESSION_REGEX]


def sessions_of(chunks: Any) -> list[tuple[str, list[str], list[str]]]:
    return [
        (sid, keys, lines)
        for c in chunks
        for sid, keys, lines in zip(c.ids, c.keys, c.lines, strict=True)
    ]


@pytest.fixture(scope="module")
def sim_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("streaming")
    simulate(SimConfig(seed=71, sessions=600, normal_only=True)).write(d / "n.log")
    simulate(SimConfig(seed=72, sessions=500, anomaly_rate=0.2)).write(d / "m.log")
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    train = read_raw_sessions([str(d / "n.log")], SIM_FORMAT, cfg)
    return {"dir": d, "state": train.miner.to_state(), "train": train}


def miner_of(sim_logs: dict[str, Any]) -> TemplateMiner:
    return TemplateMiner.from_state(*sim_logs["state"])


@pytest.mark.parametrize("batch_bytes", [None, 4096])
def test_without_timeout_the_stream_gives_read_raw_sessions(
    sim_logs: dict[str, Any], monkeypatch: pytest.MonkeyPatch, batch_bytes: int | None
) -> None:
    """In order, keys, lines and tables, whatever the chunk size, the batches read and
    however often the held lines are compacted."""
    log = str(sim_logs["dir"] / "m.log")
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    whole = read_raw_sessions([log], SIM_FORMAT, cfg, miner=miner_of(sim_logs), learn=False)
    read_in_batches_of(monkeypatch, batch_bytes)
    stream = SessionStream(
        [log], SIM_FORMAT, cfg, miner_of(sim_logs), chunk_sessions=37, compact_rows=500
    )
    chunks = list(stream)
    assert len(chunks) > 5
    assert sessions_of(chunks) == list(zip(whole.ids, whole.keys, whole.lines, strict=True))
    assert stream.stats.counts == whole.stats.counts
    assert stream.events == whole.events and stream.sessions == len(whole.ids)
    streamed = [s for c in chunks for s in c.sessions]
    for a, b in zip(streamed, whole.sessions, strict=True):
        assert (a.id, a.elapsed, a.keys) == (b.id, b.elapsed, b.keys)
        for e, f in zip(a.events, b.events, strict=True):
            assert (e.record.line.lineno, e.params, e.template) == (
                f.record.line.lineno,
                f.params,
                f.template,
            )


@pytest.mark.parametrize("batch_bytes", [None, 4096])
def test_rows_know_their_input_line_with_empty_lines_counted(
    sim_logs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    batch_bytes: int | None,
) -> None:
    """Verdicts name the flagged entry's input line, counted as ``--line-scores``' LineId
    counts (every line from 1, empty ones too): the stream's rows and the whole read's
    know it, whatever the batches (they counted non-empty lines only, so a line number
    named another line after the first empty one)."""
    lines = (sim_logs["dir"] / "m.log").read_text(encoding="utf-8").splitlines()
    for at in (0, 1, 2, 40, 41, 777, len(lines) - 1):  # runs, a start, near the end
        lines.insert(at, "")
    log = tmp_path / "gaps.log"
    log.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    read_in_batches_of(monkeypatch, batch_bytes)
    whole = read_raw_sessions([str(log)], SIM_FORMAT, cfg, miner=miner_of(sim_logs), learn=False)
    stream = SessionStream(
        [str(log)], SIM_FORMAT, cfg, miner_of(sim_logs), chunk_sessions=37, compact_rows=500
    )
    tables = [whole.sessions] + [c.sessions for c in stream]
    seen = 0
    for table in tables:
        assert isinstance(table, SessionTable)
        for rows in table.members:
            for r in rows:
                n = table.line_number(r)
                assert lines[n - 1] == table.texts[r] != "", n
                seen += 1
    assert seen == 2 * sum(len(k) for k in whole.keys)


def read_in_batches_of(monkeypatch: pytest.MonkeyPatch, batch_bytes: int | None) -> None:
    """Readers take ``batch_bytes`` at a time (a line or two for 100); None: as they are."""
    if batch_bytes is None:
        return
    from logwarden.io import ingest
    from logwarden.io.sources import SourceConfig

    monkeypatch.setattr(
        ingest, "SourceConfig", lambda **kw: SourceConfig(chunk_bytes=batch_bytes, **kw)
    )


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    """(timestamp, message) rows as lines of FMT."""
    path.write_text("".join(f"{t} INFO {m}\n" for t, m in rows), encoding="utf-8")


def write_gappy_log(path: Path) -> None:
    """Sessions a..e with gaps; ``a`` idles 50 s and comes back (a second session a),
    ``c`` has lines without a timestamp, some lines have no id."""
    rows = [
        ("2024-01-01 10:00:00", "start job a"),
        ("2024-01-01 10:00:01", "start job b"),
        ("bad-date x", "step job c"),
        ("2024-01-01 10:00:02", "step job a"),
        ("2024-01-01 10:00:05", "no id here"),
        ("2024-01-01 10:00:09", "step job b"),
        ("2024-01-01 10:00:20", "start job d"),
        ("2024-01-01 10:00:30", "step job d"),
        ("2024-01-01 10:00:52", "step job a"),
        ("2024-01-01 10:00:53", "stop job a"),
        ("2024-01-01 10:00:53", "step job c"),
        ("2024-01-01 10:00:40", "late job b"),
        ("2024-01-01 10:01:30", "start job e"),
        ("2024-01-01 10:01:31", "stop job d"),
    ]
    write_rows(path, rows)


@pytest.mark.parametrize("batch_bytes", [None, 100])
@pytest.mark.parametrize("timeout", [5.0, 15.0, 30.0, 1000.0])
def test_idle_timeout_completes_sessions_as_the_sessionizer_does(
    tmp_path: Path, timeout: float, batch_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_in_batches_of(monkeypatch, batch_bytes)
    log = tmp_path / "g.log"
    write_gappy_log(log)
    cfg = SessionConfig(id_pattern=r"job (\w)", idle_timeout=timeout)
    miner = TemplateMiner()
    read_raw_sessions([str(log)], FMT, SessionConfig(id_pattern=r"job (\w)"), miner=miner)
    # The object path: every line through Sessionizer (group), idle closes included.
    expected = read_raw_sessions([str(log)], FMT, cfg, miner=miner, learn=False)
    assert not isinstance(expected.sessions, SessionTable)
    want = list(zip(expected.ids, expected.lines, strict=True))
    for chunk_sessions in (1, 2, 100):
        stream = SessionStream([str(log)], FMT, cfg, miner, chunk_sessions=chunk_sessions)
        got = sessions_of(stream)
        assert [(sid, lines) for sid, _, lines in got] == want
        assert [keys for _, keys, _ in got] == expected.keys
        reopened = len(want) - len({sid for sid, _ in want})
        assert stream.stats["reopened_session"] == reopened
    # a comes back after 50 s, b after 31 s, d after 61 s: all within 1000 s.
    assert (reopened == 0) == (timeout == 1000.0)


def write_multi_id_log(path: Path) -> None:
    """Lines that name several sessions (HDFS's "ask ... to delete blk_a blk_b"): the
    first line starts two at once, one names its ids against their first appearance, and
    after a gap two ids come back on one line."""
    rows = [
        ("2024-01-01 10:00:00", "delete job b job a"),
        ("2024-01-01 10:00:01", "start job c"),
        ("2024-01-01 10:00:02", "step job a"),
        ("2024-01-01 10:00:03", "move job d job c job e"),
        ("2024-01-01 10:00:04", "step job e job e"),
        ("2024-01-01 10:00:40", "step job f"),
        ("2024-01-01 10:00:41", "back job b job a"),
        ("2024-01-01 10:00:42", "stop job c"),
    ]
    write_rows(path, rows)


@pytest.mark.parametrize("batch_bytes", [None, 100])
@pytest.mark.parametrize("timeout", [None, 10.0, 1000.0])
def test_a_line_naming_several_sessions_belongs_to_each_of_them(
    tmp_path: Path, timeout: float | None, batch_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every session a multi-id line starts is completed and comes out, in the order of
    the whole-input read (first line, then the id's place in it). Two sessions that began
    on one line once shared one order: the second never counted as complete, and every
    later session was held back and lost without a count."""
    read_in_batches_of(monkeypatch, batch_bytes)
    log = tmp_path / "m.log"
    write_multi_id_log(log)
    miner = TemplateMiner()
    read_raw_sessions([str(log)], FMT, SessionConfig(id_pattern=r"job (\w)"), miner=miner)
    cfg = SessionConfig(id_pattern=r"job (\w)", idle_timeout=timeout)
    expected = read_raw_sessions([str(log)], FMT, cfg, miner=miner, learn=False)
    want = list(zip(expected.ids, expected.keys, expected.lines, strict=True))
    assert [sid for sid, _, _ in want][:5] == ["b", "a", "c", "d", "e"]
    for chunk_sessions in (1, 3, 100):
        stream = SessionStream([str(log)], FMT, cfg, miner, chunk_sessions=chunk_sessions)
        assert sessions_of(stream) == want
        assert stream.stats["late_session"] == 0
    assert len(want) == (9 if timeout == 10.0 else 6)  # a, b and c come back after 37-39 s


@pytest.mark.parametrize("compact_rows", [1, 3, 1000])
def test_values_of_lines_of_several_sessions_survive_chunks_and_compactions(
    tmp_path: Path, compact_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A line of several sessions is a row of each: its parameter values (taken from the
    # flat list, or, for a line no template matches, from its own list) go to every one
    # of them through the chunks and the compactions that renumber the rows.
    read_in_batches_of(monkeypatch, 100)
    known = tmp_path / "known.log"
    write_rows(known, [
        ("2024-01-01 09:00:00", "start job x size 1"),
        ("2024-01-01 09:00:01", "start job y size 2"),
        ("2024-01-01 09:00:02", "merge job x job y size 3"),
        ("2024-01-01 09:00:03", "merge job y job x size 4"),
        ("2024-01-01 09:00:04", "stop job x"),
        ("2024-01-01 09:00:05", "stop job y"),
    ])  # fmt: skip
    log = tmp_path / "m.log"
    write_rows(log, [
        ("2024-01-01 10:00:00", "start job a size 10"),
        ("2024-01-01 10:00:01", "start job b size 20"),
        ("2024-01-01 10:00:02", "merge job a job b size 30"),
        ("2024-01-01 10:00:03", "copy job a job b bytes 5"),  # no template knows "copy"
        ("2024-01-01 10:00:04", "start job c size 40"),
        ("2024-01-01 10:00:05", "copy job c job a bytes 7"),
        ("2024-01-01 10:00:06", "copy job b job c bytes 9"),
        ("2024-01-01 10:00:07", "stop job a"),
        ("2024-01-01 10:00:08", "stop job b"),
        ("2024-01-01 10:00:09", "stop job c"),
    ])  # fmt: skip
    miner = TemplateMiner()
    read_raw_sessions([str(known)], FMT, SessionConfig(id_pattern=r"job (\w)"), miner=miner)
    cfg = SessionConfig(id_pattern=r"job (\w)", idle_timeout=1000.0)
    expected = read_raw_sessions([str(log)], FMT, cfg, miner=miner, learn=False)

    def params(sessions: Any) -> list[list[list[str]]]:
        return [[[p.value for p in e.params] for e in s.events] for s in sessions]

    want = params(expected.sessions)
    values = [v for ev in want for vals in ev for v in vals]
    assert values.count("30") == 2 and values.count("7") == 2  # each line in two sessions
    stream = SessionStream([str(log)], FMT, cfg, miner, chunk_sessions=1, compact_rows=compact_rows)
    got = [
        (sid, p)
        for chunk in stream
        for sid, p in zip(chunk.ids, params(chunk.sessions), strict=True)
    ]
    assert got == list(zip(expected.ids, want, strict=True))


@pytest.mark.parametrize("compact_rows", [1, 1000])
def test_timestamps_out_of_range_are_missing_clocks_through_chunks_and_compactions(
    tmp_path: Path, compact_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A timestamp beyond the limit (year 9999) is kept as the line says and counts as
    # missing for elapsed times: the stream keeps one column of timestamps and the rows
    # whose clock is None, renumbered by compactions.
    read_in_batches_of(monkeypatch, 100)
    log = tmp_path / "t.log"
    write_rows(log, [
        ("2024-01-01 10:00:00", "start job a"),
        ("2024-01-01 10:00:01", "start job b"),
        ("9999-12-31 23:59:59", "step job a"),
        ("2024-01-01 10:00:03", "step job b"),
        ("2024-01-01 10:00:04", "stop job a"),
        ("9999-12-31 23:59:59", "stop job b"),
    ])  # fmt: skip
    miner = TemplateMiner()
    read_raw_sessions([str(log)], FMT, SessionConfig(id_pattern=r"job (\w)"), miner=miner)
    cfg = SessionConfig(id_pattern=r"job (\w)", idle_timeout=1000.0)
    expected = read_raw_sessions([str(log)], FMT, cfg, miner=miner, learn=False)
    want = [(s.id, s.elapsed) for s in expected.sessions]
    assert want == [("a", [0.0, None, None]), ("b", [0.0, 2.0, None])]
    stream = SessionStream([str(log)], FMT, cfg, miner, chunk_sessions=1, compact_rows=compact_rows)
    got = [(s.id, s.elapsed) for chunk in stream for s in chunk.sessions]
    assert got == want
    assert stream.stats["bad_timestamp"] == 2


def test_a_timeout_on_the_simulator_loses_no_line(sim_logs: dict[str, Any]) -> None:
    log = str(sim_logs["dir"] / "m.log")
    whole = read_raw_sessions(
        [log], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX),
        miner=miner_of(sim_logs), learn=False,
    )  # fmt: skip
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX, idle_timeout=2.0)  # too short: splits
    stream = SessionStream([log], SIM_FORMAT, cfg, miner_of(sim_logs), chunk_sessions=50)
    got = sessions_of(stream)
    assert stream.stats["reopened_session"] > 0
    assert stream.max_open < len(whole.ids) / 3
    assert sorted(line for _, _, lines in got for line in lines) == sorted(
        line for lines in whole.lines for line in lines
    )
    # Every comeback within 10 timeouts is counted (later ones are new sessions).
    assert len(whole.ids) < len(got) <= len(whole.ids) + stream.stats["reopened_session"] + 50
    long = SessionStream(
        [log], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX, idle_timeout=1e5),
        miner_of(sim_logs),
    )  # fmt: skip
    assert len(sessions_of(long)) == len(whole.ids) and long.stats["reopened_session"] == 0


def test_key_probabilities_do_not_depend_on_the_batch() -> None:
    """What the key model's window cache relies on (models/keys.py)."""
    sessions = [list("ABCDE"), list("ABCCDE"), list("ABDCE"), list("ACBDE")] * 10
    model = DeepLog(
        window=3, hidden=16, embedding=8, layers=1, epochs=30, device="cpu", folds=0, top_g=2
    )
    model.fit(sessions)  # type: ignore[arg-type]
    net = model.model_.net
    rng = np.random.default_rng(0)
    windows = rng.integers(0, net.outputs, size=(300, 3)).astype(np.int32)
    windows = np.unique(windows, axis=0)
    whole = net.probabilities(windows)
    part = rng.permutation(len(windows))[: len(windows) // 3]
    part.sort()
    assert np.array_equal(whole[part], net.probabilities(windows[part]))


@pytest.fixture(scope="module")
def bundle(sim_logs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "model"
    args = ["train", sim_logs["dir"] / "n.log", *RAW, "--out", out, *FAST, "--epochs", "30"]
    assert main([str(a) for a in args]) == 0
    return out


def same_verdicts(a: list[Any], b: list[Any]) -> None:
    assert [v.session for v in a] == [v.session for v in b]
    for x, y in zip(a, b, strict=True):
        dx, dy = x.to_dict(), y.to_dict()
        sx, sy = dx.pop("score"), dy.pop("score")
        # The parameter networks' float32 sums depend a little on how rows are batched.
        assert sx == pytest.approx(sy, rel=1e-6, abs=1e-9)
        if "deviation" in dx:
            for k in ("error", "expected", "sigmas"):
                assert dx["deviation"].pop(k) == pytest.approx(dy["deviation"].pop(k), rel=1e-4)
        assert dx == dy


@pytest.mark.parametrize("values", ["all", "modelled"])
@pytest.mark.parametrize("workers", [0, 2])
def test_stream_verdicts_equal_the_whole_input_run(
    sim_logs: dict[str, Any], bundle: Path, workers: int, values: str
) -> None:
    # values="modelled" (detect, eval): only the parameter values the parameter models
    # read are kept; the verdicts (parameter findings and their texts included) are those
    # of every value.
    if workers and not hasattr(os, "fork"):
        pytest.skip("worker processes need fork")
    log = str(sim_logs["dir"] / "m.log")
    det = Detector.load(bundle)
    assert det.input.idle_timeout is not None  # learnt by train
    det.input = det.input.override(idle_timeout=1e6)  # nothing splits: the whole-input run
    whole = Detector.load(bundle)
    data = whole.read([log])
    expected = whole.verdicts(data)
    assert any(v.anomalous and v.detector == "params" for v in expected)
    stream = det.stream([log], workers=workers, chunk_sessions=40, values=values)
    chunks = list(stream)
    same_verdicts([v for _, vs in chunks for v in vs], expected)
    assert stream.sessions == len(expected) and stream.entries == data.entries
    assert stream.stats.counts == data.stats.counts
    if values == "modelled":
        modelled_values_only(det, data, chunks)


def modelled_values_only(det: Detector, data: Any, chunks: list[Any]) -> None:
    """Each entry of the stream's chunks holds the values at its key's modelled positions
    (earlier ones empty, later ones left out; lines no template matches keep theirs)."""
    from logwarden.detect.detector import modelled_positions

    kept = modelled_positions(det.model)
    assert kept and any(len(p) < 3 for p in kept.values())
    full = {sid: data.events[i] for i, sid in enumerate(data.ids)}
    seen_cut = seen_kept = 0
    for chunk, _ in chunks:
        for i, sid in enumerate(chunk.ids):
            for ev, whole_ev in zip(chunk.events[i].events, full[sid].events, strict=True):
                values = [p.value for p in ev.params]
                every = [p.value for p in whole_ev.params]
                if ev.key < 0:  # a line no template matches keeps its values
                    assert values == every
                    continue
                wanted = kept.get(ev.key, set())
                assert len(values) == max(wanted, default=-1) + 1
                assert values == [
                    v if j in wanted else "" for j, v in enumerate(every[: len(values)])
                ]
                seen_cut += len(values) < len(every)
                seen_kept += bool(wanted)
    assert seen_cut and seen_kept
    with pytest.raises(ValueError, match="'all' or 'modelled'"):
        det.stream(["any.log"], values="some")


def test_a_dying_worker_costs_time_not_verdicts(
    sim_logs: dict[str, Any], bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = str(sim_logs["dir"] / "m.log")
    det = Detector.load(bundle)
    serial = [v.to_dict() for _, vs in det.stream([log], chunk_sessions=60) for v in vs]
    parent = os.getpid()
    original = DeepLog.verdicts

    def dying_model(self: DeepLog, *a: Any, **kw: Any) -> Any:
        if os.getpid() != parent:
            os._exit(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(DeepLog, "verdicts", dying_model)
    stream = Detector.load(bundle).stream([log], workers=2, chunk_sessions=60)
    broken = [v.to_dict() for _, vs in stream for v in vs]
    assert stream.stats["worker_died"] >= 1
    assert broken == serial


def test_worker_pool_runs_tasks_here_without_workers() -> None:
    with WorkerPool(0, {"double": lambda x: 2 * x}) as pool:
        assert pool.workers == 0 and pool.submit("double", 2) is None
        assert pool.run_here("double", 21) == 42


def _niceness(_: object) -> int:
    return os.nice(0)


def test_workers_yield_the_core_to_the_process_that_feeds_them() -> None:
    # The parent reads and merges for every worker: at an equal priority it got 2/3 of a
    # core on 2 cores and the workers waited for it.
    with WorkerPool(1, {"nice": _niceness}) as pool:
        got = pool.result("nice", None, pool.submit("nice", None))
    assert got == min(19, os.nice(0) + WORKER_NICENESS)
    assert WORKER_NICENESS > 0


def test_idle_timeout_is_learnt_from_training_gaps(sim_logs: dict[str, Any]) -> None:
    train = sim_logs["train"]
    timeout = idle_timeout_from(train.sessions)
    gaps = [g for s in train.sessions for g in s.elapsed[1:] if g is not None]
    assert timeout == max(1.0, 100 * max(gaps))
    assert idle_timeout_from(list(train.sessions)[:50]) <= timeout  # Session objects too
    assert idle_timeout_from([]) is None
    with pytest.raises(ConfigError):
        InputSpec(format=FMT, session="x", idle_timeout=0)
    assert session_config("x", None, idle_timeout=3.0).idle_timeout == 3.0


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_detect_and_eval_stream_the_same_verdicts(
    sim_logs: dict[str, Any], bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = sim_logs["dir"]
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["input"]["idle_timeout"] > 0
    labels = tmp_path / "labels.csv"
    sim = simulate(SimConfig(seed=72, sessions=500, anomaly_rate=0.2))
    labels.write_text(
        "BlockId,Label\n" + "".join(f"{s.session},{s.label}\n" for s in sim.sessions),
        encoding="utf-8",
    )
    runs = {}
    for name, extra in {"one": ["--workers", "1"], "two": ["--workers", "2"]}.items():
        out = tmp_path / f"{name}.jsonl"
        args = ["detect", d / "m.log", "--model", bundle, "--jsonl", out, "--no-drift", *extra]
        assert main([str(a) for a in args]) == 0
        runs[name] = out.read_bytes()
    assert runs["one"] == runs["two"]
    detected = read_rows(tmp_path / "one.jsonl")
    capsys.readouterr()
    out = tmp_path / "eval.jsonl"
    args = ["eval", d / "m.log", "--model", bundle, "--labels", labels, "--json", "--jsonl", out]
    assert main([str(a) for a in args]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    evaluated = read_rows(out)
    assert [r["session"] for r in evaluated] == [r["session"] for r in detected]
    assert [r["anomalous"] for r in evaluated] == [r["anomalous"] for r in detected]
    assert all("diagnosis" not in r for r in evaluated)
    assert report["tp"] + report["fp"] == sum(r["anomalous"] for r in detected)
    # --idle-timeout 0: sessions complete at the end of input only (the same here).
    args = ["detect", d / "m.log", "--model", bundle, "--jsonl", tmp_path / "end.jsonl",
            "--no-drift", "--idle-timeout", "0"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    assert main(["detect", str(d / "m.log"), "--model", str(bundle), "--idle-timeout", "-1"]) == 2
    assert main(["detect", str(d / "m.log"), "--model", str(bundle), "--workers", "-1"]) == 2


def test_detect_html_and_drift_from_the_stream(
    sim_logs: dict[str, Any], bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = sim_logs["dir"]
    html, drift = tmp_path / "r.html", tmp_path / "drift.json"
    args = ["detect", d / "m.log", "--model", bundle, "--html", html, "--drift-json", drift]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    total = int(out.split(" sessions,")[0].replace(",", ""))
    page = html.read_text(encoding="utf-8")
    assert f"{total:,} sessions" in page
    report = json.loads(drift.read_text(encoding="utf-8"))
    assert report["buckets"] and sum(b["sessions"] for b in report["buckets"]) == total


def test_a_cut_last_line_is_counted_and_noted_when_no_template_knows_it(
    sim_logs: dict[str, Any], bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A log still being written: its last line is half a line, with no line break.
    lines = (sim_logs["dir"] / "m.log").read_text(encoding="utf-8").splitlines()
    last = lines[-1]
    header = last[: last.index(": ") + 2]
    growing, ended = tmp_path / "growing.log", tmp_path / "ended.log"
    growing.write_text("\n".join(lines) + "\n" + header + "Interrupted while waiting for mess")
    ended.write_text("\n".join(lines))  # a whole last line, known: counted, no note
    for log, note in ((growing, True), (ended, False)):
        args = ["detect", log, "--model", bundle, "--no-drift", "--jsonl", tmp_path / "v.jsonl"]
        assert main([str(a) for a in args]) == 0
        err = capsys.readouterr().err
        assert "noted: no_final_newline 1" in err  # read as it is: not "skipped or altered"
        assert "altered: no_final_newline" not in err
        assert ("ends without a line break, and its last line matches no template" in err) == note
        if note:
            assert "Interrupted while waiting for mess'" in err and str(log) in err


def test_a_whole_last_line_the_parser_knows_gets_no_note(
    sim_logs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A line of no session (a heartbeat) is a template the parser knows and no key of the
    # key model: as the last line without a line break it is whole, not half a line.
    lines = (sim_logs["dir"] / "n.log").read_text(encoding="utf-8").splitlines()
    header = lines[-1][: lines[-1].index(": ") + 2]
    beats = [f"{header}Heartbeat from datanode {i} ok" for i in range(40)]
    train = tmp_path / "train.log"
    train.write_text("\n".join(lines[:3000] + beats) + "\n", encoding="utf-8")
    model = tmp_path / "model"
    args = ["train", train, *RAW, "--out", model, *FAST, "--epochs", "2", "--no-params"]
    assert main([str(a) for a in args]) == 0
    log = tmp_path / "ends_with_a_beat.log"
    log.write_text("\n".join(lines[3000:3600]) + "\n" + beats[7], encoding="utf-8")
    args = ["detect", log, "--model", model, "--no-drift", "--jsonl", tmp_path / "v.jsonl"]
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    err = capsys.readouterr().err
    assert "noted: no_final_newline 1" in err
    assert "matches no template" not in err, err


def test_sessions_waiting_too_long_go_ahead_unchanged(
    sim_logs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_waiting bounds the completed sessions held for an earlier, still open one:
    beyond it they go ahead (late_session), the sessions themselves unchanged."""
    from logwarden.io import ingest
    from logwarden.io.sources import SourceConfig

    # Small batches: sessions complete batch after batch while earlier ones are open.
    monkeypatch.setattr(ingest, "SourceConfig", lambda **kw: SourceConfig(chunk_bytes=4096, **kw))
    log = str(sim_logs["dir"] / "m.log")
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX, idle_timeout=20.0)
    ordered = sessions_of(SessionStream([log], SIM_FORMAT, cfg, miner_of(sim_logs)))
    stream = SessionStream([log], SIM_FORMAT, cfg, miner_of(sim_logs), max_waiting=2)
    hurried = sessions_of(stream)
    assert stream.stats["late_session"] > 0
    assert hurried != ordered
    assert sorted(hurried) == sorted(ordered)


def test_train_with_an_idle_timeout_learns_the_sessions_detection_judges(
    sim_logs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --idle-timeout T` stored T for detection but trained on whole sessions: a
    session split by a long pause was learnt whole and judged in parts."""
    train = sim_logs["train"]
    gaps = sorted(g for s in train.sessions for g in s.elapsed[1:] if g is not None)
    timeout = gaps[-1] / 2  # some training sessions pause longer than this
    log = str(sim_logs["dir"] / "n.log")
    det = Detector(input=InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX))
    whole = det.read([log], learn=True)
    split = Detector(input=det.input).read([log], learn=True, idle_timeout=timeout)
    streamed = SessionStream(
        [log], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX, idle_timeout=timeout),
        det.miner,
    )  # fmt: skip
    parts = [sid for chunk in streamed for sid in chunk.ids]
    assert len(whole.ids) < len(split.ids) == len(parts)
    assert sorted(split.ids) == sorted(parts)
    args = ["train", log, *RAW, "--out", tmp_path / "m", "--epochs", "2", *FAST]
    code = main([str(a) for a in [*args, "--idle-timeout", str(timeout)]])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"logwarden train: {len(split.ids):,} sessions" in err
    code = main([str(a) for a in [*args[: -len(FAST)], *FAST, "--idle-timeout", "0", "--force"]])
    err = capsys.readouterr().err
    assert code == 0 and "the end of input only (--idle-timeout 0)" in err, err
    assert f"logwarden train: {len(whole.ids):,} sessions" in err


def test_eval_counts_a_session_split_by_the_idle_timeout_once(
    sim_logs: dict[str, Any], bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an idle timeout shorter than some pauses, eval counted each part of a session
    as a labelled session of its own (861 "sessions" for 400 labels)."""
    d = sim_logs["dir"]
    sim = simulate(SimConfig(seed=72, sessions=500, anomaly_rate=0.2))
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "BlockId,Label\n" + "".join(f"{s.session},{s.label}\n" for s in sim.sessions),
        encoding="utf-8",
    )
    base = ["eval", d / "m.log", "--model", bundle, "--labels", labels, "--json"]
    code = main([str(a) for a in [*base, "--idle-timeout", "5", "--jsonl", tmp_path / "v.jsonl"]])
    out, err = capsys.readouterr()
    assert code == 0, err
    parts = read_rows(tmp_path / "v.jsonl")
    ids = {r["session"] for r in parts}
    assert len(parts) > len(ids)  # the timeout split some sessions
    report = json.loads(out.strip().splitlines()[-1])
    assert report["tp"] + report["fp"] + report["fn"] + report["tn"] == len(ids)
    assert "sessions were split by the idle timeout" in err
    flagged = {r["session"] for r in parts if r["anomalous"]}
    truth = {s.session: s.label for s in sim.sessions}
    assert report["tp"] == sum(1 for s in flagged if truth.get(s) == 1)
    assert report["fp"] == sum(1 for s in flagged if truth.get(s) == 0)


def test_a_chunks_lines_are_views_that_pickle_as_lists() -> None:
    # A stream's chunk reads its raw lines from the stream's buffer when asked (the
    # anomalous verdicts' lines, events): what it gives, and sends, is what it viewed.
    import pickle

    from logwarden.sessions.grouping import RowTexts, SessionLines

    buffer = [f"line {i}" for i in range(10)]
    rows = [7, 2, 2, 5, 9]  # a line of two sessions is in the rows twice
    texts = RowTexts(buffer, rows)
    assert len(texts) == 5 and texts[0] == "line 7" and texts[-1] == "line 9"
    assert texts[1:3] == ["line 2", "line 2"] and list(texts) == [buffer[r] for r in rows]
    lines = SessionLines(buffer, rows, [0, 2, 2, 5])
    assert len(lines) == 3 and lines[1] == [] and lines[-1] == ["line 2", "line 5", "line 9"]
    assert list(lines) == [["line 7", "line 2"], [], ["line 2", "line 5", "line 9"]]
    with pytest.raises(IndexError):
        lines[3]
    buffer.extend(["more"] * 5)  # the stream reads on: a view does not move
    assert pickle.loads(pickle.dumps(texts)) == ["line 7", "line 2", "line 2", "line 5", "line 9"]
    assert pickle.loads(pickle.dumps(lines)) == list(lines)
    assert type(pickle.loads(pickle.dumps(lines))) is list
