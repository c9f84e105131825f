"""Log formats: split a raw line into header fields and content, and read its timestamp.

Format strings are written as loghub and logparser write them: ``<Field>`` placeholders
between literal text that is itself a regular expression (``\\[`` escapes, even groups
like Linux's ``(\\[<PID>\\])?``), runs of spaces matching any whitespace, and a required
``<Content>`` field holding the message.

logparser compiles such a string into lazy ``(?P<f>.*?)`` groups. On a line that does not
match, that regex backtracks through every way of splitting the line, which takes minutes
on a long line. Here each field together with the literal that follows it is an atomic
group: the field ends at the first place where its separator matches, and the regex
engine never comes back to try another. A field just before an optional group (Linux's
``<Component>(\\[<PID>\\])?``) cannot contain the group's opening character, so the group
is tried once. Matching is linear, and on well-formed lines the result is the same as
logparser's (checked on all eight loghub-2k systems).

Timestamps become UTC epoch seconds. The pattern of a format's time fields is detected
from the first lines and then kept; the epoch of each distinct date-and-time-to-the-second
is cached, so a repeated second costs a dict lookup. Times without a zone are read as UTC;
formats without a year (syslog, Linux) use ``default_year`` (the current UTC year unless
given).
"""

from __future__ import annotations

import calendar
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from logwarden.errors import ConfigError
from logwarden.records import Line, Record, Stats


