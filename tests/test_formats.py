"""Log formats: header fields, content and timestamps, checked against loghub's own parses.

Expected epochs are written as ``calendar.timegm`` of the date the line states (times
without a zone are UTC, years missing from the line come from ``default_year``), never
copied from the module's output. Adversarial lines are simply parsed: a regex that
backtracks catastrophically would make the suite hang, which no one can miss.
"""

from __future__ import annotations

import calendar
import csv
import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logwarden.io.formats import PRESETS, FormatError, LogFormat, get_format, guess_format
from logwarden.records import Line, Record, Stats

# The loghub-2k header formats, as written in the data folder's README.
LOGHUB_FORMATS = {
    "HDFS": "<Date> <Time> <Pid> <Level> <Component>: <Content>",
    "Hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    "Spark": "<Date> <Time> <Level> <Component>: <Content>",
    "Zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    "BGL": "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
    "Linux": r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    "Apache": r"\[<Time>\] \[<Level>\] <Content>",
    "OpenStack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
}
LINUX_YEAR = 2005  # the Linux sample has no year; its lines are from mid-2005

# An independent reading of each system's time: (ground-truth columns joined by a space,
# strptime format). BGL's Time column is its date and time of day; Linux gets a year.
TIME_ORACLE = {
    "HDFS": (("Date", "Time"), "%y%m%d %H%M%S"),
    "Hadoop": (("Date", "Time"), "%Y-%m-%d %H:%M:%S,%f"),
    "Spark": (("Date", "Time"), "%y/%m/%d %H:%M:%S"),
    "Zookeeper": (("Date", "Time"), "%Y-%m-%d %H:%M:%S,%f"),
    "BGL": (("Time",), "%Y-%m-%d-%H.%M.%S.%f"),
    "Linux": (("Month", "Date", "Time"), "%b %d %H:%M:%S %Y"),
    "Apache": (("Time",), "%a %b %d %H:%M:%S %Y"),
    "OpenStack": (("Date", "Time"), "%Y-%m-%d %H:%M:%S.%f"),
}


def _line(text: str, lineno: int = 1) -> Line:
    return Line(text, "test.log", 0, lineno)


def _utc(*parts: int, frac: float = 0.0) -> float:
    """Epoch seconds of a UTC date and time, from calendar.timegm."""
    year, month, day, hour, minute, second = parts
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) + frac


def _read_lines(path: Path) -> list[str]:
    # As the sources module does: split on "\n", a last "\r" is part of a "\r\n" ending.
    text = path.read_bytes().decode("utf-8")
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()
    return [p[:-1] if p.endswith("\r") else p for p in pieces]


def _oracle_epoch(system: str, row: dict[str, str]) -> float:
    columns, fmt = TIME_ORACLE[system]
    text = " ".join(row[c] for c in columns)
    if system == "Linux":
        text += f" {LINUX_YEAR}"
    dt = datetime.strptime(text, fmt)
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6


# --- 1. loghub-2k: the same split as logparser's, on every line ----------------------------


def test_presets_are_the_loghub_format_strings() -> None:
    for system, spec in LOGHUB_FORMATS.items():
        assert PRESETS[system.lower()] == spec


