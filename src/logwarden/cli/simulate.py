"""``logwarden simulate``: a simulated multi-task log with per-session ground truth."""

from __future__ import annotations

import argparse
import os
import sys

from logwarden.cli.common import UsageError, check_outputs, open_out, writing


def register(sub: argparse._SubParsersAction) -> None:
    from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX

    ss = sub.add_parser(
        "simulate",
        help="write a simulated multi-task log with labels",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the regex on one line
        description="Write a simulated multi-task log (HDFS, VM and HTTP tasks) with labels.\n"
        "Train and detect on it with (in Python: logwarden.sim.SIM_FORMAT, SIM_SESSION_REGEX):\n"
        f"  --format '{SIM_FORMAT}'\n  --session '{SIM_SESSION_REGEX}'",
    )
    ss.add_argument(
        "--out", required=True, metavar="LOG", help="the log file (- for standard output)"
    )
    ss.add_argument("--labels", metavar="CSV", help="per-session ground truth")
    ss.add_argument("--sessions", type=int, default=2000)
    ss.add_argument("--anomaly-rate", type=float, default=0.05)
    ss.add_argument("--seed", type=int, default=0)
    ss.add_argument(
        "--version",
        dest="sim_version",
        type=int,
        choices=[1, 2],
        default=1,
        help="the simulated system's version: 2 is after an upgrade (a new step in VM runs, "
        "one message reworded; same anomaly kinds)",
    )
    ss.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from logwarden.sim import SimConfig, simulate

    check_outputs([(args.out, "--out"), (args.labels, "--labels")])
    if args.sessions < 1:
        raise UsageError("--sessions must be positive")
    if not 0.0 <= args.anomaly_rate <= 1.0:
        raise UsageError("--anomaly-rate must be between 0 and 1")
    sim = simulate(
        SimConfig(
            seed=args.seed,
            sessions=args.sessions,
            anomaly_rate=args.anomaly_rate,
            version=args.sim_version,
        )
    )
    with writing(args.out):
        if args.out == "-":
            with open_out("-") as fh:
                sim.write_lines(fh)
            if args.labels:
                sim.write(os.devnull, args.labels)
        else:
            sim.write(args.out, args.labels)
    n_anom = sum(s.label for s in sim.sessions)
    print(
        f"logwarden simulate: {len(sim.lines):,} lines, {len(sim.sessions):,} sessions "
        f"({n_anom:,} anomalous, version {args.sim_version}) -> {args.out}"
        + (f", labels {args.labels}" if args.labels else ""),
        file=sys.stderr,
    )
    return 0
