"""Parameter-value models on real OpenStack latencies: injected slow requests, through ``logwarden``.

``../shared/data/loghub-2k/OpenStack/OpenStack_2k.log`` (2,000 lines of nova-api,
nova-compute and nova-scheduler logs) has request lines that carry a real latency and
size: ``... "GET /v2/.../servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829``.
Sessions are requests: the ``request`` session preset (``req-<uuid>``).

The format is ``<Logrecord> <Date> <Time> <Pid> <Level> <Component> <Content>``, not the
``openstack`` preset: the preset (loghub's format) cuts the ``[req-... - - -]`` bracket
off into its ``ADDR`` header field, and ``--session`` searches only the content unless
``--session-in-line`` is given. Keeping the bracket in the content gives every
line with a request id its session (the id is masked out of the template).

Two blocks, each through the ``logwarden`` command as a user would run it:

* **in-sample** (``--in-sample`` alone): (a) ``logwarden train`` on the original file;
  (b) a copy of the file is written in which a seeded random sample of the request lines
  with ``time: X`` (``--fraction`` of them, at least ``--min-inject``) get ``time: X*20``
  (``--factor``; same number of decimals), with a labels CSV ``session,label`` (1: a line
  of the session was changed, 0: every other session of the copy); (c) ``logwarden eval
  COPY --labels CSV --json`` and ``logwarden detect COPY --jsonl``. Training and test are
  the same lines except for the injected ones, so the **false positives here are
  in-sample**: the model has seen every untouched session in training. They show what
  the detector flags in its own training data, not what it would flag on new traffic.
* **out-of-sample** (``--split`` alone): train on the first half of the file's lines
  (time order), inject into a copy of the second half only, and measure the same figures.
  False positives here are on requests the model never saw. A request whose lines straddle
  the split is a session in both halves.

Only request lines with a request id can be injected (a ``[-]`` line belongs to no
session). The x20 values are compared with the range of ``time`` in the training lines
of the same log key (template): an x20 value inside that range is an ordinary latency for
that request type, and a range-aware model cannot honestly be expected to catch it.
Recall is given on all injected sessions and on those whose value is outside that range.

No targets (the issue asks for the figures). Exit 0 when both blocks ran, 1 when a command
failed or eval and detect disagree, 2 on usage errors or when the data is missing.

    python bench/params_openstack.py [--fraction 0.1] [--min-inject 30] [--factor 20]
        [--seed 0] [--confidence 0.999] [--split | --in-sample] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import ChildFailed, machine_info, machine_line, pin_cores, ratio
from _simulated import run_steps, train_eval_detect, train_lines
from logwarden.sessions import SESSION_PRESETS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOG_NAME = "loghub-2k/OpenStack/OpenStack_2k.log"
FORMAT = "<Logrecord> <Date> <Time> <Pid> <Level> <Component> <Content>"
SESSION = "request"
REQUEST_RX = re.compile(SESSION_PRESETS[SESSION])
# The latency of a wsgi request line: "time: 0.2477829" (seconds, 7 decimals).
TIME_RX = re.compile(r"\btime: (\d+(?:\.(\d+))?)(?![\d.])")


@dataclass
class Injected:
    lineno: int  # 1-based, in the copy
    sessions: list[str]
    old: float
    new: float
    new_text: str


def inject(
    lines: list[str], fraction: float, minimum: int, factor: float, seed: int
) -> tuple[list[str], list[Injected], int]:
    """A copy of ``lines`` with a seeded sample of the request lines' latencies times
    ``factor`` (same decimals). Returns the copy, what was changed, the candidate count."""
    candidates = [
        i for i, line in enumerate(lines) if TIME_RX.search(line) and REQUEST_RX.search(line)
    ]
    n = min(len(candidates), max(minimum, round(fraction * len(candidates))))
    chosen = sorted(random.Random(seed).sample(candidates, n))
    out = list(lines)
    done: list[Injected] = []
    for i in chosen:
        m = TIME_RX.search(lines[i])
        assert m is not None
        decimals = len(m.group(2) or "")
        old = float(m.group(1))
        text = f"{old * factor:.{decimals}f}"
        out[i] = lines[i][: m.start(1)] + text + lines[i][m.end(1) :]
        ids = list(dict.fromkeys(g.group(1) for g in REQUEST_RX.finditer(lines[i])))
        done.append(Injected(i + 1, ids, old, float(text), text))
    return out, done, len(candidates)


def session_ids(lines: list[str]) -> list[str]:
    """Every request id of ``lines``, in order of first appearance (the sessions)."""
    seen: dict[str, None] = {}
    for line in lines:
        for m in REQUEST_RX.finditer(line):
            seen.setdefault(m.group(1), None)
    return list(seen)


def keyed_times(model: Path, log: Path) -> dict[int, tuple[str, float]]:
    """Line number -> (log key, latency) of the request lines of ``log`` that are in a
    session, read with the bundle's parser in match-only mode (analysis only)."""
    from logwarden.io.ingest import read_raw_sessions, session_config
    from logwarden.parsing import TemplateMiner

    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    miner = TemplateMiner.from_state(manifest["parser"])
    raw = read_raw_sessions([str(log)], FORMAT, session_config(SESSION, None), miner, learn=False)
    out: dict[int, tuple[str, float]] = {}
    for keys, sess in zip(raw.keys, raw.sessions, strict=True):
        for key, ev in zip(keys, sess.events, strict=True):
            m = TIME_RX.search(ev.record.line.text)
            if m:
                out[ev.record.line.lineno] = (key, float(m.group(1)))
    return out


