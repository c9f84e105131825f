"""The detector process: journal in, verdicts out, checkpoints along the way.

It runs apart from the web server (its own process, so the two use both cores and the
GIL of one never waits for the other). It reads journal rows after its position, runs
them through a :class:`StreamDetector`, and commits in one transaction the verdicts,
its new position, its status (counters for ``/metrics``) and from time to time a
checkpoint of the detector's state. On start it resumes from the checkpoint and replays
the journal after it: verdicts already stored are not stored again (their keys are
unique), so a ``kill -9`` at any moment loses and duplicates nothing.

Only one processor may work on a store: it holds an exclusive ``flock`` on
``<store>.lock`` for its lifetime. On Linux it also asks to be killed with its parent
(``PR_SET_PDEATHSIG``), and checks its parent anyway, so a killed server leaves no
detector behind.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from logwarden.children import die_with_parent
from logwarden.detect import Detector
from logwarden.heap import heap_trimmer, set_heap_thresholds
from logwarden.service.parse_worker import ParseWorker, fork_available
from logwarden.service.store import EXPIRE_ROWS, FLUSH, LINE, MODEL, Store
from logwarden.service.stream import Emitted, StreamConfig, StreamDetector

__all__ = ["LATENCY_BUCKETS", "ForkedCheckpoint", "ProcessorConfig", "run_processor"]

# New templates listed in the status (all are counted).
_NEW_TEMPLATES_SHOWN = 200

# Under constant load a checkpoint is taken after this many checkpoint intervals anyway.
_BUSY_CHECKPOINT = 2

# Idle means no new lines for this long (or a checkpoint interval, if shorter): at 20,000
# lines/s in 500-line requests the detector found the journal empty between most of them,
# so "idle" checkpoints came every interval under load, not every _BUSY_CHECKPOINT.
_QUIET_SECONDS = 1.0

# Under load: the status at most this often (seconds); the collector's young generation
# and the whole heap (see run_processor).
_STATUS_SECONDS = 0.5

# Journal rows deleted per step at least, once a checkpoint has made them needless.
_TRIM_ROWS = 1000
_YOUNG_GC_SECONDS = 1.0
_FULL_GC_SECONDS = 600.0

# Retention: old verdicts and idempotency keys are deleted EXPIRE_ROWS at a time (about a
# millisecond), at most every _EXPIRE_SECONDS, or every _EXPIRE_BACKLOG_SECONDS while a
# call finds a full batch to delete. Idempotency keys are kept a day: a client retries
# within minutes, and at 40 requests a second they would be millions of rows a day.
_EXPIRE_SECONDS = 1.0
_EXPIRE_BACKLOG_SECONDS = 0.1
KEY_RETAIN_SECONDS = 86_400.0

# Niceness added to a forked checkpoint writer (see ForkedCheckpoint).
_CHECKPOINT_NICE = 10

#: Upper bounds (seconds) of the ack -> verdict latency histogram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ProcessorConfig:
    store: str
    stream: StreamConfig
    # Journal rows read per step at most. A step's verdicts are committed when it ends, so
    # a detector catching up after a stall (the web server's commit held the store's write
    # lock for half a second: a slow fsync) gave the first lines of every 5,000-line step
    # 150 ms more than their place in the queue; 1,000-line steps take 30-60 ms, and the
    # fixed cost of a step (about 2 ms) stays small against it. The cap also bounds the
    # detector's memory: the heap a step needs stays mapped after it (one 20,000-line step
    # left the process 57 MB larger for good, one of 5,000 about 10 MB).
    batch_lines: int = 1_000
    # At most this long between checkpoints. A checkpoint holds up the verdicts behind it
    # for as long as it takes (a few hundred open sessions: about 0.1 s); every 5 s that
    # was the p99 of ack -> verdict at 10,000 lines/s. A restart replays what came after.
    checkpoint_seconds: float = 30.0
    poll_seconds: float = 0.02  # idle wait for new rows (woken early when told)
    # Parse lines in a second process (service.parse_worker) where fork is available.
    parse_worker: bool = True
    # Checkpoints written by a forked copy of the process (where fork is available).
    fork_checkpoints: bool = True
    # Verdicts stored longer ago than this (seconds) are deleted, except those that
    # feedback names; None keeps them all.
    retain_seconds: float | None = 30 * 86_400.0


@contextlib.contextmanager
def store_lock(store: str) -> Iterator[None]:
    """Exclusive ownership of a store's processing (blocks while another holds it)."""
    import fcntl

    fh = open(f"{store}.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


class _Latency:
    """Ack -> verdict latencies of entry-level anomalies, as histogram buckets."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.n = 0

    def add(self, seconds: float) -> None:
        i = 0
        while i < len(LATENCY_BUCKETS) and seconds > LATENCY_BUCKETS[i]:
            i += 1
        self.counts[i] += 1
        self.sum += seconds
        self.n += 1

    def as_dict(self) -> dict[str, Any]:
        return {"buckets": list(LATENCY_BUCKETS), "counts": self.counts, "sum": self.sum,
                "count": self.n}  # fmt: skip


_MMAP_BYTES = 4 * 1024 * 1024
_TRIM_BYTES = 64 * 1024 * 1024


def tune_heap() -> bool:
    """Fixed glibc heap thresholds for the detector process (False where there is no
    glibc): arrays below 4 MB come from the heap, and freed memory stays there until the
    loop's ``malloc_trim`` (every second, see ``heap_trimmer``) gives the free pages back.

    By default glibc raises its mmap bound by itself up to 32 MB as large blocks are
    freed; a step's transient arrays then came from the heap and stayed resident (after
    one 20,000-line step, 132 MB instead of 108). Fixing the bound at 256 KB kept memory
    flat but cost 1.6 page faults per line: every stacked weight gather and input
    projection of the parameter networks (a few hundred KB) got fresh pages, and with
    glibc's 128 KB trim threshold the heap shrank and grew again around smaller ones.
    Measured in one process on a simulated stream (1,000-line steps): 41-44k lines per
    CPU second with 256 KB, 46-50k with these bounds, page faults 240,000 -> 220."""
    return set_heap_thresholds(_MMAP_BYTES, _TRIM_BYTES)


def _load(store: Store, version: int) -> Detector:
    path = store.model_path(version)
    if path is None:
        raise RuntimeError(f"model version {version} is not in the store")
    return Detector.load(path)


class ForkedCheckpoint:
    """A checkpoint that a forked copy of the detector process writes, while the detector
    goes on: serialising the state (about 0.1 s for a few hundred open sessions) held the
    verdicts behind it, and under load every one of them was late. The copy holds the
    state as it was at the fork, after the verdicts up to its position were committed; it
    writes with its own connection and exits. It shares the store's lock with the detector
    (a forked descriptor), so a detector that restarts after a crash waits for it."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.pid: int | None = None
        self.pos = 0
        self.failures = 0

    def start(self, sd: StreamDetector, pos: int, version: int) -> bool:
        if not hasattr(os, "fork"):
            return False
        try:
            pid = os.fork()
        except OSError:
            return False
        if pid == 0:  # the copy
            code = 1
            try:
                # Behind the detector, its parse worker and the web server for the cores:
                # serialising a few hundred open sessions is a fraction of a second of CPU,
                # and taken from the detector it showed as a cluster of late verdicts.
                with contextlib.suppress(OSError, AttributeError):
                    os.nice(_CHECKPOINT_NICE)
                state = json.dumps(sd.to_state(), ensure_ascii=False)
                st = Store(self.store, durable=False, checkpoints=False)
                try:
                    st.save_checkpoint(pos, version, state)
                finally:
                    st.close()
                code = 0
            finally:
                os._exit(code)  # nothing of the detector's own (buffers, atexit) runs here
        self.pid, self.pos = pid, pos
        return True

    def poll(self) -> int | None:
        """The position of the checkpoint just written, once the copy has exited."""
        if self.pid is None:
            return None
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            done, status = self.pid, 1 << 8
        if done == 0:
            return None
        self.pid = None
        if os.waitstatus_to_exitcode(status) == 0:
            return self.pos
        self.failures += 1
        return None


