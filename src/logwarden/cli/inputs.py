"""Input options shared by ``train``, ``detect`` and ``eval``, and reading through a Detector."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from logwarden.cli.common import (
    RuntimeFailure,
    UsageError,
    report_read_errors,
    report_stats,
    warn_better_format,
)
from logwarden.heap import no_cycle_collection

if TYPE_CHECKING:
    from collections.abc import Collection

    from logwarden.detect.detector import Detector, Inputs, InputSpec, VerdictStream


def add_input_args(sp: argparse.ArgumentParser, *, nargs: str = "+") -> None:
    sp.add_argument(
        "inputs", nargs=nargs, metavar="INPUT", help="log files, sequence files or jsonl"
    )
    sp.add_argument("--input-format", choices=["raw", "sequences", "jsonl"], default=None,
                    help="raw log lines (default), DeepLog key sequences, or labelled jsonl sessions")  # fmt: skip
    sp.add_argument(
        "--format",
        metavar="FMT",
        help="log format for raw input (preset, format string, or auto: the preset that fits "
        "the first lines)",
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
    sp.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="processes that parse lines and score sessions (0, the default: one per usable "
        "core for inputs of 32 MB or more; 1: everything in this process)",
    )
    sp.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="raw id sessions: a session is complete after this much log time without a line "
        "(default: what train learnt from the training sessions' gaps; 0: at the end of input)",
    )


#: Lines ``--format auto`` reads from the start of the inputs.
AUTO_SAMPLE = 1000


def resolve_format(spec: str | None, inputs: Sequence[str]) -> str | None:
    """``--format auto``: the preset that fits the inputs' first lines best (said on
    stderr), or a usage error naming the closest ones; any other value as it is."""
    from itertools import islice

    from logwarden.io.formats import AUTO, guess_format
    from logwarden.io.sources import LineReader

    if spec is None or spec.strip().lower() != AUTO:
        return spec
    if "-" in inputs:
        raise UsageError("--format auto reads the start of a file: give --format for stdin")
    reader = LineReader(inputs)
    sample = list(islice((t for batch in reader.text_batches() for t in batch), AUTO_SAMPLE))
    if not sample and reader.errors:
        why = "; ".join(f"{path}: {message}" for path, message in reader.errors)
        raise UsageError(f"--format auto: nothing to read ({why})")
    ranked = guess_format(sample)
    if not ranked or ranked[0][1] < 0.5:
        close = ", ".join(f"{name} {share:.0%}" for name, share in ranked[:3]) or "no lines"
        raise UsageError(
            f"--format auto: no preset fits the first {len(sample):,} lines ({close}); give "
            "a format string such as '<Date> <Time> <Level> <Content>'"
        )
    name, share = ranked[0]
    print(
        f"logwarden: --format auto: {name} ({share:.0%} of the first {len(sample):,} lines)",
        file=sys.stderr,
    )
    return name


def apply_input_args(detector: Detector, args: argparse.Namespace) -> bool:
    """The command line's input settings over the detector's own (saved ones for a model);
    whether ``--format`` replaced the model's format (warned about)."""
    if args.session is not None and args.window is not None:
        raise UsageError("give --session or --window, not both")
    saved = detector.input
    detector.input = detector.input.override(
        input_format=args.input_format,
        format=resolve_format(args.format, args.inputs),
        session=args.session,
        window=args.window,
        session_in_line=args.session_in_line,
    )
    if detector.input.input_format == "raw" and not detector.input.format:
        raise UsageError("raw input needs --format FMT")
    replaced = bool(args.format) and warn_other_format(
        args.format, detector.input.format, saved.format
    )
    warn_other_grouping(detector.input, saved)
    if args.workers < 0:
        raise UsageError("--workers must be >= 0")
    timeout = args.idle_timeout
    if timeout is not None:
        if not (timeout >= 0 and math.isfinite(timeout)):
            raise UsageError("--idle-timeout must be a number of seconds >= 0")
        if detector.input.window is not None and detector.input.input_format == "raw":
            # Windows of N lines end by count; the setting was taken and ignored.
            raise UsageError("--idle-timeout applies to sessions grouped by id, not to --window")
        detector.input = dataclasses.replace(detector.input, idle_timeout=timeout or None)
    _note_groups(args.session)
    return replaced


def warn_replaced(given: str, what: str, saved: str | None, why: str) -> bool:
    """Warn that a command-line setting (``given``, as the user wrote it) replaces the
    model's ``what`` (``saved``, as a user would write it; None or empty: the model has
    none, nothing is replaced) and ``why`` that matters; whether it warned. The caller
    says whether the two differ: only then is this called."""
    if not saved:
        return False
    print(
        f"logwarden: warning: {given} replaces the model's {what} ({saved}): {why}",
        file=sys.stderr,
    )
    return True


