"""``logwarden demo``: the main job on built-in data, end to end.

Simulate a normal-only training log and a mixed log with injected anomalies, read them
as a user's files would be read, parse them into templates and sessions, train DeepLog's
two detectors (the log-key model and the parameter-value models) on the normal log, detect
on the mixed one, and report precision, recall and F1 by anomaly kind and by detector, with
explained anomalies: an execution-path one and a performance one. The workflows mined at
training time are shown too: one as text, all of them drawn into an SVG file, and every
explained anomaly is diagnosed against its workflow (an HTML report beside the SVG).
Then an upgrade: a version-2 log flagged heavily by the model, the drift warning, feedback
on a few suggested sessions, and the same log detected again by the updated model.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from logwarden.detect import DeepLog, Verdict
from logwarden.evaluate import Report
from logwarden.io.ingest import read_raw_sessions
from logwarden.parsing import TemplateMiner
from logwarden.sessions import SessionConfig
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate


def run_demo(
    sessions: int = 1500,
    seed: int = 7,
    console: Console | None = None,
    out_dir: Path | None = None,
) -> int:
    """``out_dir``: where the workflow picture and the HTML report go (default: a
    ``logwarden-demo`` folder in the system's temporary directory)."""
    console = console or Console()
    out_dir = out_dir or Path(tempfile.gettempdir()) / "logwarden-demo"
    console.rule("[bold]logwarden demo")
    sess_cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    with tempfile.TemporaryDirectory(prefix="logwarden-demo-") as tmp:
        train_log, test_log = Path(tmp) / "normal.log", Path(tmp) / "mixed.log"
        t0 = time.perf_counter()
        normal = simulate(SimConfig(seed=seed, sessions=sessions, normal_only=True))
        normal.write(train_log)
        mixed = simulate(SimConfig(seed=seed + 1, sessions=sessions))
        mixed.write(test_log)
        kinds = Counter(s.kind for s in mixed.sessions)
        console.print(
            f"Simulated a normal log ({len(normal.lines):,} lines, {len(normal.sessions):,} sessions) "
            f"and a mixed log ({len(mixed.lines):,} lines: "
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + f")  [dim]{time.perf_counter() - t0:.1f} s[/]"
        )

        t0 = time.perf_counter()
        train = read_raw_sessions([str(train_log)], SIM_FORMAT, sess_cfg)
        console.print(
            f"Parsed the normal log into [bold]{len(train.miner)}[/] templates and "
            f"[bold]{len(train.ids):,}[/] sessions  [dim]{time.perf_counter() - t0:.1f} s[/]"
        )
        table = Table(title="Most frequent templates (log keys)")
        table.add_column("key", justify="right")
        table.add_column("count", justify="right")
        table.add_column("template")
        for t in sorted(train.miner.templates_.values(), key=lambda t: -t.count)[:12]:
            table.add_row(f"E{t.id}", f"{t.count:,}", escape(t.text))
        console.print(table)

        model = DeepLog(seed=seed)
        with Progress(
            TextColumn("training the key model"),
            BarColumn(),
            TextColumn("epoch {task.completed}"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("train", total=model.epochs, loss=float("nan"))
            model.fit(
                train.keys,
                train.templates,
                progress=lambda e, _t, loss: bar.update(task, completed=e, loss=loss),
                events=train.sessions,
            )
            bar.update(task, total=model.train_info_["epochs"])
        th = model.threshold_
        console.print(
            f"Trained on {model.train_info_['sessions']:,} sessions "
            f"({model.train_info_['distinct_windows']:,} distinct windows) in "
            f"{model.train_info_['seconds']:.1f} s; threshold: probability < {th.tau:.2g}, "
            f"expected false positives {th.expected_fpr:.2%} (95% interval "
            f"{th.fpr_low:.2%} to {th.fpr_high:.2%}) at a {th.target_fpr:.1%} target, "
            f"from sessions scored by models that did not train on them"
        )
        pinfo = model.train_info_["params"]
        console.print(
            f"Trained {pinfo['units']} parameter models (per key and predecessor: "
            f"{pinfo['lstm']} LSTM, {pinfo['robust']} robust statistics for rare ones) on "
            f"{pinfo['entries']:,} entries' elapsed times and numeric parameters in "
            f"{pinfo['seconds']:.1f} s; {pinfo['confidence']:.1%} interval"
        )
        _show_workflows(model, console, out_dir)

        t0 = time.perf_counter()
        test = read_raw_sessions(
            [str(test_log)], SIM_FORMAT, sess_cfg, miner=train.miner, learn=False
        )
        model.templates_.update(
            {k: v for k, v in test.templates.items() if k not in model.templates_}
        )
        verdicts = model.verdicts(test.keys, test.ids, test.lines, events=test.sessions)
        truth = {s.session: s for s in mixed.sessions}
        labels = [truth[sid].label if sid in truth else None for sid in test.ids]
        report = Report.from_verdicts(verdicts, labels, model.window, keys=test.keys)
        c = report.confusion
        console.print(
            f"Detected on {len(verdicts):,} sessions in {time.perf_counter() - t0:.1f} s: "
            f"[bold]precision {c.precision:.3f}  recall {c.recall:.3f}  F1 {c.f1:.3f}[/] "
            f"(tp {c.tp}, fp {c.fp}, fn {c.fn}, tn {c.tn})"
        )
        by_kind = Table(title="Recall by injected anomaly kind")
        by_kind.add_column("kind")
        by_kind.add_column("sessions", justify="right")
        by_kind.add_column("detected", justify="right")
        flagged = {v.session for v in verdicts if v.anomalous}
        for kind in ("path", "param", "perf"):
            ids = [sid for sid in test.ids if sid in truth and truth[sid].kind == kind]
            hit = sum(1 for sid in ids if sid in flagged)
            by_kind.add_row(kind, str(len(ids)), f"{hit} ({hit / max(len(ids), 1):.0%})")
        console.print(by_kind)
        by_det = Table(title="Flagged sessions by detector")
        by_det.add_column("detector")
        by_det.add_column("true positives", justify="right")
        by_det.add_column("false positives", justify="right")
        for name, d in report.by_detector.items():
            by_det.add_row(name, str(d.tp), str(d.fp))
        console.print(by_det)
        # One explained anomaly of each detector: an execution path, then a slow step.
        for detector, reason in (("keys", None), ("params", "performance")):
            for v in verdicts:
                t = truth.get(v.session)
                if not (v.anomalous and t is not None and t.label and v.detector == detector):
                    continue
                if reason is not None and v.reason != reason:
                    continue
                console.rule(f"explained anomaly ({t.kind}: {escape(t.detail)})", style="dim")
                console.print(escape(v.describe()))
                break
        _write_report(verdicts, model, console, out_dir)
        upgrade_demo(model, train.miner, Path(tmp), sessions, seed, console)
    return 0


def _show_workflows(model: DeepLog, console: Console, out_dir: Path) -> None:
    """The mined workflows: the largest as text, all of them drawn into an SVG."""
    from logwarden.workflow.render import RenderError, to_svg, workflow_text, workflows_dot

    workflows = model.workflows_
    if workflows is None or not len(workflows):
        return
    info = model.train_info_["workflows"]
    console.print(
        f"Mined {len(workflows)} workflows (one per task type) from the normal sessions in "
        f"{info['seconds']:.2f} s; the largest:"
    )
    console.print(escape(workflow_text(workflows[0], model.templates_, width=70)))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        svg = out_dir / "workflows.svg"
        svg.write_text(to_svg(workflows_dot(workflows, model.templates_)), encoding="utf-8")
        console.print(f"All workflows drawn: [bold]{svg}[/]")
    except (RenderError, OSError) as exc:
        console.print(f"[yellow]No workflow picture: {escape(str(exc))}[/]")


def _write_report(verdicts: list, model: DeepLog, console: Console, out_dir: Path) -> None:
    from logwarden.detect import REASONS
    from logwarden.workflow.render import html_report

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        page = html_report(verdicts, model.workflows_, model.templates_, REASONS, limit=20)
        report = out_dir / "report.html"
        report.write_text(page, encoding="utf-8")
        console.print(f"HTML report (anomalies with their workflow pictures): [bold]{report}[/]")
    except OSError as exc:
        console.print(f"[yellow]No HTML report: {escape(str(exc))}[/]")


def serve_demo(
    sessions: int = 1500,
    seed: int = 7,
    port: int = 8080,
    rate: float = 200.0,
    workdir: str | None = None,
    console: Console | None = None,
) -> int:
    """Train on a simulated normal log, then serve live detection on simulated traffic
    (``rate`` lines/s, anomalies included) so that the dashboard has something to show."""
    import threading

    from logwarden.detect import Detector, InputSpec
    from logwarden.service.run import run_service
    from logwarden.service.server import ServiceConfig
    from logwarden.sim import iter_lines

    console = console or Console()
    root = Path(workdir or tempfile.mkdtemp(prefix="logwarden-serve-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]logwarden demo --serve")
    model_dir = root / "model"
    if not (model_dir / "manifest.json").exists():
        normal = simulate(SimConfig(seed=seed, sessions=sessions, normal_only=True))
        normal.write(root / "normal.log")
        console.print(f"Training on a simulated normal log ({len(normal.lines):,} lines)...")
        det = Detector(DeepLog(seed=seed), InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX))
        det.fit(det.read([str(root / "normal.log")], learn=True))
        det.save(model_dir)
    stop = threading.Event()

    def feed(service: object, url: str) -> None:
        console.print(
            f"[bold]Dashboard: {url}/[/]  (simulated traffic, {rate:g} lines/s; Ctrl-C stops)\n"
            f"Also: curl {url}/api/v1/anomalies, {url}/metrics; store and model in {root}"
        )

        def run() -> None:
            lines = iter_lines(SimConfig(seed=seed + 1, sessions=10_000_000, anomaly_rate=0.05))
            batch = max(1, int(rate / 5))
            while not stop.wait(batch / rate):
                service.append([next(lines) for _ in range(batch)])  # type: ignore[attr-defined]

        threading.Thread(target=run, daemon=True, name="demo-traffic").start()

    config = ServiceConfig(store=str(root / "verdicts.db"), model=str(model_dir), port=port,
                           session_timeout=300.0)  # fmt: skip
    try:
        return run_service(config, quiet=True, on_start=feed)
    finally:
        stop.set()


def upgrade_demo(
    model: DeepLog, miner: TemplateMiner, tmp: Path, sessions: int, seed: int, console: Console
) -> None:
    """Version 2 of the system meets the version-1 model: heavy flagging, a drift warning,
    feedback on a few suggested sessions (the labels stand in for the operator), and the
    same log detected again with the updated model."""
    from logwarden.detect import Detector, InputSpec
    from logwarden.online import DriftConfig, DriftTracker, Feedback
    from logwarden.online.drift import track_batch

    console.rule("[bold]an upgrade: version 2 of the system, feedback, online update")
    v2 = simulate(SimConfig(seed=seed + 2, sessions=sessions, version=2))
    v2.write(tmp / "v2.log")
    truth = {s.session: s for s in v2.sessions}
    det = Detector(model, InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX), miner)

    def detect(what: str) -> tuple[Any, list[Verdict]]:
        data = det.read([str(tmp / "v2.log")])
        verdicts = det.verdicts(data)
        normal = [v for v in verdicts if truth[v.session].label == 0]
        anomalies = [v for v in verdicts if truth[v.session].label == 1]
        fp, tp = sum(v.anomalous for v in normal), sum(v.anomalous for v in anomalies)
        console.print(
            f"{what}: [bold]{sum(v.anomalous for v in verdicts):,}[/] of {len(verdicts):,} "
            f"sessions flagged: {fp:,} of {len(normal):,} normal ones ({fp / len(normal):.1%}), "
            f"{tp} of {len(anomalies)} anomalies"
        )
        return data, verdicts

    data, verdicts = detect(
        "The version-1 model on a version-2 log (a new VM step, a reworded message)"
    )
    tracker = DriftTracker(
        model.drift_baseline_,
        model.keys_,
        {**model.templates_, **data.templates},
        DriftConfig(context=model.window),
    )
    warnings = track_batch(tracker, verdicts, data.keys, data.events)
    if not warnings:
        console.print("No drift warning.")
        return
    suggested = tracker.suggestions()
    console.print(escape(warnings[0].describe(suggested)), style="yellow")
    normal = [s for s in suggested if truth[s].label == 0]
    confirmed = [v.session for v in verdicts if v.anomalous and truth[v.session].label][:3]
    feedback = [Feedback(s, "normal", who="demo", why="checked after the upgrade") for s in normal]
    feedback += [Feedback(s, "confirmed", who="demo") for s in confirmed]
    t0 = time.perf_counter()
    det.partial_fit(data, feedback)
    info = model.update_info_
    rounds = info["attempts"][-1]["rounds"]
    console.print(
        f"Feedback: {len(normal)} suggested sessions marked normal, {len(confirmed)} flagged "
        f"anomalies confirmed. Update in {time.perf_counter() - t0:.1f} s: new keys "
        + ", ".join(
            f"{k['key']} ({escape(k['template'] or '')}"
            + (f", rewording {k['rewords']}" if k["rewords"] else "")
            + ")"
            for k in info["new_keys"]
        )
        + f"; {sum(r['steps'] for r in rounds)} fine-tuning steps on their windows mixed with "
        f"{info['replay_rows']:,} replayed ones; threshold {info['threshold'][0]:.2g} -> "
        f"{info['threshold'][1]:.2g}; confirmed anomalies still flagged: "
        f"{info['confirmed_flagged'][1]} of {len(confirmed)} (model version {model.lineage_.version})"
    )
    detect("The updated model on the same log")