class Doorbell:
    """The detector process's end of a pipe from the server: a byte rings it (new lines),
    end of file means the server closed it or died (then the processor stops: a killed
    server leaves no detector behind, whatever it held when it died)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # a multiprocessing Connection, used as a plain file descriptor
        self.fd = conn.fileno()
        self.closed = False

    def wait(self, timeout: float) -> None:
        import select

        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                self.closed = True


def ring(fd: int) -> None:
    """The server's side: wake the detector (never blocks; a full pipe rings already)."""
    with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
        os.write(fd, b"w")


def run_processor(cfg: ProcessorConfig, bell: Any = None) -> None:
    """The processor's main loop (the target of the detector process); ``bell``: the read
    end of the server's pipe (see ``Doorbell``)."""
    die_with_parent()
    parent = os.getppid()
    door = Doorbell(bell) if bell is not None else None
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        # Small matrices: a second BLAS thread only fights the web server for the core.
        threadpool_limits(1)
    with store_lock(cfg.store):
        # What this process commits (verdicts, the processed position, checkpoints) is
        # derived from the journal, whose lines the server commits durably before it
        # acknowledges them. So its commits need not wait for the disk: a machine crash
        # loses at most its last transactions, whole (WAL frames are recovered as a
        # prefix), and the restart recomputes them from the journal; a process crash loses
        # nothing. An fsync per step put the disk's latency spikes on every verdict; so
        # did SQLite's automatic checkpoints (the server's connection runs them).
        store = Store(cfg.store, durable=False, checkpoints=False)
        # The open sessions are millions of small objects in no reference cycle: the
        # automatic collector would rescan them over and over (measured: a quarter of the
        # time). The loop collects on a clock instead.
        gc.disable()
        try:
            _loop(cfg, store, door, parent)
        finally:
            store.close()


