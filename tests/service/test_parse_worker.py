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
from logwarden.service.store import FLUSH, LINE, MODEL, Store

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


def journal_steps(
    sd: StreamDetector, worker: ParseWorker | None, store: Store, after: int, step: int
) -> tuple[list[Emitted], int]:
    """What the detector process does with the journal's rows after ``after``: line runs
    checked (from the worker's parses, or parsed here), a flush row flushes, a model row
    restarts the worker after it (the same model here)."""
    out: list[Emitted] = []
    while rows := store.read_journal(after, step):
        run: list[tuple[int, str]] = []
        for seq, kind, text, _ in rows:
            if kind == LINE:
                run.append((seq, text))
                continue
            if run:
                out += check(sd, worker, run)
                run = []
            if kind == FLUSH:
                out += sd.flush(seq)
            elif worker is not None:
                worker.start(sd.parser, seq)
        if run:
            out += check(sd, worker, run)
        after = rows[-1][0]
    return out, after


def check(sd: StreamDetector, worker: ParseWorker | None, run: list[tuple[int, str]]) -> Any:
    return sd.process(run) if worker is None else sd.process_parsed(worker.chunks(sd.parser, run))


def test_a_worker_following_the_journal_gives_the_same_verdicts(
    sim_model: Any, tmp_path: Any
) -> None:
    lines = sim_model.mixed_lines
    cut = len(lines) // 3

    def two_phases(follow: bool, path: Any) -> tuple[StreamDetector, list[Emitted], int]:
        # a third of the lines and a flush, checked; then the rest, which come while the
        # worker waits for more
        store = Store(path)
        store.append(lines[:cut])
        store.append(["flush"], kind=FLUSH)
        sd = StreamDetector(Detector.load(sim_model.path))
        worker = ParseWorker(sd.parser, chunk=37, follow=str(path)) if follow else None
        try:
            got, after = journal_steps(sd, worker, store, 0, 300)
            store.append(lines[cut:])
            more, _ = journal_steps(sd, worker, store, after, 300)
            failures = worker.failures if worker is not None else 0
            assert worker is None or worker.running
        finally:
            if worker is not None:
                worker.stop()
            store.close()
        return sd, got + more + sd.flush(), failures

    ref, want, _ = two_phases(False, tmp_path / "ref.db")
    sd, got, failures = two_phases(True, tmp_path / "s.db")
    assert failures == 0
    assert len(want) > 100 and any(e.seq > cut for e in want)
    assert [key(e) for e in got] == [key(e) for e in want]
    assert sd.stats.as_dict() == ref.stats.as_dict()


def test_a_following_worker_stops_at_a_model_switch_and_survives_kills(
    sim_model: Any, tmp_path: Any
) -> None:
    lines = sim_model.mixed_lines
    half = len(lines) // 2

    def phased(follow: bool, path: Any) -> tuple[list[Emitted], int, set[int]]:
        # Lines written 400 at a time, each lot checked before the next is written; the
        # worker killed before lots 2 and 4 (it has parsed none of them); then a model
        # switch and the rest.
        store = Store(path)
        sd = StreamDetector(Detector.load(sim_model.path))
        worker = (
            ParseWorker(sd.parser, chunk=50, retry_seconds=0.0, follow=str(path))
            if follow
            else None
        )
        got: list[Emitted] = []
        pids: set[int] = set()
        after = 0
        try:
            for k, lo in enumerate(range(0, half, 400)):
                store.append(lines[lo : min(lo + 400, half)])
                if worker is not None and k in (2, 4):
                    kill(worker)
                out, after = journal_steps(sd, worker, store, after, 250)
                got += out
                if worker is not None and worker.pid is not None:
                    pids.add(worker.pid)
            store.append(["1"], kind=MODEL)
            store.append(lines[half:])
            out, _ = journal_steps(sd, worker, store, after, 250)
            failures = 0
            if worker is not None:
                assert worker.pid is not None
                pids.add(worker.pid)
                failures = worker.failures
        finally:
            if worker is not None:
                worker.stop()
            store.close()
        return got + out + sd.flush(), failures, pids

    want, _, _ = phased(False, tmp_path / "ref.db")
    got, failures, pids = phased(True, tmp_path / "s.db")
    # each kill found once (its lines parsed here), a new worker after each, and one
    # for the model switch
    assert failures == 2 and len(pids) == 4
    assert len(want) > 100 and any(e.seq > half for e in want)
    assert [key(e) for e in got] == [key(e) for e in want]
