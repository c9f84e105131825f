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
import sys
import time
from pathlib import Path

from _harness import DEFAULT_DATA
from _logs import DATASETS, DEFAULT_LINES, DEFAULT_OUT, build


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
