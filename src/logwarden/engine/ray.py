"""``detect``/``eval`` on a Ray cluster: raw logs with session ids, the same verdicts as one
process gives.

The stages, and where they run:

1. **Plan** (driver): inputs are split by file and by byte range, each range starting at a
   line start (gzip files, files under ``range_bytes`` and files that cannot be opened
   stay whole: the task that reads one reports what the single-process reader would).
2. **Scan** (one task per range): the range is read by ``io.ingest.read_raw_sessions``,
   the single process's own column path, with the bundle's parser matching only. Its
   sessions are cut into one part per owner by a stable hash of the session id (CRC-32;
   Python's ``hash`` of a str differs between processes).
3. **Unknown lines** (driver): lines that no template matches get keys ``U<id>`` from a
   miner that learns as it goes, so a key depends on every such line before it. The
   driver replays their messages in input order through one miner, as the single
   process does, and gives each owner the keys, values and kinds of its unknown lines.
4. **Score** (one task per owner): the parts of its sessions are joined in input order
   (the ranges' order) into the session table one process would build, line numbers
   counted across inputs from the ranges' line counts, and scored by the model.
5. **Gather** (driver): verdicts and keys in the order of each session's first line, the
   single process's order, with counts and errors summed over the ranges.

Files are opened by the workers: on a cluster of several machines every input path must
be readable at the same path on every node (a shared file system), and logwarden must be
installed there (the workers import it).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import math
import os
import shutil
import socket
import stat
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from logwarden.errors import ConfigError, DataError, LogwardenError, NotFittedError
from logwarden.heap import no_cycle_collection
from logwarden.io.sources import FileRange, whole_only
from logwarden.records import Stats

if TYPE_CHECKING:
    from logwarden.detect.detector import Detector, Inputs
    from logwarden.detect.estimator import Verdict
    from logwarden.models.params import ParamScores
    from logwarden.sessions import SessionConfig

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "RayConfig",
    "RayResult",
    "SessionOwner",
    "assign_units",
    "connect",
    "owner_of",
    "paused_sessions",
    "plan_ranges",
    "range_lines",
    "read_and_score",
    "scan_range",
]


@dataclass
class RayConfig:
    """Where and how the stages run on Ray."""

    # A running cluster ("host:port" of its head, "ray://host:port", or "auto"); None:
    # start a Ray on this machine for the call, listening on loopback only.
    address: str | None = None
    num_cpus: int | None = None  # CPUs of a Ray started here (None: the usable cores)
    object_store_bytes: int | None = None  # its object store (None: Ray's default)
    # Its root directory (sockets, logs, spilled objects). None: a new one under the
    # system's temporary directory, removed when the call ends (Ray keeps a folder of each
    # session it starts in /tmp/ray; a call a day would pile them up).
    temp_dir: str | None = None
    range_bytes: int = 64 << 20  # files larger than this are split in ranges this large
    partitions: int | None = None  # session owners (None: the cluster's CPUs)
    max_line_bytes: int = 65536  # as ``read_raw_sessions``

    def __post_init__(self) -> None:
        if self.range_bytes < 1:
            raise ConfigError("range_bytes must be >= 1", field="range_bytes")
        if self.partitions is not None and self.partitions < 1:
            raise ConfigError("partitions must be >= 1", field="partitions")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError("num_cpus must be >= 1", field="num_cpus")


@dataclass
class RayResult:
    """What the cluster gives back: the sessions without their lines and entries (those
    stay on the workers), their verdicts, and where each session's entries are."""

    inputs: Inputs  # ids, keys, labels, templates, stats, errors, entries
    verdicts: list[Verdict]
    # per session: its entries' line numbers (from 1, across inputs) and timestamps
    positions: Sequence[tuple[list[int], list[float | None]]] = field(default_factory=list)

    def unpack(
        self,
    ) -> tuple[Inputs, list[Verdict], Sequence[tuple[list[int], list[float | None]]]]:
        return self.inputs, self.verdicts, self.positions


def owner_of(session_id: str, partitions: int) -> int:
    """The partition that owns a session: the same in every process and on every node."""
    return zlib.crc32(session_id.encode("utf-8", "surrogatepass")) % partitions


# --- connecting --------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the Ray engine needs Ray: pip install 'logwarden[ray]'", field="engine"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """A quick TCP check of ``host:port``: an unreachable head fails in seconds with a
    clear message rather than after Ray's own retries."""
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"a Ray address is host:port, ray://host:port or auto, got {address!r}",
            field="address",
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}", field="address"
        ) from None


def connect(config: RayConfig) -> bool:
    """Connect to Ray as ``config`` says, unless this process already is (a given address
    is checked either way); True when this call started or joined it (the caller then
    shuts it down)."""
    ray = _import_ray()
    if config.address and config.address != "auto":
        _check_reachable(config.address)
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if config.address:
            ray.init(address=config.address, **quiet)
        else:
            ray.init(
                address="local",  # a new Ray, even when one was started here by `ray start`
                num_cpus=config.num_cpus or _usable_cores(),
                object_store_memory=config.object_store_bytes,
                _temp_dir=config.temp_dir,
                _node_ip_address="127.0.0.1",  # a local Ray listens on loopback only
                **quiet,
            )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = config.address or "this machine"
        raise ConfigError(
            f"cannot start or join Ray at {where}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            field="address",
        ) from None
    return True


