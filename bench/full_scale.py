"""The whole HDFS log, raw lines to verdicts: time, CPU time and peak memory at full size.

The DeepLog split rendered as one raw, interleaved HDFS log of the size of the real data
set (issue 15): 558,223 normal sessions drawn with replacement from ``hdfs_train`` and all
16,838 of ``hdfs_test_abnormal``, in a random order, 575,061 sessions, about 11.2M lines
and 1.6 GB (``_hdfs_raw.render_stream``: sessions start as Poisson arrivals over the real
log's 38.7 hours, their steps spaced as ``render_sessions`` spaces them). The 4,855
``hdfs_train`` sessions are rendered as a training log of their own, and a label CSV
(``BlockId,Label``) goes with the test log. Both are written once into a cache folder
(``--cache``, default ``bench/out/full_scale``, git-ignored) and reused when present.

Then, as child processes (``logwarden train`` and ``logwarden eval --jsonl``), each
configuration in turn:

* ``1 process``: ``--workers 1``, every stage in the command's own process;
* ``all cores``: the default (parser matching in worker processes, one per usable core);
* ``ray``: ``--engine ray`` when the CLI has that option, otherwise skipped with the reason.

Per run: wall time (launch to exit), CPU time (user + system of the command and every
process it waited for), peak memory as the largest single process (``ru_maxrss``) and as
the largest sum over the command's process tree (proportional set size, ``/proc`` polled
every ``SAMPLE_S`` s: pages the forked workers share are split between them, not counted
twice), the CPU time that polling took (it shares the machine with the command: at 0.1 s
it cost the two-worker run 11 s of its 83 s at full size), and the machine's load average
before and after (the machine may be shared). The verdict files of all runs must be identical, and
the trained bundles too (weights and parser). Accuracy: recall, false positives and the
detections by reason, from ``eval``'s report.

``--lines N`` renders a smaller log of about N lines (the same rates, fewer sessions) for
iterating; the cache keeps one folder per size.

    python bench/full_scale.py [--lines 1000000] [--runs single all] [--json] [--strict]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _harness import (
    BENCH_DIR,
    DEFAULT_DATA,
    WRAPPER,
    ChildFailed,
    check,
    logwarden_command,
    machine_info,
    machine_line,
)
from _hdfs_raw import HDFS_FORMAT, block_id, load_templates, render_stream

FULL_NORMAL = 558_223
FULL_ABNORMAL = 16_838
FULL_LINES = 11_220_799  # lines of the full-size log (issue 15)
SPAN_S = 38.7 * 3600  # the real HDFS_v1 log's span
TARGETS = {"eval_s": 60.0, "eval_peak_mb": 2048.0}
RUNS = ("single", "all", "ray")


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_mb: float  # the largest single process
    tree_peak_mb: float  # the largest sum over the process tree (PSS: shared pages split)
    load_before: float
    load_after: float
    stdout: str
    stderr: str
    sampler_cpu_s: float = 0.0  # CPU time this script spent polling the tree's memory


# Memory polling interval: each poll reads every process's /proc stat and the tree's
# smaps_rollup; at 0.1 s it took a share of a 2-core machine the timed command then lacked.
SAMPLE_S = 1.0


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(name))
    return out


def _tree_pss_kib(root: int) -> int:
    kids = _children()
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        # PSS: pages shared by forked workers are split between them, not counted twice.
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def run_measured(cmd: list[str], workdir: Path) -> Measured:
    """Run ``cmd`` to completion and measure it (see the module docstring)."""
    measured = workdir / "child.rusage"
    load_before = os.getloadavg()[0]
    with (workdir / "child.stdout").open("wb") as out, (workdir / "child.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", WRAPPER, str(measured), *cmd],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        peak = 0
        stop = threading.Event()
        polling = 0.0

        def poll() -> None:
            nonlocal peak, polling
            while not stop.wait(SAMPLE_S):
                started = time.thread_time()
                peak = max(peak, _tree_pss_kib(proc.pid))
                polling += time.thread_time() - started

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        proc.wait()
        stop.set()
        poller.join()
    stdout = (workdir / "child.stdout").read_text(encoding="utf-8", errors="replace")
    stderr = (workdir / "child.stderr").read_text(encoding="utf-8", errors="replace")
    try:
        wall, maxrss, code, cpu = measured.read_text().split()
    except (OSError, ValueError):
        raise ChildFailed(f"could not measure {' '.join(cmd)}:\n{stderr.strip()}") from None
    measured.unlink()
    if int(code) != 0:
        raise ChildFailed(f"{' '.join(cmd)} exited {code}:\n{stderr.strip()}")
    return Measured(
        float(wall),
        float(cpu),
        int(maxrss) / 1024,
        peak / 1024,
        load_before,
        os.getloadavg()[0],
        stdout,
        stderr,
        round(polling, 2),
    )


# --- the log --------------------------------------------------------------------------------


def _read_sequences(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as fh:
        return [line.split() for line in fh if line.strip()]


def render(data: Path, cache: Path, lines: int | None, seed: int) -> dict[str, Any]:
    """Write train.log, test.log and labels.csv into ``cache`` unless they are there."""
    done = cache / "rendered.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    cache.mkdir(parents=True, exist_ok=True)
    src = data / "hdfs-deeplog"
    templates = load_templates(src / "templates.csv")
    train = _read_sequences(src / "hdfs_train")
    abnormal = _read_sequences(src / "hdfs_test_abnormal")
    scale = 1.0 if lines is None else min(1.0, lines / FULL_LINES)
    n_normal = round(FULL_NORMAL * scale)
    n_abnormal = round(FULL_ABNORMAL * scale)
    rng = random.Random(seed)
    used: set[str] = set()
    # Normal sessions drawn with replacement, all the abnormal ones (a sample of them for
    # a smaller log), in a random order; labels by block id.
    picked = [(0, rng.choice(train)) for _ in range(n_normal)]
    picked += [(1, keys) for keys in rng.sample(abnormal, n_abnormal)]
    rng.shuffle(picked)
    sessions = [(block_id(rng, used), keys) for _, keys in picked]
    started = time.perf_counter()
    print(f"rendering {len(sessions):,} sessions into {cache} ...", file=sys.stderr, flush=True)
    rate = (FULL_NORMAL + FULL_ABNORMAL) / SPAN_S
    n_lines = _write(cache / "test.log", render_stream(sessions, templates, seed + 1, rate))
    with (cache / "labels.csv").open("w", encoding="utf-8") as fh:
        fh.write("BlockId,Label\n")
        for (label, _), (block, _) in zip(picked, sessions, strict=True):
            fh.write(f"{block},{'Anomaly' if label else 'Normal'}\n")
    train_sessions = [(block_id(rng, used), keys) for keys in train]
    n_train = _write(cache / "train.log", render_stream(train_sessions, templates, seed + 2, rate))
    info = {
        "sessions": len(sessions),
        "normal": n_normal,
        "abnormal": n_abnormal,
        "lines": n_lines,
        "bytes": (cache / "test.log").stat().st_size,
        "train_sessions": len(train_sessions),
        "train_lines": n_train,
        "render_s": round(time.perf_counter() - started, 1),
        "seed": seed,
    }
    done.write_text(json.dumps(info), encoding="utf-8")
    return info


def _write(path: Path, lines: Any) -> int:
    n = 0
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8") as fh:
        buf: list[str] = []
        for line in lines:
            buf.append(line)
            if len(buf) >= 100_000:
                fh.write("\n".join(buf) + "\n")
                n += len(buf)
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
            n += len(buf)
    tmp.replace(path)
    return n


# --- the runs -------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _model_digest(model: Path) -> str:
    """The bundle's content without its timing and provenance fields."""
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    h = hashlib.sha256()
    h.update(json.dumps(manifest.get("parser"), sort_keys=True).encode())
    h.update(json.dumps(manifest.get("vocabulary"), sort_keys=True).encode())
    h.update(json.dumps(manifest.get("threshold"), sort_keys=True).encode())
    for f in sorted(model.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def _engine_ray_available(lw: list[str]) -> str | None:
    """None when the CLI takes ``--engine ray``, else why the row is skipped."""
    out = subprocess.run([*lw, "eval", "--help"], capture_output=True, text=True, check=False)
    if "--engine" not in out.stdout:
        return "this logwarden has no --engine option (issue 15 part 3)"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install logwarden[ray])"
    return None


