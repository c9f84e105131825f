"""What every bench script needs and none of them owns.

* the machine probe: CPU model, cores (all, usable), Python, torch and CUDA
  (``machine``, ``machine_info``, ``machine_line``), and pinning to the target's cores
  (``pin_cores``);
* child timing: a command's whole-process wall time and peak RSS (``run_child``), the
  ``logwarden`` command of this environment (``logwarden_command``);
* peer checks: the program measured side by side installed, at the version a comparison is
  defined against (``missing_peers``, ``warn_peer_version``);
* formatting: ``ratio`` (a share that is 0 when there is nothing to share),
  ``check`` (PASS/FAIL), ``stderr_progress`` (a training progress callback).

Bench scripts import from here (and from the other ``_`` modules of bench/), never from
one another. A script runs as ``python bench/NAME.py``: Python puts bench/ on the path.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
# The shared data sits next to the project checkout (see ../shared/data/README.md).
DEFAULT_DATA = BENCH_DIR.parent.parent / "shared" / "data"


# --- the machine ----------------------------------------------------------------------------


def version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, object]:
    """CPU model, cores (all, usable by this process), Python, platform, logwarden and
    drain3 versions."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "logwarden": version("logwarden"),
        "drain3": version("drain3"),
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores (all, usable by this process), Python, torch, CUDA device if any."""
    info: dict[str, Any] = {k: v for k, v in machine().items() if k not in ("logwarden", "drain3")}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
        info["cuda"] = None
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for the report: ``machine_info()`` as a person reads it."""
    gpu = f", CUDA: {info['cuda']}" if info.get("cuda") else ", no CUDA GPU"
    return (
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} used), "
        f"Python {info['python']}, torch {info.get('torch')}"
        f" ({info.get('torch_threads')} threads){gpu}"
    )


def pin_cores(n: int) -> list[int]:
    """Restrict this process (and its future children) to ``n`` usable cores, when more are
    usable, so that timings match the 2-core target machine. Returns the cores in use."""
    try:
        usable = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: nothing to pin
        return list(range(os.cpu_count() or 1))
    if 0 < n < len(usable):
        os.sched_setaffinity(0, usable[:n])
        usable = usable[:n]
    try:
        import torch

        torch.set_num_threads(len(usable))
    except ImportError:
        pass
    return usable


# --- child processes ------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    peak_mb: float
    stderr: str
    stdout: str


class ChildFailed(RuntimeError):
    """A child process that exited non-zero or could not be measured."""


# Peak RSS must come from a tiny parent: on Linux a child's ru_maxrss starts at the RSS of
# the process image it was forked from, so forking from a bench script (numpy loaded, maybe
# a log just built) would inflate small children. This wrapper runs under `python -S`, forks
# and execs the command, and writes "wall_s maxrss_kib exit_code cpu_s" to the file in argv[1]
# (CPU: the child's and its reaped children's; on a shared machine wall time counts others').
WRAPPER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as fh:
    fh.write(f"{wall!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} "
             f"{usage.ru_utime + usage.ru_stime!r}")
"""


def run_child(cmd: list[str], workdir: Path) -> Run:
    """Run ``cmd`` to completion: its wall time from launch to exit and its peak RSS (MB =
    2**20 bytes); ChildFailed when it exits non-zero. ``cmd[0]`` is an executable's path."""
    out_path = workdir / "child.stdout"
    err_path = workdir / "child.stderr"
    measured = workdir / "child.rusage"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [sys.executable, "-S", "-c", WRAPPER, str(measured), *cmd],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    try:
        wall, maxrss, code, _ = measured.read_text().split()
    except (OSError, ValueError):
        raise ChildFailed(f"could not measure {' '.join(cmd)}:\n{stderr.strip()}") from None
    if int(code) != 0:
        raise ChildFailed(f"{' '.join(cmd)} exited {code}:\n{stderr.strip()}")
    measured.unlink()
    # ru_maxrss is in KiB on Linux.
    return Run(float(wall), int(maxrss) / 1024, stderr, stdout)


def logwarden_command() -> list[str]:
    """The ``logwarden`` entry point of the running environment, else ``python -m``."""
    exe = Path(sys.executable).with_name("logwarden")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "logwarden"]


def count_lines(path: Path) -> int:
    """Lines of a file, a last line without its newline included."""
    n = 0
    last = b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


# --- peers ----------------------------------------------------------------------------------


def missing_peers(modules: Sequence[str]) -> list[str]:
    """The modules of a peer that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def warn_peer_version(script: str, dist: str, expected: str) -> None:
    """Say on stderr when the peer installed is not the version the comparison is
    defined against (the measurement still runs)."""
    found = version(dist)
    if found != expected:
        print(
            f"{script}: warning: {dist} {found} installed, the comparison is defined "
            f"against {expected}",
            file=sys.stderr,
        )


# --- formatting -----------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    """``a / b``, 0 when ``b`` is 0 (a recall over no sessions, a share of nothing)."""
    return a / b if b else 0.0


def check(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def stderr_progress(name: str, every: int = 25) -> Callable[[int, int, float], None]:
    """A ``fit`` progress callback that prints every ``every`` epochs to stderr."""

    def progress(epoch: int, epochs: int, loss: float) -> None:
        if epoch == 1 or epoch % every == 0:
            print(f"  {name}: epoch {epoch}/{epochs}, loss {loss:.4f}", file=sys.stderr)

    return progress
