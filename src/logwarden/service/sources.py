"""Inputs besides HTTP: a followed file, Redis Streams, Kafka. Each runs in a thread of the
web server process and hands lines to :meth:`Service.append` in batches.

* ``FollowSource``: ``tail -F`` with ``io.sources.Follower`` (rotation, truncation); its
  position (device, inode, byte offset of the last line) is stored with the lines, so a
  restart goes on after the last stored line of the same file.
* ``RedisSource``: a consumer group on a stream (``XREADGROUP``). Entries are acknowledged
  (``XACK``) once the detector has processed the lines; pending entries of a dead consumer
  (its ``alive`` key, refreshed by every live one, expired) idle for ``claim_idle`` seconds
  are claimed (``XCLAIM``) and processed here. The text is the entry's ``line`` field (else
  its first field), one line or several. The store keeps the highest id stored per stream
  and group, the ids of claimed entries stored and the consumer names it read under, so
  that a restart under any name stores each of its pending entries once.
* ``KafkaSource``: a consumer group (confluent-kafka); offsets are committed only after the
  detector has processed the lines (the results are in the store). Partitions should be
  keyed by session id, so that one session's lines reach one ``serve``. On assignment a
  partition starts after the last offset this store already holds (lines journaled but
  not committed before a crash are not read twice, and their offset is committed once
  processed), or at the group's committed offset where that is further (another member
  processed the lines between).

Every source decodes as HTTP does (``server.decode_lines``: CRLF, bad UTF-8 and NUL
counted), lines over the service's ``max_line_bytes`` cut and counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
import time
from typing import Any

from logwarden.io.sources import FollowConfig, Follower
from logwarden.records import Stats
from logwarden.service.server import count_flagged, decode_lines

__all__ = ["FollowSource", "KafkaSource", "RedisSource"]

BATCH_LINES = 2000
BATCH_SECONDS = 0.05


def _consumer_name(given: str | None) -> str:
    return given or f"{socket.gethostname()}-{os.getpid()}"


class _Source:
    name = "source"

    def __init__(self, service: Any) -> None:
        self.service = service
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.lines = 0
        self.error: str | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._guarded, daemon=True, name=self.name)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(5)

    def _guarded(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run()
                return
            except Exception as exc:  # a broker going away: say so, retry
                self.error = f"{type(exc).__name__}: {exc}"
                self.stop_event.wait(1.0)

    def run(self) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "lines": self.lines, "error": self.error}


class FollowSource(_Source):
    name = "follow"

    def __init__(self, service: Any, path: str) -> None:
        super().__init__(service)
        self.path = path
        self.key = f"follow:{os.path.abspath(path)}"
        self.stats = Stats()

    def run(self) -> None:
        saved = self.service.read(lambda s: s.offset(self.key))
        skip_to = -1
        from_start = False
        if saved:
            pos = json.loads(saved)
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == (pos["dev"], pos["ino"])
            except OSError:
                same = False
            from_start = True  # a rotated file is read whole: its lines are all new
            if same:
                skip_to = int(pos["offset"])
        q: queue.Queue[Any] = queue.Queue(maxsize=50_000)
        cfg = FollowConfig(from_start=from_start, poll_interval=0.05,
                           max_line_bytes=self.service.config.max_line_bytes)  # fmt: skip
        follower = Follower(self.path, cfg, self.stats, self.stop_event)

        def pump() -> None:
            skipping = skip_to >= 0
            last = -1
            for line in follower:
                if skipping:
                    # Lines up to the stored one were delivered before; an offset going
                    # back means the file was rotated meanwhile: all of it is new.
                    if line.offset < last:
                        skipping = False
                    elif line.offset <= skip_to:
                        last = line.offset
                        continue
                    skipping = False
                q.put(line)
            q.put(None)

        t = threading.Thread(target=pump, daemon=True, name="follow-reader")
        t.start()
        done = False
        while not done:
            batch = []
            deadline = time.monotonic() + BATCH_SECONDS
            while len(batch) < BATCH_LINES:
                try:
                    item = q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(item)
            if not batch:
                continue
            try:
                st = os.stat(self.path)
                dev, ino = st.st_dev, st.st_ino
            except OSError:
                dev = ino = 0
            pos = json.dumps({"dev": dev, "ino": ino, "offset": batch[-1].offset})
            self.service.append([ln.text for ln in batch], offsets={self.key: pos})
            count_flagged(batch, self.service.counts)
            self.lines += len(batch)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": self.path, "stats": self.stats.as_dict()}


class RedisSource(_Source):
    name = "redis"

    def __init__(
        self,
        service: Any,
        url: str,
        stream: str,
        group: str,
        consumer: str | None,
        claim_idle: float = 10.0,
    ) -> None:
        super().__init__(service)
        if not claim_idle > 0:
            raise ValueError(f"claim_idle must be positive (got {claim_idle})")
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = _consumer_name(consumer)
        self.claim_idle_ms = max(1, int(claim_idle * 1000))
        self.claimed = 0
        # The highest id read with ">" and stored, whatever this store's consumer was called
        # then (a restart under another name must know it); stores written before kept it
        # per consumer name.
        self.mark_key = f"redis:{stream}:{group}"
        self.old_mark_key = f"redis:{stream}:{group}:{self.consumer}"
        # The consumer names this store has read under whose pending entries may be left.
        self.names_key = f"redis-consumers:{stream}:{group}"
        # Ids of entries claimed from dead consumers and stored, not yet acknowledged: they
        # are anywhere below or above the mark.
        self.claimed_key = f"redis-claimed:{stream}:{group}"
        self.held_claimed: set[str] = set()

    def run(self) -> None:
        import redis

        r = redis.Redis.from_url(self.url, socket_timeout=10)
        try:
            r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        mark, names, held, start_last = self.service.read(
            lambda s: (
                s.offset(self.mark_key) or s.offset(self.old_mark_key) or "0-0",
                _json_list(s.offset(self.names_key)),
                _json_list(s.offset(self.claimed_key)),
                s.last_seq(),
            )
        )
        self.held_claimed = set(held)
        before = [n for n in names if n != self.consumer]
        if before or names != [self.consumer]:
            # Written before the move, so that a crash during it still knows where they are.
            names_now = json.dumps([*before, self.consumer])
            self.service.append([], offsets={self.names_key: names_now, self.mark_key: mark})
        for name in before:
            self._take_over(r, name)
        if before:
            self.service.append([], offsets={self.names_key: json.dumps([self.consumer])})
        unacked: list[tuple[int, list[Any]]] = []  # (last seq, entry ids) to ack
        # Our own pending entries first, all of them page by page in id order: those at or
        # below the mark (or claimed and stored) are in the journal, the others not yet.
        own: str | None = "0"
        scan: str | None = None  # where the scan for dead consumers' entries goes on
        last_scan = last_beat = 0.0
        while not self.stop_event.is_set():
            if time.monotonic() - last_beat > self.claim_idle_ms / 4000:
                # Alive, for the others' claims: XINFO CONSUMERS' idle (before Redis 7.2)
                # counts from the last entry read, as for a dead consumer.
                last_beat = time.monotonic()
                r.set(self._alive_key(self.consumer), 1, px=self.claim_idle_ms)
            entries: list[Any] = []
            kind = "new"
            if own is not None:
                got = r.xreadgroup(self.group, self.consumer, {self.stream: own}, count=BATCH_LINES)
                entries = got[0][1] if got else []
                own = _s(entries[-1][0]) if entries else None
                kind = "own"
            elif scan is not None or time.monotonic() - last_scan > max(
                0.2, self.claim_idle_ms / 4000
            ):
                if scan is None:
                    last_scan = time.monotonic()
                entries, scan = self._claim(r, scan or "-")
                kind = "claimed"
            if not entries and own is None and scan is None:
                got = r.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=BATCH_LINES, block=100
                )
                entries = got[0][1] if got else []
                kind = "new"
            if entries:
                ids = [e[0] for e in entries]
                live = [e for e in entries if e[1] is not None]  # deleted ones: ack only
                if kind == "claimed":
                    fresh = live  # a dead consumer's: never stored here
                else:
                    fresh = [
                        e for e in live if _gt(e[0], mark) and _s(e[0]) not in self.held_claimed
                    ]
                last = start_last  # the entries not fresh were stored before this start
                if fresh:
                    lines = [ln for _, fields in fresh for ln in self._lines(fields)]
                    if kind == "claimed":
                        self.held_claimed.update(_s(e[0]) for e in fresh)
                        offsets = {self.claimed_key: json.dumps(sorted(self.held_claimed))}
                    else:
                        mark = _s(max((e[0] for e in fresh), key=_id_key))
                        offsets = {self.mark_key: mark}
                    _, last, _ = self.service.append(lines, offsets=offsets)
                    self.lines += len(lines)
                unacked.append((last, ids))
            done = self.service.processed_seq()
            while unacked and unacked[0][0] <= done:
                ids = unacked.pop(0)[1]
                r.xack(self.stream, self.group, *ids)
                self.held_claimed.difference_update(_s(i) for i in ids)

    def _lines(self, fields: dict[Any, Any]) -> list[str]:
        cfg = self.service.config
        return decode_lines(_entry_bytes(fields), cfg.max_line_bytes, self.service.counts,
                            truncate=True)  # fmt: skip

    def _alive_key(self, consumer: str) -> str:
        return f"logwarden:alive:{self.stream}:{self.group}:{consumer}"

    def _take_over(self, r: Any, name: str) -> None:
        """Move the pending entries of ``name``, this store's consumer before a restart
        under another name, to this consumer: they are ours, and another ``serve`` would
        claim them once idle (storing them a second time)."""
        while True:
            pend = r.xpending_range(self.stream, self.group, "-", "+", BATCH_LINES,
                                    consumername=name)  # fmt: skip
            if not pend:
                return
            ids = [p["message_id"] for p in pend]
            if not r.xclaim(self.stream, self.group, self.consumer, 0, ids, justid=True):
                return

    def _claim(self, r: Any, start: str) -> tuple[list[Any], str | None]:
        """Claim a page of entries left pending ``claim_idle`` by dead consumers (no beat
        for that long; a live one's entries wait for its detector), from ``start``; also
        where the scan goes on (None: at the end). A crash between this claim and their
        append would leave those at or below the mark taken for stored (not retried)."""
        pend = r.xpending_range(self.stream, self.group, start, "+", BATCH_LINES,
                                idle=self.claim_idle_ms)  # fmt: skip
        nxt = "(" + _s(pend[-1]["message_id"]) if len(pend) == BATCH_LINES else None
        owners = sorted({_s(p["consumer"]) for p in pend} - {self.consumer})
        beats = r.mget([self._alive_key(o) for o in owners]) if owners else []
        dead = {o for o, beat in zip(owners, beats, strict=True) if beat is None}
        ids = [p["message_id"] for p in pend if _s(p["consumer"]) in dead]
        if not ids:
            return [], nxt
        # The same idle bound: an entry another consumer claimed meanwhile stays its own.
        got = r.xclaim(self.stream, self.group, self.consumer, self.claim_idle_ms, ids)
        self.claimed += len(got)
        return got, nxt

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "stream": self.stream, "consumer": self.consumer,
                "claimed": self.claimed}  # fmt: skip


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _id_key(x: Any) -> tuple[int, int]:
    a, _, b = _s(x).partition("-")
    return int(a), int(b or 0)


def _gt(x: Any, y: str) -> bool:
    return _id_key(x) > _id_key(y)


def _json_list(value: str | None) -> list[str]:
    return [str(x) for x in json.loads(value)] if value else []


def _entry_bytes(fields: dict[Any, Any]) -> bytes:
    """The entry's ``line`` field, else its first: one line or several joined by "\\n"."""
    value = fields.get(b"line", fields.get("line"))
    if value is None and fields:
        value = next(iter(fields.values()))
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


class KafkaSource(_Source):
    name = "kafka"

    def __init__(
        self, service: Any, brokers: str, topic: str, group: str, consumer: str | None
    ) -> None:
        super().__init__(service)
        self.brokers = brokers
        self.topic = topic
        self.group = group
        self.consumer_name = _consumer_name(consumer)
        self.assigned: list[int] = []
        self.committed = 0

    def _key(self, partition: int) -> str:
        return f"kafka:{self.topic}:{partition}"

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        def on_error(err: Any) -> None:
            # Brokers unreachable and the like: librdkafka retries; the status says so.
            self.error = _kafka_error(err)

        consumer = Consumer(
            {
                "bootstrap.servers": self.brokers,
                "group.id": self.group,
                "client.id": self.consumer_name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
                "error_cb": on_error,
            }
        )

        pending: list[tuple[int, dict[int, int]]] = []  # (last seq, partition -> next offset)

        def on_assign(c: Any, parts: list[Any]) -> None:
            group_at = {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
            replayed: dict[int, int] = {}
            for tp in parts:
                held = self.service.read(lambda s, tp=tp: s.offset(self._key(tp.partition)))
                committed = group_at.get(tp.partition, -1)  # negative: none committed
                if held is not None and int(held) > committed:
                    # Journaled here, not committed before a crash: the store replays
                    # them; their offsets are committed once the detector has.
                    tp.offset = replayed[tp.partition] = int(held)
                elif committed >= 0:
                    # Lines below it were processed by the member that committed it (this
                    # partition was elsewhere since): not read again.
                    tp.offset = committed
            if replayed:
                pending.append((self.service.read(lambda s: s.last_seq()), replayed))
            self.assigned = sorted(tp.partition for tp in parts)
            self.error = None
            c.assign(parts)

        def on_revoke(c: Any, parts: list[Any]) -> None:
            self.assigned = []

        consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
        cfg = self.service.config
        try:
            while not self.stop_event.is_set():
                msgs = consumer.consume(num_messages=BATCH_LINES, timeout=0.1)
                lines: list[str] = []
                nxt: dict[int, int] = {}
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.fatal():
                            raise KafkaException(err)
                        self.error = _kafka_error(err)  # a missing topic, say: retried
                        continue
                    self.error = None
                    lines += decode_lines(m.value() or b"", cfg.max_line_bytes,
                                          self.service.counts, truncate=True)  # fmt: skip
                    nxt[m.partition()] = m.offset() + 1
                if nxt:
                    offsets = {self._key(p): str(o) for p, o in nxt.items()}
                    _, last, _ = self.service.append(lines, offsets=offsets)
                    self.lines += len(lines)
                    pending.append((last, nxt))
                done = self.service.processed_seq()
                ready: dict[int, int] = {}
                while pending and pending[0][0] <= done:
                    ready.update(pending.pop(0)[1])
                if ready:
                    consumer.commit(
                        offsets=[TopicPartition(self.topic, p, o) for p, o in ready.items()],
                        asynchronous=False,
                    )
                    self.committed += 1
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "topic": self.topic, "group": self.group,
                "partitions": self.assigned, "commits": self.committed}  # fmt: skip


def _kafka_error(err: Any) -> str:
    return f"KafkaError {err.name()}: {err.str()}"
