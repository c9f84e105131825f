"""The 1M-line benchmark logs, built from the loghub-2k samples (see make_logs.py, its
command line, for how lines are varied): the datasets, logparser's header regex, ``build``.
Used by make_logs.py and by parse_speed.py (which builds a missing log itself)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _harness import BENCH_DIR

DEFAULT_OUT = BENCH_DIR / "out"
DEFAULT_LINES = 1_000_000
CYCLES_PER_BLOCK = 50  # copies of the 2k sample generated and written at a time
_DIGIT_RUN = re.compile(rb"[0-9]+")


@dataclass(frozen=True)
class Dataset:
    name: str  # preset name for `logwarden parse --format`
    system: str  # folder and file prefix in loghub-2k
    log_format: str  # loghub format string (from the data README)
    # header fields whose digits are redrawn too: field -> how many trailing characters
    # (None: the whole field); only fields where any digits keep the line valid
    counters: tuple[tuple[str, int | None], ...] = ()

    def sample(self, data_dir: Path) -> Path:
        return data_dir / "loghub-2k" / self.system / f"{self.system}_2k.log"


DATASETS: dict[str, Dataset] = {
    "hdfs": Dataset(
        "hdfs",
        "HDFS",
        "<Date> <Time> <Pid> <Level> <Component>: <Content>",
        counters=(("Pid", None),),
    ),
    "bgl": Dataset(
        "bgl",
        "BGL",
        "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
        counters=(("Time", 6),),  # 2005-06-03-15.42.50.675872: the microseconds
    ),
}


def loghub_regex(log_format: str) -> str:
    """The header regex logparser builds from a format string (``generate_logformat_regex``).

    Literal text between fields is kept as is (so ``\\[`` stays an escaped bracket), runs
    of spaces match any whitespace, and every ``<Field>`` becomes a lazy named group.
    """
    parts = re.split(r"(<[^<>]+>)", log_format)
    regex = ""
    for k, part in enumerate(parts):
        if k % 2 == 0:
            regex += re.sub(" +", r"\\s+", part)
        else:
            regex += f"(?P<{part.strip('<>')}>.*?)"
    return "^" + regex + "$"


def output_path(out_dir: Path, name: str, lines: int) -> Path:
    return out_dir / f"{name}_{lines}.log"


def _digit_classes(sample: bytes, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions in ``sample`` of digits to redraw from 0-9 and from 1-9; unmatched lines."""
    header = re.compile(loghub_regex(dataset.log_format).encode())
    any_digit: list[int] = []
    nonzero: list[int] = []
    unmatched = 0
    pos = 0
    for line in sample.splitlines(keepends=True):
        m = header.match(line.rstrip(b"\r\n"))
        if m is None:
            unmatched += 1  # left byte-identical rather than guessing where its header ends
            pos += len(line)
            continue
        spans = [(m.start("Content"), m.end("Content"))]
        for name, tail in dataset.counters:
            start, end = m.span(name)
            spans.append((start if tail is None else max(start, end - tail), end))
        for start, end in spans:
            for run in _DIGIT_RUN.finditer(line, start, end):
                i = pos + run.start()
                stop = pos + run.end()
                while i < stop and sample[i] == 0x30:  # keep leading zeros ("007", "0x", "0")
                    i += 1
                if i < stop:
                    nonzero.append(i)  # first significant digit: stays non-zero
                    i += 1
                any_digit.extend(range(i, stop))
        pos += len(line)
    return np.array(any_digit, dtype=np.int64), np.array(nonzero, dtype=np.int64), unmatched


def build(
    dataset: Dataset, data_dir: Path, out_dir: Path, lines: int, seed: int = 0
) -> tuple[Path, int]:
    """Write ``lines`` lines for ``dataset``; return the path and the count of sample lines
    whose header did not match (copied unchanged)."""
    if lines < 1:
        raise ValueError("lines must be >= 1")
    sample = dataset.sample(data_dir).read_bytes()
    if not sample.endswith(b"\n"):
        sample += b"\n"
    ends = np.flatnonzero(np.frombuffer(sample, dtype=np.uint8) == 0x0A) + 1
    per_cycle = len(ends)
    base = np.frombuffer(sample, dtype=np.uint8)
    any_pos, nonzero_pos, unmatched = _digit_classes(sample, dataset)
    # One stream per dataset and seed, independent of block size changes elsewhere.
    rng = np.random.default_rng([seed, sum(dataset.system.encode())])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = output_path(out_dir, dataset.name, lines)
    tmp = path.with_name(path.name + ".tmp")
    full_cycles, rest = divmod(lines, per_cycle)
    with tmp.open("wb") as fh:
        done = 0
        while done < full_cycles or (done == full_cycles and rest):
            k = min(CYCLES_PER_BLOCK, full_cycles - done) if done < full_cycles else 1
            block = np.tile(base, k)
            shift = (np.arange(k, dtype=np.int64) * len(base))[:, None]
            idx = (any_pos[None, :] + shift).ravel()
            block[idx] = rng.integers(0x30, 0x3A, size=idx.size, dtype=np.uint8)
            idx = (nonzero_pos[None, :] + shift).ravel()
            block[idx] = rng.integers(0x31, 0x3A, size=idx.size, dtype=np.uint8)
            if done == full_cycles:  # the partial last copy
                block = block[: ends[rest - 1]]
                done += 1
            else:
                done += k
            fh.write(block.tobytes())
    tmp.replace(path)
    return path, unmatched
