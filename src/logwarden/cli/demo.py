"""``logwarden demo``: the main job on built-in data (the work is in ``demo_job``, imported
only when the command runs, so that other commands start without it)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sd = sub.add_parser("demo", help="simulate a log, parse it, show what logwarden sees")
    sd.add_argument("--sessions", type=int, default=1500)
    sd.add_argument("--seed", type=int, default=7)
    sd.add_argument("--serve", action="store_true",
                    help="then run the service on simulated traffic (dashboard on --port)")  # fmt: skip
    sd.add_argument("--port", type=int, default=8080)
    sd.add_argument("--rate", type=float, default=200.0, help="--serve: lines per second (200)")
    sd.add_argument("--dir", metavar="DIR", help="--serve: keep the model and store here")
    sd.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from logwarden.cli.demo_job import run_demo, serve_demo

    if args.serve:
        return serve_demo(args.sessions, args.seed, args.port, args.rate, args.dir)
    code = run_demo(sessions=args.sessions, seed=args.seed)
    print(
        "Next: live detection with a dashboard: logwarden demo --serve "
        "(your own model: logwarden serve --model MODEL --store verdicts.db)"
    )
    return code
