"""Evaluation metrics: logwarden measured against ground truth.

**Grouping accuracy** (GA) is the standard measure of log parsers on the loghub benchmark
(Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019;
``logpai/logparser``'s ``evaluator.get_accuracy``).

GA looks only at how lines are grouped, never at the template text or the ids themselves:
a line counts as correct when the predicted group it was put in holds exactly the lines of
its true group, no more and no fewer. Splitting a true group in two, or merging two true
groups into one, makes every line of the groups involved wrong.

**Detection metrics**: :func:`confusion` for plain label/prediction lists, and
:class:`Report` for detector verdicts, with the breakdowns that tell *why* sessions were
flagged (unseen key, early end, ranked out of the top g, ...), how short sessions fare, and
how many sessions are repeats of the same key sequence (the HDFS sets are full of them).

Ratios whose denominator is 0 (precision with no detections, recall with no anomalies, any
ratio of an empty set) are defined as 0.0, as scikit-learn's ``zero_division=0`` does: a
detector that flags nothing gets precision 0, not an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Confusion",
    "Detections",
    "LineReport",
    "Report",
    "SessionGroup",
    "VerdictLike",
    "confusion",
    "grouping_accuracy",
]

_MIXED = object()  # marks a predicted group whose lines come from several true groups

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


@dataclass(frozen=True)
class LineReport:
    """Per-line evaluation of a detector on a log without session ids.

    Every input line ``t`` gets the verdict of the window of the last ``window`` entries
    ending at it. ``lines`` compares it with line ``t``'s own label; ``windows`` with the
    window's label (anomalous when any line in it is). ``flag_all_*``: the same figures for
    the trivial rule that flags every line, the floor a detector has to clear.
    """

    window: int
    lines: Confusion
    windows: Confusion

    @classmethod
    def from_flags(
        cls,
        flags: Sequence[bool | int],
        labels: Sequence[int],
        window_labels: Sequence[int],
        window: int,
    ) -> LineReport:
        """Count per-line verdicts ``flags`` against per-line ``labels`` and the labels of
        the windows ending at each line (all three in input line order)."""
        if not len(flags) == len(labels) == len(window_labels):
            raise ValueError(
                f"{len(flags)} verdicts, {len(labels)} line labels and"
                f" {len(window_labels)} window labels: one each per line"
            )
        line = confusion(list(labels), list(flags))
        win = confusion(list(window_labels), list(flags))
        keys = ("tp", "fp", "fn", "tn")
        return cls(
            window,
            Confusion(*(int(line[k]) for k in keys)),
            Confusion(*(int(win[k]) for k in keys)),
        )

    @staticmethod
    def _flag_all(c: Confusion) -> Confusion:
        positives = c.tp + c.fn
        return Confusion(tp=positives, fp=c.total - positives)

    def as_dict(self) -> dict[str, object]:
        return {
            "window": self.window,
            "lines": self.lines.as_dict(),
            "windows": self.windows.as_dict(),
            "flag_all": {
                "lines": self._flag_all(self.lines).as_dict(),
                "windows": self._flag_all(self.windows).as_dict(),
            },
        }

    def summary(self) -> str:
        out = [
            f"{self.lines.total:,} lines, each judged by the window of its last {self.window} entries"
        ]
        for name, c in (("lines", self.lines), ("windows", self.windows)):
            base = self._flag_all(c)
            out.append(
                f"  {name:<8} tp {c.tp:,}  fp {c.fp:,}  fn {c.fn:,}  tn {c.tn:,}  precision"
                f" {c.precision:.4f}  recall {c.recall:.4f}  f1 {c.f1:.4f}"
                f"  (flagging everything: f1 {base.f1:.4f})"
            )
        return "\n".join(out)
