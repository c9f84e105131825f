"""``logwarden detect``: explained verdicts per session, as the model's bundle reads input."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from logwarden.cli.common import (
    RuntimeFailure,
    UsageError,
    check_out_file,
    check_outputs,
    open_out,
    writing,
)
from logwarden.cli.engine import add_engine_args, check_engine_args, read_on_ray
from logwarden.cli.inputs import (
    UnknownKeys,
    add_input_args,
    apply_input_args,
    check_form,
    read_inputs,
    report_stream,
    scoring_scope,
    stream_inputs,
)
from logwarden.cli.lines import (
    check_window_mode,
    detect_supervised,
    load_model,
    write_line_scores,
)

if TYPE_CHECKING:
    from logwarden.detect import Detector, Inputs, Verdict
    from logwarden.detect.detector import VerdictStream
    from logwarden.online.drift import DriftTracker


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
    if args.show < 0:
        raise UsageError("--show must not be negative")
    if args.drift_suggest < 0:
        raise UsageError("--drift-suggest must not be negative")
    # Written once every session is scored: a path that cannot take them fails now.
    outputs = ((args.html, "--html"), (args.drift_json, "--drift-json"),
               (args.jsonl, "--jsonl"), (args.line_scores, "--line-scores"))  # fmt: skip
    check_outputs(outputs, [(p, "the input") for p in args.inputs], [(args.model, "--model")])
    for path, flag in outputs:
        check_out_file(path, flag)
    from logwarden.detect.lines import SupervisedDetector, window_line_verdicts

    on_ray = check_engine_args(args)
    detector = load_model(args.model)
    if isinstance(detector, SupervisedDetector):
        if on_ray:
            raise UsageError("--engine ray scores sessions by id, not lines or windows")
        return detect_supervised(args, detector)
    apply_input_args(detector, args)
    if args.line_scores:
        # Per-line verdicts of window sessions: the whole input at once.
        check_window_mode(detector)
    if on_ray:
        if args.line_scores:
            raise UsageError("--line-scores reads windows here, not on Ray (--engine local)")
        data, verdicts, positions = read_on_ray(detector, args).unpack()
        ended = still_active_on_ray(detector, data.ids, positions)
        return _summarise(args, detector, [(data, verdicts)], None, positions, ended)
    if args.line_scores:
        data = read_inputs(detector, args, learn=False)
        write_line_scores(args.line_scores, window_line_verdicts(detector.model, data))
        return _summarise(args, detector, [(data, detector.verdicts(data))], None)
    stream = stream_inputs(detector, args)
    with scoring_scope():
        return _summarise(args, detector, stream, stream)


# The sessions still active when the input ended, and the window that told (for the note).
Ended = tuple[set[str], str]


def still_active_on_ray(detector: Detector, ids: Sequence[str], positions: Any) -> Ended:
    """The sessions still active when the input ended, on Ray: the local engine's
    (``still_active``), from the entries' lines and times (the idle timeout closes none here:
    with one, the sessions within it of the end are those it would have left open)."""
    from logwarden.detect.detector import EndWindow
    from logwarden.engine.ray import last_entries, open_at_end

    window = EndWindow.of(detector)
    if window is None:
        return set(), ""
    timeout = detector.input.idle_timeout
    ended = set(ids) if timeout is None else open_at_end(ids, positions, timeout)
    if not window.learnt:
        return ended, window.describe(True)
    near, by_time = window.select(ids, *last_entries(positions))
    return ended & near, window.describe(by_time)


def still_active(detector: Detector, stream: VerdictStream) -> Ended:
    """The ids of the sessions still active when the input ended: those the end of input
    completed (not closed for idleness), within ``EndWindow``'s window of its end; and
    the window, as the note states it."""
    from logwarden.detect.detector import EndWindow

    window = EndWindow.of(detector)
    if window is None or not stream.open_at_end:
        return set(), ""
    if not window.learnt:  # a bundle without the measure: as before it was kept
        return set(stream.open_at_end), window.describe(True)
    ids = list(stream.open_at_end)
    ends = stream.open_at_end.values()
    near, by_time = window.select(
        ids, [line for line, _ in ends], [clock for _, clock in ends], stream.end_clock
    )
    return near, window.describe(by_time)


def _summarise(
    args: argparse.Namespace,
    detector: Detector,
    chunks: Iterable[tuple[Inputs, list[Verdict]]],
    stream: VerdictStream | None,
    positions: Any = None,  # --engine ray: the entries' lines and times (no data.events)
    ended: Ended | None = None,  # --engine ray: the sessions still active at the end
) -> int:
    """Write each chunk's verdicts as they come (--jsonl), feed drift tracking, keep what
    the summary, --show and --html need (the anomalies), and report at the end. The ids
    of the sessions still active when the input ended are the stream's (``still_active``), or
    ``ended``."""
    out = sys.stderr if args.jsonl == "-" else sys.stdout
    tracker = None if args.no_drift else _drift_tracker(detector, args)
    total = 0
    reasons: dict[str, int] = {}
    anomalies: list[Verdict] = []
    early = 0  # sessions flagged as early ends
    # Per session id, its latest verdict if that is an early end: the instance still active
    # when the input ended is the last of its id (an id closed for idleness can come back).
    last_early: dict[str, Verdict | None] = {}
    bodies: dict[tuple[Any, ...], str] = {}  # write_jsonl's, across chunks
    keep_all = bool(args.html)  # the HTML report lists every anomaly
    unknown = UnknownKeys(detector.model.keys_)
    from logwarden.detect.detector import BeganBefore

    began = BeganBefore(detector)  # sessions that began before the input did
    with writing(args.jsonl), contextlib.ExitStack() as stack:
        fh = stack.enter_context(open_out(args.jsonl)) if args.jsonl else None
        for data, verdicts in chunks:
            check_form(detector, data.keys, unknown)
            total += len(verdicts)
            for v in verdicts:
                if v.session in last_early:
                    last_early[v.session] = None  # a later instance of the id
                if v.anomalous:
                    reasons[v.reason or ""] = reasons.get(v.reason or "", 0) + 1
                    if v.reason == "early_end":
                        early += 1
                        last_early[v.session] = v
                    if keep_all or len(anomalies) < args.show:
                        anomalies.append(v)
            began.feed(data, verdicts, positions)
            if fh is not None:
                write_jsonl(fh, verdicts, data.keys, bodies)
            if tracker is not None:
                from logwarden.online.drift import feed_batch

                tracker.templates.update(data.templates)
                feed_batch(tracker, verdicts, data.keys, data.events, positions=positions)
    if stream is not None:
        report_stream(stream, args)
    unknown.warn()
    flagged = sum(reasons.values())
    print(
        f"{total:,} sessions, {flagged:,} anomalous"
        + (
            " (" + ", ".join(f"{k} {n:,}" for k, n in sorted(reasons.items())) + ")"
            if reasons
            else ""
        ),
        file=out,
    )
    from logwarden.workflow.render import BEGAN_NOTE, CUT_NOTE

    open_at_end, within = (
        still_active(detector, stream) if stream is not None else ended or (set(), "")
    )
    cut_at_end = [v for sid, v in last_early.items() if v is not None and sid in open_at_end]
    cut = len(cut_at_end)
    notes = []
    if cut:
        notes.append(cut_note(cut, early, within))
        print(f"  {notes[-1]}", file=out)
    before = began.found()
    if before:
        notes.append(began_note(len(before), flagged, began))
        print(f"  {notes[-1]}", file=out)
    cut_ids = {id(v) for v in cut_at_end}
    before_ids = {id(v) for v in before}
    for v in anomalies[: args.show]:
        print(v.describe(), file=out)
        if id(v) in before_ids:
            print(f"  ({BEGAN_NOTE})", file=out)
        if id(v) in cut_ids:
            print(f"  ({CUT_NOTE})", file=out)
    if args.html:
        _write_html(
            args.html, anomalies, detector.model, args.html_limit, total, notes, cut_at_end,
            before,
        )  # fmt: skip
        print(f"wrote {args.html}", file=out)
    if tracker is not None:
        _drift_report(tracker, args)
    return 0


def cut_note(cut: int, early: int, within: str) -> str:
    """The summary's note on the early ends of sessions still active when the input ended
    (``still_active``: ``within`` is its window), for ``detect`` and ``eval``."""
    return (
        f"{cut:,} of the {early:,} early ends were still active when the input ended (a "
        f"line within {within}, of its last): if the log was cut there (a slice, a "
        "rotation), those runs may have gone on"
    )


def began_note(n: int, flagged: int, began: Any) -> str:
    """The summary's note on the anomalies of sessions that began before the input did
    (``BeganBefore``), for ``detect`` and ``eval``."""
    near = (
        f"{began.seconds:,.3g} s of log time"
        if began.seconds and began.first_time is not None
        else f"{began.lines:,} line{'' if began.lines == 1 else 's'}"
    )
    its = "its" if n == 1 else "their"
    return (
        f"{n:,} of the {flagged:,} anomalies {'is a run' if n == 1 else 'are runs'} that "
        f"began before the input: {its} first steps are missing (a first line within the "
        f"longest gap of a training run, {near}, of the input's first, and a first step no "
        "normal training run starts with): if the log was cut there (a slice, a rotation), "
        f"a flag at {its} first steps may be the cut's"
    )


_BODIES_KEPT = 16_384  # encoded verdict bodies write_jsonl remembers (see there)


def write_jsonl(
    fh: TextIO,
    verdicts: list[Verdict],
    keys: Sequence[Sequence[str]] | None = None,
    bodies: dict[tuple[Any, ...], str] | None = None,
) -> None:
    """One JSON line per verdict (``detect --jsonl``, ``eval --jsonl``).

    ``keys`` (each verdict's session keys) and ``bodies`` (a dict kept across calls): an
    anomalous verdict without raw lines or parameter findings depends on its session's
    keys alone (and the model), and key sequences repeat (the DeepLog split: 16,838
    sessions, 4,123 sequences), so its JSON after the session id is encoded once per
    sequence and score."""
    # One encoder for all rows: json.dumps with options builds one per call.
    encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    dumps = json.dumps
    for i, v in enumerate(verdicts):
        if v.anomalous:
            if (
                keys is None
                or bodies is None
                or v.lines is not None
                or v.deviation is not None
                or v.line is not None
            ):
                fh.write(encode(v.to_dict()))
            else:
                head = '{"session": ' + encode(v.session)
                memo = (tuple(keys[i]), v.score)
                body = bodies.get(memo)
                if body is None:
                    text = encode(v.to_dict())
                    if not text.startswith(head + ", "):  # to_dict puts the session first
                        fh.write(text + "\n")
                        continue
                    body = text[len(head) :]
                    if len(bodies) >= _BODIES_KEPT:
                        bodies.clear()
                    bodies[memo] = body
                fh.write(head)
                fh.write(body)
        else:  # the common case, written without building a dict
            fh.write(
                f'{{"session": {dumps(v.session)}, "anomalous": false, "length": {v.length}, "score": {v.score:.4g}}}'
            )
        fh.write("\n")


def _write_html(
    path: str,
    anomalies: list[Any],
    model: Any,
    limit: int,
    sessions: int,
    notes: list[str],
    cut_at_end: list[Verdict],
    began_before: list[Verdict],
) -> None:
    from logwarden.detect import REASONS
    from logwarden.workflow.render import html_report

    page = html_report(
        anomalies,
        getattr(model, "workflows_", None),
        model.templates_,
        REASONS,
        limit,
        sessions=sessions,
        notes=notes,
        cut_at_end=cut_at_end,
        began_before=began_before,
    )
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc}") from None


def _drift_tracker(detector: Detector, args: argparse.Namespace) -> DriftTracker:
    """Drift tracking against the training baseline, fed chunk by chunk."""
    from logwarden.online.drift import DriftConfig, DriftTracker

    model = detector.model
    config = DriftConfig(
        bucket_seconds=args.drift_bucket, context=model.window, suggest=args.drift_suggest
    )
    return DriftTracker(model.drift_baseline_, model.keys_, dict(model.templates_), config)


def _drift_report(tracker: DriftTracker, args: argparse.Namespace) -> None:
    """Drift warnings on stderr, the report as JSON."""
    warnings = tracker.close()
    if warnings:
        report = tracker.report()
        print(f"logwarden: {warnings[0].describe(report['suggested'])}", file=sys.stderr)
        print(
            f"logwarden: drift in {tracker.warnings_total} of {tracker.buckets_closed} time buckets; "
            "templates behind it: "
            + (
                "; ".join(
                    f"{t['key']} {t['template'] or '?'}" for t in report["drift_templates"][:5]
                )
                or "none named"
            ),
            file=sys.stderr,
        )
    if args.drift_json:
        with writing(args.drift_json), open_out(args.drift_json) as fh:
            json.dump(tracker.report(), fh, ensure_ascii=False)
            fh.write("\n")
