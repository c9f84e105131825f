"""The loghub-style structured CSV sink, with a fast path for bulk parsing.

A structured CSV row holds LineId, the header fields, Content, EventId, EventTemplate and
ParameterList. Producing it line by line in Python costs several microseconds; most of
that goes away because of one observation: two lines with the same *shape* (the text with
every digit replaced by ``0``) have the same length, the same separators and the same
non-digit characters. The format regex therefore splits them at the same offsets, the
miner gives them the same template with parameters at the same offsets, and CSV quoting
(which depends on commas and quotes, never on digits) is the same. So the first line of
each shape goes through the full path (format regex, template miner, csv module), and
the result is kept as a *plan*: an ``itemgetter`` of slices that cuts any line of that
shape into its fields, and a ``%`` format that turns the pieces into the CSV row. The
plan is checked against the full path on the line that made it; a shape whose row the
plan cannot reproduce (quotes to double, characters ``repr`` escapes) stays on the full
path. The rest of a batch is C-level ``map`` calls: no Python code runs per line.
Timestamps are checked the same way: a shape's time fields are cut by an ``itemgetter``,
and each distinct time text of a batch is read once (``bad_timestamp`` counts the lines
whose time the format cannot read, or reads out of range, as ``detect`` counts them).

The fast path is off when it could differ from the full path: user masks (regexes that
may treat digits differently), format regexes that name digits literally, JSON input,
and ``with_source`` (offsets differ per line).
"""

from __future__ import annotations

import csv
import io
import operator
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from logwarden.io.formats import JsonFormat, LogFormat
from logwarden.parsing.miner import Slot, TemplateMiner
from logwarden.records import Line, Stats
from logwarden.sessions.grouping import TIMESTAMP_LIMIT

_SHAPE = str.maketrans("123456789", "000000000")
_TOKEN = re.compile(r"\S+")
_NEEDS_QUOTE = re.compile(r'[,"\r\n]')
_PLAN_CACHE_MAX = 100_000


def _csv_field(value: str) -> str:
    """A constant CSV field, quoted as the csv module's QUOTE_MINIMAL would."""
    if _NEEDS_QUOTE.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


