"""Synthetic logs of kinds loghub lacks, generated with their own ground truth.

The loghub-2k systems are what the parser is developed on; these check it on shapes none of
them has, so that a rule fitted to loghub shows here. Each kind is a list of event
templates whose fields are drawn at random; the truth of a line is its event's index.

* ``service``: a key=value service log: user names, currency codes, amounts, URLs, order
  ids, e-mail addresses, bracketed lists of variable length, durations written two ways,
  plugin names, and a few events that differ in one state word (kept apart in the truth).
* ``proxy``: a proxy log of the kind the parser issue describes: host names with ports,
  program names, byte counts with an optional ``(0.01 KB)`` part, lifetimes written as
  ``<1 sec`` or ``00:01``.

    python bench/parser_synthetic.py [--lines 2000] [--seeds 1 2 3] [--drain3]

prints grouping accuracy of logwarden's default miner (and drain3 0.9.11's default with
``--drain3``) per kind and seed.
"""

from __future__ import annotations

import argparse
import sys

from _synthetic_logs import KINDS, drain3_groups, generate, logwarden_groups


def main(argv: list[str] | None = None) -> int:
    from logwarden.evaluate import grouping_accuracy

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--drain3", action="store_true", help="add drain3 0.9.11's default")
    args = p.parse_args(argv)
    print(f"{'kind':<8} {'seed':>4} {'events':>6} {'logwarden':>10} {'tpl':>5}", end="")
    print(f" {'drain3':>7} {'tpl':>5}" if args.drain3 else "")
    for kind in KINDS:
        for seed in args.seeds:
            texts, truth = generate(kind, args.lines, seed)
            ours = logwarden_groups(texts)
            row = (
                f"{kind:<8} {seed:>4} {len(set(truth)):>6} "
                f"{grouping_accuracy(truth, ours):>10.4f} {len(set(ours)):>5}"
            )
            if args.drain3:
                d3 = drain3_groups(texts)
                row += f" {grouping_accuracy(truth, d3):>7.4f} {len(set(d3)):>5}"
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
