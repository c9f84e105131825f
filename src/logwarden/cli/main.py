"""The ``logwarden`` command.

Exit codes: 0 success, 1 runtime failure (nothing could be read, I/O errors), 2 usage error.
Errors are one clear line on stderr; a user mistake never prints a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from logwarden import __version__
from logwarden.records import Stats

if TYPE_CHECKING:
    from logwarden.parsing import MaskRule


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""


class RuntimeFailure(Exception):
    """The command was well formed but could not do its job (exit 1)."""


def _err(msg: str) -> None:
    print(f"logwarden: error: {msg}", file=sys.stderr)


# --- parse --------------------------------------------------------------------------------


def _default_templates_path(out: Path) -> Path:
    name = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(name + ".templates.csv")


def cmd_parse(args: argparse.Namespace) -> int:
    from logwarden.io.formats import FormatError, get_format
    from logwarden.io.sources import LineReader, SourceConfig
    from logwarden.parsing import MinerConfig, ParserStateError, TemplateMiner
    from logwarden.parsing.structured import StructuredCsv

    try:
        fmt = get_format(args.format)
    except FormatError as exc:
        raise UsageError(str(exc)) from None
    if args.max_line_bytes < 1:
        raise UsageError("--max-line-bytes must be positive")
    state_path = Path(args.state) if args.state else None
    if args.match_only and not (state_path and state_path.exists()):
        raise UsageError("--match-only needs --state pointing to a saved parser state")
    masks = [_parse_mask(spec) for spec in args.mask]
    if state_path and state_path.exists():
        if masks or args.max_templates is not None:
            raise UsageError("--mask and --max-templates are part of a saved state; drop them")
        try:
            miner = TemplateMiner.load(state_path)
        except ParserStateError as exc:
            raise RuntimeFailure(str(exc)) from None
    else:
        try:
            miner = TemplateMiner(MinerConfig(max_templates=args.max_templates, masks=masks))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    learn = not args.match_only

    out = Path(args.out)
    templates_out = Path(args.templates) if args.templates else _default_templates_path(out)
    stats = Stats()
    reader = LineReader(args.logs, SourceConfig(max_line_bytes=args.max_line_bytes), stats)
    started = time.perf_counter()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {out}: {exc}") from None
    tmp = Path(tmp_name)
    changes_before = miner.changes_
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8", buffering=1 << 20) as fh:
            sink = StructuredCsv(
                fmt, miner, fh, learn=learn, with_source=args.with_source, stats=stats
            )
            if args.with_source:
                sink.write_lines(reader)
            else:
                for batch in reader.text_batches():
                    sink.write_texts(batch)
        n_lines, n_written = sink.lines, sink.rows
        if miner.changes_ != changes_before:
            # Templates were generalised or merged while writing: rows written before that
            # carry an id or text that is no longer final. One pass brings them up to date.
            _finalise_ids(tmp, miner, sink.columns.index("EventId"))
        os.replace(tmp, out)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {out}: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        _write_templates(templates_out, miner)
        if state_path and learn:
            miner.save(state_path)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write output: {exc}") from None

    elapsed = time.perf_counter() - started
    _parse_summary(args, reader, stats, n_lines, n_written, len(miner), elapsed, out, templates_out)
    return 0 if n_written > 0 else 1


def _parse_mask(spec: str) -> MaskRule:
    from logwarden.parsing import MaskRule
    from logwarden.records import PARAM_KINDS

    kind, sep, pattern = spec.partition("=")
    if not sep or not pattern or kind not in PARAM_KINDS:
        raise UsageError(
            f"--mask wants KIND=REGEX with KIND one of {', '.join(PARAM_KINDS)}: {spec!r}"
        )
    return MaskRule(name=f"user-{kind}", pattern=pattern, kind=kind)


def _finalise_ids(path: Path, miner: object, id_col: int) -> None:
    from logwarden.parsing import TemplateMiner

    assert isinstance(miner, TemplateMiner)
    fixed = path.with_name(path.name + ".final")
    with (
        path.open(newline="", encoding="utf-8") as src,
        fixed.open("w", newline="", encoding="utf-8") as dst,
    ):
        r = csv.reader(src)
        w = csv.writer(dst)
        w.writerow(next(r))
        changed = miner.changed_ids_
        for row in r:
            if row[id_col] and int(row[id_col][1:]) in changed:
                # Match the content again: the final template may have more parameters.
                result = miner.match(row[id_col - 1])
                if result is not None:
                    row[id_col] = f"E{result.key}"
                    row[id_col + 1] = result.template
                    row[id_col + 2] = str([p.value for p in result.params])
            w.writerow(row)
    os.replace(fixed, path)


def _write_templates(path: Path, miner: object) -> None:
    from logwarden.parsing import TemplateMiner

    assert isinstance(miner, TemplateMiner)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["EventId", "EventTemplate", "Occurrences"])
        for t in sorted(miner.templates_.values(), key=lambda t: t.id):
            w.writerow([f"E{t.id}", t.text, t.count])


def _parse_summary(
    args: argparse.Namespace,
    reader: object,
    stats: Stats,
    n_lines: int,
    n_written: int,
    n_templates: int,
    elapsed: float,
    out: Path,
    templates_out: Path,
) -> None:
    rate = n_lines / elapsed if elapsed > 0 else 0.0
    lines = [
        f"logwarden parse: {n_lines:,} lines read in {elapsed:.2f} s ({rate:,.0f} lines/s)",
        f"  parsed {n_written:,} lines into {n_templates:,} templates",
    ]
    counts = stats.problems()
    if counts:
        lines.append("  skipped or altered: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    for path, msg in getattr(reader, "errors", []):
        lines.append(f"  {path}: {msg}")
    lines.append(f"  wrote {out} and {templates_out}")
    if n_written == 0:
        lines.append("  no line could be parsed")
    if not args.quiet or n_written == 0:
        print("\n".join(lines), file=sys.stderr)


# --- train / detect / eval -----------------------------------------------------------------


@dataclass
class _Inputs:
    ids: list[str]
    keys: list[list[str]]
    labels: list[int | None]
    templates: dict[str, str]
    lines: list[list[str]] | None = None
    extra: dict[str, Any] | None = None  # what the bundle must remember to read raw input again
    events: list[Any] | None = None  # raw input: the sessions' entries, for the parameter models


def _load_inputs(
    args: argparse.Namespace, *, training: bool, bundle: dict[str, Any] | None = None
) -> _Inputs:
    """Sessions from INPUT files in the chosen input format (or the one the model was trained on)."""
    from logwarden.io.datasets import DataError, load_jsonl, load_labels, load_sequences
    from logwarden.io.formats import FormatError
    from logwarden.io.ingest import read_raw_sessions, session_config
    from logwarden.parsing import TemplateMiner
    from logwarden.sessions import SessionConfigError

    saved = (bundle or {}).get("input") or {}
    kind = args.input_format or saved.get("input_format") or "raw"
    try:
        if kind == "sequences":
            sessions = []
            for path in args.inputs:
                sessions += load_sequences(path)
            return _Inputs(
                [s.id for s in sessions],
                [s.keys for s in sessions],
                [s.label for s in sessions],
                {},
                None,
                {"input": {"input_format": "sequences"}},
            )
        if kind == "jsonl":
            sessions = []
            for path in args.inputs:
                sessions += load_jsonl(path)
            if training and not args.include_anomalous:
                sessions = [s for s in sessions if s.label in (0, None)]
            templates = {k: k for s in sessions for k in s.keys}
            extra = {"input": {"input_format": "jsonl"}}
            return _Inputs(
                [s.id for s in sessions],
                [s.keys for s in sessions],
                [s.label for s in sessions],
                templates,
                None,
                extra,
            )
        fmt = args.format or saved.get("format")
        if not fmt:
            raise UsageError("raw input needs --format FMT")
        session = args.session if args.session is not None else saved.get("session")
        window = args.window if args.window is not None else saved.get("window")
        if args.session is not None and args.window is not None:
            raise UsageError("give --session or --window, not both")
        in_line = args.session_in_line
        if in_line is None:
            in_line = bool(saved.get("session_in_line", False))
        cfg = session_config(session, window, in_line=in_line)
        miner = None
        if bundle is not None and bundle.get("parser") is not None:
            miner = TemplateMiner.from_dict(bundle["parser"])
        raw = read_raw_sessions(args.inputs, fmt, cfg, miner=miner, learn=training)
        # The sessions live until the command ends: later collections need not scan them
        # (main unfreezes when the command returns).
        gc.freeze()
        labels: list[int | None] = [None] * len(raw.ids)
        if getattr(args, "labels", None):
            by_id = load_labels(args.labels)
            labels = [by_id.get(sid) for sid in raw.ids]
        _report_stats("read", raw.stats, raw.events, len(raw.ids))
        for path, message in raw.errors:
            print(f"logwarden: {path}: {message}", file=sys.stderr)
        if not raw.ids:
            why = "; ".join(f"{p}: {m}" for p, m in raw.errors) or "check --format and --session"
            raise RuntimeFailure(f"no session could be formed from the input ({why})")
        extra = {
            "input": {
                "input_format": "raw",
                "format": fmt,
                "session": session,
                "window": window,
                "session_in_line": in_line,
            },
            "parser": raw.miner.to_dict(),
        }
        return _Inputs(raw.ids, raw.keys, labels, raw.templates, raw.lines, extra, raw.sessions)
    except (DataError, FormatError, SessionConfigError) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise RuntimeFailure(str(exc)) from None


def _report_stats(what: str, stats: Stats, events: int, sessions: int) -> None:
    msg = f"logwarden: {what} {events:,} log entries into {sessions:,} sessions"
    problems = stats.problems()
    if problems:
        msg += "; skipped or altered: " + ", ".join(f"{k} {v:,}" for k, v in problems.items())
    print(msg, file=sys.stderr)


def _load_model(path: str) -> tuple[Any, dict[str, Any]]:
    from logwarden.detect import DeepLog
    from logwarden.persist.bundle import BundleError, load_bundle

    try:
        manifest, weights = load_bundle(path)
        return DeepLog.from_bundle(manifest, weights), manifest
    except BundleError as exc:
        raise RuntimeFailure(str(exc)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from logwarden.detect import DeepLog

    try:
        model = DeepLog(
            window=args.window_size,
            top_g=args.top_g,
            layers=args.layers,
            hidden=args.hidden,
            epochs=args.epochs,
            seed=args.seed,
            target_fpr=args.target_fpr,
            device=args.device,
            param_models=not args.no_params,
            confidence=args.confidence,
        )
        model._config()  # validates the hyperparameters before any work
        model._param_config()
    except ValueError as exc:
        raise UsageError(_flag_names(str(exc))) from None
    data = _load_inputs(args, training=True)
    if not data.keys:
        raise RuntimeFailure("no training session (jsonl input trains on label-0 sessions only)")
    n_rows = sum(len(k) + 1 for k in data.keys)
    columns = [TextColumn("training"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]  # fmt: skip
    started = time.perf_counter()
    with Progress(*columns, console=_stderr_console(), transient=False, disable=args.quiet) as bar:
        task = bar.add_task("train", total=args.epochs, loss=float("nan"), rate="")

        def progress(epoch: int, total: int, loss: float) -> None:
            rate = n_rows * epoch / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=epoch, loss=loss, rate=f"{rate:,.0f} windows/s")

        try:
            model.fit(data.keys, data.templates, progress=progress, events=data.events)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        bar.update(task, total=model.train_info_["epochs"])
    try:
        model.save(args.out, extra=data.extra)
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot write the model to {args.out}: {exc.strerror or exc}"
        ) from None
    th = model.threshold_
    rule = (
        f"top-g, g = {th.g}"
        if th.mode == "top_g"
        else (
            f"probability < {th.tau:.3g} (held-out false positives {th.heldout_fpr:.2%} of {th.heldout_sessions})"
        )
    )
    info = model.train_info_
    print(
        f"logwarden train: {len(data.keys):,} sessions, {len(model.keys_)} keys, "
        f"{info['distinct_windows']:,} distinct windows of {info['windows']:,}, {info['epochs']} epochs "
        f"in {info['seconds']:.1f} s on {info['device']}; threshold: {rule}; saved {args.out}",
        file=sys.stderr,
    )
    pinfo = info.get("params")
    if pinfo:
        print(
            f"  parameter models: {pinfo['units']} units over {pinfo['keys']} keys "
            f"({pinfo['lstm']} LSTM, {pinfo['robust']} robust statistics), "
            f"{pinfo['entries']:,} entries, {pinfo['confidence']:.1%} interval, "
            f"{pinfo['seconds']:.1f} s",
            file=sys.stderr,
        )
    elif args.no_params:
        print("  parameter models: skipped (--no-params)", file=sys.stderr)
    else:
        print(
            "  parameter models: none (key sequences carry no parameters or timestamps; "
            "train on raw logs for them)",
            file=sys.stderr,
        )
    return 0


def _verdicts(args: argparse.Namespace, data: _Inputs, model: Any) -> list[Any]:
    # Lines the model never saw still get their template text in explanations.
    for key, text in data.templates.items():
        model.templates_.setdefault(key, text)
    return model.verdicts(data.keys, data.ids, data.lines, events=data.events)


_FLAGS = {
    "window": "--window-size", "top_g": "--top-g", "layers": "--layers", "hidden": "--hidden",
    "epochs": "--epochs", "target_fpr": "--target-fpr", "device": "--device",
    "confidence": "--confidence",
}  # fmt: skip


def _flag_names(message: str) -> str:
    """'window must be >= 1' -> '--window-size must be >= 1': users know the flags."""
    name = message.split(" ", 1)[0]
    return _FLAGS[name] + message[len(name) :] if name in _FLAGS else message


def cmd_detect(args: argparse.Namespace) -> int:
    import json

    model, manifest = _load_model(args.model)
    data = _load_inputs(args, training=False, bundle=manifest)
    verdicts = _verdicts(args, data, model)
    if args.jsonl:
        try:
            with _open_out(args.jsonl) as fh:
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
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from logwarden.evaluate import Report
    from logwarden.io.datasets import DataError, load_sequences

    model, manifest = _load_model(args.model)
    if args.normal or args.abnormal:
        if args.inputs:
            raise UsageError("give --normal/--abnormal or INPUT files, not both")
        try:
            sessions = [s for p in args.normal for s in load_sequences(p, label=0)]
            sessions += [s for p in args.abnormal for s in load_sequences(p, label=1)]
        except DataError as exc:
            raise UsageError(str(exc)) from None
        data = _Inputs(
            [s.id for s in sessions], [s.keys for s in sessions], [s.label for s in sessions], {}
        )
    else:
        if not args.inputs:
            raise UsageError(
                "eval needs --normal/--abnormal files, labelled jsonl, or raw logs with --labels"
            )
        data = _load_inputs(args, training=False, bundle=manifest)
    if all(label is None for label in data.labels):
        raise UsageError("no labels: use --normal/--abnormal, jsonl with labels, or --labels CSV")
    verdicts = _verdicts(args, data, model)
    report = Report.from_verdicts(verdicts, data.labels, model.window, keys=data.keys)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    return 0


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[TextIO]:
    """A text output: ``-`` is standard output (left open), anything else a file."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
    else:
        with open(path, "w", encoding="utf-8") as fh:
            yield fh


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# --- simulate -----------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from logwarden.sim import SimConfig, simulate

    if args.sessions < 1:
        raise UsageError("--sessions must be positive")
    if not 0.0 <= args.anomaly_rate <= 1.0:
        raise UsageError("--anomaly-rate must be between 0 and 1")
    sim = simulate(
        SimConfig(seed=args.seed, sessions=args.sessions, anomaly_rate=args.anomaly_rate)
    )
    try:
        sim.write(args.out, args.labels)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {args.out}: {exc}") from None
    n_anom = sum(s.label for s in sim.sessions)
    print(
        f"logwarden simulate: {len(sim.lines):,} lines, {len(sim.sessions):,} sessions "
        f"({n_anom:,} anomalous) -> {args.out}"
        + (f", labels {args.labels}" if args.labels else ""),
        file=sys.stderr,
    )
    return 0


