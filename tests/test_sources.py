"""Tests for logwarden.sources: positions, bad input, gzip, globs, stdin, follow mode."""

from __future__ import annotations

import gzip
import io
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logwarden.io.sources import (
    FileRange,
    FollowConfig,
    Follower,
    LineReader,
    SourceConfig,
    file_of,
    follow,
    read_lines,
)
from logwarden.records import BAD_UTF8, NUL_BYTES, TRUNCATED, Line, Stats

# --------------------------------------------------------------------------- helpers


def reference_lines(data: bytes, limit: int) -> list[tuple[str, int, int, int]]:
    """The spec, written the slow obvious way: (text, offset, lineno, flags) per line."""
    out = []
    pos = 0
    lineno = 1
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            raw, nxt = data[pos:], len(data)  # final line without terminator: "\r" kept
        else:
            raw, nxt = data[pos:nl], nl + 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        flags = 0
        if len(raw) > limit:
            cut = limit
            # drop a character that would be split: back over at most 3 continuation bytes
            for _ in range(3):
                if cut > 0 and raw[cut] & 0xC0 == 0x80:
                    cut -= 1
                else:
                    break
            raw = raw[:cut]
            flags |= TRUNCATED
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            flags |= BAD_UTF8
        if "\0" in text:
            text = text.replace("\0", "\ufffd")
            flags |= NUL_BYTES
        out.append((text, pos, lineno, flags))
        pos = nxt
        lineno += 1
    return out


def as_tuples(lines: list[Line]) -> list[tuple[str, int, int, int]]:
    return [(ln.text, ln.offset, ln.lineno, ln.flags) for ln in lines]


def read_all(
    paths: list[str], stats: Stats | None = None, **cfg: int
) -> tuple[list[Line], LineReader]:
    reader = LineReader(paths, SourceConfig(**cfg), stats)
    return list(reader), reader


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


MIXED = (
    b"first line\n"
    b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 multi-byte\r\n"
    b"\n"
    b"\r\n"
    b"lone \r inside\n"
    b"two cr\r\r\n"
    b"bad \xff\xfe utf8\n"
    b"nul \x00 byte\n"
    b"ends with cr and no newline\r"
)


# --------------------------------------------------------------------------- plain reading


def test_offsets_and_line_numbers_point_at_the_bytes(tmp_path: Path) -> None:
    data = MIXED.replace(b"\xff\xfe", b"").replace(b"\x00", b"")  # valid UTF-8, no NUL
    path = write(tmp_path / "a.log", data)
    lines, reader = read_all([path])
    assert [ln.lineno for ln in lines] == list(range(1, 10))
    for ln in lines:
        assert ln.source == path
        assert ln.flags == 0
        assert data[ln.offset :].startswith(ln.text.encode())
        # the line starts at the file start or right after a "\n"
        assert ln.offset == 0 or data[ln.offset - 1 : ln.offset] == b"\n"
    assert reader.stats["lines_read"] == 9
    assert reader.files_read == 1
    assert reader.errors == []


def test_a_line_number_across_the_inputs_names_its_file(tmp_path: Path) -> None:
    """``LineReader.files`` says where each input starts; ``file_of`` maps a line number
    counted across the inputs (as verdicts give it) to the file and the line there, past
    empty and missing inputs."""
    a = write(tmp_path / "a.log", b"a1\n\na3\n")
    empty = write(tmp_path / "empty.log", b"")
    b = write(tmp_path / "b.log", b"b1\nb2")
    reader = LineReader([a, empty, str(tmp_path / "missing.log"), b])
    texts = [ln.text for ln in reader]
    assert texts == ["a1", "", "a3", "b1", "b2"]
    assert reader.files == [(0, a), (3, empty), (3, b)]
    got = [file_of(reader.files, n) for n in range(1, 6)]
    assert got == [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2)]
    assert file_of(reader.files, 0) is None and file_of([], 3) is None


