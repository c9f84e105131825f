"""Detection that holds on data it was not tuned on: every figure over seeds, forms, splits.

Three blocks, every model with the library defaults (automatic threshold at the default
``target_fpr``, h = 10, 2 x 64 LSTM), trained on the CPU:

1. **The DeepLog split** (``hdfs-deeplog``), for each seed and each *form* of the same
   sessions. The paper's normal test set is not available, so each seed holds out its own
   20% of ``hdfs_train`` (971 sessions, drawn with the seed) as the normal test set; the
   model trains on the other 80% (3,884 sessions), and is tested on those 971 and on all
   16,838 ``hdfs_test_abnormal`` sessions. Forms:

   * ``sequences``: the key sequences through ``DeepLog.fit`` / ``predict``;
   * ``shuffled``: the same, training sessions in another order (drawn with the seed);
   * ``raw``: the sessions rendered as raw HDFS lines (``_hdfs_raw.py``: templates.csv,
     random block ids, interleaved in time), then ``logwarden train`` and ``logwarden
     detect --jsonl`` as child processes, as a user would run them (``--no-params``: the
     rendered parameter values and timings are random, a parameter model of them would
     measure the renderer).

   Per run: recall on the abnormal sessions, false positives on the held-out normal ones
   (measured), the expected false-positive rate ``train`` printed with its interval, the
   training time. Per seed: how many sessions get the same verdict in every form. And per
   seed a model trained on all 4,855 sessions, the paper's training set, for its recall
   alone (no normal session is left to measure false positives on; ``--no-paper``), in raw
   form by default: the issue's "raw end to end" case (``--paper-form``, ``--paper-only``).
2. **hdfs-100k, a time split**: the normal sessions of the first 80% of
   ``hdfs-100k/train.jsonl`` (file order) train, the rest is tested: false positives among
   its normal sessions, recall on the anomalies whose key sequence differs from every
   normal training sequence. One model per seed.
3. **The simulator**: ``simulate(seed=100 + s)`` normal sessions train, ``simulate(seed=200
   + s)`` (the default anomaly mix) is tested, both detectors: false positives, recall on
   execution-path anomalies (and those unlike any training sequence), on parameter and
   performance anomalies, and whether sorting by score puts every anomaly of either
   detector above every normal session.

Each figure is printed with its spread (min, max, mean) over the runs. Test labels choose
nothing: the thresholds come from the training sessions alone.

Run time on a 2-core machine (``--cores 2``): see bench/README.md. ``--quick``: seeds 0
and 1, fewer simulated sessions.

    python bench/robustness.py [--quick] [--seeds 5] [--first-seed 0] [--blocks deeplog hdfs100k sim]
        [--forms sequences shuffled raw] [--json] [--strict]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _harness import (
    DEFAULT_DATA,
    ChildFailed,
    check,
    logwarden_command,
    machine_info,
    machine_line,
    pin_cores,
    run_child,
)
from _hdfs_raw import HDFS_FORMAT, key_agreement, load_templates, render_sessions
from logwarden.detect import DeepLog
from logwarden.io.datasets import load_jsonl, split_in_order
from logwarden.models import KeyModelConfig

TARGETS = {
    "raw_recall": 0.99,  # raw end to end, recall on the abnormal sessions
    "raw_fp_pct": 1.0,  # ... false positives, % of the normal test sessions
    "recall_spread_pts": 0.5,  # max - min recall over all DeepLog-split runs, in points
    "fpr_over_target": 1.5,  # every run's measured FPR <= this x the target
    "h100k_fp_pct": 0.3,  # hdfs-100k time split, at the default target
    "h100k_recall_distinct": 0.95,
    "deeplog_recall": 0.99,
}
FORMS = ("sequences", "shuffled", "raw")
HOLDOUT = 0.2


def spread(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return {}
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "n": len(a)}


def threshold_figures(th: Any) -> dict[str, Any]:
    return {
        "expected_fpr": th.expected_fpr,
        "fpr_low": th.fpr_low,
        "fpr_high": th.fpr_high,
        "tau": th.tau,
        "level": th.level,
    }


def model_args(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "device": args.device,
        "n_jobs": args.jobs,
        "target_fpr": args.target_fpr,
    }


# --- the DeepLog split ------------------------------------------------------------------------


def deeplog_block(args: argparse.Namespace) -> dict[str, Any]:
    data = args.data / "hdfs-deeplog"
    train_all = [line.split() for line in (data / "hdfs_train").read_text().splitlines()]
    abnormal = [line.split() for line in (data / "hdfs_test_abnormal").read_text().splitlines()]
    templates = load_templates(data / "templates.csv")
    runs: list[dict[str, Any]] = []
    paper: list[dict[str, Any]] = []
    agreement: list[dict[str, Any]] = []
    for seed in args.seed_list:
        order = np.random.default_rng(1000 + seed).permutation(len(train_all))
        n_hold = round(HOLDOUT * len(train_all))
        held = [train_all[i] for i in order[:n_hold]]
        train = [train_all[i] for i in order[n_hold:]]
        test = abnormal + held
        labels = np.array([1] * len(abnormal) + [0] * len(held))
        flags: dict[str, np.ndarray] = {}
        for form in [] if args.paper_only else args.forms:
            print(f"[deeplog] seed {seed}, {form} ...", file=sys.stderr, flush=True)
            if form == "raw":
                run, f = _deeplog_raw(args, seed, train, test, templates)
            else:
                sessions = train
                if form == "shuffled":
                    perm = np.random.default_rng(2000 + seed).permutation(len(train))
                    sessions = [train[i] for i in perm]
                est = DeepLog(**model_args(args, seed))
                t0 = time.perf_counter()
                est.fit(sessions)
                train_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                f = est.predict(test)
                run = {
                    "train_s": train_s,
                    "detect_s": time.perf_counter() - t0,
                    **threshold_figures(est.threshold_),
                    "rule_context": est.model_.calibration.context
                    if est.model_.calibration
                    else None,
                    "epochs": est.train_info_["epochs"],
                }
            flags[form] = f
            recall = float(f[labels == 1].mean())
            fp = int(f[labels == 0].sum())
            runs.append(
                {
                    "block": "deeplog",
                    "form": form,
                    "seed": seed,
                    "recall": recall,
                    "missed": int((~f[labels == 1]).sum()),
                    "fp": fp,
                    "normal": int((labels == 0).sum()),
                    "fpr": fp / int((labels == 0).sum()),
                    **run,
                }
            )
            r = runs[-1]
            print(
                f"  recall {recall:.4f}, FP {fp}/{r['normal']} ({r['fpr']:.2%}), expected "
                f"{r['expected_fpr']:.2%} [{r['fpr_low']:.2%}, {r['fpr_high']:.2%}], "
                f"train {r['train_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        if args.paper:
            # The paper's own training set, all of it: recall only (no normal data left).
            # In raw form by default: the "raw end to end" case, as a user runs it.
            print(
                f"[deeplog] seed {seed}, all 4,855 ({args.paper_form}) ...",
                file=sys.stderr,
                flush=True,
            )
            if args.paper_form == "raw":
                run, f = _deeplog_raw(args, seed, train_all, abnormal, templates)
                train_s = run["train_s"]
                figures = {k: run[k] for k in ("expected_fpr", "fpr_low", "fpr_high")}
                context = run["rule_context"]
            else:
                est = DeepLog(**model_args(args, seed))
                t0 = time.perf_counter()
                est.fit(train_all)
                train_s = time.perf_counter() - t0
                f = est.predict(abnormal)
                figures = threshold_figures(est.threshold_)
                context = est.model_.calibration.context if est.model_.calibration else None
            paper.append(
                {
                    "block": "deeplog-all",
                    "form": args.paper_form,
                    "seed": seed,
                    "recall": float(f.mean()),
                    "missed": int((~f).sum()),
                    "train_s": train_s,
                    **figures,
                    "rule_context": context,
                }
            )
            print(f"  recall {f.mean():.4f}, train {train_s:.0f} s", file=sys.stderr, flush=True)
        if len(flags) > 1:
            stack = np.stack(list(flags.values()))
            same = (stack == stack[0]).all(axis=0)
            pairs = {
                f"{a}~{b}": float((flags[a] == flags[b]).mean())
                for i, a in enumerate(flags)
                for b in list(flags)[i + 1 :]
            }
            agreement.append(
                {
                    "seed": seed,
                    "all_forms_agree": float(same.mean()),
                    "differ": int((~same).sum()),
                    "pairs": pairs,
                }
            )
    return {"runs": runs, "paper": paper, "agreement": agreement}


def _deeplog_raw(
    args: argparse.Namespace,
    seed: int,
    train: list[list[str]],
    test: list[list[str]],
    templates: dict[str, str],
) -> tuple[dict[str, Any], np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="robustness_") as tmp:
        d = Path(tmp)
        lines, _ = render_sessions(train, templates, seed=3000 + seed)
        (d / "train.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        lines, ids = render_sessions(test, templates, seed=4000 + seed)
        (d / "test.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        del lines
        lw = logwarden_command()
        common = ["--format", HDFS_FORMAT, "--session", "hdfs"]
        trained = run_child(
            [
                *lw, "train", str(d / "train.log"), *common, "--out", str(d / "model"),
                "--no-params", "--seed", str(seed), "--device", args.device, "-q",
                "--jobs", str(args.jobs), "--target-fpr", str(args.target_fpr),
            ],
            d,
        )  # fmt: skip
        detected = run_child(
            [*lw, "detect", str(d / "test.log"), "--model", str(d / "model"), "--jsonl",
             str(d / "verdicts.jsonl")],
            d,
        )  # fmt: skip
        by_id = {}
        with (d / "verdicts.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                v = json.loads(line)
                by_id[v["session"]] = bool(v["anomalous"])
        manifest = json.loads((d / "model" / "manifest.json").read_text(encoding="utf-8"))
        parse = _raw_parse_check(d, ids, test, manifest) if args.check_parse else None
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ChildFailed(f"detect gave no verdict for {len(missing)} rendered sessions")
    th = manifest["threshold"]
    run = {
        "train_s": trained.wall_s,
        "detect_s": detected.wall_s,
        "expected_fpr": th["expected_fpr"],
        "fpr_low": th["fpr_low"],
        "fpr_high": th["fpr_high"],
        "tau": th["tau"],
        "level": th["level"],
        "rule_context": (manifest.get("calibration") or {}).get("context"),
        "epochs": manifest["train_info"]["epochs"],
        "keys": len(manifest["vocabulary"]),
        "parse": parse,
    }
    return run, np.array([by_id[i] for i in ids])


def _raw_parse_check(
    d: Path, ids: list[str], test: list[list[str]], manifest: dict[str, Any]
) -> dict[str, Any]:
    """Whether the bundle's parser gives the test sessions' keys back, one to one."""
    from logwarden.io.ingest import read_raw_sessions, session_config
    from logwarden.parsing import TemplateMiner

    miner = TemplateMiner.from_state(manifest["parser"], {})
    raw = read_raw_sessions(
        [str(d / "test.log")], HDFS_FORMAT, session_config("hdfs", None), miner=miner, learn=False
    )
    by_id = dict(zip(raw.ids, raw.keys, strict=True))
    return key_agreement(test, [by_id[i] for i in ids])


# --- hdfs-100k, a time split -------------------------------------------------------------------


def hdfs100k_block(args: argparse.Namespace) -> dict[str, Any]:
    sessions = load_jsonl(args.data / "hdfs-100k" / "train.jsonl")
    first, second = split_in_order(sessions, 0.8)
    train = [s.keys for s in first if s.label == 0]
    known = {tuple(k) for k in train}
    test = [s.keys for s in second]
    labels = np.array([s.label for s in second])
    distinct = np.array([tuple(k) not in known for k in test])
    runs = []
    for seed in args.seed_list:
        print(f"[hdfs100k] seed {seed} ...", file=sys.stderr, flush=True)
        est = DeepLog(**model_args(args, seed))
        t0 = time.perf_counter()
        est.fit(train)
        train_s = time.perf_counter() - t0
        f = est.predict(test)
        normal = labels == 0
        target = (labels == 1) & distinct
        runs.append(
            {
                "block": "hdfs100k",
                "seed": seed,
                "fp": int(f[normal].sum()),
                "normal": int(normal.sum()),
                "fpr": float(f[normal].mean()),
                "recall_distinct": float(f[target].mean()) if target.any() else None,
                "distinct_anomalies": int(target.sum()),
                "recall": float(f[labels == 1].mean()),
                "train_s": train_s,
                **threshold_figures(est.threshold_),
                "rule_context": est.model_.calibration.context if est.model_.calibration else None,
            }
        )
        r = runs[-1]
        print(
            f"  FP {r['fp']}/{r['normal']} ({r['fpr']:.2%}), recall distinct "
            f"{r['recall_distinct']:.3f}, expected {r['expected_fpr']:.2%}",
            file=sys.stderr,
            flush=True,
        )
    return {"runs": runs, "train_sessions": len(train), "test_sessions": len(test)}


# --- the simulator ------------------------------------------------------------------------------


def sim_block(args: argparse.Namespace) -> dict[str, Any]:
    from logwarden.io.ingest import read_raw_sessions
    from logwarden.sessions import SessionConfig
    from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

    runs = []
    for seed in args.seed_list:
        print(f"[sim] seed {seed} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="robustness_sim_") as tmp:
            d = Path(tmp)
            simulate(
                SimConfig(seed=100 + seed, sessions=args.sim_sessions, normal_only=True)
            ).write(d / "train.log")
            mixed = simulate(SimConfig(seed=200 + seed, sessions=args.sim_sessions))
            mixed.write(d / "test.log")
            cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
            train = read_raw_sessions([str(d / "train.log")], SIM_FORMAT, cfg)
            test = read_raw_sessions(
                [str(d / "test.log")], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX),
                miner=train.miner, learn=False,
            )  # fmt: skip
        est = DeepLog(**model_args(args, seed))
        t0 = time.perf_counter()
        est.fit(train.keys, train.templates, events=train.sessions)
        train_s = time.perf_counter() - t0
        verdicts = est.verdicts(test.keys, test.ids, events=test.sessions)
        truth = {s.session: s for s in mixed.sessions}
        known = {tuple(k) for k in train.keys}
        kinds = np.array([truth[i].kind if i in truth else "noise" for i in test.ids])
        flagged = np.array([v.anomalous for v in verdicts])
        scores = np.array([v.score for v in verdicts])
        detector = np.array([v.detector or "" for v in verdicts])
        # The key model's own flags (whichever detector a verdict names first): the target
        # is its calibration's; the parameter models answer to their own confidence.
        km = est.model_
        by_keys = km.assess(km.encode_many(test.keys)).first >= 0
        distinct = np.array([tuple(k) not in known for k in test.keys])
        normal = kinds == "normal"
        anomalous = np.isin(kinds, ["path", "param", "perf"])

        def rate(mask: np.ndarray, flagged: np.ndarray = flagged) -> float | None:
            return float(flagged[mask].mean()) if mask.any() else None

        # One scale: every flagged session (either detector) above every normal verdict.
        flagged_scores = scores[flagged]
        ranked = bool(len(flagged_scores) == 0 or flagged_scores.min() > scores[~flagged].max())
        runs.append(
            {
                "block": "sim",
                "seed": seed,
                "fp": int(flagged[normal].sum()),
                "normal": int(normal.sum()),
                "fpr": float(flagged[normal].mean()),
                "fp_keys": int((flagged & normal & (detector == "keys")).sum()),
                "fpr_keys": float(by_keys[normal].mean()),
                "fp_params": int((flagged & normal & (detector == "params")).sum()),
                "recall_path": rate(kinds == "path"),
                "recall_path_distinct": rate((kinds == "path") & distinct),
                "recall_param": rate(kinds == "param"),
                "recall_perf": rate(kinds == "perf"),
                "recall": rate(anomalous),
                "scores_rank_anomalies_first": ranked,
                "train_s": train_s,
                **threshold_figures(est.threshold_),
                "rule_context": est.model_.calibration.context if est.model_.calibration else None,
            }
        )
        r = runs[-1]
        print(
            f"  FP {r['fp']}/{r['normal']} ({r['fpr']:.2%}; key model {r['fpr_keys']:.2%}), "
            f"path {r['recall_path']:.3f}, "
            f"param {r['recall_param']}, perf {r['recall_perf']}",
            file=sys.stderr,
            flush=True,
        )
    return {"runs": runs}


# --- report ------------------------------------------------------------------------------------


def summarize(rep: dict[str, Any], target: float) -> dict[str, Any]:
    s: dict[str, Any] = {}
    passes: dict[str, bool] = {}
    dl = rep.get("deeplog")
    if dl:
        runs = dl["runs"]
        for form in sorted({r["form"] for r in runs}):
            mine = [r for r in runs if r["form"] == form]
            s[f"deeplog/{form}"] = {
                k: spread([r[k] for r in mine])
                for k in ("recall", "fpr", "expected_fpr", "train_s")
            }
        if runs:
            recalls = [r["recall"] for r in runs]
            s["deeplog/recall_spread_pts"] = 100 * (max(recalls) - min(recalls))
            s["deeplog/worst_fpr_over_target"] = max(r["fpr"] for r in runs) / target
            passes["deeplog (80% trained) recall >= 0.99, every run"] = (
                min(recalls) >= TARGETS["deeplog_recall"]
            )
            passes["recall spread <= 0.5 points"] = (
                s["deeplog/recall_spread_pts"] <= TARGETS["recall_spread_pts"]
            )
            passes["every run's FPR <= 1.5 x target"] = (
                s["deeplog/worst_fpr_over_target"] <= TARGETS["fpr_over_target"]
            )
            raw = [r for r in runs if r["form"] == "raw"]
            if raw:
                passes["raw: recall >= 0.99 and FP <= 1%, every run"] = all(
                    r["recall"] >= TARGETS["raw_recall"] and 100 * r["fpr"] <= TARGETS["raw_fp_pct"]
                    for r in raw
                )
        if dl["paper"]:
            s["deeplog/all 4,855"] = {
                k: spread([r[k] for r in dl["paper"]])
                for k in ("recall", "expected_fpr", "train_s")
            }
            passes["deeplog (all 4,855 trained, the paper's set) recall >= 0.99, every seed"] = (
                min(r["recall"] for r in dl["paper"]) >= TARGETS["deeplog_recall"]
            )
    hk = rep.get("hdfs100k")
    if hk:
        runs = hk["runs"]
        s["hdfs100k"] = {
            k: spread([r[k] for r in runs if r[k] is not None])
            for k in ("fpr", "recall_distinct", "expected_fpr", "train_s")
        }
        passes["hdfs-100k FP <= 0.3%, every run"] = all(
            100 * r["fpr"] <= TARGETS["h100k_fp_pct"] for r in runs
        )
        passes["hdfs-100k recall (distinct) >= 0.95, every run"] = all(
            (r["recall_distinct"] or 0) >= TARGETS["h100k_recall_distinct"] for r in runs
        )
    sm = rep.get("sim")
    if sm:
        runs = sm["runs"]
        s["sim"] = {
            k: spread([r[k] for r in runs if r[k] is not None])
            for k in (
                "fpr", "fpr_keys", "recall_path", "recall_path_distinct", "recall_param",
                "recall_perf",
                "expected_fpr", "train_s",
            )
        }  # fmt: skip
        passes["sim: anomalies of both detectors rank above normal sessions"] = all(
            r["scores_rank_anomalies_first"] for r in runs
        )
    # The target is the key model's: in the simulator its own flags count (both detectors
    # together are in the sim spread above).
    every = [r["fpr"] for b in ("deeplog", "hdfs100k") for r in rep.get(b, {}).get("runs", [])]
    every += [r["fpr_keys"] for r in rep.get("sim", {}).get("runs", [])]
    if every:
        passes["every run's key-model FPR <= 1.5 x target (all blocks)"] = (
            max(every) <= TARGETS["fpr_over_target"] * target
        )
    return {"spreads": s, "passes": passes}


def _fmt(sp: dict[str, float], pct: bool = False, digits: int = 4) -> str:
    if not sp:
        return "n/a"
    if pct:
        return f"{sp['mean']:.2%} [{sp['min']:.2%}, {sp['max']:.2%}]"
    return f"{sp['mean']:.{digits}f} [{sp['min']:.{digits}f}, {sp['max']:.{digits}f}]"


def print_report(rep: dict[str, Any]) -> None:
    print(machine_line(rep["machine"]))
    print(
        f"target false-positive rate {rep['target_fpr']:.2%}; seeds {rep['seeds']}; "
        f"run time {rep['seconds'] / 60:.1f} min"
    )
    dl = rep.get("deeplog")
    if dl:
        print()
        print(
            "DeepLog split: train on 80% of hdfs_train (3,884), test on the held-out 20% "
            "(971 normal, drawn per seed) and all 16,838 abnormal"
        )
        head = (
            f"{'form':<10} {'seed':>4} {'recall':>8} {'missed':>7} {'FP':>9} {'FPR':>7} "
            f"{'expected FPR [95%]':>26} {'rule c':>6} {'train s':>8}"
        )
        print(head)
        print("-" * len(head))
        for r in dl["runs"]:
            print(
                f"{r['form']:<10} {r['seed']:>4} {r['recall']:>8.4f} {r['missed']:>7,} "
                f"{r['fp']:>4}/{r['normal']:<4} {r['fpr']:>7.2%} "
                f"{r['expected_fpr']:>8.2%} [{r['fpr_low']:.2%}, {r['fpr_high']:.2%}] "
                f"{r['rule_context']!s:>6} {r['train_s']:>8.0f}"
            )
        for r in dl["paper"]:
            print(
                f"{'all/' + r.get('form', 'sequences'):<10} {r['seed']:>4} {r['recall']:>8.4f} {r['missed']:>7,} "
                f"{'':>9} {'':>7} {r['expected_fpr']:>8.2%} [{r['fpr_low']:.2%}, "
                f"{r['fpr_high']:.2%}] {r['rule_context']!s:>6} {r['train_s']:>8.0f}"
            )
        for a in dl["agreement"]:
            pairs = ", ".join(f"{k} {v:.4%}" for k, v in a["pairs"].items())
            print(
                f"seed {a['seed']}: same verdict in every form for {a['all_forms_agree']:.4%} "
                f"of sessions ({a['differ']} differ); {pairs}"
            )
        for r in dl["runs"]:
            if r.get("parse"):
                p = r["parse"]
                print(
                    f"raw seed {r['seed']}: parsed keys vs original, {p['pairs']} pairs, "
                    f"split {p['split'] or 'none'}, merged {p['merged'] or 'none'}"
                )
    hk = rep.get("hdfs100k")
    if hk:
        print()
        print(
            f"hdfs-100k time split: {hk['train_sessions']:,} normal sessions of the first 80% "
            f"train, {hk['test_sessions']:,} later sessions test"
        )
        for r in hk["runs"]:
            print(
                f"  seed {r['seed']}: FP {r['fp']}/{r['normal']} ({r['fpr']:.2%}), recall on "
                f"{r['distinct_anomalies']} anomalies unlike training {r['recall_distinct']:.3f}"
                f" (all {r['recall']:.3f}); expected {r['expected_fpr']:.2%} "
                f"[{r['fpr_low']:.2%}, {r['fpr_high']:.2%}], rule c {r['rule_context']}, "
                f"train {r['train_s']:.0f} s"
            )
    sm = rep.get("sim")
    if sm:
        print()
        print(
            "simulator: train seed 100+s (normal), test seed 200+s (default anomaly mix), "
            "both detectors"
        )
        for r in sm["runs"]:
            print(
                f"  seed {r['seed']}: FP {r['fp']}/{r['normal']} ({r['fpr']:.2%}; keys "
                f"{r['fp_keys']}, params {r['fp_params']}; key model alone "
                f"{r['fpr_keys']:.2%}), recall path {r['recall_path']:.3f} "
                f"(unlike training {r['recall_path_distinct']}), param {r['recall_param']}, "
                f"perf {r['recall_perf']}; anomalies ranked first: "
                f"{r['scores_rank_anomalies_first']}; expected {r['expected_fpr']:.2%}, "
                f"train {r['train_s']:.0f} s"
            )
    print()
    print("spread over runs: mean [min, max]")
    for name, figs in rep["summary"]["spreads"].items():
        if isinstance(figs, dict):
            parts = []
            for k, sp in figs.items():
                pct = k in ("fpr", "expected_fpr")
                parts.append(f"{k} {_fmt(sp, pct, 1 if k == 'train_s' else 4)}")
            print(f"  {name}: " + "; ".join(parts))
        else:
            print(f"  {name}: {figs:.3f}")
    print()
    for name, ok in rep["summary"]["passes"].items():
        print(f"{check(ok)}  {name}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (5)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds FIRST..FIRST+N-1 instead: draws and models no earlier run looked at",
    )
    p.add_argument("--quick", action="store_true", help="seeds 0 and 1, 1,500 simulated sessions")
    p.add_argument(
        "--blocks", nargs="+", default=["deeplog", "hdfs100k", "sim"],
        choices=["deeplog", "hdfs100k", "sim"],
    )  # fmt: skip
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--sim-sessions", type=int, default=3000)
    p.add_argument(
        "--target-fpr",
        type=float,
        default=KeyModelConfig().target_fpr,
        help="the automatic threshold's target (default: the library's)",
    )
    p.add_argument(
        "--no-paper",
        dest="paper",
        action="store_false",
        help="skip the models trained on all 4,855 hdfs_train sessions (recall only)",
    )
    p.add_argument(
        "--paper-form",
        choices=("raw", "sequences"),
        default="raw",
        help="the form of the models trained on all 4,855 sessions (raw: the issue's raw end "
        "to end case)",
    )
    p.add_argument(
        "--paper-only",
        action="store_true",
        help="DeepLog split: only the models trained on all 4,855 sessions",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    p.add_argument("--jobs", type=int, default=2, help="processes for the fold models")
    p.add_argument("--check-parse", action="store_true", help="raw: check the parsed keys (slower)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = min(args.seeds, 2)
        args.sim_sessions = min(args.sim_sessions, 1500)
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    for need in ("hdfs-deeplog/hdfs_train", "hdfs-100k/train.jsonl"):
        if not (args.data / need).is_file():
            print(f"robustness: error: {args.data / need} not found (--data)", file=sys.stderr)
            return 2
    pin_cores(args.cores)
    started = time.perf_counter()
    rep: dict[str, Any] = {
        "benchmark": "robustness",
        "machine": machine_info(),
        "target_fpr": args.target_fpr,
        "seeds": args.seed_list,
        "targets": TARGETS,
    }
    try:
        if "deeplog" in args.blocks:
            rep["deeplog"] = deeplog_block(args)
        if "hdfs100k" in args.blocks:
            rep["hdfs100k"] = hdfs100k_block(args)
        if "sim" in args.blocks:
            rep["sim"] = sim_block(args)
    except ChildFailed as exc:
        print(f"robustness: {exc}", file=sys.stderr)
        return 1
    rep["seconds"] = time.perf_counter() - started
    rep["summary"] = summarize(rep, rep["target_fpr"])
    rep["pass"] = all(rep["summary"]["passes"].values())
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    return 1 if args.strict and not rep["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
