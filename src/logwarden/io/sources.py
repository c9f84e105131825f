"""Reading raw lines with their position: files, globs, gzip, stdin, and ``tail -F``-like follow.

Every line becomes a :class:`~logwarden.records.Line` carrying the byte offset of its
first byte in the (decompressed) stream and its 1-based line number. A file (or gzip
stream) that starts with a UTF-16 byte order mark is read as UTF-16: offsets then count
in its UTF-8 form. Nothing is dropped silently: lines that had to be altered are flagged
and counted, inputs that could not be read are counted and listed with the reason.

Speed: input is read in large binary chunks, split with ``bytes`` methods and decoded
a whole chunk at a time; per-line Python work is avoided on the common path (valid
UTF-8, no NUL, no overlong line), where the ``Line`` objects are built by ``map`` over
C-level iterators. Chunks with something unusual are re-examined in small pieces so
that one bad line only costs per-line handling of its neighbourhood.

Stats reasons used here: ``lines_read``, ``files_read``, ``invalid_utf8``,
``nul_bytes``, ``truncated_line``, ``unreadable_file``, ``glob_no_match``,
``empty_file``, ``truncated_gzip``, ``corrupt_gzip``, ``no_final_newline`` (an input
whose last line has no line break: kept as a line, and counted, because it may be one
still being written), and in follow mode
``file_missing`` (once per wait for the file), ``file_rotated`` and ``file_truncated``.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, islice, repeat
from typing import Any, BinaryIO, Protocol

from logwarden.records import BAD_UTF8, NUL_BYTES, TRUNCATED, Line, Stats

__all__ = [
    "FileRange",
    "FollowConfig",
    "Follower",
    "LineReader",
    "SelectedLineReader",
    "SourceConfig",
    "cut_utf8",
    "follow",
    "read_lines",
    "whole_only",
]

STDIN_NAME = "<stdin>"
_GZIP_MAGIC = b"\x1f\x8b"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # little and big endian
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect a gzip header and trailer (CRC checked)
_GLOB_CHARS = frozenset("*?[")
# After a fast-path failure, a chunk is retried in newline-aligned pieces of about this
# size: small enough that per-line handling stays local, big enough to keep the fast path.
_PIECE_BYTES = 16 * 1024
_plus1 = (1).__add__  # C-level "+1" for accumulate(map(...)): no Python frame per line
_MISSING = "\0missing"  # Follower: marker for "file not there" among open error messages


@dataclass
class SourceConfig:
    """How raw input is read."""

    max_line_bytes: int = 65536  # longer lines are cut to this many bytes (flag TRUNCATED)
    chunk_bytes: int = 1 << 20  # read size; also bounds decompressed output per step

    def __post_init__(self) -> None:
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {self.max_line_bytes}")
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {self.chunk_bytes}")


@dataclass
class FollowConfig(SourceConfig):
    """Follow mode (``tail -F``): poll a growing file, survive rotation and truncation."""

    poll_interval: float = 0.25  # seconds between checks when no new data is there
    from_start: bool = False  # read existing content too (default: start at its end)
    idle_timeout: float | None = None  # stop after this long without new data
    max_lines: int | None = None  # stop after yielding this many lines

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {self.poll_interval}")
        if self.idle_timeout is not None and self.idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0, got {self.idle_timeout}")
        if self.max_lines is not None and self.max_lines < 0:
            raise ValueError(f"max_lines must be >= 0, got {self.max_lines}")


@dataclass(frozen=True)
class FileRange:
    """Bytes ``[start, stop)`` of a plain (uncompressed) file, ``start`` at a line start
    and ``stop`` after a newline or at the end (``None``: to the end): the share of a file
    one worker reads when inputs are split (``logwarden.engine``). A ``LineReader`` reads
    it as a file of its own, except that ``files_read`` counts only the range at 0 (once
    per file) and no gzip magic is looked for past the start. Line offsets count from the
    file's start; line numbers from the range's."""

    path: str
    start: int = 0
    stop: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.stop is not None and self.stop < self.start):
            raise ValueError(f"bad byte range [{self.start}, {self.stop}) of {self.path}")


class _Limited:
    """A binary stream cut off after ``left`` bytes."""

    def __init__(self, stream: BinaryIO, left: int | None) -> None:
        self.stream = stream
        self.left = left

    def read(self, size: int = -1, /) -> bytes:
        if self.left is None:
            return self.stream.read(size)
        if size < 0 or size > self.left:
            size = self.left
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        return data


class _SourceError(Exception):
    """A read problem found after some data may already have been delivered."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def cut_utf8(raw: bytes, limit: int) -> bytes:
    """``raw[:limit]``, moved back to a UTF-8 character start (len(raw) > limit)."""
    cut = limit
    # raw[cut] is the first byte dropped; while it is a continuation byte (10xxxxxx) the
    # character it belongs to started earlier and would be split. At most 3 steps: a
    # longer run of continuation bytes is invalid UTF-8 anyway.
    while cut > limit - 3 and cut > 0 and raw[cut] & 0xC0 == 0x80:
        cut -= 1
    return raw[:cut]


