"""The steps of the simulated benches (keys_simulated, params_simulated, params_openstack):
``logwarden`` commands run as child processes, their options and main, and what ``train``
reports."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import ChildFailed, logwarden_command, pin_cores, run_child
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX


def train_eval_detect(
    train_log: Path,
    test_log: Path,
    model: Path,
    raw: list[str],
    labels_csv: Path,
    verdicts_jsonl: Path,
    train_extra: list[str],
) -> dict[str, list[str]]:
    """The ``logwarden`` arguments of train on one log, then eval and detect on another."""
    return {
        "train": ["train", str(train_log), "--out", str(model), "--force", *raw, *train_extra],
        "eval": [
            *("eval", str(test_log), "--model", str(model), *raw),
            *("--labels", str(labels_csv), "--json"),
        ],
        "detect": [
            *("detect", str(test_log), "--model", str(model), *raw),
            *("--jsonl", str(verdicts_jsonl)),
        ],
    }


def simulated_steps(
    args: argparse.Namespace, workdir: Path, train_extra: list[str]
) -> dict[str, list[str]]:
    """simulate a normal and a mixed log, then train, eval and detect (files in workdir:
    normal.log, mixed.log, labels.csv, model, verdicts.jsonl)."""
    normal_log, mixed_log = workdir / "normal.log", workdir / "mixed.log"
    labels_csv = workdir / "labels.csv"
    raw = ["--input-format", "raw", "--format", SIM_FORMAT, "--session", SIM_SESSION_REGEX]
    rate = ("--anomaly-rate", str(args.anomaly_rate)) if args.anomaly_rate is not None else ()
    return {
        "simulate normal": [
            *("simulate", "--out", str(normal_log), "--anomaly-rate", "0"),
            *("--sessions", str(args.train_sessions), "--seed", str(args.train_seed)),
        ],
        "simulate mixed": [
            *("simulate", "--out", str(mixed_log), "--labels", str(labels_csv)),
            *("--sessions", str(args.test_sessions), "--seed", str(args.test_seed), *rate),
        ],
        **train_eval_detect(
            normal_log, mixed_log, workdir / "model", raw, labels_csv,
            workdir / "verdicts.jsonl", train_extra,
        ),
    }  # fmt: skip


def run_steps(
    steps: dict[str, list[str]], workdir: Path, label: str = ""
) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Run each ``logwarden`` step as a child process: wall seconds, stdout, stderr."""
    lw = logwarden_command()
    seconds: dict[str, float] = {}
    outputs: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, cmd in steps.items():
        print(f"{label}{name} ...", file=sys.stderr)
        r = run_child([*lw, *cmd], workdir)
        seconds[name], outputs[name], errors[name] = r.wall_s, r.stdout, r.stderr
    return seconds, outputs, errors


def add_simulation_args(p: argparse.ArgumentParser) -> None:
    """Options of the simulated benches: the two logs, and how the run is kept and told."""
    p.add_argument("--train-sessions", type=int, default=3000)
    p.add_argument("--train-seed", type=int, default=11)
    p.add_argument("--test-sessions", type=int, default=3000)
    p.add_argument("--test-seed", type=int, default=12)
    p.add_argument(
        "--anomaly-rate", type=float, default=None, help="mixed log (default: simulate's)"
    )
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    p.add_argument("--keep", type=Path, help="keep the logs, model and verdicts in this folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


def main_simulated(
    name: str,
    p: argparse.ArgumentParser,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace, Path], dict[str, Any]],
    print_report: Callable[[dict[str, Any]], None],
) -> int:
    """Parse, run in a work folder (kept with --keep), report; the exit code."""
    args = p.parse_args(argv)
    if args.train_sessions < 1 or args.test_sessions < 1:
        p.error("--train-sessions and --test-sessions must be positive")
    pin_cores(args.cores)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        workdir = args.keep
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    try:
        rep = run(args, workdir)
    except ChildFailed as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    if not rep["detect_agrees_with_eval"]:
        print(f"{name}: error: detect and eval disagree", file=sys.stderr)
        return 1
    return 1 if args.strict and not rep["pass"] else 0


def train_lines(stderr: str) -> tuple[str, str]:
    """The key model's and the parameter models' summary lines of ``logwarden train``."""
    keys = params = ""
    for line in stderr.splitlines():
        if line.startswith("logwarden train:"):
            keys = line.strip()
        elif line.strip().startswith("parameter models:"):
            params = line.strip()
    return keys, params