def test_crlf_lone_cr_and_missing_final_newline(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", b"a\r\nb\r\r\nc\rd\n\r\nlast\r")
    assert [ln.text for ln in read_lines([path])] == ["a", "b\r", "c\rd", "", "last\r"]


def test_final_line_without_newline_and_empty_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", b"\n\nx\n\ntail")
    lines = list(read_lines([path]))
    assert [(ln.text, ln.offset, ln.lineno) for ln in lines] == [
        ("", 0, 1),
        ("", 1, 2),
        ("x", 2, 3),
        ("", 4, 4),
        ("tail", 5, 5),
    ]


def test_empty_file_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.log", b"")
    lines, reader = read_all([path])
    assert lines == []
    assert reader.stats["empty_file"] == 1
    assert reader.errors == []
    assert reader.files_read == 1


def test_invalid_utf8_is_replaced_flagged_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", b"ok\nbad \xff\xfe x\n\xc3\n" + b"fine \xc3\xa9\n")
    stats = Stats()
    lines, _ = read_all([path], stats)
    assert [ln.text for ln in lines] == ["ok", "bad \ufffd\ufffd x", "\ufffd", "fine é"]
    assert [ln.flags for ln in lines] == [0, BAD_UTF8, BAD_UTF8, 0]
    assert stats["invalid_utf8"] == 2


def test_nul_bytes_are_replaced_flagged_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", b"a\x00b\x00\nclean\n\x00")
    stats = Stats()
    lines, _ = read_all([path], stats)
    assert [ln.text for ln in lines] == ["a\ufffdb\ufffd", "clean", "\ufffd"]
    assert [ln.flags for ln in lines] == [NUL_BYTES, 0, NUL_BYTES]
    assert stats["nul_bytes"] == 2


def test_bad_lines_keep_their_neighbours_right(tmp_path: Path) -> None:
    # A bad line in the middle of a big chunk: the lines around it keep exact positions.
    good = [f"line {i} caf\u00e9".encode() for i in range(5000)]
    good[2500] = b"broken \xff line"
    good[4000] = b"nul \x00 line"
    data = b"\n".join(good) + b"\n"
    path = write(tmp_path / "a.log", data)
    lines, reader = read_all([path])
    assert as_tuples(lines) == reference_lines(data, 65536)
    assert reader.stats["invalid_utf8"] == 1
    assert reader.stats["nul_bytes"] == 1


# --------------------------------------------------------------------------- long lines


def test_10mb_line_is_truncated_with_bounded_memory(tmp_path: Path) -> None:
    big = 10 * 1024 * 1024
    data = b"x" * big + b"\nnext line\n" + b"y" * big  # the last one has no newline
    path = write(tmp_path / "big.log", data)
    stats = Stats()
    tracemalloc.start()
    try:
        lines = [(ln.text[:3], len(ln.text), ln.offset, ln.lineno, ln.flags) for ln in
                 read_lines([path], stats=stats)]  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [
        ("xxx", 65536, 0, 1, TRUNCATED),
        ("nex", 9, big + 1, 2, 0),
        ("yyy", 65536, big + 11, 3, TRUNCATED),
    ]
    assert stats["truncated_line"] == 2
    # Holding one whole 10 MB line would need > 10 MB; reading in 1 MiB chunks needs a few.
    assert peak < 6 * 1024 * 1024, peak


@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
def test_truncation_never_splits_a_character(tmp_path: Path, chunk: int) -> None:
    euro = "\u20ac".encode()  # 3 bytes
    smile = "\U0001f600".encode()  # 4 bytes
    data = (
        b"a" * 9 + euro + b"\n"  # euro straddles the 10-byte limit: dropped whole
        + b"a" * 7 + euro + b"bb\n"  # euro ends exactly at the limit: kept
        + b"a" * 8 + smile + b"\n"  # 4-byte character straddling
        + b"b" * 10 + b"\r\n"  # exactly the limit (terminator not counted): untouched
        + b"c" * 11 + b"\n"  # one over: cut
    )  # fmt: skip
    path = write(tmp_path / "a.log", data)
    stats = Stats()
    lines, _ = read_all([path], stats, max_line_bytes=10, chunk_bytes=chunk)
    assert [(ln.text, ln.flags) for ln in lines] == [
        ("a" * 9, TRUNCATED),
        ("a" * 7 + "\u20ac", TRUNCATED),
        ("a" * 8, TRUNCATED),
        ("b" * 10, 0),
        ("c" * 10, 0 | TRUNCATED),
    ]
    assert stats["truncated_line"] == 4
    assert stats["invalid_utf8"] == 0
    assert as_tuples(lines) == reference_lines(data, 10)


# --------------------------------------------------------------------------- gzip


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(1000))
    with_ext = write(tmp_path / "a.log.gz", gzip.compress(data))
    no_ext = write(tmp_path / "b.log", gzip.compress(data))
    fake_gz = write(tmp_path / "plain.gz", data)  # a ".gz" name on plain text
    expected = reference_lines(data, 65536)
    for path in (with_ext, no_ext, fake_gz):
        lines, reader = read_all([path])
        assert as_tuples(lines) == expected, path
        assert reader.errors == []


