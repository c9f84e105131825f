"""``logwarden models``: what a model bundle is and where it came from.

``logwarden models history MODEL`` lists its lineage: every version from the trained one
to itself, the feedback each learnt, the update's figures, and whether each parent named
by path and checksum is still there as it was (rolling back is loading it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from logwarden.cli.common import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("models", help="model bundles: lineage of versions")
    msub = sm.add_subparsers(dest="models_command", metavar="ACTION")
    sh = msub.add_parser("history", help="the versions of a model, its feedback and parents")
    sh.add_argument("model", metavar="MODEL")
    sh.add_argument("--json", action="store_true", help="print one JSON object")
    sh.set_defaults(func=cmd_history)
    sm.set_defaults(func=_no_action)


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("models needs an action: history")


def parent_status(parent: dict[str, Any] | None) -> str:
    """Whether a parent bundle is still where its child says, unchanged."""
    from logwarden.errors import BundleError
    from logwarden.persist.bundle import load_bundle

    if not parent or not parent.get("path"):
        return "not saved"
    path = Path(parent["path"])
    if not path.exists():
        return "missing"
    try:
        manifest, _ = load_bundle(path)
    except BundleError as exc:
        return f"damaged ({exc})"
    if manifest.get("manifest_sha256") != parent.get("manifest_sha256"):
        return "replaced (another bundle is there now)"
    return "present, verified"


def cmd_history(args: argparse.Namespace) -> int:
    from logwarden.detect.detector import Detector

    detector = Detector.load(args.model)
    model = detector.model
    lineage = model.lineage_
    source = model.source_ or {}
    rows: list[dict[str, Any]] = []
    for v in reversed(lineage.versions):
        row = v.to_dict()
        row["parent_status"] = parent_status(v.parent) if v.parent else None
        rows.append(row)
    if args.json:
        print(json.dumps({"model": source, "versions": rows}, ensure_ascii=False))
        return 0
    sha = str(source.get("manifest_sha256", ""))[:12]
    print(f"{args.model}: version {lineage.version} (manifest {sha})")
    for row in rows:
        print(_describe(row))
    return 0


def _describe(row: dict[str, Any]) -> str:
    head = f"  v{row['version']}  {row['created']}  "
    upd = row["update"]
    if row["kind"] == "train":
        parts = [
            f"trained on {upd.get('sessions', '?'):,} sessions"
            if isinstance(upd.get("sessions"), int)
            else "trained"
        ]
        if "epochs" in upd:
            parts.append(f"{upd['epochs']} epochs in {upd.get('seconds', 0):.1f} s")
        return head + ", ".join(parts)
    fb = row["feedback"]
    normal = [f for f in fb if f["label"] == "normal"]
    confirmed = [f for f in fb if f["label"] == "confirmed"]
    who = sorted({f["who"] for f in fb if f["who"]})
    why = sorted({f["why"] for f in fb if f["why"]})
    lines = [
        head
        + f"feedback: {len(normal)} normal, {len(confirmed)} confirmed"
        + (f" by {', '.join(who)}" if who else "")
        + (f" ({'; '.join(why)})" if why else "")
    ]
    if normal:
        lines.append(
            "      normal: "
            + " ".join(f["session"] for f in normal[:8])
            + (" ..." if len(normal) > 8 else "")
        )
    if confirmed:
        lines.append(
            "      confirmed: "
            + " ".join(f["session"] for f in confirmed[:8])
            + (" ..." if len(confirmed) > 8 else "")
        )
    new = upd.get("new_keys") or []
    th = upd.get("threshold") or [None, None]
    figures = [f"{len(new)} new keys" + (f" ({', '.join(k['key'] for k in new)})" if new else "")]
    if isinstance(th[0], float) and isinstance(th[1], float):
        figures.append(f"threshold {th[0]:.3g} -> {th[1]:.3g}")
    if "seconds" in upd:
        figures.append(f"{upd['seconds']:.1f} s")
    lines.append("      update: " + ", ".join(figures))
    parent = row["parent"] or {}
    where = parent.get("path", "(not saved)")
    sha = str(parent.get("manifest_sha256", ""))[:12]
    lines.append(
        f"      parent: v{parent.get('version', '?')} {where}"
        + (f" (manifest {sha})" if sha else "")
        + f": {row['parent_status']}"
    )
    return "\n".join(lines)