class StructuredCsv:
    """Writes parsed lines as loghub-style structured CSV rows to ``out``."""

    def __init__(
        self,
        fmt: LogFormat,
        miner: TemplateMiner,
        out: TextIO,
        *,
        learn: bool = True,
        with_source: bool = False,
        stats: Stats | None = None,
    ) -> None:
        self.fmt = fmt
        self.miner = miner
        self.out = out
        self.learn = learn
        self.with_source = with_source
        self.stats = stats if stats is not None else Stats()
        self.header = list(fmt.header_fields)
        self._tail = ["Content", "EventId", "EventTemplate", "ParameterList"]
        if with_source:
            self._tail += ["Source", "LineNo", "Offset"]
        self.columns = ["LineId", *self.header, *self._tail]
        # JSON lines name their header fields themselves: each new one is a column from
        # the line that brings it; rows before it are narrower (``widen_file``). A field
        # named like one of the fixed columns is left out.
        self.grow = isinstance(fmt, JsonFormat)
        self._known = {*self.columns}
        self.header_written = list(self.columns)  # the header row at the top of ``out``
        self.narrow_rows = 0  # rows up to this LineId have fewer fields than ``header``
        self.lines = 0  # lines seen (LineId of the last one)
        self.rows = 0  # rows written
        self._writer = csv.writer(out, lineterminator="\n")
        self._buf = io.StringIO()
        # "\r\n" as terminator so that fields holding CR or LF get quoted (csv quotes only the
        # terminator's characters); it is stripped from each row, which ends in "\n".
        self._buf_writer = csv.writer(self._buf, lineterminator="\r\n")
        # The bulk path counts a batch's lines per template at its end; a miner that evicts
        # the least recently used template must see each line's use as it comes (else it
        # evicted the template of every other line, and lost the batch's counts of it).
        self.fast = not (
            isinstance(fmt, JsonFormat)
            or with_source
            or miner.config.masks
            or miner.config.max_templates is not None
            or re.search(r"(?<!\\)\d", fmt.regex.pattern.replace(r"\d", ""))
        )
        self._cut: dict[str, Any] = {}  # shape -> itemgetter over the line
        self._fmt: dict[str, str] = {}  # shape -> % format of the row (without LineId)
        self._key: dict[str, int | None] = {}  # shape -> template id, for counts
        self._unmatched: set[str] = set()  # shapes whose header does not match the format
        self._slow: set[str] = set()  # shapes that take the full path every time
        # shape -> its time fields' texts (see _time_cut), for the bad_timestamp count
        self._time_cut: dict[str, Callable[[str], Any]] = {}
        self._time_fields = fmt.time_fields  # the fields the cuts cut
        self._changes = miner.changes_
        # Rows up to this LineId may name an id or text that a later merge or generalisation
        # made stale; finalise_rows brings them up to date (rows after it are final).
        self.stale_rows = 0
        self._seen_changes = miner.changes_
        self._writer.writerow(self.columns)

    # -- bulk path -------------------------------------------------------------------------

    def _note_changes(self) -> None:
        if self.miner.changes_ != self._seen_changes:
            self.stale_rows = self.lines
            self._seen_changes = self.miner.changes_

    def write_texts(self, texts: list[str]) -> None:
        """Parse and write a batch of line texts (no terminators)."""
        try:
            self._write_texts(texts)
        finally:
            self._note_changes()

    def _write_texts(self, texts: list[str]) -> None:
        if not self.fast:
            for text in texts:
                self.lines += 1
                self._write_full(text, None)
            return
        if self.miner.changes_ != self._changes:
            # Templates merged or generalised: plans may name stale ids or parameter slots.
            self._clear_plans()
        shapes = "\n".join(texts).translate(_SHAPE).split("\n")
        if len(shapes) != len(texts):  # a text held a newline: cannot happen from sources
            for text in texts:
                self.lines += 1
                self._write_full(text, None)
            return
        cuts = self._cut
        missing = set(shapes).difference(cuts, self._slow)
        miner = self.miner
        base = miner.clock
        if missing:
            first = dict(zip(reversed(shapes), range(len(shapes) - 1, -1, -1), strict=True))
            for shape in sorted(missing, key=first.__getitem__):
                # The miner's clock is the line's number: templates know when they appeared.
                miner.advance(base + first[shape] - miner.clock)
                self._make_plan(texts[first[shape]], shape)
        miner.advance(base + len(texts) - miner.clock)
        start = self.lines + 1
        self.lines += len(texts)
        if self._slow.isdisjoint(shapes):
            rows = map(
                str.__mod__,
                map(self._fmt.__getitem__, shapes),
                map(operator.call, map(cuts.__getitem__, shapes), texts),
            )
            self.out.write(
                "".join(
                    map("%d,%s\n".__mod__, zip(range(start, self.lines + 1), rows, strict=False))
                )
            )
            self.rows += len(texts)
        else:
            for i, (text, shape) in enumerate(zip(texts, shapes, strict=True), start):
                if shape in self._slow:
                    self._write_full(text, i)
                else:
                    self.out.write(f"{i},{self._fmt[shape] % cuts[shape](text)}\n")
                    self.rows += 1
        self._count(shapes)
        if self.fmt.time_fields:
            self._count_bad_times(texts, shapes)

    def _count_bad_times(self, texts: list[str], shapes: list[str]) -> None:
        """Count the batch's lines whose time the format cannot read (or reads out of
        range) as ``bad_timestamp``, as reading them into sessions does: each distinct
        time text once. Lines of slow shapes were counted by the full path; lines that
        do not match the format have no time to read."""
        fmt = self.fmt
        if fmt.time_fields is not self._time_fields:  # another choice of fields (BGL)
            self._time_cut.clear()
            self._time_fields = fmt.time_fields
        cut_of = self._time_cut
        new = set(shapes).difference(cut_of)
        if new:
            for shape, text in dict(zip(shapes, texts, strict=True)).items():
                if shape in new:
                    cut_of[shape] = self._make_time_cut(text, shape)
        parse = fmt.parse_time
        bad = 0
        example: dict[Any, str] | None = None
        counts = Counter(map(operator.call, map(cut_of.__getitem__, shapes), texts))
        for stamp, n in counts.items():
            if stamp is None:
                continue
            text = stamp if isinstance(stamp, str) else " ".join(stamp[1:])
            ts = parse(text) if text else None
            if ts is None:
                # The format's own reading, which may try other fields (BGL) and counts.
                if example is None:
                    stamps = map(operator.call, map(cut_of.__getitem__, shapes), texts)
                    example = dict(zip(stamps, texts, strict=True))
                m = fmt.regex.fullmatch(example[stamp].strip())
                if m is not None:
                    fields = {k: v for k, v in m.groupdict().items() if v is not None}
                    fields.pop("Content", None)
                    ts = fmt.timestamp(fields)
            if ts is None or not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT:
                bad += n
        if bad:
            self.stats.add("bad_timestamp", bad)

    def _make_time_cut(self, text: str, shape: str) -> Callable[[str], Any]:
        """What cuts the time text out of a line of ``shape``: one slice when its time
        fields stand one space apart (the usual header: the slice is the text the format
        reads), else a tuple of the fields that starts with an empty piece; or gives None
        for a shape without a time to read here."""
        if shape in self._slow or shape in self._unmatched or not text:
            return _no_time
        stripped = text.strip()
        m = self.fmt.regex.fullmatch(stripped)
        if m is None:
            return _no_time
        lead = len(text) - len(text.lstrip())
        pieces = [slice(0, 0)]  # a tuple even for one field
        for name in self.fmt.time_fields:
            a, b = m.span(name)
            if a >= 0:
                pieces.append(slice(a + lead, b + lead))
        if len(pieces) == 1:  # no time field in the line: an empty time, as the format reads it
            pieces.append(slice(0, 0))
        whole = slice(pieces[1].start, pieces[-1].stop)
        if text[whole] == " ".join(text[p] for p in pieces[1:]):
            # The same for every line of the shape: the separators are the same characters.
            return operator.itemgetter(whole)
        return operator.itemgetter(*pieces)

    def _count(self, shapes: list[str]) -> None:
        """Template counts and skip counts for a batch, from its shape histogram."""
        templates = self.miner.templates_
        for shape, n in Counter(shapes).items():
            if shape in self._slow:
                continue  # the full path counted these itself
            key = self._key.get(shape)
            if shape in self._unmatched:
                self.stats.add("unmatched_format", n)
            if key is None:
                self.stats.add("no_template", n)
                continue
            tpl = templates.get(self.miner.resolve(key))
            if tpl is not None and self.learn:
                tpl.count += n
                tpl.last_seen = self.miner.clock

    def _clear_plans(self) -> None:
        self._cut.clear()
        self._time_cut.clear()
        self._fmt.clear()
        self._key.clear()
        self._unmatched.clear()
        self._slow.clear()
        self._changes = self.miner.changes_

    def _make_plan(self, text: str, shape: str) -> None:
        """Build the plan for ``shape`` from one of its lines, or mark it slow."""
        if len(self._cut) >= _PLAN_CACHE_MAX:
            self._clear_plans()
        plan = self._build(text) if text else None  # empty lines are counted, not written
        if plan is None:
            self._slow.add(shape)
            return
        cut, fmt, key, matched = plan
        self._cut[shape] = cut
        self._fmt[shape] = fmt
        self._key[shape] = key
        if not matched:
            self._unmatched.add(shape)

    def _build(self, text: str) -> tuple[Any, str, int | None, bool] | None:
        stripped = text.strip()
        lead = len(text) - len(text.lstrip())
        m = self.fmt.regex.fullmatch(stripped)
        spans: list[tuple[int, int] | None] = []
        if m is None:
            matched = False
            spans = [None] * len(self.header)
            c0, c1 = 0, len(text)
        else:
            matched = True
            for name in self.header:
                a, b = m.span(name)
                spans.append(None if a < 0 else (a + lead, b + lead))
            a, b = m.span("Content")
            c0, c1 = (a + lead, b + lead) if a >= 0 else (0, 0)
        content = text[c0:c1]
        miner = self.miner
        key, values, slots, template = miner.parse_text(content, self.learn)
        if key is not None and self.learn:
            miner.templates_[key].count -= 1  # counted with the batch, from the histogram
        # The row as the full path writes it: the reference the plan must reproduce.
        fields = [stripped[s[0] - lead : s[1] - lead] if s else "" for s in spans]
        full = self._row_text(fields, content, key, template, values)
        pieces: list[slice] = []
        out: list[str] = []
        for s, value in zip(spans, fields, strict=True):
            if s is None:
                out.append("")
                continue
            if '"' in value:
                return None
            pieces.append(slice(*s))
            out.append('"%s"' if _NEEDS_QUOTE.search(value) else "%s")
        if '"' in content:
            return None
        pieces.append(slice(c0, c1))
        out.append('"%s"' if _NEEDS_QUOTE.search(content) else "%s")
        out.append(f"E{key}" if key is not None else "")
        out.append(_csv_field(template).replace("%", "%%"))
        param_spans = _param_spans(content, values, slots)
        if param_spans is None:
            return None
        items = []
        for v, (a, b) in zip(values, param_spans, strict=True):
            if not v.isprintable() or any(c in v for c in "'\"\\"):
                return None  # repr() would escape or change quotes
            pieces.append(slice(c0 + a, c0 + b))
            items.append("'%s'")
        plist = "[" + ", ".join(items) + "]"
        quoted = len(values) > 1 or any("," in v for v in values)
        out.append(f'"{plist}"' if quoted else plist)
        fmt = ",".join(out)
        if len(pieces) == 1:
            pieces.insert(0, slice(0, 0))
            fmt = "%.0s" + fmt  # itemgetter of one item returns it bare: pad to a tuple
        cut = operator.itemgetter(*pieces)
        if fmt % cut(text) != full:
            return None  # the plan does not reproduce the full path on its own line
        return cut, fmt, key, matched

    # -- full path -------------------------------------------------------------------------

    def write_lines(self, lines: Iterable[Line]) -> None:
        """Parse and write Lines (keeps source and offset columns when asked)."""
        for line in lines:
            self.lines += 1
            self._write_full(line.text, None, line)
            self._note_changes()

    def _write_full(self, text: str, line_id: int | None, line: Line | None = None) -> None:
        if not text:
            self.stats.add("empty_line")
            return
        before = self.fmt.bad_timestamps
        rec = self.fmt.parse(line or Line(text, "", 0, 0))
        if not rec.matched:
            self.stats.add("unmatched_format")
        if self.grow and not self._known.issuperset(rec.fields):
            new = [k for k in rec.fields if k not in self._known]
            self._known.update(new)
            self.header += new
            self.columns = ["LineId", *self.header, *self._tail]
            self.narrow_rows = self.lines - 1
        ts = rec.timestamp
        if self.fmt.bad_timestamps != before or (
            ts is not None and not -TIMESTAMP_LIMIT < ts < TIMESTAMP_LIMIT
        ):
            self.stats.add("bad_timestamp")
        key, values, _, template = self.miner.parse_text(rec.content, self.learn)
        if key is None:
            self.stats.add("no_template")
        fields = [rec.fields.get(h, "") or "" for h in self.header]
        row = self._row_text(fields, rec.content, key, template, values)
        line_id = line_id if line_id is not None else self.lines
        extra = ""
        if self.with_source and line is not None:
            extra = "," + self._csv_row([line.source, line.lineno, line.offset])
        self.out.write(f"{line_id},{row}{extra}\n")
        self.rows += 1

    def _row_text(
        self, fields: list[str], content: str, key: int | None, template: str, values: list[str]
    ) -> str:
        return self._csv_row(
            [*fields, content, f"E{key}" if key is not None else "", template, str(values)]
        )

    def _csv_row(self, row: list[Any]) -> str:
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._buf_writer.writerow(row)
        return buf.getvalue()[:-2]


