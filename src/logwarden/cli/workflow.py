"""``logwarden workflow``: the workflows a model mined, as text, SVG (Graphviz) or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from logwarden.cli.common import RuntimeFailure, check_outputs, open_out, writing
from logwarden.cli.inputs import load_detector


def register(sub: argparse._SubParsersAction) -> None:
    sw = sub.add_parser("workflow", help="show the workflows a model mined (text, SVG, JSON)")
    sw.add_argument("--model", required=True, metavar="MODEL")
    sw.add_argument("--svg", metavar="OUT", help="draw the workflows (Graphviz) into an SVG file")
    sw.add_argument("--json", metavar="OUT", help="write them as JSON (- for standard output)")
    sw.add_argument("--dot", metavar="OUT", help="write the Graphviz source")
    sw.add_argument("-q", "--quiet", action="store_true", help="no text on standard output")
    sw.set_defaults(func=cmd_workflow)


def cmd_workflow(args: argparse.Namespace) -> int:
    from logwarden.workflow.render import RenderError, to_svg, workflows_dot, workflows_text

    check_outputs(
        [(args.json, "--json"), (args.svg, "--svg"), (args.dot, "--dot")],
        models=[(args.model, "--model")],
    )
    model = load_detector(args.model).model
    workflows = getattr(model, "workflows_", None)
    if workflows is None:
        raise RuntimeFailure(
            f"{args.model} has no workflows (trained with --no-workflows or by an older logwarden)"
        )
    templates = model.templates_
    try:
        with writing("output"):
            if args.json:
                with open_out(args.json) as fh:
                    json.dump(workflows.export(templates), fh, indent=1, ensure_ascii=False)
                    fh.write("\n")
            if args.svg:
                svg = to_svg(workflows_dot(workflows, templates))
                Path(args.svg).write_text(svg, encoding="utf-8")
            if args.dot:
                Path(args.dot).write_text(workflows_dot(workflows, templates), encoding="utf-8")
    except RenderError as exc:
        raise RuntimeFailure(str(exc)) from None
    if not args.quiet and args.json != "-":
        print(workflows_text(workflows, templates))
    for what, path in (("SVG", args.svg), ("JSON", args.json), ("DOT", args.dot)):
        if path and path != "-":
            print(f"logwarden workflow: wrote {what} {path}", file=sys.stderr)
    return 0