def test_gzip_multi_member_offsets_are_in_the_decompressed_stream(tmp_path: Path) -> None:
    part1 = b"one\ntwo\npartial "
    part2 = b"line\nthree\n"
    path = write(tmp_path / "multi", gzip.compress(part1) + gzip.compress(part2))
    lines, reader = read_all([path], chunk_bytes=5)
    assert as_tuples(lines) == reference_lines(part1 + part2, 65536)
    assert [ln.text for ln in lines] == ["one", "two", "partial line", "three"]
    assert reader.errors == []


def test_truncated_gzip_yields_what_it_can_and_counts(tmp_path: Path) -> None:
    data = b"".join(b"log line number %06d with some text\n" % i for i in range(20000))
    blob = gzip.compress(data)
    path = write(tmp_path / "cut.gz", blob[: len(blob) // 2])
    other = write(tmp_path / "after.log", b"still read\n")
    lines, reader = read_all([path, other])
    got = [ln for ln in lines if ln.source == path]
    assert len(got) > 1000  # half the compressed data holds many lines
    expected = reference_lines(data, 65536)
    # every complete line is exact; the last one may be cut where the data stops
    assert as_tuples(got[:-1]) == expected[: len(got) - 1]
    last = got[-1]
    assert expected[len(got) - 1][0].startswith(last.text)
    assert [ln.text for ln in lines if ln.source == other] == ["still read"]
    assert reader.stats["truncated_gzip"] == 1
    assert [p for p, _ in reader.errors] == [path]


def test_corrupt_gzip_header_is_counted(tmp_path: Path) -> None:
    bad = bytearray(gzip.compress(b"hello\n"))
    bad[2] = 0x09  # compression method: only 8 (deflate) exists
    path = write(tmp_path / "bad.gz", bytes(bad))
    other = write(tmp_path / "ok.log", b"ok\n")
    lines, reader = read_all([path, other])
    assert [ln.text for ln in lines] == ["ok"]
    assert reader.stats["corrupt_gzip"] == 1
    assert reader.errors[0][0] == path
    assert "gzip" in reader.errors[0][1]


def test_gzip_trailing_garbage_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "g.gz", gzip.compress(b"a\nb\n") + b"\0\0garbage")
    lines, reader = read_all([path])
    assert [ln.text for ln in lines] == ["a", "b"]
    assert reader.stats["corrupt_gzip"] == 1


# --------------------------------------------------------------------------- inputs


# --------------------------------------------------------------------------- UTF-16


@pytest.mark.parametrize("chunk", [1, 3, 64, 65536])
def test_utf16_with_a_byte_order_mark_reads_as_its_text(tmp_path: Path, chunk: int) -> None:
    # Windows tools write UTF-16 (PowerShell's ">", exported event logs): detected by the
    # byte order mark, in either byte order, plain or gzipped, the chunks cut anywhere
    # (inside a character, a surrogate pair or the mark itself).
    text = "first \u00e9\r\nsecond \U0001f600 \u20ac\nthird"
    want = ["first \u00e9", "second \U0001f600 \u20ac", "third"]
    for i, data in enumerate(
        [text.encode("utf-16"), "\ufeff".encode("utf-16-be") + text.encode("utf-16-be")]
    ):
        for j, raw in enumerate([data, gzip.compress(data)]):
            stats = Stats()
            lines, reader = read_all(
                [write(tmp_path / f"w{i}{j}.log", raw)], stats, chunk_bytes=chunk
            )
            assert [ln.text for ln in lines] == want and reader.errors == []
            assert all(ln.flags == 0 for ln in lines) and stats["invalid_utf8"] == 0
            # Offsets count in the UTF-8 form, as in a decompressed stream.
            first, second = (
                len(t.encode()) for t in ("first \u00e9\r\n", "second \U0001f600 \u20ac\n")
            )
            assert [ln.offset for ln in lines] == [0, first, first + second]


def test_invalid_utf16_is_flagged_and_counted_not_dropped(tmp_path: Path) -> None:
    lone = "\ufeffok\n".encode("utf-16-le") + b"\x00\xd8" + "x\nfine\n".encode("utf-16-le")
    stats = Stats()
    lines, _ = read_all([write(tmp_path / "a.log", lone + b"z")], stats)  # odd last byte
    assert [ln.text for ln in lines][:3] == ["ok", "\ufffd\ufffd\ufffdx", "fine"]
    assert [ln.flags for ln in lines] == [0, BAD_UTF8, 0, BAD_UTF8]
    assert stats["invalid_utf8"] == 2


def test_missing_file_and_directory_are_counted_and_others_read(tmp_path: Path) -> None:
    first = write(tmp_path / "1.log", b"one\n")
    last = write(tmp_path / "2.log", b"two\n")
    missing = str(tmp_path / "nope.log")
    directory = str(tmp_path)
    lines, reader = read_all([first, missing, directory, last])
    assert [(ln.text, ln.source) for ln in lines] == [("one", first), ("two", last)]
    assert reader.stats["unreadable_file"] == 2
    assert [p for p, _ in reader.errors] == [missing, directory]
    assert all(message for _, message in reader.errors)
    assert reader.files_read == 2


def test_glob_is_expanded_sorted_and_no_match_is_counted(tmp_path: Path) -> None:
    for name in ("b.log", "a.log", "c.log", "skip.txt"):
        write(tmp_path / name, name.encode() + b"\n")
    pattern = str(tmp_path / "*.log")
    nothing = str(tmp_path / "*.nothing")
    lines, reader = read_all([nothing, pattern])
    assert [ln.text for ln in lines] == ["a.log", "b.log", "c.log"]
    assert [ln.source for ln in lines] == [str(tmp_path / n) for n in ("a.log", "b.log", "c.log")]
    assert reader.stats["glob_no_match"] == 1
    assert reader.errors == [(nothing, "no files match this pattern")]


def test_existing_name_with_glob_characters_is_literal(tmp_path: Path) -> None:
    odd = write(tmp_path / "log[1].txt", b"literal\n")
    write(tmp_path / "log1.txt", b"would match the pattern\n")
    assert [ln.text for ln in read_lines([odd])] == ["literal"]


def test_stdin_text_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"from stdin\r\nsecond \xff\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    lines, reader = read_all(["-"])
    assert [(ln.text, ln.source, ln.offset) for ln in lines] == [
        ("from stdin", "<stdin>", 0),
        ("second \ufffd", "<stdin>", 12),
    ]
    assert reader.stats["invalid_utf8"] == 1


def test_stdin_raw_buffer_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.BytesIO(gzip.compress(b"zipped\nstdin\n")))
    assert [ln.text for ln in read_lines(["-"])] == ["zipped", "stdin"]


