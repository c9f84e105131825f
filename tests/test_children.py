"""Worker processes end with the process that started them: a ``kill -9`` of ``train``
leaves no fold model training on (and then waiting for ever)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc").is_dir(), reason="finds the worker processes through /proc (Linux)"
)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # The command may hold spaces and brackets: the ppid follows the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(cond, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_a_killed_train_leaves_no_fold_workers(tmp_path: Path) -> None:
    rng = random.Random(0)
    # Enough windows (> PARALLEL_MIN_WINDOWS) that the fold models train in 2 workers.
    sessions = [
        " ".join(rng.choice("abcdefgh") for _ in range(rng.randint(10, 16))) for _ in range(2500)
    ]
    data = tmp_path / "train.txt"
    data.write_text("\n".join(sessions) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logwarden", "train", str(data), "--input-format", "sequences",
         "--out", str(tmp_path / "m"), "--jobs", "2", "--epochs", "300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # The spawned workers (multiprocessing's resource tracker is a child too); they do
        # not start at the same instant (counting the tracker, one was sometimes seen).
        def spawned() -> list[int]:
            return [p for p in _children(proc.pid) if b"spawn_main" in _cmdline(p)]

        assert _wait(lambda: len(spawned()) >= 2, 60), ("no two workers started", spawned())
        workers = spawned()
        assert len(workers) == 2, workers
        time.sleep(1.0)  # well into training a fold model
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _wait(lambda: not any(_alive(p) for p in workers), 10), (
            f"workers alive 10 s after their parent was killed: {workers}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _children(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
