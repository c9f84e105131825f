"""Dataset loaders: the anomaly-detection benchmarks read into :class:`LabeledSession`.

- :func:`load_sequences`: the DeepLog split (``hdfs_train``, ``hdfs_test_abnormal``, ...),
  one session per line of space-separated log keys;
- :func:`load_jsonl`: labelled sessions, ``{"session", "label", "events": [...]}`` per line;
- :func:`load_labels`: per-session labels from CSV (loghub's ``BlockId,Label`` with
  ``Normal``/``Anomaly``, or ``session,label`` with 0/1 as ``logwarden simulate`` writes);
- :func:`load_line_labels`: per-line labels for logs without session ids, from a
  ``LineId,Label`` CSV or from the lines of a BGL-style log (first field ``-``: normal).

They stream (``iter_*`` yield one session at a time), raise :class:`DataError` with a one-line
``path:line: what`` message on malformed input, and drop nothing silently: what they skip
(blank JSONL lines, sessions outside ``label_filter``) is counted in the optional ``Stats``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from logwarden.errors import DataError
from logwarden.io.sources import STDIN_NAME
from logwarden.records import Stats

__all__ = [
    "MAX_LINE_BYTES",
    "DataError",
    "LabeledSession",
    "LineLabels",
    "iter_jsonl",
    "iter_sequences",
    "load_jsonl",
    "load_labels",
    "load_line_labels",
    "load_sequences",
    "split_in_order",
]

# Longest line the loaders accept, in bytes. Real sessions are far shorter (the longest
# HDFS session is 284 keys, about 1 KB); the bound only stops a wrong or binary file with no
# line breaks from being read into memory whole.
MAX_LINE_BYTES = 64 << 20

# Label spellings accepted in label files, compared after strip() and casefold().
_LABEL_WORDS: dict[str, int] = {
    "0": 0,
    "normal": 0,
    "1": 1,
    "anomaly": 1,  # loghub's anomaly_label.csv
    "anomalous": 1,
    "abnormal": 1,
    "false": 0,  # a boolean column as pandas writes it
    "true": 1,
}
_ID_COLUMNS = ("session", "blockid")  # label file id column names, casefolded

_T = TypeVar("_T")


@dataclass(slots=True)
class LabeledSession:
    """One session of an evaluation dataset: its id, its log keys in order, its label.

    ``label`` is 1 for anomalous, 0 for normal, None when the data does not say.
    """

    id: str
    keys: list[str]
    label: int | None = None


def _read_lines(
    path: str | os.PathLike[str], stats: Stats | None, *, stdin: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without its ``\\n`` / ``\\r\\n``) of a text file:
    UTF-8 (a byte order mark at the start is dropped), or UTF-16 when it starts with a
    UTF-16 byte order mark (Excel's "Unicode text", PowerShell's ``>``). ``stdin``: ``-``
    is standard input.

    A final line without a line break is a line; an empty file has none. Text that is not
    valid in its encoding, NUL characters and lines longer than MAX_LINE_BYTES raise
    DataError naming the line.
    """
    name, limit = os.fspath(path), MAX_LINE_BYTES
    if stdin and name == "-":
        name = STDIN_NAME
        stream: Any = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise DataError(f"{name}: standard input is not available")
        if not hasattr(stream, "peek"):  # a BytesIO put there (a test, an embedding)
            stream = io.BufferedReader(io.BytesIO(stream.read()))
        owned: Any = contextlib.nullcontext()  # left open
    else:
        try:
            stream = owned = open(path, "rb")  # noqa: SIM115 - the with below closes it; open errors get their own message
        except OSError as exc:
            raise DataError(f"{name}: cannot open: {exc.strerror or exc}") from None
    lineno = 0
    try:
        with owned:
            try:
                head = stream.peek(2)[:2]
            except OSError as exc:
                raise DataError(f"{name}:1: cannot read: {exc.strerror or exc}") from None
            if head in _UTF16_BOMS:
                stream.read(2)
                for lineno, text in _utf16_lines(stream, name, _UTF16_BOMS[head]):
                    yield lineno, text
                return
            readline = stream.readline
            while True:
                try:
                    raw = readline(limit + 1)
                except OSError as exc:
                    raise DataError(
                        f"{name}:{lineno + 1}: cannot read: {exc.strerror or exc}"
                    ) from None
                if not raw:
                    return
                lineno += 1
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                elif len(raw) > limit:
                    raise DataError(
                        f"{name}:{lineno}: line longer than {limit} bytes"
                        " (not a line-oriented text file?)"
                    )
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if b"\0" in raw:
                    raise DataError(
                        f"{name}:{lineno}: NUL byte (a binary file, or UTF-16 without a byte"
                        " order mark? save it as UTF-8)"
                    )
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{name}:{lineno}: invalid UTF-8 at byte {exc.start + 1} (save the"
                        " file as UTF-8, or UTF-16 with a byte order mark)"
                    ) from None
                if lineno == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield lineno, text
    finally:
        if stats is not None:
            stats.add("files_read")
            stats.add("lines_read", lineno)


_UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}


def _utf16_lines(stream: BinaryIO, name: str, encoding: str) -> Iterator[tuple[int, str]]:
    """``_read_lines`` for UTF-16 after its byte order mark: decoded in chunks, each line
    checked (an unpaired surrogate, an odd byte at the end: DataError naming the line)."""
    decoder = codecs.getincrementaldecoder(encoding)("surrogatepass")
    limit = MAX_LINE_BYTES // 2  # characters of two bytes
    lineno = 0
    rest = ""
    while True:
        try:
            chunk = stream.read(1 << 20)
        except OSError as exc:
            raise DataError(f"{name}:{lineno + 1}: cannot read: {exc.strerror or exc}") from None
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            raise DataError(
                f"{name}:{lineno + 1}: invalid UTF-16 (the file ends in"
                " the middle of a character: cut short?)"
            ) from None
        lines = (rest + text).split("\n")
        rest = lines.pop()
        if not chunk and rest:
            lines.append(rest)
        for line in lines:
            lineno += 1
            if line.endswith("\r"):
                line = line[:-1]
            if len(line) > limit:
                raise DataError(
                    f"{name}:{lineno}: line longer than {MAX_LINE_BYTES} bytes"
                    " (not a line-oriented text file?)"
                )
            if "\0" in line:
                raise DataError(f"{name}:{lineno}: NUL character (binary file?)")
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DataError(
                    f"{name}:{lineno}: invalid UTF-16 at character {exc.start + 1} (half of a"
                    " surrogate pair)"
                ) from None
            yield lineno, line
        if not chunk:
            return
        if len(rest) > limit:
            raise DataError(
                f"{name}:{lineno + 1}: line longer than {MAX_LINE_BYTES} bytes"
                " (not a line-oriented text file?)"
            )


def iter_sequences(
    path: str | os.PathLike[str], *, label: int | None = None, stats: Stats | None = None
) -> Iterator[LabeledSession]:
    """Stream the sessions of a DeepLog split file: one session per line, keys split on
    whitespace (so trailing spaces and CRLF do not matter).

    Session ids are ``"{file stem}:{line number}"``. Every line is a session: an empty (or
    all-blank) line is a session of no keys, and duplicates stay. ``label`` is given to
    every session (the DeepLog files hold one class each: ``hdfs_train`` and
    ``hdfs_test_normal`` are normal, ``hdfs_test_abnormal`` anomalous).
    """
    _check_label(label, "label")  # here, not in the generator: fail at the call
    return _iter_sequences(path, label, stats)


def _iter_sequences(
    path: str | os.PathLike[str], label: int | None, stats: Stats | None
) -> Iterator[LabeledSession]:
    stem = Path(path).stem
    for lineno, text in _read_lines(path, stats):
        # Interned: a few dozen distinct keys repeat millions of times in a large split
        # (hdfs_test_normal), and one shared str per key is ~10x less memory than a copy each.
        yield LabeledSession(f"{stem}:{lineno}", list(map(sys.intern, text.split())), label)