class FormatError(ConfigError):
    """A format string or preset name that cannot be used."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="format")


PRESETS: Mapping[str, str] = MappingProxyType(
    {
        "hdfs": "<Date> <Time> <Pid> <Level> <Component>: <Content>",
        "hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
        "spark": "<Date> <Time> <Level> <Component>: <Content>",
        "zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
        "bgl": "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
        "linux": r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
        "apache": r"\[<Time>\] \[<Level>\] <Content>",
        "openstack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
        # Not loghub strings: full regexes, see _REGEX_PRESETS.
        "syslog": "RFC 3164 syslog: [<PRI>]Mmm dd hh:mm:ss host tag[pid]: message",
        "syslog5424": "RFC 5424 syslog: <PRI>1 timestamp host app procid msgid [sd] message",
        "json": "JSON lines; json:FIELD names the message field (default message, msg or log)",
    }
)

_REGEX_PRESETS = {
    "syslog": re.compile(
        r"(?:<(?P<Pri>\d{1,3})>)?(?P<Timestamp>[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)"
        r"(?: (?P<Year>\d{4}))? (?P<Host>\S+) (?P<Tag>[^:\[\s]+)(?:\[(?P<Pid>[^\]]*)\])?:? ?"
        r"(?P<Content>.*)",
        re.S,
    ),
    "syslog5424": re.compile(
        r"<(?P<Pri>\d{1,3})>(?P<Version>\d{1,2}) (?P<Timestamp>\S+) (?P<Host>\S+) (?P<App>\S+) "
        r"(?P<ProcId>\S+) (?P<MsgId>\S+) (?P<StructuredData>-|(?:\[(?:[^\]\\]|\\.)*\])+)"
        r"(?: \ufeff?(?P<Content>.*))?",
        re.S,
    ),
}

_FIELD = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
_NEAR_FIELD = re.compile(r"<[A-Za-z_][^<>]*>")  # left after _FIELD: not a valid name
# A literal that opens with a group whose first character is fixed: "(\[" -> "[".
_GROUP_START = re.compile(r"\((?:\?:)?\\?([^\\()|?*+{}.^$])")
# The leading part of a literal that matches a fixed text (escapes, plain characters, \s+).
_SIMPLE_PREFIX = re.compile(r"(?:\\s\+|\\[^A-Za-z0-9]|[^\\()|?*+{}\[\]^$.])*")


# --- timestamps ---------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_TZ = r"(?:\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2}))?"
_HMS = r"(?P<H>\d{1,2})[:.](?P<M>\d{2})[:.](?P<S>\d{2})"
_FRAC = r"(?:[.,:](?P<f>\d+))?"
# Tried in order on the joined time fields of a line; the first that matches is kept.
_TIME_PATTERNS = [
    re.compile(p)
    for p in (
        # ISO 8601 and friends: 2017-05-16 00:00:00.008, 2015-07-29 17:41:44,747,
        # BGL 2005-06-03-15.42.50.675872, 2003-10-11T22:14:15.003Z
        rf"(?P<Y>\d{{4}})[-/.](?P<m>\d{{1,2}})[-/.](?P<d>\d{{1,2}})[-T _]+{_HMS}{_FRAC}{_TZ}",
        rf"(?P<Y>\d{{4}})(?P<m>\d{{2}})(?P<d>\d{{2}})[-T ]{_HMS}{_FRAC}{_TZ}",  # 20171223-22:15:29:606
        # ISO 8601 basic: 20260101T000000Z, 20260101 000000.123
        rf"(?P<Y>\d{{4}})(?P<m>\d{{2}})(?P<d>\d{{2}})[T\s]+(?P<H>\d{{2}})(?P<M>\d{{2}})(?P<S>\d{{2}})"
        rf"{_FRAC}{_TZ}",
        r"(?P<y>\d{2})(?P<m>\d{2})(?P<d>\d{2})\s+(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})",  # HDFS
        rf"(?P<y>\d{{2}})/(?P<m>\d{{2}})/(?P<d>\d{{2}})\s+{_HMS}{_FRAC}",  # Spark 17/06/09
        rf"(?P<m>\d{{1,2}})/(?P<d>\d{{1,2}})/(?P<Y>\d{{4}})[\s:]+{_HMS}{_FRAC}{_TZ}",  # US
        # access log 10/Oct/2000:13:55:36 -0700, and with a space before the time
        rf"(?P<d>\d{{1,2}})/(?P<b>[A-Z][a-z]{{2}})/(?P<Y>\d{{4}})[:\s]{_HMS}{_FRAC}{_TZ}",
        # ctime / Apache: Sun Dec 04 04:47:44 2005; syslog: Jun 14 15:16:01 [2005]
        rf"(?:[A-Z][a-z]{{2}}\s+)?(?P<b>[A-Z][a-z]{{2}})\s+(?P<d>\d{{1,2}})\s+{_HMS}{_FRAC}"
        rf"(?:\s+(?P<Y>\d{{4}}))?{_TZ}",
        rf"(?P<m>\d{{2}})[-.](?P<d>\d{{2}})\s+{_HMS}{_FRAC}",  # Android 03-17, Proxifier 10.30
        r"(?P<epoch>\d{9,10}(?:\.\d+)?|\d{12,13})",  # epoch seconds or milliseconds
    )
]
_CACHE_MAX = 100_000


class _TimeParser:
    """Joined time-field text -> UTC epoch seconds, with pattern detection and a cache."""

    def __init__(self, default_year: int) -> None:
        self.default_year = default_year
        self._pattern: re.Pattern[str] | None = None
        self._head_len = -1  # where the fraction separator sits, when it is at a fixed place
        self._cache: dict[str, float | None] = {}
        self._days: dict[tuple[int, int, int], int | None] = {}

    def __call__(self, text: str) -> float | None:
        hl = self._head_len
        if hl > 0 and len(text) > hl + 1 and text[hl] in ".,:":
            frac = text[hl + 1 :]
            if frac.isdigit():
                base = self._cache.get(text[:hl])
                if base is None:
                    base = self._slow(text[:hl], frac)
                    if base is None:
                        return None
                    base -= float("0." + frac)
                    if len(self._cache) >= _CACHE_MAX:
                        self._cache.clear()
                    self._cache[text[:hl]] = base
                return base + float("0." + frac)
        if text in self._cache:
            return self._cache[text]
        value = self._slow(text, None)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        if value is not None and self._head_len <= 0:
            self._cache[text] = value
        return value

    def _slow(self, text: str, frac: str | None) -> float | None:
        full = text if frac is None else f"{text}.{frac}"
        if self._pattern is not None:
            m = self._pattern.fullmatch(full)
            if m is not None:
                return self._epoch(m)
        for p in _TIME_PATTERNS:
            m = p.fullmatch(full)
            if m is not None:
                value = self._epoch(m)
                if value is not None:
                    self._pattern = p
                    f0 = m.start("f") if "f" in p.groupindex else -1
                    tz_set = "tz" in p.groupindex and m.group("tz")
                    self._head_len = f0 - 1 if f0 > 0 and not tz_set else -1
                    self._cache.clear()
                    return value
        return None

    def _day(self, year: int, month: int, day: int) -> int | None:
        """Epoch seconds of a UTC date's midnight, None for no such date (cached: logs stay
        on a few dates)."""
        key = (year, month, day)
        if key in self._days:
            return self._days[key]
        value: int | None = None
        if 1 <= day <= calendar.monthrange(year, month)[1]:
            value = calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0))
        if len(self._days) >= _CACHE_MAX:
            self._days.clear()
        self._days[key] = value
        return value

    def _epoch(self, m: re.Match[str]) -> float | None:
        g = m.groupdict()
        try:
            if g.get("epoch"):
                v = float(g["epoch"])
                return v / 1000.0 if len(g["epoch"]) >= 12 and "." not in g["epoch"] else v
            if g.get("Y"):
                year = int(g["Y"])
            elif g.get("y"):
                year = 2000 + int(g["y"])
            else:
                year = self.default_year
            month = _MONTHS[g["b"]] if g.get("b") else int(g["m"])
            day, hour, minute, sec = int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"])
            if not (1 <= month <= 12 and hour < 24 and minute < 60 and sec < 61):
                return None
            midnight = self._day(year, month, day)
            if midnight is None:
                return None  # 30 February must not roll over into March
            value = float(midnight + hour * 3600 + minute * 60 + sec)
            if g.get("f"):
                value += float("0." + g["f"])
            tz = g.get("tz")
            if tz and tz not in ("Z", "UTC", "GMT"):
                sign = -1 if tz[0] == "+" else 1
                digits = tz[1:].replace(":", "")
                value += sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
            return value
        except (KeyError, ValueError, OverflowError):
            return None


# Which header fields carry the time, by name, in the order they are joined.
_TIME_FIELD_ORDER = ("Month", "Date", "Day", "Time", "Timestamp", "Datetime", "Year")


def _time_field_choices(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Which header fields may hold the time, best first: all of them joined, then alone."""
    present = tuple(n for n in _TIME_FIELD_ORDER if n in names)
    choices = [present] if present else []
    choices += [
        (n,) for n in ("Time", "Timestamp", "Datetime") if n in present and len(present) > 1
    ]
    return choices


