"""kill -9 at any moment, restart on the same store: no acknowledged line lost, no verdict
duplicated (the journal, replay from checkpoints, idempotent verdict keys)."""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from logwarden.detect import Detector


@pytest.mark.slow
def test_kill9_loop_loses_and_duplicates_nothing(
    sim_model: Any, serve: Any, tmp_path: Path
) -> None:
    args = ["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
            "--session-timeout", "0", "--checkpoint-seconds", "0.3"]  # fmt: skip
    lines = sim_model.mixed_lines
    batches = [lines[i : i + 150] for i in range(0, len(lines), 150)]
    acked: set[int] = set()
    rng = random.Random(13)
    thresholds = [k * len(batches) // 6 for k in range(1, 5)]
    kills = restarts = 0
    s = serve(args)
    c = httpx.Client(base_url=s.url, timeout=10)
    killer: threading.Timer | None = None
    trips = [0.05]  # the requests' round trips
    i = 0
    while i < len(batches):
        if killer is None and kills < len(thresholds) and i >= thresholds[kills]:
            # Kill while requests are in flight, at a random moment within the next two
            # round trips (a fixed span outlasted the whole replay once requests got fast),
            # a trip as the recent ones take (the last one alone, slow once in a loaded
            # suite, outlasted the rest of the replay: four kills, three restarts).
            took = statistics.median(trips[-8:])
            killer = threading.Timer(rng.uniform(0.0, 2 * took), s.kill9)
            killer.start()
            kills += 1
        try:
            t0 = time.perf_counter()
            r = c.post("/api/v1/logs", content="\n".join(batches[i]).encode(),
                       headers={"Content-Type": "text/plain", "Idempotency-Key": f"b{i}"})  # fmt: skip
            assert r.status_code == 202
            assert r.json()["accepted"] == len(batches[i])
            trips.append(time.perf_counter() - t0)
            acked.add(i)
            i += 1
        except httpx.TransportError:
            assert killer is not None  # only a kill may break a request
        if killer is not None and not killer.is_alive() and s.proc.poll() is not None:
            # Dead: restart on the same store; an unacknowledged batch is sent again.
            killer = None
            restarts += 1
            c.close()
            s = serve(args)
            c = httpx.Client(base_url=s.url, timeout=10)
    c.close()
    if killer is not None:
        killer.cancel()
    assert kills == restarts == 4  # four kills, each during the replay
    c = httpx.Client(base_url=s.url, timeout=60)
    assert c.post("/api/v1/flush?wait=true").json()["done"] is True
    got = c.get("/api/v1/anomalies").json()
    m = c.get("/metrics").text
    c.close()
    assert acked == set(range(len(batches)))
    # every acknowledged line processed exactly once
    assert f"logwarden_lines_total {float(len(lines))}" in m
    det = Detector.load(sim_model.path)
    expected = sorted(
        v.session for v in det.verdicts(det.read([str(sim_model.mixed_log)])) if v.anomalous
    )
    sessions = [v["session"] for v in got]
    assert len(sessions) == len(set(sessions))  # no verdict twice
    assert sorted(sessions) == expected  # none lost