def run_block(
    name: str,
    train_log: Path,
    test_lines: list[str],
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "model"
    copy = workdir / "injected.log"
    labels_csv = workdir / "labels.csv"
    verdicts_jsonl = workdir / "verdicts.jsonl"
    copy_lines, injected, candidates = inject(
        test_lines, args.fraction, args.min_inject, args.factor, args.seed
    )
    copy.write_text("".join(line + "\n" for line in copy_lines), encoding="utf-8")
    positive = {sid for inj in injected for sid in inj.sessions}
    ids = session_ids(copy_lines)
    with labels_csv.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["session", "label"])
        for sid in ids:
            w.writerow([sid, int(sid in positive)])

    raw = ["--format", FORMAT, "--session", SESSION]
    train_extra = ["--seed", "0", "--device", "cpu", "-q"]
    if args.confidence is not None:
        train_extra += ["--confidence", str(args.confidence)]
    steps = train_eval_detect(train_log, copy, model, raw, labels_csv, verdicts_jsonl, train_extra)
    seconds, outputs, errors = run_steps(steps, workdir, f"{name}: ")
    train_stderr = errors["train"]
    ev = json.loads(outputs["eval"])
    keys_line, params_line = train_lines(train_stderr)

    verdicts: dict[str, dict[str, Any]] = {}
    with verdicts_jsonl.open(encoding="utf-8") as fh:
        for line in fh:
            v = json.loads(line)
            verdicts[v["session"]] = v

    # Training range of the latency per log key (and overall), from the training lines.
    ranges: dict[str, tuple[float, float]] = {}
    overall: list[float] = []
    for key, t in keyed_times(model, train_log).values():
        lo, hi = ranges.get(key, (t, t))
        ranges[key] = (min(lo, t), max(hi, t))
        overall.append(t)
    lo_all, hi_all = (min(overall), max(overall)) if overall else (0.0, 0.0)
    test_keys = keyed_times(model, copy)

    # Per injected session: its values against the training range of its key.
    inj_rows: list[dict[str, Any]] = []
    for inj in injected:
        key = test_keys.get(inj.lineno, ("?", inj.new))[0]
        rng = ranges.get(key)
        inside = rng is not None and rng[0] <= inj.new <= rng[1]
        for sid in inj.sessions:
            v = verdicts.get(sid) or {}
            inj_rows.append(
                {
                    "session": sid,
                    "line": inj.lineno,
                    "key": key,
                    "old": inj.old,
                    "new": inj.new,
                    "key_range": list(rng) if rng else None,
                    "inside_key_range": inside,
                    "inside_overall_range": lo_all <= inj.new <= hi_all,
                    "detected": bool(v.get("anomalous")),
                    "detector": v.get("detector"),
                    "reason": v.get("reason"),
                    "deviation": v.get("deviation"),
                }
            )
    # One row per session (a session with two injected lines: detected once, outside if any).
    by_session: dict[str, dict[str, Any]] = {}
    for row in inj_rows:
        prev = by_session.get(row["session"])
        if prev is None or (prev["inside_key_range"] and not row["inside_key_range"]):
            by_session[row["session"]] = row
    rows = list(by_session.values())

    def hits(sel: list[dict[str, Any]]) -> dict[str, Any]:
        anyd = sum(r["detected"] for r in sel)
        par = sum(r["detector"] == "params" and r["reason"] == "parameter" for r in sel)
        return {
            "sessions": len(sel),
            "detected": anyd,
            "recall": ratio(anyd, len(sel)),
            "by_params_parameter": par,
            "recall_params_parameter": ratio(par, len(sel)),
        }

    outside = [r for r in rows if not r["inside_key_range"]]
    # How far out the injected values are: each over the training maximum of its key.
    ratios = [r["new"] / r["key_range"][1] for r in rows if r["key_range"] and r["key_range"][1]]
    tp = fp = fn = tn = 0
    fp_by: Counter[str] = Counter()
    fp_units: Counter[str] = Counter()
    fp_params: list[dict[str, Any]] = []  # the parameter models' false positives, explained
    for sid in ids:
        v = verdicts.get(sid) or {}
        hit = bool(v.get("anomalous"))
        label = sid in positive
        tp += hit and label
        fp += hit and not label
        fn += (not hit) and label
        tn += (not hit) and not label
        if hit and not label:
            det = v.get("detector") or "?"
            fp_by[det] += 1
            if det == "params":
                d = v.get("deviation") or {}
                what = d.get("name") or d.get("dimension") or "?"
                fp_units[f"{v.get('reason')}: {what} of {d.get('unit')} ({d.get('model')})"] += 1
                rng = ranges.get(str(v.get("observed"))) if what == "time" else None
                fp_params.append(
                    {"session": sid, "deviation": d, "key_range": list(rng) if rng else None}
                )
            else:
                fp_units[
                    f"{v.get('reason')}: {v.get('observed_template') or v.get('observed')}"
                ] += 1
    agree = (tp, fp, fn, tn) == (ev["tp"], ev["fp"], ev["fn"], ev["tn"])
    untouched = len(ids) - len(positive)
    misses = [r for r in rows if not r["detected"]]
    return {
        "block": name,
        "commands": {k: shlex.join(["logwarden", *v]) for k, v in steps.items()},
        "seconds": seconds,
        "train_output": {"keys": keys_line, "params": params_line},
        "train_lines": sum(1 for _ in train_log.open(encoding="utf-8")),
        "test_lines": len(test_lines),
        "candidate_lines": candidates,
        "injected_lines": len(injected),
        "injected_sessions": len(positive),
        "sessions": len(ids),
        "untouched_sessions": untouched,
        "overall_range": [lo_all, hi_all],
        "inside_key_range": sum(r["inside_key_range"] for r in rows),
        "inside_overall_range": sum(r["inside_overall_range"] for r in rows),
        "new_key": sum(r["key_range"] is None for r in rows),
        "recall_all": hits(rows),
        "recall_outside_key_range": hits(outside),
        "recall_inside_key_range": hits([r for r in rows if r["inside_key_range"]]),
        "false_positives": fp,
        "fp_pct": ratio(100 * fp, untouched),
        "fp_by_detector": {d: fp_by[d] for d in ("keys", "params")},
        "fp_causes": dict(fp_units.most_common()),
        "fp_params": fp_params,
        "times_key_max": [min(ratios), max(ratios)] if ratios else None,
        "eval": ev,
        "detect_agrees_with_eval": agree,
        "detect_counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "misses": misses,
        "injected": rows,
    }


