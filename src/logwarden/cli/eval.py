"""``logwarden eval``: precision, recall and F1 of a model on labelled sessions."""

from __future__ import annotations

import argparse
import json

from logwarden.cli.common import UsageError
from logwarden.cli.engine import add_engine_args, check_engine_args, read_on_ray
from logwarden.cli.inputs import add_input_args, apply_input_args, read_inputs
from logwarden.cli.lines import add_line_label_args, eval_lines, load_model


def register(sub: argparse._SubParsersAction) -> None:
    se = sub.add_parser("eval", help="precision, recall and F1 on labelled sessions")
    add_input_args(se, nargs="*")
    add_engine_args(se)
    se.add_argument("--model", required=True, metavar="MODEL")
    se.add_argument(
        "--normal", nargs="+", default=[], metavar="FILE", help="sequence files of normal sessions"
    )
    se.add_argument(
        "--abnormal",
        nargs="+",
        default=[],
        metavar="FILE",
        help="sequence files of abnormal sessions",
    )
    se.add_argument(
        "--labels", metavar="CSV", help="labels for raw input (BlockId,Label or session,label)"
    )
    add_line_label_args(se)
    se.add_argument("--json", action="store_true", help="print one JSON object")
    se.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from logwarden.detect.detector import Inputs
    from logwarden.detect.lines import SupervisedDetector
    from logwarden.evaluate import Report
    from logwarden.io.datasets import load_sequences

    on_ray = check_engine_args(args)
    detector = load_model(args.model)
    if args.line_labels or isinstance(detector, SupervisedDetector):
        if on_ray:
            raise UsageError("--engine ray scores sessions by id, not lines or windows")
        return eval_lines(args, detector)
    verdicts = None
    if args.normal or args.abnormal:
        if args.inputs:
            raise UsageError("give --normal/--abnormal or INPUT files, not both")
        if on_ray:
            raise UsageError("--engine ray reads raw logs, not --normal/--abnormal sequences")
        sessions = [s for p in args.normal for s in load_sequences(p, label=0)]
        sessions += [s for p in args.abnormal for s in load_sequences(p, label=1)]
        data = Inputs(
            [s.id for s in sessions], [s.keys for s in sessions], [s.label for s in sessions]
        )
    else:
        if not args.inputs:
            raise UsageError(
                "eval needs --normal/--abnormal files, labelled jsonl, or raw logs with --labels"
            )
        apply_input_args(detector, args)
        if on_ray:
            data, verdicts, _ = read_on_ray(detector, args, labels=args.labels).unpack()
        else:
            data = read_inputs(detector, args, learn=False, labels=args.labels)
    if all(label is None for label in data.labels):
        raise UsageError("no labels: use --normal/--abnormal, jsonl with labels, or --labels CSV")
    if verdicts is None:
        verdicts = detector.verdicts(data)
    report = Report.from_verdicts(verdicts, data.labels, detector.model.window, keys=data.keys)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    return 0
