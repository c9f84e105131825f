"""Build large benchmark logs (1,000,000 lines by default) from the loghub-2k samples.

The 2,000 sample lines are repeated in order, and in every copy each digit of the message
content is redrawn at random, so that copies of a line are not byte-identical (a parser
cannot win by caching whole lines) while every line keeps its shape: digit runs keep their
length, their leading zeros (a lone ``0`` stays, so ``0x1f`` stays hex) and their sign (a
``-`` is not a digit and stays), and the first significant digit stays non-zero.

Header fields are left as they are, so dates and times stay valid, except plain counters
that carry no date: HDFS's Pid, and the microseconds of BGL's Time (its seconds must agree
with Timestamp). The latter also keeps BGL's digit-free messages apart (a hundred or so
chance repeats in a million lines). The output is a deterministic function of the seed.

    python bench/make_logs.py                      # bench/out/hdfs_1000000.log, bgl_1000000.log
    python bench/make_logs.py --lines 100000 --seed 7 --out /tmp/logs

The work is done on whole blocks of bytes with numpy, so a 1M-line file takes a few seconds.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "out"
# The shared data sits next to the project checkout (see ../shared/data/README.md).
DEFAULT_DATA = BENCH_DIR.parent.parent / "shared" / "data"
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=DEFAULT_LINES, help="lines per file")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument(
        "--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS), metavar="NAME"
    )
    args = p.parse_args(argv)
    if args.lines < 1:
        p.error("--lines must be positive")
    for name in args.datasets:
        ds = DATASETS[name]
        if not ds.sample(args.data).is_file():
            print(f"make_logs: error: {ds.sample(args.data)} not found (--data)", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        path, unmatched = build(ds, args.data, args.out, args.lines, args.seed)
        took = time.perf_counter() - t0
        size = path.stat().st_size / 2**20
        note = (
            f", {unmatched} sample lines copied unchanged (header unmatched)" if unmatched else ""
        )
        print(f"{path}: {args.lines:,} lines, {size:,.1f} MiB in {took:.1f} s{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
