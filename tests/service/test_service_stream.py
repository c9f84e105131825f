"""The streaming detector against batch ``detect`` on the same logs, and its state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logwarden.detect import Detector
from logwarden.errors import ConfigError, StateError
from logwarden.service import Emitted, StreamConfig, StreamDetector
from logwarden.sim import SimConfig, simulate

COMPARED = ("session", "anomalous", "reason", "detector", "position", "observed", "length",
            "window", "lines", "rank", "expected", "diagnosis")  # fmt: skip


def batch_verdicts(model: Any, log: str) -> dict[str, dict[str, Any]]:
    det = Detector.load(model)
    data = det.read([log], learn=False)
    return {v.session: v.to_dict() for v in det.verdicts(data)}


def stream(det: Detector, lines: list[str], batch: int, cfg: StreamConfig | None = None,
           start: int = 1) -> tuple[StreamDetector, list[Emitted]]:  # fmt: skip
    sd = StreamDetector(det, cfg)
    out: list[Emitted] = []
    for i in range(0, len(lines), batch):
        out += sd.process((start + i + j, t) for j, t in enumerate(lines[i : i + batch]))
    return sd, out


def finals(emitted: list[Emitted]) -> dict[str, dict[str, Any]]:
    return {e.verdict.session: e.verdict.to_dict() for e in emitted if e.final}


@pytest.mark.parametrize("batch", [1, 97, 5000])
def test_stream_flags_the_sessions_batch_detect_flags(sim_model: Any, batch: int) -> None:
    expected = batch_verdicts(sim_model.path, str(sim_model.mixed_log))
    sd, out = stream(Detector.load(sim_model.path), sim_model.mixed_lines, batch)
    out += sd.flush()
    got = finals(out)
    assert set(got) == set(expected)
    flagged = {s for s, v in expected.items() if v["anomalous"]}
    assert flagged  # the mixed log has anomalies of every kind
    assert {s for s, v in got.items() if v["anomalous"]} == flagged
    # the workflow diagnosis is compared too (the model mines workflows by default)
    assert sum(1 for sid in flagged if expected[sid].get("diagnosis")) > len(flagged) / 2
    for sid in flagged:  # the same explanation, once the session has closed
        for name in COMPARED:
            assert got[sid].get(name) == expected[sid].get(name), (sid, name)
        # The score takes the parameter models' tail probabilities too, and those follow
        # each entry's history, which a stream builds from what has arrived (see the
        # module docstring of service.stream): the same decisions, the last digits apart.
        assert got[sid]["score"] == pytest.approx(expected[sid]["score"], rel=1e-3)
    # Every anomaly of an entry was reported when that entry arrived, before the end.
    early = {e.verdict.session: e for e in out if not e.final}
    for sid in flagged:
        if expected[sid]["reason"] != "early_end":
            e = early[sid]
            assert e.verdict.position == expected[sid]["position"]
            assert e.verdict.length == e.verdict.position + 1  # entries so far
    reasons = {v["reason"] for v in expected.values() if v["anomalous"]}
    assert {"performance", "parameter"} & reasons and {"unseen_key", "ranked_out"} & reasons


def test_small_caches_forget_without_changing_a_verdict(sim_model: Any) -> None:
    det = Detector.load(sim_model.path)
    sd, whole = stream(det, sim_model.mixed_lines, 200)
    whole += sd.flush()
    assert sd.cache_sizes()["windows"] > 64  # the default caches keep every window here
    small, out = stream(
        Detector.load(sim_model.path), sim_model.mixed_lines, 200, StreamConfig(cache_windows=16)
    )
    out += small.flush()
    # Bounded: two generations at most; and the windows forgotten were asked again.
    sizes = small.cache_sizes()
    assert sizes["windows"] <= 32 and sizes["fold"] <= 32
    assert [(e.key, e.final, e.verdict.to_dict()) for e in out] == [
        (e.key, e.final, e.verdict.to_dict()) for e in whole
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.booleans(), st.booleans()), max_size=80),
    st.integers(1, 6),
)
def test_parameter_history_is_the_vectors_before_in_batch_order(
    steps: list[tuple[int, bool, bool]], window: int
) -> None:
    from logwarden.service.stream import UnitHistory

    h = UnitHistory()
    added: list[tuple[int, int, list[float]]] = []  # (order, arrival, vector)
    top = -1
    for k, (pick, new, prune) in enumerate(steps):
        # an entry of a new session (above all) or of an earlier one, as a stream has them
        order = top + 1 if new or top < 0 else pick % (top + 1)
        top = max(top, order)
        got = h.before(order, window)
        # batch order: sessions by order, each one's entries as they came
        want = [v for o, _, v in sorted(added) if o < order][-window:] + [
            v for o, _, v in sorted(added) if o == order
        ]
        assert got == want[-window:], (k, order)
        vec = [float(k)]
        h.add(order, vec)
        added.append((order, k, vec))
        if prune:  # every session open: nothing may be forgotten that a later entry reads
            h.prune(sorted({o for o, _, _ in added}, reverse=True), window, 10**6)


def test_state_round_trip_gives_the_same_verdicts(sim_model: Any) -> None:
    det = Detector.load(sim_model.path)
    lines = sim_model.mixed_lines
    _, whole = stream(det, lines, 500)
    cut = len(lines) // 2 + 123
    first, part1 = stream(Detector.load(sim_model.path), lines[:cut], 500)
    state = json.loads(json.dumps(first.to_state()))  # as a checkpoint stores it
    assert first.open_count > 0 and state["open"]
    resumed = StreamDetector.from_state(Detector.load(sim_model.path), state)
    part2: list[Emitted] = []
    for i in range(cut, len(lines), 500):
        part2 += resumed.process((i + j + 1, t) for j, t in enumerate(lines[i : i + 500]))

    # Scores compared apart: the parameter models' part of a score goes through a network
    # run on batches that the checkpoint cuts elsewhere (the last float digits differ).
    def key(e: Emitted) -> tuple[str, bool, str]:
        d = {k: v for k, v in e.verdict.to_dict().items() if k != "score"}
        return (e.key, e.final, json.dumps(d, sort_keys=True))

    assert sorted(map(key, part1 + part2)) == sorted(map(key, whole))
    scores = {(e.key, e.final): e.verdict.score for e in whole}
    for e in part1 + part2:
        assert e.verdict.score == pytest.approx(scores[(e.key, e.final)], rel=1e-6)
    assert resumed.stats.as_dict() == stream(det, lines, 500)[0].stats.as_dict()


def test_idle_timeout_closes_sessions_in_log_time(sim_model: Any) -> None:
    det = Detector.load(sim_model.path)
    lines = sim_model.mixed_lines
    # Sessions last seconds to minutes in the simulation: a 1-hour timeout splits none,
    # but closes every session an hour (of log time) after its last entry, without flush.
    far = "2026-03-02 00:00:00.000 35 INFO dfs.FSNamesystem: Roll Edit Log from 10.0.0.1"
    sd, out = stream(det, [*lines, far], 1000, StreamConfig(session_timeout=3600))
    assert sd.open_count == 0
    closed = [e for e in out if e.final]
    assert {e.closed_by for e in closed} == {"idle"}
    expected = batch_verdicts(sim_model.path, str(sim_model.mixed_log))
    assert {e.verdict.session for e in closed if e.verdict.anomalous} == {
        s for s, v in expected.items() if v["anomalous"]
    }
    # A short timeout splits sessions: a reappearing id is a new session instance.
    sd2, out2 = stream(det, lines, 1000, StreamConfig(session_timeout=2.0))
    out2 += sd2.flush()
    keys = [e.key for e in out2 if e.final]
    assert len(keys) == len(set(keys)) > len(expected)


def test_unknown_lines_are_kept_as_new_templates(sim_model: Any) -> None:
    det = Detector.load(sim_model.path)
    sid = "blk_-4242424242"
    lines = [
        f"2026-03-01 00:00:01.000 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /x/part-1. {sid}",
        f"2026-03-01 00:00:01.100 35 WARN dfs.Strange: quantum flux capacitor overloaded in {sid} by 7 units",
        f"2026-03-01 00:00:01.200 35 WARN dfs.Strange: quantum flux capacitor overloaded in {sid} by 9 units",
    ]
    sd, out = stream(det, lines, 10)
    assert sd.stats["new_template"] == 1
    assert list(sd.new_templates().values()) == [
        "quantum flux capacitor overloaded in <*> by <*> units"
    ]
    (hit,) = [e for e in out if not e.final]
    assert hit.verdict.reason == "unseen_key" and hit.verdict.position == 1
    assert hit.verdict.observed_template == "quantum flux capacitor overloaded in <*> by <*> units"


def test_the_unknown_line_parser_keeps_few_shapes_however_many_it_meets(sim_model: Any) -> None:
    # Unknown lines with ids of letters: a shape each. The stream's bound holds for the
    # miner of unknown lines as for the model's, also after a restart from a checkpoint.
    sid = "blk_-4242424242"
    tags = ["".join("ghijklmnopqrstuvwxyz"[int(d)] for d in f"{i:04d}") for i in range(300)]
    lines = [
        f"2026-03-01 00:00:01.{i % 1000:03d} 35 WARN dfs.Strange: flux job_{t} in {sid}"
        for i, t in enumerate(tags)
    ]
    cfg = StreamConfig(parser_cache=16)
    sd, _ = stream(Detector.load(sim_model.path), lines, 50, cfg)
    assert sd.stats["new_template"] >= 1 and 0 < sd.unknown.cached_shapes <= 32
    state = json.loads(json.dumps(sd.to_state()))
    resumed = StreamDetector.from_state(Detector.load(sim_model.path), state, cfg)
    resumed.process((1000 + i, t) for i, t in enumerate(lines))
    assert resumed.unknown.cached_shapes <= 32


def test_bad_lines_are_counted_not_fatal(sim_model: Any) -> None:
    det = Detector.load(sim_model.path)
    junk = ["", "\ufffd\ufffd\x7f binary \ufffd", "no header at all blk_-1", "x" * 10000,
            "2026-13-45 99:99:99.000 35 INFO dfs.X: bad time blk_-1"]  # fmt: skip
    sd, out = stream(det, junk, 2)
    out += sd.flush()
    assert sd.stats["empty_line"] == 1
    assert sd.stats["unmatched_format"] >= 3
    assert sd.stats["lines"] == len(junk)


def test_window_sessions_and_bad_settings(sim_model: Any) -> None:
    det = Detector.load(sim_model.path)
    with pytest.raises(ConfigError):
        StreamConfig(session_timeout=0)
    with pytest.raises(StateError):
        StreamDetector.from_state(det, {"schema": "something else"})
    log = simulate(SimConfig(seed=5, sessions=30))
    det.input = det.input.override(window=20)
    sd, out = stream(det, log.lines, 50)
    out += sd.flush()
    names = [e.verdict.session for e in out if e.final]
    assert names[:2] == ["w000000", "w000001"]
    assert all(e.verdict.length == 20 for e in out if e.final and e.closed_by == "window")


def test_observers_see_every_entry_and_every_closed_session(sim_model: Any) -> None:
    class Watch:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, int]] = []
            self.sessions: list[tuple[str, int]] = []

        def entries(self, batch: list[tuple[str, str, float | None, int]]) -> None:
            self.seen += [(key, session, seq) for key, session, _, seq in batch]

        def closed(self, verdict: Any, keys: list[str]) -> None:
            self.sessions.append((verdict.session, len(keys)))

    det = Detector.load(sim_model.path)
    sd = StreamDetector(det)
    watch = Watch()
    sd.observers.append(watch)
    lines = sim_model.mixed_lines[:3000]
    sd.process((i + 1, t) for i, t in enumerate(lines))
    out = sd.flush()
    assert len(watch.sessions) == len(out) == sd.sessions_closed
    assert sum(n for _, n in watch.sessions) == len(watch.seen)
    assert [seq for _, _, seq in watch.seen] == sorted(seq for _, _, seq in watch.seen)


def test_stream_and_batch_agree_where_the_fold_check_decides(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A key model whose probability cut flags many normal sessions (a target of 5%): the
    fold check clears some of them and confirms others, entry by entry in the stream as
    in batch detect."""
    import dataclasses

    from logwarden.detect import DeepLog, InputSpec
    from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX

    root = tmp_path_factory.mktemp("fold-check")
    simulate(SimConfig(seed=31, sessions=600, normal_only=True)).write(root / "normal.log")
    mixed = simulate(SimConfig(seed=32, sessions=500, anomaly_rate=0.05))
    mixed.write(root / "mixed.log")
    det = Detector(
        DeepLog(seed=0, epochs=40, patience=5, hidden=32, target_fpr=0.05, param_models=False),
        InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX),
    )
    det.fit(det.read([str(root / "normal.log")], learn=True))
    det.save(root / "model")
    km = det.model.model_
    assert km.fold_check
    expected = batch_verdicts(root / "model", str(root / "mixed.log"))
    flagged = {s for s, v in expected.items() if v["anomalous"]}
    # What the cut alone would flag: the fold check cleared some sessions.
    plain = Detector.load(root / "model")
    pk = plain.model.model_
    plain.model.model_ = dataclasses.replace(
        pk, config=dataclasses.replace(pk.config, fold_check=False)
    )
    alone = {
        v.session
        for v in plain.verdicts(plain.read([str(root / "mixed.log")], learn=False))
        if v.anomalous
    }
    assert flagged < alone, (len(flagged), len(alone))
    sd, out = stream(Detector.load(root / "model"), mixed.lines, 97)
    out += sd.flush()
    got = finals(out)
    assert {s for s, v in got.items() if v["anomalous"]} == flagged
    for sid in flagged:
        for name in ("reason", "position", "observed"):
            assert got[sid].get(name) == expected[sid].get(name), (sid, name)
    ranked = [s for s in flagged if expected[s]["reason"] == "ranked_out"]
    assert ranked  # confirmed by the folds, and reported at the same entry