@pytest.mark.parametrize("system", list(LOGHUB_FORMATS))
def test_loghub_2k_fields_content_and_timestamps(
    system: str, shared_data: Callable[..., Path]
) -> None:
    folder = shared_data("loghub-2k", system)
    lines = _read_lines(folder / f"{system}_2k.log")
    with open(folder / f"{system}_2k.log_structured.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    assert len(lines) == len(rows) == 2000

    headers = [c for c in columns if c not in ("LineId", "Content", "EventId", "EventTemplate")]
    fmt = get_format(system.lower(), default_year=LINUX_YEAR)
    assert list(fmt.header_fields) == headers
    # The same split from the format string itself as from the preset name.
    custom = get_format(LOGHUB_FORMATS[system], default_year=LINUX_YEAR)

    stats = Stats()
    records = list(fmt.records((_line(t, i + 1) for i, t in enumerate(lines)), stats))
    assert len(records) == 2000
    assert stats["unmatched_format"] == 0 and stats["bad_timestamp"] == 0
    for i, (rec, row) in enumerate(zip(records, rows, strict=True)):
        where = f"{system} line {i + 1}: {lines[i]!r}"
        assert rec.matched, where
        assert rec.line.lineno == i + 1
        assert rec.content == row["Content"], where
        # logparser writes an unmatched optional group (Linux's PID) as an empty cell.
        assert {h: rec.fields.get(h, "") for h in headers} == {h: row[h] for h in headers}, where
        assert set(rec.fields) <= set(headers), where
        missing = set(headers) - set(rec.fields)
        assert missing <= {"PID"} and (not missing or system == "Linux"), where
        assert rec.timestamp is not None, where
        assert rec.timestamp == pytest.approx(_oracle_epoch(system, row), abs=1e-5), where
        other = custom.parse(rec.line)
        assert (other.content, other.fields, other.matched) == (rec.content, rec.fields, True)


def test_loghub_2k_first_lines_epochs_by_hand(shared_data: Callable[..., Path]) -> None:
    # The first line of each sample, its date read off the line by eye.
    expected = {
        "HDFS": _utc(2008, 11, 9, 20, 36, 15),  # 081109 203615
        "Hadoop": _utc(2015, 10, 18, 18, 1, 47, frac=0.978),  # 2015-10-18 18:01:47,978
        "Spark": _utc(2017, 6, 9, 20, 10, 40),  # 17/06/09 20:10:40
        "Zookeeper": _utc(2015, 7, 29, 17, 41, 44, frac=0.747),  # 2015-07-29 17:41:44,747
        # 2005-06-03-15.42.50.675872, read as UTC. (The line's own epoch column says
        # 1117838570, seven hours later: BGL's time of day is local, but carries no zone.)
        "BGL": _utc(2005, 6, 3, 15, 42, 50, frac=0.675872),
        "Linux": _utc(LINUX_YEAR, 6, 14, 15, 16, 1),  # Jun 14 15:16:01, no year
        "Apache": _utc(2005, 12, 4, 4, 47, 44),  # Sun Dec 04 04:47:44 2005
        "OpenStack": _utc(2017, 5, 16, 0, 0, 0, frac=0.008),  # 2017-05-16 00:00:00.008
    }
    for system, epoch in expected.items():
        first = _read_lines(shared_data("loghub-2k", system, f"{system}_2k.log"))[0]
        rec = get_format(system.lower(), default_year=LINUX_YEAR).parse(_line(first))
        assert rec.timestamp == pytest.approx(epoch, abs=1e-6), system


# --- 2. each preset on hand-written lines --------------------------------------------------


def _parse(spec: str, text: str, year: int = 2003) -> Record:
    return get_format(spec, default_year=year).parse(_line(text))


@pytest.mark.parametrize(
    ("spec", "text", "fields", "content", "epoch"),
    [
        (
            "hdfs",
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
            {
                "Date": "081109",
                "Time": "203615",
                "Pid": "148",
                "Level": "INFO",
                "Component": "dfs.DataNode$PacketResponder",
            },
            "PacketResponder 1 terminating",
            _utc(2008, 11, 9, 20, 36, 15),
        ),
        (
            "hadoop",
            "2015-10-18 18:01:47,978 INFO [main] org.apache.App: Created MRAppMaster: x [y]",
            {
                "Date": "2015-10-18",
                "Time": "18:01:47,978",
                "Level": "INFO",
                "Process": "main",
                "Component": "org.apache.App",
            },
            "Created MRAppMaster: x [y]",
            _utc(2015, 10, 18, 18, 1, 47, frac=0.978),
        ),
        (
            "spark",
            "17/06/09 20:10:40 INFO spark.SecurityManager: Changing view acls to: yarn,curi",
            {
                "Date": "17/06/09",
                "Time": "20:10:40",
                "Level": "INFO",
                "Component": "spark.SecurityManager",
            },
            "Changing view acls to: yarn,curi",
            _utc(2017, 6, 9, 20, 10, 40),
        ),
        (
            "zookeeper",
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:"
            "FastLeaderElection@774] - Notification time out: 3200",
            {
                "Date": "2015-07-29",
                "Time": "17:41:44,747",
                "Level": "INFO",
                "Node": "QuorumPeer[myid=1]/0",
                "Component": "0:0:0:0:0:0:0:2181:FastLeaderElection",
                "Id": "774",
            },
            "Notification time out: 3200",
            _utc(2015, 7, 29, 17, 41, 44, frac=0.747),
        ),
        (
            "bgl",
            "KERNDTLB 1118536327 2005.06.11 R30-M0-N9-C:J16-U01 2005-06-11-17.32.07.581048 "
            "R30-M0-N9-C:J16-U01 RAS KERNEL FATAL data TLB error interrupt",
            {
                "Label": "KERNDTLB",
                "Timestamp": "1118536327",
                "Date": "2005.06.11",
                "Node": "R30-M0-N9-C:J16-U01",
                "Time": "2005-06-11-17.32.07.581048",
                "NodeRepeat": "R30-M0-N9-C:J16-U01",
                "Type": "RAS",
                "Component": "KERNEL",
                "Level": "FATAL",
            },
            "data TLB error interrupt",
            _utc(2005, 6, 11, 17, 32, 7, frac=0.581048),
        ),
        (
            "linux",
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0",
            {
                "Month": "Jun",
                "Date": "14",
                "Time": "15:16:01",
                "Level": "combo",
                "Component": "sshd(pam_unix)",
                "PID": "19939",
            },
            "authentication failure; logname= uid=0",
            _utc(2003, 6, 14, 15, 16, 1),
        ),
        (
            "linux",  # no [pid], a padded day, and a component with a space in it
            "Jun  9 06:06:20 combo syslogd 1.4.1: restart.",
            {
                "Month": "Jun",
                "Date": "9",
                "Time": "06:06:20",
                "Level": "combo",
                "Component": "syslogd 1.4.1",
            },
            "restart.",
            _utc(2003, 6, 9, 6, 6, 20),
        ),
        (
            "linux",
            "Jul 27 14:42:00 combo kernel: Linux agpgart interface v0.100 (c) Dave Jones",
            {
                "Month": "Jul",
                "Date": "27",
                "Time": "14:42:00",
                "Level": "combo",
                "Component": "kernel",
            },
            "Linux agpgart interface v0.100 (c) Dave Jones",
            _utc(2003, 7, 27, 14, 42, 0),
        ),
        (
            "apache",
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
            {"Time": "Sun Dec 04 04:47:44 2005", "Level": "error"},
            "mod_jk child workerEnv in error state 6",
            _utc(2005, 12, 4, 4, 47, 44),
        ),
        (
            "openstack",
            "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO "
            "nova.osapi_compute.wsgi.server [req-38101a0b - - -] 10.11.10.1 "
            '"GET /v2/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829',
            {
                "Logrecord": "nova-api.log.1.2017-05-16_13:53:08",
                "Date": "2017-05-16",
                "Time": "00:00:00.008",
                "Pid": "25746",
                "Level": "INFO",
                "Component": "nova.osapi_compute.wsgi.server",
                "ADDR": "req-38101a0b - - -",
            },
            '10.11.10.1 "GET /v2/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829',
            _utc(2017, 5, 16, 0, 0, 0, frac=0.008),
        ),
        (
            "syslog",  # RFC 3164 section 5.4, example 1, with <PRI>
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            {"Pri": "34", "Timestamp": "Oct 11 22:14:15", "Host": "mymachine", "Tag": "su"},
            "'su root' failed for lonvick on /dev/pts/8",
            _utc(2003, 10, 11, 22, 14, 15),
        ),
        (
            "syslog",  # no <PRI>, a [pid]
            "Oct 11 22:14:15 host prog[123]: msg",
            {"Timestamp": "Oct 11 22:14:15", "Host": "host", "Tag": "prog", "Pid": "123"},
            "msg",
            _utc(2003, 10, 11, 22, 14, 15),
        ),
        (
            "syslog",  # a padded day and a year after the time: the year is the line's
            "Feb  5 01:02:03 2004 web-1 cron[7]: job done: ok",
            {
                "Timestamp": "Feb  5 01:02:03",
                "Year": "2004",
                "Host": "web-1",
                "Tag": "cron",
                "Pid": "7",
            },
            "job done: ok",
            _utc(2004, 2, 5, 1, 2, 3),
        ),
        (
            "syslog5424",  # RFC 5424 section 6.5, example 3
            '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
            'eventSource="Application"] An application event log entry...',
            {
                "Pri": "165",
                "Version": "1",
                "Timestamp": "2003-10-11T22:14:15.003Z",
                "Host": "mymachine.example.com",
                "App": "evntslog",
                "ProcId": "-",
                "MsgId": "ID47",
                "StructuredData": '[exampleSDID@32473 iut="3" eventSource="Application"]',
            },
            "An application event log entry...",
            _utc(2003, 10, 11, 22, 14, 15, frac=0.003),
        ),
        (
            "syslog5424",  # RFC 5424 example 2: a -07:00 offset, so 05:14 there is 12:14 UTC
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
            "%% It's time to make the do-nuts.",
            {
                "Pri": "165",
                "Version": "1",
                "Timestamp": "2003-08-24T05:14:15.000003-07:00",
                "Host": "192.0.2.1",
                "App": "myproc",
                "ProcId": "8710",
                "MsgId": "-",
                "StructuredData": "-",
            },
            "%% It's time to make the do-nuts.",
            _utc(2003, 8, 24, 12, 14, 15, frac=0.000003),
        ),
        (
            "syslog5424",  # two SD elements, an escaped "]" inside a value
            '<14>1 2020-02-29T23:59:59+02:00 h app 42 - [a@1 x="1\\]2"][b@2] done',
            {
                "Pri": "14",
                "Version": "1",
                "Timestamp": "2020-02-29T23:59:59+02:00",
                "Host": "h",
                "App": "app",
                "ProcId": "42",
                "MsgId": "-",
                "StructuredData": '[a@1 x="1\\]2"][b@2]',
            },
            "done",
            _utc(2020, 2, 29, 21, 59, 59),  # +02:00: two hours earlier in UTC
        ),
    ],
)
def test_preset_on_a_hand_written_line(
    spec: str, text: str, fields: dict[str, str], content: str, epoch: float
) -> None:
    rec = _parse(spec, text)
    assert rec.matched
    assert rec.fields == fields
    assert rec.content == content
    assert rec.timestamp == pytest.approx(epoch, abs=1e-6)


def test_syslog5424_nil_values_and_no_message() -> None:
    rec = _parse("syslog5424", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 -")
    assert rec.matched
    assert rec.content == ""
    assert rec.fields["ProcId"] == "-" and rec.fields["StructuredData"] == "-"
    assert rec.fields["MsgId"] == "ID47"
    assert rec.timestamp == pytest.approx(_utc(2003, 10, 11, 22, 14, 15, frac=0.003))

    # Every value nil, the timestamp too: still a record, with no time.
    rec = _parse("syslog5424", "<34>1 - - - - - -")
    assert rec.matched and rec.content == "" and rec.timestamp is None
    assert all(rec.fields[k] == "-" for k in ("Timestamp", "Host", "App", "ProcId", "MsgId"))


def test_syslog_without_year_uses_default_year() -> None:
    assert _parse("syslog", "Oct 11 22:14:15 h p: m", year=1999).timestamp == _utc(
        1999, 10, 11, 22, 14, 15
    )
    before = time.gmtime().tm_year
    rec = get_format("syslog").parse(_line("Oct 11 22:14:15 h p: m"))
    after = time.gmtime().tm_year
    assert rec.timestamp in (_utc(before, 10, 11, 22, 14, 15), _utc(after, 10, 11, 22, 14, 15))


def test_preset_names_ignore_case_and_edge_blanks() -> None:
    rec = get_format(" HDFS ").parse(_line("081109 203615 148 INFO dfs.X: hi"))
    assert rec.matched and rec.content == "hi" and rec.fields["Pid"] == "148"


def test_lines_are_stripped_before_matching_as_logparser_does() -> None:
    rec = _parse("hdfs", "  \t081109 203615 148 INFO dfs.X: padded message \r ")
    assert rec.matched
    assert rec.fields["Date"] == "081109"
    assert rec.content == "padded message"


def test_custom_format_string() -> None:
    fmt = get_format(r"<Time> \[<Level>\] <Logger> - <Content>", default_year=2003)
    assert fmt.header_fields == ("Time", "Level", "Logger")
    rec = fmt.parse(_line("2003-10-11T22:14:15.5+02:00 [WARN] a.b.C - disk 91% full - again"))
    assert rec.matched
    assert rec.fields == {"Time": "2003-10-11T22:14:15.5+02:00", "Level": "WARN", "Logger": "a.b.C"}
    assert rec.content == "disk 91% full - again"
    assert rec.timestamp == pytest.approx(_utc(2003, 10, 11, 20, 14, 15, frac=0.5))


# --- JSON lines ------------------------------------------------------------------------------


def test_json_default_message_field_and_other_fields() -> None:
    text = json.dumps(
        {
            "message": "user 42 logged in",
            "level": "INFO",
            "n": 3,
            "ratio": 1.5,
            "ok": True,
            "none": None,
            "nested": {"a": [1, 2]},
            "list": [1, "x"],
        }
    )
    rec = _parse("json", text)
    assert rec.matched
    assert rec.content == "user 42 logged in"
    assert "message" not in rec.fields
    assert rec.fields["level"] == "INFO"
    assert rec.fields["n"] == "3" and rec.fields["ratio"] == "1.5"
    assert rec.fields["ok"] == "true" and rec.fields["none"] == "null"
    # Nested values may be left out of the header fields, or kept as JSON text: not mangled.
    assert rec.fields.get("nested") in (None, '{"a": [1, 2]}', '{"a":[1,2]}')
    assert rec.fields.get("list") in (None, '[1, "x"]', '[1,"x"]')
    assert all(isinstance(v, str) for v in rec.fields.values())
    assert rec.timestamp is None


def test_json_message_field_names() -> None:
    # msg comes before log among the default names; the other one stays a field.
    rec = _parse("json", '{"log": "L", "msg": "M"}')
    assert rec.matched and rec.content == "M" and rec.fields == {"log": "L"}
    assert _parse("json", '{"log": "only log"}').content == "only log"
    rec = _parse("json:text", '{"text": "hello", "message": "other"}')
    assert rec.matched and rec.content == "hello" and rec.fields == {"message": "other"}
    assert _parse("json", '  {"message": 404}  ').content == "404"


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("json", '{"level": "INFO"}'),  # no message field
        ("json:text", '{"message": "not the chosen field"}'),
        ("json", "[1, 2, 3]"),  # not an object
        ("json", '"a string"'),
        ("json", "42"),
        ("json", "null"),
        ("json", '{"message": "unterminated'),  # invalid JSON
        ("json", "plain text line"),
        ("json", ""),
        ("json", '{"message": {"nested": "object"}}'),  # message is not text
        ("json", "[" * 100_000),  # deeper than the decoder's recursion limit
    ],
)
def test_json_unusable_lines_are_kept_unmatched(spec: str, text: str) -> None:
    fmt = get_format(spec)
    stats = Stats()
    (rec,) = list(fmt.records([_line(text)], stats))
    assert rec == Record(_line(text), text, {}, None, False)
    assert stats.as_dict() == ({"unmatched_format": 1} if text else {})  # empty: an empty line