def load_sequences(
    path: str | os.PathLike[str], *, label: int | None = None, stats: Stats | None = None
) -> list[LabeledSession]:
    """All sessions of a DeepLog split file (see :func:`iter_sequences`)."""
    return list(iter_sequences(path, label=label, stats=stats))


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    label_filter: int | None = None,
    stats: Stats | None = None,
) -> Iterator[LabeledSession]:
    """Stream labelled sessions from JSON lines ``{"session", "label", "events": [...]}``.

    - ``session``: a non-empty string (an integer is taken as its decimal text);
    - ``label``: 0, 1, or null / missing (unlabelled);
    - ``events``: a list of log keys, template texts or integer key ids, kept as strings;
    - other fields are ignored.

    Every line is validated, also lines that ``label_filter`` then skips. Skipped and
    counted in ``stats``: blank lines (``blank_line``), and with ``label_filter`` set, the
    sessions whose label differs from it, unlabelled ones included (``label_filtered``).
    Sessions sharing an id are all kept, and counted (``duplicate_session_id``).
    """
    _check_label(label_filter, "label_filter")  # here, not in the generator: fail at the call
    return _iter_jsonl(path, label_filter, stats)


def _iter_jsonl(
    path: str | os.PathLike[str], label_filter: int | None, stats: Stats | None
) -> Iterator[LabeledSession]:
    name = os.fspath(path)
    seen: set[str] = set()
    for lineno, text in _read_lines(path, stats):
        if not text.strip():
            if stats is not None:
                stats.add("blank_line")
            continue
        where = f"{name}:{lineno}"
        session = _parse_jsonl_line(text, where)
        if session.id in seen:
            if stats is not None:
                stats.add("duplicate_session_id")
        else:
            seen.add(session.id)
        if label_filter is not None and session.label != label_filter:
            if stats is not None:
                stats.add("label_filtered")
            continue
        yield session