def widen_file(path: Path, columns: list[str], fields: int, upto: int) -> None:
    """Rewrite a structured CSV file in place whose header fields grew while it was written
    (``StructuredCsv.grow``: JSON lines): the header row becomes ``columns`` (``fields`` of
    them header fields) and each row up to LineId ``upto`` gets empty values for the fields
    that came after it; the rows after it are copied as they are."""
    tail = len(columns) - 1 - fields
    wide_path = path.with_name(path.name + ".wide")
    with (
        path.open(newline="", encoding="utf-8") as src,
        wide_path.open("w", newline="", encoding="utf-8") as dst,
    ):
        r = csv.reader(iter(src.readline, ""))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")  # as in StructuredCsv: CR, LF quoted

        def writerow(row: list[str]) -> None:
            buf.seek(0)
            buf.truncate()
            w.writerow(row)
            dst.write(buf.getvalue()[:-2] + "\n")

        if next(r, None) is None:
            return
        writerow(columns)
        if upto > 0:
            for row in r:
                have = len(row) - 1 - tail
                writerow(row[: 1 + have] + [""] * (fields - have) + row[1 + have :])
                if row[0].isdigit() and int(row[0]) >= upto:
                    break
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(wide_path, path)


def _no_time(text: str) -> None:
    return None


