"""What every command shares: its two failure kinds, error output, output files, consoles.

Library errors are mapped to exit codes in one place, ``main.run_command``; the commands
raise :class:`UsageError` and :class:`RuntimeFailure` only for what is theirs to judge.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from logwarden.records import Stats


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""


class RuntimeFailure(Exception):
    """The command was well formed but could not do its job (exit 1)."""


def err(msg: str) -> None:
    print(f"logwarden: error: {msg}", file=sys.stderr)


def report_read_errors(args: Any, errors: Sequence[tuple[str, str]]) -> None:
    """One line for each input that could not be read (also under --quiet). The command
    reads the rest and does its work, then ends with exit status 1 (``main.run_command``):
    a script must not take a partial read for a whole one."""
    for path, message in errors:
        print(f"logwarden: {path}: {message}", file=sys.stderr)
    if errors:
        args.unread_inputs = getattr(args, "unread_inputs", 0) + len(errors)


@contextlib.contextmanager
def open_out(path: str) -> Iterator[TextIO]:
    """A text output: ``-`` is standard output (left open), anything else a file."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
    else:
        with open(path, "w", encoding="utf-8") as fh:
            yield fh


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """An output error in the block as a RuntimeFailure naming ``what``. A reader that
    stopped early (``| head``) is not one: BrokenPipeError goes on to ``run_command``,
    which ends the command quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {what}: {exc}") from None


def check_out_dir(path: str, force: bool = False) -> None:
    """Before any work: ``--out`` can become a model directory (it is one, or its nearest
    existing parent is a writable directory). Training for minutes and then failing to
    save would lose all of it. A directory that holds a model, or other files, is only
    written with ``force`` (``--force``): a model replaced by mistake is lost, and it may
    be another version's parent."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path} is a file, not a model directory")
    if not force and out.is_dir() and any(out.iterdir()):
        if (out / "manifest.json").exists():
            raise UsageError(
                f"--out {path} already holds a model: give a new directory, "
                "or --force to replace it"
            )
        raise UsageError(
            f"--out {path} is a directory with other files in it: give a new or empty "
            "directory, or --force to write the model among them"
        )
    at = out if out.exists() else out.parent
    while not at.exists() and at != at.parent:
        at = at.parent
    _writable_dir(at, "--out", path)


def check_out_file(path: str | None, flag: str) -> None:
    """Before any work: an output file written at the end (a report) can be written."""
    if path is None or path == "-":
        return
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{flag} {path} is a directory, not a file")
    _writable_dir(out.parent, flag, path)


def check_outputs(
    outputs: Sequence[tuple[str | None, str]],
    inputs: Sequence[tuple[str | None, str]] = (),
    models: Sequence[tuple[str | None, str]] = (),
) -> None:
    """Before any work: no output (path, flag) is one of the inputs (path, what), a file
    inside a model bundle (path, flag) or another output. Writing it would destroy what
    the command reads, or lose one of the two outputs, and a typo is all it takes."""

    def where(path: str) -> Path:
        return Path(path).expanduser().resolve()

    def same(a: Path, b: Path) -> bool:
        if a == b:
            return True
        try:
            return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
        except OSError:
            return False

    seen: list[tuple[Path, str, str]] = []
    for path, flag in outputs:
        if path is None or path == "-":
            continue
        out = where(path)
        for got, other, other_path in seen:
            if same(out, got):
                raise UsageError(f"{flag} {path} is also {other} {other_path}: choose another path")
        for name, what in inputs:
            if name and name != "-" and same(out, where(name)):
                raise UsageError(
                    f"{flag} {path} is {what} {name}: writing it would destroy the input"
                )
        for model, model_flag in models:
            if model and model != "-" and out.is_relative_to(where(model)):
                raise UsageError(
                    f"{flag} {path} is inside the model bundle {model_flag} {model}: "
                    "writing it would damage the model"
                )
        seen.append((out, flag, path))