@pytest.mark.parametrize(
    ("obj", "epoch"),
    [
        ({"message": "m", "ts": 1117838570}, 1117838570.0),
        ({"message": "m", "ts": 1117838570.25}, 1117838570.25),
        ({"message": "m", "ts": "1117838570"}, 1117838570.0),
        ({"message": "m", "ts": "1117838570123"}, 1117838570.123),  # milliseconds
        # A number of milliseconds is read as the same string of digits is.
        ({"message": "m", "ts": 1117838570123}, 1117838570.123),
        ({"message": "m", "time": "2003-10-11T22:14:15Z"}, _utc(2003, 10, 11, 22, 14, 15)),
        ({"message": "m", "time": "2003-10-11T22:14:15"}, _utc(2003, 10, 11, 22, 14, 15)),
        # +02:00 is two hours ahead of UTC, so the UTC time is two hours earlier.
        ({"message": "m", "time": "2003-10-11T22:14:15+02:00"}, _utc(2003, 10, 11, 20, 14, 15)),
        # -05:30: 22:14:15.250 there is 03:44:15.250 the next day in UTC.
        (
            {"message": "m", "@timestamp": "2003-10-11T22:14:15.250-05:30"},
            _utc(2003, 10, 12, 3, 44, 15, frac=0.25),
        ),
        (
            {"message": "m", "timestamp": "2003-10-11 22:14:15,5 +0100"},
            _utc(2003, 10, 11, 21, 14, 15, frac=0.5),
        ),
        # ISO 8601's basic form, and an access log's date with a space before the time.
        ({"message": "m", "time": "20031011T221415Z"}, _utc(2003, 10, 11, 22, 14, 15)),
        ({"message": "m", "time": "20031011 221415.25"}, _utc(2003, 10, 11, 22, 14, 15, frac=0.25)),
        ({"message": "m", "time": "11/Oct/2003 22:14:15"}, _utc(2003, 10, 11, 22, 14, 15)),
        ({"message": "m", "time": "11/Oct/2003:22:14:15 +0200"}, _utc(2003, 10, 11, 20, 14, 15)),
    ],
)
def test_json_time_fields(obj: dict[str, object], epoch: float) -> None:
    rec = _parse("json", json.dumps(obj))
    assert rec.matched and rec.content == "m"
    assert rec.timestamp == pytest.approx(epoch, abs=1e-6)


