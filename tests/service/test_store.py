"""The store's journal trimming and checkpoints, as the detector process uses them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from logwarden.service.parse_worker import fork_available
from logwarden.service.processor import ForkedCheckpoint
from logwarden.service.store import SCHEMA_VERSION, Store


def _old_store(path: Path, script: str) -> Store:
    """A store written by an older schema (``script`` builds it), opened by this one."""
    import sqlite3

    con = sqlite3.connect(path)
    con.executescript(script)
    con.commit()
    con.close()
    return Store(path, durable=False)


# The verdicts table of stores of schema 1 and 2 (migration tests build such stores).
_OLD_VERDICTS = (
    "CREATE TABLE verdicts (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,"
    " session TEXT NOT NULL, seq INTEGER NOT NULL, final INTEGER NOT NULL DEFAULT 0,"
    " closed_by TEXT, reason TEXT, detector TEXT, model_version INTEGER,"
    " created REAL NOT NULL, acked REAL, data TEXT NOT NULL);"
)


def test_journal_rows_go_in_ranges_and_checkpoints_never_go_back(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.db", durable=False)
    try:
        st.append([f"line {i}" for i in range(1, 101)])
        assert st.first_seq() == 1
        st.save_results(40, [], {"ok": 1}, (40, 1, json.dumps({"at": 40})), (0, 25))
        assert st.first_seq() == 26  # only the range asked, not all up to the checkpoint
        assert [r[0] for r in st.read_journal(25, 3)] == [26, 27, 28]
        st.save_results(40, [], None, None, (25, 40))
        assert st.first_seq() == 41 and st.status() == {"ok": 1}  # status kept
        assert st.processed_seq() == 40
        # a forked copy's checkpoint: written once newer, never over a newer one
        assert st.save_checkpoint(60, 1, json.dumps({"at": 60}))
        assert not st.save_checkpoint(50, 1, json.dumps({"at": 50}))
        ck = st.checkpoint()
        assert ck is not None and ck[0] == 60 and ck[2] == {"at": 60}
        assert st.last_seq() == 100
    finally:
        st.close()


def test_a_forked_checkpoint_is_written_behind_the_detector(tmp_path: Path) -> None:
    """The forked copy writes the state as it was at the fork, niced below the detector
    (its CPU otherwise showed as a cluster of late verdicts)."""
    if not fork_available():
        pytest.skip("no fork on this system (Windows): checkpoints are written in place there")
    path = tmp_path / "s.db"
    Store(path, durable=False).close()

    class Copy:  # what the forked copy serialises: its own niceness, read there
        def to_state(self) -> dict[str, int]:
            return {"nice": os.nice(0)}

    ck = ForkedCheckpoint(str(path))
    assert ck.start(Copy(), 7, 1)  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while (done := ck.poll()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == 7 and ck.failures == 0
    st = Store(path, durable=False)
    try:
        got = st.checkpoint()
    finally:
        st.close()
    assert got is not None and got[:2] == (7, 1)
    assert got[2]["nice"] >= min(19, os.nice(0) + 10)


def test_a_writer_waits_for_the_lock_and_gives_up_at_its_timeout(tmp_path: Path) -> None:
    """Transactions wait for another connection's write lock (in short steps, not SQLite's
    growing sleeps), take it once it is free, stamp lines when they hold it, and give up
    after the store's timeout; the connection keeps its long busy timeout otherwise."""
    import sqlite3
    import threading

    path = tmp_path / "s.db"
    st = Store(path, timeout=0.3)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            st.append(["refused"])
        assert st.last_seq() == 0
        assert st.db.execute("PRAGMA busy_timeout").fetchone()[0] == 300
        freed = []

        def free() -> None:
            time.sleep(0.1)
            freed.append(time.time())
            other.execute("COMMIT")

        t = threading.Thread(target=free)
        t.start()
        first, last, new = st.append(["a", "b"])
        t.join()
        assert (first, last, new) == (1, 2, True)
        acked = [r[3] for r in st.read_journal(0, 10)]
        assert len(acked) == 2 and min(acked) >= freed[0]  # stamped under the lock
        assert st.db.execute("PRAGMA busy_timeout").fetchone()[0] == 300
    finally:
        other.close()
        st.close()