def test_heap_trimmer_is_glibcs_malloc_trim_or_none() -> None:
    """The detector process gives freed C-heap pages back with glibc's malloc_trim; on a
    system without it there is nothing to call, and the loop goes on without."""
    import platform

    from logwarden.heap import heap_trimmer

    trim = heap_trimmer()
    if platform.libc_ver()[0] == "glibc":
        assert trim is not None
        junk = [bytes(4096) for _ in range(20_000)]  # 80 MB of heap, then freed
        del junk
        assert trim(0) in (0, 1)  # 1: some memory was released
    else:
        assert trim is None


def test_heap_thresholds_are_fixed_on_glibc() -> None:
    """The detector process fixes glibc's mmap and trim thresholds (transient arrays come
    from the heap without fresh pages each time, and the loop's malloc_trim gives them
    back); elsewhere the call reports that nothing was set."""
    import platform

    from logwarden.service.processor import tune_heap

    assert tune_heap() is (platform.libc_ver()[0] == "glibc")


def test_a_session_shorter_than_any_normal_one_ends_early_in_a_stream_too(
    sim_model: Any, tmp_path: Any
) -> None:
    """The length rule at a stream's close as in batch: a session with fewer entries than
    any normal training session is an early end, the network and transitions aside."""
    import dataclasses
    import re

    def lenient(det: Detector) -> Detector:  # the length rule alone decides an END
        km = det.model.model_
        cal = km.calibration
        assert cal is not None and cal.min_length is not None and cal.min_length >= 2
        km.calibrate_with(dataclasses.replace(cal, context=0, max_counts=None, end_keys=None))
        km.threshold = dataclasses.replace(km.threshold, tau=1e-30)
        return det

    expected = batch_verdicts(sim_model.path, str(sim_model.mixed_log))
    normal = next(s for s, v in expected.items() if not v["anomalous"])
    need = Detector.load(sim_model.path).model.model_.calibration.min_length - 1
    mine = [t for t in sim_model.mixed_lines if normal in t][:need]
    assert normal.startswith("req-")
    new = "req-" + re.sub(r"[0-9a-f]", "0", normal[4:])
    assert new not in expected and len(mine) == need
    lines = [*sim_model.mixed_lines, *(t.replace(normal, new) for t in mine)]
    log = tmp_path / "short.log"
    log.write_text("\n".join(lines) + "\n")
    det = lenient(Detector.load(sim_model.path))
    batch = {v.session: v for v in det.verdicts(det.read([str(log)], learn=False))}
    sd, out = stream(lenient(Detector.load(sim_model.path)), lines, 500)
    got = finals(out + sd.flush())
    assert (batch[new].anomalous, batch[new].reason, batch[new].position) == (
        True, "early_end", need,
    )  # fmt: skip
    assert (got[new]["anomalous"], got[new]["reason"], got[new]["position"]) == (
        True, "early_end", need,
    )  # fmt: skip
    assert not batch[normal].anomalous and not got[normal]["anomalous"]