def print_block(b: dict[str, Any], args: argparse.Namespace) -> None:
    title = {
        "in-sample": "in-sample: train on all lines, inject into a copy of the same lines",
        "split": "out-of-sample: train on the first half, inject into a copy of the second half",
    }[b["block"]]
    s = b["seconds"]
    print(f"== {title} ==")
    print(f"train: {b['train_lines']:,} lines, {s['train']:.1f} s whole process")
    print(f"  {b['train_output']['keys']}")
    print(f"  {b['train_output']['params'] or 'parameter models: (no line printed)'}")
    lo, hi = b["overall_range"]
    print(
        f"test copy: {b['test_lines']:,} lines, {b['sessions']:,} sessions; latencies x"
        f"{args.factor:g} on {b['injected_lines']} of {b['candidate_lines']} request lines with "
        f"`time:` (seed {args.seed}) -> {b['injected_sessions']} injected sessions; eval "
        f"{s['eval']:.1f} s, detect {s['detect']:.1f} s"
    )
    print(
        f"  x{args.factor:g} values inside the training range of their log key: "
        f"{b['inside_key_range']} of {b['injected_sessions']}; inside the overall range of "
        f"normal latencies ({lo:.7f} .. {hi:.7f} s): {b['inside_overall_range']}"
        + (f"; log key not in training: {b['new_key']}" if b["new_key"] else "")
    )
    if b["times_key_max"]:
        lo_r, hi_r = b["times_key_max"]
        print(
            f"  x{args.factor:g} values are {lo_r:.2f} to {hi_r:.2f} times the training maximum "
            "of their log key"
        )
    for label, key in (
        ("all injected", "recall_all"),
        ("outside key range", "recall_outside_key_range"),
        ("inside key range", "recall_inside_key_range"),
    ):
        r = b[key]
        if not r["sessions"]:
            continue
        print(
            f"  recall, {label} ({r['sessions']}): any detector {r['recall']:.4f} "
            f"({r['detected']}); params detector, reason parameter "
            f"{r['recall_params_parameter']:.4f} ({r['by_params_parameter']})"
        )
    note = (
        " (in-sample: the model trained on these very sessions)"
        if b["block"] == "in-sample"
        else ""
    )
    fpd = b["fp_by_detector"]
    print(
        f"  false positives among the {b['untouched_sessions']:,} untouched sessions: "
        f"{b['false_positives']} ({b['fp_pct']:.2f}%); keys {fpd['keys']}, params "
        f"{fpd['params']}{note}"
    )
    for cause, n in b["fp_causes"].items():
        print(f"    {n} x {cause}")
    for f in b["fp_params"][:8]:
        d, rng = f["deviation"], f["key_range"]
        rtext = f"; training range {rng[0]:.7f} .. {rng[1]:.7f}" if rng else ""
        print(
            f"    params: {f['session']}: {d.get('name') or d['dimension']} {d['observed']:.7g}, "
            f"expected about {d['expected']:.7g}, {d['sigmas']:+.1f} sigma ({d['model']} "
            f"model of {d['unit']}){rtext}"
        )
    for m in b["misses"][:8]:
        rng = m["key_range"]
        rtext = f"{rng[0]:.7f} .. {rng[1]:.7f}" if rng else "key not in training"
        print(
            f"  missed: {m['session']} line {m['line']} ({m['key']}): time {m['old']:.7f} -> "
            f"{m['new']:.7f}; training range of {m['key']}: {rtext}"
        )
    if len(b["misses"]) > 8:
        print(f"  ... {len(b['misses']) - 8} more misses (--json lists them all)")
    print(
        "  detect --jsonl agrees with eval: "
        + ("yes" if b["detect_agrees_with_eval"] else f"NO ({b['detect_counts']})")
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    p.add_argument("--fraction", type=float, default=0.10, help="request lines to inject")
    p.add_argument("--min-inject", type=int, default=30, help="inject at least this many")
    p.add_argument("--factor", type=float, default=20.0, help="latency multiplier")
    p.add_argument("--seed", type=int, default=0, help="seed of the injected sample")
    p.add_argument(
        "--confidence",
        type=float,
        choices=(0.98, 0.99, 0.999),
        default=None,
        help="parameter models' interval, passed to train (default: train's, 0.999)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--split", action="store_true", help="only the out-of-sample block")
    which.add_argument("--in-sample", action="store_true", help="only the in-sample block")
    p.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    p.add_argument("--keep", type=Path, help="keep the logs, models and verdicts in this folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    if not 0.0 < args.fraction <= 1.0:
        p.error("--fraction must be in (0, 1]")
    if args.min_inject < 1 or args.factor <= 0:
        p.error("--min-inject and --factor must be positive")
    log = args.data / LOG_NAME
    if not log.is_file():
        print(f"params_openstack: error: {log} not found (the loghub-2k data)", file=sys.stderr)
        return 2
    pin_cores(args.cores)
    lines = log.read_text(encoding="utf-8").splitlines()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="params_openstack_"))
    workdir.mkdir(parents=True, exist_ok=True)
    blocks: list[dict[str, Any]] = []
    try:
        if not args.split:
            blocks.append(run_block("in-sample", log, lines, args, workdir / "in_sample"))
        if not args.in_sample:
            half = len(lines) // 2
            first = workdir / "split" / "first_half.log"
            first.parent.mkdir(parents=True, exist_ok=True)
            first.write_text("".join(x + "\n" for x in lines[:half]), encoding="utf-8")
            blocks.append(run_block("split", first, lines[half:], args, workdir / "split"))
    except ChildFailed as exc:
        print(f"params_openstack: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rep = {
        "benchmark": "params_openstack",
        "machine": machine_info(),
        "log": str(log),
        "log_lines": len(lines),
        "format": FORMAT,
        "session": SESSION,
        "params": {
            "fraction": args.fraction,
            "min_inject": args.min_inject,
            "factor": args.factor,
            "seed": args.seed,
            "confidence": args.confidence,
        },
        "blocks": blocks,
    }
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(machine_line(rep["machine"]))
        print(
            f"{log.name}: {len(lines):,} lines; --format '{FORMAT}' --session {SESSION} "
            "(the openstack format preset puts the request id in a header field, found "
            "there only with --session-in-line)"
        )
        for b in blocks:
            print()
            print_block(b, args)
        print()
        print("commands (paths in a temporary folder unless --keep):")
        for b in blocks:
            for step, cmd in b["commands"].items():
                print(f"  {b['block']} {step}: {cmd}")
    if not all(b["detect_agrees_with_eval"] for b in blocks):
        print("params_openstack: error: detect and eval disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
