"""``--engine ray [--address ADDR]`` of ``detect`` and ``eval``: the stages on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from logwarden.cli.common import (
    RuntimeFailure,
    UsageError,
    open_out,
    report_read_errors,
    report_stats,
    writing,
)
from logwarden.cli.inputs import check_format_fit, note_partial_last_lines
from logwarden.heap import no_cycle_collection

if TYPE_CHECKING:
    from collections.abc import Mapping

    from logwarden.detect.detector import Detector
    from logwarden.engine.ray import RayResult


def add_engine_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where raw logs are parsed and scored: this machine's processes (local, the "
        "default) or a Ray cluster (ray; pip install 'logwarden[ray]'): the same verdicts",
    )
    sp.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: the cluster's head (host:port, ray://host:port or auto); "
        "default: a Ray started on this machine for the command",
    )


def check_engine_args(args: argparse.Namespace) -> bool:
    """True for ``--engine ray``; ``--address`` without it is a usage error."""
    engine = getattr(args, "engine", "local")
    if getattr(args, "address", None) and engine != "ray":
        raise UsageError("--address goes with --engine ray")
    return engine == "ray"


def read_on_ray(
    detector: Detector,
    args: argparse.Namespace,
    labels: str | Mapping[str, int] | None = None,
    diagnose: bool = True,
) -> RayResult:
    """Sessions and verdicts of INPUT files from a Ray cluster, reported as ``read_inputs``
    reports a local read; ``diagnose`` as for a local stream (``eval`` does not)."""
    from logwarden.engine.ray import RayConfig, paused_sessions, read_and_score

    if getattr(args, "idle_timeout", None):
        raise UsageError(
            "--engine ray completes sessions at the end of input only: --idle-timeout is the "
            "local engine's"
        )
    # As ``read_inputs``: the verdicts and positions of every session arrive here, kept
    # until the command ends.
    with no_cycle_collection(freeze=True):
        result = read_and_score(
            detector, args.inputs, RayConfig(address=args.address), labels=labels, diagnose=diagnose
        )
    data = result.inputs
    report_stats("read", data.stats, data.entries, len(data.ids), detector.input.format)
    check_format_fit(detector, args, data.stats)
    note_partial_last_lines(detector, args.inputs, data.stats)
    report_read_errors(args, data.errors)
    timeout = detector.input.idle_timeout
    paused = paused_sessions(result.positions, timeout) if timeout is not None else 0
    if paused:
        print(
            f"logwarden: {paused:,} sessions pause longer than the model's idle timeout "
            f"({timeout:,.0f} s of log time): the local engine splits each in two or more, "
            "the Ray engine keeps them whole (their verdicts differ)",
            file=sys.stderr,
        )
    if not data.ids:
        if getattr(args, "jsonl", None):
            # As the local engine: --jsonl is written (empty) before the input is found
            # to hold no session.
            with writing(args.jsonl), open_out(args.jsonl):
                pass
        why = "; ".join(f"{p}: {m}" for p, m in data.errors) or "check --format and --session"
        raise RuntimeFailure(f"no session could be formed from the input ({why})")
    return result
