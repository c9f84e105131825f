"""Parser speed: logwarden's whole `parse` process against drain3 0.9.11, on 1M-line logs.

For each file (HDFS and BGL, built by make_logs.py when missing):

* **logwarden**: ``logwarden parse FILE --format hdfs|bgl --out CSV`` as a child process.
  Wall time from launch to exit (Python start-up, reading, header parsing, masking, mining,
  parameter extraction, writing the structured and templates CSVs) and the child's peak
  RSS (``os.wait4`` in a tiny wrapper process, see ``run_child``).
* **drain3 0.9.11**: a child process of this script running drain3's ``TemplateMiner`` with
  its default config plus the dataset's logparser masks, one ``add_log_message(content)``
  per line, the content split off with logparser's loghub header regex. Reported twice:
  the mining loop alone (timed inside the child over contents already in memory) and the
  whole process (launch to exit, like logwarden, though it writes nothing).

The claimed ratio is logwarden whole-process lines/s over drain3 **mining-only** lines/s,
the strictest comparison. It is also given in CPU time (user + system time of the whole
logwarden process against the CPU time of drain3's mining loop), which other load on a
shared machine does not distort. Growth with size: the number of templates on the big
file against the number on the 2,000-line sample it was made from (digits redrawn, so the
same events: the template set must not drift as data grows). Targets: ratio >= 3,
logwarden peak RSS <= 500 MB (MB = 2**20 bytes here), templates within 10% of the
sample's. Exit 0 when everything ran (use ``--strict`` to exit 1 on a missed target),
1 when a child failed, 2 on usage errors or when drain3 is not installed.

    python bench/parse_speed.py                  # 1,000,000 lines per file
    python bench/parse_speed.py --lines 100000   # quick check
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _harness import (
    DEFAULT_DATA,
    ChildFailed,
    count_lines,
    logwarden_command,
    machine,
    missing_peers,
    run_child,
    warn_peer_version,
)
from _logs import DATASETS, DEFAULT_LINES, DEFAULT_OUT, build, loghub_regex, output_path

DRAIN3_VERSION = "0.9.11"
TARGET_RATIO = 3.0
TARGET_PEAK_MB = 500.0
TARGET_GROWTH = 0.10  # templates on the big file may differ from the sample's by this much

# logparser's benchmark masks for these datasets (Drain's `regex` settings).
DRAIN3_MASKS: dict[str, list[str]] = {
    "hdfs": [r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"],
    "bgl": [r"core\.\d+"],
}


@dataclass
class Row:
    file: str
    lines: int
    logwarden_s: float
    logwarden_lps: float
    logwarden_peak_mb: float
    logwarden_templates: int
    drain3_mining_s: float
    drain3_mining_lps: float
    drain3_whole_s: float
    drain3_whole_lps: float
    drain3_peak_mb: float
    drain3_clusters: int
    drain3_unmatched: int
    ratio: float  # logwarden whole-process lines/s / drain3 mining-only lines/s
    ratio_whole: float  # logwarden whole-process / drain3 whole-process
    logwarden_cpu_s: float  # user + system CPU time of the whole logwarden process
    drain3_mining_cpu_s: float  # CPU time of drain3's mining loop alone
    ratio_cpu: float  # the ratio in CPU time: robust to other load on the machine
    ratio_pass: bool
    peak_pass: bool
    sample_templates: int  # templates of the 2,000-line sample the file was made from
    growth_pass: bool  # templates on the big file within TARGET_GROWTH of the sample's


def children_cpu() -> float:
    """User + system time of this process's waited-for children so far (the timing wrapper
    waits for the command it runs, so the command's time is in it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def sample_templates(name: str, data_dir: Path, workdir: Path) -> int:
    """Templates ``logwarden parse`` finds in the dataset's 2,000-line loghub sample."""
    out_csv = workdir / f"{name}_sample.csv"
    templates_csv = workdir / f"{name}_sample_templates.csv"
    run_child(
        [
            *logwarden_command(),
            *("parse", str(DATASETS[name].sample(data_dir)), "--format", name, "--quiet"),
            *("--out", str(out_csv), "--templates", str(templates_csv)),
        ],
        workdir,
    )
    return count_rows(templates_csv)


