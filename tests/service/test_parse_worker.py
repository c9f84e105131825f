"""The detector process's parse worker: the same verdicts as parsing in place, whatever
happens to the worker."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from logwarden.detect import Detector
from logwarden.service import Emitted, StreamDetector
from logwarden.service.parse_worker import ParseWorker, fork_available

pytestmark = pytest.mark.skipif(not fork_available(), reason="the parse worker needs fork")


def in_place(det: Detector, lines: list[str], batch: int) -> tuple[StreamDetector, list[Emitted]]:
    sd = StreamDetector(det)
    out: list[Emitted] = []
    for i in range(0, len(lines), batch):
        out += sd.process([(i + j + 1, t) for j, t in enumerate(lines[i : i + batch])])
    return sd, out + sd.flush()


def kill(worker: ParseWorker) -> None:
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    os.waitpid(worker.pid, 0)


def key(e: Emitted) -> tuple[str, bool, dict[str, Any]]:
    return e.key, e.final, e.verdict.to_dict()


def test_lines_parsed_by_the_worker_give_the_same_verdicts(sim_model: Any) -> None:
    lines = sim_model.mixed_lines
    ref, want = in_place(Detector.load(sim_model.path), lines, 300)
    sd = StreamDetector(Detector.load(sim_model.path))
    worker = ParseWorker(sd.parser, chunk=37)  # chunks across the batches' edges
    batches = [
        [(i + j + 1, t) for j, t in enumerate(lines[i : i + 300])]
        for i in range(0, len(lines), 300)
    ]
    got: list[Emitted] = []
    try:
        for k, batch in enumerate(batches):
            # the next batch is sent while this one is checked, as the processor does
            nxt = batches[k + 1] if k + 1 < len(batches) else None
            got += sd.process_parsed(
                worker.chunks(sd.parser, batch),
                (lambda n=nxt: worker.submit(n)) if nxt is not None else None,
            )
        assert worker.running and worker.failures == 0
    finally:
        worker.stop()
    got += sd.flush()
    assert [key(e) for e in got] == [key(e) for e in want]
    assert sd.stats.as_dict() == ref.stats.as_dict()
    assert sd.unknown_templates() == ref.unknown_templates()


def test_a_killed_worker_costs_time_not_lines(sim_model: Any) -> None:
    lines = sim_model.mixed_lines
    ref, want = in_place(Detector.load(sim_model.path), lines, 400)
    sd = StreamDetector(Detector.load(sim_model.path))
    worker = ParseWorker(sd.parser, chunk=50, retry_seconds=0.0)
    got: list[Emitted] = []
    pids = set()
    try:
        for i in range(0, len(lines), 400):
            batch = [(i + j + 1, t) for j, t in enumerate(lines[i : i + 400])]
            if i // 400 in (2, 5):  # killed between two batches
                kill(worker)
            chunks = worker.chunks(sd.parser, batch)
            if i // 400 == 8:  # and in the middle of one
                first = next(chunks)
                kill(worker)
                rest = list(chunks)
                chunks = iter([first, *rest])
            got += sd.process_parsed(chunks)
            if worker.pid is not None:
                pids.add(worker.pid)
    finally:
        worker.stop()
    got += sd.flush()
    assert worker.failures == 3 and len(pids) == 4  # started again after each failure
    assert [key(e) for e in got] == [key(e) for e in want]
    assert sd.stats.as_dict() == ref.stats.as_dict()
