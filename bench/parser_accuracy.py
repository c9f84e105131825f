"""Parser accuracy on the loghub-2k benchmark (8 systems, 2,000 labelled lines each).

One default parser configuration for every system; only the log format string differs
(the loghub header formats of the data README). Per system it prints:

* grouping accuracy (GA, ``logwarden.evaluate.grouping_accuracy``) against both ground
  truths: loghub's ``X_2k.log_structured.csv`` (``GA``) and loghub-2.0's corrected
  ``X_2k.log_structured_corrected.csv`` (``GA corr``);
* parsing accuracy (``PA``): the fraction of lines whose predicted template text equals the
  corrected ground truth's, after :func:`normalise_template` removes pure conventions: runs
  of whitespace become one space, and wildcards joined only by whitespace or the
  punctuation ``. : , ; - _ / @ #`` become one wildcard (``<*>:<*>``, ``<*>.<*>``, ``<*>
  <*>`` and ``<*>`` are the same template; brackets, quotes and words are never dropped);
* ``LOSO GA``: the leave-one-system-out figure. For each system, the default loses every
  rule that fewer than three of the *other* seven systems need (a rule is needed by a
  system when switching it off lowers that system's GA or PA by more than 0.002), and
  the learning thresholds are those that give the best average GA on the other seven;
  then it runs on the held-out system. A rule that only the held-out system needed is
  gone, so this is what a system nobody looked at can expect.

Then the rules table: for every rule of ``logwarden.parsing.RULES``, how often it fires on
each system (new shapes only), and which systems need it; ``*`` columns are the synthetic
logs of ``bench/_synthetic_logs.py`` (kinds loghub lacks; shown, never counted as
justification).

Two ways to run the parser, which must group every line identically:

* ``api``: ``get_format(FMT).parse(line).content`` then ``TemplateMiner().add(content)``
  per line, grouped by the final template id (``miner.resolve(key)``: ids merged by a later
  generalisation count as their survivor, as in the CLI's output).
* ``cli``: ``logwarden parse LOG --format FMT --out CSV`` in a child process, grouped by
  the structured CSV's ``EventId``.

``--drain3`` adds drain3 0.9.11 for comparison: its default config as is, and with
logparser's per-system masks; ``--verbose`` prints each system's 5 largest error groups;
``--no-loso`` skips the leave-one-out view and the rules table (a few seconds instead of a
minute). Targets: average GA >= 0.97 and every system >= 0.90, average PA >= 0.85. Exit 0
when everything ran (``--strict``: 1 on a missed target), 1 when the two modes disagree or
the parser failed, 2 on usage errors.

    python bench/parser_accuracy.py [--mode api|cli|both] [--drain3] [--verbose] [--json]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from logwarden.evaluate import grouping_accuracy

# The shared data sits next to the project checkout (see ../shared/data/README.md).
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TARGET_AVERAGE = 0.97
TARGET_MINIMUM = 0.90
TARGET_PA = 0.85
NEEDED_DROP = 0.002  # a rule is needed by a system when switching it off costs more than this
JUSTIFYING_SYSTEMS = 3  # a rule or threshold must be needed by this many shared systems

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

# The learning thresholds the leave-one-out view chooses among (MinerConfig fields).
# The learning mechanisms of the second stage are not token rules: they are always on, and
# their thresholds (below) are what the leave-one-out view chooses on the other systems.
LEARNING = frozenset({"masked-slot", "learn-words", "learn-any"})
THRESHOLD_GRID: dict[str, tuple[int, ...]] = {
    "min_merge_values": (2, 3, 4),
    "min_merge_values_other": (3, 4, 5),
    "min_merge_constants": (2, 3, 4),
}


class BenchError(RuntimeError):
    """The benchmark could not be run as asked (a failed child, a missing line)."""


@dataclass
class Truth:
    line_ids: list[int]  # 1-based line numbers, in file order
    event_ids: list[str]
    templates: dict[str, str]  # EventId -> EventTemplate
    line_templates: list[str] = field(default_factory=list)  # EventTemplate of every line


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
    ga: float  # against loghub's ground truth
    ga_corrected: float | None = None  # against loghub-2.0's corrected ground truth
    pa: float | None = None  # parsing accuracy against the corrected ground truth
    loso_ga: float | None = None
    loso_dropped: list[str] = field(default_factory=list)  # rules the held-out run lost
    loso_thresholds: dict[str, int] = field(default_factory=dict)
    loso_strict_ga: float | None = None  # held out without every rule < 3 others need
    loso_strict_dropped: list[str] = field(default_factory=list)
    rule_hits: dict[str, int] = field(default_factory=dict)
    cli_ga: float | None = None
    modes_agree: bool | None = None
    drain3_ga: float | None = None
    drain3_masked_ga: float | None = None
    errors: list[ErrorGroup] = field(default_factory=list)


@dataclass
class RuleRow:
    rule: str
    description: str
    hits: dict[str, int]  # system -> times it fired (new shapes)
    needed_by: list[str]  # shared systems whose GA or PA drops without it
    ga_drop: dict[str, float]  # system -> GA lost without it
    pa_drop: dict[str, float]  # system -> PA lost without it


def system_paths(data_dir: Path, system: str) -> tuple[Path, Path]:
    folder = data_dir / "loghub-2k" / system
    return folder / f"{system}_2k.log", folder / f"{system}_2k.log_structured.csv"


def corrected_path(data_dir: Path, system: str) -> Path:
    return data_dir / "loghub-2k" / system / f"{system}_2k.log_structured_corrected.csv"


def load_truth(structured_csv: Path) -> Truth:
    line_ids: list[int] = []
    event_ids: list[str] = []
    line_templates: list[str] = []
    templates: dict[str, str] = {}
    with structured_csv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            line_ids.append(int(row["LineId"]))
            event_ids.append(row["EventId"])
            line_templates.append(row["EventTemplate"])
            templates.setdefault(row["EventId"], row["EventTemplate"])
    return Truth(line_ids, event_ids, templates, line_templates)


_CONVENTION = re.compile(r"<\*>(?:[\s.:,;\-_/@#]*<\*>)+")


def normalise_template(text: str) -> str:
    """A template text without pure conventions (see the module docstring)."""
    return _CONVENTION.sub("<*>", " ".join(text.split()))


def parsing_accuracy(truth: Truth, pred: Prediction) -> float:
    """Fraction of lines whose predicted template text equals the true one, normalised."""
    ok = 0
    for n, true_text in zip(truth.line_ids, truth.line_templates, strict=True):
        label = pred.labels.get(n)
        text = pred.templates.get(label, "") if label is not None else ""
        ok += normalise_template(text) == normalise_template(true_text)
    return ok / len(truth.line_ids) if truth.line_ids else 1.0


def read_contents(log: Path, log_format: str) -> list[tuple[int, str]]:
    """(line number, message content) of every non-empty line, as the parser gets them."""
    from logwarden.io.formats import get_format
    from logwarden.io.sources import read_lines

    fmt = get_format(log_format)
    # The CLI skips empty lines too (counted, not written).
    return [(line.lineno, fmt.parse(line).content) for line in read_lines([str(log)]) if line.text]


def run_miner(
    contents: Sequence[tuple[int, str]], config: Any = None
) -> tuple[Prediction, dict[str, int]]:
    """Group messages with one miner; also how often each rule fired."""
    from logwarden.parsing import TemplateMiner

    miner = TemplateMiner(config)
    keys = {n: miner.add(content).key for n, content in contents}
    labels: dict[int, Hashable] = {n: miner.resolve(k) for n, k in keys.items()}
    templates = {k: miner.template(k) for k in set(labels.values())}
    return Prediction(labels, templates), dict(miner.rule_hits_)


def predict_api(log: Path, log_format: str, config: Any = None) -> Prediction:
    """Group the lines of ``log`` with the Python API and one miner (default config)."""
    return run_miner(read_contents(log, log_format), config)[0]


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
    """GA (both ground truths) and PA of one system; ``mode`` is api, cli or both (both:
    the CLI must agree with the API)."""
    log, structured = system_paths(data_dir, system)
    truth = load_truth(structured)
    fmt = SYSTEMS[system]
    api = cli = None
    hits: dict[str, int] = {}
    if mode in ("api", "both"):
        api, hits = run_miner(read_contents(log, fmt))
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
        rule_hits=hits,
    )
    corrected = corrected_path(data_dir, system)
    if corrected.is_file():
        fixed = load_truth(corrected)
        result.ga_corrected = grouping_accuracy(
            fixed.event_ids, aligned(fixed, main, f"{system} (corrected)")
        )
        result.pa = parsing_accuracy(fixed, main)
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


# --- leave one system out -------------------------------------------------------------------


@dataclass
class _Corpus:
    """One system's messages and both of its ground truths, read once."""

    contents: list[tuple[int, str]]
    truth: Truth
    corrected: Truth | None

    def score(self, config: Any = None) -> tuple[float, float, dict[str, int]]:
        """(GA, PA, rule hits) of a miner with ``config`` (PA: 1.0 without the corrected GT)."""
        pred, hits = run_miner(self.contents, config)
        ga = grouping_accuracy(self.truth.event_ids, aligned(self.truth, pred, "api"))
        pa = parsing_accuracy(self.corrected, pred) if self.corrected is not None else 1.0
        return ga, pa, hits