# --- formats ------------------------------------------------------------------------------


@dataclass
class LogFormat:
    """A compiled log format. ``parse`` never raises."""

    name: str
    spec: str
    regex: re.Pattern[str]
    header_fields: tuple[str, ...]
    default_year: int

    def __post_init__(self) -> None:
        self._time_choices = _time_field_choices(self.header_fields)
        self.time_fields = self._time_choices[0] if self._time_choices else ()
        self.parse_time = _TimeParser(self.default_year)
        self._match = self.regex.fullmatch
        self.bad_timestamps = 0

    def parse(self, line: Line) -> Record:
        m = self._match(line.text.strip())  # as logparser does: edge blanks are not content
        if m is None:
            return Record(line, line.text, {}, None, False)
        groups = m.groupdict()
        content = groups.pop("Content", None) or ""
        fields = {k: v for k, v in groups.items() if v is not None}
        ts = self.timestamp(fields) if self.time_fields else None
        return Record(line, content, fields, ts, True)

    def timestamp(self, fields: dict[str, str]) -> float | None:
        text = " ".join(fields[n] for n in self.time_fields if n in fields)
        ts = self.parse_time(text) if text else None
        if ts is None and len(self._time_choices) > 1:
            # Another choice of fields may be the one that holds the time (BGL: Time alone).
            for names in self._time_choices:
                if names != self.time_fields:
                    alt = " ".join(fields[n] for n in names if n in fields)
                    ts = self.parse_time(alt) if alt else None
                    if ts is not None:
                        self.time_fields = names
                        break
        if ts is None:
            self.bad_timestamps += 1
        return ts

    def records(self, lines: Iterable[Line], stats: Stats) -> Iterator[Record]:
        """Parse lines into records, counting unmatched lines and unreadable timestamps."""
        parse = self.parse
        before = self.bad_timestamps
        try:
            for line in lines:
                rec = parse(line)
                if not rec.matched and line.text:  # an empty line is counted as one
                    stats.add("unmatched_format")
                yield rec
        finally:
            if self.bad_timestamps != before:
                stats.add("bad_timestamp", self.bad_timestamps - before)