def test_a_durable_append_flushes_the_log_once_the_lock_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An acknowledged line is on disk: a durable store fsyncs the write-ahead log after
    each append, a repeated batch included, and does it with SQLite's write lock free (so
    another writer, the detector, never waits for the disk); the detector's connection
    never fsyncs nor runs SQLite's checkpoints."""
    import sqlite3

    path = tmp_path / "s.db"
    st = Store(path)
    other = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    flushed: list[tuple[int, bool]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        try:  # another writer takes the lock meanwhile, or this raises "locked"
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            free = True
        except sqlite3.OperationalError:
            free = False
        flushed.append((os.fstat(fd).st_ino, free))
        real_fsync(fd)

    try:
        assert st.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync held
        monkeypatch.setattr(os, "fsync", fsync)
        st.append(["a", "b"], batch_id="k")
        wal = os.stat(str(path) + "-wal").st_ino
        assert flushed == [(wal, True)]
        assert st.append(["a", "b"], batch_id="k") == (1, 2, False)  # a retry: synced too
        assert flushed == [(wal, True)] * 2
        st.append(["c"], sync=False)  # the caller syncs later, outside its own locks
        assert len(flushed) == 2
        st.sync()
        assert flushed == [(wal, True)] * 3
        flushed.clear()
        det = Store(path, durable=False, checkpoints=False)
        try:
            det.save_results(3, [], {"ok": 1})
            det.sync()
            assert flushed == []
            assert det.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
            assert st.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 0
        finally:
            det.close()
    finally:
        other.close()
        st.close()


def _verdict(key: str, reason: str, final: bool = True) -> dict[str, object]:
    return {"key": key, "seq": 1, "final": final, "closed_by": "end",
            "verdict": {"session": key.split("@")[0], "reason": reason, "detector": "keys"},
            "lines": ["a", "b"] if final else None}  # fmt: skip


def test_old_verdicts_expire_unless_feedback_names_them(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.db", durable=False)
    try:
        ids = st.save_results(0, [_verdict(f"s{i}@{i}", "early_end") for i in range(6)], None)
        ids += st.save_results(0, [_verdict("young@9", "unseen_key")], None)
        old, young = ids[:6], ids[6]
        now = time.time()
        st.db.execute(f"UPDATE verdicts SET created = ? WHERE id <= {old[-1]}", (now - 100,))
        assert st.add_feedback(old[1], "s1", "normal", 1) is not None
        before = st.anomaly_counts()
        assert st.expire(now - 50, 0.0) == (5, 0)
        left = [a["id"] for a in st.anomalies()]
        assert left == [old[1], young]  # the one with feedback stays, and the young one
        assert st.session_lines(old[0]) is None and st.session_lines(old[1]) == ["a", "b"]
        # the counter of /metrics does not go down; the expired ones are counted apart
        assert before == {("early_end", "keys"): 6, ("unseen_key", "keys"): 1}
        assert st.anomaly_counts() == before and st.expired_count() == 5
        st.save_results(0, [_verdict("young@9", "unseen_key")], None)  # a replayed one
        assert st.anomaly_counts() == before  # not counted twice
        assert st.expire(now - 50, 0.0) == (0, 0)  # nothing more until they age
        # feedback on a verdict that has gone is refused, not stored
        assert st.add_feedback(old[0], "s0", "normal", 1) is None
        assert [f["verdict"] for f in st.feedback()] == [old[1]]
        assert st.expire(None, 0.0) == (0, 0)  # None keeps every verdict
    finally:
        st.close()


def test_feedback_says_whether_its_session_has_closed(tmp_path: Path) -> None:
    """An online update learns feedback once its session has closed (its lines stored);
    each anomaly carries its latest feedback's label (the dashboard's list reads it)."""
    st = Store(tmp_path / "s.db", durable=False)
    try:
        vid, other = st.save_results(
            0, [_verdict("s@1", "r", final=False), _verdict("t@2", "r")], None
        )
        first = st.add_feedback(vid, "s", "confirmed", 1)
        second = st.add_feedback(vid, "s", "normal", 1)
        assert [(f["id"], f["closed"]) for f in st.feedback()] == [(first, False), (second, False)]
        assert [a["feedback_label"] for a in st.anomalies()] == ["normal", None]
        st.save_results(0, [_verdict("s@1", "r")], None)  # the session closes
        assert [f["closed"] for f in st.feedback(vid)] == [True, True]
        assert st.feedback(other) == [] and st.session_lines(vid) == ["a", "b"]
        assert st.verdict(vid)["feedback_label"] == "normal"  # type: ignore[index]
    finally:
        st.close()


def test_expiry_goes_a_bounded_step_at_a_time(tmp_path: Path) -> None:
    from logwarden.service.store import EXPIRE_ROWS

    st = Store(tmp_path / "s.db", durable=False)
    try:
        n = EXPIRE_ROWS + 10
        st.save_results(0, [_verdict(f"s{i}@{i}", "r", final=False) for i in range(n)], None)
        st.db.execute("UPDATE verdicts SET created = 0")
        assert st.expire(1.0, 0.0) == (EXPIRE_ROWS, 0)
        assert st.expire(1.0, 0.0) == (10, 0)
        assert st.anomalies() == [] and sum(st.anomaly_counts().values()) == n
    finally:
        st.close()


def test_idempotency_keys_expire_and_old_stores_migrate(tmp_path: Path) -> None:

    path = tmp_path / "s.db"
    # A store of schema 1: its idempotency keys had no time.
    st = _old_store(
        path,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE batches (id TEXT PRIMARY KEY, first_seq INTEGER, last_seq INTEGER,"
        " n INTEGER NOT NULL);"
        "INSERT INTO batches VALUES ('old', 1, 2, 2);"
        + _OLD_VERDICTS
        + "INSERT INTO verdicts (key, session, seq, reason, detector, created, data)"
        " VALUES ('a@1', 'a', 1, 'early_end', 'keys', 0, '{}'),"
        " ('b@2', 'b', 2, 'performance', 'params', 0, '{}');",
    )
    try:
        assert st.get_meta("schema") == str(SCHEMA_VERSION)
        (stamp,) = st.db.execute("SELECT created FROM batches WHERE id = 'old'").fetchone()
        assert stamp is not None  # counted from the migration
        # the anomaly counters start from the verdicts stored
        assert st.anomaly_counts() == {("early_end", "keys"): 1, ("performance", "params"): 1}
        assert st.append(["x", "y"], batch_id="old") == (1, 2, False)  # still known
        assert st.append(["z"], batch_id="new")[2]
        now = time.time()
        st.db.execute("UPDATE batches SET created = ? WHERE id = 'old'", (now - 100,))
        assert st.expire(None, now - 50) == (0, 1)
        assert st.append(["x", "y"], batch_id="old")[2]  # forgotten: taken as new
        assert not st.append(["z"], batch_id="new")[2]  # young: still a repeat
    finally:
        st.close()


def test_unusable_feedback_is_kept_in_the_store_and_a_schema_2_store_opens(
    tmp_path: Path,
) -> None:
    """Which feedback no update can learn was kept in the server's memory: after a
    restart it was tried again, and shown as scheduled until then. The store keeps it now;
    a store of schema 2 (feedback without the column) opens with none marked, and its
    anomaly counters are not counted again."""

    path = tmp_path / "s.db"
    st = _old_store(
        path,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2'), ('anomaly_counts', '{\"r\\tkeys\": 1}');"
        + _OLD_VERDICTS
        + "INSERT INTO verdicts (key, session, seq, final, reason, detector, created, data)"
        " VALUES ('s@1', 's', 1, 1, 'r', 'keys', 0, '{\"session\": \"s\"}');"
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, verdict_id INTEGER NOT"
        " NULL, session TEXT NOT NULL, label TEXT NOT NULL, created REAL NOT NULL,"
        " model_version INTEGER);"
        "INSERT INTO feedback (verdict_id, session, label, created) VALUES (1, 's', 'normal', 0);",
    )
    try:
        assert st.get_meta("schema") == str(SCHEMA_VERSION)
        assert st.anomaly_counts() == {("r", "keys"): 1}  # as it was
        (old,) = st.feedback()
        assert (old["closed"], old["unusable"]) == (True, False)
        new = st.add_feedback(1, "s", "confirmed", 1)
        st.mark_unusable([old["id"]])
    finally:
        st.close()
    st = Store(path, durable=False)  # a restart
    try:
        assert [(f["id"], f["unusable"]) for f in st.feedback()] == [
            (old["id"], True),
            (new, False),
        ]
    finally:
        st.close()


def test_feedback_no_update_can_learn_stays_unusable_after_a_restart(
    sim_model: Any, tmp_path: Path
) -> None:
    """Feedback on a closed session whose lines the store does not have: the update marks
    it unusable; a restarted server showed it as scheduled and tried it again."""
    from logwarden.service.server import Service, ServiceConfig

    cfg = ServiceConfig(store=str(tmp_path / "v.db"), model=str(sim_model.path), durable=False)
    svc = Service(cfg)  # no detector process: the verdict is written here
    try:
        verdict = {"key": "s@1", "seq": 1, "final": True, "closed_by": "end",
                   "verdict": {"session": "s", "reason": "early_end"}, "lines": None}  # fmt: skip
        (vid,) = svc.read(lambda s: s.save_results(0, [verdict], None))
        fid = svc.read(lambda s: s.add_feedback(vid, "s", "normal", 1))
        assert svc.updater.submit()
        deadline = time.monotonic() + 60
        while svc.feedback()[0]["state"] != "unusable" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(f["id"], f["state"]) for f in svc.feedback()] == [(fid, "unusable")]
    finally:
        svc.close()
    svc = Service(ServiceConfig(store=cfg.store, durable=False))
    try:
        assert [(f["id"], f["state"]) for f in svc.feedback()] == [(fid, "unusable")]
        svc.updater.resume()  # what start does: nothing is taken up again
        assert svc.updater.submit() and svc.feedback()[0]["state"] == "unusable"
        assert [m["version"] for m in svc.read(lambda s: s.models())] == [1]
    finally:
        svc.close()


def test_a_batch_key_with_another_digest_conflicts_and_an_old_plain_key_repeats(
    tmp_path: Path,
) -> None:
    from logwarden.service.store import BATCH_DIGEST_SEP, BatchConflict

    s = Store(str(tmp_path / "s.db"))
    first = s.append(["a", "b"], batch_id="k" + BATCH_DIGEST_SEP + "d1")
    assert s.append(["a", "b"], batch_id="k" + BATCH_DIGEST_SEP + "d1") == (*first[:2], False)
    with pytest.raises(BatchConflict):
        s.append(["a", "b", "c"], batch_id="k" + BATCH_DIGEST_SEP + "d2")
    assert s.last_seq() == first[1]  # nothing stored
    # A key stored before keys had digests is a repeat, whatever the digest now.
    old = s.append(["x"], batch_id="plain")
    assert s.append(["x"], batch_id="plain" + BATCH_DIGEST_SEP + "d3") == (*old[:2], False)
    # Another key that merely starts like the first is its own.
    assert s.append(["y"], batch_id="k2" + BATCH_DIGEST_SEP + "d1")[2] is True