def measure(name: str, log: Path, workdir: Path, data_dir: Path = DEFAULT_DATA) -> Row:
    lines = count_lines(log)
    out_csv = workdir / f"{name}_structured.csv"
    templates_csv = workdir / f"{name}_templates.csv"
    cpu0 = children_cpu()
    lw = run_child(
        [
            *logwarden_command(),
            *("parse", str(log), "--format", name),
            *("--out", str(out_csv), "--templates", str(templates_csv)),
        ],
        workdir,
    )
    lw_cpu = children_cpu() - cpu0
    written = count_rows(out_csv)
    if written != lines:
        raise ChildFailed(f"logwarden wrote {written:,} rows for {lines:,} lines of {log}")
    n_templates = count_rows(templates_csv)
    out_csv.unlink()  # ~200 MB per 1M lines
    n_sample = sample_templates(name, data_dir, workdir)

    d3 = run_child(
        [sys.executable, str(Path(__file__).resolve()), "--drain3-child", name, str(log)], workdir
    )
    child = json.loads(d3.stdout)
    lw_lps = lines / lw.wall_s
    mining_lps = lines / child["mining_s"]
    whole_lps = lines / d3.wall_s
    ratio = lw_lps / mining_lps
    return Row(
        file=log.name,
        lines=lines,
        logwarden_s=lw.wall_s,
        logwarden_lps=lw_lps,
        logwarden_peak_mb=lw.peak_mb,
        logwarden_templates=n_templates,
        drain3_mining_s=child["mining_s"],
        drain3_mining_lps=mining_lps,
        drain3_whole_s=d3.wall_s,
        drain3_whole_lps=whole_lps,
        drain3_peak_mb=d3.peak_mb,
        drain3_clusters=child["clusters"],
        drain3_unmatched=child["unmatched"],
        ratio=ratio,
        ratio_whole=lw_lps / whole_lps,
        logwarden_cpu_s=lw_cpu,
        drain3_mining_cpu_s=child["mining_cpu_s"],
        ratio_cpu=child["mining_cpu_s"] / lw_cpu if lw_cpu > 0 else 0.0,
        ratio_pass=ratio >= TARGET_RATIO,
        peak_pass=lw.peak_mb <= TARGET_PEAK_MB,
        sample_templates=n_sample,
        growth_pass=abs(n_templates - n_sample) <= TARGET_GROWTH * n_sample,
    )


def drain3_child(name: str, log: Path) -> int:
    """Child process: drain3 over ``log`` the way logparser feeds it; timings as JSON."""
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    header = re.compile(loghub_regex(DATASETS[name].log_format))
    contents: list[str] = []
    unmatched = 0
    with log.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = header.search(line.strip())
            if m is None:
                unmatched += 1  # logparser drops such lines; so do we
            else:
                contents.append(m.group("Content"))
    config = TemplateMinerConfig()  # the defaults; passing it skips looking for drain3.ini
    config.masking_instructions = [MaskingInstruction(rx, "*") for rx in DRAIN3_MASKS[name]]
    miner = TemplateMiner(config=config)
    add = miner.add_log_message
    t0 = time.perf_counter()
    c0 = time.process_time()
    for content in contents:
        add(content)
    mining_cpu_s = time.process_time() - c0
    mining_s = time.perf_counter() - t0
    json.dump(
        {
            "mining_s": mining_s,
            "mining_cpu_s": mining_cpu_s,
            "clusters": len(miner.drain.clusters),
            "unmatched": unmatched,
        },
        sys.stdout,
    )
    return 0