#: The longest root folder a Ray started here gets: its sockets' paths under it
#: (``session_<date>_<time>_<us>_<pid>/sockets/plasma_store``, 63 characters) must fit
#: in the 107 of a Unix socket's address.
MAX_ROOT_CHARS = 44


def _system_temp_dir() -> str:
    """Where Ray itself would put its folder (its sockets' paths must stay short: /tmp on
    macOS rather than the long per-user TMPDIR)."""
    if "RAY_TMPDIR" in os.environ:
        return os.environ["RAY_TMPDIR"]
    if sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        return os.environ["TMPDIR"]
    if sys.platform.startswith(("linux", "darwin")):
        return "/tmp"
    return tempfile.gettempdir()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- planning ----------------------------------------------------------------------------------


def plan_ranges(inputs: Sequence[str], range_bytes: int, workers: int = 1) -> list[str | FileRange]:
    """The inputs as the units scan tasks read, in input order: files larger than a range
    as ranges that start at line starts, other files whole. A range is ``range_bytes`` at
    most, and smaller when that gives each of ``workers`` a share (1 MiB at least).
    Globs are expanded as ``LineReader`` does; a pattern that matches nothing and a file
    that cannot be opened are kept as given, for the reading task to report. Raises
    ConfigError for standard input, a pipe or a device."""
    paths = _input_paths(inputs)
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += os.path.getsize(path)
    share = max(1 << 20, -(-total // max(1, workers)))
    size = min(range_bytes, share)
    return [part for path in paths for part in _file_ranges(path, size)]


def _input_paths(inputs: Sequence[str]) -> list[str]:
    """The input files, globs expanded; stdin, pipes and devices refused: the workers read
    the files, and read the lines verdicts show again at the end (a pipe is drained by the
    first read, and opening one waits for a writer)."""
    if any(name == "-" for name in inputs):
        raise ConfigError("the Ray engine reads files, not standard input", field="engine")
    paths: list[str] = []
    for name in inputs:
        if not frozenset("*?[").isdisjoint(name) and not os.path.lexists(name):
            paths.extend(sorted(glob.glob(name, recursive=True)) or [name])
        else:
            paths.append(name)
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # reported by the task that reads it
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise ConfigError(
                f"the Ray engine reads regular files: {path} is a pipe or a device "
                "(use the local engine, or write it to a file first)",
                field="engine",
            )
    return paths


def _file_ranges(path: str, range_bytes: int) -> list[str | FileRange]:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= range_bytes or whole_only(fh.read(2)):
                return [path]
            cuts = [0]
            at = range_bytes
            while at < size:
                cut = _next_line_start(fh, at)
                if cut >= size:
                    break
                cuts.append(cut)
                at = max(cut, at) + range_bytes
    except OSError:
        return [path]  # not a readable file: reported by the task that reads it
    bounds = [*cuts, None]
    return [FileRange(path, a, b) for a, b in pairwise(bounds)]  # type: ignore[arg-type]


def _next_line_start(fh: Any, at: int) -> int:
    """The offset just after the first newline at or after ``at - 1``: the start of the
    first line that begins at ``at`` or later."""
    fh.seek(at - 1)
    pos = at - 1
    while True:
        piece = fh.read(1 << 16)
        if not piece:
            return pos
        nl = piece.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(piece)


# --- the scan task -----------------------------------------------------------------------------


def _without_cycle_collection(freeze: bool = False) -> Callable[[_F], _F]:
    """A task or an owner's step run with the cyclic collector off (``no_cycle_collection``):
    a plain wrapper, which Ray pickles where a context manager's generator would not go."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with no_cycle_collection(freeze):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def _nan_none(values: Sequence[float | None]) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None: NaN, in C


def _none_nan(values: np.ndarray) -> list[float | None]:
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(np.isnan(values)).tolist():  # the few NaN back to None
        out[i] = None
    return out


@_without_cycle_collection()
def scan_range(
    item: str | FileRange,
    fmt_spec: str,
    config: SessionConfig,
    parser_state: dict[str, Any],
    partitions: int,
    max_line_bytes: int,
    keep_values: dict[int, list[int]] | None = None,
) -> list[Any]:
    """One range read and cut into ``partitions`` parts: ``[meta, part_0, part_1, ...]``.
    ``keep_values``: the parameter values to keep per key (the model's parameter models
    read a few; the rest would only fill the object store).

    ``meta``: line and entry counts, stats, errors, the messages of unknown lines in
    order and which of them each part holds, the template ids its sessions use. A part:
    its sessions (ids, entry counts) and their entries' columns, unknown lines' keys as
    ``-(1 + their index among the range's unknown lines)``.
    """
    from logwarden.io.ingest import read_raw_sessions
    from logwarden.parsing import TemplateMiner
    from logwarden.sessions import SessionTable
    from logwarden.sessions.grouping import gather

    miner = TemplateMiner.from_state(parser_state)
    raw = read_raw_sessions(
        [item],  # type: ignore[list-item]
        fmt_spec,
        config,
        miner=miner,
        learn=False,
        max_line_bytes=max_line_bytes,
        keep_values=keep_values,
    )
    table = raw.sessions
    if not isinstance(table, SessionTable):
        raise ConfigError(
            "the Ray engine reads id sessions on the column path (no idle timeout, no user masks)",
            field="engine",
        )
    texts = table.texts
    numbers = (
        np.arange(len(texts), dtype=np.int64)
        if table.line_numbers is None
        else np.asarray(table.line_numbers, dtype=np.int64) - 1
    )
    keys = np.asarray(table.line_keys, dtype=np.int64)
    unknown_rows = np.flatnonzero(keys < 0)
    keys[unknown_rows] = -1 - np.arange(len(unknown_rows))
    unknown = [table.content_of(texts[r]) for r in unknown_rows.tolist()]
    stamps = _nan_none(table.timestamps)
    clock = _nan_none(table.clock)
    # Kinds are shared tuples (one per template shape): sent once, referred to by index,
    # in order of first appearance (every row is looked up in C, not a Python step each).
    row_kinds = table.kinds
    kind_keys = list(map(id, row_kinds))
    first_of = dict(zip(kind_keys, row_kinds, strict=True))  # the first row's order
    kind_list: list[tuple[str, ...]] = [tuple(k) for k in first_of.values()]
    index_of = {key: j for j, key in enumerate(first_of)}
    kind_ids = np.fromiter(
        map(index_of.__getitem__, kind_keys), dtype=np.int32, count=len(kind_keys)
    )
    values = table.values
    flat: list[str] = getattr(values, "flat", None) or []
    starts = np.asarray(getattr(values, "start", [0] * (len(texts) + 1)), dtype=np.int64)

    by_part: list[list[int]] = [[] for _ in range(partitions)]
    for i, sid in enumerate(table.ids):
        by_part[owner_of(sid, partitions)].append(i)
    # Sessions that begin on one line (it names several ids) are in the order of their ids
    # in it: each one's place among them, the tie-break of the order by first line.
    ties = np.zeros(len(table.ids), dtype=np.int64)
    for i in range(1, len(table.ids)):
        if table.members[i][0] == table.members[i - 1][0]:
            ties[i] = ties[i - 1] + 1
    parts: list[dict[str, Any]] = []
    unknown_parts: list[list[int]] = []
    used: set[int] = set()
    in_session = np.zeros(len(texts), dtype=bool)
    for sessions in by_part:
        members = [table.members[i] for i in sessions]
        rows = np.fromiter((r for m in members for r in m), dtype=np.int64)
        in_session[rows] = True
        pk = keys[rows]
        used.update(int(k) for k in np.unique(pk[pk >= 0]))
        unknown_parts.append(sorted(int(-1 - k) for k in np.unique(pk[pk < 0])))
        # The rows' values one after the other, indexed in NumPy and taken in C.
        begin, count = starts[rows], starts[rows + 1] - starts[rows]
        ends = np.cumsum(count)
        at = np.repeat(begin - (ends - count), count) + np.arange(int(ends[-1]) if len(ends) else 0)
        part_flat = gather(flat, at.tolist())
        parts.append(
            {
                "ids": [table.ids[i] for i in sessions],
                "ties": ties[sessions] if sessions else np.zeros(0, dtype=np.int64),
                "sizes": np.array([len(m) for m in members], dtype=np.int64),
                "rows": rows,
                # input line numbers within the range (empty lines counted), from 0
                "numbers": numbers[rows],
                "keys": pk,
                "stamps": stamps[rows],
                "clock": clock[rows],
                "counts": starts[rows + 1] - starts[rows],
                "values": part_flat,
                "kinds": kind_ids[rows],
                "kind_list": kind_list,
            }
        )
    alone_lines, alone_stamps = _clock_steps(numbers, stamps, ~in_session)
    meta = {
        "lines": int(raw.stats["lines_read"]),  # every line of the range, empty ones too
        # the lines of no session that move the log clock (see last_entries)
        "clock_lines": alone_lines,
        "clock_stamps": alone_stamps,
        "entries": raw.events,
        "stats": dict(raw.stats.counts),
        "errors": list(raw.errors),
        "unknown": unknown,
        "unknown_parts": unknown_parts,
        "used": sorted(used),
    }
    return [meta, *parts]


def _clock_steps(
    numbers: np.ndarray, stamps: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The line numbers and times of the ``rows`` (a mask, in line order) whose valid time
    is later than every earlier one's: the only ones that can move the log clock."""
    from logwarden.sessions.grouping import TIMESTAMP_LIMIT

    at = np.flatnonzero(rows & (np.abs(stamps) < TIMESTAMP_LIMIT))  # NaN: no time
    t = stamps[at]
    if len(t) > 1:
        rises = np.concatenate([[True], t[1:] > np.maximum.accumulate(t)[:-1]])
        at, t = at[rises], t[rises]
    return numbers[at], t


def range_lines(item: str | FileRange, max_line_bytes: int, wanted: np.ndarray) -> list[str]:
    """The raw lines ``wanted`` (sorted indices from 0 among the lines of ``item``, empty
    lines counted) as the scan read them: the few lines verdicts show are read again from
    the files rather than every line's text sent through the cluster."""
    from logwarden.io.sources import LineReader, SourceConfig
    from logwarden.sessions.grouping import gather

    out: list[str] = []
    base = taken = 0
    if len(wanted) == 0:
        return out
    for batch in LineReader([item], SourceConfig(max_line_bytes=max_line_bytes)).text_batches():
        upto = int(np.searchsorted(wanted, base + len(batch)))
        if upto > taken:
            out.extend(gather(batch, (wanted[taken:upto] - base).tolist()))
            taken = upto
            if taken == len(wanted):
                break
        base += len(batch)
    return out


# --- the owner task ----------------------------------------------------------------------------


def _content_reader(fmt_spec: str) -> Any:
    """A line's message as the format gives it (the whole line when it does not match),
    as the column path gives it."""
    from logwarden.io.formats import get_format

    fmt = get_format(fmt_spec)
    match = fmt.regex.fullmatch  # type: ignore[attr-defined]
    has_content = "Content" in fmt.regex.groupindex  # type: ignore[attr-defined]

    def content_of(text: str) -> str:
        m = match(text.strip())
        if m is None:
            return text
        return (m.group("Content") or "") if has_content else ""

    return content_of


def assign_units(
    sizes: Mapping[tuple[int, int | None], int], partitions: int
) -> dict[tuple[int, int | None], int]:
    """The partition that scores each parameter-model unit's whole series, given their
    lengths: the longest first, each to the least loaded partition (by a hash of the unit
    one of them took three times the other's share of the HDFS series, and the other
    waited). The same sizes give the same assignment."""
    load = [0] * partitions
    out: dict[tuple[int, int | None], int] = {}
    for unit in sorted(sizes, key=lambda u: (-sizes[u], u[0], -1 if u[1] is None else u[1])):
        p = load.index(min(load))
        out[unit] = p
        load[p] += sizes[unit]
    return out


def _take(scores: ParamScores, mask: np.ndarray) -> ParamScores:
    """The rows of ``scores`` where ``mask`` is true (every per-entry array cut alike)."""
    n = len(scores.refs)
    cut = {
        f.name: v[mask]
        for f in fields(scores)
        if isinstance(v := getattr(scores, f.name), np.ndarray) and v.shape[:1] == (n,)
    }
    return replace(scores, **cut)


class SessionOwner:
    """One partition of the sessions, on a Ray worker (an actor), in three steps:

    ``load``: the parts of its sessions from every range, joined in input order into a
    session table, and their parameter-model series built (their lengths go to the driver,
    which assigns each unit an owner: ``assign_units``); ``pieces``: the series cut by unit
    owner; ``score_units``:
    the whole series of the units it owns (pieces from every owner, put in the single
    process's order: sessions by first line, then entry) scored and cut back by session
    owner; ``verdicts``: its sessions scored by the key model, with the units' scores.
    A unit's series runs across sessions (each entry's history is the entries before it),
    hence the second shuffle.
    """

    def __init__(self, model_state: tuple[dict[str, Any], dict[str, np.ndarray]], fmt_spec: str):
        from logwarden.detect.detector import Detector

        self.model = Detector.from_state(*model_state).model
        self.fmt_spec = fmt_spec
        self.partitions = 1

    @_without_cycle_collection(freeze=True)  # the table lives until the actor ends
    def load(
        self,
        templates: dict[str, str],
        offsets: list[int],
        unknown: list[dict[int, tuple[int, list[str], tuple[str, ...]]]],
        partitions: int,
        *parts: dict[str, Any],
    ) -> Any:
        """``offsets``: lines before each range; ``unknown``: per range, its unknown lines'
        keys (negative), values and kinds by their index among the range's unknown lines.
        Returns the length of each parameter-model unit's series among its sessions."""
        from logwarden.sessions import FlatValues, SessionTable

        self.partitions = partitions
        index: dict[str, int] = {}
        ids: list[str] = []
        members: list[list[int]] = []
        first: list[int] = []
        first_tie: list[int] = []
        rows_in = 0
        line_keys: list[int] = []
        stamps: list[np.ndarray] = []
        clock: list[np.ndarray] = []
        flat: list[str] = []
        counts: list[np.ndarray] = []
        kinds: list[tuple[str, ...]] = []
        lines: list[np.ndarray] = []
        override: dict[int, list[str]] = {}
        for c, part in enumerate(parts):
            base = rows_in
            rows_in += len(part["keys"])
            kl = part["kind_list"]
            kinds.extend(map(kl.__getitem__, part["kinds"].tolist()))
            pk = part["keys"].tolist()
            for j in np.flatnonzero(part["keys"] < 0).tolist():
                key, vals, kind = unknown[c][-1 - pk[j]]
                pk[j] = key
                override[base + j] = vals
                kinds[base + j] = kind
            line_keys.extend(pk)
            stamps.append(part["stamps"])
            clock.append(part["clock"])
            flat.extend(part["values"])
            counts.append(part["counts"])
            lines.append(part["numbers"] + (offsets[c] + 1))
            at = base
            for sid, size, tie in zip(
                part["ids"], part["sizes"].tolist(), part["ties"].tolist(), strict=True
            ):
                i = index.get(sid)
                if i is None:
                    index[sid] = len(ids)
                    ids.append(sid)
                    members.append(list(range(at, at + size)))
                    first.append(offsets[c] + int(part["numbers"][at - base]))
                    first_tie.append(tie)
                else:
                    members[i].extend(range(at, at + size))
                at += size

        def cat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)

        all_stamps = cat(stamps, np.float64)
        starts = np.concatenate([[0], np.cumsum(cat(counts, np.int64))]).astype(np.int64)
        by_key: dict[int, str] = {}
        label_of: dict[int, str] = {}
        for label, text in templates.items():
            k = int(label[1:]) if label[0] == "E" else -int(label[1:])
            by_key[k] = text
            label_of[k] = label
        self.table = SessionTable(
            ids, members, [], _content_reader(self.fmt_spec), line_keys,
            _none_nan(all_stamps), FlatValues(flat, starts, override), kinds, by_key,
            _none_nan(cat(clock, np.float64)),
        ).without_texts()  # fmt: skip
        # (the raw lines stay in the files: the driver reads the anomalous sessions' lines)
        self.templates = templates
        self.keys = [[label_of[line_keys[r]] for r in rows] for rows in members]
        self.first = np.array(first, dtype=np.int64)
        self.first_tie = np.array(first_tie, dtype=np.int64)
        order = np.fromiter((r for m in members for r in m), dtype=np.int64)
        self.sizes = np.array([len(m) for m in members], dtype=np.int64)
        self.lines = cat(lines, np.int64)[order]
        self.stamps = all_stamps[order]

        self.series: dict[tuple[int, int | None], Any] = {}
        params = getattr(self.model, "params_", None)
        if params is not None:
            for unit, series in params.series(self.table).items():
                sessions = series.refs[:, 0] if len(series) else np.zeros(0, np.int64)
                self.series[unit] = (series, self.first[sessions], self.first_tie[sessions])
        return {unit: len(piece[0]) for unit, piece in self.series.items()}

    def pieces(self, owners: dict[tuple[int, int | None], int]) -> Any:
        """The series, one dict of pieces per unit owner (``owners``: the unit's owner)."""
        pieces: list[dict[Any, Any]] = [{} for _ in range(self.partitions)]
        for unit, piece in self.series.items():
            pieces[owners[unit]][unit] = piece
        self.series = {}
        return pieces if self.partitions > 1 else pieces[0]

    @_without_cycle_collection()
    def score_units(self, *pieces: dict[Any, Any]) -> Any:
        """The units this owner scores, each over its whole series; one dict of
        ``ParamScores`` per session owner, entries referred to by its session indices."""
        from logwarden.models.params import KeySeries

        out: list[dict[Any, ParamScores]] = [{} for _ in pieces]
        params = getattr(self.model, "params_", None)
        units = sorted({u for piece in pieces for u in piece}, key=lambda u: (u[0], u[1] or -1))
        for unit in units:
            have = [(p, piece[unit]) for p, piece in enumerate(pieces) if unit in piece]
            s0 = have[0][1][0]
            firsts = np.concatenate([f for _, (_, f, _) in have])
            ties = np.concatenate([t for _, (_, _, t) in have])
            refs = np.concatenate([s.refs for _, (s, _, _) in have])
            owner = np.concatenate([np.full(len(s), p, dtype=np.int64) for p, (s, _, _) in have])
            # sessions by first line (and their place in it), then entry
            order = np.lexsort((refs[:, 1], ties, firsts))
            series = KeySeries(
                s0.key,
                s0.positions,
                np.concatenate([s.values for _, (s, _, _) in have])[order],
                refs[order],
                sum(s.irregular for _, (s, _, _) in have),
                s0.prev,
            )
            assert params is not None
            scored = params.score_key(series)
            by = owner[order]
            for p, _ in have:
                out[p][unit] = _take(scored, by == p)
        return out if len(out) > 1 else out[0]

    @_without_cycle_collection()
    def verdicts(self, diagnose: bool, *scored: dict[Any, ParamScores]) -> dict[str, Any]:
        """Its sessions' verdicts (with their workflow diagnosis when ``diagnose``), keys,
        first lines and entry positions."""
        model = self.model
        # What ``Detector.verdicts`` does with a read's templates.
        known = set(model.keys_)
        for key, text in self.templates.items():
            if key in known:
                model.templates_.setdefault(key, text)
            else:
                model.templates_[key] = text
        table = self.table
        param_scores = {u: sc for piece in scored for u, sc in piece.items()}
        verdicts = model.verdicts(
            self.keys,
            table.ids,
            events=table,
            param_scores=param_scores if getattr(model, "params_", None) is not None else None,
            diagnose=diagnose,
        )
        return {
            "first": self.first,
            "first_tie": self.first_tie,
            "keys": self.keys,
            "verdicts": verdicts,
            "sizes": self.sizes,
            "lines": self.lines,
            "stamps": self.stamps,
        }


# --- the driver --------------------------------------------------------------------------------


class _Positions(Sequence[tuple[list[int], list[float | None]]]):
    """Per session, its entries' line numbers and timestamps, from flat arrays."""

    def __init__(
        self,
        sizes: np.ndarray,
        lines: np.ndarray,
        stamps: np.ndarray,
        others: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.lines = lines
        self.stamps = stamps
        # Lines of no session that move the log clock: their numbers and times.
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
        self.others = others if others is not None else empty

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> tuple[list[int], list[float | None]]:  # type: ignore[override]
        a, b = int(self.starts[i]), int(self.starts[i + 1])
        return self.lines[a:b].tolist(), _none_nan(self.stamps[a:b])

    def __iter__(self) -> Iterator[tuple[list[int], list[float | None]]]:
        for i in range(len(self)):
            yield self[i]

    def paused(self, timeout: float) -> int:
        """Sessions with two consecutive timed entries more than ``timeout`` seconds apart:
        the local engine splits each of them (its idle timeout), this engine does not."""
        t = self.stamps
        if len(t) < 2:
            return 0
        owner = np.repeat(np.arange(len(self)), np.diff(self.starts))
        # NaN (no timestamp) compares false: such a pair is no pause.
        gap = (t[1:] - t[:-1] > timeout) & (owner[1:] == owner[:-1])
        return len(np.unique(owner[1:][gap]))


def paused_sessions(
    positions: Sequence[tuple[list[int], list[float | None]]], timeout: float
) -> int:
    """How many sessions (``RayResult.positions``) pause longer than ``timeout`` seconds
    between two timed entries: the local engine's idle timeout splits each of them."""
    if isinstance(positions, _Positions):
        return positions.paused(timeout)
    count = 0
    for _, stamps in positions:
        timed = [t for t in stamps if t is not None]
        count += any(b - a > timeout for a, b in pairwise(timed))
    return count


def open_at_end(
    ids: Sequence[str],
    positions: Sequence[tuple[list[int], list[float | None]]],
    seconds: float | None,
    lines: int | None = None,
) -> set[str]:
    """The ids of the sessions (``RayResult.inputs.ids`` and ``.positions``) still active
    when the input ended, as the local engine finds them (``VerdictStream.open_at_end``,
    narrowed by ``EndWindow``): the log clock (the latest timestamp so far, in line order)
    at a session's last entry is within ``seconds`` of the clock at the end; before the
    first timestamp, a session's clock is the first one. Without a clock (no timestamp,
    or no ``seconds``): its last line within ``lines`` input lines of the last line of a
    session, or, with ``lines`` None, every session active. The clock counts the times of
    lines of no session as the local engine does, where ``positions`` has them (the
    ``_Positions`` of ``read_and_score``)."""
    from logwarden.detect.detector import EndWindow

    return EndWindow(seconds, lines, False).select(ids, *last_entries(positions))[0]


def last_entries(
    positions: Sequence[tuple[list[int], list[float | None]]],
) -> tuple[np.ndarray, np.ndarray, float]:
    """Each session's last input line and the log clock at it (NaN before the first
    timestamp: the first one then; NaN without any), and the clock at the end (NaN: no
    timestamp), for ``EndWindow.select``. The clock is the latest time of any line so far:
    the sessions' entries', and those of the lines of no session that ``positions`` holds."""
    other_lines, other_stamps = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if isinstance(positions, _Positions):
        starts, lines, stamps = positions.starts, positions.lines, positions.stamps
        other_lines, other_stamps = positions.others
    else:
        sizes = [len(lines) for lines, _ in positions]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        lines = np.array([n for ln, _ in positions for n in ln], dtype=np.int64)
        stamps = np.array(
            [np.nan if t is None else t for _, ts in positions for t in ts], dtype=np.float64
        )
    if len(lines) == 0:
        none = np.full(len(starts) - 1, np.nan)
        return np.zeros(len(starts) - 1, dtype=np.int64), none, math.nan
    from logwarden.sessions.grouping import TIMESTAMP_LIMIT

    # Timestamps out of range are no clock (the local engine counts them bad_timestamp).
    stamps = np.where(np.abs(stamps) < TIMESTAMP_LIMIT, stamps, np.nan)
    # The sessions' entries first, then the other lines: entry i is still at i.
    every_line = np.concatenate([lines, other_lines])
    every_stamp = np.concatenate([stamps, other_stamps])
    order = np.argsort(every_line, kind="stable")
    clock = np.empty_like(every_stamp)
    clock[order] = np.fmax.accumulate(every_stamp[order])  # NaN until the first timestamp
    at = starts[1:] - 1  # each session's last entry
    last = clock[at]
    timed = ~np.isnan(every_stamp)
    if not timed.any():
        return lines[at], last, math.nan
    first, end = every_stamp[order][timed[order]][0], float(np.nanmax(every_stamp))
    return lines[at], np.where(np.isnan(last), first, last), end


def _check(detector: Detector) -> tuple[str, SessionConfig]:
    from logwarden.io.formats import LogFormat, get_format
    from logwarden.io.ingest import session_config

    spec = detector.input
    if spec.input_format != "raw":
        raise ConfigError(
            "the Ray engine reads raw logs (sequence and jsonl files are read here)",
            field="engine",
        )
    if spec.window is not None or not spec.session:
        raise ConfigError(
            "the Ray engine needs sessions by id (--session), not windows", field="engine"
        )
    if not spec.format:
        raise ConfigError("raw input needs a log format", field="format")
    if detector.miner is None:
        raise NotFittedError("this detector has no parser state: train it first")
    if type(get_format(spec.format)) is not LogFormat:
        raise ConfigError("the Ray engine reads loghub-style log formats", field="engine")
    if detector.miner.config.masks:
        raise ConfigError(
            "the Ray engine reads with the built-in masks only (this parser has user masks)",
            field="engine",
        )
    return spec.format, session_config(spec.session, None, in_line=spec.session_in_line)


def _get(ray: Any, refs: Any) -> Any:
    """``ray.get``, with a task's own error (a LogwardenError, an OSError) raised as it is,
    and the cluster's failures as a LogwardenError with one line."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LogwardenError | OSError):
            raise cause from None
        raise
    except ray.exceptions.RayError as exc:  # a worker or node lost, an object evicted
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LogwardenError(f"the Ray cluster failed: {first}") from exc


def _shown_lines(
    ray: Any,
    results: list[dict[str, Any]],
    items: list[str | FileRange],
    offsets: list[int],
    max_line_bytes: int,
) -> dict[int, str]:
    """The raw lines of the sessions whose verdicts show lines (the anomalous ones), by
    input line number, read again from the files by one task per range that holds any."""
    wanted: list[np.ndarray] = []
    for r in results:
        starts = np.concatenate([[0], np.cumsum(r["sizes"])]).tolist()
        for i, v in enumerate(r["verdicts"]):
            if v.anomalous and v.position is not None:
                wanted.append(r["lines"][starts[i] : starts[i + 1]])
    if not wanted:
        return {}
    numbers = np.unique(np.concatenate(wanted))
    # The range of each line: the last one that starts before it (empty ones never do).
    where = np.searchsorted(np.asarray(offsets, dtype=np.int64), numbers - 1, side="right") - 1
    fetch = ray.remote(num_cpus=1)(range_lines).options(scheduling_strategy="SPREAD")
    held = np.unique(where).tolist()
    refs = [
        fetch.remote(items[c], max_line_bytes, numbers[where == c] - 1 - offsets[c]) for c in held
    ]
    texts = [t for got in _get(ray, refs) for t in got]
    if len(texts) != len(numbers):
        names = sorted(
            {str(items[c] if isinstance(items[c], str) else items[c].path) for c in held}
        )
        raise DataError(f"the input changed while it was read (lines gone from {', '.join(names)})")
    return dict(zip(numbers.tolist(), texts, strict=True))


def read_and_score(
    detector: Detector,
    paths: Sequence[str],
    config: RayConfig | None = None,
    *,
    labels: str | Path | Mapping[str, int] | None = None,
    diagnose: bool = True,
) -> RayResult:
    """Read ``paths`` (raw logs with session ids) and score them on Ray: the same sessions,
    keys, verdicts and counts as ``detector.verdicts(detector.read(paths),
    diagnose=diagnose)``.

    Connects as ``connect`` does (and shuts down a Ray it started). ``labels``: a label
    CSV, as ``Detector.read`` takes it. Raises ConfigError for settings the engine does not
    cover (windows, non-raw input, stdin) and when Ray is missing or unreachable.
    """
    from logwarden.detect.detector import Inputs
    from logwarden.io.datasets import load_labels
    from logwarden.parsing import TemplateMiner

    config = config or RayConfig()
    fmt_spec, session = _check(detector)
    if not paths:
        raise DataError("no input files")
    expanded = _input_paths(paths)  # before a Ray starts: stdin, pipes and devices refused
    miner = detector.miner
    assert miner is not None
    ray = _import_ray()
    started = False
    own_dir: str | None = None
    try:
        # Inside the try: an interrupt while a local Ray starts left its agents running.
        if config.address is None and config.temp_dir is None and not ray.is_initialized():
            own_dir = tempfile.mkdtemp(prefix="lw-ray-", dir=_system_temp_dir())
            if len(own_dir) <= MAX_ROOT_CHARS:
                config = replace(config, temp_dir=own_dir)
            else:  # Ray's own folder, whose paths are shorter
                os.rmdir(own_dir)
                own_dir = None
        started = connect(config)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        partitions = config.partitions or cpus
        items = plan_ranges(expanded, config.range_bytes, cpus)  # globs expanded once
        scan = ray.remote(num_cpus=1)(scan_range).options(
            num_returns=1 + partitions, scheduling_strategy="SPREAD"
        )
        parser_ref = ray.put(miner.to_state()[0])
        # Only the values the parameter models read leave the scans (entries stay on the
        # workers: a caller sees no value either way).
        from logwarden.detect.detector import modelled_positions

        keep = {k: sorted(p) for k, p in modelled_positions(detector.model).items()}
        scans = [
            scan.remote(
                item, fmt_spec, session, parser_ref, partitions, config.max_line_bytes, keep
            )
            for item in items
        ]
        metas = _get(ray, [refs[0] for refs in scans])

        # Unknown lines: one miner over their messages in input order, as one process.
        unknown = TemplateMiner()
        found: list[list[tuple[int, list[str], tuple[str, ...]]]] = []
        for meta in metas:
            out = []
            for content in meta["unknown"]:
                key, vals, slots, _ = unknown.parse_slots(content, True)
                out.append((key, vals, tuple(s.kind for s in slots)))
            found.append(out)
        resolved = [[(-unknown.resolve(k), v, kd) for k, v, kd in out] for out in found]
        used_e = sorted({k for meta in metas for k in meta["used"]})
        used_u = sorted(
            {
                -resolved[c][o][0]
                for c, meta in enumerate(metas)
                for p in meta["unknown_parts"]
                for o in p
            }
        )
        templates = {f"E{k}": miner.templates_[k].text for k in used_e}
        templates.update({f"U{k}": unknown.templates_[k].text for k in used_u})
        offsets = np.concatenate([[0], np.cumsum([m["lines"] for m in metas])]).tolist()[:-1]

        model_ref = ray.put(detector.to_state())
        spread = {"scheduling_strategy": "SPREAD"}
        owners = [
            ray.remote(SessionOwner).options(**spread).remote(model_ref, fmt_spec)
            for _ in range(partitions)
        ]
        loads = []
        for p, owner in enumerate(owners):
            mine = [
                {o: resolved[c][o] for o in meta["unknown_parts"][p]}
                for c, meta in enumerate(metas)
            ]
            loads.append(
                owner.load.remote(
                    templates, offsets, mine, partitions, *[refs[1 + p] for refs in scans]
                )
            )
        # The scans' parts are held by the load tasks now: dropped from the object store
        # as those end, not at the end of the call (each phase's outputs likewise below).
        del scans
        sizes: Counter[tuple[int, int | None]] = Counter()
        for got in _get(ray, loads):
            sizes.update(got)
        unit_owners = assign_units(sizes, partitions)
        pieces = []
        for owner in owners:
            got = owner.pieces.options(num_returns=partitions).remote(unit_owners)
            pieces.append(got if partitions > 1 else [got])
        scored = []
        for q, owner in enumerate(owners):
            got = owner.score_units.options(num_returns=partitions).remote(
                *[pieces[p][q] for p in range(partitions)]
            )
            scored.append(got if partitions > 1 else [got])
        del pieces
        finals = [
            owner.verdicts.remote(diagnose, *[scored[q][p] for q in range(partitions)])
            for p, owner in enumerate(owners)
        ]
        del scored
        results = _get(ray, finals)
        for owner in owners:
            ray.kill(owner)
        shown = _shown_lines(ray, results, items, offsets, config.max_line_bytes)
    finally:
        if started or (config.address is None and ray.is_initialized()):
            ray.shutdown()
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)

    first = np.concatenate([r["first"] for r in results])
    first_tie = np.concatenate([r["first_tie"] for r in results])
    order = np.lexsort((first_tie, first)).tolist()
    keys_all = [k for r in results for k in r["keys"]]
    verdicts_all = [v for r in results for v in r["verdicts"]]
    sizes = np.concatenate([r["sizes"] for r in results])
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    line_nos = np.concatenate([r["lines"] for r in results])
    stamps = np.concatenate([r["stamps"] for r in results])
    # The entries of the sessions in their new order: each session's run moved as a block.
    moved = sizes[order]
    before = np.concatenate([[0], np.cumsum(moved)[:-1]]).astype(np.int64)
    take = np.arange(int(starts[-1]), dtype=np.int64) + np.repeat(
        starts[:-1][order] - before, moved
    )
    keys = [keys_all[i] for i in order]
    verdicts = [verdicts_all[i] for i in order]
    ids = [v.session for v in verdicts]
    stats = Stats()
    errors: list[tuple[str, str]] = []
    for meta in metas:
        stats.merge(Stats(Counter(meta["stats"])))
        errors.extend(tuple(e) for e in meta["errors"])
    found_labels: list[int | None] = [None] * len(ids)
    if labels is not None:
        by_id = labels if isinstance(labels, Mapping) else load_labels(labels)
        found_labels = [by_id.get(sid) for sid in ids]
    # What ``Detector.verdicts`` does with the read's templates, so that this detector
    # explains as the owners did (the HTML report, drift).
    known = set(detector.model.keys_)
    for key, text in templates.items():
        if key in known:
            detector.model.templates_.setdefault(key, text)
        else:
            detector.model.templates_[key] = text
    inputs = Inputs(
        ids,
        keys,
        found_labels,
        templates,
        stats=stats,
        errors=errors,
        entries=sum(m["entries"] for m in metas),
        lines_read=stats["lines_read"],
    )
    from logwarden.detect.estimator import attach_lines, attach_places

    clock_lines = [m["clock_lines"] + (offsets[c] + 1) for c, m in enumerate(metas)]
    positions = _Positions(
        sizes[order],
        line_nos[take],
        stamps[take],
        (
            np.concatenate([np.zeros(0, dtype=np.int64), *clock_lines]),
            np.concatenate([np.zeros(0, dtype=np.float64), *(m["clock_stamps"] for m in metas)]),
        ),
    )
    # Where each input starts among the lines, as LineReader.files has it for one process.
    files = [
        (int(offsets[c]), item if isinstance(item, str) else item.path)
        for c, item in enumerate(items)
        if isinstance(item, str) or item.start == 0
    ]
    starts = positions.starts.tolist()
    attach_lines(
        verdicts,
        [
            [shown[n] for n in positions.lines[starts[i] : starts[i + 1]].tolist()]
            if v.anomalous and v.position is not None
            else []
            for i, v in enumerate(verdicts)
        ],
    )
    attach_places(verdicts, positions, files)  # as the local engine's verdicts have them
    return RayResult(inputs, verdicts, positions)