def test_json_offsets_after_a_zoneless_first_line() -> None:
    # The time pattern is learnt from the first line; later lines with a zone still count it.
    fmt = get_format("json")
    texts = [
        '{"msg": "a", "time": "2003-10-11T22:14:15.5"}',
        '{"msg": "b", "time": "2003-10-11T22:14:15.5+02:00"}',
        '{"msg": "c", "time": "2003-10-11T22:14:15.5Z"}',
        '{"msg": "d", "time": "2003-10-11T22:14:15.75"}',
    ]
    got = [fmt.parse(_line(t)).timestamp for t in texts]
    base = _utc(2003, 10, 11, 22, 14, 15)
    assert got == pytest.approx([base + 0.5, base - 7200 + 0.5, base + 0.5, base + 0.75])


@pytest.mark.parametrize(
    "raw",
    [
        '"not a time"',
        "NaN",
        "Infinity",  # Python's json reads these; an infinite time is no time
        "-Infinity",
        "1e999",
        pytest.param("9" * 400, id="huge-int"),  # an integer too large for a float
    ],
)
def test_json_unreadable_time_values(raw: str) -> None:
    fmt = get_format("json")
    stats = Stats()
    text = '{"message": "m", "ts": ' + raw + "}"
    (rec,) = list(fmt.records([_line(text)], stats))
    assert rec.matched and rec.content == "m"
    assert rec.timestamp is None
    assert stats.as_dict() == {"bad_timestamp": 1}


