"""``logwarden parse``: raw log lines -> loghub-style structured CSV and a templates CSV."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from logwarden.cli.common import (
    RuntimeFailure,
    UsageError,
    check_outputs,
    noted,
    report_read_errors,
    warn_better_format,
    warn_unmatched,
)
from logwarden.cli.inputs import AUTO_SAMPLE, resolve_format
from logwarden.io.formats import AUTO
from logwarden.persist import umask_mode
from logwarden.records import Line, Stats

if TYPE_CHECKING:
    from logwarden.parsing import MaskRule, TemplateMiner


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("parse", help="raw log lines -> structured CSV with templates")
    sp.add_argument(
        "logs", nargs="+", metavar="LOG", help="files, globs, gzip files, or - for stdin"
    )
    sp.add_argument(
        "--format",
        required=True,
        metavar="FMT",
        help="preset (hdfs, bgl, openstack, spark, zookeeper, hadoop, linux, apache, syslog, "
        "syslog5424, json[:FIELD]), a loghub format string like '<Date> <Time> <Content>', "
        "or auto (the preset that fits the first lines)",
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


def _default_templates_path(out: Path) -> Path:
    name = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(name + ".templates.csv")


def cmd_parse(args: argparse.Namespace) -> int:
    from logwarden.io.formats import get_format
    from logwarden.io.sources import LineReader, SourceConfig
    from logwarden.parsing import MinerConfig, TemplateMiner
    from logwarden.parsing.structured import StructuredCsv

    fmt = get_format(resolve_format(args.format, args.logs) or "")  # ConfigError: usage (main)
    if args.max_line_bytes < 1:
        raise UsageError("--max-line-bytes must be positive")
    state_path = Path(args.state) if args.state else None
    if args.match_only and not (state_path and state_path.exists()):
        raise UsageError("--match-only needs --state pointing to a saved parser state")
    masks = [_parse_mask(spec) for spec in args.mask]
    if state_path and state_path.exists():
        if masks or args.max_templates is not None:
            raise UsageError("--mask and --max-templates are part of a saved state; drop them")
        miner = TemplateMiner.load(state_path)  # a StateError fails the command (main)
    else:
        miner = TemplateMiner(MinerConfig(max_templates=args.max_templates, masks=masks))
    learn = not args.match_only
    # Templates evicted (--max-templates) while rows holding their ids were written: the
    # templates CSV lists them too (one row each, a few dozen bytes).
    evicted: list[tuple[int, str, int]] = []
    miner.on_evict = lambda t: evicted.append((t.id, t.text, t.count))

    if args.out == "-":
        # The CSV is written to a file and renamed into place: rows written before a
        # template changed are rewritten at the end, which a pipe cannot take back.
        raise UsageError("--out needs a file: parse rewrites earlier rows when templates change")
    out = Path(args.out)
    templates_out = Path(args.templates) if args.templates else _default_templates_path(out)
    check_outputs(
        [(args.out, "--out"), (str(templates_out), "--templates")],
        [(p, "the input") for p in args.logs] + [(args.state, "the parser state --state")],
    )
    for path, flag in ((out, "--out"), (templates_out, "--templates")):
        if path.is_dir():  # found before the parsing, not when the file is put in place
            raise UsageError(f"{flag} {path} is a directory, not a file")
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
    sample: list[str] = []  # the first lines, to check the format against the presets
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8", buffering=1 << 20) as fh:
            sink = StructuredCsv(
                fmt, miner, fh, learn=learn, with_source=args.with_source, stats=stats
            )
            if args.with_source:
                sink.write_lines(_sampled_lines(reader, sample))
            else:
                for batch in reader.text_batches():
                    if len(sample) < AUTO_SAMPLE:
                        sample.extend(batch[: AUTO_SAMPLE - len(sample)])
                    sink.write_texts(batch)
        n_lines, n_written = sink.lines, sink.rows
        if sink.columns != sink.header_written:
            # JSON lines brought header fields while the rows were written.
            from logwarden.parsing.structured import widen_file

            widen_file(tmp, sink.columns, len(sink.header), sink.narrow_rows)
        if miner.changes_ != changes_before and sink.stale_rows:
            # Templates were generalised or merged while writing: rows written before that
            # carry an id or text that is no longer final. One pass brings them up to date
            # (and copies the rows after the last change as they are).
            _finalise_ids(tmp, miner, sink.columns.index("EventId"), sink.stale_rows)
        os.chmod(tmp, umask_mode())  # mkstemp made it 0600; the templates CSV is not
        os.replace(tmp, out)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {out}: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        _write_templates(templates_out, miner, evicted)
        if state_path and learn:
            miner.save(state_path)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write output: {exc}") from None

    elapsed = time.perf_counter() - started
    warnings: list[str] = []
    if not args.quiet:
        from logwarden.parsing.diagnostics import diagnose

        warnings = [w.message for w in diagnose(miner)]
    _summary(
        args,
        reader,
        stats,
        n_lines,
        n_written,
        len(miner),
        elapsed,
        out,
        templates_out,
        warnings,
        evicted=len(evicted),
    )
    if args.format.strip().lower() != AUTO:
        warn_better_format(args.format, sample)  # also under --quiet
    return 0 if n_written > 0 else 1


def _sampled_lines(lines: Iterable[Line], sample: list[str]) -> Iterator[Line]:
    """``lines``, keeping the texts of the first ``AUTO_SAMPLE`` in ``sample``."""
    for line in lines:
        if len(sample) < AUTO_SAMPLE:
            sample.append(line.text)
        yield line


def _parse_mask(spec: str) -> MaskRule:
    from logwarden.parsing import MaskRule
    from logwarden.records import PARAM_KINDS

    kind, sep, pattern = spec.partition("=")
    if not sep or not pattern or kind not in PARAM_KINDS:
        raise UsageError(
            f"--mask wants KIND=REGEX with KIND one of {', '.join(PARAM_KINDS)}: {spec!r}"
        )
    return MaskRule(name=f"user-{kind}", pattern=pattern, kind=kind)


def _finalise_ids(path: Path, miner: TemplateMiner, id_col: int, upto: int) -> None:
    from logwarden.parsing.structured import finalise_file

    finalise_file(path, miner, id_col, upto)


def _write_templates(path: Path, miner: object, evicted: list[tuple[int, str, int]]) -> None:
    from logwarden.parsing import TemplateMiner

    assert isinstance(miner, TemplateMiner)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["EventId", "EventTemplate", "Occurrences"])
        rows = [(t.id, t.text, t.count) for t in miner.templates_.values()] + evicted
        for key, text, count in sorted(rows):
            w.writerow([f"E{key}", text, count])


def _summary(
    args: argparse.Namespace,
    reader: object,
    stats: Stats,
    n_lines: int,
    n_written: int,
    n_templates: int,
    elapsed: float,
    out: Path,
    templates_out: Path,
    warnings: list[str] | None = None,
    evicted: int = 0,
) -> None:
    rate = n_lines / elapsed if elapsed > 0 else 0.0
    lines = [
        f"logwarden parse: {n_lines:,} lines read in {elapsed:.2f} s ({rate:,.0f} lines/s)",
        f"  parsed {n_written:,} lines into {n_templates:,} template{'' if n_templates == 1 else 's'}"
        + (
            f" held at the end, and {evicted:,} more evicted by --max-templates before it (their"
            " rows keep their ids; the templates CSV lists them too)"
            if evicted
            else ""
        ),
    ]
    counts = stats.problems()
    if counts:
        lines.append("  skipped or altered: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if stats.notes():
        lines.append("  " + noted(stats).removeprefix("; "))
    lines.append(f"  wrote {out} and {templates_out}")
    if n_written == 0:
        lines.append("  no line could be parsed")
    # Last: signs that the template set is shattered (logwarden.parsing.diagnostics).
    lines += [f"  warning: {w}" for w in warnings or ()]
    if not args.quiet or n_written == 0:
        print("\n".join(lines), file=sys.stderr)
    warn_unmatched(stats, args.format)  # also under --quiet
    report_read_errors(args, getattr(reader, "errors", []))