def _writable_dir(at: Path, flag: str, path: str) -> None:
    if not at.is_dir() or not os.access(at, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write there ({at} is not a writable directory)")


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def report_stats(
    what: str, stats: Stats, events: int, sessions: int, fmt: str | None = None
) -> None:
    """The summary of a read into sessions, and its warnings; ``fmt``: the log format
    read (whether its lines have a level, for ``warn_no_id``; how to write a format
    string, for ``warn_unmatched``)."""
    msg = f"logwarden: {what} {events:,} log entries into {sessions:,} sessions"
    problems = stats.problems()
    if problems:
        msg += "; skipped or altered: " + ", ".join(f"{k} {v:,}" for k, v in problems.items())
    msg += noted(stats)
    print(msg, file=sys.stderr)
    warn_unmatched(stats, fmt)
    warn_no_id(stats, fmt)
    warn_went_back(stats)


def noted(stats: Stats) -> str:
    """``"; noted: reason n, ..."`` for the counts of lines read as they are that a user
    should still hear of (``Stats.notes``: a last line without a line break), else ""."""
    notes = stats.notes()
    return "; noted: " + ", ".join(f"{k} {v:,}" for k, v in notes.items()) if notes else ""


def _unmatched(stats: Stats) -> tuple[int, int]:
    """Lines that did not match the log format, of the lines parsed (not empty ones, nor
    those a read of some sessions only passed over: ``other_sessions``)."""
    parsed = stats["lines_read"] - stats["empty_line"] - stats["other_sessions"]
    return stats["unmatched_format"], parsed


def parsed_lines(stats: Stats) -> int:
    """The lines parsed, of which the warnings' conditions count shares (``_unmatched``)."""
    return _unmatched(stats)[1]


def mostly_unmatched(stats: Stats) -> bool:
    """Whether most lines parsed did not match the log format."""
    unmatched, lines = _unmatched(stats)
    return lines > 0 and 2 * unmatched > lines


def has_level(fmt: str | None) -> bool:
    """Whether the log format ``fmt`` has a ``Level`` field."""
    from logwarden.errors import LogwardenError
    from logwarden.io.formats import get_format

    if not fmt:
        return False
    try:
        return "Level" in get_format(fmt).regex.groupindex
    except (LogwardenError, ValueError):
        return False


def mostly_no_id(stats: Stats) -> bool:
    """Whether half the lines parsed or more hold no session id (``warn_no_id``)."""
    _, lines = _unmatched(stats)
    return lines > 0 and 2 * stats["no_session_id"] >= lines


def warn_no_id(stats: Stats, fmt: str | None = None) -> None:
    """A warning when half the lines parsed or more hold no session id: they are in no
    session, so nothing judges them, and a summary's ``no_session_id`` count is easy to
    miss (Hadoop's task attempt ids: 1,590 of 2,000 lines, 151 ERROR lines among them,
    left out while detect said "0 anomalous"). Half: a log grouped by the right ids has
    most lines in a session (HDFS by block ids: all); when half are not, the verdicts
    speak for the smaller part of the log, whatever the reason. ``fmt``: the log format,
    whose ``Level`` field tells how many of them were warnings or errors."""
    if not mostly_no_id(stats):
        return
    no_id = stats["no_session_id"]
    _, lines = _unmatched(stats)
    severe = ""
    if has_level(fmt):
        severe = f" ({stats['no_session_id_severe']:,} of them at level WARN, ERROR or FATAL)"
    print(
        f"logwarden: warning: {no_id:,} of {lines:,} lines hold no session id and were not "
        f"judged{severe}: check the --session regex (train's, for a model); lines of "
        "another kind of run carry other ids, which a model of their own judges (--session "
        "for those ids); --window N is for a log without ids, and much weaker where ids "
        "exist",
        file=sys.stderr,
    )


def mostly_unread_times(stats: Stats) -> bool:
    """Whether the time of most lines that match the format could not be read
    (``bad_timestamp``; ``warn_unread_times``)."""
    unmatched, lines = _unmatched(stats)
    matched = lines - unmatched
    return matched > 0 and 2 * stats["bad_timestamp"] > matched


def warn_unread_times(stats: Stats, idle_timeout: bool = True) -> None:
    """``train``: a warning when the time of most lines that match the format could not
    be read (``bad_timestamp``): the model then trains without elapsed times (its timing
    models learn nothing) and without an idle timeout, and said so nowhere but in a count
    (a format whose <Date> and <Time> cut the wrong words read none of 1,200 times).
    ``idle_timeout``: the sessions are id sessions, which would learn one."""
    if not mostly_unread_times(stats):
        return
    unmatched, lines = _unmatched(stats)
    bad, matched = stats["bad_timestamp"], lines - unmatched
    off = "the timing models (the time between a session's entries)"
    if idle_timeout:
        off += " and the idle timeout (sessions complete at the end of input only)"
    print(
        f"logwarden: warning: the time of {bad:,} of {matched:,} lines could not be read: "
        f"{off} are off; check that the format's time fields (<Date>, <Time>, ...) cut "
        "the time out of the lines, or try --format auto",
        file=sys.stderr,
    )


def many_went_back(stats: Stats) -> bool:
    """Whether 1% of the lines parsed or more go back in log time (``time_went_back``;
    ``warn_went_back``)."""
    _, read = _unmatched(stats)
    return read > 0 and 100 * stats["time_went_back"] >= read


def warn_went_back(stats: Stats) -> None:
    """A warning when an input starts earlier in log time than the inputs before it end
    (``input_went_back``), or when 1% of the lines or more go back in log time
    (``time_went_back``; both counted by id sessions, beyond the idle timeout or, without
    one, an hour): separate runs are read as one, their sessions of one id merge, and the
    idle timeout completes nothing while the clock waits for the later run's time (rotated
    logs globbed as app.log* come newest first: all of OpenStack's sessions flagged
    count_exceeded, and normal in the other order). The input is not reordered: the
    user knows which order is right."""
    inputs, lines = stats["input_went_back"], stats["time_went_back"]
    went = f"{lines:,} lines go back in log time further than the idle timeout (or an hour)"
    if inputs:
        files = "1 input file starts" if inputs == 1 else f"{inputs:,} input files start"
        print(
            f"logwarden: warning: {files} before the file before it ends, in log time; "
            f"{went}: read in this order, separate runs merge into sessions of one id "
            "that never go idle; give the files oldest first (rotated logs: app.log.2 "
            "app.log.1 app.log; app.log* lists them newest first)",
            file=sys.stderr,
        )
    elif many_went_back(stats):
        print(
            f"logwarden: warning: {went}: the input may hold separate runs out of order "
            "(files joined newest first?), which merge into sessions of one id",
            file=sys.stderr,
        )


def warn_unmatched(stats: Stats, fmt: str | None = None) -> None:
    """A warning when most lines do not match the log format: a wrong --format (or a
    model used on another kind of log) reads every line as a bare message, counted but
    easy to miss in a summary. ``fmt``: the format used; a format string whose literal
    text holds unescaped regex characters (``[<Time>]``) gets how to write them."""
    from logwarden.io.formats import unescaped_literals

    unmatched, lines = _unmatched(stats)
    if mostly_unmatched(stats):
        msg = (
            f"logwarden: warning: {unmatched:,} of {lines:,} lines do not match the log "
            "format: check --format (or the model's)"
        )
        odd = unescaped_literals(fmt) if fmt else None
        if odd is not None:
            chars, fixed = odd
            msg += (
                f"; the literal text of a format string is a regular expression, and "
                f"{' '.join(chars)} in it {'is' if len(chars) == 1 else 'are'} not escaped: "
                f"for literal text write \\{chars[0]}, as in --format '{fixed}'"
            )
        print(msg, file=sys.stderr)


def warn_better_format(spec: str, sample: list[str], what: str | None = None) -> None:
    """A warning when a preset fits the first lines clearly better than ``--format`` does
    (``formats.better_format``): a wrong format that still matches most lines of a
    similar log cuts them into garbage fields, and ``warn_unmatched`` says nothing.
    ``what``: how to name the format (default ``--format SPEC``)."""
    from logwarden.io.formats import better_format

    found = better_format(spec, sample)
    if found is None:
        return
    name, share, given = found
    print(
        f"logwarden: warning: {what or '--format ' + spec} fits {given:.0%} of the first "
        f"{len(sample):,} lines (matched, with a readable time), the preset {name} "
        f"{share:.0%}: is the input {name}? (--format {name}, or --format auto)",
        file=sys.stderr,
    )