# --- 3. unmatched lines and unreadable timestamps -----------------------------------------


@pytest.mark.parametrize("spec", [p for p in PRESETS if p != "json"])
def test_unmatched_line_is_kept_whole(spec: str) -> None:
    text = "  no header here \t"
    rec = get_format(spec).parse(_line(text, 7))
    assert rec == Record(_line(text, 7), text, {}, None, False)


def test_records_counts_unmatched_and_bad_timestamps() -> None:
    fmt = get_format("hdfs")
    texts = [
        "081109 203615 148 INFO dfs.A: good one",
        "this line has no header",
        "081109 996615 148 INFO dfs.A: hour 99",  # matches, time unreadable
        "",
        "081309 203615 148 INFO dfs.A: month 13",
        "081109 203616 148 INFO dfs.A: good again",
    ]
    stats = Stats()
    recs = list(fmt.records((_line(t, i + 1) for i, t in enumerate(texts)), stats))
    assert [r.line.lineno for r in recs] == [1, 2, 3, 4, 5, 6]  # nothing dropped
    assert [r.matched for r in recs] == [True, False, True, False, True, True]
    assert [r.timestamp for r in recs] == [
        _utc(2008, 11, 9, 20, 36, 15),
        None,
        None,
        None,
        None,
        _utc(2008, 11, 9, 20, 36, 16),
    ]
    assert recs[1].content == "this line has no header" and recs[1].fields == {}
    assert recs[2].content == "hour 99" and recs[2].fields["Time"] == "996615"
    # The empty line is not counted here: readers count it as an empty line (it was
    # counted as both).
    assert stats.as_dict() == {"bad_timestamp": 2, "unmatched_format": 1}

    # A second pass counts only its own lines.
    again = Stats()
    list(fmt.records([_line(texts[2]), _line(texts[1])], again))
    assert again.as_dict() == {"bad_timestamp": 1, "unmatched_format": 1}


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("apache", "[not a time] [notice] msg"),
        ("apache", "[Sun Foo 04 04:47:44 2005] [notice] msg"),  # no such month
        ("hadoop", "2015-13-18 18:01:47,978 INFO [main] a.B: month 13"),
        ("hadoop", "2015-10-18 24:01:47,978 INFO [main] a.B: hour 24"),
        ("hadoop", "2015-10-18 18:61:47,978 INFO [main] a.B: minute 61"),
        ("hadoop", "2015-10-00 18:01:47,978 INFO [main] a.B: day 0"),
        # Days that no calendar has: not silently moved into the next month.
        ("hadoop", "2015-02-30 18:01:47,978 INFO [main] a.B: 30 February"),
        ("hadoop", "2015-04-31 18:01:47,978 INFO [main] a.B: 31 April"),
        ("hadoop", "2015-02-29 18:01:47,978 INFO [main] a.B: 29 February, not a leap year"),
        ("openstack", "n.log 2017-05-16 xx:00:00.008 1 INFO c [a] time is not a time"),
        ("linux", "Jun 32 15:16:01 combo sshd[1]: day 32"),
    ],
)
def test_unreadable_timestamp_counted(spec: str, text: str) -> None:
    fmt = get_format(spec, default_year=2005)
    stats = Stats()
    (rec,) = list(fmt.records([_line(text)], stats))
    assert rec.matched
    assert rec.timestamp is None
    assert stats.as_dict() == {"bad_timestamp": 1}


