"""Inputs besides HTTP: a followed file, Redis Streams, Kafka. Each runs in a thread of the
web server process and hands lines to :meth:`Service.append` in batches.

* ``FollowSource``: ``tail -F`` with ``io.sources.Follower`` (rotation, truncation); its
  position (device, inode, byte offset of the last line) is stored with the lines, so a
  restart goes on after the last stored line of the same file.
* ``RedisSource``: a consumer group on a stream (``XREADGROUP``). Entries are acknowledged
  (``XACK``) once the detector has processed the lines; pending entries of a consumer
  that has been idle for ``claim_idle`` seconds (a dead one) are claimed (``XAUTOCLAIM``)
  and processed here. The text is the entry's ``line`` field (else its first field).
* ``KafkaSource``: a consumer group (confluent-kafka); offsets are committed only after the
  detector has processed the lines (the results are in the store). Partitions should be
  keyed by session id, so that one session's lines reach one ``serve``. On assignment a
  partition starts after the last offset this store already holds, so lines journaled but
  not yet committed to Kafka before a crash are not read twice.
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
        follower = Follower(
            self.path, FollowConfig(from_start=from_start, poll_interval=0.05), self.stats,
            self.stop_event,
        )  # fmt: skip

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
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = _consumer_name(consumer)
        self.claim_idle_ms = int(claim_idle * 1000)
        self.claimed = 0
        self.hwm_key = f"redis:{stream}:{group}:{self.consumer}"

    def run(self) -> None:
        import redis

        r = redis.Redis.from_url(self.url, socket_timeout=10)
        try:
            r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        hwm = self.service.read(lambda s: s.offset(self.hwm_key)) or "0-0"
        unacked: list[tuple[int, list[bytes]]] = []  # (last seq, entry ids) to ack
        # Our own pending entries first (a restart under the same consumer name).
        mine = r.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=BATCH_LINES)
        backlog = mine[0][1] if mine else []
        last_claim = 0.0
        cursor = "0-0"
        while not self.stop_event.is_set():
            entries: list[Any] = []
            claimed = False
            if backlog:
                entries, backlog = backlog[:BATCH_LINES], backlog[BATCH_LINES:]
            elif cursor != "0-0" or time.monotonic() - last_claim > max(
                0.2, self.claim_idle_ms / 4000
            ):
                # Entries a dead consumer read but never acknowledged, oldest first; a
                # scan goes on (cursor) until the pending list is drained, before new ones.
                last_claim = time.monotonic()
                got = r.xautoclaim(
                    self.stream, self.group, self.consumer, self.claim_idle_ms, cursor,
                    count=BATCH_LINES,
                )  # fmt: skip
                cursor = _s(got[0]) if got else "0-0"
                entries = got[1] if got else []
                claimed = bool(entries)
                self.claimed += len(entries)
            if not entries and cursor == "0-0":
                got = r.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=BATCH_LINES, block=100
                )
                entries = got[0][1] if got else []
            if entries:
                ids = [e[0] for e in entries if e[1] is not None]
                # Entries at or below the mark were journaled before a restart: ack only.
                fresh = [e for e in entries if e[1] is not None and (claimed or _gt(e[0], hwm))]
                if fresh:
                    lines = [_entry_text(fields) for _, fields in fresh]
                    top = max((e[0] for e in fresh), key=_id_key)
                    offsets = {} if claimed else {self.hwm_key: _s(top)}
                    _, last, _ = self.service.append(lines, offsets=offsets)
                    if not claimed:
                        hwm = _s(top)
                    self.lines += len(lines)
                    unacked.append((last, ids))
                elif ids:
                    r.xack(self.stream, self.group, *ids)
            done = self.service.processed_seq()
            while unacked and unacked[0][0] <= done:
                r.xack(self.stream, self.group, *unacked.pop(0)[1])

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


def _entry_text(fields: dict[Any, Any]) -> str:
    value = fields.get(b"line", fields.get("line"))
    if value is None and fields:
        value = next(iter(fields.values()))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return str(value or "")


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

        consumer = Consumer(
            {
                "bootstrap.servers": self.brokers,
                "group.id": self.group,
                "client.id": self.consumer_name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            }
        )

        def on_assign(c: Any, parts: list[Any]) -> None:
            for tp in parts:
                held = self.service.read(lambda s, tp=tp: s.offset(self._key(tp.partition)))
                if held is not None:
                    tp.offset = int(held)
            self.assigned = sorted(tp.partition for tp in parts)
            c.assign(parts)

        def on_revoke(c: Any, parts: list[Any]) -> None:
            self.assigned = []

        consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
        pending: list[tuple[int, dict[int, int]]] = []  # (last seq, partition -> next offset)
        try:
            while not self.stop_event.is_set():
                msgs = consumer.consume(num_messages=BATCH_LINES, timeout=0.1)
                lines: list[str] = []
                nxt: dict[int, int] = {}
                for m in msgs:
                    if m.error() is not None:
                        if m.error().fatal():
                            raise KafkaException(m.error())
                        continue
                    value = m.value() or b""
                    for raw in value.split(b"\n"):
                        if raw:
                            text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
                            lines.append(text)
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
