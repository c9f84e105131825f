"""``logwarden feedback``: a new model version learnt from sessions an operator marked.

    logwarden feedback today.log --model m1 --normal ID --normal ID --confirmed ID --out m2

The log is read as the model reads input (its format and session settings); sessions
marked ``--normal`` (false positives) are learnt, sessions marked ``--confirmed`` (true
positives) must stay flagged, or the update is refused and nothing is written. The new
bundle records its version, its parent's path and checksum, the feedback and the update's
figures (``logwarden models history``); the parent is left as it was, for rolling back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from logwarden.cli.common import RuntimeFailure, UsageError, check_out_dir, mostly_unmatched
from logwarden.cli.inputs import (
    UnknownKeys,
    add_input_args,
    apply_input_args,
    load_detector,
    not_sequences,
    read_inputs,
)


def register(sub: argparse._SubParsersAction) -> None:
    sf = sub.add_parser(
        "feedback", help="learn from sessions marked normal or confirmed: a new model version"
    )
    add_input_args(sf)
    sf.add_argument("--model", required=True, metavar="MODEL", help="the model to update")
    sf.add_argument("--out", required=True, metavar="MODEL2", help="bundle of the new version")
    sf.add_argument(
        "--force", action="store_true", help="replace a model already in --out (not an ancestor)"
    )
    sf.add_argument("--normal", nargs="+", action="extend", default=[], metavar="ID",
                    help="sessions that are normal (false positives to learn from)")  # fmt: skip
    sf.add_argument("--normal-file", metavar="IDS", help="file of normal session ids, one a line")
    sf.add_argument("--confirmed", nargs="+", action="extend", default=[], metavar="ID",
                    help="true anomalies: they must still be flagged after the update")  # fmt: skip
    sf.add_argument("--confirmed-file", metavar="IDS", help="file of confirmed session ids")
    sf.add_argument("--who", help="who gives the feedback (default: the login name)")
    sf.add_argument("--why", default="", help="why, recorded with every session marked")
    sf.add_argument(
        "--steps", type=int, default=None, help="fine-tuning optimizer steps a round, at most"
    )
    sf.add_argument(
        "--feedback-share",
        type=float,
        default=None,
        help="share of the fine-tuning loss the marked sessions carry (0.2)",
    )
    sf.set_defaults(func=cmd_feedback)


def cmd_feedback(args: argparse.Namespace) -> int:
    from logwarden.online import Feedback, UpdatePolicy, read_id_file

    normal = list(args.normal) + (read_id_file(args.normal_file) if args.normal_file else [])
    confirmed = list(args.confirmed) + (
        read_id_file(args.confirmed_file) if args.confirmed_file else []
    )
    if not normal and not confirmed:
        raise UsageError("nothing to learn: give --normal/--normal-file or --confirmed")
    if Path(args.out).resolve() == Path(args.model).resolve():
        raise UsageError("--out must differ from --model: the parent stays, for rolling back")
    check_out_dir(args.out, args.force)
    extra = {"who": args.who} if args.who is not None else {}
    records = [Feedback(s, "normal", why=args.why, **extra) for s in dict.fromkeys(normal)]
    records += [Feedback(s, "confirmed", why=args.why, **extra) for s in dict.fromkeys(confirmed)]
    settings = {}
    if args.steps is not None:
        settings["steps"] = args.steps
    if args.feedback_share is not None:
        settings["feedback_share"] = args.feedback_share
    detector = load_detector(args.model)
    _check_not_an_ancestor(detector, args.out)
    policy = UpdatePolicy(seed=detector.model.seed, **settings)
    other_format = apply_input_args(detector, args)
    data = read_inputs(detector, args, learn=False, only=[r.session for r in records])
    _check_form(detector, data, other_format)
    detector.partial_fit(data, records, policy)
    try:
        detector.save(args.out, replace=args.force)
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot write the model to {args.out}: {exc.strerror or exc}"
        ) from None
    _summary(detector, args)
    return 0


def _check_form(detector: object, data: Any, other_format: bool) -> None:
    """Nothing is learnt from input that is not in the model's form (the warning above
    says which): raw lines read as key sequences made every word a new key of the
    model, and lines of another format (``other_format``: --format is not the model's)
    new templates for every step."""
    from logwarden.detect import Detector

    assert isinstance(detector, Detector)
    form = detector.input.input_format
    unknown = UnknownKeys(detector.model.keys_, sample=1 << 62)
    unknown.feed(data.keys)
    foreign = other_format and 2 * unknown.unknown > unknown.entries
    if foreign:
        print(f"logwarden: warning: {unknown.message()}", file=sys.stderr)
    if (
        foreign
        or (form == "sequences" and not_sequences(data.keys) is not None)
        or (form == "raw" and mostly_unmatched(data.stats))
    ):
        raise UsageError(
            "the input does not look like the model's (see the warning above): nothing learnt"
        )


def _check_not_an_ancestor(detector: object, out: str) -> None:
    """``--out`` is not a bundle this model descends from (even with --force): replacing
    it would lose the way back to that version."""
    import contextlib
    import json

    from logwarden.detect import Detector

    assert isinstance(detector, Detector)
    manifest = Path(out) / "manifest.json"
    if not manifest.is_file():
        return
    here = Path(out).resolve()
    sha = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sha = json.loads(manifest.read_text(encoding="utf-8")).get("manifest_sha256")
    for parent in detector.model.lineage_.ancestors:
        path = parent.get("path")
        if path and Path(path).resolve() == here and sha == parent.get("manifest_sha256"):
            raise UsageError(
                f"--out {out} holds version {parent.get('version')}, an ancestor of "
                "--model: replacing it would lose the way back to it; give a new directory"
            )


def _summary(detector: object, args: argparse.Namespace) -> None:
    from logwarden.detect import Detector

    assert isinstance(detector, Detector)
    model = detector.model
    info = model.update_info_
    last = info["attempts"][-1]
    new = info["new_keys"]
    th = info["threshold"]
    fpr = info["calibration_fpr"]
    n_conf = info["sessions_confirmed"]
    before, after = info["confirmed_flagged"]
    confirmed = (
        f"{n_conf} confirmed anomalies, {after} of them flagged"
        + (f" ({before} before)" if before != n_conf else "")
        if n_conf
        else "no confirmed anomalies"
    )
    print(
        f"logwarden feedback: version {model.lineage_.version} -> {args.out} (parent: "
        f"{args.model}): {info['sessions_normal']} sessions learnt as normal, {confirmed}",
        file=sys.stderr,
    )
    missed = info.get("confirmed_unflagged") or []
    if missed:
        ids = [f.session for f in model.lineage_.current.feedback if f.label == "confirmed"]
        named = ", ".join(ids[i] for i in missed[:5]) + (", ..." if len(missed) > 5 else "")
        print(
            f"  warning: {len(missed)} --confirmed sessions were not flagged by {args.model} "
            f"({named}): --confirmed keeps flagged anomalies flagged, and a model of normal "
            "behaviour cannot be taught a missed one",
            file=sys.stderr,
        )
    for k in new:
        twin = f" (rewords {k['rewords']}: starts as its copy)" if k.get("rewords") else ""
        print(f"  new key {k['key']}: {k['template']}{twin}", file=sys.stderr)
    if info["sessions_normal"]:
        rule = (
            f"threshold {th[0]:.3g} -> {th[1]:.3g}"
            if isinstance(th[1], float)
            else f"top-g {th[1]}"
        )
        cal = (
            f" (calibration false positives {fpr[0]:.2%} -> {fpr[1]:.2%} of "
            f"{info['calibration_sessions']})"
            if fpr[1] is not None and fpr[0] is not None
            else ""
        )
        steps = sum(r["steps"] for r in last["rounds"])
        print(
            f"  fine-tuned {steps} steps ({len(last['rounds'])} round(s)) on "
            f"{info['feedback_windows']:,} windows of feedback (share "
            f"{last['feedback_share']:.3g}) and {info['replay_rows']:,} replayed rows in "
            f"{last['seconds']:.1f} s; {rule}{cal}; sessions marked normal flagged before "
            f"{info['normal_flagged'][0]}, after {info['normal_flagged'][1]}",
            file=sys.stderr,
        )
    if len(info["attempts"]) > 1:
        print(
            f"  the feedback's weight was lowered to a share of {last['feedback_share']:.3g} so "
            "that every confirmed anomaly stays flagged",
            file=sys.stderr,
        )
    if info["normal_flagged"][1]:
        print(
            f"  note: {info['normal_flagged'][1]} of the sessions marked normal are still "
            "flagged (more --steps, or more sessions like them, may help)",
            file=sys.stderr,
        )
    pinfo = info.get("params")
    if pinfo:
        accepted = sum(pinfo["accepted"].values())
        print(
            f"  parameter models: {pinfo['new_units']} new units ({pinfo['new_keys']} new keys), "
            f"{accepted} entries accepted by existing ones",
            file=sys.stderr,
        )