def _synthetic() -> ModuleType | None:
    path = Path(__file__).resolve().with_name("_synthetic_logs.py")
    spec = importlib.util.spec_from_file_location("logwarden_bench_synthetic_logs", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


def load_corpora(data_dir: Path, systems: Sequence[str]) -> dict[str, _Corpus]:
    corpora: dict[str, _Corpus] = {}
    for system in systems:
        log, structured = system_paths(data_dir, system)
        corrected = corrected_path(data_dir, system)
        corpora[system] = _Corpus(
            read_contents(log, SYSTEMS[system]),
            load_truth(structured),
            load_truth(corrected) if corrected.is_file() else None,
        )
    return corpora


def synthetic_corpora(lines: int = 2000, seed: int = 1) -> dict[str, _Corpus]:
    """The synthetic kinds of bench/_synthetic_logs.py, named ``*kind``."""
    synth = _synthetic()
    if synth is None:
        return {}
    out: dict[str, _Corpus] = {}
    for kind in synth.KINDS:
        texts, truth = synth.generate(kind, lines, seed)
        ids = list(range(1, len(texts) + 1))
        events = [f"E{t}" for t in truth]
        out[f"*{kind}"] = _Corpus(list(zip(ids, texts, strict=True)), Truth(ids, events, {}), None)
    return out


def rule_table(corpora: dict[str, _Corpus], shared: Sequence[str]) -> list[RuleRow]:
    """Every rule: where it fires, and what switching it off costs each system."""
    from logwarden.parsing import RULES, MinerConfig

    base = {name: c.score() for name, c in corpora.items()}
    rows: list[RuleRow] = []
    for rule, description in RULES.items():
        off = MinerConfig(disabled_rules=[rule])
        ga_drop: dict[str, float] = {}
        pa_drop: dict[str, float] = {}
        for name, c in corpora.items():
            ga, pa, _ = c.score(off)
            ga_drop[name] = base[name][0] - ga
            pa_drop[name] = base[name][1] - pa
        needed = [s for s in shared if ga_drop[s] > NEEDED_DROP or pa_drop[s] > NEEDED_DROP]
        hits = {name: base[name][2].get(rule, 0) for name in corpora}
        rows.append(RuleRow(rule, description, hits, needed, ga_drop, pa_drop))
    return rows


@dataclass
class Loso:
    """One system held out: its GA without the rules only it needed and with thresholds
    chosen on the others, and (strict) without every rule fewer than three others need."""

    ga: float
    dropped: list[str]
    strict_ga: float
    strict_dropped: list[str]
    thresholds: dict[str, int]


def leave_one_out(
    corpora: dict[str, _Corpus], rows: list[RuleRow], shared: Sequence[str]
) -> dict[str, Loso]:
    """System -> what it scores held out (see :class:`Loso`)."""
    from logwarden.parsing import MinerConfig

    names = list(THRESHOLD_GRID)
    grid = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*THRESHOLD_GRID.values())
    ]
    default = MinerConfig()
    # The default's own values first: among equal averages it wins.
    grid.sort(key=lambda g: any(getattr(default, k) != v for k, v in g.items()))
    gas = {s: [corpora[s].score(MinerConfig(**g))[0] for g in grid] for s in shared}
    out: dict[str, Loso] = {}
    for held in shared:
        others = [s for s in shared if s != held]
        best = max(range(len(grid)), key=lambda k: (sum(gas[s][k] for s in others), -k))
        # Rules only the held-out system needed: nobody would have written them for a
        # system they had not seen.
        own = [r.rule for r in rows if r.needed_by == [held] and r.rule not in LEARNING]
        # Strict: every rule that fewer than three of the others need.
        weak = [
            r.rule
            for r in rows
            if len(set(r.needed_by) - {held}) < JUSTIFYING_SYSTEMS and r.rule not in LEARNING
        ]
        ga = corpora[held].score(MinerConfig(**grid[best], disabled_rules=own))[0]
        strict = corpora[held].score(MinerConfig(**grid[best], disabled_rules=weak))[0]
        out[held] = Loso(ga, own, strict, weak, grid[best])
    return out