class _Splitter:
    """Turns a stream of byte chunks into Lines; keeps at most one partial line (bounded)."""

    __slots__ = (
        "_head",
        "_pending",
        "_pending_len",
        "limit",
        "lineno",
        "offset",
        "source",
        "stats",
        "texts_only",
    )

    def __init__(
        self, source: str, limit: int, stats: Stats, offset: int = 0, lineno: int = 1
    ) -> None:
        self.source = source
        self.limit = limit
        self.stats = stats
        self.offset = offset  # stream offset of the first byte not yet part of a Line
        self.lineno = lineno  # number of the next line
        self._pending: list[bytes] = []  # start of an unfinished line
        self._pending_len = 0
        # Set while discarding the excess of an overlong line: its first limit+1 bytes
        # (one more than kept, to find the character boundary); _pending_len counts on.
        self._head: bytes | None = None
        # Bulk consumers (``LineReader.text_batches``) take the texts and skip the Lines.
        self.texts_only = False

    def feed(self, chunk: bytes) -> list[Any]:
        out: list[Any] = []
        if self._head is not None:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._pending_len += len(chunk)  # still inside the overlong line: drop it
                return out
            out.append(self._line(self._head, self.offset, self.lineno, 0))
            self.offset += self._pending_len + nl + 1
            self.lineno += 1
            self._head = None
            self._pending_len = 0
            chunk = chunk[nl + 1 :]
        last = chunk.rfind(b"\n")
        if last < 0:
            if chunk:
                self._pending.append(chunk)
                self._pending_len += len(chunk)
                if self._pending_len > self.limit + 1:
                    self._start_discard(b"".join(self._pending))
        else:
            if self._pending:
                self._pending.append(chunk)
                chunk = b"".join(self._pending)
                last += self._pending_len
                self._pending = []
                self._pending_len = 0
            self._block(chunk[:last], out)
            tail = chunk[last + 1 :]
            if tail:
                if len(tail) > self.limit + 1:
                    self._start_discard(tail)
                else:
                    self._pending.append(tail)
                    self._pending_len = len(tail)
        if out:
            self.stats.add("lines_read", len(out))
        return out

    def finish(self) -> list[Any]:
        """Flush the unfinished last line (end of input, rotation, stop)."""
        raw: bytes | None = None
        if self._head is not None:
            raw = self._head
        elif self._pending:
            # No terminator follows, so a final "\r" is content, not half of a "\r\n".
            raw = b"".join(self._pending)
        if raw is None:
            return []
        line = self._line(raw, self.offset, self.lineno, 0)
        self.offset += self._pending_len
        self.lineno += 1
        self._head = None
        self._pending = []
        self._pending_len = 0
        self.stats.add("lines_read")
        self.stats.add("no_final_newline")
        return [line]

    def _start_discard(self, data: bytes) -> None:
        # The unfinished line is longer than the limit even if it ends in "\r": keep only
        # its head so that a line without newline of any size costs bounded memory.
        self._head = data[: self.limit + 1]
        self._pending = []
        self._pending_len = len(data)

    def _block(self, body: bytes, out: list[Any]) -> None:
        """Lines for ``body``: one or more complete lines joined by b"\\n" (final one removed)."""
        if self._fast(body, out):
            return
        pos = 0
        end = len(body)
        while True:
            stop = body.find(b"\n", pos + _PIECE_BYTES) if pos + _PIECE_BYTES < end else -1
            piece = body[pos:stop] if stop >= 0 else body[pos:]
            if not self._fast(piece, out):
                self._slow(piece, out)
            if stop < 0:
                return
            pos = stop + 1

    def _fast(self, body: bytes, out: list[Any]) -> bool:
        """The common case, with no per-line Python code; False if body needs per-line care."""
        if b"\0" in body:
            return False
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return False
        texts = text.split("\n")
        # Byte lengths give the offsets; for ASCII (chars == bytes) the str pieces do.
        raw = texts if len(text) == len(body) else body.split(b"\n")
        if len(body) > self.limit and max(map(len, raw)) > self.limit:
            return False
        if "\r" in text:
            # Every piece here was followed by "\n", so a last "\r" is part of "\r\n".
            texts = [t[:-1] if t[-1:] == "\r" else t for t in texts]
        n = len(texts)
        lineno = self.lineno
        if self.texts_only:
            out.extend(texts)
        else:
            offsets = accumulate(map(_plus1, map(len, raw)), initial=self.offset)
            out.extend(map(Line, texts, repeat(self.source, n), offsets, range(lineno, lineno + n)))
        self.offset += len(body) + 1
        self.lineno = lineno + n
        return True

    def _slow(self, body: bytes, out: list[Any]) -> None:
        line = self._line
        for raw in body.split(b"\n"):
            size = len(raw)
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            out.append(line(raw, self.offset, self.lineno, 0))
            self.offset += size + 1
            self.lineno += 1

    def _line(self, raw: bytes, offset: int, lineno: int, flags: int) -> Any:
        """One line with all the checks; ``raw`` has no terminator."""
        stats = self.stats
        if len(raw) > self.limit:
            raw = cut_utf8(raw, self.limit)
            flags |= TRUNCATED
            stats.add("truncated_line")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            flags |= BAD_UTF8
            stats.add("invalid_utf8")
        if "\0" in text:
            text = text.replace("\0", "\ufffd")
            flags |= NUL_BYTES
            stats.add("nul_bytes")
        return text if self.texts_only else Line(text, self.source, offset, lineno, flags)