def load_jsonl(
    path: str | os.PathLike[str],
    *,
    label_filter: int | None = None,
    stats: Stats | None = None,
) -> list[LabeledSession]:
    """All labelled sessions of a JSON-lines file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path, label_filter=label_filter, stats=stats))


def _parse_jsonl_line(text: str, where: str) -> LabeledSession:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:  # json's C parser recurses per nesting level
        raise DataError(f"{where}: invalid JSON: nested too deeply") from None
    if type(obj) is not dict:
        raise DataError(f"{where}: expected a JSON object, got {_json_type(obj)}")
    sid = obj.get("session")
    if type(sid) is int:
        sid = str(sid)
    elif type(sid) is not str:
        if "session" not in obj:
            raise DataError(f'{where}: "session" is missing')
        raise DataError(f'{where}: "session" must be a string, not {_json_type(sid)}')
    if not sid:
        raise DataError(f'{where}: "session" is empty')
    label = obj.get("label")
    if label is not None and (type(label) is not int or label not in (0, 1)):
        raise DataError(f'{where}: "label" must be 0, 1 or null, not {json.dumps(label)[:40]}')
    events = obj.get("events")
    if type(events) is not list:
        if "events" not in obj:
            raise DataError(f'{where}: "events" is missing')
        raise DataError(f'{where}: "events" must be a list, not {_json_type(events)}')
    if all(type(e) is str for e in events):  # the common case: no per-event Python work
        keys = list(map(sys.intern, events))  # template texts repeat: share one str each
    else:
        keys = []
        for i, e in enumerate(events):
            if type(e) is str:
                keys.append(sys.intern(e))
            elif type(e) is int:
                keys.append(sys.intern(str(e)))
            else:
                raise DataError(
                    f'{where}: "events"[{i}] must be a string or an integer, not {_json_type(e)}'
                )
    return LabeledSession(sid, keys, label)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if type(value) in (int, float):
        return "a number"
    return names.get(type(value), type(value).__name__)


def load_labels(path: str | os.PathLike[str], *, stats: Stats | None = None) -> dict[str, int]:
    """Per-session labels from a CSV file with a header row.

    The header names an id column, ``session`` or ``BlockId``, and a ``Label`` column (names
    compared case-insensitively; other columns are allowed and ignored, e.g. the ``kind,
    detail`` that ``logwarden simulate`` writes). Labels are 0/1 or, as in loghub,
    ``Normal``/``Anomaly`` (also ``anomalous``/``abnormal``; case-insensitive).

    Raises DataError naming the line for an unknown label, a missing field, an empty id or an
    id labelled twice with different labels. Counted in ``stats``: blank lines
    (``blank_line``) and rows repeating an id with the same label (``duplicate_label``).
    """
    name = os.fspath(path)
    # The line break goes back in so that a quoted field spanning lines keeps it; strict
    # mode makes broken quoting an error instead of a silently merged field.
    reader = csv.reader((text + "\n" for _, text in _read_lines(path, stats)), strict=True)
    labels: dict[str, int] = {}
    try:
        header: list[str] | None = None
        for row in reader:
            if row:
                header = row
                break
            if stats is not None:
                stats.add("blank_line")
        if header is None:
            raise DataError(f"{name}: empty file, expected a header row (session,label)")
        columns = [h.strip().casefold() for h in header]
        id_col = next((i for i, c in enumerate(columns) if c in _ID_COLUMNS), None)
        label_col = columns.index("label") if "label" in columns else None
        if id_col is None or label_col is None:
            raise DataError(
                f"{name}:{reader.line_num}: header needs an id column (session or BlockId) and"
                f" a label column, got {','.join(header)[:120]!r}"
            )
        need = max(id_col, label_col) + 1
        for row in reader:
            if not row:
                if stats is not None:
                    stats.add("blank_line")
                continue
            where = f"{name}:{reader.line_num}"
            if len(row) < need:
                raise DataError(f"{where}: expected at least {need} fields, got {len(row)}")
            sid = row[id_col].strip()
            if not sid:
                raise DataError(f"{where}: empty session id")
            word = row[label_col].strip()
            label = _LABEL_WORDS.get(word.casefold())
            if label is None:
                raise DataError(
                    f"{where}: unknown label {word[:40]!r} (expected 0/1 or Normal/Anomaly)"
                )
            old = labels.get(sid)
            if old is None:
                labels[sid] = label
            elif old != label:
                raise DataError(f"{where}: session {sid!r} labelled {label} here, {old} before")
            elif stats is not None:
                stats.add("duplicate_label")
    except csv.Error as exc:
        raise DataError(f"{name}:{reader.line_num}: bad CSV: {exc}") from None
    return labels


LINE_LABEL_FORMATS = ("csv", "bgl")


@dataclass(frozen=True)
class LineLabels:
    """Per-line labels of a log without session ids: ``labels[i]`` is the label (0 normal,
    1 anomalous) of input line ``i + 1``, counted from 1 over all inputs, empty lines
    included; ``rows[i]`` is the line of the label file that gave it (for messages)."""

    path: str
    labels: list[int]
    rows: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def check(self, lines: int) -> None:
        """Raise DataError unless there is exactly one label per input line (``lines``)."""
        n = len(self.labels)
        if n > lines:
            raise DataError(
                f"{self.path}:{self.rows[lines]}: label for line {lines + 1}, but the input has"
                f" only {lines:,} lines (more labels than lines)"
            )
        if n < lines:
            raise DataError(
                f"{self.path}: no label for input line {n + 1} (labels cover lines 1-{n:,},"
                f" the input has {lines:,}: missing lines)"
            )


def load_line_labels(
    path: str | os.PathLike[str], *, label_format: str = "csv", stats: Stats | None = None
) -> LineLabels:
    """Per-line labels, one for every input line (see :class:`LineLabels`).

    ``csv``: a header row naming a ``LineId`` column (counted from 1 over the inputs) and a
    ``Label`` column (0/1 or Normal/Anomaly, case-insensitive; other columns are ignored,
    rows may come in any order). Every line from 1 to the largest LineId needs a label.
    ``bgl``: a log in BGL's own convention, one label per line: the first field is ``-``
    for a normal line and an alert category (anything else) for an anomalous one; read like
    raw input (gzip, invalid UTF-8 replaced), so its lines are counted as the input's are.
    Either is read as UTF-8 or, after a UTF-16 byte order mark (Excel's "Unicode text"),
    as UTF-16; ``path`` ``-`` is standard input.

    Raises DataError naming the line for an unknown label, a bad or repeated LineId with
    another label, a missing line, a line without a label field, or text not valid in its
    encoding. Counted in ``stats``:
    blank CSV lines (``blank_line``) and a LineId repeated with the same label
    (``duplicate_label``).
    """
    if label_format not in LINE_LABEL_FORMATS:
        raise DataError(
            f"unknown line label format {label_format!r} (expected {' or '.join(LINE_LABEL_FORMATS)})"
        )
    if label_format == "bgl":
        return _bgl_line_labels(path, stats)
    name = STDIN_NAME if os.fspath(path) == "-" else os.fspath(path)
    lines = _read_lines(path, stats, stdin=True)
    reader = csv.reader((text + "\n" for _, text in lines), strict=True)
    by_id: dict[int, tuple[int, int]] = {}  # LineId -> (label, file line)
    try:
        header: list[str] | None = None
        for row in reader:
            if row:
                header = row
                break
            if stats is not None:
                stats.add("blank_line")
        if header is None:
            raise DataError(f"{name}: empty file, expected a header row (LineId,Label)")
        columns = [h.strip().casefold() for h in header]
        if "lineid" not in columns or "label" not in columns:
            raise DataError(
                f"{name}:{reader.line_num}: header needs a LineId and a Label column,"
                f" got {','.join(header)[:120]!r}"
            )
        id_col, label_col = columns.index("lineid"), columns.index("label")
        need = max(id_col, label_col) + 1
        for row in reader:
            if not row:
                if stats is not None:
                    stats.add("blank_line")
                continue
            where = f"{name}:{reader.line_num}"
            if len(row) < need:
                raise DataError(f"{where}: expected at least {need} fields, got {len(row)}")
            text = row[id_col].strip()
            if not text.isascii() or not text.isdigit() or int(text) < 1:
                raise DataError(f"{where}: LineId must be a line number from 1, got {text[:40]!r}")
            line_id = int(text)
            word = row[label_col].strip()
            label = _LABEL_WORDS.get(word.casefold())
            if label is None:
                hint = (
                    "'-' and alert categories are BGL's convention, as loghub's structured "
                    "CSV copies them: give the log itself (BGL_2k.log) with "
                    "--line-label-format bgl"
                    if word == "-" or (word.isupper() and word.isalnum())
                    else "BGL logs: --line-label-format bgl"
                )
                raise DataError(
                    f"{where}: unknown label {word[:40]!r} for line {line_id} (expected 0/1 or "
                    f"Normal/Anomaly; {hint})"
                )
            old = by_id.get(line_id)
            if old is None:
                by_id[line_id] = (label, reader.line_num)
            elif old[0] != label:
                raise DataError(f"{where}: line {line_id} labelled {label} here, {old[0]} before")
            elif stats is not None:
                stats.add("duplicate_label")
    except csv.Error as exc:
        raise DataError(f"{name}:{reader.line_num}: bad CSV: {exc}") from None
    n = max(by_id, default=0)
    if len(by_id) != n:
        gap = next(i for i in range(1, n + 1) if i not in by_id)
        raise DataError(f"{name}: no label for line {gap} (LineIds go up to {n:,}: missing lines)")
    labels = [by_id[i][0] for i in range(1, n + 1)]
    rows = [by_id[i][1] for i in range(1, n + 1)]
    return LineLabels(name, labels, rows)


def _bgl_line_labels(path: str | os.PathLike[str], stats: Stats | None) -> LineLabels:
    from logwarden.io.sources import LineReader

    read = Stats()
    reader = LineReader([os.fspath(path)], stats=read)
    name = STDIN_NAME if os.fspath(path) == "-" else os.fspath(path)
    labels: list[int] = []
    for batch in reader.text_batches():
        for text in batch:
            first = text.split(None, 1)
            # An empty (or blank) line names no alert: normal. Detection reads it as a line
            # too, and the log that labels itself must label every line it has.
            labels.append(0 if not first or first[0] == "-" else 1)
    if reader.errors:
        path_, message = reader.errors[0]
        raise DataError(f"{path_}: {message}")
    if stats is not None:
        stats.merge(read)
    return LineLabels(name, labels, list(range(1, len(labels) + 1)))


def split_in_order(items: Sequence[_T], fraction: float = 0.8) -> tuple[list[_T], list[_T]]:
    """Split ``items`` in file order: the first ``floor(len * fraction)`` and the rest.

    No shuffling: for HDFS-100k this trains on the earlier sessions and tests on the later
    ones, as a deployment would. Raises ValueError unless 0 <= fraction <= 1.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    # round() first so that float noise (0.29 * 100 == 28.999...) does not lose an item.
    cut = math.floor(round(len(items) * fraction, 9))
    return list(items[:cut]), list(items[cut:])


def _check_label(label: int | None, name: str) -> None:
    if label is not None and (type(label) is not int or label not in (0, 1)):
        raise ValueError(f"{name} must be 0, 1 or None, got {label!r}")
