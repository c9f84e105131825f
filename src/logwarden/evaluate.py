"""Evaluation: metrics that measure logwarden against ground truth, and the data they need.

**Grouping accuracy** (GA) is the standard measure of log parsers on the loghub benchmark
(Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019;
``logpai/logparser``'s ``evaluator.get_accuracy``).

GA looks only at how lines are grouped, never at the template text or the ids themselves:
a line counts as correct when the predicted group it was put in holds exactly the lines of
its true group, no more and no fewer. Splitting a true group in two, or merging two true
groups into one, makes every line of the groups involved wrong.

**Dataset loaders** read the anomaly-detection benchmarks into :class:`LabeledSession`:

- :func:`load_sequences`: the DeepLog split (``hdfs_train``, ``hdfs_test_abnormal``, ...),
  one session per line of space-separated log keys;
- :func:`load_jsonl`: labelled sessions, ``{"session", "label", "events": [...]}`` per line;
- :func:`load_labels`: per-session labels from CSV (loghub's ``BlockId,Label`` with
  ``Normal``/``Anomaly``, or ``session,label`` with 0/1 as ``logwarden simulate`` writes).

They stream (``iter_*`` yield one session at a time), raise :class:`DataError` with a one-line
``path:line: what`` message on malformed input, and drop nothing silently: what they skip
(blank JSONL lines, sessions outside ``label_filter``) is counted in the optional ``Stats``.

**Detection metrics**: :func:`confusion` for plain label/prediction lists, and
:class:`Report` for detector verdicts, with the breakdowns that tell *why* sessions were
flagged (unseen key, early end, ranked out of the top g, ...), how short sessions fare, and
how many sessions are repeats of the same key sequence (the HDFS sets are full of them).

Ratios whose denominator is 0 (precision with no detections, recall with no anomalies, any
ratio of an empty set) are defined as 0.0, as scikit-learn's ``zero_division=0`` does: a
detector that flags nothing gets precision 0, not an error.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from logwarden.records import Stats

__all__ = [
    "MAX_LINE_BYTES",
    "Confusion",
    "DataError",
    "Detections",
    "LabeledSession",
    "Report",
    "SessionGroup",
    "VerdictLike",
    "confusion",
    "grouping_accuracy",
    "iter_jsonl",
    "iter_sequences",
    "load_jsonl",
    "load_labels",
    "load_sequences",
    "split_in_order",
]

_MIXED = object()  # marks a predicted group whose lines come from several true groups


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[Hashable]) -> float:
    """Fraction of lines whose predicted group equals their true group, as a set of lines.

    ``truth[i]`` and ``predicted[i]`` are the true and the predicted group label of line
    ``i``. Labels are only compared for equality within each sequence, so renaming the
    predicted labels (template ids) never changes the result.

    The result is 1.0 exactly when both sequences partition the lines the same way. For
    empty input it is 1.0: two partitions of no lines are equal, which keeps that "iff"
    true (loghub's evaluator would divide by zero there).

    Raises ValueError when the sequences differ in length.
    """
    n = len(truth)
    if len(predicted) != n:
        raise ValueError(
            f"truth and predicted differ in length: {n} lines vs {len(predicted)} labels"
        )
    if n == 0:
        return 1.0
    true_sizes = Counter(truth)
    # One pass over the predicted groups: their size, and the true label all their lines
    # share (_MIXED once two of their lines disagree).
    true_of: dict[Hashable, object] = {}
    pred_sizes: Counter[Hashable] = Counter()
    for t, p in zip(truth, predicted, strict=True):
        pred_sizes[p] += 1
        seen = true_of.setdefault(p, t)
        if seen is not _MIXED and seen != t:
            true_of[p] = _MIXED
    correct = 0
    for p, t in true_of.items():
        # A predicted group inside one true group and as large as it is that true group.
        if t is not _MIXED and pred_sizes[p] == true_sizes[t]:
            correct += pred_sizes[p]
    return correct / n


# --- dataset loaders ------------------------------------------------------------------------

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
}
_ID_COLUMNS = ("session", "blockid")  # label file id column names, casefolded

_T = TypeVar("_T")


class DataError(ValueError):
    """Malformed or unreadable dataset input; the message is one line, ``path:line: what``."""


@dataclass(slots=True)
class LabeledSession:
    """One session of an evaluation dataset: its id, its log keys in order, its label.

    ``label`` is 1 for anomalous, 0 for normal, None when the data does not say.
    """

    id: str
    keys: list[str]
    label: int | None = None


def _read_lines(path: str | os.PathLike[str], stats: Stats | None) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without its ``\\n`` / ``\\r\\n``) of a UTF-8 file.

    A final line without a line break is a line; an empty file has none. A UTF-8 byte
    order mark at the start is dropped. Invalid UTF-8, NUL bytes and lines longer than
    MAX_LINE_BYTES raise DataError naming the line.
    """
    name, limit = os.fspath(path), MAX_LINE_BYTES
    try:
        f = open(path, "rb")  # noqa: SIM115 - the with below closes it; open errors get their own message
    except OSError as exc:
        raise DataError(f"{name}: cannot open: {exc.strerror or exc}") from None
    lineno = 0
    try:
        with f:
            readline = f.readline
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
                    raise DataError(f"{name}:{lineno}: NUL byte (binary file?)")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{name}:{lineno}: invalid UTF-8 at byte {exc.start + 1}"
                    ) from None
                if lineno == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield lineno, text
    finally:
        if stats is not None:
            stats.add("files_read")
            stats.add("lines_read", lineno)


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