def _loop(cfg: ProcessorConfig, store: Store, door: Doorbell | None, parent: int) -> None:
    tune_heap()  # before the model loads and the parse worker forks (it inherits it)
    ck = store.checkpoint()
    if ck is not None:
        pos, version, state = ck
        version = version or 1
        sd = StreamDetector.from_state(_load(store, version), state, cfg.stream)
    else:
        pos, version = 0, 1
        sd = StreamDetector(_load(store, version), cfg.stream)
    # Drift is advisory: it starts again at a restart (its state is not checkpointed).
    drift = DriftWatch.create(sd.detector)
    if drift is not None:
        sd.observers.append(drift)
    gc.freeze()  # the model and its caches: never collectable, never scanned again
    worker = (
        ParseWorker(sd.parser, follow=cfg.store, after=pos)
        if cfg.parse_worker and fork_available()
        else None
    )
    try:
        _steps(cfg, store, door, parent, sd, pos, version, drift, worker)
    finally:
        if worker is not None:
            worker.stop()


def _steps(
    cfg: ProcessorConfig,
    store: Store,
    door: Doorbell | None,
    parent: int,
    sd: StreamDetector,
    pos: int,
    version: int,
    drift: DriftWatch | None,
    worker: ParseWorker | None,
) -> None:
    def run(lines: list[tuple[int, str]]) -> list[Emitted]:
        if worker is None:
            return sd.process(lines)
        # The worker follows the journal: it has parsed these lines, or is at them.
        return sd.process_parsed(worker.chunks(sd.parser, lines))

    replay_until = store.processed_seq()  # rows up to here were processed before a restart
    # Journal rows up to the checkpoint are deleted a step's worth at a time: all at once,
    # the checkpoint's transaction deleted half a minute of lines (600,000 at 20,000
    # lines/s, about a microsecond each) and held the verdicts behind it for most of a
    # second; 5,000 per step slowed every step for seconds after each checkpoint.
    ck_pos = pos  # the position of the latest checkpoint
    first = store.first_seq()
    trimmed = pos if first is None else min(pos, first - 1)  # rows <= trimmed: gone

    def trim(step: int) -> tuple[int, int] | None:
        """The rows to delete with this step's commit: as many as it read (so deleting
        keeps up with the input), at least _TRIM_ROWS (about a millisecond's work)."""
        nonlocal trimmed
        if trimmed >= ck_pos:
            return None
        lo, trimmed = trimmed, min(ck_pos, trimmed + max(step, _TRIM_ROWS))
        return lo, trimmed

    forked = ForkedCheckpoint(cfg.store) if cfg.fork_checkpoints else None

    def checkpoint_now() -> tuple[int, int, str] | None:
        """A checkpoint at ``pos`` (its verdicts committed): forked, or else in place (the
        caller commits it)."""
        nonlocal last_ck
        last_ck = time.monotonic()
        if forked is not None and forked.failures < 3 and forked.start(sd, pos, version):
            return None
        return pos, version, json.dumps(sd.to_state(), ensure_ascii=False)

    expire_at = 0.0  # monotonic time of the next retention pass

    def expire(now: float) -> None:
        nonlocal expire_at
        if now < expire_at:
            return
        wall = time.time()
        before = None if cfg.retain_seconds is None else wall - cfg.retain_seconds
        verdicts, keys = store.expire(before, wall - KEY_RETAIN_SECONDS)
        full = max(verdicts, keys) >= EXPIRE_ROWS
        expire_at = now + (_EXPIRE_BACKLOG_SECONDS if full else _EXPIRE_SECONDS)

    young = 0
    trim_heap = heap_trimmer()
    full_gc = young_gc = last_status = time.monotonic()
    latency = _Latency()
    last_ck = last_rows = time.monotonic()
    quiet = min(_QUIET_SECONDS, cfg.checkpoint_seconds)
    started = time.time()
    dirty = True
    heap_used = False  # steps since the last heap trim
    while door is None or not door.closed:
        if door is not None and os.getppid() != parent:
            return  # the server is gone
        if forked is not None:
            done = forked.poll()
            if done is not None:
                ck_pos = done  # the rows up to it may go now
        rows = store.read_journal(pos, cfg.batch_lines)
        if not rows:
            checkpoint = None
            now = time.monotonic()
            idle_due = now - last_ck >= cfg.checkpoint_seconds and now - last_rows >= quiet
            if pos > ck_pos and idle_due and (forked is None or forked.pid is None):
                # Checkpoints when idle, off the path from new lines to their verdicts.
                checkpoint = checkpoint_now()
                if checkpoint is not None:
                    ck_pos = pos
            cut = trim(0)
            if dirty or checkpoint is not None or cut is not None:
                status = _status(sd, version, latency, pos, started, drift)
                store.save_results(pos, [], status, checkpoint, cut)
                dirty = False
            expire(now)
            if heap_used and trim_heap is not None and now - last_rows >= quiet:
                trim_heap(0)  # what the last steps freed goes back once traffic stops
                heap_used = False
            # Even with rows left to delete, wait as when idle (new lines ring the bell):
            # deleting 1,000 rows after 1,000 rows back to back held SQLite's write lock
            # almost all the time, and the server's inserts, backing off in their busy
            # handler, waited until the whole backlog since the checkpoint was gone (half
            # a second at 20,000 lines/s), then acknowledged a burst the detector took
            # seconds to catch up with: the p99 of ack -> verdict was those bursts.
            if door is not None:
                door.wait(cfg.poll_seconds)
            else:
                time.sleep(cfg.poll_seconds)
            continue
        last_rows = time.monotonic()
        heap_used = True
        emitted: list[Emitted] = []
        chunk: list[tuple[int, str]] = []
        acked: dict[int, float] = {}
        flushed = False
        for seq, kind, text, at in rows:
            if kind == LINE:
                chunk.append((seq, text))
                acked[seq] = at
                continue
            if chunk:
                emitted += run(chunk)
                chunk = []
            if kind == FLUSH:
                emitted += sd.flush(seq)
                flushed = True
            elif kind == MODEL:
                version = int(text)
                sd.use(_load(store, version))
                if worker is not None:  # the lines after this row: the new model's parser
                    worker.start(sd.parser, seq)
                if drift is not None:
                    sd.observers.remove(drift)
                    drift = DriftWatch.create(sd.detector)
                    if drift is not None:
                        sd.observers.append(drift)
        if chunk:
            emitted += run(chunk)
        pos = rows[-1][0]
        now_wall = time.time()
        records = []
        for e in emitted:
            v = e.verdict
            if not v.anomalous:
                continue
            if not e.final and e.seq > replay_until and e.seq in acked:
                latency.add(max(0.0, now_wall - acked[e.seq]))
            records.append(
                {
                    "key": e.key,
                    "seq": e.seq,
                    "final": e.final,
                    "closed_by": e.closed_by,
                    "verdict": v.to_dict(),
                    "model_version": version,
                    "acked": acked.get(e.seq),
                    "lines": e.lines if e.final else None,
                }
            )
        checkpoint = None
        now = time.monotonic()
        # Never idle: checkpoint anyway, less often (a replay stays short). A forked one
        # starts once this step's verdicts are committed (below).
        due = now - last_ck >= _BUSY_CHECKPOINT * cfg.checkpoint_seconds
        fork_after = due and forked is not None and forked.failures < 3
        if due and (forked is None or forked.pid is None) and not fork_after:
            checkpoint = checkpoint_now()
            ck_pos = pos
        # The status (counters for /metrics) at most every _STATUS_SECONDS under load:
        # encoding it cost as much as a 100-line step. The position goes every step. After
        # a flush, with it: a client that waited for the flush reads counters that have
        # its lines (they were written a step later, and a scrape could come between).
        status = None
        if checkpoint is not None or flushed or now - last_status >= _STATUS_SECONDS:
            status = _status(sd, version, latency, pos, started, drift)
            last_status = now
        store.save_results(pos, records, status, checkpoint, trim(len(rows)))
        dirty = status is None
        expire(now)
        if fork_after and forked is not None and forked.pid is None:
            checkpoint = checkpoint_now()
            if checkpoint is not None:  # the fork failed: in place after all
                store.save_results(pos, [], None, checkpoint)
                ck_pos = pos
        # The young objects about once a second (not after every step: most of them die
        # young, and a collection scans those still alive), the middle generation every
        # half minute, everything every ten minutes; then the freed pages go back.
        if now - young_gc >= _YOUNG_GC_SECONDS:
            young_gc = now
            young += 1
            gc.collect(0 if young % 30 else 1)
            if trim_heap is not None:
                trim_heap(0)
                heap_used = False
        if now - full_gc > _FULL_GC_SECONDS:
            gc.collect()
            full_gc = time.monotonic()