def test_stdin_missing_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    lines, reader = read_all(["-"])
    assert lines == []
    assert reader.stats["unreadable_file"] == 1


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        SourceConfig(max_line_bytes=0)
    with pytest.raises(ValueError, match="chunk_bytes"):
        SourceConfig(chunk_bytes=0)
    with pytest.raises(ValueError, match="poll_interval"):
        FollowConfig(poll_interval=0)
    with pytest.raises(TypeError):
        LineReader("a.log")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- chunk boundaries


CORPUS = (
    MIXED
    + b"\n".join(b"w" * n for n in range(0, 40))
    + b"\r\n\r\n\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\n"
    + b"\xf0\x9f\x98\x80" * 6
    + b"\n\x00\x00\r\n"
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 13, 64, 1 << 20])
@pytest.mark.parametrize("limit", [1, 5, 12, 65536])
def test_chunk_boundaries_match_reference(tmp_path: Path, chunk: int, limit: int) -> None:
    path = write(tmp_path / "c.log", CORPUS)
    stats = Stats()
    lines, _ = read_all([path], stats, chunk_bytes=chunk, max_line_bytes=limit)
    expected = reference_lines(CORPUS, limit)
    assert as_tuples(lines) == expected
    assert stats["lines_read"] == len(expected)
    assert stats["truncated_line"] == sum(1 for e in expected if e[3] & TRUNCATED)
    assert stats["invalid_utf8"] == sum(1 for e in expected if e[3] & BAD_UTF8)
    assert stats["nul_bytes"] == sum(1 for e in expected if e[3] & NUL_BYTES)