# --- detection metrics ----------------------------------------------------------------------


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0  # 0/0 := 0.0 (see the module docstring)


@dataclass(frozen=True, slots=True)
class Confusion:
    """Confusion counts of a binary detection; anomalous (label 1) is the positive class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        # Equal to 2PR / (P + R), without its rounding, and 0.0 when tp == 0.
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.total)

    def as_dict(self) -> dict[str, int | float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
        }


def confusion(labels: Sequence[int], predicted: Sequence[bool | int]) -> dict[str, int | float]:
    """tp, fp, fn, tn, precision, recall, f1 and accuracy of ``predicted`` against ``labels``.

    ``labels[i]`` is 1 (anomalous) or 0 (normal); ``predicted[i]`` is True/1 when session
    ``i`` was flagged. Ratios with a zero denominator are 0.0. Raises ValueError when the
    lengths differ or a value is not 0/1.
    """
    if len(labels) != len(predicted):
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predictions")
    # Counter over pairs runs in C; True == 1 and hash alike, so bools and ints merge.
    pairs = Counter(zip(labels, predicted, strict=True))
    for y, p in pairs:
        if y not in (0, 1):
            raise ValueError(f"labels must be 0 or 1, got {y!r}")
        if p not in (0, 1):
            raise ValueError(f"predictions must be True/False or 0/1, got {p!r}")
    return Confusion(
        tp=pairs[(1, 1)], fp=pairs[(0, 1)], fn=pairs[(1, 0)], tn=pairs[(0, 0)]
    ).as_dict()


class VerdictLike(Protocol):
    """What a report needs from a detector verdict (``logwarden.detect.Verdict``)."""

    @property
    def session(self) -> str: ...
    @property
    def anomalous(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...  # None when normal
    @property
    def length(self) -> int: ...  # number of log keys in the session
    @property
    def detector(self) -> str | None: ...  # None when normal


@dataclass(frozen=True, slots=True)
class Detections:
    """Labelled sessions flagged for one reason or by one detector: true and false positives."""

    tp: int = 0
    fp: int = 0


@dataclass(frozen=True, slots=True)
class SessionGroup:
    """The sessions of one label class (normal, abnormal or unlabelled) in a report.

    ``distinct`` and ``ambiguous`` are None when the report was built without key sequences.
    """

    sessions: int = 0
    detected: int = 0
    distinct: int | None = None  # distinct key sequences
    ambiguous: int | None = None  # sessions whose key sequence also occurs with the other label

    @property
    def duplicates(self) -> int | None:
        """Sessions that repeat the key sequence of an earlier session of the group."""
        return None if self.distinct is None else self.sessions - self.distinct

    def as_dict(self) -> dict[str, int | None]:
        return {
            "sessions": self.sessions,
            "detected": self.detected,
            "distinct": self.distinct,
            "duplicates": self.duplicates,
            "ambiguous": self.ambiguous,
        }


# Reasons and detectors of the verdict contract: always listed in a report (zeros
# included) so that consumers of ``eval --json`` can index them; others are added as seen.
_REASONS = ("unseen_key", "early_end", "ranked_out", "performance", "parameter")
_DETECTORS = ("keys", "params")
_UNSPECIFIED = "unspecified"  # an anomalous verdict that names no reason / detector


@dataclass(frozen=True)
class Report:
    """Evaluation of detector verdicts against labels; build with :meth:`from_verdicts`.

    Every session counts, duplicates included. Sessions without a label are counted in
    ``unlabelled`` and kept out of every confusion figure and detection breakdown.
    """

    window: int  # h: sessions of at most h keys are "short"
    confusion: Confusion
    by_reason: dict[str, Detections]
    by_detector: dict[str, Detections]
    short: Confusion  # sessions of length <= window
    long: Confusion  # sessions of length > window
    normal: SessionGroup
    abnormal: SessionGroup
    unlabelled: SessionGroup
    ambiguous_sequences: int | None  # distinct key sequences seen with both labels

    @classmethod
    def from_verdicts(
        cls,
        verdicts: Iterable[VerdictLike],
        labels: Mapping[str, int | None] | Sequence[int | None],
        window: int,
        *,
        keys: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None = None,
    ) -> Report:
        """Count ``verdicts`` against ``labels``.

        ``labels`` maps session ids to 0/1 (ids not in it are unlabelled), or lists the
        labels in verdict order (None: unlabelled; the lengths must match). ``window`` is h,
        the bound of the short-session bucket. ``keys``, by session id or in verdict order,
        gives each session's key sequence for the duplicate and ambiguity counts; without it
        those counts are None.

        Raises ValueError for a label other than 0/1/None, mismatched lengths, a window below
        1 or a session missing from ``keys``.
        """
        if type(window) is not int or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        # A str is a Sequence too; taking its characters as labels or keys would be silent
        # nonsense. Other sequences (lists, numpy arrays) only need len() and indexing.
        if isinstance(labels, str | bytes) or isinstance(keys, str | bytes):
            raise TypeError("labels and keys must be mappings by session id, or sequences")
        label_map = labels if isinstance(labels, Mapping) else None
        key_map = keys if isinstance(keys, Mapping) else None

        # (label, flagged, short) -> sessions; label is 0, 1 or None.
        cells: Counter[tuple[int | None, bool, bool]] = Counter()
        reasons: Counter[tuple[str, int]] = Counter()  # (reason, label) of flagged sessions
        detectors: Counter[tuple[str, int]] = Counter()
        seqs: dict[int | None, Counter[tuple[str, ...]]] = {
            0: Counter(),
            1: Counter(),
            None: Counter(),
        }
        n = 0
        for n, v in enumerate(verdicts, 1):
            sid = v.session
            if label_map is not None:
                y = label_map.get(sid)
            elif n <= len(labels):
                y = labels[n - 1]  # type: ignore[index]
            else:
                raise ValueError(f"more verdicts than labels ({len(labels)})")
            if y is not None:
                if y not in (0, 1):
                    raise ValueError(f"label of session {sid!r} must be 0, 1 or None, got {y!r}")
                y = int(y)  # bools and numpy integers become plain 0 / 1 keys
            flagged = bool(v.anomalous)
            cells[(y, flagged, v.length <= window)] += 1
            if flagged and y is not None:
                reasons[(v.reason or _UNSPECIFIED, y)] += 1
                detectors[(v.detector or _UNSPECIFIED, y)] += 1
            if keys is not None:
                if key_map is not None:
                    if sid not in key_map:
                        raise ValueError(f"no key sequence for session {sid!r}")
                    seq = key_map[sid]
                elif n <= len(keys):
                    seq = keys[n - 1]  # type: ignore[index]
                else:
                    raise ValueError(f"more verdicts than key sequences ({len(keys)})")
                if isinstance(seq, str):
                    raise TypeError(f"keys of session {sid!r} must be a list of keys, not a str")
                seqs[y][tuple(seq)] += 1
        if label_map is None and n != len(labels):
            raise ValueError(f"{n} verdicts but {len(labels)} labels")
        if keys is not None and key_map is None and n != len(keys):
            raise ValueError(f"{n} verdicts but {len(keys)} key sequences")

        def conf(short: bool | None) -> Confusion:
            def c(y: int, flagged: bool) -> int:
                if short is None:
                    return cells[(y, flagged, True)] + cells[(y, flagged, False)]
                return cells[(y, flagged, short)]

            return Confusion(tp=c(1, True), fp=c(0, True), fn=c(1, False), tn=c(0, False))

        def breakdown(
            counts: Counter[tuple[str, int]], known: tuple[str, ...]
        ) -> dict[str, Detections]:
            names = list(known) + sorted({name for name, _ in counts} - set(known))
            return {k: Detections(tp=counts[(k, 1)], fp=counts[(k, 0)]) for k in names}

        def group(y: int | None, other: int | None) -> SessionGroup:
            sessions = sum(cells[(y, f, s)] for f in (True, False) for s in (True, False))
            detected = cells[(y, True, True)] + cells[(y, True, False)]
            if keys is None:
                return SessionGroup(sessions, detected)
            ambiguous = None
            if other is not None:
                ambiguous = sum(k for seq, k in seqs[y].items() if seq in seqs[other])
            return SessionGroup(sessions, detected, len(seqs[y]), ambiguous)

        return cls(
            window=window,
            confusion=conf(None),
            by_reason=breakdown(reasons, _REASONS),
            by_detector=breakdown(detectors, _DETECTORS),
            short=conf(True),
            long=conf(False),
            normal=group(0, 1),
            abnormal=group(1, 0),
            unlabelled=group(None, None),
            ambiguous_sequences=None if keys is None else len(seqs[0].keys() & seqs[1].keys()),
        )

    @property
    def sessions(self) -> int:
        """All sessions reported on, unlabelled ones included."""
        return self.normal.sessions + self.abnormal.sessions + self.unlabelled.sessions

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: tp, fp, fn, tn, precision, recall, f1, accuracy, then the rest."""
        h = self.window
        return {
            **self.confusion.as_dict(),
            "window": h,
            "breakdown": {
                "reason": {k: {"tp": d.tp, "fp": d.fp} for k, d in self.by_reason.items()},
                "detector": {k: {"tp": d.tp, "fp": d.fp} for k, d in self.by_detector.items()},
                "length": {f"<={h}": self.short.as_dict(), f">{h}": self.long.as_dict()},
            },
            "sessions": {
                "total": self.sessions,
                "normal": self.normal.as_dict(),
                "abnormal": self.abnormal.as_dict(),
                "unlabelled": self.unlabelled.as_dict(),
                "ambiguous_sequences": self.ambiguous_sequences,
            },
        }

    def summary(self) -> str:
        """A readable multi-line summary for the terminal."""
        c, h = self.confusion, self.window

        def group(name: str, g: SessionGroup) -> str:
            extra = "" if g.distinct is None else f", {g.distinct:,} distinct key sequences"
            return f"  {name:<11}{g.sessions:>10,} sessions, {g.detected:,} flagged{extra}"

        out = [
            f"sessions {self.sessions:,}",
            group("normal", self.normal),
            group("abnormal", self.abnormal),
        ]
        if self.unlabelled.sessions:
            out.append(group("unlabelled", self.unlabelled) + " (not in the figures below)")
        if self.ambiguous_sequences:
            out.append(
                f"  ambiguous: {self.ambiguous_sequences:,} key sequences occur in both classes"
                f" ({self.abnormal.ambiguous:,} abnormal, {self.normal.ambiguous:,} normal"
                " sessions); a key model cannot tell those apart"
            )
        out += [
            f"tp {c.tp:,}  fp {c.fp:,}  fn {c.fn:,}  tn {c.tn:,}",
            f"precision {c.precision:.4f}  recall {c.recall:.4f}  f1 {c.f1:.4f}"
            f"  accuracy {c.accuracy:.4f}",
        ]
        for title, cells in (("reason", self.by_reason), ("detector", self.by_detector)):
            rows = [(k, d) for k, d in cells.items() if d.tp or d.fp]
            if rows:
                out.append(f"{'flagged by ' + title:<22}{'tp':>10}{'fp':>10}")
                out += [f"  {k:<20}{d.tp:>10,}{d.fp:>10,}" for k, d in rows]
        head = f"by length (h={h})"
        out.append(f"{head:<22}{'tp':>10}{'fp':>10}{'fn':>10}{'tn':>10}{'recall':>10}")
        for name, b in ((f"<= {h}", self.short), (f"> {h}", self.long)):
            out.append(f"  {name:<20}{b.tp:>10,}{b.fp:>10,}{b.fn:>10,}{b.tn:>10,}{b.recall:>10.4f}")
        return "\n".join(out)