# Drift warnings carried in the status (the dashboard shows the latest few).
_DRIFT_SHOWN = 20


class DriftWatch:
    """The drift tracker of ``logwarden.online`` on the stream, when the model carries a
    training baseline; its report goes into the status."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self._report: dict[str, Any] = {}
        self._at = 0.0

    @classmethod
    def create(cls, detector: Detector) -> DriftWatch | None:
        from logwarden.online.drift import DriftTracker

        model = detector.model
        baseline = getattr(model, "drift_baseline_", None)
        try:
            keys = model.keys_
        except Exception:
            return None
        return cls(DriftTracker(baseline, keys, dict(model.templates_)))

    def entries(self, batch: list[tuple[str, str, float | None, int]]) -> None:
        self.tracker.update_lines(batch)

    def closed(self, verdict: Any, keys: list[str]) -> None:
        self.tracker.learn_one(verdict, keys)

    def report(self) -> dict[str, Any]:
        """The tracker's report (warnings counted), recomputed at most every 2 seconds."""
        if time.monotonic() - self._at >= 2.0:
            r = self.tracker.report()
            # The status is written at every step: the latest warnings and buckets only.
            self._report = {**r, "warnings": r.get("warnings", [])[-_DRIFT_SHOWN:],
                            "n_warnings": self.tracker.warnings_total,
                            "buckets": r.get("buckets", [])[-50:]}  # fmt: skip
            self._at = time.monotonic()
        return self._report