def test_a_leap_day_is_a_date() -> None:
    rec = _parse("hadoop", "2016-02-29 18:01:47,978 INFO [main] a.B: leap day")
    assert rec.timestamp == pytest.approx(_utc(2016, 2, 29, 18, 1, 47, frac=0.978))


def test_bad_timestamp_does_not_stop_later_lines() -> None:
    fmt = get_format("zookeeper")
    head = " - INFO  [n:c@1] - m"
    a = fmt.parse(_line("2015-07-29 17:41:44,747" + head)).timestamp
    b = fmt.parse(_line("garbage time" + head)).timestamp
    c = fmt.parse(_line("2015-07-29 17:41:45,001" + head)).timestamp
    d = fmt.parse(_line("2015-07-29 17:41:44,5" + head)).timestamp  # shorter fraction
    assert a == pytest.approx(_utc(2015, 7, 29, 17, 41, 44, frac=0.747))
    assert b is None
    assert c == pytest.approx(_utc(2015, 7, 29, 17, 41, 45, frac=0.001))
    assert d == pytest.approx(_utc(2015, 7, 29, 17, 41, 44, frac=0.5))


# --- 4. errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("<Date> <Time> <Level>", "Content"),  # no <Content>
        ("<Date> <Level> <Date> <Content>", "Date"),  # a repeated field
        ("<Date> (<Level> <Content>", "(<Level>"),  # unbalanced group
        (r"<Date> [<Level> <Content>", "[<Level>"),  # unterminated character set
        ("no_such_format", "no_such_format"),  # unknown preset
        ("<Da-te> <Content>", "'<Da-te>' is not a field name"),  # a typo: no line would match
        ("<Date > <Content>", "'<Date >' is not a field name"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_bad_specs_raise_format_error(spec: str, needle: str) -> None:
    assert issubclass(FormatError, ValueError)
    with pytest.raises(FormatError) as info:
        get_format(spec)
    assert needle in str(info.value)


def test_unknown_preset_message_lists_presets() -> None:
    with pytest.raises(ValueError, match="hdfs") as info:
        get_format("hdfss")
    assert "<Content>" in str(info.value)  # says how to write a format string


# --- 5. linear time on adversarial lines -------------------------------------------------------

# Per preset: a valid header up to its last header field, that field's name, the separator
# between it and the content, and the epoch the header states.
HEADS: dict[str, tuple[str, str, str, float]] = {
    "hdfs": ("081109 203615 148 INFO ", "Component", ": ", _utc(2008, 11, 9, 20, 36, 15)),
    "hadoop": (
        "2015-10-18 18:01:47,978 INFO [main] ",
        "Component",
        ": ",
        _utc(2015, 10, 18, 18, 1, 47, frac=0.978),
    ),
    "spark": ("17/06/09 20:10:40 INFO ", "Component", ": ", _utc(2017, 6, 9, 20, 10, 40)),
    "zookeeper": (
        "2015-07-29 17:41:44,747 - INFO  [n:c@",
        "Id",
        "] - ",
        _utc(2015, 7, 29, 17, 41, 44, frac=0.747),
    ),
    "bgl": (
        "- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.675872 R02 RAS KERNEL ",
        "Level",
        " ",
        _utc(2005, 6, 3, 15, 42, 50, frac=0.675872),
    ),
    "linux": ("Jun 14 15:16:01 combo ", "Component", ": ", _utc(2003, 6, 14, 15, 16, 1)),
    "apache": ("[Sun Dec 04 04:47:44 2005] [", "Level", "] ", _utc(2005, 12, 4, 4, 47, 44)),
    "openstack": (
        "nova-api.log 2017-05-16 00:00:00.008 25746 INFO nova.x [",
        "ADDR",
        "] ",
        _utc(2017, 5, 16, 0, 0, 0, frac=0.008),
    ),
}
N = 50_000
# No whitespace in any of them, so none can complete a separator by itself.
FILLERS = {
    "open": "[" * N,
    "close": "]" * N,
    "colon": ":" * N,
    "at": "@" * N,
    "backslash": "\\" * N,
    "angle": "<" * N,
}


@pytest.mark.parametrize("spec", list(PRESETS))
def test_long_adversarial_lines_without_header(spec: str) -> None:
    fmt = get_format(spec, default_year=2003)
    for text in [
        "[" * 2 * N,
        ":" * 2 * N,
        "<" * 2 * N,
        "\\" * 2 * N,
        "[:" * N,
        "]" * 2 * N,
        "-" * 2 * N,
    ]:
        rec = fmt.parse(_line(text))
        assert rec == Record(_line(text), text, {}, None, False), (spec, text[:10])

    # 100 KB of "a ": only BGL's header (nine blank-separated fields) matches it.
    text = "a " * N
    rec = fmt.parse(_line(text))
    if spec == "bgl":
        assert rec.matched
        assert set(rec.fields.values()) == {"a"} and len(rec.fields) == 9
        assert rec.content == "a " * (N - 10) + "a"
        assert rec.timestamp is None
    else:
        assert rec == Record(_line(text), text, {}, None, False), spec


@pytest.mark.parametrize("filler", list(FILLERS))
@pytest.mark.parametrize("spec", list(HEADS))
def test_long_adversarial_field_after_a_valid_header(spec: str, filler: str) -> None:
    head, field, sep, epoch = HEADS[spec]
    fill = FILLERS[filler]
    fmt = get_format(spec, default_year=2003)

    # The separator before the content never comes: no match, whatever the field holds.
    rec = fmt.parse(_line(head + fill))
    assert not rec.matched and rec.content == head + fill

    # It comes at the very end: the whole filler is the field, as logparser would split it.
    rec = fmt.parse(_line(head + fill + sep + "msg"))
    if spec == "linux" and "[" in fill:
        # Deliberate difference from logparser: a field before an optional group like
        # (\[<PID>\])? cannot hold the group's opening "[", which keeps matching linear.
        assert not rec.matched and rec.content == head + fill + sep + "msg"
        return
    assert rec.matched
    assert rec.fields[field] == fill
    assert rec.content == "msg"
    assert rec.timestamp == pytest.approx(epoch, abs=1e-6)


def test_long_adversarial_syslog_lines() -> None:
    fmt = get_format("syslog", default_year=2003)
    epoch = _utc(2003, 10, 11, 22, 14, 15)
    # A tag cannot start with "[": no match.
    text = "<34>Oct 11 22:14:15 host " + "[" * N
    assert not fmt.parse(_line(text)).matched
    # An unclosed [pid]: the rest is the message.
    rec = fmt.parse(_line("<34>Oct 11 22:14:15 host prog[" + "[" * N))
    assert rec.matched and rec.fields["Tag"] == "prog" and rec.content == "[" * (N + 1)
    assert rec.timestamp == epoch
    rec = fmt.parse(_line("Oct 11 22:14:15 host prog: " + ": " * N))
    assert rec.matched and rec.content == (": " * N).strip()

    fmt = get_format("syslog5424")
    head = "<165>1 2003-10-11T22:14:15.003Z host app - ID47 "
    for tail in ["[" * N, "[\\" * N, "[a]" * N + "x", '[a x="' + "\\" * (2 * N - 1) + "]"]:
        assert not fmt.parse(_line(head + tail)).matched, tail[:10]
    rec = fmt.parse(_line(head + "[a]" * N + " msg"))
    assert rec.matched and rec.fields["StructuredData"] == "[a]" * N and rec.content == "msg"

    fmt = get_format("json")
    for text in ['{"message": "' + "[" * N, '{"message": ' + "[" * N + "]" * N + "}"]:
        assert not fmt.parse(_line(text)).matched


# --- 6. random text never breaks parse ----------------------------------------------------------

SEPARATORS = [
    " ",
    "  ",
    "\t",
    ":",
    ": ",
    "[",
    "]",
    "] ",
    "<",
    ">",
    "-",
    " - ",
    "@",
    "(",
    ")",
    "{",
    "}",
    '"',
    "\\",
    ",",
    ".",
    "\x00",
    "\ufffd",
    "\r",
    "\n",
    "\u2028",
    "\xa0",
    "\ufeff",
]
HEADERS = [h for h, _, _, _ in HEADS.values()] + [
    "<34>Oct 11 22:14:15 host prog[1]: ",
    "Oct  1 22:14:15 2004 host ",
    "<165>1 2003-10-11T22:14:15.003Z host app - ID47 ",
    "<165>1 - - - - - [",
    '{"message": "',
    '{"msg": ',
]
_piece = st.one_of(
    st.text(max_size=30),
    st.sampled_from(SEPARATORS),
    st.sampled_from(HEADERS),
    st.from_regex(r"\d{1,4}[-/:. ,]\d{1,2}", fullmatch=True),
)
_short = st.lists(_piece, max_size=40).map("".join)
_long = st.tuples(
    st.one_of(st.sampled_from(SEPARATORS), st.text(min_size=1, max_size=4)),
    st.integers(min_value=500, max_value=2500),
).map(lambda t: t[0] * t[1])
random_lines = st.one_of(_short, _long, st.tuples(st.sampled_from(HEADERS), _long).map("".join))


def _check_record(fmt: LogFormat, text: str, rec: Record) -> None:
    assert isinstance(rec, Record)
    assert rec.line.text == text
    assert isinstance(rec.content, str)
    assert rec.timestamp is None or (
        isinstance(rec.timestamp, float) and math.isfinite(rec.timestamp)
    )
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rec.fields.items())
    if not rec.matched:
        assert rec.content == text and rec.fields == {} and rec.timestamp is None
    elif fmt.name != "json":  # JSON content is a decoded value, not a slice of the line
        assert rec.content in text.strip()
        assert set(rec.fields) <= set(fmt.header_fields)