def finalise_rows(
    src: TextIO, dst: TextIO, miner: TemplateMiner, id_col: int, upto: int | None = None
) -> int:
    """Copy structured CSV rows from ``src`` to ``dst``, bringing up to date the rows whose
    template changed after they were written (merged, generalised, or its text widened):
    their content is matched again, so id, template text and parameters are the final ones.
    Both paths of :class:`StructuredCsv` give the same rows once finalised. ``upto``: the
    sink's ``stale_rows``; rows after that LineId are copied as they are. Returns the
    number of rows rewritten."""
    fixed, done = _finalise(iter(src.readline, ""), dst.write, miner, id_col, upto)
    if done:
        shutil.copyfileobj(src, dst, 1 << 20)  # the rest is final: copied as it is
    return fixed


def finalise_file(path: Path, miner: TemplateMiner, id_col: int, upto: int | None = None) -> int:
    """``finalise_rows`` on a structured CSV file, in place; the final rows after ``upto``
    are copied as bytes, without decoding them."""
    fixed_path = path.with_name(path.name + ".final")
    with path.open("rb") as src, fixed_path.open("wb") as dst:
        lines = (line.decode("utf-8") for line in iter(src.readline, b""))

        def write(text: str) -> None:
            dst.write(text.encode("utf-8"))

        fixed, done = _finalise(lines, write, miner, id_col, upto)
        if done:
            shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(fixed_path, path)
    return fixed


