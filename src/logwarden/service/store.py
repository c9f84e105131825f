"""The service's store: one SQLite database in WAL mode.

It holds everything that must survive a crash (``kill -9`` at any moment):

* ``journal``: every accepted input line, numbered (``seq``), written and committed before
  the service acknowledges it; flush requests and model switches are journal rows too, so
  that a replay does exactly what the first run did;
* ``batches``: the idempotency keys of accepted requests (a client that retries a request
  whose answer it lost does not store its lines twice), kept for a day (``expire``);
* ``verdicts``: anomalies, one row per session instance (``key``: session id and its first
  line's ``seq``, unique), so a replay inserts nothing twice; ``session_lines`` keeps the
  raw lines of a flagged session once it has closed;
  verdicts older than the service's retention go (``expire``), unless feedback names them;
* ``feedback`` (with ``unusable``: its session's lines did not read back as that session,
  so no update can learn it) and ``models`` (model versions, their parent and the feedback
  they learnt);
* ``checkpoint``: the streaming detector's state at a journal position; after a crash the
  detector restarts from it and replays the journal rows after it (the rows up to it are
  then no longer needed and are deleted);
* ``offsets``: positions in external sources (a followed file, a broker), written in the
  same transaction as the lines they delivered;
* ``meta``: the schema version, the last processed ``seq``, and the processor's status
  (counters for metrics).

One process writes lines (the web server), one writes results (the detector process);
SQLite serialises the writers and WAL lets readers run alongside them. No commit waits for
the disk while it holds SQLite's write lock: the server flushes the log after its commit,
before it acknowledges (``Store.sync``), and the detector never flushes (see
``processor.run_processor``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from itertools import takewhile
from pathlib import Path
from typing import Any

from logwarden.errors import StateError

__all__ = [
    "BATCH_DIGEST_SEP",
    "EXPIRE_ROWS",
    "FLUSH",
    "LINE",
    "MODEL",
    "SCHEMA_VERSION",
    "BatchConflict",
    "Store",
]

# An idempotency key and the digest of its request's lines, in one batch id: the same key
# with another body is a conflict, not a repeat (see Store.append). A control character
# cannot be in an HTTP header's value.
BATCH_DIGEST_SEP = "\x1f"


class BatchConflict(Exception):
    """A batch id's key was used before with other lines."""


SCHEMA_VERSION = 3

# The columns each schema lacks, added by Store._migrate: schema 1 had no time on an
# idempotency key (they were kept forever) and no anomaly counters in meta (they were
# counted from the table); schema 2 kept which feedback is unusable in memory only (a
# restart tried it again, and showed it as scheduled meanwhile).
_MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    1: (("batches", "created", "REAL"),),
    2: (("feedback", "unusable", "INTEGER NOT NULL DEFAULT 0"),),
}

# journal row kinds
LINE = 0
FLUSH = 1
MODEL = 2  # text: the model version to use from this row on

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, text TEXT NOT NULL, acked REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, first_seq INTEGER, last_seq INTEGER, n INTEGER NOT NULL, created REAL
);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    final INTEGER NOT NULL DEFAULT 0,
    closed_by TEXT,
    reason TEXT,
    detector TEXT,
    model_version INTEGER,
    created REAL NOT NULL,
    acked REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_session ON verdicts (session);