@pytest.mark.parametrize("spec", list(PRESETS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(random_lines, min_size=1, max_size=3))
def test_random_text_never_breaks_parse(spec: str, texts: list[str]) -> None:
    fmt = get_format(spec)
    stats = Stats()
    recs = list(fmt.records((_line(t) for t in texts), stats))
    assert len(recs) == len(texts)
    for text, rec in zip(texts, recs, strict=True):
        _check_record(fmt, text, rec)
    # an empty line is counted as an empty line by the reader, not as unmatched here
    unmatched = sum(not r.matched and bool(t) for t, r in zip(texts, recs, strict=True))
    assert stats["unmatched_format"] == unmatched


_whitespace = st.sampled_from(
    [" ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2028", "\u3000"]
)
_word = st.one_of(st.text(max_size=6), st.sampled_from([":", "-", "[x]", "a:", "<1>", "(2)"]))
# Words joined by runs of any whitespace: lines that fit a format's fields, or nearly.
_field_text = st.tuples(
    st.lists(
        st.tuples(_word, st.lists(_whitespace, min_size=1, max_size=2).map("".join)), max_size=14
    ),
    _word,
).map(lambda t: "".join(w + ws for w, ws in t[0]) + t[1])


@pytest.mark.parametrize("spec", [*PRESETS, "<A> <B>:<C> - <D> <Content>", "<A>  <B>\t<Content>"])
@settings(max_examples=150, deadline=None)
@given(text=_field_text)
def test_fields_before_whitespace_match_as_the_lazy_form(spec: str, text: str) -> None:
    """A field followed by whitespace is matched as ``\\S*`` (its end found at once); the
    lazy ``.*?`` form it replaced ends the field at the first whitespace too, whatever the
    whitespace (tabs, newlines, Unicode spaces). Both must split every line alike."""
    import re

    fmt = get_format(spec)
    pattern = getattr(fmt, "regex", None)
    if pattern is None:
        return  # JSON and syslog presets have no loghub pattern
    # Every field that spaces alone end (not the message, not the last) takes the fast form.
    parts = re.split(r"<(\w+)>", fmt.spec)
    names, literals = parts[1::2], parts[0::2]
    spaced = sum(
        name != "Content" and i < len(names) - 1 and re.fullmatch(" +", literals[i + 1]) is not None
        for i, name in enumerate(names)
    )
    assert pattern.pattern.count(r"\S*)\s+)") == spaced
    lazy = re.compile(pattern.pattern.replace(r"\S*)\s+)", r".*?)\s+)"), pattern.flags)
    for line in (text, text.strip()):
        got, want = pattern.fullmatch(line), lazy.fullmatch(line)
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got.groupdict() == want.groupdict()


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.from_regex(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?", fullmatch=True
    ),
)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_json_keys = st.sampled_from(
    ["message", "msg", "log", "ts", "time", "timestamp", "@timestamp", "level"]
)


