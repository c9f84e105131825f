"""Logs without session ids on the command line: ``train --supervised``, ``detect
--line-scores`` and ``eval --line-labels`` (for the supervised model and for DeepLog
trained on ``--window N`` sessions)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from logwarden.cli.common import (
    RuntimeFailure,
    UsageError,
    noted,
    open_out,
    report_read_errors,
    writing,
)
from logwarden.cli.inputs import resolve_format, warn_other_format

if TYPE_CHECKING:
    from logwarden.detect.detector import Detector
    from logwarden.detect.lines import LineVerdicts, SupervisedDetector
    from logwarden.io.datasets import LineLabels
    from logwarden.io.entries import LineStream


def add_line_label_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--line-labels",
        metavar="FILE",
        help="one label per input line: a CSV with LineId (from 1 over the inputs) and"
        " Label (0/1, Normal/Anomaly), or with --line-label-format bgl a BGL-style log;"
        " UTF-8 or UTF-16 with a byte order mark; - for standard input",
    )
    sp.add_argument(
        "--line-label-format",
        choices=["csv", "bgl"],
        default="csv",
        help="bgl: labels from each line's first field ('-' normal, else anomalous)",
    )


def load_model(path: str) -> Detector | SupervisedDetector:
    """The bundle at ``path``: a ``SupervisedDetector`` or a DeepLog ``Detector``."""
    from logwarden.detect.detector import Detector
    from logwarden.detect.lines import SupervisedDetector, is_supervised
    from logwarden.persist.bundle import join_arrays, load_bundle

    manifest, weights = load_bundle(path)
    if is_supervised(manifest):
        return SupervisedDetector.from_state(manifest, join_arrays(weights))
    return Detector.from_state(manifest, join_arrays(weights))


def check_line_labels_source(args: argparse.Namespace) -> None:
    """Before reading: ``--line-labels -`` reads the labels from standard input, which the
    logs cannot be read from too."""
    if args.line_labels == "-" and "-" in args.inputs:
        raise UsageError(
            "--line-labels - and the input - both read standard input: give the labels or "
            "the logs as a file"
        )


def line_labels(args: argparse.Namespace, lines: int) -> LineLabels:
    """The --line-labels file, checked against the ``lines`` the input has (DataError)."""
    from logwarden.io.datasets import load_line_labels

    labels = load_line_labels(args.line_labels, label_format=args.line_label_format)
    labels.check(lines)
    return labels


def _no_sessions(args: argparse.Namespace) -> None:
    if args.input_format not in (None, "raw"):
        raise UsageError("the supervised model reads raw logs (--input-format raw)")
    if args.session is not None or args.window is not None or args.session_in_line:
        raise UsageError(
            "the supervised model reads logs without session ids: drop --session and --window"
        )


def read_stream(
    detector: SupervisedDetector, args: argparse.Namespace, *, learn: bool
) -> LineStream:
    """Read INPUT files as one stream of entries, reporting what was read and skipped."""
    _no_sessions(args)
    if args.format:
        given = resolve_format(args.format, args.inputs)  # --format auto too
        warn_other_format(args.format, given, detector.format)
        detector.format = given
    if not detector.format:
        raise UsageError("raw input needs --format FMT")
    stream = detector.read(args.inputs, learn=learn)
    msg = f"logwarden: read {len(stream):,} log entries from {stream.lines:,} lines"
    problems = stream.stats.problems()
    if problems:
        msg += "; skipped or altered: " + ", ".join(f"{k} {v:,}" for k, v in problems.items())
    msg += noted(stream.stats)
    print(msg, file=sys.stderr)
    report_read_errors(args, stream.errors)
    if len(stream) == 0:
        raise RuntimeFailure("no log entry could be read from the input")
    return stream


def train_supervised(args: argparse.Namespace) -> int:
    from logwarden.detect.lines import SupervisedDetector
    from logwarden.models.supervised import (
        THIN_VALIDATION,
        SupervisedConfig,
        SupervisedDeepLog,
    )

    if not args.line_labels:
        raise UsageError("--supervised needs --line-labels (one label per input line)")
    if args.top_g is not None or args.no_params:
        raise UsageError("--top-g and --no-params are options of the unsupervised model")
    defaults = SupervisedConfig()
    config = SupervisedConfig(
        window=args.window_size,
        hidden=defaults.hidden if args.hidden is None else args.hidden,
        layers=defaults.layers if args.layers is None else args.layers,
        epochs=defaults.epochs if args.epochs is None else args.epochs,
        pos_weight=args.pos_weight,
        context=0 if args.context is None else args.context,
        target=defaults.target if args.target is None else args.target,
        ensemble=defaults.ensemble if args.ensemble is None else args.ensemble,
        span=defaults.span if args.span is None else args.span,
        seed=args.seed,
        device=args.device,
    )
    check_line_labels_source(args)
    detector = SupervisedDetector(SupervisedDeepLog(config))
    stream = read_stream(detector, args, learn=True)
    labels = line_labels(args, stream.lines)

    def progress(epoch: int, total: int, loss: float) -> None:
        if not args.quiet and (epoch == 1 or epoch % 10 == 0):
            print(f"  epoch {epoch}/{total}, loss {loss:.4f}", file=sys.stderr)

    detector.fit(stream, labels, progress=progress)
    try:
        detector.save(args.out, replace=args.force)
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot write the model to {args.out}: {exc.strerror or exc}"
        ) from None
    model = detector.model
    info = model.train_info_
    nets = info.get("members", [info])  # an ensemble: each network's own figures

    def each(field: str) -> str:
        return "/".join(f"{m[field]:g}" for m in nets)

    networks = f"{len(nets)} networks, " if len(nets) > 1 else ""
    print(
        f"logwarden train: supervised, {info['entries']:,} entries ({info['anomalous_train_windows']:,}"
        f" of {info['train_windows']:,} training windows anomalous, class weight"
        f" {each('pos_weight')}), {info['keys']} keys, {networks}{each('epochs')} epochs (best"
        f" {each('best_epoch')}) in {info['seconds']:.1f} s on {info['device']}; threshold:"
        f" probability >= {model.threshold_:.3g} ({info['threshold_rule']}); saved {args.out}",
        file=sys.stderr,
    )
    thin = info["anomalous_validation_entries"]
    if thin < THIN_VALIDATION:
        rests = (
            "no threshold can be chosen there (0.5 is used)"
            if thin == 0
            else f"the stopping epoch and the threshold rest on {'it' if thin == 1 else 'them'}"
            " alone, and figures on new data can be far from the validation's"
        )
        print(
            f"warning: the validation part (the last {config.validation:.0%} of the entries, in"
            f" time order) holds {thin} anomalous line{'' if thin == 1 else 's'}: {rests}."
            f" Label more incidents, so that it holds {THIN_VALIDATION} or more.",
            file=sys.stderr,
        )
    return 0


def write_line_scores(path: str, verdicts: LineVerdicts) -> None:
    with writing(path), open_out(path) as fh:
        verdicts.write_csv(fh)


def detect_supervised(args: argparse.Namespace, detector: SupervisedDetector) -> int:
    if args.jsonl or args.html:
        raise UsageError(
            "a supervised model gives one verdict per line, not per session: use --line-scores"
        )
    stream = read_stream(detector, args, learn=False)
    verdicts = detector.line_verdicts(stream)
    if args.line_scores:
        write_line_scores(args.line_scores, verdicts)
    out = sys.stderr if args.line_scores == "-" else sys.stdout
    print(
        f"{verdicts.lines:,} lines, {int(verdicts.flags.sum()):,} in anomalous windows (the last"
        f" {detector.model.window} entries; probability >= {detector.model.threshold_:.3g})",
        file=out,
    )
    return 0


def eval_lines(args: argparse.Namespace, detector: Any) -> int:
    """Line- and window-level figures of either kind of model against --line-labels."""
    from logwarden.cli.inputs import apply_input_args, read_inputs
    from logwarden.detect.lines import SupervisedDetector, window_line_verdicts

    if not args.line_labels:
        raise UsageError("a supervised model is evaluated per line: give --line-labels FILE")
    if args.normal or args.abnormal or args.labels:
        raise UsageError("--line-labels evaluates lines: drop --normal, --abnormal and --labels")
    if not args.inputs:
        raise UsageError("--line-labels needs the raw log INPUT files")
    check_line_labels_source(args)
    if isinstance(detector, SupervisedDetector):
        verdicts = detector.line_verdicts(read_stream(detector, args, learn=False))
    else:
        apply_input_args(detector, args)
        _window_mode(detector)
        verdicts = window_line_verdicts(detector.model, read_inputs(detector, args, learn=False))
    report = verdicts.report(line_labels(args, verdicts.lines))
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    return 0


def _window_mode(detector: Detector) -> None:
    if detector.input.input_format != "raw" or detector.input.window is None:
        raise UsageError(
            "per-line verdicts need a model for logs without session ids: one trained with"
            " --window N (or --supervised)"
        )


def check_window_mode(detector: Detector) -> None:
    """Before reading: --line-scores needs DeepLog on window sessions of raw logs."""
    _window_mode(detector)