def summary(results: Sequence[SystemResult]) -> dict[str, float | bool | None]:
    gas = [r.ga for r in results]
    average = sum(gas) / len(gas)
    minimum = min(gas)
    pas = [r.pa for r in results if r.pa is not None]
    pa = sum(pas) / len(pas) if pas else None
    loso = [r.loso_ga for r in results if r.loso_ga is not None]
    return {
        "average": average,
        "minimum": minimum,
        "average_corrected": _mean_or_none([r.ga_corrected for r in results]),
        "pa_average": pa,
        "loso_average": sum(loso) / len(loso) if loso else None,
        "loso_minimum": min(loso) if loso else None,
        "average_pass": average >= TARGET_AVERAGE,
        "minimum_pass": minimum >= TARGET_MINIMUM,
        "pa_pass": pa is not None and pa >= TARGET_PA,
    }


def _mean_or_none(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _f(x: float | None, width: int) -> str:
    return f"{x:>{width}.4f}" if x is not None else f"{'-':>{width}}"


def print_table(results: Sequence[SystemResult], drain3: bool) -> None:
    head = (
        f"{'system':<10} {'lines':>6} {'true tpl':>8} {'pred tpl':>8} {'GA':>7} {'GA corr':>7} "
        f"{'PA':>7} {'LOSO GA':>7} {'strict':>7}"
    )
    if drain3:
        head += f" {'drain3':>7} {'drain3+masks':>12}"
    print(head)
    print("-" * len(head))
    for r in results:
        row = (
            f"{r.system:<10} {r.lines:>6} {r.true_templates:>8} {r.predicted_templates:>8} "
            f"{r.ga:>7.4f} {_f(r.ga_corrected, 7)} {_f(r.pa, 7)} {_f(r.loso_ga, 7)} "
            f"{_f(r.loso_strict_ga, 7)}"
        )
        if drain3:
            row += f" {r.drain3_ga:>7.4f} {r.drain3_masked_ga:>12.4f}"
        print(row)
    print("-" * len(head))
    for name, agg in (("average", _mean), ("minimum", min)):
        cols = [
            [r.ga for r in results],
            [r.ga_corrected for r in results],
            [r.pa for r in results],
            [r.loso_ga for r in results],
            [r.loso_strict_ga for r in results],
        ]
        vals = [
            agg([x for x in c if x is not None]) if all(x is not None for x in c) else None
            for c in cols
        ]
        row = f"{name:<10} {'':>6} {'':>8} {'':>8} " + " ".join(_f(v, 7) for v in vals)
        if drain3:
            d3 = agg([r.drain3_ga or 0.0 for r in results])
            d3m = agg([r.drain3_masked_ga or 0.0 for r in results])
            row += f" {d3:>7.4f} {d3m:>12.4f}"
        print(row)
    print()
    s = summary(results)
    print(
        f"target average GA >= {TARGET_AVERAGE}: {'PASS' if s['average_pass'] else 'FAIL'}; "
        f"target every system >= {TARGET_MINIMUM}: {'PASS' if s['minimum_pass'] else 'FAIL'}; "
        f"target average PA >= {TARGET_PA}: {'PASS' if s['pa_pass'] else 'FAIL'}"
    )


def print_rules(
    rows: list[RuleRow], results: Sequence[SystemResult], columns: Sequence[str]
) -> None:
    print(
        "\nRules: times each fired (new shapes); a system needs a rule when switching it off "
        f"costs it > {NEEDED_DROP} GA or PA; * = synthetic (never counted)"
    )
    short = {c: c[:7] for c in columns}
    head = (
        f"{'rule':<16} " + " ".join(f"{short[c]:>7}" for c in columns) + "  needed by (GA/PA lost)"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = " ".join(f"{r.hits.get(c, 0):>7}" for c in columns)
        need = ", ".join(f"{s} ({r.ga_drop[s]:.3f}/{r.pa_drop[s]:.3f})" for s in r.needed_by)
        synth = [c for c in columns if c.startswith("*") and r.ga_drop.get(c, 0) > NEEDED_DROP]
        if synth:
            need += ("; " if need else "") + ", ".join(f"{c} ({r.ga_drop[c]:.3f})" for c in synth)
        if r.rule in LEARNING:
            mark = "  (learning)"
        else:
            mark = "" if len(r.needed_by) >= JUSTIFYING_SYSTEMS else "  <3"
        print(f"{r.rule:<16} {cells}  {need or '-'}{mark}")
    print("\nLeave one system out: rules lost and thresholds chosen on the other seven")
    for res in results:
        if res.loso_ga is None:
            continue
        th = ", ".join(f"{k}={v}" for k, v in res.loso_thresholds.items())
        print(
            f"  {res.system:<10} GA {res.loso_ga:.4f} (default {res.ga:.4f}), thresholds {th}, "
            f"without {', '.join(res.loso_dropped) or '-'}; strict {res.loso_strict_ga:.4f} "
            f"without {', '.join(res.loso_strict_dropped) or '-'}"
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
    p.add_argument("--no-loso", action="store_true", help="skip the leave-one-out view")
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
    rows: list[RuleRow] = []
    columns: list[str] = []
    try:
        for system in args.systems:
            results.append(
                evaluate_system(args.data, system, args.mode, args.drain3, 5 if args.verbose else 0)
            )
        if not args.no_loso:
            corpora = load_corpora(args.data, args.systems)
            corpora.update(synthetic_corpora())
            columns = list(corpora)
            rows = rule_table(corpora, args.systems)
            loso = leave_one_out(corpora, rows, args.systems)
            for r in results:
                held = loso[r.system]
                r.loso_ga, r.loso_dropped, r.loso_thresholds = (
                    held.ga,
                    held.dropped,
                    held.thresholds,
                )
                r.loso_strict_ga, r.loso_strict_dropped = held.strict_ga, held.strict_dropped
    except BenchError as exc:
        print(f"parser_accuracy: error: {exc}", file=sys.stderr)
        return 1
    disagree = [r.system for r in results if r.modes_agree is False]
    s = summary(results)
    if args.json:
        print(
            json.dumps(
                {
                    "mode": args.mode,
                    "summary": s,
                    "systems": [asdict(r) for r in results],
                    "rules": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )
    else:
        print_table(results, args.drain3)
        if rows:
            print_rules(rows, results, columns)
        if args.verbose:
            print_errors(results)
    if disagree:
        print(
            f"parser_accuracy: error: the CLI and the Python API group lines differently on "
            f"{', '.join(disagree)}",
            file=sys.stderr,
        )
        return 1
    if args.strict and not (s["average_pass"] and s["minimum_pass"] and s["pa_pass"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