def test_large_file_with_small_pieces_matches_reference(tmp_path: Path) -> None:
    # Big enough to cross 1 MiB chunks and the per-piece retry after a bad line.
    rows = [f"{i:07d} some log text caf\u00e9 {i * 7919 % 1000}".encode() for i in range(60000)]
    for i in range(0, 60000, 7001):
        rows[i] += b"\xff"
    for i in range(3, 60000, 9999):
        rows[i] += b"\r"
    rows[30000] = b"z" * 70000  # over the default limit, inside a chunk
    data = b"\n".join(rows)
    path = write(tmp_path / "big.log", data)
    lines, _ = read_all([path])
    assert as_tuples(lines) == reference_lines(data, 65536)


# Pieces that make lines interesting: terminators, NUL, valid multi-byte characters and
# stray lead/continuation bytes (invalid UTF-8).
_PIECES = b"a|b| |\n|\r|\r\n|\x00|\xff|\xc3|\xa9|\xc3\xa9|\xe2\x82\xac|\xf0\x9f\x98\x80|\x80"
_BYTES = st.lists(st.sampled_from(_PIECES.split(b"|")), max_size=60).map(b"".join)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=_BYTES, chunk=st.integers(1, 16), limit=st.integers(1, 40), zipped=st.booleans())
def test_random_bytes_never_raise_and_round_trip(
    tmp_path: Path, data: bytes, chunk: int, limit: int, zipped: bool
) -> None:
    path = write(tmp_path / "h.bin", gzip.compress(data) if zipped else data)
    stats = Stats()
    lines, reader = read_all([path], stats, chunk_bytes=chunk, max_line_bytes=limit)
    assert reader.errors == []
    assert as_tuples(lines) == reference_lines(data, limit)
    altered = any(ln.flags for ln in lines)
    if not altered:
        # Put the terminators back (their lengths follow from the offsets): that is the input.
        rebuilt = []
        for i, ln in enumerate(lines):
            end = ln.offset + len(ln.text.encode())
            nxt = lines[i + 1].offset if i + 1 < len(lines) else len(data)
            terminator = {0: "", 1: "\n", 2: "\r\n"}[nxt - end]
            rebuilt.append(ln.text + terminator)
        assert "".join(rebuilt).encode() == data


# --------------------------------------------------------------------------- follow mode


