"""Raw logs as one stream of entries, in input order: logs without session ids.

Where ``ingest`` groups entries into sessions, a log without session ids is read here as
one stream: for every entry (non-empty input line) its input line number (counted from 1
over all inputs, empty lines included, as line labels count them), its log key and
parameter values, and the header fields that may be features (never the time fields, nor
a label field such as BGL's first one: that would be the answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from logwarden.io.formats import LogFormat, get_format
from logwarden.io.sources import LineReader, SourceConfig
from logwarden.parsing import TemplateMiner
from logwarden.records import Stats

__all__ = ["LineStream", "feature_fields", "read_stream"]

# Header fields that hold the time (never features: they do not recur) or the ground
# truth (BGL's first field is the alert category: a feature would be the answer).
_TIME_FIELDS = frozenset({"month", "date", "day", "time", "timestamp", "datetime", "year"})
_LABEL_FIELDS = frozenset({"label", "alert", "category"})


def feature_fields(fmt: LogFormat) -> tuple[str, ...]:
    """The header fields that are features: all but time and label fields."""
    return tuple(
        n
        for n in fmt.header_fields
        if n.casefold() not in _TIME_FIELDS and n.casefold() not in _LABEL_FIELDS
    )


@dataclass
class LineStream:
    """The entries of raw logs in input order, as the supervised model reads them."""

    line_ids: np.ndarray  # per entry: its input line, from 1 over all inputs (int64)
    keys: list[int | None]  # template id per entry; None: no template matched
    values: list[list[str]]  # parameter values per entry
    fields: list[tuple[str | None, ...]]  # per entry, the values of ``field_names``
    field_names: tuple[str, ...]
    lines: int  # input lines read, empty ones included
    templates: dict[int, str]  # template id -> text, for the keys that occur
    stats: Stats = field(default_factory=Stats)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def read_stream(
    inputs: Sequence[str],
    fmt_spec: str,
    miner: TemplateMiner | None = None,
    *,
    learn: bool = False,
    max_line_bytes: int = 65536,
) -> tuple[LineStream, TemplateMiner]:
    """Read raw logs into a ``LineStream``.

    ``learn``: the miner learns templates in a first pass over the contents, then every
    line is matched against the final templates (so that parameters line up with the
    templates a detector will use). Otherwise lines are only matched: a line no template
    matches has key None (unknown to any model). Empty lines are counted, not entries.
    """
    fmt = get_format(fmt_spec)
    miner = miner if miner is not None else TemplateMiner()
    stats = Stats()
    reader = LineReader(list(inputs), SourceConfig(max_line_bytes=max_line_bytes), stats)
    names = feature_fields(fmt)
    line_ids: list[int] = []
    contents: list[str] = []
    fields: list[tuple[str | None, ...]] = []
    parse = miner.add_values
    take = contents.append
    n = 0
    unmatched = 0
    if type(fmt) is LogFormat:
        match = fmt.regex.fullmatch
        index = fmt.regex.groupindex
        content_group = index.get("Content")
        groups = tuple(index[name] for name in names)
        blank: tuple[str | None, ...] = (None,) * len(names)
        for batch in reader.text_batches():
            for text in batch:
                n += 1
                if not text:
                    stats.add("empty_line")
                    continue
                line_ids.append(n)
                m = match(text.strip())
                if m is None:
                    unmatched += 1
                    fields.append(blank)
                    take(text)
                    continue
                if len(groups) > 1:
                    fields.append(m.group(*groups))
                else:
                    fields.append(tuple(m.group(g) for g in groups))
                take((m.group(content_group) or "") if content_group else "")
    else:  # JSON lines: the format's own parser
        for line in reader:
            n += 1
            if not line.text:
                stats.add("empty_line")
                continue
            line_ids.append(n)
            rec = fmt.parse(line)
            if not rec.matched:
                unmatched += 1
            fields.append(tuple(rec.fields.get(name) for name in names))
            take(rec.content)
    if unmatched:
        stats.add("unmatched_format", unmatched)
    if learn:
        for content in contents:
            parse(content, True)
    parsed = list(map(parse, contents, repeat(False)))
    del contents
    keys = [k for k, _ in parsed]
    values = [v for _, v in parsed]
    del parsed
    resolved: dict[int, int] = {}
    for i, key in enumerate(keys):
        if key is not None:
            r = resolved.get(key)
            if r is None:
                r = resolved[key] = miner.resolve(key)
            keys[i] = r
    templates = {r: miner.template(r) for r in set(resolved.values())}
    stream = LineStream(
        np.asarray(line_ids, dtype=np.int64),
        keys,
        values,
        fields,
        names,
        n,
        templates,
        stats,
        list(reader.errors),
    )
    return stream, miner