def run_all(args: argparse.Namespace, cache: Path, info: dict[str, Any]) -> dict[str, Any]:
    lw = logwarden_command()
    common = ["--format", HDFS_FORMAT, "--session", "hdfs"]
    flags = {"single": ["--workers", "1"], "all": [], "ray": ["--engine", "ray"]}
    # train has no Ray engine: the ray run's model is trained as the all-cores one.
    train_flags = {**flags, "ray": []}
    results: dict[str, Any] = {"runs": {}}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="full_scale_") as tmp:
        d = Path(tmp)
        for name in args.runs:
            if name == "ray" and (why := _engine_ray_available(lw)) is not None:
                skipped[name] = why
                print(f"ray: skipped: {why}", file=sys.stderr, flush=True)
                continue
            model = d / f"model_{name}"
            trained = None
            if args.model is not None:  # a bundle trained before: eval only
                model = args.model
            else:
                print(f"{name}: train ...", file=sys.stderr, flush=True)
                trained = run_measured(
                    [*lw, "train", str(cache / "train.log"), *common, "--out", str(model),
                     "--seed", str(args.seed), "--device", "cpu", "-q", *train_flags[name],
                     *shlex.split(args.train_options)],
                    d,
                )  # fmt: skip
            verdicts = d / f"verdicts_{name}.jsonl"
            print(f"{name}: eval ...", file=sys.stderr, flush=True)
            evaluated = run_measured(
                [*lw, "eval", str(cache / "test.log"), "--model", str(model),
                 "--labels", str(cache / "labels.csv"), "--json", "--jsonl", str(verdicts),
                 *flags[name]],
                d,
            )  # fmt: skip
            report = json.loads(evaluated.stdout.strip().splitlines()[-1])
            results["runs"][name] = {
                "train": None
                if trained is None
                else {k: v for k, v in asdict(trained).items() if k not in ("stdout", "stderr")},
                "eval": {
                    k: v for k, v in asdict(evaluated).items() if k not in ("stdout", "stderr")
                },
                "eval_stderr": evaluated.stderr.strip().splitlines()[-3:],
                "report": report,
                "verdicts_sha256": _digest(verdicts),
                "model_sha256": _model_digest(model),
            }
            print(
                f"{name}: "
                + (f"train {trained.wall_s:.1f} s, " if trained is not None else "")
                + f"eval {evaluated.wall_s:.1f} s ({evaluated.cpu_s:.1f} s CPU, peak "
                f"{evaluated.peak_mb:.0f} MB, tree {evaluated.tree_peak_mb:.0f} MB; memory polling "
                f"{evaluated.sampler_cpu_s:.1f} s CPU)",
                file=sys.stderr,
                flush=True,
            )
    runs = results["runs"]
    results["skipped"] = skipped
    results["same_verdicts"] = len({r["verdicts_sha256"] for r in runs.values()}) <= 1
    results["same_model"] = (
        None if args.model is not None else len({r["model_sha256"] for r in runs.values()}) <= 1
    )
    return results