class Collector:
    """Runs a follower in a thread and collects its lines."""

    def __init__(self, path: Path, **cfg: object) -> None:
        self.stop = threading.Event()
        self.stats = Stats()
        config = FollowConfig(**{"poll_interval": 0.01, **cfg})  # type: ignore[arg-type]
        self.follower = Follower(str(path), config, self.stats, self.stop)
        self.lines: list[Line] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        # Writes must come after the follower has looked at the file, or "start at the
        # end" would include them: wait until it opened the file or found it missing.
        self.wait_for(
            lambda: self.stats["files_read"] + self.stats["file_missing"] > 0, "follower start"
        )

    def _run(self) -> None:
        try:
            for line in self.follower:
                self.lines.append(line)
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def texts(self) -> list[str]:
        return [ln.text for ln in self.lines]

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert self.error is None, self.error
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; got {self.texts()!r}")
            time.sleep(0.005)

    def wait_lines(self, n: int) -> None:
        self.wait_for(lambda: len(self.lines) >= n, f"{n} lines")

    def finish(self) -> list[Line]:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive(), "follower did not stop"
        assert self.error is None, self.error
        return self.lines


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    made: list[Collector] = []
    yield made
    for c in made:  # never leave a thread running after a failed test
        c.stop.set()
        c.thread.join(5)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_follow_starts_at_end_and_picks_up_appends(
    tmp_path: Path, collectors: list[Collector]
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"old 1\nold 2\npart")
    c = Collector(path)
    collectors.append(c)
    append(path, b"ial\nnew 1\n")
    c.wait_lines(2)
    append(path, b"new 2\n")
    c.wait_lines(3)
    lines = c.finish()
    data = path.read_bytes()
    assert [(ln.text, ln.offset, ln.lineno) for ln in lines] == [
        ("partial", 12, 3),
        ("new 1", 20, 4),
        ("new 2", 26, 5),
    ]
    assert all(data[ln.offset :].startswith(ln.text.encode()) for ln in lines)


def test_follow_from_start_and_max_lines(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"a\nb\nc\nd\n")
    config = FollowConfig(from_start=True, max_lines=3, poll_interval=0.01, idle_timeout=5)
    assert [ln.text for ln in follow(str(path), config)] == ["a", "b", "c"]


def test_follow_idle_timeout_stops_and_flushes_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"x\nunfinished")
    config = FollowConfig(from_start=True, poll_interval=0.01, idle_timeout=0.05)
    lines = list(follow(str(path), config))
    assert [(ln.text, ln.offset) for ln in lines] == [("x", 0), ("unfinished", 2)]


def test_follow_waits_for_file_to_appear(tmp_path: Path, collectors: list[Collector]) -> None:
    path = tmp_path / "later.log"
    c = Collector(path)
    collectors.append(c)
    assert c.stats["file_missing"] == 1  # it has seen the path missing (Collector waited)
    path.write_bytes(b"born\nsecond\n")  # appeared after the start: read from its start
    c.wait_lines(2)
    lines = c.finish()
    assert [(ln.text, ln.offset, ln.lineno) for ln in lines] == [
        ("born", 0, 1),
        ("second", 5, 2),
    ]
    assert c.follower.errors == []