def _gunzip(chunks: Iterable[bytes], out_bytes: int) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream; at most ``out_bytes`` per step.

    Raises _SourceError after yielding everything that could be decompressed.
    """
    d = zlib.decompressobj(_GZIP_WBITS)
    in_member = False
    try:
        for data in chunks:
            while True:
                if not in_member:
                    data = data.lstrip(b"\0")  # zero padding between members is allowed
                    if not data:
                        break
                    d = zlib.decompressobj(_GZIP_WBITS)
                    in_member = True
                # Bounded output per call: a small bomb cannot blow up memory.
                out = d.decompress(data, out_bytes)
                if out:
                    yield out
                if d.eof:
                    in_member = False
                    data = d.unused_data
                    continue
                data = d.unconsumed_tail
                if not data and len(out) < out_bytes:
                    break
        if in_member:
            rest = d.flush()
            if rest:
                yield rest
            raise _SourceError("truncated_gzip", "gzip data ends early (truncated file)")
    except zlib.error as exc:
        raise _SourceError("corrupt_gzip", f"corrupt gzip data: {exc}") from None


def _chunks(stream: _Readable, size: int, gzip: bool = True) -> Iterator[bytes]:
    """The decoded byte chunks of a stream: gunzipped when it starts with the gzip magic
    (and ``gzip``)."""
    # read1 returns what is available (pipes, stdin) instead of waiting for a full chunk.
    read = getattr(stream, "read1", None) or stream.read
    first = read(size)
    while 0 < len(first) < 2:  # a pipe may deliver a single byte first
        more = read(size)
        if not more:
            break
        first += more
    rest: Iterator[bytes] = iter(lambda: read(size), b"")
    if gzip and first[:2] == _GZIP_MAGIC:
        # Detected by content, not by name: ".gz" files that are not gzip and gzip files
        # without the extension are both read right. (1f 8b cannot start UTF-8 text.)
        yield from _from_utf16(_gunzip(chain((first,), rest), size))
    elif gzip and first[:2] in _UTF16_BOMS:
        yield from _from_utf16(chain((first,), rest))
    elif first:
        yield first
        yield from rest


_UTF8_BOM = b"\xef\xbb\xbf"


def _without_utf8_bom(chunks: Iterator[bytes], split: _Splitter) -> Iterator[bytes]:
    """The chunks of a file's start without a UTF-8 byte order mark (Notepad and
    PowerShell 7 write one): it is not text, and glued to the first line it spoiled that
    line's first field (a timestamp counted as bad). Offsets still count it."""
    first = b""
    for data in chunks:
        if not isinstance(data, bytes):
            yield data
            break
        first += data
        if len(first) >= len(_UTF8_BOM):
            break
    if first.startswith(_UTF8_BOM):
        first = first[len(_UTF8_BOM) :]
        split.offset += len(_UTF8_BOM)
    if first:
        yield first
    yield from chunks