def _accuracy(report: dict[str, Any]) -> dict[str, Any]:
    reasons = report["breakdown"]["reason"]
    return {
        "recall": report["recall"],
        "precision": report["precision"],
        "tp": report["tp"],
        "fp": report["fp"],
        "fn": report["fn"],
        "by_reason": {k: v for k, v in reasons.items() if v["tp"] or v["fp"]},
    }


def print_table(info: dict[str, Any], results: dict[str, Any], machine: str) -> bool:
    print(machine)
    print(
        f"log: {info['lines']:,} lines, {info['bytes'] / 2**30:.2f} GiB, {info['sessions']:,} "
        f"sessions ({info['abnormal']:,} abnormal); training log {info['train_lines']:,} lines, "
        f"{info['train_sessions']:,} sessions"
    )
    head = f"{'run':<10} {'step':<6} {'wall s':>8} {'CPU s':>8} {'lines/s':>10} {'peak MB':>9} {'tree MB':>9} {'load':>11}"
    print(head)
    ok = True
    for name, r in results["runs"].items():
        for step in ("train", "eval"):
            m = r[step]
            if m is None:
                continue
            n = info["train_lines"] if step == "train" else info["lines"]
            print(
                f"{name:<10} {step:<6} {m['wall_s']:>8.1f} {m['cpu_s']:>8.1f} "
                f"{n / m['wall_s']:>10,.0f} {m['peak_mb']:>9,.0f} {m['tree_peak_mb']:>9,.0f} "
                f"{m['load_before']:>5.2f}/{m['load_after']:<5.2f}"
            )
    for name, why in results["skipped"].items():
        print(f"{name:<10} skipped: {why}")
    full = info["lines"] >= 0.99 * FULL_LINES
    if "all" in results["runs"]:
        m = results["runs"]["all"]["eval"]
        scale = FULL_LINES / info["lines"]
        wall = m["wall_s"] if full else m["wall_s"] * scale
        what = "" if full else f" (extrapolated x{scale:.1f} from {info['lines']:,} lines)"
        t_ok = wall <= TARGETS["eval_s"]
        m_ok = m["tree_peak_mb"] <= TARGETS["eval_peak_mb"]
        ok = ok and t_ok and m_ok
        print(
            f"eval, all cores, full scale: {wall:.0f} s{what} (target <= {TARGETS['eval_s']:.0f} s) {check(t_ok)}"
        )
        print(f"eval, all cores, peak memory (tree): {m['tree_peak_mb']:,.0f} MB (target <= {TARGETS['eval_peak_mb']:,.0f} MB) {check(m_ok)}")  # fmt: skip
    if len(results["runs"]) > 1:
        print(f"verdicts identical across runs: {check(results['same_verdicts'])}")
        ok = ok and results["same_verdicts"]
        if results["same_model"] is not None:
            print(f"trained models identical across runs: {check(results['same_model'])}")
            ok = ok and results["same_model"]
    for name, r in results["runs"].items():
        acc = _accuracy(r["report"])
        reasons = ", ".join(
            f"{k} {v['tp']:,} TP / {v['fp']:,} FP" for k, v in acc["by_reason"].items()
        )
        print(
            f"{name}: recall {acc['recall']:.4f} ({acc['tp']:,} of {acc['tp'] + acc['fn']:,}), "
            f"{acc['fp']:,} false positives of {info['normal']:,} normal sessions; {reasons}"
        )
        for line in r["eval_stderr"]:
            print(f"  {line}")
    return ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument(
        "--cache",
        type=Path,
        default=BENCH_DIR / "out" / "full_scale",
        help="where the rendered logs are kept (one folder per size)",
    )
    p.add_argument("--lines", type=int, default=None, help="a smaller log of about N lines")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model", type=Path, default=None, help="a bundle trained before: skip train, eval only"
    )
    p.add_argument(
        "--train-options",
        default="",
        help="more options for every train, as one string (e.g. '--epochs 2 --hidden 8' "
        "for a quick check of the bench itself)",
    )
    p.add_argument("--render-only", action="store_true", help="render (or find) the logs, stop")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lines is not None and args.lines < 1000:
        print("full_scale.py: --lines must be at least 1000", file=sys.stderr)
        return 2
    if not (args.data / "hdfs-deeplog" / "hdfs_train").exists():
        print(f"full_scale.py: {args.data}/hdfs-deeplog not found (--data DIR)", file=sys.stderr)
        return 2
    size = "full" if args.lines is None else str(args.lines)
    cache = args.cache / f"{size}_seed{args.seed}"
    info = render(args.data, cache, args.lines, args.seed)
    if args.render_only:
        print(json.dumps(info) if args.json else f"rendered: {info}")
        return 0
    machine = machine_info()
    try:
        results = run_all(args, cache, info)
    except ChildFailed as exc:
        print(f"full_scale.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"machine": machine, "log": info, **results}))
        ok = True
    else:
        ok = print_table(info, results, machine_line(machine))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