def _status(
    sd: StreamDetector,
    version: int,
    latency: _Latency,
    pos: int,
    started: float,
    drift: DriftWatch | None = None,
) -> dict[str, Any]:
    return {
        "drift": drift.report() if drift is not None else None,
        "pid": os.getpid(),
        "started": started,
        "updated": time.time(),
        "processed_seq": pos,
        "model_version": version,
        "open_sessions": sd.open_count,
        "sessions_closed": sd.sessions_closed,
        "anomalies": sd.anomalies,
        # Entries in the bounded caches of the networks' answers: they fill over the first
        # minutes of a stream, and the memory with them.
        "caches": sd.cache_sizes(),
        "stats": sd.stats.as_dict(),
        # What batch commands warn about (lines without ids, ...), over the recent lines.
        "input_warnings": sd.input_warnings(),
        "new_templates": len(sd.unknown.templates_),
        # the latest of them (key -> template text): lines the model's parser does not know
        "new_template_texts": dict(list(sd.new_templates().items())[-_NEW_TEMPLATES_SHOWN:]),
        "latency": latency.as_dict(),
        "config": {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(sd.config).items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m logwarden.service.processor STORE [TIMEOUT]``: run one by hand."""
    args = argv if argv is not None else sys.argv[1:]
    timeout = float(args[1]) if len(args) > 1 else None
    run_processor(ProcessorConfig(str(Path(args[0])), StreamConfig(session_timeout=timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
