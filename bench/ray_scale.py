"""``detect`` on one machine: all cores (the default) against ``--engine ray``, side by side.

The DeepLog split rendered as raw HDFS lines (``_hdfs_raw.py``): a model trained on the
rendered ``hdfs_train``, and a test log of about ``--lines`` lines, sessions drawn with
replacement from ``hdfs_train`` plus sessions of ``hdfs_test_abnormal`` in the share the
full-scale log of issue 15 has (all 16,838 in 11,220,799 lines). Then, each as a child process, measured whole (start to exit):

* ``local``: ``logwarden detect LOG --model M --jsonl OUT`` (scan workers on all cores);
* ``ray``: the same with ``--engine ray``: a Ray started for the command and shut down
  with it, start-up included;
* ``ray, running``: the same with ``--address`` of a Ray head this script started before
  (``ray start --head --block`` on loopback), the cost once a cluster is up.

For each: wall seconds, CPU seconds of the whole process tree (the Ray processes are the
command's descendants, or the running head's, counted from the command's start; sampled
every 0.1 s, so a process shorter than that is missed), peak RSS of the command and of the
tree (sampled, shared memory counted in each process; the running head's idle processes
included),
and whether its verdicts (the JSONL) are byte-identical to ``local``'s. The load average
before and after is printed: the machine may be shared. Target (issue 15): Ray on one
machine within 1.5x of the all-cores run's wall time.

    python bench/ray_scale.py [--lines 1000000] [--repeats 1] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import DEFAULT_DATA, check, logwarden_command, machine_info, machine_line
from _hdfs_raw import HDFS_FORMAT, load_templates, render_sessions

# Ray on Linux swaps a loopback address for the machine's own when joining; with its
# multi-node switch off (as on macOS) it keeps loopback, where the head listens. No token
# authentication: the head is reachable from this machine only.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
FULL_SCALE_LINES = 11_220_799  # issue 15's full-scale log


@dataclass
class Measured:
    wall: float
    cpu: float  # user + system seconds of the process tree
    peak_mb: float  # the command's own peak RSS
    tree_peak_mb: float  # the largest sum of RSS over the tree seen in one sample
    stderr: str


def run_tree(
    cmd: list[str], env: dict[str, str] | None = None, also: int | None = None
) -> Measured:
    """Run ``cmd`` to completion, sampling its process tree (psutil, a Ray dependency) and
    the tree of process ``also`` (a running Ray head: its workers do the command's work),
    whose CPU counts from the command's start."""
    import psutil

    def tree(pid: int) -> list[Any]:
        try:
            p = psutil.Process(pid)
            return [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_of(p: Any) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    before: dict[int, float] = {}
    for p in tree(also) if also is not None else []:
        with contextlib.suppress(psutil.Error):
            before[p.pid] = cpu_of(p)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})}
        )
        cpu: dict[int, float] = {}
        tree_peak = own_peak = 0
        while proc.poll() is None:
            procs = tree(proc.pid) + (tree(also) if also is not None else [])
            total = 0
            for p in procs:
                try:
                    with p.oneshot():
                        used = cpu_of(p) - before.get(p.pid, 0.0)
                        rss = p.memory_info().rss
                except psutil.Error:
                    continue
                cpu[p.pid] = max(cpu.get(p.pid, 0.0), used)
                total += rss
                if p.pid == proc.pid:
                    own_peak = max(own_peak, rss)
            tree_peak = max(tree_peak, total)
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    return Measured(wall, sum(cpu.values()), own_peak / 2**20, tree_peak / 2**20, stderr)


