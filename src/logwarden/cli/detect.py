"""``logwarden detect``: explained verdicts per session, as the model's bundle reads input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logwarden.cli.common import RuntimeFailure, UsageError, open_out
from logwarden.cli.engine import add_engine_args, check_engine_args, read_on_ray
from logwarden.cli.inputs import add_input_args, apply_input_args, read_inputs
from logwarden.cli.lines import (
    check_window_mode,
    detect_supervised,
    load_model,
    write_line_scores,
)

if TYPE_CHECKING:
    from logwarden.detect import Detector, Inputs, Verdict


def register(sub: argparse._SubParsersAction) -> None:
    sdet = sub.add_parser("detect", help="verdicts with explanations for each session")
    add_input_args(sdet)
    add_engine_args(sdet)
    sdet.add_argument("--model", required=True, metavar="MODEL")
    sdet.add_argument("--jsonl", metavar="OUT", help="write one JSON verdict per session")
    sdet.add_argument("--show", type=int, default=3, help="explained anomalies to print (3)")
    sdet.add_argument(
        "--html",
        metavar="OUT",
        help="write a self-contained HTML report: each anomaly with its workflow picture",
    )
    sdet.add_argument(
        "--html-limit", type=int, default=100, help="anomalies with a picture in --html (100)"
    )
    sdet.add_argument(
        "--line-scores",
        metavar="CSV",
        help="window mode (supervised or --window): LineId,Anomalous,Score for every input line",
    )
    sdet.add_argument(
        "--drift-json", metavar="OUT", help="write the drift report (buckets, warnings) as JSON"
    )
    sdet.add_argument(
        "--drift-bucket",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="time bucket of drift tracking (300)",
    )
    sdet.add_argument(
        "--drift-suggest",
        type=int,
        default=5,
        metavar="N",
        help="sessions a drift warning suggests for review (5)",
    )
    sdet.add_argument(
        "--no-drift", action="store_true", help="no drift tracking against the training baseline"
    )
    sdet.set_defaults(func=cmd_detect)


def cmd_detect(args: argparse.Namespace) -> int:
    if args.html_limit < 0:
        raise UsageError("--html-limit must not be negative")
    from logwarden.detect.lines import SupervisedDetector, window_line_verdicts

    on_ray = check_engine_args(args)
    detector = load_model(args.model)
    if isinstance(detector, SupervisedDetector):
        if on_ray:
            raise UsageError("--engine ray scores sessions by id, not lines or windows")
        return detect_supervised(args, detector)
    apply_input_args(detector, args)
    if args.line_scores:
        check_window_mode(detector)
    positions = None
    if on_ray:
        if args.line_scores:
            raise UsageError("--line-scores reads windows here, not on Ray (--engine local)")
        data, verdicts, positions = read_on_ray(detector, args).unpack()
    else:
        data = read_inputs(detector, args, learn=False)
        if args.line_scores:
            write_line_scores(args.line_scores, window_line_verdicts(detector.model, data))
        verdicts = detector.verdicts(data)
    if args.jsonl:
        try:
            with open_out(args.jsonl) as fh:
                # One encoder for all rows: json.dumps with options builds one per call.
                encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
                dumps = json.dumps
                for v in verdicts:
                    if v.anomalous:
                        fh.write(encode(v.to_dict()))
                    else:  # the common case, written without building a dict
                        fh.write(
                            f'{{"session": {dumps(v.session)}, "anomalous": false, "length": {v.length}, "score": {v.score:.4g}}}'
                        )
                    fh.write("\n")
        except OSError as exc:
            raise RuntimeFailure(f"cannot write {args.jsonl}: {exc}") from None
    anomalies = [v for v in verdicts if v.anomalous]
    reasons: dict[str, int] = {}
    for v in anomalies:
        reasons[v.reason] = reasons.get(v.reason, 0) + 1
    out = sys.stderr if args.jsonl == "-" else sys.stdout
    print(
        f"{len(verdicts):,} sessions, {len(anomalies):,} anomalous"
        + (
            " (" + ", ".join(f"{k} {n:,}" for k, n in sorted(reasons.items())) + ")"
            if reasons
            else ""
        ),
        file=out,
    )
    for v in anomalies[: args.show]:
        print(v.describe(), file=out)
    if args.html:
        _write_html(args.html, verdicts, detector.model, args.html_limit)
        print(f"wrote {args.html}", file=out)
    if not args.no_drift:
        _drift(detector, data, verdicts, args, positions)
    return 0


def _write_html(path: str, verdicts: list[Any], model: Any, limit: int) -> None:
    from logwarden.detect import REASONS
    from logwarden.workflow.render import html_report

    page = html_report(
        verdicts, getattr(model, "workflows_", None), model.templates_, REASONS, limit
    )
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc}") from None


def _drift(
    detector: Detector,
    data: Inputs,
    verdicts: list[Verdict],
    args: argparse.Namespace,
    positions: Any = None,  # --engine ray: the entries' lines and times (data.events is None)
) -> None:
    """Drift against the training baseline: warnings on stderr, the report as JSON."""
    from logwarden.online.drift import DriftConfig, DriftTracker, track_batch

    model = detector.model
    templates = {**model.templates_, **data.templates}
    if args.drift_suggest < 0:
        raise UsageError("--drift-suggest must not be negative")
    config = DriftConfig(
        bucket_seconds=args.drift_bucket, context=model.window, suggest=args.drift_suggest
    )
    tracker = DriftTracker(model.drift_baseline_, model.keys_, templates, config)
    warnings = track_batch(tracker, verdicts, data.keys, data.events, positions=positions)
    if warnings:
        report = tracker.report()
        print(f"logwarden: {warnings[0].describe(report['suggested'])}", file=sys.stderr)
        print(
            f"logwarden: drift in {len(warnings)} of {len(tracker.buckets)} time buckets; "
            "templates behind it: "
            + "; ".join(f"{t['key']} {t['template']}" for t in report["drift_templates"][:5]),
            file=sys.stderr,
        )
    if args.drift_json:
        try:
            with open_out(args.drift_json) as fh:
                json.dump(tracker.report(), fh, ensure_ascii=False)
                fh.write("\n")
        except OSError as exc:
            raise RuntimeFailure(f"cannot write {args.drift_json}: {exc}") from None