def whole_only(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 2 bytes or more) is read from its
    start only: gzip, or UTF-16 after a byte order mark. Byte ranges cannot split it."""
    return head[:2] == _GZIP_MAGIC or head[:2] in _UTF16_BOMS


def _from_utf16(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks as they are, or re-encoded as UTF-8 when they start with a UTF-16 byte
    order mark (Windows tools write UTF-16: PowerShell's ``>``, exported event logs). Text
    that is not valid UTF-16 (a lone surrogate, an odd last byte) becomes bytes that are
    not valid UTF-8, so its line is flagged and counted like any other invalid line."""
    it = iter(chunks)
    first = b""
    for data in it:
        first += data
        if len(first) >= 2:
            break
    if first[:2] not in _UTF16_BOMS:
        if first:
            yield first
        yield from it
        return
    import codecs

    decode = codecs.getincrementaldecoder("utf-16")(errors="surrogatepass").decode
    for data in chain((first,), it):
        text = decode(data)
        if text:
            yield text.encode("utf-8", errors="surrogatepass")
    try:
        tail = decode(b"", final=True)
    except UnicodeDecodeError:
        tail = "\udcff"  # an odd byte at the end: flagged as invalid, not dropped
    if tail:
        yield tail.encode("utf-8", errors="surrogatepass")


class StreamStart(list):  # type: ignore[type-arg]
    """The first batch of lines of an input (a file, a range of one, stdin), as
    ``LineReader`` yields it: a consumer of batches knows where an input begins (to notice
    an input that starts earlier in log time than the one before it ends)."""

    __slots__ = ()