def _finalise(
    lines: Iterator[str],
    write: Callable[[str], Any],
    miner: TemplateMiner,
    id_col: int,
    upto: int | None,
) -> tuple[int, bool]:
    """The rows of ``lines`` up to LineId ``upto`` (all without it), brought up to date and
    written; (rows rewritten, whether it stopped at ``upto`` with lines left unread)."""
    # csv.reader takes the lines one at a time: after a row, the source is at the next one.
    r = csv.reader(lines)
    buf = io.StringIO()
    # As in StructuredCsv: "\r\n" makes the csv module quote fields holding CR or LF.
    w = csv.writer(buf, lineterminator="\r\n")

    def writerow(row: list[str]) -> None:
        buf.seek(0)
        buf.truncate()
        w.writerow(row)
        write(buf.getvalue()[:-2] + "\n")

    header = next(r, None)
    if header is None:
        return 0, False
    writerow(header)
    changed = miner.changed_ids_
    fixed = 0
    for row in r:
        if len(row) > id_col + 2 and row[id_col][1:].isdigit() and int(row[id_col][1:]) in changed:
            # Match the content again: the final template may have more parameters.
            result = miner.match(row[id_col - 1])
            if result is not None:
                row[id_col] = f"E{result.key}"
                row[id_col + 1] = result.template
                row[id_col + 2] = str([p.value for p in result.params])
                fixed += 1
        writerow(row)
        if upto is not None and row[0].isdigit() and int(row[0]) >= upto:
            return fixed, True
    return fixed, False


def _param_spans(
    content: str, values: list[str], slots: list[Slot]
) -> list[tuple[int, int]] | None:
    """Character spans of the parameters in ``content``; None if they are not plain slices."""
    if not values:
        return []
    toks = [m.span() for m in _TOKEN.finditer(content)]
    spans = []
    for v, s in zip(values, slots, strict=True):
        if s.end > len(toks):
            return None
        a = toks[s.start][0] + s.prefix
        b = toks[s.end - 1][1] - s.suffix
        if content[a:b] != v:
            return None  # e.g. a collapsed run whose original spacing is not one space
        spans.append((a, b))
    return spans