@settings(max_examples=200, deadline=None)
@given(obj=st.dictionaries(_json_keys | st.text(max_size=5), _json_value, max_size=6))
def test_random_json_objects_never_break_parse(obj: dict[str, object]) -> None:
    fmt = get_format("json")
    text = json.dumps(obj)
    rec = fmt.parse(_line(text))
    _check_record(fmt, text, rec)
    key = next((k for k in ("message", "msg", "log") if k in obj), None)
    if rec.matched:
        assert key is not None
        value = obj[key]
        if isinstance(value, str):
            assert rec.content == value
    elif key is not None:
        assert not isinstance(obj[key], str)  # a text message always makes a record


# --- 5. --format auto ------------------------------------------------------------------------

# Lines written here in each preset's shape (no shared data: the test runs anywhere).
_SHAPES = {
    "hdfs": "081109 2036{i:02d} 1{i}8 INFO dfs.DataNode$PacketResponder: Received block blk_{i}",
    "spark": "17/06/09 20:10:{i:02d} INFO executor.Backend: Registered handler {i}",
    "hadoop": "2015-10-18 18:01:{i:02d},978 INFO [main] org.apache.App: Created app {i}",
    "zookeeper": "2015-07-29 17:41:{i:02d},747 - INFO  [Peer[myid=1]:Election@774] - Timeout {i}",
    "bgl": "- 111783857{i} 2005.06.03 R02-M1-N0 2005-06-03-15.42.{i:02d}.675872 R02-M1-N0 RAS "
    "KERNEL INFO cache parity error {i} corrected",
    "linux": "Jun 14 15:16:{i:02d} combo sshd(pam_unix)[199{i}]: authentication failure {i}",
    "apache": "[Sun Dec 04 04:47:{i:02d} 2005] [notice] workerEnv.init() ok {i}",
    "openstack": "nova-api.log.1 2017-05-16 00:00:{i:02d}.008 25746 INFO nova.api [req-{i} x] "
    "GET /v2 {i}",
    "json": '{{"time": "2026-01-01T00:00:{i:02d}Z", "message": "request {i} done"}}',
}


@pytest.mark.parametrize("name", sorted(_SHAPES))
def test_guess_format_finds_each_preset(name: str) -> None:
    lines = [_SHAPES[name].format(i=i) for i in range(40)] + [""]  # blank lines do not count
    ranked = guess_format(lines)
    # A Linux syslog line is an RFC 3164 line too: either preset reads it whole.
    fits = {"linux", "syslog"} if name == "linux" else {name}
    assert ranked[0][0] in fits and ranked[0][1] == 1.0, ranked[:3]


def test_guess_format_ranks_a_foreign_log_low() -> None:
    ranked = guess_format([f"just some text {i}" for i in range(20)])
    assert ranked[0][1] < 0.5
    assert guess_format([]) == []


def test_unescaped_literals_finds_regex_characters_outside_the_fields() -> None:
    from logwarden.io.formats import unescaped_literals

    assert unescaped_literals("[<Time>] (<Pid>) <Content>") == (
        ["[", "]", "(", ")"],
        r"\[<Time>\] \(<Pid>\) <Content>",
    )
    assert unescaped_literals(r"<Date> \[<Pid>\] <Content>") is None
    assert unescaped_literals("<Date> <Time>: <Content>") is None
    assert unescaped_literals("linux") is None and unescaped_literals("json:msg") is None