def _has_glob(name: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(name)


class LineReader:
    """Reads the lines of several inputs in order: paths, glob patterns, ``-`` for stdin.

    Iterating reads the inputs (again, on each iteration). Problems are counted in
    ``stats`` and listed in ``errors`` as ``(path, message)``; the other inputs are
    still read.
    """

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike[str] | FileRange],
        config: SourceConfig | None = None,
        stats: Stats | None = None,
    ) -> None:
        if isinstance(inputs, str):
            raise TypeError("inputs must be a sequence of paths, not a single string")
        self.inputs: list[str | FileRange] = [
            name if isinstance(name, FileRange) else os.fspath(name) for name in inputs
        ]
        self.config = config if config is not None else SourceConfig()
        self.stats = stats if stats is not None else Stats()
        self.errors: list[tuple[str, str]] = []
        self.files_read = 0
        # Where each input starts: (lines read before it, its name), in reading order; a
        # line's number across the inputs (from 1) names its file (``file_of``).
        self.files: list[tuple[int, str]] = []
        self.lines_read = 0

    def __iter__(self) -> Iterator[Line]:
        for batch in self._batches(texts_only=False):
            yield from batch

    def text_batches(self) -> Iterator[list[str]]:
        """Line texts a chunk at a time, for bulk consumers: the same lines, checks and counts
        as iterating, without building a ``Line`` (source, offset) for each."""
        return self._batches(texts_only=True)

    def _batches(self, texts_only: bool) -> Iterator[list[Any]]:
        for name in self.inputs:
            if isinstance(name, FileRange):
                yield from self._read_range(name, texts_only)
            elif name == "-":
                yield from self._read_stdin(texts_only)
            else:
                for path in self._expand(name):
                    yield from self._read_path(path, texts_only)

    def _error(self, reason: str, path: str, message: str) -> None:
        self.stats.add(reason)
        self.errors.append((path, message))

    def _expand(self, name: str) -> list[str]:
        # An existing file whose name merely contains "[" or "*" is taken literally.
        if not _has_glob(name) or os.path.lexists(name):
            return [name]
        matches = sorted(glob.glob(name, recursive=True))
        if not matches:
            self._error("glob_no_match", name, "no files match this pattern")
        return matches

    def _read_path(self, path: str, texts_only: bool) -> Iterator[list[Any]]:
        try:
            # Unbuffered: each read is one read(2) of chunk_bytes, no extra copy.
            stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            self._error("unreadable_file", path, exc.strerror or str(exc))
            return
        with stream:
            yield from self._read_stream(path, stream, texts_only)

    def _read_range(self, part: FileRange, texts_only: bool) -> Iterator[list[Any]]:
        try:
            stream = open(part.path, "rb", buffering=0)  # noqa: SIM115 - closed below
            if part.start:
                stream.seek(part.start)
        except OSError as exc:
            self._error("unreadable_file", part.path, exc.strerror or str(exc))
            return
        left = None if part.stop is None else part.stop - part.start
        with stream:
            yield from self._read_stream(
                part.path, _Limited(stream, left), texts_only, offset=part.start
            )

    def _read_stdin(self, texts_only: bool) -> Iterator[list[Any]]:
        # Looked up at read time (not import time) so that a replaced sys.stdin is used.
        stdin = sys.stdin
        stream = getattr(stdin, "buffer", stdin)
        if stream is None or not callable(getattr(stream, "read", None)):
            self._error("unreadable_file", STDIN_NAME, "standard input is not available")
            return
        yield from self._read_stream(STDIN_NAME, stream, texts_only)

    def _read_stream(
        self,
        source: str,
        stream: _Readable | BinaryIO,
        texts_only: bool,
        offset: int = 0,
    ) -> Iterator[list[Any]]:
        # A file split in ranges is one file read (counted by its range at 0), and only
        # its start may hold the gzip magic.
        if offset == 0:
            self.files_read += 1
            self.stats.add("files_read")
            self.files.append((self.lines_read, source))
        split = _Splitter(source, self.config.max_line_bytes, self.stats, offset=offset)
        split.texts_only = texts_only
        total = 0
        failure: tuple[str, str] | None = None
        first = True  # the first batch is a StreamStart
        try:
            chunks = _chunks(stream, self.config.chunk_bytes, gzip=offset == 0)
            if offset == 0:
                chunks = _without_utf8_bom(chunks, split)
            for chunk in chunks:
                if not isinstance(chunk, bytes):
                    raise _SourceError("unreadable_file", "input is not a binary stream")
                total += len(chunk)
                lines = split.feed(chunk)
                if lines:
                    self.lines_read += len(lines)
                    yield StreamStart(lines) if first else lines
                    first = False
        except _SourceError as exc:
            failure = (exc.reason, str(exc))
        except OSError as exc:
            failure = ("unreadable_file", exc.strerror or str(exc))
        # Whatever was read before a failure is still delivered, last partial line included.
        last = split.finish()
        if last:
            self.lines_read += len(last)
            yield StreamStart(last) if first else last
        if failure is not None:
            self._error(failure[0], source, failure[1])
        elif total == 0 and offset == 0:
            self.stats.add("empty_file")


