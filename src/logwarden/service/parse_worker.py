"""A second process for the detector process's per-line parsing.

About half of the detector's time per line goes to work that needs no session state: the
log format (message, timestamp), the model's parser in match-only mode and the session ids
(``stream.LineParser``). The web server leaves most of the second core idle (at 20,000
lines/s: server 0.14 of a core, detector 0.99). So the detector process forks this worker
once it has its model: it sends each batch of lines, and takes the parses back in chunks
while the worker goes on with the rest, so the two overlap within a batch (no batch waits
for another, and no line waits longer than it did).

The worker holds a copy of the model as the fork found it; after a model switch the
detector starts a new one. Its parses are exactly those of the detector's own parser (the
same code on the same model); the format's choice of time fields, which a line may change,
comes back with every chunk. Should the worker die or answer nonsense, the lines not parsed
yet are parsed in the detector process, and the worker is started again later: it costs
time, never a line. Messages are ``marshal`` data (tuples, strings, numbers) between two
processes of one program, never written anywhere.

In the service the worker follows the store's journal by itself (``follow``): it parses
each line as soon as the server has committed it, while the detector still checks the
lines before. Handed the lines by the detector instead, a request that came while the
detector was busy waited for that step to end before its parse even began, and then the
detector waited for the parse: at 20,000 lines/s in 500-line requests about a sixth of
the detector's time was that wait, and every verdict carried it.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from logwarden.children import die_with_parent
from logwarden.service.store import LINE, MODEL, Store
from logwarden.service.stream import LineParser, ParsedLine

__all__ = ["ParseWorker", "fork_available"]

# Lines per chunk sent back: the detector waits for the first chunk of a batch only.
CHUNK_LINES = 100

# A following worker: journal rows read at a time, and how long it waits between two looks
# at the journal when it has parsed everything (a look is an indexed query, tens of
# microseconds).
_FOLLOW_ROWS = 1000
_FOLLOW_POLL_SECONDS = 0.002

# Bytes asked for each socket buffer between the two: a 5,000-line batch's parses are
# about 700 KB (the simulator's lines).
_SOCKET_BUFFER = 2 << 20


def fork_available() -> bool:
    """Whether this system can fork (not Windows)."""
    return hasattr(os, "fork")


def _alive(pid: int) -> bool:
    """Whether our child ``pid`` still runs (reaped here once it has exited)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _serve(parser: LineParser, conn: Any, chunk: int) -> None:
    die_with_parent()
    try:
        while True:
            try:
                texts = marshal.loads(conn.recv_bytes())
            except EOFError:
                return
            for i in range(0, len(texts), chunk):
                parsed, bad = parser.parse(texts[i : i + chunk])
                conn.send_bytes(marshal.dumps((parsed, bad, parser.format.time_fields)))
    except (OSError, KeyboardInterrupt):
        return
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def _follow(parser: LineParser, conn: Any, chunk: int, store: str, after: int) -> None:
    """The worker's loop when it follows the journal: the lines after ``after``, parsed in
    order and sent as (first sequence number, parses, bad timestamps, time fields), each
    chunk a run of consecutive line rows. It stops reading at a model switch (the lines
    after it are for the next model's worker) and ends when the detector closes its end."""
    die_with_parent()
    journal = Store(store, durable=False, checkpoints=False)
    try:
        while True:
            rows = journal.read_journal(after, _FOLLOW_ROWS)
            run: list[tuple[int, str]] = []
            switch = False
            for seq, kind, text, _ in rows:
                if kind == LINE:
                    run.append((seq, text))
                    continue
                switch = kind == MODEL
                if switch:
                    break
                _send_run(parser, conn, chunk, run)  # a flush: nothing to parse
                run = []
                after = seq
            _send_run(parser, conn, chunk, run)
            if run:
                after = run[-1][0]
            if switch:
                while True:  # until the detector closes: it starts the next model's worker
                    conn.recv_bytes()
            # Nothing new: wait a little, and end when the detector has closed its end.
            if not rows and conn.poll(_FOLLOW_POLL_SECONDS):
                conn.recv_bytes()  # EOFError when closed; the detector sends nothing else
    except (EOFError, OSError, KeyboardInterrupt):
        return
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def _send_run(parser: LineParser, conn: Any, chunk: int, run: list[tuple[int, str]]) -> None:
    for i in range(0, len(run), chunk):
        part = run[i : i + chunk]
        parsed, bad = parser.parse([text for _, text in part])
        conn.send_bytes(marshal.dumps((part[0][0], parsed, bad, parser.format.time_fields)))


