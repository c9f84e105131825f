"""Parser grouping accuracy on the loghub-2k benchmark (8 systems, 2,000 labelled lines each).

One default parser configuration for every system; only the log format string differs
(the loghub header formats of the data README). Grouping accuracy (GA) is
``logwarden.evaluate.grouping_accuracy`` against the ground truth ``EventId`` column.

Two ways to run the parser, which must group every line identically:

* ``api``: ``get_format(FMT).parse(line).content`` then ``TemplateMiner().add(content)``
  per line, grouped by the final template id (``miner.resolve(key)``: ids merged by a later
  generalisation count as their survivor, as in the CLI's output).
* ``cli``: ``logwarden parse LOG --format FMT --out CSV`` in a child process, grouped by
  the structured CSV's ``EventId`` column.

``--drain3`` adds drain3 0.9.11 for comparison: its default config as is, and with
logparser's per-system masks; ``--verbose`` prints each system's 5 largest error groups.
Targets: average GA >= 0.95, every system >= 0.85. Exit 0 when everything ran (``--strict``:
1 on a missed target), 1 when the two modes disagree or the parser failed, 2 on usage errors.

    python bench/parser_accuracy.py [--mode api|cli|both] [--drain3] [--verbose] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from logwarden.evaluate import grouping_accuracy

# The shared data sits next to the project checkout (see ../shared/data/README.md).
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TARGET_AVERAGE = 0.95
TARGET_MINIMUM = 0.85

# System -> loghub format string, as in the data README.
SYSTEMS: dict[str, str] = {
    "HDFS": "<Date> <Time> <Pid> <Level> <Component>: <Content>",
    "Hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    "Spark": "<Date> <Time> <Level> <Component>: <Content>",
    "Zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    "BGL": "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
    "Linux": r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    "Apache": r"\[<Time>\] \[<Level>\] <Content>",
    "OpenStack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
}

# logparser's Drain benchmark masks (its `regex` settings), for the drain3 comparison.
LOGPARSER_MASKS: dict[str, list[str]] = {
    "HDFS": [r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"],
    "Hadoop": [r"(\d+\.){3}\d+"],
    "Spark": [r"(\d+\.){3}\d+", r"\b[KGTM]?B\b", r"([\w-]+\.){2,}[\w-]+"],
    "Zookeeper": [r"(/|)(\d+\.){3}\d+(:\d+)?"],
    "BGL": [r"core\.\d+"],
    "Linux": [r"(\d+\.){3}\d+", r"\d{2}:\d{2}:\d{2}"],
    "Apache": [r"(\d+\.){3}\d+"],
    "OpenStack": [r"((\d+\.){3}\d+,?)+", r"/.+?\s", r"\d+"],
}


class BenchError(RuntimeError):
    """The benchmark could not be run as asked (a failed child, a missing line)."""


@dataclass
class Truth:
    line_ids: list[int]  # 1-based line numbers, in file order
    event_ids: list[str]
    templates: dict[str, str]  # EventId -> EventTemplate


@dataclass
class Prediction:
    labels: dict[int, Hashable]  # line number -> group label
    templates: dict[Hashable, str]  # group label -> template text


@dataclass
class ErrorGroup:
    true_id: str
    true_template: str
    lines: int
    # (predicted template, lines of this true group in it, size of that predicted group)
    predicted: list[tuple[str, int, int]]


@dataclass
class SystemResult:
    system: str
    lines: int
    true_templates: int
    predicted_templates: int
    ga: float
    cli_ga: float | None = None
    modes_agree: bool | None = None
    drain3_ga: float | None = None
    drain3_masked_ga: float | None = None
    errors: list[ErrorGroup] = field(default_factory=list)


def system_paths(data_dir: Path, system: str) -> tuple[Path, Path]:
    folder = data_dir / "loghub-2k" / system
    return folder / f"{system}_2k.log", folder / f"{system}_2k.log_structured.csv"


def load_truth(structured_csv: Path) -> Truth:
    line_ids: list[int] = []
    event_ids: list[str] = []
    templates: dict[str, str] = {}
    with structured_csv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            line_ids.append(int(row["LineId"]))
            event_ids.append(row["EventId"])
            templates.setdefault(row["EventId"], row["EventTemplate"])
    return Truth(line_ids, event_ids, templates)


def predict_api(log: Path, log_format: str) -> Prediction:
    """Group the lines of ``log`` with the Python API and one default miner."""
    from logwarden.io.formats import get_format
    from logwarden.io.sources import read_lines
    from logwarden.parsing import TemplateMiner

    fmt = get_format(log_format)
    miner = TemplateMiner()
    keys: dict[int, int] = {}
    for line in read_lines([str(log)]):
        if line.text:  # the CLI skips empty lines too (counted, not written)
            keys[line.lineno] = miner.add(fmt.parse(line).content).key
    labels: dict[int, Hashable] = {n: miner.resolve(k) for n, k in keys.items()}
    templates = {k: miner.template(k) for k in set(labels.values())}
    return Prediction(labels, templates)


def predict_cli(log: Path, log_format: str, workdir: Path) -> Prediction:
    """Group the lines of ``log`` with ``logwarden parse`` in a child process."""
    out = workdir / f"{log.stem}_structured.csv"
    cmd = [sys.executable, "-m", "logwarden", "parse", str(log), "--format", log_format]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--quiet"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"logwarden parse {log} exited {proc.returncode}: {proc.stderr.strip()}")
    labels: dict[int, Hashable] = {}
    templates: dict[Hashable, str] = {}
    with out.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            labels[int(row["LineId"])] = row["EventId"]
            templates[row["EventId"]] = row["EventTemplate"]
    return Prediction(labels, templates)


def predict_drain3(log: Path, log_format: str, masks: Sequence[str] = ()) -> Prediction:
    """drain3 0.9.11 with its default config (and optional masks), fed like logparser."""
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    header = re.compile(loghub_regex(log_format))
    config = TemplateMinerConfig()  # the defaults; passing it skips looking for drain3.ini
    config.masking_instructions = [MaskingInstruction(rx, "*") for rx in masks]
    miner = TemplateMiner(config=config)
    labels: dict[int, Hashable] = {}
    with log.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            text = line.strip()
            m = header.search(text)
            # An unmatched header: the whole line is the message, as logwarden does.
            labels[n] = miner.add_log_message(m.group("Content") if m else text)["cluster_id"]
    templates: dict[Hashable, str] = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return Prediction(labels, templates)


def loghub_regex(log_format: str) -> str:
    """The header regex logparser builds from a format string (``generate_logformat_regex``)."""
    parts = re.split(r"(<[^<>]+>)", log_format)
    regex = ""
    for k, part in enumerate(parts):
        if k % 2 == 0:
            regex += re.sub(" +", r"\\s+", part)
        else:
            regex += f"(?P<{part.strip('<>')}>.*?)"
    return "^" + regex + "$"


def aligned(truth: Truth, pred: Prediction, what: str) -> list[Hashable]:
    """Predicted labels in ground-truth order; a line without one is an error, not a guess."""
    missing = [n for n in truth.line_ids if n not in pred.labels]
    if missing:
        raise BenchError(f"{what}: no group for {len(missing)} lines (first: line {missing[0]})")
    return [pred.labels[n] for n in truth.line_ids]


def error_groups(
    truth: Sequence[str],
    predicted: Sequence[Hashable],
    true_templates: dict[str, str],
    predicted_templates: dict[Hashable, str],
    top: int = 5,
) -> list[ErrorGroup]:
    """The ``top`` largest true groups that were not recovered exactly, with where their
    lines went (split) and how large those predicted groups are (merged)."""
    members: dict[str, Counter[Hashable]] = defaultdict(Counter)
    pred_sizes: Counter[Hashable] = Counter(predicted)
    for t, p in zip(truth, predicted, strict=True):
        members[t][p] += 1
    out: list[ErrorGroup] = []
    for t, spread in members.items():
        size = sum(spread.values())
        if len(spread) == 1 and pred_sizes[next(iter(spread))] == size:
            continue  # recovered exactly
        parts = [
            (predicted_templates.get(p, str(p)), n, pred_sizes[p]) for p, n in spread.most_common()
        ]
        out.append(ErrorGroup(t, true_templates.get(t, ""), size, parts))
    out.sort(key=lambda e: (-e.lines, e.true_id))
    return out[:top]


def evaluate_system(
    data_dir: Path,
    system: str,
    mode: str = "api",
    drain3: bool = False,
    top_errors: int = 0,
    workdir: Path | None = None,
) -> SystemResult:
    """GA of one system; ``mode`` is api, cli or both (both: CLI must agree with the API)."""
    log, structured = system_paths(data_dir, system)
    truth = load_truth(structured)
    fmt = SYSTEMS[system]
    api = cli = None
    if mode in ("api", "both"):
        api = predict_api(log, fmt)
    if mode in ("cli", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            cli = predict_cli(log, fmt, workdir or Path(tmp))
    main = api or cli
    assert main is not None, f"unknown mode {mode!r}"
    labels = aligned(truth, main, f"{system} ({'api' if api else 'cli'})")
    result = SystemResult(
        system=system,
        lines=len(truth.event_ids),
        true_templates=len(set(truth.event_ids)),
        predicted_templates=len(set(labels)),
        ga=grouping_accuracy(truth.event_ids, labels),
    )
    if api is not None and cli is not None:
        cli_labels = aligned(truth, cli, f"{system} (cli)")
        result.cli_ga = grouping_accuracy(truth.event_ids, cli_labels)
        # Same partition of the lines <=> GA of one against the other is 1.
        result.modes_agree = grouping_accuracy([str(x) for x in labels], cli_labels) == 1.0
    if drain3:
        d3 = predict_drain3(log, fmt)
        result.drain3_ga = grouping_accuracy(truth.event_ids, aligned(truth, d3, "drain3"))
        d3m = predict_drain3(log, fmt, LOGPARSER_MASKS[system])
        result.drain3_masked_ga = grouping_accuracy(truth.event_ids, aligned(truth, d3m, "drain3"))
    if top_errors:
        result.errors = error_groups(
            truth.event_ids, labels, truth.templates, main.templates, top_errors
        )
    return result


def summary(results: Sequence[SystemResult]) -> dict[str, float | bool]:
    gas = [r.ga for r in results]
    average = sum(gas) / len(gas)
    minimum = min(gas)
    return {
        "average": average,
        "minimum": minimum,
        "average_pass": average >= TARGET_AVERAGE,
        "minimum_pass": minimum >= TARGET_MINIMUM,
    }


def print_table(results: Sequence[SystemResult], drain3: bool) -> None:
    head = f"{'system':<10} {'lines':>6} {'true tpl':>8} {'pred tpl':>8} {'GA':>7}"
    if drain3:
        head += f" {'drain3':>7} {'drain3+masks':>12}"
    print(head)
    print("-" * len(head))
    for r in results:
        row = (
            f"{r.system:<10} {r.lines:>6} {r.true_templates:>8} {r.predicted_templates:>8} "
            f"{r.ga:>7.4f}"
        )
        if drain3:
            row += f" {r.drain3_ga:>7.4f} {r.drain3_masked_ga:>12.4f}"
        print(row)
    print("-" * len(head))
    s = summary(results)
    for name, key in (("average", "average"), ("minimum", "minimum")):
        row = f"{name:<10} {'':>6} {'':>8} {'':>8} {s[key]:>7.4f}"
        if drain3:
            agg = min if key == "minimum" else _mean
            d3 = agg([r.drain3_ga or 0.0 for r in results])
            d3m = agg([r.drain3_masked_ga or 0.0 for r in results])
            row += f" {d3:>7.4f} {d3m:>12.4f}"
        print(row)
    print()
    print(
        f"target average GA >= {TARGET_AVERAGE}: {'PASS' if s['average_pass'] else 'FAIL'}; "
        f"target every system >= {TARGET_MINIMUM}: {'PASS' if s['minimum_pass'] else 'FAIL'}"
    )


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def print_errors(results: Sequence[SystemResult]) -> None:
    for r in results:
        if not r.errors:
            continue
        print(f"\n{r.system} (GA {r.ga:.4f}): {len(r.errors)} largest error groups")
        for e in r.errors:
            print(f"  [{e.true_id}, {e.lines} lines] {e.true_template}")
            for text, n, size in e.predicted:
                print(f"    {n:>5} in a group of {size:>5}: {text}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--mode", choices=("api", "cli", "both"), default="both")
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--drain3", action="store_true", help="add drain3 0.9.11's GA")
    p.add_argument("-v", "--verbose", action="store_true", help="5 largest error groups each")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if not (args.data / "loghub-2k").is_dir():
        print(
            f"parser_accuracy: error: {args.data / 'loghub-2k'} not found (--data)", file=sys.stderr
        )
        return 2
    if args.drain3:
        try:
            import drain3  # noqa: F401
        except ImportError:
            print(
                f"parser_accuracy: drain3 is not installed; install it with\n"
                f"  {sys.executable} -m pip install drain3==0.9.11",
                file=sys.stderr,
            )
            return 2
    results: list[SystemResult] = []
    try:
        for system in args.systems:
            results.append(
                evaluate_system(args.data, system, args.mode, args.drain3, 5 if args.verbose else 0)
            )
    except BenchError as exc:
        print(f"parser_accuracy: error: {exc}", file=sys.stderr)
        return 1
    disagree = [r.system for r in results if r.modes_agree is False]
    s = summary(results)
    if args.json:
        print(
            json.dumps(
                {"mode": args.mode, "summary": s, "systems": [asdict(r) for r in results]}, indent=2
            )
        )
    else:
        print_table(results, args.drain3)
        if args.verbose:
            print_errors(results)
    if disagree:
        print(
            f"parser_accuracy: error: the CLI and the Python API group lines differently on "
            f"{', '.join(disagree)}",
            file=sys.stderr,
        )
        return 1
    if args.strict and not (s["average_pass"] and s["minimum_pass"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
