"""``--engine ray``: the stages on a Ray cluster give what one process gives.

One Ray for the module: a two-node cluster on loopback (``ray.cluster_utils.Cluster``, one
CPU each, small object stores, no dashboard), so every comparison here also runs across
nodes. Inputs are simulated logs of a later version than the model's (lines no template
matches, keyed ``U<n>`` on the fly), cut in two files so that sessions span files, with
invalid UTF-8, a truncated last line, an empty file, a gzip file and a missing one; the
engine splits them in small byte ranges and more owners than nodes.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logwarden.cli import main
from logwarden.detect import DeepLog
from logwarden.detect.detector import Detector, InputSpec
from logwarden.engine.ray import (
    RayConfig,
    assign_units,
    connect,
    plan_ranges,
    range_lines,
    read_and_score,
)
from logwarden.errors import ConfigError
from logwarden.io.sources import FileRange, LineReader
from logwarden.records import Stats
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("ray_logs")
    simulate(SimConfig(seed=1, sessions=400, normal_only=True)).write(d / "train.log")
    det = Detector(
        DeepLog(
            window=5, top_g=4, layers=1, hidden=16, embedding=8, epochs=15, seed=0,
            device="cpu", param_epochs=4, param_max_steps=20,
        ),
        InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX),
    )  # fmt: skip
    det.fit(det.read([str(d / "train.log")], learn=True))
    det.save(d / "model")
    # Version 2: a new step and a reworded message, which the parser has never seen.
    sim = simulate(SimConfig(seed=2, sessions=300, anomaly_rate=0.25, version=2))
    lines = list(sim.lines)
    # Lines that name several sessions (HDFS's "ask ... to delete blk_a blk_b"): one that
    # starts two sessions at once, one that names two of the simulator's blocks.
    blocks = list(dict.fromkeys(re.findall(r"blk_-?\d+", "\n".join(lines))))
    stamp = " ".join(lines[5].split(" ")[:3])
    lines.insert(
        5, f"{stamp} INFO dfs.FSNamesystem: BLOCK* ask 10.0.0.1:50010 to delete  blk_7002 blk_7001"
    )
    lines.insert(
        len(lines) // 2 + 9,
        f"{stamp} INFO dfs.FSNamesystem: BLOCK* ask 10.0.0.1:50010 to delete  {blocks[3]} {blocks[1]}",
    )
    # Empty lines, in both files: line numbers count them (as --line-scores does).
    for at in (40, 41, len(lines) // 2 + 120):
        lines.insert(at, "")
    half = len(lines) // 2
    (d / "a.log").write_text("\n".join(lines[:half]) + "\n", encoding="utf-8")
    rest = "\n".join(lines[half:]).encode()
    # Invalid UTF-8 inside a line, and a last line cut in the middle (no newline).
    at = rest.index(b"\n", len(rest) // 3) + 30
    rest = rest[:at] + b"\xff\xfe" + rest[at:]
    (d / "b.log").write_bytes(rest[: len(rest) - 40])
    (d / "empty.log").write_bytes(b"")
    more = simulate(SimConfig(seed=3, sessions=40, anomaly_rate=0.2))
    with gzip.open(d / "c.log.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(more.lines) + "\n")
    labels = d / "labels.csv"
    labels.write_text(
        "session,label\n"
        + "".join(f"{s.session},{s.label}\n" for s in sim.sessions + more.sessions),
        encoding="utf-8",
    )
    inputs = [d / "a.log", d / "empty.log", d / "b.log", d / "c.log.gz", d / "missing.log"]
    return {"dir": d, "inputs": [str(p) for p in inputs], "labels": str(labels)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # Joining by a loopback address, Ray on Linux swaps in the machine's own address, where
    # a loopback-only cluster does not listen; with multi-node "off" (as on macOS) it keeps
    # loopback. Ray reads this when imported, so it is set first.
    env = pytest.MonkeyPatch()
    env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'logwarden[ray]')")
    import ray
    from ray.cluster_utils import Cluster

    # Its folders (sockets, logs) in a short directory of its own, removed at the end: Ray
    # keeps one under /tmp/ray for every cluster it starts.
    root = tempfile.mkdtemp(prefix="lwt-", dir="/tmp")
    # Ray notes the cluster's address in RAY_TMPDIR/ray (by default /tmp/ray, which a fresh
    # machine lacks: every test here failed with FileNotFoundError there).
    env.setenv("RAY_TMPDIR", root)
    os.makedirs(os.path.join(root, "ray"))
    local = {
        "node_ip_address": "127.0.0.1",
        "num_cpus": 1,
        "object_store_memory": 80 << 20,
        "temp_dir": root,
    }
    c = Cluster(initialize_head=True, head_node_args={**local, "include_dashboard": False})
    c.add_node(**local)
    ray.init(
        address=c.address, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR"
    )
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        env.undo()
        shutil.rmtree(root, ignore_errors=True)


def positions_of(data: Any) -> list[tuple[list[int], list[float | None]]]:
    table = data.events
    return [
        ([table.line_number(r) for r in rows], [table.timestamps[r] for r in rows])
        for rows in table.members
    ]


def test_ranges_start_at_lines_and_cover_each_file(logs: dict[str, Any]) -> None:
    items = plan_ranges(logs["inputs"], 4096)
    a = logs["inputs"][0]
    parts = [i for i in items if isinstance(i, FileRange) and i.path == a]
    assert len(parts) > 5
    data = Path(a).read_bytes()
    assert parts[0].start == 0 and parts[-1].stop is None
    for x, y in pairwise(parts):
        assert x.stop == y.start and data[y.start - 1 : y.start] == b"\n"
    # Gzip, empty and missing files stay whole, in input order.
    assert [i for i in items if isinstance(i, str)] == logs["inputs"][1:2] + logs["inputs"][3:]
    # Read range by range, the lines and counts are the whole file's.
    whole, split = Stats(), Stats()
    b = plan_ranges([logs["inputs"][2]], 4096)
    assert len(b) > 5
    assert list(LineReader([logs["inputs"][2]], stats=whole).text_batches()) != []
    texts = [t for batch in LineReader(b, stats=split).text_batches() for t in batch]
    assert texts == [t for batch in LineReader([logs["inputs"][2]]).text_batches() for t in batch]
    assert split.counts == whole.counts
    assert whole["invalid_utf8"] == 1 and whole["files_read"] == 1


def test_range_lines_reads_the_lines_the_scan_numbered(
    logs: dict[str, Any], tmp_path: Path
) -> None:
    # The lines verdicts show are read again by index within a range, empty lines counted,
    # as the scan read them (invalid UTF-8 included); a file that lost lines gives fewer.
    path = logs["inputs"][2]
    whole = [t for batch in LineReader([path]).text_batches() for t in batch]
    before = 0
    for item in plan_ranges([path], 4096):
        n = sum(len(b) for b in LineReader([item]).text_batches())
        wanted = np.arange(1, n, 3, dtype=np.int64)
        assert range_lines(item, 65536, wanted) == [whole[before + i] for i in wanted.tolist()]
        assert range_lines(item, 65536, np.zeros(0, dtype=np.int64)) == []
        before += n
    assert before == len(whole) > 100
    gapped = tmp_path / "gapped.log"
    gapped.write_text("a\n\n\nb\nc\n")
    assert range_lines(str(gapped), 65536, np.array([0, 3, 4, 9])) == ["a", "b", "c"]


def test_a_utf16_file_is_never_split(tmp_path: Path) -> None:
    # Its newlines are two bytes and only its start has the byte order mark.
    path = tmp_path / "win.log"
    path.write_bytes("".join(f"line {i} \u00e9\r\n" for i in range(2000)).encode("utf-16"))
    assert plan_ranges([str(path)], 4096) == [str(path)]
    plain = tmp_path / "plain.log"
    plain.write_bytes("".join(f"line {i} \u00e9\r\n" for i in range(2000)).encode())
    assert len(plan_ranges([str(plain)], 4096)) > 1


def test_same_sessions_keys_and_verdicts_as_one_process(logs: dict[str, Any], cluster: Any) -> None:
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    model = logs["dir"] / "model"
    det = Detector.load(model)
    data = det.read(logs["inputs"])
    expected = det.verdicts(data)
    ray_det = Detector.load(model)
    got = read_and_score(ray_det, logs["inputs"], RayConfig(range_bytes=4096, partitions=3))
    out = got.inputs
    assert out.ids == data.ids
    assert out.keys == data.keys
    assert out.templates == data.templates
    assert out.stats.counts == data.stats.counts
    assert out.errors == data.errors and out.errors  # the missing file
    assert out.entries == data.entries
    assert [v.to_dict() for v in got.verdicts] == [v.to_dict() for v in expected]
    assert [(v.score, v.lines) for v in got.verdicts] == [(v.score, v.lines) for v in expected]
    assert list(got.positions) == positions_of(data)
    assert ray_det.model.templates_ == det.model.templates_
    # The comparison is not vacuous: unknown lines, every detector, bad input counted,
    # sessions that begin on one line (in the order of their ids in it).
    assert any(k.startswith("U") for s in data.keys for k in s)
    assert data.ids.index("blk_7002") + 1 == data.ids.index("blk_7001")
    reasons = {v.reason for v in expected if v.anomalous}
    assert {"performance", "parameter"} & reasons and reasons - {"performance", "parameter"}
    assert data.stats["invalid_utf8"] == 1 and data.stats["empty_file"] == 1


def test_cli_detect_and_eval_on_ray_print_and_write_the_same(
    logs: dict[str, Any], cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    d = logs["dir"]
    common = [*logs["inputs"], "--model", str(d / "model")]
    outputs = []
    for extra, tag in (([], "local"), (["--engine", "ray", "--address", cluster.address], "ray")):
        args = ["--jsonl", str(d / f"{tag}.jsonl"), "--drift-json", str(d / f"{tag}.json")]
        # 1: everything else is read and scored, and one input (missing.log) is not.
        assert main(["detect", *common, *args, *extra]) == 1
        detect_out = capsys.readouterr()
        assert "missing.log" in detect_out.err and "could not be read" in detect_out.err
        evaluated = d / f"{tag}_eval.jsonl"  # eval's verdicts: no workflow diagnosis either way
        eval_args = ["--labels", logs["labels"], "--json", "--jsonl", str(evaluated)]
        assert main(["eval", *common, *eval_args, *extra]) == 1
        eval_out = capsys.readouterr().out
        outputs.append(
            (
                detect_out.out,
                detect_out.err,
                (d / f"{tag}.jsonl").read_text(),
                (d / f"{tag}.json").read_text(),
                json.loads(eval_out),
                evaluated.read_text(),
            )
        )
    assert outputs[0] == outputs[1]
    assert "anomalous" in outputs[0][0] and outputs[0][4]["recall"] > 0
    assert '"diagnosis"' in outputs[0][2] and '"diagnosis"' not in outputs[0][5]


def test_an_empty_input_writes_an_empty_jsonl_on_ray_too(
    logs: dict[str, Any], cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local engine writes --jsonl (empty) before it finds no session in the input;
    Ray wrote no file at all."""
    d = logs["dir"]
    empty = logs["inputs"][1]
    for extra, tag in (([], "local"), (["--engine", "ray", "--address", cluster.address], "ray")):
        for command, more in (("detect", []), ("eval", ["--labels", logs["labels"]])):
            out = d / f"empty_{command}_{tag}.jsonl"
            args = [command, empty, "--model", str(d / "model"), "--jsonl", str(out), *more]
            assert main([*args, *extra]) == 1
            assert "no session could be formed" in capsys.readouterr().err
            assert out.read_text(encoding="utf-8") == "", (command, tag)


