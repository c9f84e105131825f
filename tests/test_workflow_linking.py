"""Mining a log without identifiers from the identifier values its entries share
(``workflow.linking``): which parameter tokens identify an execution is learned, values
shared by many executions never link them, and without such values the statistical miner
does the work as before."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from logwarden.errors import ConfigError
from logwarden.io.ingest import read_raw_sessions
from logwarden.records import Event, Line, Param, Record
from logwarden.sessions import Session, SessionConfig
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate
from logwarden.workflow import (
    END,
    START,
    WorkflowConfig,
    Workflows,
    link_executions,
    mine_interleaved,
    mine_windows,
    mine_workflows,
)
from logwarden.workflow.diagnose import diagnose

HOSTS = ("node-alpha", "node-bravo", "node-charlie")
CONFIG = WorkflowConfig(horizon=60.0)


def _log(executions: int = 1500, seed: int = 3, ids: bool = True) -> dict[str, list]:
    """Two task types interleaved, and a background line. Task A names its job in a
    parameter of its own; task B its transaction as the first word of a text parameter
    (``[txn-... alice proj-1]``) or alone. A's second step names one of three hosts (shared
    by every execution), its last step a random duration. ``ids=False``: the same log
    with every identifier replaced by one constant word."""
    rng = random.Random(seed)
    entries: list[tuple[float, int, str, list[str], int]] = []  # time, seq, key, values, exec
    t = 0.0
    seq = 0
    for x in range(executions):
        t += rng.expovariate(1.0)
        if rng.random() < 0.6:
            job = f"job-{rng.getrandbits(40):010x}" if ids else "job-none"
            steps = [("a1", [job]), ("a2", [job, rng.choice(HOSTS)])]
            steps.append(("a3", [job]) if rng.random() < 0.7 else ("a4", [job, "retry"]))
            steps.append(("a5", [job, f"{rng.uniform(0, 1000):.3f}"]))
        else:
            txn = f"txn-{rng.getrandbits(40):010x}" if ids else "txn-none"
            steps = [("b1", [f"{txn} alice proj-{rng.randrange(3)}"])]
            steps += [("b2", [txn, str(page)]) for page in range(1, rng.randrange(2, 5))]
            steps.append(("b3", [txn]))
        at = t
        for key, values in steps:
            entries.append((at, seq, key, values, x))
            seq += 1
            at += rng.lognormvariate(0.0, 0.5)
    for k in range(int(t / 7)):  # background: a host audit every 7 s
        entries.append((k * 7.0 + 0.5, seq, "n1", [rng.choice(HOSTS), str(rng.randrange(99))], -1))
        seq += 1
    entries.sort()
    return {
        "keys": [e[2] for e in entries],
        "times": [e[0] for e in entries],
        "values": [e[3] for e in entries],
        "execution": [e[4] for e in entries],
    }


def _edges(wfs: Workflows, key: str) -> set[tuple[str, str]]:
    i = wfs.workflow_of_key(key)
    assert i is not None
    return set(wfs[i].edges)


A_EDGES = {(START, "a1"), ("a1", "a2"), ("a2", "a3"), ("a2", "a4"), ("a3", "a5"),
           ("a4", "a5"), ("a5", END)}  # fmt: skip
B_EDGES = {(START, "b1"), ("b1", "b2"), ("b2", "b2"), ("b2", "b3"), ("b3", END)}


def test_executions_come_from_learned_identifier_slots() -> None:
    log = _log()
    linked = link_executions(log["keys"], np.array(log["times"]), log["values"], 60.0)
    # The job id of A, the transaction of B (alone, and the first word of b1's text);
    # never the hosts, the user or project words, page numbers or durations.
    assert set(linked.slots) == {
        ("a1", 0, 0), ("a2", 0, 0), ("a3", 0, 0), ("a4", 0, 0), ("a5", 0, 0),
        ("b1", 0, 0), ("b2", 0, 0), ("b3", 0, 0),
    }  # fmt: skip
    assert linked.linked_keys == {"a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3"}
    # Every recovered execution is one true execution, whole.
    truth: dict[int, list[int]] = {}
    for i, x in enumerate(log["execution"]):
        if x >= 0:
            truth.setdefault(x, []).append(i)
    assert sorted(linked.executions) == sorted(truth.values())
    # The background line is left to the statistical miner.
    assert {log["keys"][i] for i in linked.residual} == {"n1"}
    assert linked.dropped == 0


def test_mined_workflows_through_windows_match_the_tasks() -> None:
    log = _log()
    wfs = mine_windows(log["keys"], log["times"], log["values"], CONFIG)
    assert wfs.interleaved
    assert _edges(wfs, "a1") == A_EDGES
    assert _edges(wfs, "b1") == B_EDGES
    b = wfs[wfs.workflow_of_key("b1")]
    assert b.loops == [["b2"]] and not b.counted and not b.precedes
    # Counts come from the recovered executions: every A execution starts with a1.
    a = wfs[wfs.workflow_of_key("a1")]
    assert a.edges[(START, "a1")] == a.sessions == log["keys"].count("a1")
    # Diagnosis of a window against them: a5 right after a1 skips a step.
    d = diagnose(wfs, ["b1", "a1", "b2", "a5"], 3, "ranked_out")
    assert d.workflow == a.name and d.state == "a1" and d.diverged
    assert {e["key"] for e in d.expected} == {"a2"}
    # The state survives the bundle's JSON.
    back = Workflows.from_state(wfs.to_state()[0])
    assert back.config.link_identifiers and _edges(back, "b1") == B_EDGES


def test_without_identifier_values_the_statistics_mine_alone() -> None:
    log = _log(ids=False)
    linked = link_executions(log["keys"], np.array(log["times"]), log["values"], 60.0)
    assert linked.executions == [] and linked.slots == []
    got = mine_windows(log["keys"], log["times"], log["values"], CONFIG)
    plain = mine_interleaved([log["keys"]], [log["times"]], CONFIG)
    assert [w.to_dict() for w in got] == [w.to_dict() for w in plain]
    # Switched off, identifier values are not used either.
    log = _log()
    off = WorkflowConfig(horizon=60.0, link_identifiers=False)
    got = mine_windows(log["keys"], log["times"], log["values"], off)
    plain = mine_interleaved([log["keys"]], [log["times"]], off)
    assert [w.to_dict() for w in got] == [w.to_dict() for w in plain]


def test_a_log_too_short_for_locality_links_nothing() -> None:
    """Over less than a few horizons a host seen twice looks like an identifier: no slot
    is taken there."""
    log = _log(executions=150)
    linked = link_executions(log["keys"], np.array(log["times"]), log["values"], 60.0)
    assert linked.executions == [] and len(linked.residual) == len(log["keys"])


def test_a_shared_value_never_glues_executions() -> None:
    """A value every execution carries (a host in every A step) is spread over the log:
    executions stay apart."""
    log = _log()
    values = [[*v, "node-alpha"] if k.startswith("a") else v for k, v in
              zip(log["keys"], log["values"], strict=True)]  # fmt: skip
    linked = link_executions(log["keys"], np.array(log["times"]), values, 60.0)
    executions = {x for x in log["execution"] if x >= 0}
    assert len(linked.executions) == len(executions)


def _truth(log: dict[str, list]) -> list[list[int]]:
    out: dict[int, list[int]] = {}
    for i, x in enumerate(log["execution"]):
        if x >= 0:
            out.setdefault(x, []).append(i)
    return sorted(out.values())


def test_a_reused_pool_of_values_is_no_identifier() -> None:
    """B's entries also name a worker from a pool that is reused: most workers serve one
    execution in the log, but reuse is common enough that two executions close in time
    can share one. The slot is not taken, and executions stay apart."""
    log = _log()
    rng = random.Random(5)
    pool = [f"worker-{i:05d}" for i in range(2000)]
    lane: dict[int, str] = {}
    values = []
    for k, v, x in zip(log["keys"], log["values"], log["execution"], strict=True):
        if k.startswith("b"):
            v = [*v, lane.setdefault(x, rng.choice(pool))]
        values.append(v)
    linked = link_executions(log["keys"], np.array(log["times"]), values, 60.0)
    assert not any(s[1] > 0 and s[0].startswith("b") for s in linked.slots)
    assert sorted(linked.executions) == _truth(log)


def test_an_execution_pausing_beyond_the_horizon_is_cut_there() -> None:
    """A few A executions log their last step long after the horizon: the slot is still
    an identifier (most of its values are local), those executions are linked up to the
    pause, and their last entries, alone, are dropped (not glued to other executions)."""
    log = _log()
    a_runs = {x for k, x in zip(log["keys"], log["execution"], strict=True) if k == "a1"}
    late = {x for x in a_runs if x % 25 == 0}
    times = [
        t + 500.0 if k == "a5" and x in late else t
        for k, t, x in zip(log["keys"], log["times"], log["execution"], strict=True)
    ]
    order = sorted(range(len(times)), key=times.__getitem__)
    moved = {name: [log[name][i] for i in order] for name in log}
    moved["times"] = [times[i] for i in order]
    linked = link_executions(moved["keys"], np.array(moved["times"]), moved["values"], 60.0)
    assert ("a5", 0, 0) in linked.slots
    cut = [[i for i in e if moved["keys"][i] != "a5"] if moved["execution"][e[0]] in late else e
           for e in _truth(moved)]  # fmt: skip
    assert sorted(linked.executions) == sorted(cut)
    assert linked.dropped == len(late)


def _sessions(log: dict[str, list], size: int, step: int) -> tuple[list, list]:
    """Windows of ``size`` entries every ``step`` entries, with their events."""
    n = len(log["keys"])
    events = []
    for i, (k, t, v) in enumerate(zip(log["keys"], log["times"], log["values"], strict=True)):
        line = Line(f"line {i}", "log.txt", i * 10, i + 1)
        record = Record(line, f"line {i}", {}, 1.7e9 + t, True)
        events.append(Event(record, int(k[1]) + (10 if k[0] == "b" else 0), k, [
            Param(x, "text") for x in v]))  # fmt: skip
    keys, sessions = [], []
    for s in range(0, n, step):
        rows = range(s, min(s + size, n))
        keys.append([log["keys"][r] for r in rows])
        sessions.append(Session(f"w{s}", [events[r] for r in rows]))
    return keys, sessions


def test_training_windows_overlapping_or_not_mine_the_same() -> None:
    log = _log(executions=800)
    tumbling = mine_workflows(*_sessions(log, 50, 50), interleaved=True, config=CONFIG)
    sliding = mine_workflows(*_sessions(log, 50, 10), interleaved=True, config=CONFIG)
    assert [w.to_dict() for w in sliding] == [w.to_dict() for w in tumbling]
    assert _edges(tumbling, "a1") == A_EDGES


def test_link_identifiers_must_be_a_switch() -> None:
    with pytest.raises(ConfigError, match="link_identifiers"):
        WorkflowConfig(link_identifiers="yes").validate()  # type: ignore[arg-type]


def test_simulated_log_through_windows_gives_the_workflows_of_its_ids(tmp_path: Path) -> None:
    """The built-in simulator's normal log read without its session pattern (windows of
    50 lines) gives the same workflows as with it: same steps, edges and counts,
    concurrency and loops (its block ids, request ids and instance uuids are learned as
    identifiers; nothing names them)."""
    log = tmp_path / "normal.log"
    simulate(SimConfig(seed=4, sessions=900, normal_only=True)).write(log)
    ids = read_raw_sessions([str(log)], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX))
    win = read_raw_sessions(
        [str(log)], SIM_FORMAT, SessionConfig(window_size=50), miner=ids.miner, learn=False
    )
    by_ids = mine_workflows(ids.keys)
    by_windows = mine_workflows(win.keys, events=win.sessions, interleaved=True)
    assert len(by_ids) == 3
    for w in by_ids:
        same = [x for x in by_windows if set(x.keys) == set(w.keys)]
        assert len(same) == 1
        x = same[0]
        assert x.edges == w.edges and x.concurrent == w.concurrent and x.loops == w.loops
