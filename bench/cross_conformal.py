"""An experiment for issue 9: would cross-conformal p-values cut false positives on later data?

Today the key model's probability cut comes from cross-fitted statistics (5 fold models,
each scoring the sessions it did not train on) and is applied to the **full model's**
probabilities. On later HDFS data its false positives sit at the target (0.41% of
hdfs-100k's later normal sessions at 0.5%); the issue asks for <= 0.3% there. Most of them
are orderings of concurrent datanode messages that a few training sessions also show: the
fold models that trained on those sessions give them moderate probabilities, the ones
that did not give them low ones.

The variant measured here (CV+, cross-conformal): keep the fold models. Each fold model
``k`` has its own tail model, fitted on the statistics of the sessions it did not train on
(the rules' sessions left out, as ``calibrate`` does). A session's p-value is the mean over
the folds of ``tail_k.sf(statistic under fold model k)``; the probability part flags it at
the same ``level`` the full model's cut was chosen for. The rules (unseen keys,
transitions, counts, ends) flag as they do today. Nothing here is tuned: the level is the
library's own.

Blocks, seeds 0..N-1 each (``--seeds``):

- ``val``: hdfs-100k, **validation only**: the first 80% of ``train.jsonl`` (the training
  part of ``robustness.py``'s time split) split again in time order, 80/20: train on the
  normal sessions of the first part, count false positives among the normal sessions of
  the second and recall on its anomalies whose key sequence is not a training one. The
  last 20% of the file (robustness's test part) is never read.
- ``deeplog``: the DeepLog split as ``robustness.py`` draws it (80% of ``hdfs_train`` per
  seed, the 20% held out as normal test sessions, all of ``hdfs_test_abnormal``): does the
  variant cost recall or false positives there?

Prints per seed the false positives and recall of the library as it is (``base``), of the
variant (``cv+``) and of the rules alone (``rules``). The variant costs 5 forward passes
per window at detection, and the online update would have to update the fold models too:
that is why this is an experiment, not the default (see bench/README.md).

    python bench/cross_conformal.py [--seeds 5] [--blocks val deeplog] [--json] [--strict]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from _harness import DEFAULT_DATA, machine_info, machine_line, pin_cores
from logwarden.detect import DeepLog
from logwarden.io.datasets import load_jsonl, split_in_order
from logwarden.models.calibration import TailModel
from logwarden.models.keys import (
    FIRST_KEY,
    KeyModel,
    Threshold,
    assign_folds,
    left_out_ends,
    left_out_rules,
    session_rows,
    session_statistic,
    train_weights,
)

HOLDOUT = 0.2  # robustness.py's DeepLog split


def fold_models(
    model: KeyModel, train: Sequence[Sequence[str]]
) -> list[tuple[KeyModel, TailModel]]:
    """The fold models of the model's cross-fitting (same folds, seeds and training), each
    with the tail model of its held-out sessions' statistics, rules' sessions left out."""
    cfg = model.config
    enc = model.encode_many(train)
    n_out = len(model.keys) + FIRST_KEY
    budget = cfg.rule_share * cfg.target_fpr
    longest = cfg.window if cfg.rule_share > 0 else 0
    _, ruled, context, _, _ = left_out_rules(enc, n_out, longest, budget, counts=cfg.rule_share > 0)
    if context == 0 and cfg.rule_share > 0:
        ruled, _ = left_out_ends(enc, ruled, budget)
    fold = assign_folds(enc, cfg.folds, cfg.seed)
    out = []
    for k in range(cfg.folds):
        held = np.flatnonzero(fold == k)
        rest = [enc[i] for i in np.flatnonzero(fold != k)]
        c = replace(cfg, seed=cfg.seed + 1 + k)
        rows, _ = session_rows(rest, cfg.window)
        distinct, counts = np.unique(rows, axis=0, return_counts=True)
        weights, _ = train_weights(distinct, counts, n_out, c)
        fm = KeyModel(c, list(model.keys), weights, Threshold("top_g", g=1))
        keep = held[~ruled[held]]
        stat = session_statistic(fm.score([enc[i] for i in keep]))
        out.append((fm, TailModel.fit(stat)))
    return out


def compare(
    est: DeepLog, folds: list[tuple[KeyModel, TailModel]], test: Sequence[Sequence[str]],
    labels: np.ndarray, target: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    model = est.model_
    enc = model.encode_many(test)
    a = model.assess(enc)
    ruled = np.asarray(a.ruled, dtype=bool)
    base = a.first >= 0
    level = model.threshold.level
    p = np.mean([tail.sf(session_statistic(fm.score(enc))) for fm, tail in folds], axis=0)
    cv = ruled | (p <= level)
    # Both: the full model's cut and the folds' p-value (what detection can compute only for
    # the sessions the full model flags).
    both = ruled | (base & ~ruled & (p <= level))
    normal = labels == 0
    out: dict[str, Any] = {"level": level, "normal": int(normal.sum()), "target": int(target.sum())}
    for name, f in (("base", base), ("cv+", cv), ("both", both), ("rules", ruled)):
        out[name] = {
            "fp": int(f[normal].sum()),
            "recall": float(f[target].mean()) if target.any() else None,
        }
    return out


def val_data(data: Path) -> tuple[list[list[str]], list[list[str]], np.ndarray, np.ndarray]:
    sessions = load_jsonl(data / "hdfs-100k" / "train.jsonl")
    first, _ = split_in_order(sessions, 0.8)  # robustness's test part is never read
    a, b = split_in_order(first, 0.8)
    train = [s.keys for s in a if s.label == 0]
    known = {tuple(k) for k in train}
    test = [s.keys for s in b]
    labels = np.array([s.label for s in b])
    target = np.array([tuple(k) not in known for k in test]) & (labels == 1)
    return train, test, labels, target


def deeplog_data(
    data: Path, seed: int
) -> tuple[list[list[str]], list[list[str]], np.ndarray, np.ndarray]:
    d = data / "hdfs-deeplog"
    train_all = [line.split() for line in (d / "hdfs_train").read_text().splitlines()]
    abnormal = [line.split() for line in (d / "hdfs_test_abnormal").read_text().splitlines()]
    order = np.random.default_rng(1000 + seed).permutation(len(train_all))
    n_hold = round(HOLDOUT * len(train_all))
    held = [train_all[i] for i in order[:n_hold]]
    train = [train_all[i] for i in order[n_hold:]]
    labels = np.array([1] * len(abnormal) + [0] * len(held))
    return train, abnormal + held, labels, labels == 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (5)")
    p.add_argument("--blocks", nargs="+", default=["val", "deeplog"], choices=["val", "deeplog"])
    p.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    p.add_argument("--jobs", type=int, default=2, help="processes for the fold models")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when the variant has more false positives or less recall than the "
        "library in any run (the claim the experiment tests)",
    )
    args = p.parse_args(argv)
    for need in ("hdfs-deeplog/hdfs_train", "hdfs-100k/train.jsonl"):
        if not (args.data / need).is_file():
            print(f"cross_conformal: error: {args.data / need} not found (--data)", file=sys.stderr)
            return 2
    pin_cores(args.cores)
    rep: dict[str, Any] = {"benchmark": "cross_conformal", "machine": machine_info(), "runs": []}
    for block in args.blocks:
        for seed in range(args.seeds):
            print(f"[{block}] seed {seed} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if block == "val":
                train, test, labels, target = val_data(args.data)
            else:
                train, test, labels, target = deeplog_data(args.data, seed)
            est = DeepLog(seed=seed, n_jobs=args.jobs)
            est.fit(train)
            run = {
                "block": block,
                "seed": seed,
                **compare(est, fold_models(est.model_, train), test, labels, target),
            }
            run["seconds"] = round(time.perf_counter() - t0, 1)
            rep["runs"].append(run)
            if not args.json:
                print(
                    f"{block:8s} seed {seed}: normal {run['normal']:,}, level {run['level']:.4g}; "
                    + "; ".join(
                        f"{n} FP {run[n]['fp']} recall {run[n]['recall']:.4f}"
                        for n in ("base", "cv+", "both", "rules")
                    ),
                    flush=True,
                )
    rep["variant_never_worse"] = all(
        r["cv+"]["fp"] <= r["base"]["fp"]
        and (r["cv+"]["recall"] or 0) >= (r["base"]["recall"] or 0)
        for r in rep["runs"]
    )
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(machine_line(rep["machine"]))
        for block in args.blocks:
            runs = [r for r in rep["runs"] if r["block"] == block]
            for n in ("base", "cv+", "both", "rules"):
                fps = [r[n]["fp"] for r in runs]
                rec = [r[n]["recall"] for r in runs]
                print(
                    f"{block:8s} {n:5s}: FP {fps} of {runs[0]['normal']:,} each, "
                    f"recall {min(rec):.4f} to {max(rec):.4f}"
                )
        print(f"the variant never worse than the library: {rep['variant_never_worse']}")
    return 1 if args.strict and not rep["variant_never_worse"] else 0


if __name__ == "__main__":
    sys.exit(main())