def test_follow_survives_rename_rotation_without_loss_or_duplicates(
    tmp_path: Path, collectors: list[Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.log"
    rotated = tmp_path / "app.log.1"
    path.write_bytes(b"")
    c = Collector(path)
    collectors.append(c)
    append(path, b"old 1\nold 2\n")
    c.wait_lines(2)

    # The hard case: the old file gets more data between the follower's last read and
    # its check for rotation. Inject that write into the check itself: the follower's
    # stat of the path, once the file was renamed.
    real_stat = os.stat
    injected = threading.Event()

    def stat_with_late_write(p: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if not injected.is_set() and isinstance(p, str | os.PathLike) and os.fspath(p) == str(path):
            try:
                real_stat(rotated)
            except FileNotFoundError:
                pass  # not renamed yet
            else:
                append(rotated, b"old 3 (late)\nold tail without newline")
                injected.set()
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_with_late_write)
    os.rename(path, rotated)
    c.wait_for(injected.is_set, "late write")
    path.write_bytes(b"new 1\n")
    c.wait_lines(5)
    append(path, b"new 2\n")
    c.wait_lines(6)
    lines = c.finish()
    assert [ln.text for ln in lines] == [
        "old 1",
        "old 2",
        "old 3 (late)",
        "old tail without newline",
        "new 1",
        "new 2",
    ]
    assert [(ln.offset, ln.lineno) for ln in lines] == [
        (0, 1), (6, 2), (12, 3), (25, 4),  # old file
        (0, 1), (6, 2),  # new file starts over
    ]  # fmt: skip
    assert c.stats["file_rotated"] == 1


def test_follow_reads_the_renamed_file_until_the_new_one_appears(
    tmp_path: Path, collectors: list[Collector]
) -> None:
    """logrotate without ``create``: the file is renamed, the application goes on writing
    to it for a while, and only then reopens the path. Those lines are read."""
    path = tmp_path / "app.log"
    rotated = tmp_path / "app.log.1"
    path.write_bytes(b"")
    c = Collector(path)
    collectors.append(c)
    append(path, b"old 1\n")
    c.wait_lines(1)
    os.rename(path, rotated)
    time.sleep(0.2)  # many polls with the path missing
    append(rotated, b"old 2 (late)\n")
    c.wait_lines(2)
    path.write_bytes(b"new 1\n")
    c.wait_lines(3)
    assert c.finish() and c.texts() == ["old 1", "old 2 (late)", "new 1"]
    assert c.stats["file_rotated"] == 1


def test_follow_repeated_rotation_loses_nothing(
    tmp_path: Path, collectors: list[Collector]
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    c = Collector(path)
    collectors.append(c)
    expected: list[str] = []
    for gen in range(4):
        for i in range(3):
            line = f"gen {gen} line {i}"
            append(path, line.encode() + b"\n")
            expected.append(line)
        c.wait_lines(len(expected))  # written lines are seen before the next rotation
        os.rename(path, tmp_path / f"app.log.{gen}")
        path.write_bytes(b"")
    append(path, b"final\n")
    expected.append("final")
    c.wait_lines(len(expected))
    assert c.finish() and c.texts() == expected
    assert c.stats["file_rotated"] >= 4


def test_follow_survives_truncation_in_place(tmp_path: Path, collectors: list[Collector]) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    c = Collector(path)
    collectors.append(c)
    append(path, b"before truncation 1\nbefore truncation 2\n")
    c.wait_lines(2)
    with open(path, "r+b") as f:  # copytruncate: same file, emptied, written again
        f.truncate(0)
    c.wait_for(lambda: c.stats["file_truncated"] >= 1, "truncation seen")
    append(path, b"after 1\nafter 2\n")
    c.wait_lines(4)
    lines = c.finish()
    assert [(ln.text, ln.offset, ln.lineno) for ln in lines] == [
        ("before truncation 1", 0, 1),
        ("before truncation 2", 20, 2),
        ("after 1", 0, 1),
        ("after 2", 8, 2),
    ]


def test_follow_truncation_detected_when_new_content_is_shorter(
    tmp_path: Path, collectors: list[Collector]
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    c = Collector(path)
    collectors.append(c)
    append(path, b"a long line before the truncation\n")
    c.wait_lines(1)
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(b"short\n")
    c.wait_lines(2)
    assert [ln.text for ln in c.finish()] == ["a long line before the truncation", "short"]


def test_follow_stop_event_interrupts_the_poll_wait(
    tmp_path: Path, collectors: list[Collector]
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    # A poll interval far longer than the join timeout: only the Event can end the wait.
    c = Collector(path, poll_interval=600.0)
    collectors.append(c)
    assert c.finish() == []


def test_follow_unreadable_path_is_recorded_once(tmp_path: Path) -> None:
    stats = Stats()
    follower = Follower(str(tmp_path), FollowConfig(poll_interval=0.01, idle_timeout=0.1), stats)
    assert list(follower) == []
    assert stats["unreadable_file"] == 1
    assert len(follower.errors) == 1
    assert follower.errors[0][0] == str(tmp_path)


def test_follow_stdin_reads_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.BytesIO(b"p\nq\n"))
    assert [ln.text for ln in follow("-")] == ["p", "q"]


def test_path_objects_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    path.write_bytes(b"via pathlib\n")
    assert [(ln.text, ln.source) for ln in read_lines([path])] == [("via pathlib", str(path))]


@pytest.mark.parametrize("packed", [False, True])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path, packed: bool) -> None:
    """Notepad and PowerShell 7 start UTF-8 files with a byte order mark: it is dropped
    (the first field was "\\ufeff081109", a timestamp counted as bad), offsets still count
    it, and only a file's start is looked at."""
    data = b"\xef\xbb\xbf081109 203615 first\r\nsecond \xef\xbb\xbf inside\n\xef\xbb\xbfthird\n"
    path = tmp_path / ("bom.log.gz" if packed else "bom.log")
    path.write_bytes(gzip.compress(data) if packed else data)
    lines = list(LineReader([str(path)]))
    assert [ln.text for ln in lines] == [
        "081109 203615 first",
        "second \ufeff inside",
        "\ufeffthird",  # not a file's start: text like any other
    ]
    assert [ln.offset for ln in lines] == [3, 24, 42]
    assert all(data[ln.offset :].startswith(ln.text.encode()) for ln in lines)
    # A byte range that starts at a later line keeps what is there.
    if not packed:
        part = FileRange(str(path), 42, None)
        assert [ln.text for ln in LineReader([part])] == ["\ufeffthird"]
    # A file that is only the mark is empty.
    only = tmp_path / "only.log"
    only.write_bytes(b"\xef\xbb\xbf")
    stats = Stats()
    assert list(LineReader([str(only)], stats=stats)) == []


def test_a_last_line_without_a_line_break_is_kept_and_counted(tmp_path: Path) -> None:
    # A file being written ends in half a line: it is still a line (a file may end
    # without a newline), counted once per input, on every reading path.
    cut, whole = tmp_path / "cut.log", tmp_path / "whole.log"
    cut.write_bytes(b"a 1\nb 2\nInterrupted while waiting for mess")
    whole.write_bytes(b"a 1\nb 2\n")
    reader = LineReader([str(cut), str(whole), str(cut)])
    texts = [ln.text for ln in reader]
    assert texts.count("Interrupted while waiting for mess") == 2 and len(texts) == 8
    assert reader.stats["no_final_newline"] == 2
    batches = LineReader([str(cut)])
    assert [t for b in batches.text_batches() for t in b][
        -1
    ] == "Interrupted while waiting for mess"
    assert batches.stats["no_final_newline"] == 1
    size = cut.stat().st_size
    ranges = LineReader([FileRange(str(cut), 0, 4), FileRange(str(cut), 4, size)])
    assert len(list(ranges)) == 3 and ranges.stats["no_final_newline"] == 1
    assert LineReader([str(whole)]).stats["no_final_newline"] == 0
    plain = LineReader([str(whole)])
    list(plain)
    assert plain.stats["no_final_newline"] == 0


def test_the_first_batch_of_each_input_is_marked(tmp_path: Path) -> None:
    """Batches never span two inputs, and the first of each is a StreamStart: a reader of
    batches sees where an input begins (an input that starts before the one before it
    ends, in log time, is counted), also when a selection keeps none of that batch."""
    from logwarden.io.sources import SelectedLineReader, StreamStart

    a, empty, b = tmp_path / "a.log", tmp_path / "empty.log", tmp_path / "b.log"
    a.write_text("".join(f"a{i} x\n" for i in range(50)))
    empty.write_text("")
    b.write_text("b0 y\nb1 x")  # no newline at the end: the last batch is finish()'s
    reader = LineReader([str(a), str(empty), str(b)], SourceConfig(chunk_bytes=64))
    batches = list(reader.text_batches())
    starts = [batch[0] for batch in batches if isinstance(batch, StreamStart)]
    assert starts == ["a0 x", "b0 y"] and len(batches) > 3
    assert [t for batch in batches for t in batch] == [
        *(f"a{i} x" for i in range(50)),
        "b0 y",
        "b1 x",
    ]
    # a's first batch holds none of the ids: its mark goes to the first batch kept.
    picked = SelectedLineReader([str(a), str(b)], ["a49", "b1"], SourceConfig(chunk_bytes=64))
    got = [(type(x), x) for x in picked.text_batches()]
    assert got == [(StreamStart, ["a49 x"]), (StreamStart, ["b1 x"])]
