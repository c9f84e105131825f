"""DeepLog's log-key model on hdfs-100k: false positives and recall on labelled sessions.

``hdfs-100k/train.jsonl`` (6,352 HDFS block sessions from the first 100k lines of HDFS_v1,
256 labelled anomalous; keys are Drain's template texts) is split 80/20 in file order
(``logwarden.evaluate.split_in_order``): the model trains on the normal (label 0) sessions
of the first part, with the automatic threshold at the library's default target
(calibrated on its own training sessions by cross-fitting; ``--target-fpr`` to change it),
and is scored on every session of the second part. Test labels choose nothing.

Reported on the second part:

* false positives as % of its normal sessions (target <= 0.3%);
* recall on the anomalous sessions whose key sequence differs from every normal training
  sequence (target >= 0.95): the ones a key model can tell apart at all;
* the anomalous sessions identical to a normal training sequence (counted, not scored:
  keys alone cannot find them), and the overall recall;
* detections by reason (unseen key, unseen transition, early end, ranked out) and by
  length (<= h, > h).

Exit 0 when the measurement ran (``--strict``: 1 on a missed target), 2 on usage errors or
missing data.

    python bench/keys_hdfs100k.py [--json] [--strict] [--top-g G]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _harness import (
    DEFAULT_DATA,
    check,
    machine_info,
    machine_line,
    pin_cores,
    stderr_progress,
)
from logwarden.detect import DeepLog
from logwarden.evaluate import Report
from logwarden.io.datasets import load_jsonl, split_in_order
from logwarden.models import KeyModelConfig

TARGET_FP_PCT = 0.3
TARGET_RECALL_DISTINCT = 0.95


def _recall(tp: int, n: int) -> float:
    return tp / n if n else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    path = args.data / "hdfs-100k" / "train.jsonl"
    sessions = load_jsonl(path)
    first, second = split_in_order(sessions, args.split)
    train = [s.keys for s in first if s.label == 0]
    train_set = {tuple(k) for k in train}
    test_ids = [s.id for s in second]
    test_keys = [s.keys for s in second]
    test_labels = [s.label for s in second]
    if any(y is None for y in test_labels):
        raise SystemExit(f"keys_hdfs100k: error: unlabelled sessions in {path}")

    print(
        f"training on the {len(train):,} normal sessions of the first {len(first):,} ...",
        file=sys.stderr,
    )
    model = DeepLog(
        window=args.window,
        top_g=args.top_g,
        layers=args.layers,
        hidden=args.hidden,
        seed=args.seed,
        target_fpr=args.target_fpr,
        device=args.device,
        n_jobs=args.jobs,
    )
    t0 = time.perf_counter()
    model.fit(train, progress=stderr_progress("hdfs100k") if args.verbose else None)
    train_s = time.perf_counter() - t0

    verdicts = model.verdicts(test_keys, ids=test_ids)
    report = Report.from_verdicts(verdicts, test_labels, args.window, keys=test_keys)
    c = report.confusion
    n_normal = c.fp + c.tn
    # Anomalies a key model can see: their key sequence is not a normal training sequence.
    seen_tp = seen_n = new_tp = new_n = 0
    for v, keys, y in zip(verdicts, test_keys, test_labels, strict=True):
        if y != 1:
            continue
        if tuple(keys) in train_set:
            seen_n += 1
            seen_tp += v.anomalous
        else:
            new_n += 1
            new_tp += v.anomalous
    false_positives = [
        {
            "session": v.session,
            "length": v.length,
            "reason": v.reason,
            "position": v.position,
            "observed": v.observed,
            "probability": v.probability,
            "rank": v.rank,
            "expected": [e["key"] for e in v.expected[:3]],
        }
        for v, y in zip(verdicts, test_labels, strict=True)
        if v.anomalous and y == 0
    ]
    th = model.threshold_
    fp_pct = 100.0 * c.fp / n_normal if n_normal else 0.0
    recall_distinct = _recall(new_tp, new_n)
    passes = {
        "fp_pct": fp_pct <= TARGET_FP_PCT,
        "recall_distinct": recall_distinct >= TARGET_RECALL_DISTINCT,
    }
    h = args.window
    return {
        "benchmark": "keys_hdfs100k",
        "machine": machine_info(),
        "data": str(path),
        "params": {
            "window": h,
            "top_g": args.top_g,
            "layers": args.layers,
            "hidden": args.hidden,
            "seed": args.seed,
            "target_fpr": args.target_fpr,
            "split": args.split,
            "device": args.device,
        },
        "targets": {"fp_pct": TARGET_FP_PCT, "recall_distinct": TARGET_RECALL_DISTINCT},
        "split": {
            "sessions": len(sessions),
            "first": len(first),
            "second": len(second),
            "train_normal": len(train),
            "train_distinct_sequences": len(train_set),
            "first_anomalous_dropped": sum(1 for s in first if s.label == 1),
        },
        "model": {
            "threshold": {"mode": th.mode, "g": th.g, "tau": th.tau},
            "expected_fpr": th.expected_fpr,
            "fpr_low": th.fpr_low,
            "fpr_high": th.fpr_high,
            "calibration_sessions": th.calibration_sessions,
            "train_s": train_s,
            "train_info": dict(model.train_info_),
        },
        "test": {
            "normal": n_normal,
            "false_positives": c.fp,
            "fp_pct": fp_pct,
            "anomalous": c.tp + c.fn,
            "detected": c.tp,
            "recall": c.recall,
            "precision": c.precision,
            "f1": c.f1,
            "anomalous_distinct_from_training": new_n,
            "detected_distinct_from_training": new_tp,
            "recall_distinct": recall_distinct,
            "anomalous_identical_to_training": seen_n,
            "detected_identical_to_training": seen_tp,
            "by_reason": {k: {"tp": d.tp, "fp": d.fp} for k, d in report.by_reason.items()},
            "false_positive_examples": false_positives[: args.show],
            "by_length": {
                f"<={h}": report.short.as_dict(),
                f">{h}": report.long.as_dict(),
            },
        },
        "passes": passes,
        "pass": all(passes.values()),
    }


def print_report(rep: dict[str, Any]) -> None:
    print(machine_line(rep["machine"]))
    sp, m, t, p = rep["split"], rep["model"], rep["test"], rep["params"]
    th = m["threshold"]
    thr = f"top g={th['g']}" if th["mode"] == "top_g" else f"probability < {th['tau']:.3g}"
    print(
        f"{rep['data']}: {sp['sessions']:,} sessions, split {p['split']:.0%} in file order: "
        f"first {sp['first']:,} (trained on its {sp['train_normal']:,} normal sessions, "
        f"{sp['train_distinct_sequences']:,} distinct; {sp['first_anomalous_dropped']} "
        f"anomalous dropped), second {sp['second']:,} scored"
    )
    fpr = (
        "n/a"
        if m["expected_fpr"] is None
        else f"{m['expected_fpr']:.2%} [{m['fpr_low']:.2%}, {m['fpr_high']:.2%}]"
    )
    print(
        f"model: h={p['window']}, {p['layers']}x{p['hidden']}, threshold {thr} "
        f"(expected FPR {fpr}, cross-fitted on {m['calibration_sessions']} sessions), "
        f"trained in {m['train_s']:.1f} s, {m['train_info'].get('epochs', '?')} epochs"
    )
    print()
    rows = [
        ("normal sessions", f"{t['normal']:,}"),
        ("false positives", f"{t['false_positives']:,} ({t['fp_pct']:.2f}%)"),
        ("anomalous sessions", f"{t['anomalous']:,}"),
        (
            "  distinct from training",
            f"{t['anomalous_distinct_from_training']:,}, detected "
            f"{t['detected_distinct_from_training']:,}, recall {t['recall_distinct']:.4f}",
        ),
        (
            "  identical to a training seq.",
            f"{t['anomalous_identical_to_training']:,}, detected "
            f"{t['detected_identical_to_training']:,} (keys alone cannot find them)",
        ),
        ("overall recall", f"{t['recall']:.4f} ({t['detected']:,}/{t['anomalous']:,})"),
        ("precision / F1", f"{t['precision']:.4f} / {t['f1']:.4f}"),
    ]
    for k, v in rows:
        print(f"{k:<32}{v}")
    print(f"{'flagged by reason':<32}{'tp':>8}{'fp':>8}")
    for k, d in t["by_reason"].items():
        if d["tp"] or d["fp"]:
            print(f"  {k:<30}{d['tp']:>8,}{d['fp']:>8,}")
    print(f"{'by length':<32}{'tp':>8}{'fp':>8}{'fn':>8}{'tn':>8}")
    for k, b in t["by_length"].items():
        print(f"  {k:<30}{b['tp']:>8,}{b['fp']:>8,}{b['fn']:>8,}{b['tn']:>8,}")
    if t["false_positive_examples"]:
        print("false positives (first ones: reason, entry, observed key, p, rank; expected):")
        for e in t["false_positive_examples"]:
            p_txt = "" if e["probability"] is None else f" p={e['probability']:.2g}"
            print(
                f"  {e['session']} ({e['length']} keys): {e['reason']} at {e['position']}, "
                f"{e['observed']!r}{p_txt} rank {e['rank']}; expected {e['expected']}"
            )
    tg = rep["targets"]
    print()
    print(
        f"target FP <= {tg['fp_pct']}% of normal: {check(rep['passes']['fp_pct'])} "
        f"({t['fp_pct']:.2f}%); target recall (distinct from training) >= "
        f"{tg['recall_distinct']}: {check(rep['passes']['recall_distinct'])} "
        f"({t['recall_distinct']:.4f})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--split", type=float, default=0.8, help="fraction of the first part")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--top-g", type=int, default=None, help="fixed g (default: automatic)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    # The benchmark's requirement is at most 0.3% false positives, so the automatic threshold
    # aims at that rate on the held-out training sessions (an operating point set from the
    # requirement before any scoring, not tuned on the test part's labels).
    p.add_argument(
        "--target-fpr",
        type=float,
        default=KeyModelConfig().target_fpr,
        help="the automatic threshold's target (default: the library's)",
    )
    p.add_argument("--jobs", type=int, default=2, help="processes for the fold models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    p.add_argument("--show", type=int, default=5, help="false positives to list (5)")
    p.add_argument("-v", "--verbose", action="store_true", help="training progress on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if not 0.0 < args.split < 1.0:
        p.error("--split must be between 0 and 1")
    if not (args.data / "hdfs-100k" / "train.jsonl").is_file():
        print(
            f"keys_hdfs100k: error: {args.data / 'hdfs-100k' / 'train.jsonl'} not found (--data)",
            file=sys.stderr,
        )
        return 2
    pin_cores(args.cores)
    rep = run(args)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    return 1 if args.strict and not rep["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