def warn_other_format(flag_value: str, given: str | None, saved: str | None) -> bool:
    """Warn when ``--format`` (``flag_value``, read as ``given``) is not the model's
    ``saved`` format; whether it is not."""
    if not saved or same_format(given, saved):
        return False
    return warn_replaced(
        f"--format {flag_value}",
        "format",
        saved,
        "its templates were learnt from messages that format cut out",
    )


def warn_other_grouping(now: InputSpec, saved: InputSpec) -> bool:
    """Warn when ``--window``, ``--session`` or ``--session-in-line`` group raw lines
    otherwise than the model (``saved``: its input settings; ``now``: with the command
    line's over them); whether they do. Its keys' orders and counts, its thresholds and
    its idle timeout were learnt from sessions grouped its way: other groups are flagged
    (windows of a model of id sessions: every one of them) or missed for that alone."""
    if now.input_format != "raw" or grouping(now) == grouping(saved):
        return False
    return warn_replaced(
        grouping_flags(now),
        "sessions",
        grouping_flags(saved),
        "its orders, counts and thresholds were learnt from sessions grouped its way, "
        "so verdicts on sessions grouped otherwise say little (drop the option for the model's)",
    )


def grouping(spec: InputSpec) -> tuple[str | None, int | None, bool]:
    """How ``spec`` groups raw lines into sessions: (id regex, window, in line)."""
    from logwarden.sessions import SESSION_PRESETS

    session = SESSION_PRESETS.get(spec.session, spec.session) if spec.session else None
    return session, spec.window, bool(spec.session_in_line) and session is not None


def grouping_flags(spec: InputSpec) -> str:
    """``spec``'s grouping as the options that give it ("" for none)."""
    if spec.window is not None:
        return f"--window {spec.window}"
    if not spec.session:
        return ""
    import shlex

    flags = f"--session {shlex.quote(spec.session)}"
    return flags + (" --session-in-line" if spec.session_in_line else "")


def same_format(a: str | None, b: str) -> bool:
    """Whether two format specs (preset names or format strings) read lines alike."""
    from logwarden.errors import LogwardenError
    from logwarden.io.formats import get_format

    if a == b:
        return True
    try:
        return bool(a) and get_format(a).regex.pattern == get_format(b).regex.pattern
    except (LogwardenError, ValueError):
        return False


def _note_groups(session: str | None) -> None:
    """A --session regex with several groups takes group 1 as the id: say so (a pattern
    like ``(blk)_(\\d+)`` would otherwise put every line in session "blk", silently)."""
    import re

    from logwarden.sessions import SESSION_PRESETS

    if session is None or session in SESSION_PRESETS:
        return
    if re.fullmatch(r"[A-Za-z][\w-]*", session):
        # A word where a preset was meant (--session instance): every line holding it
        # would be one session, named by the word.
        print(
            f"logwarden: --session {session!r} is not a preset ({', '.join(SESSION_PRESETS)}): "
            "taken as a regex, every line holding that word is one session",
            file=sys.stderr,
        )
        return
    try:
        groups = re.compile(session).groups
    except re.error:
        return  # reported where the sessions are configured
    if groups > 1:
        print(
            f"logwarden: --session has {groups} groups: the id is what group 1 matches "
            "(make the others non-capturing: (?:...))",
            file=sys.stderr,
        )


def workers_for(args: argparse.Namespace, *, learn: bool, raw: bool = True) -> int:
    """Worker processes for the command: ``--workers`` (1: none), or by default one per
    usable core when the inputs are large enough and this process may fork."""
    from logwarden.io.ingest import default_workers

    if not raw or args.workers == 1:
        return 0
    if args.workers > 1:
        return args.workers
    return default_workers(args.inputs, learn)


