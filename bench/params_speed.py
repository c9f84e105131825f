"""Speed of the parameter-value models on a 1,000,000-line simulated log, through ``logwarden``.

The issue's figures: training all parameter models for a 1M-line simulated log in <= 120 s
on 2 CPU cores, and detection with both detectors on at >= 100,000 lines/s for the whole
process. Every step is a child process, timed from launch to exit:

1. ``logwarden simulate --anomaly-rate 0`` writes a normal log of at least ``--lines``
   lines (the session count is scaled from a small probe run), and ``logwarden simulate``
   a mixed log of the same size with another seed;
2. ``logwarden train NORMAL`` builds both models. The parameter models' own training
   time is the figure ``train`` prints (``parameter models: ... N s``; it includes
   building their feature series); the whole process (reading and parsing 1M lines, the
   key model, the parameter models, saving) is shown beside it;
3. ``logwarden detect MIXED --jsonl OUT`` with that model (both detectors), and the same
   with a ``--no-params`` model (the key model alone), so the cost of the parameter
   models shows; ``--repeat`` runs each (3), the median is reported. Lines/s is the log's
   line count over the whole process's wall time. Detection scans lines in one forked
   worker per usable core (``--cores``, 2).

Exit 0 when the measurement ran (``--strict``: 1 on a missed target), 1 when a command
failed, 2 on usage errors.

    python bench/params_speed.py [--lines 1000000] [--cores 2] [--json] [--strict]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _harness import (
    ChildFailed,
    check,
    count_lines,
    logwarden_command,
    machine_info,
    machine_line,
    pin_cores,
    run_child,
)
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX

TARGET_TRAIN_S = 120.0
TARGET_DETECT_LPS = 100_000.0
_PARAMS_LINE = re.compile(r"parameter models: .*?, ([\d.]+) s\s*$", re.M)
_KEYS_LINE = re.compile(r"epochs in ([\d.]+) s on")


def simulate(out: Path, sessions: int, seed: int, normal: bool, work: Path) -> float:
    cmd = [*logwarden_command(), "simulate", "--out", str(out), "--sessions", str(sessions)]
    cmd += ["--seed", str(seed)]
    cmd += ["--anomaly-rate", "0"] if normal else ["--labels", str(out.with_suffix(".csv"))]
    return run_child(cmd, work).wall_s


def sessions_for(lines: int, work: Path) -> int:
    """Sessions to simulate for at least ``lines`` lines, from a 2,000-session probe."""
    probe = work / "probe.log"
    simulate(probe, 2000, 99, True, work)
    per_session = count_lines(probe) / 2000
    probe.unlink()
    return int(lines / per_session * 1.01) + 1


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="params_speed_"))
    try:
        raw = ["--format", SIM_FORMAT, "--session", SIM_SESSION_REGEX]
        n_sessions = sessions_for(args.lines, work)
        normal, mixed = work / "normal.log", work / "mixed.log"
        simulate(normal, n_sessions, 11, True, work)
        simulate(mixed, n_sessions, 12, False, work)
        n_normal, n_mixed = count_lines(normal), count_lines(mixed)

        rep: dict[str, Any] = {"machine": machine_info(), "sessions": n_sessions}
        for name, extra in (("both", []), ("keys_only", ["--no-params"])):
            model = work / f"model_{name}"
            cmd = [*logwarden_command(), "train", str(normal), *raw, "--out", str(model)]
            cmd += ["--device", "cpu", "-q", *extra]
            t = run_child(cmd, work)
            params = _PARAMS_LINE.search(t.stderr)
            keys = _KEYS_LINE.search(t.stderr)
            out = work / f"verdicts_{name}.jsonl"
            det = [*logwarden_command(), "detect", str(mixed), "--model", str(model)]
            runs = [
                run_child([*det, "--jsonl", str(out), "--show", "0"], work)
                for _ in range(args.repeat)
            ]
            d = sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]  # the median run
            rep[name] = {
                "train_lines": n_normal,
                "train_wall_s": round(t.wall_s, 2),
                "train_peak_mb": round(t.peak_mb, 1),
                "key_model_s": float(keys.group(1)) if keys else None,
                "param_models_s": float(params.group(1)) if params else None,
                "train_summary": [ln.strip() for ln in t.stderr.splitlines() if ln.strip()][-2:],
                "detect_lines": n_mixed,
                "detect_wall_s": round(d.wall_s, 2),
                "detect_peak_mb": round(d.peak_mb, 1),
                "detect_lines_per_s": round(n_mixed / d.wall_s),
                "detect_runs_s": [round(r.wall_s, 2) for r in runs],
                "detect_summary": d.stdout.strip().splitlines()[:1],
            }
        both = rep["both"]
        rep["targets"] = {
            "param_models_train_s": (both["param_models_s"], TARGET_TRAIN_S),
            "detect_lines_per_s": (both["detect_lines_per_s"], TARGET_DETECT_LPS),
        }
        rep["met"] = {
            "train": both["param_models_s"] is not None
            and both["param_models_s"] <= TARGET_TRAIN_S,
            "detect": both["detect_lines_per_s"] >= TARGET_DETECT_LPS,
        }
        return rep
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_report(rep: dict[str, Any]) -> None:
    print(machine_line(rep["machine"]))
    b, k = rep["both"], rep["keys_only"]
    print(
        f"logs: {b['train_lines']:,} normal lines and {b['detect_lines']:,} mixed lines "
        f"({rep['sessions']:,} simulated sessions each)"
    )
    print("train (both models):")
    for line in b["train_summary"]:
        print(f"  {line}")
    print(
        f"  parameter models {b['param_models_s']} s; key model {b['key_model_s']} s; "
        f"whole process {b['train_wall_s']} s, peak {b['train_peak_mb']} MB "
        f"(key model alone, whole process: {k['train_wall_s']} s)"
    )
    print(
        f"detect, both detectors (median of {len(b['detect_runs_s'])} runs: "
        f"{', '.join(map(str, b['detect_runs_s']))} s): {b['detect_wall_s']} s whole process, "
        f"{b['detect_lines_per_s']:,} lines/s, peak {b['detect_peak_mb']} MB; "
        f"{' '.join(b['detect_summary'])}"
    )
    print(
        f"detect, key model alone: {k['detect_wall_s']} s, {k['detect_lines_per_s']:,} lines/s "
        f"(the parameter models cost {b['detect_wall_s'] - k['detect_wall_s']:.1f} s)"
    )
    print()
    print(
        f"target parameter models trained in <= {TARGET_TRAIN_S:.0f} s: "
        f"{check(rep['met']['train'])} ({b['param_models_s']} s); "
        f"target detection >= {TARGET_DETECT_LPS:,.0f} lines/s whole process: "
        f"{check(rep['met']['detect'])} ({b['detect_lines_per_s']:,})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000, help="lines per log (1,000,000)")
    p.add_argument("--cores", type=int, default=2, help="CPU cores to pin to (2)")
    p.add_argument("--repeat", type=int, default=3, help="detect runs, median reported (3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    if args.lines < 10_000:
        p.error("--lines must be >= 10000")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    pin_cores(args.cores)
    try:
        rep = run(args)
    except ChildFailed as exc:
        print(f"params_speed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep))
    else:
        print_report(rep)
    return 1 if args.strict and not all(rep["met"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