def file_of(files: Sequence[tuple[int, str]], line: int) -> tuple[str, int] | None:
    """The input and the line within it of line ``line`` (from 1 across the inputs), from
    ``LineReader.files``: the last input that starts before it (an empty one before it
    starts at the same place and holds none of it)."""
    import bisect

    at = bisect.bisect_left([start for start, _ in files], line) - 1
    if at < 0:
        return None
    start, name = files[at]
    return name, line - start


def read_lines(
    inputs: Sequence[str | os.PathLike[str]],
    config: SourceConfig | None = None,
    stats: Stats | None = None,
) -> Iterator[Line]:
    """Lines of all inputs (see :class:`LineReader`); problems are counted in ``stats``."""
    return iter(LineReader(inputs, config, stats))


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class Follower:
    """Follows one file like ``tail -F``; iterate to get its lines as they are written.

    - Starts at the end of the existing content (at the start of an unfinished last
      line, so that it is read whole), or at the beginning with ``from_start``.
    - Waits for a file that does not exist yet; one that appears later is read from
      its start.
    - Rotation (the path now names another file, or none): the old file is read to
      its end, then the new one from its start (offset 0, line 1).
    - Truncation in place (size below the read position): read again from offset 0.
    - Stops when ``stop`` is set, after ``idle_timeout`` seconds without data, or after
      ``max_lines`` lines; on stop the unfinished last line, if any, is yielded.

    ``path`` ``-`` reads stdin to its end (it cannot rotate). Followed files are read as
    plain bytes: a growing gzip file cannot be followed line by line.
    """

    def __init__(
        self,
        path: str,
        config: FollowConfig | None = None,
        stats: Stats | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.path = path
        self.config = config if config is not None else FollowConfig()
        self.stats = stats if stats is not None else Stats()
        self.stop = stop if stop is not None else threading.Event()
        self.errors: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[Line]:
        gen = self._run()
        try:
            if self.config.max_lines is None:
                yield from gen
            else:
                yield from islice(gen, self.config.max_lines)
        finally:
            gen.close()  # closes the file even when stopped by max_lines

    def _run(self) -> Iterator[Line]:
        if self.path == "-":
            reader = LineReader(["-"], self.config, self.stats)
            try:
                yield from reader
            finally:
                self.errors.extend(reader.errors)
            return
        cfg = self.config
        stop = self.stop
        stream: BinaryIO | None = None
        split: _Splitter | None = None
        ident: tuple[int, int] = (0, 0)
        first_open = True
        reported: str | None = None  # last open error, so that a retry loop records it once
        last_data = time.monotonic()
        try:
            while not stop.is_set():
                if stream is None:
                    try:
                        stream = open(self.path, "rb", buffering=0)  # noqa: SIM115
                    except FileNotFoundError:
                        # Not there yet, or between rotation steps: wait, saying so once.
                        if reported != _MISSING:
                            reported = _MISSING
                            self.stats.add("file_missing")
                    except OSError as exc:
                        message = exc.strerror or str(exc)
                        if message != reported:
                            reported = message
                            self.stats.add("unreadable_file")
                            self.errors.append((self.path, message))
                    if stream is None:
                        first_open = False  # a file that appears later is read whole
                        if self._idle(last_data):
                            break
                        stop.wait(cfg.poll_interval)
                        continue
                    reported = None
                    self.stats.add("files_read")
                    st = os.fstat(stream.fileno())
                    ident = (st.st_dev, st.st_ino)
                    offset, lineno = 0, 1
                    if first_open and not cfg.from_start:
                        offset, lineno = self._tail_start(stream, st.st_size)
                    first_open = False
                    stream.seek(offset)
                    split = _Splitter(self.path, cfg.max_line_bytes, self.stats, offset, lineno)
                assert split is not None
                got = yield from self._drain(stream, split)
                if got:
                    last_data = time.monotonic()
                st = _stat(self.path)
                if st is None:
                    # Renamed away (or removed), no new file yet: the old one stays open, as
                    # the application writing it still may (until it reopens by name).
                    if got:
                        continue
                    if self._idle(last_data):
                        break
                    stop.wait(cfg.poll_interval)
                    continue
                if (st.st_dev, st.st_ino) != ident:
                    # Rotated: what was written to the old file before the new one appeared
                    # is read first, so nothing is lost at the seam.
                    yield from self._drain(stream, split)
                    yield from split.finish()
                    stream.close()
                    stream = None
                    split = None
                    self.stats.add("file_rotated")
                    continue
                if st.st_size < stream.tell():
                    # Truncated in place (copytruncate): the old content is gone.
                    yield from split.finish()
                    stream.seek(0)
                    split = _Splitter(self.path, cfg.max_line_bytes, self.stats)
                    self.stats.add("file_truncated")
                    continue
                if got:
                    continue  # more may have arrived while the consumer worked
                if self._idle(last_data):
                    break
                stop.wait(cfg.poll_interval)
        finally:
            if stream is not None:
                stream.close()
        if split is not None:
            yield from split.finish()

    def _idle(self, last_data: float) -> bool:
        timeout = self.config.idle_timeout
        return timeout is not None and time.monotonic() - last_data >= timeout

    def _drain(self, stream: BinaryIO, split: _Splitter) -> Iterator[Line]:
        """Read to the current end of file; returns whether anything was read."""
        got = False
        size = self.config.chunk_bytes
        while not self.stop.is_set():
            chunk = stream.read(size)
            if not chunk:
                break
            got = True
            yield from split.feed(chunk)
        return got

    def _tail_start(self, stream: BinaryIO, size: int) -> tuple[int, int]:
        """Where to start in existing content: the start of its unfinished last line."""
        if size == 0:
            return 0, 1
        back = min(size, self.config.max_line_bytes + 1)
        stream.seek(size - back)
        tail = stream.read(back)
        nl = tail.rfind(b"\n")
        if nl >= 0:
            start = size - back + nl + 1
        elif back == size:
            start = 0
        else:
            start = size  # the last line is overlong: skip it rather than cut it
        # Line numbers stay true: count the lines before the start (memchr speed).
        stream.seek(0)
        count = 0
        left = start
        while left > 0:
            chunk = stream.read(min(left, self.config.chunk_bytes))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
        return start, count + 1


def follow(
    path: str,
    config: FollowConfig | None = None,
    stats: Stats | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Line]:
    """Lines of ``path`` as they are written (see :class:`Follower`)."""
    return iter(Follower(path, config, stats, stop))


class SelectedLineReader(LineReader):
    """A ``LineReader`` that passes on only the lines in which one of ``ids`` occurs.

    Every line of a session grouped by an id pattern names its id, so this keeps all of
    their lines (and a few more, where one id is part of another): an online update learns
    five sessions of a day's log without parsing the rest. The lines left out are counted
    as ``other_sessions``."""

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike[str] | FileRange],
        ids: Iterable[str],
        config: SourceConfig | None = None,
        stats: Stats | None = None,
    ) -> None:
        super().__init__(inputs, config, stats)
        wanted = sorted({i for i in ids if i}, key=len, reverse=True)
        if not wanted:
            raise ValueError("no session ids to select")
        self._search = re.compile("|".join(map(re.escape, wanted))).search

    def _batches(self, texts_only: bool) -> Iterator[list[Any]]:
        search = self._search
        start = False  # an input began in a batch of which nothing was kept
        for batch in super()._batches(texts_only):
            start = start or isinstance(batch, StreamStart)
            kept = [x for x in batch if search(x if texts_only else x.text)]
            if len(kept) < len(batch):
                self.stats.add("other_sessions", len(batch) - len(kept))
            if kept:
                yield StreamStart(kept) if start else kept
                start = False