class JsonFormat(LogFormat):
    """JSON lines: one object per line, the message in a chosen field."""

    def __init__(self, message_field: str | None, default_year: int) -> None:
        self.message_field = message_field
        spec = f"json:{message_field}" if message_field else "json"
        super().__init__("json", spec, re.compile(""), (), default_year)

    def parse(self, line: Line) -> Record:
        try:
            obj = json.loads(line.text)
        except (ValueError, RecursionError):
            return Record(line, line.text, {}, None, False)
        if not isinstance(obj, dict):
            return Record(line, line.text, {}, None, False)
        names = (self.message_field,) if self.message_field else ("message", "msg", "log")
        key = next((n for n in names if n in obj), None)
        if key is None or not isinstance(obj[key], str | int | float):
            return Record(line, line.text, {}, None, False)
        fields = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in obj.items()
            if k != key and (v is None or isinstance(v, str | int | float | bool))
        }
        ts = None
        for tk in ("timestamp", "@timestamp", "time", "ts", "datetime", "date"):
            if (
                tk in obj
                and isinstance(obj[tk], str | int | float)
                and not isinstance(obj[tk], bool)
            ):
                ts = _json_time(obj[tk], self.parse_time)
                if ts is None:
                    self.bad_timestamps += 1
                break
        return Record(line, str(obj[key]), fields, ts, True)


def _json_time(raw: str | int | float, parse_text: _TimeParser) -> float | None:
    """A JSON time value: epoch seconds or milliseconds as a number, or a time string."""
    if isinstance(raw, str):
        return parse_text(raw.strip())
    try:
        value = float(raw)
    except OverflowError:
        return None
    if not math.isfinite(value):
        return None
    # Like a 12-13 digit string: an epoch in milliseconds (1e11 s is the year 5138).
    return value / 1000.0 if abs(value) >= 1e11 else value