# --- demo ---------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from logwarden.cli.demo import run_demo

    return run_demo(sessions=args.sessions, seed=args.seed)


# --- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="logwarden",
        description="DeepLog log anomaly detection: parse logs, train, detect, explain.",
    )
    p.add_argument("--version", action="version", version=f"logwarden {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sp = sub.add_parser("parse", help="raw log lines -> structured CSV with templates")
    sp.add_argument(
        "logs", nargs="+", metavar="LOG", help="files, globs, gzip files, or - for stdin"
    )
    sp.add_argument(
        "--format",
        required=True,
        metavar="FMT",
        help="preset (hdfs, bgl, openstack, spark, zookeeper, hadoop, linux, apache, syslog, "
        "syslog5424, json[:FIELD]) or a loghub format string like '<Date> <Time> <Content>'",
    )
    sp.add_argument("--out", required=True, metavar="CSV", help="structured CSV to write")
    sp.add_argument("--templates", metavar="CSV", help="templates CSV (default OUT.templates.csv)")
    sp.add_argument("--state", metavar="JSON", help="parser state to load (if present) and save")
    sp.add_argument("--match-only", action="store_true", help="do not learn: match saved templates")
    sp.add_argument("--max-templates", type=int, default=None, help="evict beyond this many")
    sp.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="KIND=REGEX",
        help="extra mask: every match becomes one parameter of KIND (repeatable)",
    )
    sp.add_argument("--max-line-bytes", type=int, default=65536, help="truncate longer lines")
    sp.add_argument("--with-source", action="store_true", help="add Source, LineNo, Offset columns")
    sp.add_argument("-q", "--quiet", action="store_true", help="no summary unless nothing parsed")
    sp.set_defaults(func=cmd_parse)

    def add_input_args(sp: argparse.ArgumentParser, *, nargs: str = "+") -> None:
        sp.add_argument(
            "inputs", nargs=nargs, metavar="INPUT", help="log files, sequence files or jsonl"
        )
        sp.add_argument("--input-format", choices=["raw", "sequences", "jsonl"], default=None,
                        help="raw log lines (default), DeepLog key sequences, or labelled jsonl sessions")  # fmt: skip
        sp.add_argument(
            "--format", metavar="FMT", help="log format for raw input (preset or format string)"
        )
        sp.add_argument(
            "--session", metavar="REGEX", help="session id regex (or preset: hdfs, openstack, ...)"
        )
        sp.add_argument(
            "--session-in-line",
            action="store_true",
            default=None,
            help="search --session in the whole line, header included (e.g. OpenStack's "
            "[req-...] header field), not only the message",
        )
        sp.add_argument(
            "--window", type=int, metavar="N", help="sessions of N lines for logs without ids"
        )

    st = sub.add_parser("train", help="train the DeepLog model on normal sessions")
    add_input_args(st)
    st.add_argument("--out", required=True, metavar="MODEL", help="model bundle directory to write")
    st.add_argument("--include-anomalous", action="store_true", help="jsonl: train on all sessions")
    st.add_argument("--window-size", type=int, default=10, help="history length h (10)")
    st.add_argument(
        "--top-g", type=int, default=None, help="fixed top-g rule (default: automatic threshold)"
    )
    st.add_argument(
        "--target-fpr", type=float, default=0.005, help="automatic threshold's false-positive rate"
    )
    st.add_argument("--layers", type=int, default=2)
    st.add_argument("--hidden", type=int, default=64)
    st.add_argument(
        "--epochs", type=int, default=1000, help="upper bound (stops when the loss settles)"
    )
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    st.add_argument(
        "--no-params", action="store_true", help="skip the parameter (value and timing) models"
    )
    st.add_argument(
        "--confidence",
        type=float,
        default=0.999,
        help="parameter models' interval: 0.98, 0.99 or 0.999 (default)",
    )
    st.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    st.set_defaults(func=cmd_train)

    sdet = sub.add_parser("detect", help="verdicts with explanations for each session")
    add_input_args(sdet)
    sdet.add_argument("--model", required=True, metavar="MODEL")
    sdet.add_argument("--jsonl", metavar="OUT", help="write one JSON verdict per session")
    sdet.add_argument("--show", type=int, default=3, help="explained anomalies to print (3)")
    sdet.set_defaults(func=cmd_detect)

    se = sub.add_parser("eval", help="precision, recall and F1 on labelled sessions")
    add_input_args(se, nargs="*")
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
    se.add_argument("--json", action="store_true", help="print one JSON object")
    se.set_defaults(func=cmd_eval)

    ss = sub.add_parser("simulate", help="write a simulated multi-task log with labels")
    ss.add_argument("--out", required=True, metavar="LOG")
    ss.add_argument("--labels", metavar="CSV", help="per-session ground truth")
    ss.add_argument("--sessions", type=int, default=2000)
    ss.add_argument("--anomaly-rate", type=float, default=0.05)
    ss.add_argument("--seed", type=int, default=0)
    ss.set_defaults(func=cmd_simulate)

    sd = sub.add_parser("demo", help="simulate a log, parse it, show what logwarden sees")
    sd.add_argument("--sessions", type=int, default=1500)
    sd.add_argument("--seed", type=int, default=7)
    sd.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0) if exc.code in (0, None) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except UsageError as exc:
        _err(str(exc))
        return 2
    except RuntimeFailure as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    finally:
        gc.unfreeze()


if __name__ == "__main__":
    sys.exit(main())
