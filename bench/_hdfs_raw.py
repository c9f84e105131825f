"""The DeepLog split's key sequences as raw HDFS log lines, the way a user's log looks.

Each session becomes one HDFS block: a random ``blk_`` id, and one line per key, rendered
from ``hdfs-deeplog/templates.csv`` (loghub's HDFS_v1 templates E1..E30: key ``N`` is
template ``EN``) by filling every ``<*>`` slot with a value of the kind HDFS writes there
(block ids, addresses, sizes, paths, exception texts), behind the HDFS header
``<Date> <Time> <Pid> <Level> <Component>: <Content>``. Sessions start at random times
over the log's span and their lines are spaced by random gaps, so the blocks interleave
as in a real HDFS log; the lines are written in time order.

Nothing of the key sequences is changed: parsing the lines again and grouping them by
block id gives the sessions back (``key_agreement`` measures how exactly the parser's
templates match the original keys).

    lines, ids = render_sessions(sessions, templates, seed)
"""

from __future__ import annotations

import csv
import heapq
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

# Per template: the kind of value in each <*> slot (see _value), in order.
SLOTS: dict[str, tuple[str, ...]] = {
    "E1": ("", "blk"),
    "E2": ("", "blk"),
    "E3": ("node", "blk", "sip"),
    "E4": ("nodec", "blk", "sipc"),
    "E5": ("", "blk", "sipport", "sipport"),
    "E6": ("", "blk", "sipport", "sipport", "size"),
    "E7": ("", "blk", "exc"),
    "E8": ("", "num", "blk", "dot"),
    "E9": ("", "blk", "size", "sip"),
    "E10": ("", "blknum", "exc"),
    "E11": ("", "num", "blk", ""),
    "E12": ("ipport", "blk", "ipport"),
    "E13": ("", "blk"),
    "E14": ("", "blkexc"),
    "E15": ("", "blk", "num", "num", "num"),
    "E16": ("ipport", "blk", "sipport"),
    "E17": ("ipport", "blk", "ipport", "exc"),
    "E18": ("node", "blk", "ipport"),
    "E19": ("", "blk"),
    "E20": ("", "blkdot", "dot"),
    "E21": ("", "blk", "file"),
    "E22": ("", "dotc", "pathblk"),
    "E23": ("", "dotc", "blk", "ipport"),
    "E24": ("", "blk", "dot"),
    "E25": ("", "ipport", "blk", "datanodes"),
    "E26": ("", "dotc", "ipport", "blk", "size"),
    "E27": ("", "dotc", "blk", "ipport", "size"),
    "E28": ("", "dotc", "blk", "ipport", "size"),
    "E29": ("", "blk"),
    "E30": ("", "ipport", "blk"),
}
COMPONENTS: dict[str, str] = {
    **dict.fromkeys(("E5", "E6", "E7", "E12", "E13", "E14"), "dfs.DataNode$DataXceiver"),
    **dict.fromkeys(("E8", "E9", "E10", "E11"), "dfs.DataNode$PacketResponder"),
    **dict.fromkeys(("E1", "E3", "E4", "E17", "E18"), "dfs.DataNode"),
    "E2": "dfs.DataBlockScanner",
    "E15": "dfs.DataNode$BlockReceiver",
    "E16": "dfs.DataNode$DataTransfer",
    **dict.fromkeys(("E19", "E20", "E21"), "dfs.FSDataset"),
    **dict.fromkeys(("E22", "E23", "E24", "E25", "E26", "E27", "E28", "E30"), "dfs.FSNamesystem"),
    "E29": "dfs.PendingReplicationMonitor",
}
WARN = {"E4", "E7", "E10", "E12", "E14", "E17", "E20", "E29"}
HDFS_FORMAT = "<Date> <Time> <Pid> <Level> <Component>: <Content>"
SESSION_REGEX = r"blk_-?\d+"
EXCEPTIONS = (
    "java.io.IOException: Connection reset by peer",
    "java.io.EOFException",
    "java.net.SocketTimeoutException: 60000 millis timeout while waiting for channel",
)


