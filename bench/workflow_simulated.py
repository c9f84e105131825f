"""Workflows mined from simulated logs against the generator's own transition graphs.

1. **Edges, sessions with identifiers.** A normal-only simulated log (``--train-sessions``,
   seed ``--train-seed``) is parsed and grouped by ``SIM_SESSION_REGEX`` as ``train``
   does, and the workflows are mined. Every key is mapped to the simulator step that
   wrote its lines (``simulate.StepClassifier``), so a mined edge becomes a pair of step
   names. The truth is the generator's own transition graph: the bigrams (with
   ``<start>`` and ``<end>``) of ``simulate.task_paths`` over ``--truth-sessions``
   executions per task, generated apart (another seed). Per task: edge precision and
   recall of the workflow holding most of the task's keys; its concurrent groups against
   ``simulate.CONCURRENT_STEPS``; its loops (cycles once the concurrent groups' inner
   edges are set aside) against the same definition applied to the truth graph.
2. **The same without identifiers**: the log is cut into windows of ``--window`` lines
   (``--window`` in ``train``), the miner gets only the windows, the entries' timestamps
   and parameters (it learns which parameter values identify an execution: ``linking``).
   For information, the same log mined from keys and timestamps alone
   (``link_identifiers=False``, co-occurrence statistics only: a log whose messages name
   no object), which has no target.
3. **Diagnosis.** DeepLog (key model) is trained on the normal log and run on a mixed log
   (``--test-sessions``, seed ``--test-seed``); every verdict on an injected path anomaly
   must carry a diagnosis whose observed step is not among the expected ones, and every
   early end must name the missing steps (unless the workflow may end there: a complete
   execution the key model found short has nothing missing, and its diagnosis says so;
   those are counted apart). Early ends are exercised by ``--truncated``
   normal sessions of the mixed log cut short (at a random entry, seed ``--test-seed``):
   every early-end verdict on them must name missing steps, and for information the
   share whose first named step is the step that was cut is printed.
4. **Cost**: ``logwarden train`` on ``--speed-lines`` simulated lines (child process): the
   mining seconds the model records against the rest of the training.
5. **HDFS**: the workflows of ``hdfs-deeplog/hdfs_train``, printed with ``templates.csv``.

Targets: edge precision and recall >= 0.95 per task with identifiers, >= 0.85 through
windows; concurrency and loops as the truth; every path anomaly diagnosed with its
observed step outside the expected ones; every early end naming missing steps (or a
complete execution); mining <= 20% of the rest of ``train``.

    python bench/workflow_simulated.py [--train-sessions 20000] [--speed-lines 1000000] [--json]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _harness import (
    DEFAULT_DATA,
    check,
    logwarden_command,
    machine_info,
    machine_line,
    pin_cores,
    run_child,
)
from logwarden.detect import DeepLog
from logwarden.io.ingest import read_raw_sessions
from logwarden.sessions import SessionConfig
from logwarden.sim import (
    CONCURRENT_STEPS,
    SIM_FORMAT,
    SIM_SESSION_REGEX,
    TASKS,
    SimConfig,
    StepClassifier,
    iter_lines,
    simulate,
    task_paths,
)
from logwarden.workflow import END, START, WorkflowConfig, Workflows, mine_workflows
from logwarden.workflow.model import find_loops

TARGET_IDS = 0.95
TARGET_WINDOWS = 0.85
TARGET_COST = 0.20
_PARAMS = ("train_sessions", "train_seed", "truth_sessions", "truth_seed", "test_sessions",
           "test_seed", "truncated", "window", "speed_lines")  # fmt: skip


def truth_graphs(sessions: int, seed: int) -> dict[str, Counter[tuple[str, str]]]:
    out = {}
    for task in TASKS:
        edges: Counter[tuple[str, str]] = Counter()
        for p in task_paths(task, sessions, seed):
            q = (START, *p, END)
            edges.update(itertools.pairwise(q))
        out[task] = edges
    return out


def step_names(raw: Any) -> dict[str, tuple[str, str] | None]:
    """Each key -> the (task, step) that wrote most of its lines."""
    classify = StepClassifier()
    votes: dict[str, Counter[tuple[str, str] | None]] = {}
    for keys, lines in zip(raw.keys, raw.lines, strict=True):
        for k, line in zip(keys, lines, strict=True):
            votes.setdefault(k, Counter())[classify(line)] += 1
    return {k: c.most_common(1)[0][0] for k, c in votes.items()}


def compare(
    workflows: Workflows,
    names: dict[str, tuple[str, str] | None],
    truth: dict[str, Counter[tuple[str, str]]],
) -> dict[str, Any]:
    out = {}
    for task in TASKS:

        def name(k: str, task: str = task) -> str:
            if k in (START, END):
                return k
            got = names.get(k)
            return got[1] if got and got[0] == task else f"?{got}"

        def own(wf: Any, task: str = task) -> int:
            return sum(1 for k in wf.keys if (names.get(k) or ("",))[0] == task)

        best = max(workflows, key=own)
        mined = {(name(a), name(b)) for a, b in best.edges}
        true = set(truth[task])
        hit = mined & true
        conc_true = sorted(sorted(g) for g in CONCURRENT_STEPS[task])
        conc_mined = sorted(sorted({name(k) for k in g}) for g in best.concurrent)
        steps = sorted({s for e in true for s in e} - {START, END})
        inner = [e for e in true if START not in e and END not in e]
        loops_true = sorted(sorted(c) for c in find_loops(steps, inner, conc_true))
        loops_mined = sorted(sorted({name(k) for k in c}) for c in best.loops)
        out[task] = {
            "workflow": best.name,
            "edges_mined": len(mined),
            "edges_true": len(true),
            "precision": len(hit) / len(mined) if mined else 0.0,
            "recall": len(hit) / len(true),
            "false_edges": sorted(mined - true)[:10],
            "missed_edges": sorted(
                ((a, b, truth[task][(a, b)]) for a, b in true - mined), key=lambda e: -e[2]
            )[:10],
            "concurrent_ok": conc_mined == conc_true,
            "concurrent": conc_mined,
            "loops_ok": loops_mined == loops_true,
            "loops": loops_mined,
            "loops_true": loops_true,
        }
    return out


def diagnosis_check(args: argparse.Namespace, train: Any, workdir: Path) -> dict[str, Any]:
    mixed = simulate(SimConfig(seed=args.test_seed, sessions=args.test_sessions))
    log = workdir / "mixed.log"
    mixed.write(log)
    test = read_raw_sessions(
        [str(log)], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX),
        miner=train.miner, learn=False,
    )  # fmt: skip
    model = DeepLog(seed=0, device="cpu", param_models=False)
    model.fit(train.keys, train.templates)
    model.templates_.update({k: v for k, v in test.templates.items() if k not in model.templates_})
    verdicts = model.verdicts(test.keys, test.ids, test.lines)
    kind = {s.session: s.kind for s in mixed.sessions}
    path = [v for v in verdicts if v.anomalous and kind.get(v.session) == "path"]
    ok = [v for v in path if v.diagnosis and v.diagnosis.observed not in
          {e["key"] for e in v.diagnosis.expected} and v.diagnosis.diverged]  # fmt: skip
    # Early ends: normal sessions cut short at a random entry (never before the first).
    rng = random.Random(args.test_seed)
    normal = [i for i, sid in enumerate(test.ids) if kind.get(sid) == "normal"]
    picked = sorted(rng.sample(normal, min(args.truncated, len(normal))))
    cut_at = [rng.randrange(1, len(test.keys[i])) for i in picked]
    cut_keys = [list(test.keys[i][:c]) for i, c in zip(picked, cut_at, strict=True)]
    cut_ids = [f"{test.ids[i]}#cut{c}" for i, c in zip(picked, cut_at, strict=True)]
    cut_lines = [list(test.lines[i][:c]) for i, c in zip(picked, cut_at, strict=True)]
    first_cut = {
        sid: str(test.keys[i][c]) for sid, i, c in zip(cut_ids, picked, cut_at, strict=True)
    }
    cut_verdicts = model.verdicts(cut_keys, cut_ids, cut_lines)
    cut_ends = [v for v in cut_verdicts if v.anomalous and v.reason == "early_end"]
    cut_named = [v for v in cut_ends if v.diagnosis and v.diagnosis.missing]
    cut_first = [v for v in cut_named if str(v.diagnosis.missing[0]["key"]) == first_cut[v.session]]
    ends = [v for v in verdicts if v.anomalous and v.reason == "early_end"] + cut_ends
    named = [v for v in ends if v.diagnosis and v.diagnosis.missing]
    # An early end of a session its workflow may end (a complete execution the key model
    # found short) has nothing missing: the diagnosis says the workflow may end there.
    complete = [
        v for v in ends if v.diagnosis and v.diagnosis.workflow and not v.diagnosis.diverged
    ]
    row = {sid: i for i, sid in enumerate(test.ids)}
    unnamed = [
        {
            "session": v.session,
            "kind": kind.get(v.session),
            "keys": list(test.keys[row[v.session]]) if v.session in row else None,
            "diagnosis": v.diagnosis.to_dict() if v.diagnosis else None,
        }
        for v in ends
        if v not in named and v not in complete
    ][:5]
    bad = [
        {"session": v.session, "reason": v.reason, "diagnosis": v.diagnosis.to_dict()}
        for v in path
        if v not in ok and v.diagnosis
    ][:5]
    return {
        "path_anomalies": sum(1 for k in kind.values() if k == "path"),
        "path_flagged": len(path),
        "path_diagnosed_outside_expected": len(ok),
        "early_ends": len(ends),
        "early_ends_named": len(named),
        "early_ends_complete": len(complete),
        "early_ends_complete_of_normal": sum(
            1 for v in complete if kind.get(v.session) == "normal"
        ),
        "early_ends_of_normal": sum(1 for v in ends if kind.get(v.session) == "normal"),
        "truncated": len(cut_keys),
        "truncated_flagged": sum(1 for v in cut_verdicts if v.anomalous),
        "truncated_early_ends": len(cut_ends),
        "truncated_named": len(cut_named),
        "truncated_first_missing_is_cut": len(cut_first),
        "examples_early_end": [
            {
                "session": v.session,
                "missing": [m["key"] for m in v.diagnosis.missing],
                "cut": first_cut[v.session],
            }
            for v in cut_named[:3]
            if v.diagnosis and v.diagnosis.missing
        ],
        "examples_not_diverged": bad,
        "examples_early_end_unnamed": unnamed,
    }


def speed_check(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    log = workdir / "big.log"
    with log.open("w", encoding="utf-8") as fh:
        n = 0
        for line in iter_lines(SimConfig(seed=5, sessions=10**7, normal_only=True)):
            fh.write(line + "\n")
            n += 1
            if n >= args.speed_lines:
                break
    model = workdir / "big_model"
    cmd = [*logwarden_command(), "train", str(log), "--format", SIM_FORMAT, "--session",
           SIM_SESSION_REGEX, "--out", str(model), "-q", "--device", "cpu"]  # fmt: skip
    r = run_child(cmd, workdir)
    info = json.loads((model / "manifest.json").read_text())["train_info"]
    mining = info["workflows"]["seconds"]
    return {
        "lines": n,
        "train_wall_s": r.wall_s,
        "mining_s": mining,
        "share_of_rest": mining / (r.wall_s - mining),
        "command": " ".join(cmd[-11:]),
    }


def hdfs(data: Path) -> dict[str, Any] | None:
    train = data / "hdfs-deeplog" / "hdfs_train"
    if not train.is_file():
        return None
    templates = {}
    with (data / "hdfs-deeplog" / "templates.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            templates[row["EventId"][1:]] = row["EventTemplate"]
    sessions = [line.split() for line in train.read_text().splitlines() if line.strip()]
    started = time.perf_counter()
    wfs = mine_workflows(sessions)
    from logwarden.workflow.render import workflows_text

    return {
        "sessions": len(sessions),
        "workflows": len(wfs),
        "seconds": time.perf_counter() - started,
        "text": workflows_text(wfs, templates),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    truth = truth_graphs(args.truth_sessions, args.truth_seed)
    sim = simulate(SimConfig(seed=args.train_seed, sessions=args.train_sessions, normal_only=True))
    log = workdir / "normal.log"
    sim.write(log)
    train = read_raw_sessions([str(log)], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX))
    names = step_names(train)
    started = time.perf_counter()
    by_id = mine_workflows(train.keys)
    id_s = time.perf_counter() - started
    windows = read_raw_sessions([str(log)], SIM_FORMAT, SessionConfig(window_size=args.window))
    started = time.perf_counter()
    by_window = mine_workflows(windows.keys, events=windows.sessions, interleaved=True)
    win_s = time.perf_counter() - started
    started = time.perf_counter()
    by_stats = mine_workflows(
        windows.keys, events=windows.sessions, interleaved=True,
        config=WorkflowConfig(link_identifiers=False),
    )  # fmt: skip
    stats_s = time.perf_counter() - started
    rep: dict[str, Any] = {
        "benchmark": "workflow_simulated",
        "machine": machine_info(),
        "params": {
            k: getattr(args, k)
            for k in (
                "train_sessions",
                "train_seed",
                "truth_sessions",
                "truth_seed",
                "test_sessions",
                "test_seed",
                "truncated",
                "window",
                "speed_lines",
            )
        },
        "lines": len(sim.lines),
        "ids": {"seconds": id_s, "workflows": len(by_id), "tasks": compare(by_id, names, truth)},
        "windows": {
            "seconds": win_s,
            "workflows": len(by_window),
            "tasks": compare(by_window, names, truth),
        },
        "windows_statistical": {
            "seconds": stats_s,
            "workflows": len(by_stats),
            "tasks": compare(by_stats, names, truth),
        },
        "diagnosis": diagnosis_check(args, train, workdir),
        "hdfs": hdfs(args.data),
    }
    if args.speed_lines > 0:
        rep["speed"] = speed_check(args, workdir)
    t_ids, t_win = rep["ids"]["tasks"], rep["windows"]["tasks"]
    d = rep["diagnosis"]
    passes = {
        "ids_edges": all(min(t["precision"], t["recall"]) >= TARGET_IDS for t in t_ids.values()),
        "ids_structure": all(t["concurrent_ok"] and t["loops_ok"] for t in t_ids.values()),
        "windows_edges": all(
            min(t["precision"], t["recall"]) >= TARGET_WINDOWS for t in t_win.values()
        ),
        "path_diagnosed": d["path_diagnosed_outside_expected"] == d["path_flagged"],
        # Vacuous when nothing ended early: the cut sessions must give early ends.
        # Every early end names its missing steps, or is a complete execution (nothing
        # missing, the workflow may end there); vacuous unless the cut sessions end early.
        "early_ends_named": d["early_ends_named"] + d["early_ends_complete"] == d["early_ends"]
        and d["truncated_early_ends"] > 0,
    }
    if "speed" in rep:
        passes["cost"] = rep["speed"]["share_of_rest"] <= TARGET_COST
    rep["passes"] = passes
    rep["pass"] = all(passes.values())
    return rep


def print_report(rep: dict[str, Any]) -> None:
    print(machine_line(rep["machine"]))
    p = rep["params"]
    print(
        f"normal log: {p['train_sessions']:,} sessions (seed {p['train_seed']}), "
        f"{rep['lines']:,} lines; truth: {p['truth_sessions']:,} generator paths per task"
    )
    for mode, label in (
        ("ids", "with identifiers"),
        ("windows", f"windows of {p['window']} lines"),
        ("windows_statistical", f"windows of {p['window']} lines, keys and times only (no target)"),
    ):
        r = rep[mode]
        print(f"\n{label}: {r['workflows']} workflows mined in {r['seconds']:.2f} s")
        print(
            f"  {'task':<6}{'wf':>5}{'edges':>7}{'truth':>7}{'precision':>11}{'recall':>8}  concurrency / loops"
        )
        for task, t in r["tasks"].items():
            print(
                f"  {task:<6}{t['workflow']:>5}{t['edges_mined']:>7}{t['edges_true']:>7}"
                f"{t['precision']:>11.3f}{t['recall']:>8.3f}  "
                f"{'ok' if t['concurrent_ok'] else 'DIFFERENT'} / {'ok' if t['loops_ok'] else 'DIFFERENT'}"
            )
            if t["missed_edges"]:
                print(f"      missed: {t['missed_edges'][:4]}")
            if t["false_edges"]:
                print(f"      false: {t['false_edges'][:4]}")
    d = rep["diagnosis"]
    print(
        f"\ndiagnosis: {d['path_flagged']} of {d['path_anomalies']} path anomalies flagged, "
        f"{d['path_diagnosed_outside_expected']} with the observed step outside the expected; "
        f"{d['early_ends']} early ends ({d['early_ends_of_normal']} on normal sessions), "
        f"{d['early_ends_named']} naming missing steps, {d['early_ends_complete']} complete "
        f"executions the workflow may end ({d['early_ends_complete_of_normal']} normal)"
    )
    print(
        f"early ends: {d['truncated']} normal sessions cut short, {d['truncated_flagged']} flagged, "
        f"{d['truncated_early_ends']} as early ends, {d['truncated_named']} naming missing steps "
        f"({d['truncated_first_missing_is_cut']} with the cut step first)"
    )
    if "speed" in rep:
        s = rep["speed"]
        print(
            f"cost: train on {s['lines']:,} lines {s['train_wall_s']:.1f} s whole process, "
            f"mining {s['mining_s']:.2f} s = {s['share_of_rest']:.1%} of the rest"
        )
    if rep["hdfs"]:
        h = rep["hdfs"]
        print(
            f"\nHDFS hdfs_train: {h['sessions']:,} sessions -> {h['workflows']} workflow(s) in {h['seconds']:.2f} s"
        )
        print(h["text"])
    ps = rep["passes"]
    print()
    print(
        f"targets: edges with ids >= {TARGET_IDS}: {check(ps['ids_edges'])}; structure: "
        f"{check(ps['ids_structure'])}; edges through windows >= {TARGET_WINDOWS}: "
        f"{check(ps['windows_edges'])}; path anomalies diagnosed: {check(ps['path_diagnosed'])}; "
        f"early ends named: {check(ps['early_ends_named'])}"
        + (f"; mining <= {TARGET_COST:.0%} of train: {check(ps['cost'])}" if "cost" in ps else "")
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-sessions", type=int, default=20000)
    p.add_argument("--train-seed", type=int, default=11)
    p.add_argument("--truth-sessions", type=int, default=20000)
    p.add_argument("--truth-seed", type=int, default=99)
    p.add_argument("--test-sessions", type=int, default=3000)
    p.add_argument("--test-seed", type=int, default=12)
    p.add_argument("--truncated", type=int, default=300, help="normal test sessions cut short")
    p.add_argument("--window", type=int, default=100, help="lines per window (no ids)")
    p.add_argument("--speed-lines", type=int, default=1_000_000, help="0: skip the cost run")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true")
    args = p.parse_args(argv)
    pin_cores(args.cores)
    with tempfile.TemporaryDirectory(prefix="workflow_simulated_") as tmp:
        rep = run(args, Path(tmp))
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        print_report(rep)
    return 1 if args.strict and not rep["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