def compile_format(spec: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """Compile a loghub format string into a linear-time regex and its header field names."""
    parts = _FIELD.split(spec)
    literals, names = parts[0::2], parts[1::2]
    for lit in literals:
        # A typo in a field name leaves it literal text, and then no line matches.
        odd = _NEAR_FIELD.search(lit)
        if odd:
            raise FormatError(
                f"format field {odd.group()!r} is not a field name (letters, digits and _, "
                f"starting with a letter or _): {spec!r}"
            )
    if "Content" not in names:
        raise FormatError(f"format has no <Content> field: {spec!r}")
    if len(set(names)) != len(names):
        raise FormatError(f"format repeats a field name: {spec!r}")
    pieces = [re.sub(" +", r"\\s+", literals[0])]
    for i, name in enumerate(names):
        sep = re.sub(" +", r"\\s+", literals[i + 1])
        if name == "Content" or i == len(names) - 1:
            field = f"(?P<{name}>.*)" if i == len(names) - 1 else f"(?P<{name}>.*?)"
            pieces.append(field + sep)
        else:
            # Field plus the fixed start of its separator as one atomic group: the field ends
            # at the first place the separator matches and is never re-split (linear time).
            fixed = _SIMPLE_PREFIX.match(sep).group()  # type: ignore[union-attr]
            group_char = _GROUP_START.match(sep)
            if fixed == r"\s+":
                # The same field as below (it ends at the first whitespace), found without
                # trying the separator after every character: a fifth of a header's time.
                pieces.append(f"(?>(?P<{name}>\\S*){fixed}){sep[len(fixed) :]}")
            elif fixed:
                pieces.append(f"(?>(?P<{name}>.*?){fixed}){sep[len(fixed) :]}")
            elif group_char:
                # Before an optional group like Linux's (\[<PID>\])?: the field stops short of
                # the group's opening character, so the group is tried once, not at every
                # such character of a long line (which is quadratic).
                stop = re.escape(group_char.group(1))
                pieces.append(f"(?P<{name}>[^{stop}]*?){sep}")
            else:
                pieces.append(f"(?P<{name}>.*?){sep}")
    pattern = "".join(pieces)
    try:
        regex = re.compile(pattern, re.S)
    except re.error as exc:
        raise FormatError(f"format is not a valid pattern ({exc}): {spec!r}") from None
    return regex, tuple(n for n in names if n != "Content")


_METACHARS = "[](){}|?*+^$"


def unescaped_literals(spec: str) -> tuple[list[str], str] | None:
    """For a format string (not a preset) whose literal text holds regex metacharacters
    without a backslash (``[<Time>] <Content>``): those characters, and the format with
    them escaped (``\\[<Time>\\] <Content>``). Literal text is a regular expression, as in
    loghub's format strings (Linux's ``(\\[<PID>\\])?`` is a group); a bracket meant as
    text makes a character class of the rest, and then no line matches. None when there
    are none, or ``spec`` is a preset or JSON."""
    name = spec.strip().lower()
    if name in PRESETS or name.startswith("json:") or "<" not in spec:
        return None
    found: list[str] = []
    parts = _FIELD.split(spec)
    for i in range(0, len(parts), 2):
        lit, out, k = parts[i], [], 0
        while k < len(lit):
            c = lit[k]
            if c == "\\" and k + 1 < len(lit):
                out.append(lit[k : k + 2])
                k += 2
                continue
            if c in _METACHARS:
                if c not in found:
                    found.append(c)
                out.append("\\" + c)
            else:
                out.append(c)
            k += 1
        parts[i] = "".join(out)
    if not found:
        return None
    fixed = "".join(p if i % 2 == 0 else f"<{p}>" for i, p in enumerate(parts))
    return found, fixed


#: ``--format auto``: the preset that fits an input's first lines best (``guess_format``).
AUTO = "auto"
_LEVELS = frozenset(
    "TRACE DEBUG INFO NOTICE WARN WARNING ERROR ERR FATAL SEVERE CRITICAL CRIT ALERT EMERG".split()
)


def guess_format(texts: Sequence[str]) -> list[tuple[str, float]]:
    """How well each preset fits ``texts`` (an input's first lines), best first: the share
    of the non-empty lines it matches with a readable timestamp (when it has time fields).
    Ties (a line of one format often matches a looser one too) go to the preset whose
    ``Level`` field holds level words more often, then to the one with more fields."""
    sample = [t for t in texts if t.strip()]
    if not sample:
        return []
    scored = []
    for name in PRESETS:
        fmt = get_format(name)
        fit, levels = _fit(fmt, sample)
        scored.append((fit, levels, len(fmt.header_fields), name))
    scored.sort(reverse=True)
    return [(name, share) for share, _, _, name in scored]


def _fit(fmt: LogFormat, sample: Sequence[str]) -> tuple[float, float]:
    """The share of ``sample`` (non-empty lines) that ``fmt`` matches with a readable
    timestamp (when it has time fields), and the share whose Level is a level word."""
    fit = levels = 0
    for i, text in enumerate(sample):
        rec = fmt.parse(Line(text, "", 0, i + 1))
        if rec.matched and (rec.timestamp is not None or not fmt.time_fields):
            fit += 1
            levels += rec.fields.get("Level", "").upper() in _LEVELS
    return fit / len(sample), levels / len(sample)


#: How much more of a sample a preset must fit than the format given to be named instead.
BETTER_MARGIN = 0.2


def better_format(spec: str, texts: Sequence[str]) -> tuple[str, float, float] | None:
    """A preset that fits ``texts`` (an input's first lines) clearly better than the format
    ``spec`` does, as ``--format auto`` ranks them (``guess_format``): (its name, its share,
    the share ``spec`` fits), or None. A wrong format may still match most lines of a
    similar log (``bgl`` on Spark matches two in three, with garbage fields); its time
    fields then rarely read as a time, and the right preset fits nearly all."""
    sample = [t for t in texts if t.strip()]
    if not sample:
        return None
    try:
        given, _ = _fit(get_format(spec), sample)
    except FormatError:
        return None
    if given >= 1.0 - BETTER_MARGIN:
        return None  # nothing can fit clearly more
    ranked = guess_format(sample)
    name, share = ranked[0]
    if share < 0.5 or share < given + BETTER_MARGIN or name == spec.strip().lower():
        return None
    return name, share, given


def get_format(spec: str, *, default_year: int | None = None) -> LogFormat:
    """A preset name, ``json[:FIELD]``, or a loghub format string (contains ``<``)."""
    year = default_year if default_year is not None else time.gmtime().tm_year
    if not isinstance(spec, str) or not spec.strip():
        raise FormatError("empty log format")
    name = spec.strip()
    if name == "json" or name.startswith("json:"):
        field = name[5:] or None
        return JsonFormat(field, year)
    if name.lower() in _REGEX_PRESETS:
        rx = _REGEX_PRESETS[name.lower()]
        fields = tuple(n for n in rx.groupindex if n != "Content")
        return LogFormat(name.lower(), PRESETS[name.lower()], rx, fields, year)
    if name.lower() in PRESETS:
        regex, fields = compile_format(PRESETS[name.lower()])
        return LogFormat(name.lower(), PRESETS[name.lower()], regex, fields, year)
    if "<" in spec:
        regex, fields = compile_format(spec)
        return LogFormat("custom", spec, regex, fields, year)
    raise FormatError(
        f"unknown log format {spec!r}: use a preset ({', '.join(PRESETS)}) "
        "or a format string such as '<Date> <Time> <Level> <Content>'"
    )
