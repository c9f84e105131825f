"""Streaming detection against batch ``detect`` on the same raw logs: same sessions flagged?

    python bench/service_equality.py                      # HDFS rendering + 3 simulator seeds
    python bench/service_equality.py --abnormal 4000 --sim-seeds 0

Two kinds of log, each read both ways with one trained Detector:

* **the DeepLog HDFS split rendered as raw lines**: ``hdfs-deeplog`` holds sessions as key
  sequences (key ``N`` is template ``EN`` of its ``templates.csv``). Every session becomes
  an HDFS block's lines: each key's template with its ``<*>`` filled (the block id after
  the word "block", or at the end; addresses after ``src:``/``dest:``/``to``/``from``,
  sizes after "size", other numbers elsewhere), a loghub HDFS header, and timestamps: a
  session starts every ``--gap`` seconds on average and its entries follow each other
  after log-normal delays, so ``--concurrency`` or so sessions interleave. A Detector is
  trained (keys and parameters, default settings) on the rendering of a ``--train`` share
  of ``hdfs_train``; the test log is the rest of ``hdfs_train`` (normal) and the first
  ``--abnormal`` sessions of ``hdfs_test_abnormal``.
* **the simulator's logs** (``logwarden.sim``), one normal log to train on and one mixed
  log per seed.

For each: the flagged sessions of batch ``Detector.verdicts`` and of a ``StreamDetector``
fed ``--batch`` lines at a time (then flushed), the sessions only one of them flags, the
flagged sessions whose reason, detector or entry differ, and the streaming rate.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import DEFAULT_DATA, machine_info, machine_line
from logwarden.detect import DeepLog, Detector, InputSpec
from logwarden.service import StreamConfig, StreamDetector
from logwarden.service.parse_worker import ParseWorker
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

_EPOCH = 1772323200.0  # 2026-03-01T00:00:00Z


def load_templates(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["EventId"]: row["EventTemplate"] for row in csv.DictReader(fh)}


def fill(template: str, block: str, rng: random.Random) -> str:
    """One message of a template: the block id where it belongs, plausible values elsewhere."""
    parts = [p.strip() for p in template.split("<*>")]
    out = [parts[0]] if parts[0] else []
    placed = False
    for i in range(1, len(parts)):
        before = parts[i - 1].lower()
        last_word = before.split()[-1] if before.split() else ""
        if i == len(parts) - 1 and not parts[i]:
            value = "" if placed else block
        elif "block" in last_word and not placed:
            value = block
        elif last_word in ("src:", "dest:", "to", "from", "of") or last_word.endswith("to"):
            value = f"/10.{rng.randrange(250, 252)}.{rng.randrange(256)}.{rng.randrange(256)}:50010"
        elif "size" in last_word:
            value = str(rng.choice((67108864, 67108864, 67108864, rng.randrange(1, 67108864))))
        else:
            value = str(rng.randrange(1, 1000))
        placed = placed or value == block
        out += [v for v in (value, parts[i]) if v]
    if not placed:
        out.append(block)
    return " ".join(out)


def render(
    sessions: list[list[str]], templates: dict[str, str], seed: int, gap: float
) -> list[str]:
    """Raw HDFS lines of key sessions, interleaved in time."""
    rng = random.Random(seed)
    heap: list[tuple[float, int, int, str]] = []
    t = _EPOCH
    seq = 0
    for keys in sessions:
        t += rng.expovariate(1.0 / gap)
        block = f"blk_{rng.choice(('', '-'))}{rng.randrange(10**17, 10**19)}"
        at = t
        for k in keys:
            at += rng.lognormvariate(-1.5, 1.0)
            msg = fill(templates[f"E{k}"], block, rng)
            heapq.heappush(heap, (at, seq, rng.randrange(1, 400), msg))
            seq += 1
    lines = []
    while heap:
        at, _, pid, msg = heapq.heappop(heap)
        stamp = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}"
        )
        lines.append(f"{stamp} {pid} INFO dfs.DataNode: {msg}")
    return lines


def read_keys(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as fh:
        return [line.split() for line in fh if line.strip()]


def compare(
    det_path: Path, log: Path, batch: int, label: str, worker: bool = False
) -> dict[str, Any]:
    det = Detector.load(det_path)
    t0 = time.perf_counter()
    batch_v = {v.session: v for v in det.verdicts(det.read([str(log)]))}
    batch_s = time.perf_counter() - t0
    lines = log.read_text(encoding="utf-8").splitlines()
    sd = StreamDetector(Detector.load(det_path), StreamConfig())
    final: dict[str, Any] = {}
    steps = [
        [(i + j + 1, t) for j, t in enumerate(lines[i : i + batch])]
        for i in range(0, len(lines), batch)
    ]
    # --parse-worker: as the service's detector process runs, a forked worker parsing
    # (the next step's lines while this step's are checked); CPU seconds of this process.
    pw = ParseWorker(sd.parser) if worker else None
    t0 = time.perf_counter()
    c0 = time.process_time()
    for k, step in enumerate(steps):
        if pw is None:
            got = sd.process(step)
        else:
            nxt = steps[k + 1] if k + 1 < len(steps) else []
            got = sd.process_parsed(pw.chunks(sd.parser, step), lambda n=nxt: pw.submit(n))
        for e in got:
            if e.final:
                final[e.verdict.session] = e.verdict
    for e in sd.flush():
        final[e.verdict.session] = e.verdict
    stream_s = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if pw is not None:
        pw.stop()
    fb = {s for s, v in batch_v.items() if v.anomalous}
    fs = {s for s, v in final.items() if v.anomalous}
    differ = [
        s for s in fb & fs
        if (batch_v[s].reason, batch_v[s].detector, batch_v[s].position)
        != (final[s].reason, final[s].detector, final[s].position)
    ]  # fmt: skip
    return {
        "log": label,
        "lines": len(lines),
        "sessions": len(batch_v),
        "stream_sessions": len(final),
        "batch_flagged": len(fb),
        "stream_flagged": len(fs),
        "only_batch": sorted(fb - fs)[:20],
        "only_stream": sorted(fs - fb)[:20],
        "n_only_batch": len(fb - fs),
        "n_only_stream": len(fs - fb),
        "different_explanation": len(differ),
        "batch_seconds": round(batch_s, 2),
        "stream_lines_per_s": round(len(lines) / stream_s),
        "stream_lines_per_cpu_s": round(len(lines) / cpu),
        "parse_worker": worker,
        "parse_worker_failures": pw.failures if pw is not None else None,
    }


def train(log: Path, fmt: str, session: str, out: Path, seed: int) -> Path:
    det = Detector(DeepLog(seed=seed), InputSpec(format=fmt, session=session))
    det.fit(det.read([str(log)], learn=True))
    det.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--train", type=float, default=0.8, help="share of hdfs_train to train on")
    p.add_argument("--abnormal", type=int, default=None, help="abnormal sessions (all)")
    p.add_argument("--gap", type=float, default=0.2, help="mean seconds between session starts")
    p.add_argument("--batch", type=int, default=2000, help="lines per streaming step")
    p.add_argument("--sim-seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--sim-sessions", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-hdfs", action="store_true")
    p.add_argument("--parse-worker", action="store_true",
                   help="stream as the service does: parsing in a forked worker")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when the flagged sets differ")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="logwarden-equality-") as tmp_s:
        tmp = Path(tmp_s)
        split = args.data / "hdfs-deeplog"
        if not args.skip_hdfs and (split / "hdfs_train").exists():
            templates = load_templates(split / "templates.csv")
            normal = read_keys(split / "hdfs_train")
            rng = random.Random(args.seed)
            order = list(range(len(normal)))
            rng.shuffle(order)
            cut = round(len(normal) * args.train)
            train_keys = [normal[i] for i in sorted(order[:cut])]
            held = [normal[i] for i in sorted(order[cut:])]
            abnormal = read_keys(split / "hdfs_test_abnormal")[: args.abnormal]
            (tmp / "train.log").write_text(
                "\n".join(render(train_keys, templates, args.seed, args.gap)) + "\n"
            )
            test_sessions = held + abnormal
            mixed = list(range(len(test_sessions)))
            rng.shuffle(mixed)
            test = [test_sessions[i] for i in mixed]
            (tmp / "test.log").write_text(
                "\n".join(render(test, templates, args.seed + 1, args.gap)) + "\n"
            )
            print(f"HDFS: rendered {len(train_keys)} training sessions, {len(held)} normal and "
                  f"{len(abnormal)} abnormal test sessions; training...", file=sys.stderr)  # fmt: skip
            model = train(tmp / "train.log", "hdfs", "hdfs", tmp / "hdfs-model", args.seed)
            rows.append(
                compare(
                    model, tmp / "test.log", args.batch, "hdfs-deeplog (rendered)",
                    args.parse_worker,
                )
            )  # fmt: skip
            print(rows[-1], file=sys.stderr)
        elif not args.skip_hdfs:
            print(f"HDFS: {split} not found, skipped", file=sys.stderr)
        for seed in args.sim_seeds:
            simulate(
                SimConfig(seed=100 + seed, sessions=args.sim_sessions, normal_only=True)
            ).write(tmp / "n.log")
            simulate(SimConfig(seed=200 + seed, sessions=args.sim_sessions)).write(tmp / "m.log")
            model = train(tmp / "n.log", SIM_FORMAT, SIM_SESSION_REGEX, tmp / f"sim{seed}", seed)
            rows.append(
                compare(
                    model, tmp / "m.log", args.batch, f"simulator seed {seed}", args.parse_worker
                )
            )
            print(rows[-1], file=sys.stderr)
    machine = machine_info()
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}))
    else:
        print(machine_line(machine))
        print(f"{'log':28} {'lines':>9} {'sessions':>9} {'batch':>6} {'stream':>6} {'only b':>6} "
              f"{'only s':>6} {'expl.':>5} {'lines/s':>8} {'per cpu-s':>9}")  # fmt: skip
        for r in rows:
            print(f"{r['log']:28} {r['lines']:>9,} {r['sessions']:>9,} {r['batch_flagged']:>6} "
                  f"{r['stream_flagged']:>6} {r['n_only_batch']:>6} {r['n_only_stream']:>6} "
                  f"{r['different_explanation']:>5} {r['stream_lines_per_s']:>8,} "
                  f"{r['stream_lines_per_cpu_s']:>9,}")  # fmt: skip
    differ = any(r["n_only_batch"] or r["n_only_stream"] for r in rows)
    return 1 if differ and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
