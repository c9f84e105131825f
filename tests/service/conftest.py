"""Fixtures of the service tests: one small simulated model, its logs, a served store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from logwarden.detect import DeepLog, Detector, InputSpec
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class SimModel:
    path: Path  # the bundle
    normal_log: Path
    mixed_log: Path  # with injected anomalies
    mixed_lines: list[str]


@pytest.fixture(scope="session")
def sim_model(tmp_path_factory: pytest.TempPathFactory) -> SimModel:
    """A Detector trained on a small normal simulation (both detectors), saved once."""
    root = tmp_path_factory.mktemp("sim-model")
    normal = simulate(SimConfig(seed=21, sessions=600, normal_only=True))
    mixed = simulate(SimConfig(seed=22, sessions=400, anomaly_rate=0.08))
    normal.write(root / "normal.log")
    mixed.write(root / "mixed.log")
    det = Detector(
        DeepLog(seed=0, epochs=40, patience=5, hidden=32, param_epochs=15, param_max_steps=60),
        InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX),
    )
    det.fit(det.read([str(root / "normal.log")], learn=True))
    det.save(root / "model")
    return SimModel(root / "model", root / "normal.log", root / "mixed.log", mixed.lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A real ``logwarden serve`` subprocess on loopback."""

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port_file = workdir / f"port-{time.monotonic_ns()}"
        self.log = open(workdir / "serve.log", "ab")  # noqa: SIM115
        full_env = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logwarden", "serve", "--port", "0", "-q",
             "--port-file", str(self.port_file), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"serve did not start: {(workdir / 'serve.log').read_text()}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type]:
    """Start servers with ``serve(args)``; all are stopped at the end of the test."""
    started: list[Served] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Served:
        s = Served(args, tmp_path, env)
        started.append(s)
        return s

    yield start  # type: ignore[misc]
    for s in started:
        s.stop()
