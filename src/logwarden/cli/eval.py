"""``logwarden eval``: precision, recall and F1 of a model on labelled sessions."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logwarden.cli.common import UsageError, check_outputs, open_out, writing
from logwarden.cli.detect import (
    began_note,
    cut_note,
    still_active,
    still_active_on_ray,
    write_jsonl,
)
from logwarden.cli.engine import add_engine_args, check_engine_args, read_on_ray
from logwarden.cli.inputs import (
    UnknownKeys,
    add_input_args,
    apply_input_args,
    check_form,
    report_stream,
    scoring_scope,
    stream_inputs,
)
from logwarden.cli.lines import add_line_label_args, eval_lines, load_model

if TYPE_CHECKING:
    from logwarden.detect import Detector, Inputs, Verdict
    from logwarden.detect.detector import VerdictStream


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
    se.add_argument(
        "--jsonl",
        metavar="OUT",
        help="also write each session's verdict as one JSON line, as they come (without the "
        "workflow diagnosis of detect --jsonl)",
    )
    se.add_argument("--json", action="store_true", help="print one JSON object")
    se.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from logwarden.detect.detector import Inputs
    from logwarden.detect.lines import SupervisedDetector
    from logwarden.io.datasets import load_sequences

    read = [*args.inputs, *args.normal, *args.abnormal, args.labels, args.line_labels]
    check_outputs(
        [(args.jsonl, "--jsonl")], [(p, "the input") for p in read], [(args.model, "--model")]
    )
    on_ray = check_engine_args(args)
    detector = load_model(args.model)
    if args.line_labels or isinstance(detector, SupervisedDetector):
        if on_ray:
            raise UsageError("--engine ray scores sessions by id, not lines or windows")
        if args.jsonl:
            raise UsageError("--jsonl gives session verdicts: not with --line-labels")
        return eval_lines(args, detector)
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
        return _report(args, detector, [(data, detector.verdicts(data, diagnose=False))])
    if not args.inputs:
        raise UsageError(
            "eval needs --normal/--abnormal files, labelled jsonl, or raw logs with --labels"
        )
    apply_input_args(detector, args)
    if detector.input.input_format == "raw" and not args.labels:
        raise UsageError("no labels: use --normal/--abnormal, jsonl with labels, or --labels CSV")
    if on_ray:
        from logwarden.io.datasets import load_labels

        by_id = load_labels(args.labels) if args.labels else None  # read once (a file of millions)
        data, verdicts, positions = read_on_ray(
            detector, args, labels=by_id, diagnose=False
        ).unpack()  # as the local stream: counting verdicts needs no workflow diagnosis
        if by_id is not None:
            _say_missing(len(by_id), len(by_id.keys() & set(data.ids)), args.labels)
        return _report(args, detector, [(data, verdicts)], positions=positions)
    stream = stream_inputs(detector, args, labels=args.labels, diagnose=False)
    with scoring_scope():
        return _report(args, detector, stream, stream)


@dataclass(slots=True)
class _Outcome:
    """What the report needs of a verdict (``evaluate.VerdictLike``), kept per session."""

    session: str
    anomalous: bool
    reason: str | None
    length: int
    detector: str | None


def _say_missing(total: int, found: int, path: str | None) -> None:
    """How many labelled sessions the input lacks: a wrong file, or sessions lost."""
    if total > found:
        print(
            f"logwarden: {total - found:,} of the {total:,} sessions in {path} are not in the "
            "input",
            file=sys.stderr,
        )


def _by_session(
    outcomes: list[_Outcome], labels: list[int | None], keys: list[tuple[str, ...]]
) -> tuple[list[_Outcome], list[int | None], list[tuple[str, ...]], int]:
    """One outcome per session id: the parts of a session an idle timeout split (the
    same id again after a pause) are joined, flagged when any part is (with the first
    flagged part's reason), their lengths and keys put end to end, so that a labelled
    session counts once. Also how many sessions had several parts."""
    first: dict[str, int] = {}
    split: set[str] = set()
    for i, o in enumerate(outcomes):
        if first.setdefault(o.session, i) != i:
            split.add(o.session)
    if not split:
        return outcomes, labels, keys, 0
    out: list[_Outcome] = []
    out_labels: list[int | None] = []
    out_keys: list[tuple[str, ...]] = []
    at: dict[str, int] = {}
    for o, label, seq in zip(outcomes, labels, keys, strict=True):
        j = at.get(o.session)
        if j is None:
            at[o.session] = len(out)
            out.append(_Outcome(o.session, o.anomalous, o.reason, o.length, o.detector))
            out_labels.append(label)
            out_keys.append(seq)
            continue
        whole = out[j]
        if o.anomalous and not whole.anomalous:
            whole.anomalous, whole.reason, whole.detector = True, o.reason, o.detector
        whole.length += o.length
        out_keys[j] = out_keys[j] + seq
    return out, out_labels, out_keys, len(split)


def _report(
    args: argparse.Namespace,
    detector: Detector,
    chunks: Iterable[tuple[Inputs, list[Verdict]]],
    stream: VerdictStream | None = None,
    positions: Any = None,  # --engine ray: the entries' lines and times (no data.events)
) -> int:
    """Count verdicts against labels as chunks come. Kept per session: its outcome, label
    and key sequence (one tuple per distinct sequence, shared), not its lines."""
    from logwarden.detect.detector import BeganBefore
    from logwarden.evaluate import Report

    began = BeganBefore(detector)  # flagged sessions that began before the input did
    flagged = 0
    # Per session id, whether its latest verdict is an early end (as detect counts them)
    # and its label: the early ends still active when the input ended.
    last_early: dict[str, int | None] = {}
    early = 0

    outcomes: list[_Outcome] = []
    labels: list[int | None] = []
    keys: list[tuple[str, ...]] = []
    distinct: dict[tuple[str, ...], tuple[str, ...]] = {}
    bodies: dict[tuple[Any, ...], str] = {}  # write_jsonl's, across chunks
    unknown = UnknownKeys(detector.model.keys_)
    with writing(args.jsonl), contextlib.ExitStack() as stack:
        fh = stack.enter_context(open_out(args.jsonl)) if args.jsonl else None
        for data, verdicts in chunks:
            check_form(detector, data.keys, unknown)
            for v, label, seq in zip(verdicts, data.labels, data.keys, strict=True):
                outcomes.append(_Outcome(v.session, v.anomalous, v.reason, v.length, v.detector))
                labels.append(label)
                t = tuple(seq)
                keys.append(distinct.setdefault(t, t))
                flagged += v.anomalous
                if v.anomalous and v.reason == "early_end":
                    early += 1
                    last_early[v.session] = -1 if label is None else label
                elif v.session in last_early:
                    last_early[v.session] = None  # a later instance of the id
            began.feed(data, verdicts, positions)
            if fh is not None:
                write_jsonl(fh, verdicts, data.keys, bodies)
    if stream is not None:
        report_stream(stream, args)
        _say_missing(stream.labels_total, stream.labels_found, args.labels)
    unknown.warn()
    if early:
        if stream is not None:
            ended, within = still_active(detector, stream)
        else:  # one chunk from Ray, its positions in its sessions' order
            ended, within = still_active_on_ray(detector, [o.session for o in outcomes], positions)
        cut = [label for sid, label in last_early.items() if label is not None and sid in ended]
        if cut:
            labelled = sum(1 for label in cut if label == 1)
            print(
                f"logwarden: {cut_note(len(cut), early, within)} ({labelled:,} of them "
                "labelled anomalous)",
                file=sys.stderr,
            )
    before = began.found()
    if before:
        print(f"logwarden: {began_note(len(before), flagged, began)}", file=sys.stderr)
    outcomes, labels, keys, parts = _by_session(outcomes, labels, keys)
    if parts:
        print(
            f"logwarden: {parts:,} sessions were split by the idle timeout (a pause longer "
            "than it in log time); each is counted once, flagged when any of its parts is",
            file=sys.stderr,
        )
    if all(label is None for label in labels):
        raise UsageError("no labels: use --normal/--abnormal, jsonl with labels, or --labels CSV")
    report = Report.from_verdicts(outcomes, labels, detector.model.window, keys=keys)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    return 0