def load_templates(path: str | Path) -> dict[str, str]:
    """EventId -> template text of a loghub templates CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["EventId"]: row["EventTemplate"] for row in csv.DictReader(fh)}


class _Values:
    """Random values of the kinds HDFS writes, for one block."""

    def __init__(self, rng: random.Random, block: str) -> None:
        self.rng = rng
        self.block = block

    def ip(self) -> str:
        r = self.rng.randrange
        return f"10.25{r(2)}.{r(256)}.{r(256)}"

    def value(self, kind: str) -> str:
        r = self.rng.randrange
        blk = self.block
        match kind:
            case "":
                return ""
            case "blk":
                return f" {blk} "
            case "blkdot":
                return f" {blk}. "
            case "blknum":
                return f" {blk} {r(3)} "
            case "blkexc":
                return f" {blk} {EXCEPTIONS[r(len(EXCEPTIONS))]}"
            case "num":
                return f" {r(3)} "
            case "node":
                return f"{self.ip()}:50010 "
            case "nodec":
                return f"{self.ip()}:50010:"
            case "ipport":
                return f" {self.ip()}:50010"
            case "sip":
                return f" /{self.ip()}"
            case "sipc":
                return f" /{self.ip()}:"
            case "sipport":
                return f" /{self.ip()}:{r(30000, 60000)} "
            case "size":
                big = self.rng.random() < 0.8
                return f" {67108864 if big else r(1, 67108864)}"
            case "exc":
                return f" {EXCEPTIONS[r(len(EXCEPTIONS))]}"
            case "dot":
                return "."
            case "dotc":
                return "."
            case "datanodes":
                return f" datanode(s) {self.ip()}:50010"
            case "file":
                return f" /mnt/hadoop/dfs/data/current/subdir{r(64)}/{blk}"
            case "pathblk":
                task = r(2000)
                return (
                    f" /user/root/rand/_temporary/_task_200811092030_0001_m_{task:06d}_0/"
                    f"part-{task:05d}. {blk}"
                )
        raise ValueError(f"unknown slot kind {kind!r}")


def render_line(template: str, event_id: str, values: _Values) -> str:
    """The content of one line: the template's slots filled (single spaces, as HDFS)."""
    parts = template.split("<*>")
    kinds = SLOTS[event_id]
    if len(kinds) != len(parts) - 1:
        raise ValueError(f"{event_id}: {len(parts) - 1} slots, {len(kinds)} kinds")
    out = [parts[0]]
    for kind, part in zip(kinds, parts[1:], strict=True):
        v = values.value(kind).strip()
        glued = kind in ("dot", "dotc", "nodec")  # "NameSystem.delete:", "...:50010:Got"
        if v and not glued:
            v = " " + v + ("" if part.startswith((":", ".")) else " ")
        out.append(v)
        out.append(part)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def render_sessions(
    sessions: Sequence[Sequence[str]],
    templates: dict[str, str],
    seed: int,
    span_s: float = 6 * 3600.0,
) -> tuple[list[str], list[str]]:
    """Raw HDFS lines for ``sessions`` (keys as in the DeepLog files: ``N`` = ``EN``),
    interleaved in time order, and each session's block id."""
    rng = random.Random(seed)
    ids: list[str] = []
    used: set[str] = set()
    events: list[tuple[float, int, str]] = []
    for keys in sessions:
        while True:
            block = f"blk_{'-' if rng.random() < 0.5 else ''}{rng.randrange(1, 2**63)}"
            if block not in used:
                used.add(block)
                break
        ids.append(block)
        values = _Values(rng, block)
        t = rng.uniform(0.0, span_s)
        for j, key in enumerate(keys):
            event_id = f"E{key}"
            content = render_line(templates[event_id], event_id, values)
            events.append((t, len(events), _header(t, event_id, rng) + content))
            # Steps of a block come in bursts (a pipeline's replicas), bursts seconds apart.
            t += rng.expovariate(0.5) if j % 3 == 2 else rng.expovariate(20.0)
    events.sort()
    return [e[2] for e in events], ids


def _header(t: float, event_id: str, rng: random.Random) -> str:
    secs = int(t)
    day = 9 + secs // 86400
    hh, mm, ss = (secs % 86400) // 3600, (secs % 3600) // 60, secs % 60
    level = "WARN" if event_id in WARN else "INFO"
    pid = rng.randrange(10, 40000)
    return f"0811{day:02d} {hh:02d}{mm:02d}{ss:02d} {pid} {level} {COMPONENTS[event_id]}: "


def key_agreement(original: Sequence[Sequence[str]], parsed: Sequence[Sequence[str]]) -> dict:
    """How the parser's keys map to the original ones, over aligned sessions: the distinct
    (original, parsed) pairs, and the keys mapped to more than one partner either way."""
    pairs: Counter[tuple[str, str]] = Counter()
    for a, b in zip(original, parsed, strict=True):
        if len(a) != len(b):
            raise ValueError("sessions of different lengths: the parse lost or added lines")
        pairs.update(zip(map(str, a), map(str, b), strict=True))
    by_orig: dict[str, set[str]] = {}
    by_parsed: dict[str, set[str]] = {}
    for a, b in pairs:
        by_orig.setdefault(a, set()).add(b)
        by_parsed.setdefault(b, set()).add(a)
    return {
        "pairs": len(pairs),
        "split": {k: sorted(v) for k, v in by_orig.items() if len(v) > 1},
        "merged": {k: sorted(v) for k, v in by_parsed.items() if len(v) > 1},
    }


def render_stream(
    sessions: Iterable[tuple[str, Sequence[str]]],
    templates: dict[str, str],
    seed: int,
    rate: float,
) -> Iterator[str]:
    """Raw HDFS lines of ``(block id, keys)`` sessions in time order, in bounded memory.

    ``render_sessions`` builds and sorts every line at once; this renders a log of any size
    with only the sessions in progress in memory: session ``i`` starts at a Poisson arrival
    of ``rate`` sessions per second (the order of ``sessions``), its steps spaced as there,
    and a heap merges the sessions in progress by the time of their next line.
    """
    rng = random.Random(seed)
    heap: list[tuple[float, int, int, str, Sequence[str], _Values]] = []
    t_next = 0.0
    seq = 0
    it = iter(sessions)
    pending = next(it, None)
    while pending is not None or heap:
        # Start every session that begins before the next line of one in progress.
        while pending is not None and (not heap or t_next <= heap[0][0]):
            block, keys = pending
            if keys:
                heapq.heappush(heap, (t_next, seq, 0, block, keys, _Values(rng, block)))
                seq += 1
            t_next += rng.expovariate(rate)
            pending = next(it, None)
        t, _, j, block, keys, values = heapq.heappop(heap)
        event_id = f"E{keys[j]}"
        yield _header(t, event_id, rng) + render_line(templates[event_id], event_id, values)
        if j + 1 < len(keys):
            gap = rng.expovariate(0.5) if j % 3 == 2 else rng.expovariate(20.0)
            heapq.heappush(heap, (t + gap, seq, j + 1, block, keys, values))
            seq += 1


def block_id(rng: random.Random, used: set[str]) -> str:
    """A fresh random HDFS block id (not in ``used``, which it joins)."""
    while True:
        block = f"blk_{'-' if rng.random() < 0.5 else ''}{rng.randrange(1, 2**63)}"
        if block not in used:
            used.add(block)
            return block