def render(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    """The rendered training log (once per folder) and a test log of about ``--lines``."""
    data = args.data / "hdfs-deeplog"
    train = [line.split() for line in (data / "hdfs_train").read_text().splitlines()]
    abnormal = [line.split() for line in (data / "hdfs_test_abnormal").read_text().splitlines()]
    templates = load_templates(data / "templates.csv")
    train_log = root / "train.log"
    if not train_log.exists():
        lines, _ = render_sessions(train, templates, seed=11)
        train_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    test_log = root / f"test_{args.lines}.log"
    if test_log.exists():
        return train_log, test_log
    rng = random.Random(12)
    # Abnormal sessions in the full-scale log's share (all 16,838 of them in 11,220,799
    # lines), so that a smaller log is not mostly anomalies.
    share = min(1.0, args.lines / FULL_SCALE_LINES)
    sessions = rng.sample(abnormal, round(share * len(abnormal)))
    n = sum(len(s) for s in sessions)
    while n < args.lines:
        s = train[rng.randrange(len(train))]
        sessions.append(s)
        n += len(s)
    rng.shuffle(sessions)
    # The span grows with the log, so that about as many sessions are open at a time as in
    # the rendered training log.
    span = 6 * 3600.0 * len(sessions) / len(train)
    lines, _ = render_sessions(sessions, templates, seed=13, span_s=span)
    test_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return train_log, test_log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_head(cpus: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [
            str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(port), "--num-cpus", str(cpus), "--include-dashboard", "false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **LOOPBACK_ENV},
        start_new_session=True,  # its processes in one group, stopped together
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    time.sleep(3)  # the raylet registers after the GCS listens
    return head, f"127.0.0.1:{port}"


def stop_head(head: subprocess.Popen[bytes]) -> None:
    """Stop the head and every process of its group (SIGTERM, then SIGKILL)."""
    import signal

    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            head.poll()
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="test log size (1,000,000)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each (the median is shown)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=30, help="training epochs (30)")
    ap.add_argument("--no-running", action="store_true", help="skip the running-cluster row")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed or verdicts differ"
    )
    ap.add_argument(
        "--keep",
        type=Path,
        help="keep the rendered logs and the model in this folder and reuse them (the model "
        "is trained once, whatever --lines)",
    )
    args = ap.parse_args()
    if not (args.data / "hdfs-deeplog" / "hdfs_train").exists():
        print(f"ray_scale: {args.data}/hdfs-deeplog is missing (see its README)", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray_scale: needs Ray: pip install 'logwarden[ray]'", file=sys.stderr)
        return 2
    info = machine_info()
    lw = logwarden_command()
    with tempfile.TemporaryDirectory(prefix="ray_scale_") as tmp:
        work = Path(tmp)
        root = args.keep or work
        root.mkdir(parents=True, exist_ok=True)
        train_log, test_log = render(args, root)
        model = root / "model"
        if not (model / "manifest.json").exists():
            subprocess.run(
                [*lw, "train", str(train_log), "--format", HDFS_FORMAT, "--session", "hdfs",
                 "--out", str(model), "--epochs", str(args.epochs), "-q"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        with test_log.open("rb") as fh:
            n_lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
        size_mb = test_log.stat().st_size / 2**20
        base = [*lw, "detect", str(test_log), "--model", str(model)]
        runs: dict[str, list[Measured]] = {"local": [], "ray": [], "ray, running": []}
        same: dict[str, bool] = {}
        load_before = os.getloadavg()
        head = None
        try:
            if not args.no_running:
                head, address = start_head(info["usable_cores"] or 1)
            for _ in range(args.repeats):
                for name, extra, env in (
                    ("local", [], None),
                    ("ray", ["--engine", "ray"], None),
                    ("ray, running", ["--engine", "ray", "--address", "ADDR"], LOOPBACK_ENV),
                ):
                    if name == "ray, running":
                        if head is None:
                            continue
                        extra = [*extra[:-1], address]
                    out = work / f"{name.replace(', ', '_')}.jsonl"
                    also = head.pid if head is not None and name == "ray, running" else None
                    runs[name].append(run_tree([*base, *extra, "--jsonl", str(out)], env, also))
                    same[name] = out.read_bytes() == (work / "local.jsonl").read_bytes()
        finally:
            if head is not None:
                stop_head(head)
        load_after = os.getloadavg()

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    print(machine_line(info))
    print(
        f"test log: {n_lines:,} lines, {size_mb:.0f} MB (rendered DeepLog split); "
        f"{args.repeats} run(s) each, median shown"
    )
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f}")  # fmt: skip
    print(f"{'run':14} {'wall s':>7} {'lines/s':>9} {'CPU s':>7} {'peak MB':>8} {'tree MB':>8} {'x local':>8}  same verdicts")  # fmt: skip
    figures = {}
    local_wall = median([m.wall for m in runs["local"]])
    for name, ms in runs.items():
        if not ms:
            continue
        wall = median([m.wall for m in ms])
        fig = {
            "wall_s": round(wall, 2),
            "lines_per_s": round(n_lines / wall),
            "cpu_s": round(median([m.cpu for m in ms]), 1),
            "peak_mb": round(median([m.peak_mb for m in ms])),
            "tree_peak_mb": round(median([m.tree_peak_mb for m in ms])),
            "ratio": round(wall / local_wall, 2),
            "same_verdicts": same.get(name, False),
        }
        figures[name] = fig
        print(
            f"{name:14} {wall:7.2f} {fig['lines_per_s']:9,} {fig['cpu_s']:7.1f} "
            f"{fig['peak_mb']:8} {fig['tree_peak_mb']:8} {fig['ratio']:8.2f}  "
            f"{'yes' if fig['same_verdicts'] else 'NO'}"
        )
    ray_ratio = figures["ray"]["ratio"]
    print(f"target: ray within 1.5x of local: {ray_ratio:.2f}x {check(ray_ratio <= 1.5)}")
    if "ray, running" in figures:
        r = figures["ray, running"]["ratio"]
        print(f"        with a running cluster: {r:.2f}x {check(r <= 1.5)}")
    if args.json:
        print(json.dumps({"lines": n_lines, "load": [load_before, load_after], "runs": figures}))
    missed = ray_ratio > 1.5 or not all(f["same_verdicts"] for f in figures.values())
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