def test_clear_errors(
    logs: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    det = Detector.load(logs["dir"] / "model")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        connect(RayConfig(address=f"127.0.0.1:{port}"))
    with pytest.raises(ConfigError, match="host:port"):
        connect(RayConfig(address="nowhere"))
    with pytest.raises(ConfigError, match="standard input"):
        read_and_score(det, ["-"])
    # A pipe: its workers read the inputs, and again for the lines verdicts show (and
    # opening a pipe waits for a writer): refused before anything is opened.
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="pipe or a device"):
        read_and_score(det, [logs["inputs"][0], str(fifo)])
    with pytest.raises(ConfigError, match="pipe or a device"):
        plan_ranges([str(tmp_path / "pipe.*")], 4096)
    windows = Detector.load(logs["dir"] / "model")
    windows.input = windows.input.override(window=10)
    with pytest.raises(ConfigError, match="not windows"):
        read_and_score(windows, logs["inputs"])
    common = [logs["inputs"][0], "--model", str(logs["dir"] / "model")]
    assert main(["detect", *common, "--address", "127.0.0.1:1"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main(["detect", *common, "--engine", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    assert "cannot reach the Ray cluster" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"pip install 'logwarden\[ray\]'"):
        read_and_score(det, logs["inputs"])
    assert main(["detect", *common, "--engine", "ray"]) == 2
    assert "logwarden[ray]" in capsys.readouterr().err


def test_ray_says_what_it_does_not_do_as_the_local_engine(
    logs: dict[str, Any], cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ray keeps a session whole across a pause longer than the idle timeout (the local
    engine splits it): it said nothing and gave other verdicts; eval on Ray dropped the
    count of labelled sessions the input lacks."""
    d = logs["dir"]
    det = Detector.load(d / "model")
    det.input = dataclasses.replace(det.input, idle_timeout=3600.0)
    det.save(tmp_path / "m")
    lines = (d / "a.log").read_text(encoding="utf-8").splitlines()
    day = lines[0].split(" ")[0]
    later = [line.replace(day, "2031-01-01", 1) for line in lines[:200]]  # same ids, years on
    log = tmp_path / "reopen.log"
    log.write_text("\n".join(lines + later) + "\n", encoding="utf-8")
    ray_args = ["--engine", "ray", "--address", cluster.address]
    code = main(["detect", str(log), "--model", str(tmp_path / "m"), "--no-drift", *ray_args])
    err = capsys.readouterr().err
    assert code == 0
    m = re.search(r"([\d,]+) sessions pause longer than the model's idle timeout", err)
    assert m and int(m.group(1).replace(",", "")) > 0, err
    # The local engine splits them: as many sessions come back as Ray reports paused.
    code = main(["detect", str(log), "--model", str(tmp_path / "m"), "--no-drift"])
    local = capsys.readouterr().err
    reopened = re.search(r"reopened_session ([\d,]+)", local)
    assert code == 0 and reopened and int(reopened.group(1).replace(",", "")) >= int(m.group(1))
    args = ["detect", str(log), "--model", str(tmp_path / "m"), *ray_args, "--idle-timeout", "5"]
    assert main(args) == 2
    assert "--idle-timeout is the local engine's" in capsys.readouterr().err
    labels = tmp_path / "labels.csv"
    labels.write_text(Path(logs["labels"]).read_text() + "no-such-session,0\n")
    for extra in ([], ray_args):
        args = ["eval", *logs["inputs"][:2], "--model", str(d / "model"), "--labels", str(labels)]
        main([*args, "--json", *extra])
        assert "sessions in" in capsys.readouterr().err  # ... are not in the input


def test_ray_notes_early_ends_still_active_when_the_input_ended(
    logs: dict[str, Any], cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log cut in the middle: the local engine notes the early ends of sessions still
    active at its end (with an idle timeout); Ray said nothing of them."""
    d = logs["dir"]
    det = Detector.load(d / "model")
    det.input = dataclasses.replace(det.input, idle_timeout=120.0)  # no session pauses as long
    det.save(tmp_path / "m")
    lines = (d / "a.log").read_text(encoding="utf-8").splitlines()
    log = tmp_path / "cut.log"
    log.write_text("\n".join(lines[: len(lines) * 2 // 3]) + "\n", encoding="utf-8")
    notes, marked = [], []
    for extra in ([], ["--engine", "ray", "--address", cluster.address]):
        args = ["detect", str(log), "--model", str(tmp_path / "m"), "--no-drift", "--show", "999"]
        assert main([*args, *extra]) == 0
        out = capsys.readouterr().out
        notes.append([line for line in out.splitlines() if "still active" in line])
        verdicts = re.split(r"\n(?=\S)", out)
        marked.append([v.split(":")[0] for v in verdicts if "(Still active when the" in v])
    assert len(notes[0]) == 1 and notes[0] == notes[1]
    # Judged by the longest gap of a training run (the model keeps it), the same runs.
    assert "the longest gap of a training run" in notes[0][0]
    assert marked[0] and sorted(marked[0]) == sorted(marked[1])


def test_lines_of_no_session_move_the_log_clock_on_ray_too(
    logs: dict[str, Any], cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log clock is the latest time of any line, a line of no session's too: a log whose
    last line names no session and comes an hour after the rest leaves no session still
    active at its end, on Ray as on the local engine (Ray's clock counted its sessions'
    entries alone)."""
    d = logs["dir"]
    det = Detector.load(d / "model")
    det.input = dataclasses.replace(det.input, idle_timeout=120.0)
    det.save(tmp_path / "m")
    lines = (d / "a.log").read_text(encoding="utf-8").splitlines()
    lines = lines[: len(lines) * 2 // 3]
    last = next(line for line in reversed(lines) if line)
    day, clock = last.split(" ")[:2]
    hour = (int(clock[:2]) + 1) % 24
    quiet = f"{day} {hour:02d}{clock[2:]} 35 INFO dfs.DataNode: heartbeat sent to the namenode"
    marked: dict[str, list[str]] = {}
    for name, body in (("cut", lines), ("quiet", [*lines, quiet])):
        log = tmp_path / f"{name}.log"
        log.write_text("\n".join(body) + "\n", encoding="utf-8")
        for engine, extra in (
            ("local", []),
            ("ray", ["--engine", "ray", "--address", cluster.address]),
        ):
            args = ["detect", str(log), "--model", str(tmp_path / "m"), "--no-drift"]
            assert main([*args, "--show", "999", *extra]) == 0
            out = capsys.readouterr().out
            verdicts = re.split(r"\n(?=\S)", out)
            marked[f"{name} {engine}"] = sorted(
                v.split(":")[0] for v in verdicts if "(Still active when the" in v
            )
    assert marked["cut local"] and marked["cut local"] == marked["cut ray"]
    assert hour > int(clock[:2])  # (the quiet line is later the same day)
    assert marked["quiet local"] == marked["quiet ray"] == []


def test_ray_notes_anomalies_that_began_before_the_input(
    logs: dict[str, Any], cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log cut in the middle, seen from its start: the anomalies of runs already going
    when it began are noted, the same on Ray as on the local engine."""
    d = logs["dir"]
    lines = (d / "a.log").read_text(encoding="utf-8").splitlines()
    log = tmp_path / "cut_start.log"
    log.write_text("\n".join(lines[len(lines) // 3 :]) + "\n", encoding="utf-8")
    notes, marks = [], []
    for extra in ([], ["--engine", "ray", "--address", cluster.address]):
        args = ["detect", str(log), "--model", str(d / "model"), "--no-drift", "--show", "999"]
        assert main([*args, *extra]) == 0
        out = capsys.readouterr().out
        notes.append([line for line in out.splitlines() if "began before the input" in line])
        marks.append(out.count("(Began before the input"))
    assert len(notes[0]) == 1 and notes[0] == notes[1]
    assert marks[0] == marks[1] > 0


def test_units_go_to_the_least_loaded_owner_longest_first() -> None:
    sizes = {
        (4, 3): 71_000,
        (3, 4): 43_000,
        (9, 9): 39_000,
        (1, 1): 38_000,
        (2, None): 20,
        (5, 1): 0,
    }
    owners = assign_units(sizes, 2)
    assert set(owners) == set(sizes) and set(owners.values()) == {0, 1}
    load = [sum(n for u, n in sizes.items() if owners[u] == p) for p in (0, 1)]
    assert sorted(load) == [82_020, 109_000]  # a hash put 3x one owner's share on the other
    assert assign_units(dict(reversed(sizes.items())), 2) == owners  # order of arrival aside
    assert set(assign_units(sizes, 1).values()) == {0}
    assert len(set(assign_units(sizes, 8).values())) == 6


def test_paused_sessions_counts_pauses_between_timed_entries() -> None:
    from logwarden.engine.ray import paused_sessions

    positions = [([1, 2, 3], [0.0, 10.0, 500.0]), ([4, 5], [None, 900.0]), ([6], [7.0])]
    assert paused_sessions(positions, 100.0) == 1
    assert paused_sessions(positions, 1000.0) == 0


def test_open_at_end_follows_the_log_clock_of_each_sessions_last_entry() -> None:
    from logwarden.engine.ray import open_at_end

    # Line 4's clock is line 3's (600): "b" was active then; "c" is before any timestamp
    # (the first clock, 0, counts); "d"'s last timestamp is out of range (its clock: 650).
    positions = [([2, 3], [0.0, 600.0]), ([4], [None]), ([1], [None]), ([5, 6], [650.0, 1e12])]
    assert open_at_end(["a", "b", "c", "d"], positions, 100.0) == {"a", "b", "d"}
    assert open_at_end(["a", "b", "c", "d"], positions, 10.0) == {"d"}
    assert open_at_end(["x"], [([1], [None])], 1.0) == {"x"}  # no clock: all active
    # Without a clock, or a measure in log time, the lines tell when they are given: a
    # last line within 2 lines of the last line of a session (6).
    assert open_at_end(["a", "b", "c", "d"], positions, None, lines=2) == {"b", "d"}
    untimed = [([1, 2], [None, None]), ([3, 5], [None, None]), ([4], [None])]
    assert open_at_end(["a", "b", "c"], untimed, 100.0, lines=1) == {"b", "c"}
    assert open_at_end(["a", "b", "c"], untimed, 100.0) == {"a", "b", "c"}


def test_a_ray_started_for_the_call_leaves_no_folder_behind(
    logs: dict[str, Any], tmp_path: Path
) -> None:
    # Ray keeps a folder of every session it starts (/tmp/ray/session_*): the one a call
    # starts lives in a folder of its own, removed when the call ends. A process of its
    # own: this module's Ray is already running here.
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'logwarden[ray]')")
    import subprocess

    # A short root: Ray's socket paths under it must fit in 107 characters.
    root = Path(tempfile.mkdtemp(prefix="lwt-", dir="/tmp"))
    out = tmp_path / "v.jsonl"
    env = {**os.environ, "TMPDIR": str(root), "RAY_TMPDIR": str(root)}
    args = ["detect", logs["inputs"][0], "--model", str(logs["dir"] / "model"), "--engine", "ray"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "logwarden", *args, "--jsonl", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert len(out.read_text().splitlines()) > 10
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