def test_input_warnings_follow_the_recent_lines_and_survive_a_checkpoint(sim_model: Any) -> None:
    """The conditions batch commands warn about, over the recent lines (RECENT_LINES): a
    source that sent lines without ids warns while they are among the recent lines, and no
    longer once as many good lines have come after them; the window goes through a
    checkpoint. Counts since the start stay in ``stats`` (/metrics)."""
    from logwarden.service.stream import RECENT_LINES

    det = Detector.load(sim_model.path)
    good = [t for t in sim_model.mixed_lines if "blk_" in t][:2000]  # two marks of the window
    no_id = [f"2026-03-01 00:00:00.000 7 WARN app: disk {i} is full" for i in range(3000)]
    sd, _ = stream(det, good + no_id, 500)
    (w,) = sd.input_warnings()
    assert (w["kind"], w["lines"], w["of"], w["severe"]) == ("no_session_id", 3000, 5000, 3000)
    state = json.loads(json.dumps(sd.to_state()))
    sd = StreamDetector.from_state(Detector.load(sim_model.path), state)
    assert sd.input_warnings() == [w]
    seq = len(good) + len(no_id) + 1
    more = sim_model.mixed_lines * (RECENT_LINES // len(sim_model.mixed_lines) + 1)
    for i in range(0, RECENT_LINES, 500):
        sd.process((seq + i + j, t) for j, t in enumerate(more[i : i + 500]))
    assert sd.input_warnings() == []
    assert sd.stats["no_session_id_severe"] == 3000 and sd.stats["no_session_id"] >= 3000
