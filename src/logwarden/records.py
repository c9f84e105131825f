"""The items that flow between stages: raw lines, header-parsed records, parsed events.

Every stage of the data path (sources -> records -> templates -> sessions -> ...) takes
and yields these. They use ``__slots__`` because millions of them are created per run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Line.flags bits: what happened to a line on its way in. Set by sources, never cleared.
TRUNCATED = 1  # longer than the line limit; the tail was cut off
BAD_UTF8 = 2  # invalid UTF-8, decoded with U+FFFD replacement characters
NUL_BYTES = 4  # contained NUL bytes, which were replaced with U+FFFD


@dataclass(slots=True)
class Line:
    """One raw line as read from a source."""

    text: str  # decoded text without its line terminator (possibly truncated)
    source: str  # path of the file, or "<stdin>"
    offset: int  # byte offset of the line start in the (decompressed) stream
    lineno: int  # 1-based line number within the source
    flags: int = 0  # TRUNCATED | BAD_UTF8 | NUL_BYTES


@dataclass(slots=True)
class Record:
    """A line split into header fields and free-text content by a log format."""

    line: Line
    content: str  # the message; the whole line when the header did not match
    fields: dict[str, str]  # header fields by name (empty when the header did not match)
    timestamp: float | None  # UTC epoch seconds when the fields allow, else None
    matched: bool = True  # False: the line did not match the format (kept, counted)


@dataclass(slots=True)
class Param:
    """One variable part of a message, typed."""

    value: str
    kind: str  # one of PARAM_KINDS


PARAM_KINDS = ("int", "float", "ip", "hex", "id", "path", "text")


@dataclass(slots=True)
class Event:
    """A record reduced to its log key (template id) and parameters."""

    record: Record
    key: int  # template id, stable for the lifetime of the parser state
    template: str  # template text at the time of parsing, with <*> for parameters
    params: list[Param]


@dataclass
class Stats:
    """Counts of what was read, and what was skipped or altered and why.

    Stages add to ``counts`` under stable reason names so that the CLI can print one
    summary: nothing is lost silently.
    """

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    def __getitem__(self, reason: str) -> int:
        return self.counts.get(reason, 0)

    def merge(self, other: Stats) -> None:
        self.counts.update(other.counts)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def problems(self) -> dict[str, int]:
        """The counts that say something was skipped or altered (not plain volume, nor a
        detail of another count)."""
        return {
            k: v
            for k, v in sorted(self.counts.items())
            if k not in VOLUME_COUNTS and k not in DETAIL_COUNTS and k not in NOTED_COUNTS
        }

    def notes(self) -> dict[str, int]:
        """The counts of lines read as they are that a user should still hear of."""
        return {k: v for k, v in sorted(self.counts.items()) if k in NOTED_COUNTS and v}


# Counts of plain volume, not of anything skipped or altered.
VOLUME_COUNTS = frozenset({"lines_read", "files_read"})

# Counts of lines read as they are, but worth a word: a last line without a line break
# may be one still being written.
NOTED_COUNTS = frozenset({"no_final_newline"})

# Counts of a part of what another count counts (listed there already).
DETAIL_COUNTS = frozenset({"no_session_id_severe"})

#: Levels (a format's ``Level`` field, upper-cased) that say something went wrong: the
#: lines a user least wants left unjudged (``no_session_id_severe``).
SEVERE_LEVELS = frozenset(
    "WARN WARNING ERROR ERR FATAL SEVERE CRITICAL CRIT ALERT EMERG FAILURE".split()
)