CREATE TABLE IF NOT EXISTS session_lines (verdict_id INTEGER PRIMARY KEY, lines TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    verdict_id INTEGER NOT NULL,
    session TEXT NOT NULL,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    model_version INTEGER,
    unusable INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS feedback_verdict ON feedback (verdict_id);
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    parent INTEGER,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    feedback TEXT
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, model_version INTEGER,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS offsets (source TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# A verdict row as ``_row`` reads it: with the label of its latest feedback (the
# dashboard's list shows it after a reload too).
_VERDICT_COLUMNS = (
    "id, final, model_version, data, created, seq, acked, "
    "(SELECT f.label FROM feedback f WHERE f.verdict_id = verdicts.id ORDER BY f.id DESC LIMIT 1)"
)


def _count_key(reason: str | None, detector: str | None) -> str:
    return f"{reason or ''}\t{detector or ''}"


# Verdicts (and idempotency keys) deleted per call of Store.expire at most.
EXPIRE_ROWS = 1000

# Milliseconds SQLite's busy handler waits for the write lock, within _begin_immediate's
# own waiting (see there).
_LOCK_POLL_MS = 1


def _begin_immediate(db: sqlite3.Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock in steps of about a millisecond for
    up to ``timeout`` seconds. SQLite's own busy handler sleeps longer and longer while it
    waits (25, 50, then 100 ms at a time): when the web server's commit held the lock for
    0.2 s (a slow fsync), the detector took it 0.33 s after it asked, and the lines acked
    meanwhile came to it as one late burst. The connection's long busy timeout stays for
    everything else (a reader rarely waits in WAL mode, and then it should)."""
    deadline = time.monotonic() + timeout
    db.execute(f"PRAGMA busy_timeout = {_LOCK_POLL_MS}")
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() >= deadline:
                    raise
    finally:
        db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


def _sync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a system without directory descriptors (Windows)
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class Store:
    """A connection to the store (one per thread or process; see the module docstring).

    ``durable``: ``append`` returns once its lines are on disk, so an acknowledged line
    survives a power loss too; otherwise it survives a crash of the process but perhaps
    not of the machine. The commit itself never waits for the disk (``synchronous=NORMAL``):
    ``sync`` flushes the write-ahead log after it, once SQLite's write lock is free. With
    ``synchronous=FULL`` the server's commit held the lock through its fsync, up to half a
    second when the disk was busy, and the detector's verdicts waited behind it.

    ``checkpoints``: this connection runs SQLite's automatic checkpoints (copying the log
    into the database, two fsyncs) after a commit that filled the log. The service leaves
    them to the server's connection: in the detector process they stalled the verdicts for
    as long as the disk took.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        durable: bool = True,
        timeout: float = 30.0,
        checkpoints: bool = True,
    ) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.durable = durable
        self._wal: tuple[int, int] | None = None  # (descriptor, inode) of the -wal file
        self._wal_lock = threading.Lock()
        try:
            self.db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            # Without a log (a file system that cannot share memory), commits wait for the
            # disk themselves.
            self._wal_mode = str(mode).lower() == "wal"
            sync = "NORMAL" if self._wal_mode or not durable else "FULL"
            self.db.execute(f"PRAGMA synchronous={sync}")
            if not checkpoints:
                self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.db.execute("PRAGMA foreign_keys=OFF")
            with self.transaction(sync=False):
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                found = self.get_meta("schema")
                if found is None:
                    self.set_meta("schema", str(SCHEMA_VERSION))
                elif found.isdigit() and int(found) in _MIGRATIONS:
                    self._migrate(int(found))
                elif found != str(SCHEMA_VERSION):
                    raise StateError(
                        f"{self.path} is a store of schema {found}, this logwarden reads {SCHEMA_VERSION}"
                    )
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path} is not a usable logwarden store: {exc}") from None
        self.sync()  # the schema, and a new file's directory entry
        # Verdicts up to this id were looked at by ``expire`` (those left are named by
        # feedback): it does not read them again.
        self._expired_to = 0

    def _migrate(self, found: int) -> None:
        """An older store brought to this schema (in the caller's transaction). A table
        the old store did not have was just created whole (``_SCHEMA``): its columns are
        there already."""
        for version in range(found, SCHEMA_VERSION):
            for table, column, decl in _MIGRATIONS[version]:
                have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        if found < 2:
            # Keys of before the migration count from now (a retry of one is still caught).
            self.db.execute("UPDATE batches SET created = ? WHERE created IS NULL", (time.time(),))
            # The anomaly counters start from what the store holds.
            rows = self.db.execute(
                "SELECT reason, detector, COUNT(*) FROM verdicts GROUP BY reason, detector"
            )
            self._add_counts({_count_key(r, d): n for r, d, n in rows})
        self.set_meta("schema", str(SCHEMA_VERSION))

    def sync(self) -> None:
        """Put every commit so far on disk (a durable store; otherwise nothing): fsync the
        write-ahead log, whose frames hold the commits not yet checkpointed (a checkpoint
        fsyncs the log before it copies it and the database after, and the log is only
        rewritten from its start after a complete one, so what it copied is on disk)."""
        if not self.durable or not self._wal_mode:
            return
        with self._wal_lock:
            try:
                ino = os.stat(self.path + "-wal").st_ino
            except FileNotFoundError:  # no log: everything is in the database file
                return
            if self._wal is None or self._wal[1] != ino:
                if self._wal is not None:
                    os.close(self._wal[0])
                # Writable: Windows flushes only a descriptor that may write.
                self._wal = (os.open(self.path + "-wal", os.O_RDWR), ino)
                _sync_dir(os.path.dirname(os.path.abspath(self.path)))  # a new log's entry
            os.fsync(self._wal[0])

    def close(self) -> None:
        self.db.close()
        with self._wal_lock:
            if self._wal is not None:
                os.close(self._wal[0])
                self._wal = None

    # -- transactions --------------------------------------------------------------------------

    class _Tx:
        def __init__(self, store: Store, sync: bool) -> None:
            self.store = store
            self.sync = sync

        def __enter__(self) -> sqlite3.Connection:
            _begin_immediate(self.store.db, self.store.timeout)
            return self.store.db

        def __exit__(self, kind: object, exc: object, tb: object) -> None:
            if kind is None:
                self.store.db.execute("COMMIT")
                if self.sync:
                    self.store.sync()
            else:
                self.store.db.execute("ROLLBACK")

    def transaction(self, sync: bool = True) -> Store._Tx:
        """``with store.transaction():`` one atomic write (BEGIN IMMEDIATE ... COMMIT), on
        disk when the block ends in a durable store (``sync=False``: the caller syncs)."""
        return Store._Tx(self, sync)

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- the journal ---------------------------------------------------------------------------

    def append(
        self,
        lines: Sequence[str],
        *,
        batch_id: str | None = None,
        offsets: dict[str, str] | None = None,
        kind: int = LINE,
        sync: bool = True,
    ) -> tuple[int, int, bool]:
        """Journal ``lines`` in one transaction (with ``offsets`` of their source);
        returns (first seq, last seq, whether they were new). A ``batch_id`` seen before
        stores nothing and returns the first time's numbers; one of the form
        ``key + BATCH_DIGEST_SEP + digest`` whose key came before with another digest
        raises BatchConflict (nothing stored). ``sync``: put them on disk
        before returning (a durable store); a caller that passes False calls ``sync``
        itself before it acknowledges them (outside its own locks, say)."""
        got = self._append(lines, batch_id, offsets, kind)
        if sync:
            # A repeated batch too (it commits nothing): the first request's commit may
            # not have reached the disk (its process died before its sync), yet it is
            # acknowledged now.
            self.sync()
        return got

    def _append(
        self, lines: Sequence[str], batch_id: str | None, offsets: dict[str, str] | None, kind: int
    ) -> tuple[int, int, bool]:
        with self.transaction(sync=False) as db:
            # Stamped once the write lock is held: the lines are acknowledged after this
            # commit, and a request that waited for the lock was not acknowledged before.
            now = time.time()
            if batch_id is not None:
                row = db.execute(
                    "SELECT first_seq, last_seq FROM batches WHERE id = ?", (batch_id,)
                ).fetchone()
                if row is not None:
                    return int(row[0] or 0), int(row[1] or 0), False
                key, sep, _ = batch_id.partition(BATCH_DIGEST_SEP)
                if sep:
                    # A key stored before keys had digests: a repeat, as it was then.
                    row = db.execute(
                        "SELECT first_seq, last_seq FROM batches WHERE id = ?", (key,)
                    ).fetchone()
                    if row is not None:
                        return int(row[0] or 0), int(row[1] or 0), False
                    if db.execute(
                        "SELECT 1 FROM batches WHERE id > ? AND id < ? LIMIT 1",
                        (key + BATCH_DIGEST_SEP, key + chr(ord(BATCH_DIGEST_SEP) + 1)),
                    ).fetchone():
                        raise BatchConflict(key)
            row = db.execute("SELECT MAX(seq) FROM journal").fetchone()
            last = int(row[0]) if row[0] is not None else int(self.get_meta("last_seq") or 0)
            first = last + 1
            db.executemany(
                "INSERT INTO journal (seq, kind, text, acked) VALUES (?, ?, ?, ?)",
                ((first + i, kind, t, now) for i, t in enumerate(lines)),
            )
            last = first + len(lines) - 1
            if lines:
                self.set_meta("last_seq", str(last))
            if batch_id is not None:
                db.execute(
                    "INSERT INTO batches (id, first_seq, last_seq, n, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (batch_id, first, last, len(lines), now),
                )
            for source, value in (offsets or {}).items():
                db.execute(
                    "INSERT INTO offsets (source, value) VALUES (?, ?) "
                    "ON CONFLICT(source) DO UPDATE SET value = excluded.value",
                    (source, value),
                )
        return first, last, True

    def read_journal(self, after: int, limit: int) -> list[tuple[int, int, str, float]]:
        # The rows as SQLite gives them: the columns' types (an integer key, INTEGER, TEXT
        # and REAL affinity, all written by ``append``) are those already. Converting each
        # value again was 4 % of the detector's time at 20,000 lines/s.
        return self.db.execute(
            "SELECT seq, kind, text, acked FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()

    def last_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM journal").fetchone()
        if row[0] is not None:
            return int(row[0])
        return int(self.get_meta("last_seq") or 0)

    def first_seq(self) -> int | None:
        """The lowest sequence number still in the journal (None: it is empty)."""
        row = self.db.execute("SELECT MIN(seq) FROM journal").fetchone()
        return None if row[0] is None else int(row[0])

    def processed_seq(self) -> int:
        return int(self.get_meta("processed_seq") or 0)

    def last_model_request(self, after: int) -> int | None:
        """The version named by the journal's last model switch after ``after`` (one the
        detector process has not reached yet), or None."""
        row = self.db.execute(
            "SELECT text FROM journal WHERE seq > ? AND kind = ? ORDER BY seq DESC LIMIT 1",
            (after, MODEL),
        ).fetchone()
        return None if row is None else int(row[0])

    def offset(self, source: str) -> str | None:
        row = self.db.execute("SELECT value FROM offsets WHERE source = ?", (source,)).fetchone()
        return None if row is None else str(row[0])

    # -- results (the detector process) --------------------------------------------------------

    def save_results(
        self,
        processed: int,
        verdicts: Iterable[dict[str, Any]],
        status: dict[str, Any] | None,
        checkpoint: tuple[int, int | None, str] | None = None,
        trim: tuple[int, int] | None = None,
    ) -> list[int]:
        """One transaction: the verdicts (inserted, or updated when final; never twice),
        the processed position, the status (None: leave it), perhaps a checkpoint, and
        perhaps the deletion of the journal rows with ``trim[0] < seq <= trim[1]`` (rows
        that a checkpoint made needless: a caller deletes them a few thousand at a time,
        not all at once in the checkpoint's transaction). Returns the ids of newly
        inserted verdicts."""
        new_ids: list[int] = []
        counted: dict[str, int] = {}
        with self.transaction() as db:
            # Stamped once the write lock is held, as lines are: a verdict that waited for
            # the lock was not visible before (the detector's commit, just after, does not
            # wait for the disk).
            now = time.time()
            for v in verdicts:
                data = json.dumps(v["verdict"], ensure_ascii=False)
                cur = db.execute(
                    "INSERT INTO verdicts (key, session, seq, final, closed_by, reason, detector, "
                    "model_version, created, acked, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(key) DO NOTHING",
                    (
                        v["key"], v["verdict"]["session"], v["seq"], int(v["final"]),
                        v.get("closed_by"), v["verdict"].get("reason"),
                        v["verdict"].get("detector"), v.get("model_version"), now,
                        v.get("acked"), data,
                    ),
                )  # fmt: skip
                if cur.rowcount:
                    new_ids.append(int(cur.lastrowid or 0))
                    k = _count_key(v["verdict"].get("reason"), v["verdict"].get("detector"))
                    counted[k] = counted.get(k, 0) + 1
                elif v["final"]:
                    db.execute(
                        "UPDATE verdicts SET final = 1, closed_by = ?, data = ? WHERE key = ?",
                        (v.get("closed_by"), data, v["key"]),
                    )
                if v["final"] and v.get("lines") is not None:
                    row = db.execute(
                        "SELECT id FROM verdicts WHERE key = ?", (v["key"],)
                    ).fetchone()
                    db.execute(
                        "INSERT OR REPLACE INTO session_lines (verdict_id, lines) VALUES (?, ?)",
                        (row[0], json.dumps(v["lines"], ensure_ascii=False)),
                    )
            if counted:
                self._add_counts(counted)
            self.set_meta("processed_seq", str(processed))
            if status is not None:
                self.set_meta("status", json.dumps(status))
            if checkpoint is not None:
                seq, version, state = checkpoint
                db.execute(
                    "INSERT OR REPLACE INTO checkpoint (id, seq, model_version, state) "
                    "VALUES (1, ?, ?, ?)",
                    (seq, version, state),
                )
            if trim is not None:
                db.execute("DELETE FROM journal WHERE seq > ? AND seq <= ?", trim)
        return new_ids

    def expire(self, verdicts_before: float | None, keys_before: float) -> tuple[int, int]:
        """Delete, in one transaction, up to ``EXPIRE_ROWS`` verdicts stored before the time
        ``verdicts_before`` (None: keep them all), with their sessions' lines, except
        those that feedback names (an update reads their lines; the history shows them);
        and up to as many idempotency keys stored before ``keys_before``. The oldest first,
        found along the ids (the stamps grow with them: both are given under the write
        lock), so a call costs about a millisecond however large the store. Returns the
        numbers of verdicts and keys deleted."""
        gone = keys = 0
        upto = self._expired_to
        with self.transaction() as db:
            if verdicts_before is not None:
                gone, upto = self._expire_verdicts(db, verdicts_before)
            rows = db.execute(
                "SELECT rowid, created FROM batches ORDER BY rowid LIMIT ?", (EXPIRE_ROWS,)
            ).fetchall()
            old = list(takewhile(lambda r: r[1] is not None and r[1] < keys_before, rows))
            if old:
                keys = db.execute("DELETE FROM batches WHERE rowid <= ?", (old[-1][0],)).rowcount
        self._expired_to = upto  # once committed
        return gone, keys

    def _expire_verdicts(self, db: sqlite3.Connection, before: float) -> tuple[int, int]:
        """``expire``'s verdicts: how many went, and the id up to which all were seen."""
        rows = db.execute(
            "SELECT id, created FROM verdicts WHERE id > ? ORDER BY id LIMIT ?",
            (self._expired_to, EXPIRE_ROWS),
        ).fetchall()
        old = list(takewhile(lambda r: r[1] < before, rows))
        if not old:
            return 0, self._expired_to
        span = (old[0][0], old[-1][0])
        kept = "(SELECT verdict_id FROM feedback)"
        gone = db.execute(
            f"DELETE FROM verdicts WHERE id BETWEEN ? AND ? AND id NOT IN {kept}", span
        ).rowcount
        db.execute(
            f"DELETE FROM session_lines WHERE verdict_id BETWEEN ? AND ? AND verdict_id NOT IN {kept}",
            span,
        )
        if gone:
            self.set_meta("expired", str(int(self.get_meta("expired") or 0) + gone))
        return gone, span[1]

    def save_checkpoint(self, seq: int, version: int | None, state: str) -> bool:
        """A checkpoint alone (a forked copy of the detector process writes it), unless
        the store has one at ``seq`` or later already. Returns whether it was written."""
        with self.transaction() as db:
            row = db.execute("SELECT seq FROM checkpoint").fetchone()
            if row is not None and int(row[0]) >= seq:
                return False
            db.execute(
                "INSERT OR REPLACE INTO checkpoint (id, seq, model_version, state) "
                "VALUES (1, ?, ?, ?)",
                (seq, version, state),
            )
        return True

    def checkpoint(self) -> tuple[int, int | None, dict[str, Any]] | None:
        row = self.db.execute("SELECT seq, model_version, state FROM checkpoint").fetchone()
        if row is None:
            return None
        try:
            return int(row[0]), None if row[1] is None else int(row[1]), json.loads(row[2])
        except ValueError as exc:
            raise StateError(f"{self.path}: corrupt checkpoint: {exc}") from None

    def status(self) -> dict[str, Any]:
        raw = self.get_meta("status")
        return json.loads(raw) if raw else {}

    # -- reading verdicts ----------------------------------------------------------------------

    def anomalies(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE id > ? ORDER BY id"
        args: tuple[Any, ...] = (since,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (since, limit)
        return [_row(r) for r in self.db.execute(sql, args)]

    def verdict(self, vid: int) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE id = ?",
            (vid,),
        ).fetchone()
        return None if row is None else _row(row)

    def verdict_of_session(self, session: str) -> dict[str, Any] | None:
        """The latest verdict of a session id."""
        row = self.db.execute(
            f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE session = ? ORDER BY id DESC LIMIT 1",
            (session,),
        ).fetchone()
        return None if row is None else _row(row)

    def session_lines(self, vid: int) -> list[str] | None:
        row = self.db.execute(
            "SELECT lines FROM session_lines WHERE verdict_id = ?", (vid,)
        ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def anomaly_counts(self) -> dict[tuple[str, str], int]:
        """Anomalies reported by (reason, detector), those expired since included: kept
        as counters as they are stored (a scrape of /metrics reads them, not the table)."""
        out: dict[tuple[str, str], int] = {}
        for k, n in json.loads(self.get_meta("anomaly_counts") or "{}").items():
            reason, _, detector = k.partition("\t")
            out[reason, detector] = int(n)
        return out

    def expired_count(self) -> int:
        """Anomalies deleted after the retention (``expire``)."""
        return int(self.get_meta("expired") or 0)

    def _add_counts(self, counted: dict[str, int]) -> None:
        counts = json.loads(self.get_meta("anomaly_counts") or "{}")
        for k, n in counted.items():
            counts[k] = counts.get(k, 0) + n
        self.set_meta("anomaly_counts", json.dumps(counts))

    # -- feedback and models -------------------------------------------------------------------

    def add_feedback(self, vid: int, session: str, label: str, version: int | None) -> int | None:
        """The feedback's id; None when the verdict is no longer stored (expired since
        it was read)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO feedback (verdict_id, session, label, created, model_version) "
                "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM verdicts WHERE id = ?)",
                (vid, session, label, time.time(), version, vid),
            )
        return int(cur.lastrowid or 0) if cur.rowcount else None

    def last_feedback(self, vid: int) -> tuple[int, str] | None:
        """The latest feedback on anomaly ``vid``: (its id, its label), or None."""
        row = self.db.execute(
            "SELECT id, label FROM feedback WHERE verdict_id = ? ORDER BY id DESC LIMIT 1", (vid,)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def feedback(self, vid: int | None = None) -> list[dict[str, Any]]:
        """Feedback, oldest first (``vid``: on that anomaly only); ``closed``: whether its
        session has closed (an online update learns it then, from the lines stored);
        ``unusable``: an update found that its session's lines cannot be learnt
        (``mark_unusable``)."""
        sql = (
            "SELECT f.id, f.verdict_id, f.session, f.label, f.created, f.model_version, "
            "v.final, f.unusable FROM feedback f LEFT JOIN verdicts v ON v.id = f.verdict_id"
        )
        args: tuple[Any, ...] = ()
        if vid is not None:
            sql += " WHERE f.verdict_id = ?"
            args = (vid,)
        return [
            {
                "id": r[0],
                "verdict": r[1],
                "session": r[2],
                "label": r[3],
                "created": r[4],
                "model_version": r[5],
                "closed": bool(r[6]),
                "unusable": bool(r[7]),
            }
            for r in self.db.execute(sql + " ORDER BY f.id", args)
        ]

    def mark_unusable(self, ids: Iterable[int]) -> None:
        """Feedback an update could not learn (its session's lines do not read back as
        that session): kept so, across restarts, and never tried again."""
        ids = sorted(set(ids))
        if not ids:
            return
        with self.transaction() as db:
            db.executemany("UPDATE feedback SET unusable = 1 WHERE id = ?", ((i,) for i in ids))

    def add_model(
        self,
        version: int,
        path: str,
        parent: int | None,
        status: str,
        note: str = "",
        feedback: Sequence[int] = (),
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO models (version, path, parent, created, status, note, "
                "feedback) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (version, path, parent, time.time(), status, note, json.dumps(list(feedback))),
            )

    def set_model_status(self, version: int, status: str, note: str | None = None) -> None:
        with self.transaction() as db:
            if note is None:
                db.execute("UPDATE models SET status = ? WHERE version = ?", (status, version))
            else:
                db.execute(
                    "UPDATE models SET status = ?, note = ? WHERE version = ?",
                    (status, note, version),
                )

    def models(self) -> list[dict[str, Any]]:
        return [
            {
                "version": r[0],
                "path": r[1],
                "parent": r[2],
                "created": r[3],
                "status": r[4],
                "note": r[5],
                "feedback": json.loads(r[6] or "[]"),
            }
            for r in self.db.execute(
                "SELECT version, path, parent, created, status, note, feedback FROM models "
                "ORDER BY version"
            )
        ]

    def model_path(self, version: int) -> str | None:
        row = self.db.execute("SELECT path FROM models WHERE version = ?", (version,)).fetchone()
        return None if row is None else str(row[0])


def _row(r: Sequence[Any]) -> dict[str, Any]:
    d = json.loads(r[3])
    return {
        "id": int(r[0]), **d, "closed": bool(r[1]), "model_version": r[2],
        "detected_at": r[4],  # when the anomaly was first stored (epoch seconds)
        "seq": r[5],  # the input line (journal number) that raised it
        "acked_at": r[6],  # when that line was acknowledged (None: after a restart)
        "feedback_label": r[7],  # the latest feedback's label (None: no feedback)
    }  # fmt: skip