def read_inputs(
    detector: Detector,
    args: argparse.Namespace,
    *,
    learn: bool,
    labels: str | None = None,
    only: Collection[str] | None = None,
    idle_timeout: float | None = None,
) -> Inputs:
    """Read INPUT files as the detector says, reporting what was read and skipped;
    ``only``, ``idle_timeout``: see ``Detector.read``."""
    spec = detector.input
    workers = workers_for(args, learn=learn, raw=spec.input_format == "raw")
    # The sessions live until the command ends (frozen; main unfreezes when it returns).
    with no_cycle_collection(freeze=True):
        data = detector.read(
            args.inputs,
            learn=learn,
            labels=labels,
            include_anomalous=getattr(args, "include_anomalous", False),
            workers=workers,
            only=only,
            idle_timeout=idle_timeout,
        )
    if spec.input_format == "sequences":
        warn_not_sequences(data.keys)
    if spec.input_format == "raw":
        report_stats("read", data.stats, data.entries, len(data.ids), spec.format)
        check_format_fit(detector, args, data.stats)
        if not learn:
            note_partial_last_lines(detector, args.inputs, data.stats)
        report_read_errors(args, data.errors)
        if not data.ids and only:
            ids = list(only)
            raise UsageError(
                f"none of the {len(ids)} session(s) asked for is in the input ("
                + ", ".join(ids[:5])
                + ("" if len(ids) <= 5 else ", ...")
                + "); check the ids, --format and --session"
            )
        if not data.ids:
            why = "; ".join(f"{p}: {m}" for p, m in data.errors) or "check --format and --session"
            raise RuntimeFailure(f"no session could be formed from the input ({why})")
    return data


_LOG_CHARS = frozenset(':/="{}[]')  # in a log line or JSON, not in a DeepLog key


def not_sequences(sessions: Sequence[Sequence[str]], sample: int = 1000) -> str | None:
    """What is wrong when "sequences" look like raw log lines or JSON (keys with colons,
    slashes, quotes or brackets in most of the first lines): every word then becomes a
    key, and a model of hundreds of keys trains without a word. None when they do not."""
    head = [s for s in sessions[:sample] if s]
    odd = sum(1 for s in head if any(not _LOG_CHARS.isdisjoint(k) for k in s))
    if not head or 2 * odd <= len(head):
        return None
    return (
        f"{odd:,} of the first {len(head):,} sequences hold words like a log line's or "
        "JSON's (':', '/', '=', quotes, brackets): is the input raw (--input-format raw) "
        "or jsonl?"
    )


def warn_not_sequences(sessions: Sequence[Sequence[str]], sample: int = 1000) -> None:
    """``not_sequences``'s finding as a warning."""
    why = not_sequences(sessions, sample)
    if why is not None:
        print(f"logwarden: warning: {why}", file=sys.stderr)


class UnknownKeys:
    """The share of the first ``sample`` entries whose keys the model never saw: most of
    them unknown means input in another form than the model's (raw lines read as key
    sequences, another --format, a model of another system), which only says "unseen
    key" session after session otherwise."""

    def __init__(self, known: Iterable[str], sample: int = 100_000) -> None:
        self.known = set(known)
        self.sample = sample
        self.unknown = 0
        self.entries = 0

    def feed(self, sessions: Sequence[Sequence[str]]) -> None:
        known = self.known
        for keys in sessions:
            if self.entries >= self.sample:
                return
            self.entries += len(keys)
            self.unknown += sum(1 for k in keys if k not in known)

    @property
    def mostly_unknown(self) -> bool:
        return self.entries >= 20 and 2 * self.unknown > self.entries

    def message(self) -> str:
        return (
            f"{self.unknown:,} of the first {self.entries:,} entries have keys the model never "
            "saw: is the input in the model's form (--input-format, --format)?"
        )

    def warn(self) -> None:
        if self.mostly_unknown:
            print(f"logwarden: warning: {self.message()}", file=sys.stderr)


def check_form(detector: Detector, sessions: Sequence[Sequence[str]], unknown: UnknownKeys) -> None:
    """Per chunk of a stream: the first chunk of key sequences is checked for raw lines
    (as ``read_inputs`` does), and the first entries are sampled for unknown keys."""
    if unknown.entries == 0 and detector.input.input_format == "sequences":
        warn_not_sequences(sessions)
    unknown.feed(sessions)


def load_detector(path: str) -> Detector:
    from logwarden.detect.detector import Detector

    return Detector.load(path)


def stream_inputs(
    detector: Detector,
    args: argparse.Namespace,
    *,
    labels: str | None = None,
    diagnose: bool = True,
) -> VerdictStream:
    """Verdicts of INPUT files as they come (``Detector.stream``): memory for the open
    sessions, not the whole input. Report what was read with ``report_stream`` after it."""
    spec = detector.input
    workers = workers_for(args, learn=False, raw=spec.input_format == "raw")
    # Verdicts need only the values the parameter models read (see Detector.stream), and
    # the commands only read them (share).
    return detector.stream(
        args.inputs, labels=labels, workers=workers, diagnose=diagnose, values="modelled",
        share=True,
    )  # fmt: skip


