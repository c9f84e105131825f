"""``logwarden train``: fit a Detector (input settings, parser, DeepLog) on normal sessions."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import Counter
from typing import Any

from logwarden.cli.common import (
    RuntimeFailure,
    UsageError,
    check_out_dir,
    stderr_console,
    warn_unread_times,
)
from logwarden.cli.inputs import add_input_args, apply_input_args, read_inputs
from logwarden.cli.lines import add_line_label_args, train_supervised
from logwarden.models import KeyModelConfig


def register(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("train", help="train the DeepLog model on normal sessions")
    add_input_args(st)
    st.add_argument("--out", required=True, metavar="MODEL", help="model bundle directory to write")
    st.add_argument("--force", action="store_true", help="replace a model already in --out")
    st.add_argument("--include-anomalous", action="store_true", help="jsonl: train on all sessions")
    st.add_argument("--window-size", type=int, default=10, help="history length h (10)")
    st.add_argument(
        "--top-g", type=int, default=None, help="fixed top-g rule (default: automatic threshold)"
    )
    st.add_argument(
        "--target-fpr",
        type=float,
        default=KeyModelConfig().target_fpr,
        help="automatic threshold's false-positive rate",
    )
    st.add_argument("--layers", type=int, default=None, help="LSTM layers (2; supervised: 1)")
    st.add_argument("--hidden", type=int, default=None, help="LSTM units (64; supervised: 32)")
    st.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="upper bound (1000; supervised: 100); training stops earlier",
    )
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    st.add_argument(
        "--no-params", action="store_true", help="skip the parameter (value and timing) models"
    )
    st.add_argument(
        "--confidence",
        type=float,
        default=0.999,
        help="parameter models' two-sided interval, in [0.5, 1) (default 0.999; the paper "
        "reports 0.98, 0.99 and 0.999)",
    )
    st.add_argument(
        "--no-workflows", action="store_true", help="skip mining the workflows (diagnosis)"
    )
    st.add_argument(
        "--supervised",
        action="store_true",
        help="the supervised model for logs without session ids: learns anomalous windows"
        " from --line-labels",
    )
    add_line_label_args(st)
    st.add_argument(
        "--pos-weight",
        type=float,
        default=None,
        help="supervised: loss weight of anomalous windows (default: chosen on validation)",
    )
    st.add_argument(
        "--context",
        type=int,
        default=None,
        help="supervised: entries the LSTM reads for each window, >= --window-size (default:"
        " the window): reaches telling lines that left the window when many sessions"
        " interleave, at about 2x the detection time for 30; with --span the entries read"
        " before each span (>= 0)",
    )
    st.add_argument(
        "--target",
        choices=["window", "line"],
        default=None,
        help="supervised: what the network learns per entry: whether its window holds an"
        " anomalous line (window, the default) or whether its own line is anomalous (line: a"
        " window then scores the highest of its lines')",
    )
    st.add_argument(
        "--ensemble",
        type=int,
        default=None,
        help="supervised: networks to train (seeds --seed, --seed + 1, ...) whose mean"
        " probability judges each window (default 1): steadier figures when few anomalies"
        " are labelled, at N times the training and detection time",
    )
    st.add_argument(
        "--span",
        type=int,
        default=None,
        help="supervised: carry the LSTM's state along the log in spans of N entries, each"
        " read after the --context entries before it, instead of reading a window per entry"
        " (default 0: windows): context for every line at (context + N) / N steps a line",
    )
    st.add_argument(
        "--folds",
        type=int,
        default=5,
        help="cross-fitting folds for the threshold and the false-positive estimate (5; "
        "0 with --top-g: none)",
    )
    st.add_argument(
        "--no-fold-check",
        action="store_true",
        help="the probability cut alone, without the fold models' confirmation (a smaller "
        "bundle, faster detection of flagged sessions)",
    )
    st.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="processes training the calibration's fold models (0: one per usable core)",
    )
    st.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    st.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from logwarden.detect import DeepLog
    from logwarden.detect.detector import (
        Detector,
        cut_off_at_end,
        cut_off_at_start,
        idle_timeout_from,
    )

    check_out_dir(args.out, args.force)
    if args.seed < 0:  # torch refuses it, after the whole input was read
        raise UsageError("--seed must be >= 0")
    if args.supervised:
        return train_supervised(args)
    supervised_only = (args.pos_weight, args.context, args.target, args.ensemble, args.span)
    if args.line_labels or any(v is not None for v in supervised_only):
        raise UsageError(
            "--line-labels, --pos-weight, --context, --target, --ensemble and --span go with"
            " --supervised"
        )
    if args.jobs < 0:
        raise UsageError("--jobs must be >= 0")
    model = DeepLog(
        window=args.window_size,
        top_g=args.top_g,
        layers=2 if args.layers is None else args.layers,
        hidden=64 if args.hidden is None else args.hidden,
        epochs=1000 if args.epochs is None else args.epochs,
        seed=args.seed,
        target_fpr=args.target_fpr,
        device=args.device,
        param_models=not args.no_params,
        confidence=args.confidence,
        workflows=not args.no_workflows,
        folds=args.folds,
        fold_check=not args.no_fold_check,
        # --workers 1: one process for everything, the fold models too.
        n_jobs=args.jobs if args.jobs > 0 else (1 if args.workers == 1 else _usable_cores()),
    )
    # Validate the hyperparameters before any work (a ConfigError names the flag, see main).
    model.key_config()
    model.param_config()
    detector = Detector(model)
    apply_input_args(detector, args)
    # An idle timeout given here splits the training sessions as detection will.
    split = detector.input.idle_timeout if args.idle_timeout else None
    data = read_inputs(detector, args, learn=True, idle_timeout=split)
    if not data.keys:
        raise RuntimeFailure("no training session (jsonl input trains on label-0 sessions only)")
    spec = detector.input
    if spec.input_format == "raw":
        warn_unread_times(data.stats, idle_timeout=spec.window is None)
    if (
        args.idle_timeout is None
        and spec.input_format == "raw"
        and spec.window is None
        and data.events is not None
    ):
        # When detection may call a session complete: learnt from the training sessions'
        # own gaps, kept with the model (detect/eval --idle-timeout overrides it).
        detector.input = dataclasses.replace(spec, idle_timeout=idle_timeout_from(data.events))
    # Runs the end or the start of the input cut are not learnt as complete (see
    # cut_off_at_end, cut_off_at_start).
    cut_end: list[int] = []
    cut_start: list[int] = []
    if spec.input_format == "raw" and spec.window is None:
        gap = idle_timeout_from(data.events, factor=1.0)
        cut_end, cut_start = cut_off_at_end(data, gap), cut_off_at_start(data, gap)
    cut = sorted({*cut_end, *cut_start})
    if len(cut) == len(data.keys):
        cut = cut_end = cut_start = []  # nothing would be left: learn them as they are
    n_rows = sum(len(k) + 1 for k in data.keys)
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn()]  # fmt: skip
    started = time.perf_counter()
    with Progress(*columns, console=stderr_console(), transient=False, disable=args.quiet) as bar:
        task = bar.add_task("training", total=model.epochs, step="", detail="")
        folds: list[Any] = []

        def progress(epoch: int, total: int, loss: float) -> None:
            rate = n_rows * epoch / max(time.perf_counter() - started, 1e-9)
            detail = f"loss {loss:.4f} {rate:,.0f} windows/s"
            bar.update(task, completed=epoch, step=f"epoch {epoch}/{total}", detail=detail)

        def fold_progress(k: int, total: int) -> None:
            # The threshold's calibration: fold models trained as the model itself was.
            if not folds:
                done = bar.tasks[task].completed
                bar.update(task, total=done, step=f"epoch {done:.0f}/{done:.0f}")
                folds.append(bar.add_task("calibrating", total=total, step="", detail=""))
            bar.update(folds[0], completed=k, step=f"fold model {min(k + 1, total)}/{total}")

        try:
            detector.fit(data, progress=progress, fold_progress=fold_progress, unfinished=cut)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        bar.update(task, total=model.train_info_["epochs"])
    try:
        detector.save(args.out, replace=args.force)
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot write the model to {args.out}: {exc.strerror or exc}"
        ) from None
    _summary(args, model, len(data.keys) - len(cut))
    for sessions, at_end in ((cut_start, False), (cut_end, True)):
        if sessions:
            print(f"  {cut_message(data.keys, sessions, at_end)}", file=sys.stderr)
    timeout = detector.input.idle_timeout
    if detector.input.input_format == "raw" and detector.input.window is None:
        print(
            "  sessions complete after "
            + (
                f"{duration_text(timeout)} of log time without a line "
                "(detect, eval: --idle-timeout)"
                if timeout is not None
                else "the end of input only (--idle-timeout 0)"
                if args.idle_timeout == 0
                else "the end of input only (no timed gaps to learn an idle timeout from)"
            ),
            file=sys.stderr,
        )
    return 0


def duration_text(seconds: float) -> str:
    """Seconds as a person reads them: "4,320,200 s (50 days)", not "4.3202e+06 s"."""
    text = f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.3g} s"
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= 2 * size:
            return f"{text} ({seconds / size:,.0f} {unit})"
    return text


def cut_message(keys: Any, cut: list[int], at_end: bool) -> str:
    """What ``train`` says of the sessions the end (``at_end``) or the start of its input
    cut (``cut``: indices into ``keys``)."""
    edge = -1 if at_end else 0
    found = Counter(keys[i][edge] for i in cut)
    where = ", ".join(f"{k} x{n}" for k, n in sorted(found.items()))
    s = "" if len(cut) == 1 else "s"
    if at_end:
        what = (
            "still going when the input ended (a line within the longest gap of a training "
            "run of its end), each ending with a step no run over well before the end ends "
            "with"
        )
        why = "a run the end of the file cut off would teach them that runs may end there"
    else:
        what = (
            "already going when the input began (a first line within the longest gap of a "
            "training run of its start), each starting with a step no run begun well after "
            "the start starts with"
        )
        why = (
            "a run whose first steps were before the file would teach them that runs may "
            "start there"
        )
    return (
        f"{len(cut):,} session{s} {what} ({where}): left out of the key model and the "
        f"workflows ({why}); their entries train the parameter models"
    )


def _summary(args: argparse.Namespace, model: object, sessions: int) -> None:
    from logwarden.detect import DeepLog

    assert isinstance(model, DeepLog)
    th = model.threshold_
    rule = f"top-g, g = {th.g}" if th.mode == "top_g" else f"probability < {th.tau:.3g}"
    info = model.train_info_
    cal = info.get("calibration") or {}
    print(
        f"logwarden train: {sessions:,} sessions, {len(model.keys_):,} keys, "
        f"{info['distinct_windows']:,} distinct windows of {info['windows']:,}, {info['epochs']} epochs "
        f"in {info['seconds']:.1f} s on {info['device']}"
        + (f" (calibration {cal['seconds']:.1f} s)" if "seconds" in cal else "")
        + f"; threshold: {rule}; saved {args.out}",
        file=sys.stderr,
    )
    if info.get("converged") is False:
        print(
            f"  note: training stopped at --epochs {info['epochs']} while the loss still fell "
            "(by 1% or more within the patience): the model may miss anomalies; more epochs "
            "(the default stops when the loss stops falling) fit it better",
            file=sys.stderr,
        )
    if th.mode == "top_g" and th.g is not None and th.g > len(model.keys_):
        # Ranks run over the keys and the end of a session: nothing ranks beyond g.
        print(
            f"  warning: --top-g {th.g} is more than the {len(model.keys_):,} keys: no known "
            "key is ever ranked out (only unseen keys, transitions and ends are flagged)",
            file=sys.stderr,
        )
    pinfo = info.get("params")
    if pinfo:
        print(
            f"  parameter models: {pinfo['units']} units over {pinfo['keys']} keys "
            f"({pinfo['lstm']} LSTM, {pinfo['robust']} robust statistics), "
            f"{pinfo['entries']:,} entries, {pinfo['confidence']:.1%} interval, "
            f"{pinfo['seconds']:.1f} s",
            file=sys.stderr,
        )
        counters = model.counter_parameters()
        if counters:
            print(
                f"  counters, not modelled (their values grow with the log, as identifiers "
                f"and sequence numbers do, not measurements): {', '.join(counters)}",
                file=sys.stderr,
            )
    elif args.no_params:
        print("  parameter models: skipped (--no-params)", file=sys.stderr)
    else:
        print(
            "  parameter models: none (key sequences carry no parameters or timestamps; "
            "train on raw logs for them)",
            file=sys.stderr,
        )
    if args.no_workflows:
        print("  workflows: skipped (--no-workflows)", file=sys.stderr)
    elif "workflows" in info:
        winfo = info["workflows"]
        print(
            f"  workflows: {winfo['count']} task type{'' if winfo['count'] == 1 else 's'}"
            + (" (interleaved log: estimated)" if winfo["interleaved"] else "")
            + f" in {winfo['seconds']:.1f} s; see logwarden workflow --model {args.out}",
            file=sys.stderr,
        )
        span, needs = winfo.get("log_span_seconds"), winfo.get("linking_needs_seconds")
        if span is not None and needs is not None and span < needs:
            print(
                f"  (the log spans {span:,.0f} s of log time, under the {needs:,.0f} s that "
                "linking entries by shared identifiers needs: the workflows come from key "
                "statistics alone and may be fragments of the real tasks)",
                file=sys.stderr,
            )
    print(f"  {expected_fpr_line(th)}", file=sys.stderr)
    for line in dropped_rules_lines(model):
        print(f"  {line}", file=sys.stderr)
    km = model.model_
    if km.fold_check:
        print(
            f"  fold check: a session the probability cut flags is flagged when the "
            f"{len(km.fold_weights or [])} fold models' p-value agrees (fewer false positives "
            "than the rate above on later data; --no-fold-check: the cut alone)",
            file=sys.stderr,
        )
    elif km.config.fold_check and km.fold_weights and th.level is not None:
        print(
            "  fold check: off, the fold models held out too few sessions to judge at the "
            f"cut's level ({th.level:.2g} needs {math.ceil(1 / th.level) - 1:,} each): the "
            "cut alone decides",
            file=sys.stderr,
        )


def _usable_cores() -> int:
    from logwarden.io.ingest import usable_cores

    return usable_cores()


def dropped_rules_lines(model: Any) -> list[str]:
    """A warning when the key model's order rules (unseen transitions, early ends, short
    sessions, counts) could not be kept: each is kept only when the training sessions it
    flags when left out stay within its budget (a share of --target-fpr), and with few
    sessions one alone is over it. Empty when every rule was kept."""
    cal = model.train_info_.get("calibration") or {}
    km = model.model_
    share, target = km.config.rule_share, km.config.target_fpr
    if "rule_context" not in cal or share <= 0:
        return []  # rules off by configuration, or no calibration to say
    dropped = []
    if cal["rule_context"] == 0:
        dropped.append("unseen transitions (steps in an order no normal run took)")
        if not cal.get("end_rule"):
            dropped.append("early ends (a run ending after a step no normal run ends with)")
    if cal.get("min_length") is None:
        dropped.append("the length rule (a run shorter than every normal one)")
    if not cal.get("count_rule"):
        dropped.append("counts (a step repeated more often than in any normal run)")
    if not dropped:
        return []
    th = model.threshold_
    n = int(km.calibration.sessions) if km.calibration is not None else 0
    budget = share * target
    lines = [
        "warning: rules not kept: " + "; ".join(dropped) + ".",
        f"  The rules are kept only while the training sessions they flag when left out "
        f"stay within {budget:.2%} of them ({share:.0%} of the {target:.2%} target)",
    ]
    too_few = bool(n) and 1 / n > budget
    if too_few:
        lines[-1] += (
            f": with {n:,} sessions one alone is {1 / n:.2%}, too few sessions to calibrate "
            "at this target."
        )
    else:
        lines[-1] += ": more of the training sessions hold a path of their own than that."
    rest = (
        f"keys ranked beyond the top {th.g}"
        if th.mode == "top_g"
        else f"entries the network gives a probability under {th.tau:.3g}"
    )
    kept = [
        ", early ends" if cal.get("end_rule") else "",
        ", runs shorter than every normal one" if cal.get("min_length") is not None else "",
        ", steps repeated more often than in any normal run" if cal.get("count_rule") else "",
    ]
    missed = []
    if cal["rule_context"] == 0:
        missed.append("with steps out of order")
    if not cal.get("end_rule") and cal.get("min_length") is None:
        missed.append("cut short")
    may = f": a run {' or '.join(missed)} may pass as normal" if missed else ""
    lines.append(f"  Only unseen keys{''.join(kept)} and {rest} are flagged{may}.")
    if too_few:
        # What lets one session in: as many sessions as the budget needs, or a target
        # whose budget one of these sessions fits in.
        advice = [
            f"more training sessions (at least {math.ceil(1 / budget):,} for one to fit)",
            f"a higher --target-fpr ({1 / (share * n):.2%} lets one of {n:,} fit)",
        ]
    else:
        advice = [
            "more training sessions (runs of the rare paths seen more than once)",
            f"a higher --target-fpr than {target:.2%} (a larger budget for rare paths)",
        ]
    if th.mode != "top_g":
        advice.append("--top-g N (the paper's rank rule: a key outside the N likeliest)")
    lines.append("  To keep them: " + ", ".join(advice) + ".")
    return lines


def expected_fpr_line(th: Any) -> str:
    """The key model's expected false-positive rate, for the end of ``train``."""
    if th.expected_fpr is None:
        return "expected false positives: not estimated (no cross-fitting: folds = 0)"
    target = f" at a target of {th.target_fpr:.2%}" if th.target_fpr is not None else ""
    return (
        f"expected false positives (key model): {th.expected_fpr:.2%} of normal sessions"
        f"{target}, 95% interval {th.fpr_low:.2%} to {th.fpr_high:.2%} "
        f"({th.calibration_flagged:,} of {th.calibration_sessions:,} training sessions "
        f"flagged when left out; {th.method})"
    )