def print_table(rows: list[Row], info: dict[str, object]) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"Python {info['python']}, logwarden {info['logwarden']}, drain3 {info['drain3']}"
    )
    head = (
        f"{'file':<20} {'lines':>10} {'logwarden l/s':>14} {'peak MB':>8} "
        f"{'drain3 mining l/s':>18} {'drain3 whole l/s':>17} {'ratio':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.file:<20} {r.lines:>10,} {r.logwarden_lps:>14,.0f} {r.logwarden_peak_mb:>8,.0f} "
            f"{r.drain3_mining_lps:>18,.0f} {r.drain3_whole_lps:>17,.0f} {r.ratio:>6.2f}x"
        )
    print()
    print("ratio = logwarden whole-process lines/s / drain3 mining-only lines/s")
    for r in rows:
        print(
            f"{r.file}: logwarden {r.logwarden_s:.1f} s, {r.logwarden_templates} templates; "
            f"drain3 mining {r.drain3_mining_s:.1f} s, whole {r.drain3_whole_s:.1f} s, "
            f"peak {r.drain3_peak_mb:,.0f} MB, {r.drain3_clusters} clusters"
            + (f", {r.drain3_unmatched} lines unmatched" if r.drain3_unmatched else "")
            + f"; vs drain3 whole process {r.ratio_whole:.2f}x"
        )
        print(
            f"  in CPU time (robust to other load): logwarden {r.logwarden_cpu_s:.1f} s, "
            f"drain3 mining {r.drain3_mining_cpu_s:.1f} s: {r.ratio_cpu:.2f}x"
        )
        print(
            f"  templates: {r.logwarden_templates} on {r.lines:,} lines, {r.sample_templates} on "
            f"the 2,000-line sample; target within {TARGET_GROWTH:.0%}: "
            f"{'PASS' if r.growth_pass else 'FAIL'}"
        )
        print(
            f"  target ratio >= {TARGET_RATIO:g}x: {'PASS' if r.ratio_pass else 'FAIL'} "
            f"({r.ratio:.2f}x); target peak <= {TARGET_PEAK_MB:g} MB: "
            f"{'PASS' if r.peak_pass else 'FAIL'} ({r.logwarden_peak_mb:,.0f} MB)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=DEFAULT_LINES, help="lines per file")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the input logs")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument(
        "--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS), metavar="NAME"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--drain3-child", nargs=2, metavar=("NAME", "LOG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.drain3_child:
        return drain3_child(args.drain3_child[0], Path(args.drain3_child[1]))
    if args.lines < 1:
        p.error("--lines must be positive")
    if missing_peers(["drain3"]):
        print(
            f"parse_speed: drain3 is not installed; install it with\n"
            f"  {sys.executable} -m pip install drain3=={DRAIN3_VERSION}\n"
            f"(or `make bench`, which installs the bench extra)",
            file=sys.stderr,
        )
        return 2
    warn_peer_version("parse_speed", "drain3", DRAIN3_VERSION)

    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="parse_speed_"))
    try:
        for name in args.datasets:
            log = output_path(args.out, name, args.lines)
            if not log.exists():
                sample = DATASETS[name].sample(args.data)
                if not sample.is_file():
                    print(f"parse_speed: error: {sample} not found (--data)", file=sys.stderr)
                    return 2
                print(f"building {log} ...", file=sys.stderr)
                build(DATASETS[name], args.data, args.out, args.lines)
            print(f"measuring {log.name} ...", file=sys.stderr)
            rows.append(measure(name, log, workdir, args.data))
    except ChildFailed as exc:
        print(f"parse_speed: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    info = machine()
    if args.json:
        report = {
            "machine": info,
            "targets": {
                "ratio": TARGET_RATIO,
                "peak_mb": TARGET_PEAK_MB,
                "template_growth": TARGET_GROWTH,
            },
            "ratio_definition": "logwarden whole-process lines/s / drain3 mining-only lines/s",
            "results": [asdict(r) for r in rows],
            "pass": all(r.ratio_pass and r.peak_pass and r.growth_pass for r in rows),
        }
        print(json.dumps(report, indent=2))
    else:
        print_table(rows, info)
    if args.strict and not all(r.ratio_pass and r.peak_pass and r.growth_pass for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