def report_stream(stream: VerdictStream, args: argparse.Namespace) -> None:
    """What ``read_inputs`` reports, once a stream is done."""
    if stream.detector.input.input_format != "raw":
        return
    report_stats(
        "read", stream.stats, stream.entries, stream.sessions, stream.detector.input.format
    )
    check_format_fit(stream.detector, args, stream.stats)
    note_partial_last_lines(stream.detector, args.inputs, stream.stats)
    report_read_errors(args, stream.errors)
    if not stream.sessions:
        why = "; ".join(f"{p}: {m}" for p, m in stream.errors) or "check --format and --session"
        raise RuntimeFailure(f"no session could be formed from the input ({why})")


def check_format_fit(detector: Detector, args: argparse.Namespace, stats: Any) -> None:
    """``train``/``detect``/``eval`` on raw input: when some lines did not match the format
    or had no readable time, the first lines of the input files are read again and the
    format is checked against the presets (``warn_better_format``, as ``parse`` does)."""
    from itertools import islice

    from logwarden.io.formats import AUTO
    from logwarden.io.sources import LineReader

    spec = detector.input.format
    given = getattr(args, "format", None)
    if not spec or not (stats["unmatched_format"] or stats["bad_timestamp"]):
        return
    if given and given.strip().lower() == AUTO:
        return  # the preset that fits best already
    files = [p for p in args.inputs if p != "-"]
    if not files:
        return
    batches = LineReader(files).text_batches()
    sample = list(islice((t for batch in batches for t in batch), AUTO_SAMPLE))
    warn_better_format(spec, sample, f"--format {given}" if given else f"the model's format {spec}")


def note_partial_last_lines(detector: Detector, inputs: Sequence[str], stats: Any) -> None:
    """``detect``/``eval``: an input whose last line has no line break (``no_final_newline``,
    counted in the read summary) may be a file still being written, its last line cut
    (``Interrupted while waiting for mess``). The line is kept (a file may end without a
    newline); when it also matches no template of the model's parser, it may be only half
    a line: a note says so, naming it."""
    if not stats["no_final_newline"] or detector.miner is None:
        return
    from logwarden.errors import LogwardenError
    from logwarden.io.formats import get_format
    from logwarden.records import Line

    try:
        fmt = get_format(detector.input.format or "")
    except LogwardenError:
        return
    miner = detector.miner
    for path in _plain_paths(inputs):
        text = _unterminated_last_line(path)
        if text is None:
            continue
        # A template of the model's parser: a whole line (also one of no session, which
        # the key model never sees: a request line of an instance log).
        if miner.match(fmt.parse(Line(text, path, 0, 0)).content) is not None:
            continue
        shown = text if len(text) <= 80 else "..." + text[-77:]  # where it was cut
        print(
            f"logwarden: note: {path} ends without a line break, and its last line matches "
            f"no template the model knows (a line still being written?): {shown!r}",
            file=sys.stderr,
        )


def _plain_paths(inputs: Sequence[str]) -> list[str]:
    """The files named by ``inputs`` as ``LineReader`` expands them (not standard input)."""
    import glob
    import os

    paths: list[str] = []
    for name in inputs:
        if name == "-":
            continue
        if os.path.lexists(name) or not any(c in name for c in "*?["):
            paths.append(name)
        else:
            paths += sorted(glob.glob(name, recursive=True))
    return paths


def _unterminated_last_line(path: str, limit: int = 65536) -> str | None:
    """The last line of a plain UTF-8 file that does not end with a line break (None when
    it does, or for gzip and UTF-16, which are not read backwards here)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) in (b"\x1f\x8b", b"\xff\xfe", b"\xfe\xff"):
                return None
            size = fh.seek(0, 2)
            fh.seek(max(0, size - limit - 1))
            tail = fh.read()
    except OSError:
        return None
    if not tail or tail.endswith(b"\n"):
        return None
    return tail[tail.rfind(b"\n") + 1 :].decode("utf-8", "replace")


def one_blas_thread() -> Any:
    """A context with one BLAS thread in this process while sessions are scored: the
    networks' matrix products are small, and OpenBLAS threads fighting over the cores with
    the worker processes (or anything else) made them 3x slower (measured on 2 cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


@contextlib.contextmanager
def scoring_scope() -> Iterator[None]:
    """Around a streamed ``detect``/``eval``: the cyclic collector off (millions of
    short-lived small objects, none in a cycle; see ``read_inputs``) and one BLAS thread."""
    with no_cycle_collection(), one_blas_thread():
        yield