def _pair() -> tuple[Any, Any]:
    """Two connected ends with room for a batch's parses in flight: with the system's
    default socket buffers (about 200 KB) the worker could run some 1,500 lines ahead, then
    waited while the detector checked a batch, and the detector then waited for it (a
    sixth of its time under load). Larger buffers are asked for; the system may give less."""
    a, b = socket.socketpair()
    for sock in (a, b):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
    return Connection(a.detach()), Connection(b.detach())


class ParseWorker:
    """The detector's end: ``chunks(parser, lines)`` parses lines in the worker (or here,
    after a failure), yielding what ``StreamDetector.process_parsed`` takes.

    ``follow``: the path of a store whose journal the worker reads by itself, from the
    line rows after sequence number ``after`` on (see the module docstring); ``chunks`` then
    takes lines in journal order, and ``submit`` is not needed. Otherwise the lines are
    sent to it, by ``submit`` or by ``chunks``."""

    def __init__(
        self,
        parser: LineParser,
        chunk: int = CHUNK_LINES,
        retry_seconds: float = 30.0,
        *,
        follow: str | None = None,
        after: int = 0,
        wait_seconds: float = 10.0,
    ) -> None:
        self.chunk = chunk
        # After a failure, the detector parses by itself for this long before a new worker.
        self.retry_seconds = retry_seconds
        self.follow = follow
        # A following worker that has not sent the next line this long after it was
        # asked for (the line is committed: it can read it) counts as failed.
        self.wait_seconds = wait_seconds
        self.failures = 0
        self._retry_at = 0.0
        self._conn: Any = None
        self._pid: int | None = None
        # What was sent and not taken back yet: (first sequence number, lines), in order.
        self._sent: deque[tuple[int, int]] = deque()
        # A following worker: the last line taken (it starts after it), and what came
        # and was not taken yet: [first sequence number, parses, bad timestamps, fields].
        self._after = after
        self._got: deque[list[Any]] = deque()
        self.start(parser)

    @property
    def running(self) -> bool:
        return self._pid is not None

    @property
    def pid(self) -> int | None:
        return self._pid

    def start(self, parser: LineParser, after: int | None = None) -> None:
        """A worker for this parser's model (the old one, if any, stops); a following one
        starts after the line ``after`` (default: after the last line taken). A plain
        fork: the detector process is a daemonic process, which multiprocessing lets have
        none."""
        self.stop()
        if after is not None:
            self._after = after
        mine, theirs = _pair()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                mine.close()
                if self.follow is not None:
                    _follow(parser, theirs, self.chunk, self.follow, self._after)
                else:
                    _serve(parser, theirs, self.chunk)
            except BaseException:
                code = 1
            finally:
                os._exit(code)  # no atexit handlers, no buffers of the parent's flushed
        theirs.close()
        self._conn, self._pid = mine, pid

    def stop(self) -> None:
        conn, pid = self._conn, self._pid
        self._conn = self._pid = None
        self._sent.clear()
        self._got.clear()
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()  # the worker sees the end of its input and exits
        if pid is not None:
            deadline = time.monotonic() + 1.0
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)

    def submit(self, lines: Sequence[tuple[int, str]]) -> None:
        """Start parsing ``lines`` now; ``chunks`` takes them later (in the order sent).
        A following worker reads them by itself: nothing to do."""
        if self._pid is None or not lines or self.follow is not None:
            return
        try:
            self._conn.send_bytes(marshal.dumps([text for _, text in lines]))
        except (OSError, ValueError):
            self._failed()
            return
        self._sent.append((lines[0][0], len(lines)))

    def _failed(self) -> None:
        self.failures += 1
        self._retry_at = time.monotonic() + self.retry_seconds
        self.stop()

    def chunks(
        self, parser: LineParser, lines: Sequence[tuple[int, str]]
    ) -> Iterator[tuple[Sequence[tuple[int, str]], list[ParsedLine], int]]:
        """``lines`` parsed, in order, in chunks (sent now unless ``submit`` sent them
        first). ``parser``: the detector's own, for the lines the worker could not parse
        (and whose format follows the worker's)."""
        if not lines:
            return
        if self._pid is None and time.monotonic() >= self._retry_at:
            self.start(parser, lines[0][0] - 1)
        if self.follow is not None:
            yield from self._followed(parser, lines)
            return
        if self._pid is not None and not self._sent:
            self.submit(lines)
        done = 0
        if self._pid is not None:
            complete = False
            try:
                if self._sent.popleft() != (lines[0][0], len(lines)):
                    raise ValueError("lines taken back in another order than sent")
                while done < len(lines):
                    parsed, bad, fields = marshal.loads(self._conn.recv_bytes())
                    n = len(parsed)
                    if not 0 < n <= len(lines) - done:
                        raise ValueError(f"the parse worker sent {n} parses")
                    if parser.format.time_fields != tuple(fields):
                        parser.format.time_fields = tuple(fields)
                    yield lines[done : done + n], parsed, bad
                    done += n
                complete = True
                return
            except (EOFError, OSError, ValueError, TypeError, IndexError):
                pass  # parsed here below
            finally:
                if not complete:  # failed, or the caller stopped early: out of step
                    self._failed()
        rest = lines[done:]
        if rest:
            parsed, bad = parser.parse([text for _, text in rest])
            yield rest, parsed, bad

    def _followed(
        self, parser: LineParser, lines: Sequence[tuple[int, str]]
    ) -> Iterator[tuple[Sequence[tuple[int, str]], list[ParsedLine], int]]:
        """``chunks`` from a following worker: its parses matched to ``lines`` by sequence
        number (a chunk of its may be split between two calls)."""
        done = 0
        if self._pid is not None:
            complete = False
            try:
                while done < len(lines):
                    if not self._got:
                        if not self._conn.poll(self.wait_seconds):
                            raise TimeoutError("the parse worker sent nothing")
                        first, parsed, bad, fields = marshal.loads(self._conn.recv_bytes())
                        if not parsed or not isinstance(first, int):
                            raise ValueError("the parse worker sent an empty chunk")
                        self._got.append([first, parsed, bad, fields])
                    item = self._got[0]
                    first, parsed = item[0], item[1]
                    need = lines[done][0]
                    if first + len(parsed) <= need:  # lines parsed here before: not needed
                        self._got.popleft()
                        continue
                    if first > need:
                        raise ValueError(f"the parse worker skipped line {need}")
                    off = need - first
                    k = 1
                    limit = min(len(parsed) - off, len(lines) - done)
                    while k < limit and lines[done + k][0] == need + k:
                        k += 1
                    if parser.format.time_fields != tuple(item[3]):
                        parser.format.time_fields = tuple(item[3])
                    bad, item[2] = item[2], 0  # counted with the first lines taken
                    if off + k == len(parsed):
                        self._got.popleft()
                    else:
                        item[0], item[1] = need + k, parsed[off + k :]
                    self._after = need + k - 1
                    yield lines[done : done + k], parsed[off : off + k], bad
                    done += k
                complete = True
                return
            except (EOFError, OSError, ValueError, TypeError, IndexError, TimeoutError):
                pass  # parsed here below
            finally:
                if not complete:
                    self._failed()
        rest = lines[done:]
        if rest:
            self._after = rest[-1][0]
            parsed, bad = parser.parse([text for _, text in rest])
            yield rest, parsed, bad
