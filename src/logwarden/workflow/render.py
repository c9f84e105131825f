"""Workflows for people: plain text, Graphviz pictures, and the HTML anomaly report.

The layout is Graphviz's (``dot``, through the ``graphviz`` package): steps are boxes
labelled by key and template, edge widths grow with the log of their counts and edges
carry their probabilities; a concurrent group is one dashed box "in any order" with no
edges inside it (every order is normal there), loops are the cycles that remain, drawn in
blue. A diagnosis marks the divergence in red: the state the execution was in, and the
observed step (added when the workflow has no such step); the steps allowed next are
green, and for an early end the missing steps are dashed red.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from logwarden.workflow.diagnose import Diagnosis
from logwarden.workflow.model import END, START, Workflow, Workflows, natural_key

# Beside an early end of a session the end of input completed (``html_report``, and
# ``detect``'s text): the detector judged the run over there.
CUT_NOTE = (
    "Still active when the input ended: if the log was cut there (a slice, a rotation), "
    "this run may have gone on."
)

# Beside a verdict of a session that began before the input did (``html_report``, and
# ``detect``'s text): its first line is near the input's first, its first step none a
# normal training run starts with.
BEGAN_NOTE = (
    "Began before the input: if the log was cut there (a slice, a rotation), this run's "
    "first steps are missing from it."
)


class RenderError(RuntimeError):
    """The picture could not be drawn (Graphviz's ``dot`` is missing or failed)."""


# --- text ----------------------------------------------------------------------------------


def workflow_text(wf: Workflow, templates: Mapping[str, str], width: int = 100) -> str:
    """One workflow as lines of text: each step with the steps that follow it."""
    out = [
        f"workflow {wf.name}: {wf.sessions:,} executions"
        + (" (estimated, interleaved log)" if not wf.counted else "")
        + f", {len(wf.keys)} steps"
    ]
    for state in [START, *wf.keys]:
        label = state if state == START else f"{state} {_short(templates.get(state, ''), width)}"
        times = ""
        if wf.counted and state in wf.max_count:
            lo, hi = wf.min_count.get(state, 0), wf.max_count[state]
            times = f"  [{lo}-{hi}x]" if (lo, hi) != (1, 1) else ""
        out.append(f"  {label}{times}")
        nxt = ", ".join(f"{b} {p:.2f}" for b, p in wf.successors(state))
        out.append(f"      -> {nxt or '(nothing)'}")
    for g in wf.concurrent:
        out.append(f"  concurrent, in any order: {' | '.join(g)}")
    for c in wf.loops:
        # A loop is a set of steps that reach each other (a strongly connected component),
        # not one path: "a -> b -> c" named edges the workflow may not have.
        out.append(
            f"  loop: {c[0]} repeats"
            if len(c) == 1
            else f"  loop among {', '.join(c)} (each reaches the others again)"
        )
    return "\n".join(out)


def workflows_text(workflows: Workflows, templates: Mapping[str, str]) -> str:
    return "\n\n".join(workflow_text(w, templates) for w in workflows)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# --- Graphviz ------------------------------------------------------------------------------


def _node_label(key: str, template: str | None) -> str:
    if key in (START, END) or not template:
        return key
    lines = textwrap.wrap(template, 34, break_long_words=True)[:4]
    if len(textwrap.wrap(template, 34, break_long_words=True)) > 4:
        lines[-1] = lines[-1][:31] + "..."
    return key + "\n" + "\n".join(lines)


def _add_workflow(
    graph: Any,
    wf: Workflow,
    templates: Mapping[str, str],
    prefix: str,
    diagnosis: Diagnosis | None = None,
) -> None:
    node = {k: f"{prefix}n{i}" for i, k in enumerate(wf.keys)}
    node[START] = f"{prefix}start"
    node[END] = f"{prefix}end"
    red, green = "#d62728", "#2ca02c"
    marked_state = diagnosis.state if diagnosis is not None else None
    observed = diagnosis.observed if diagnosis is not None else None
    expected = {e["key"] for e in diagnosis.expected} if diagnosis is not None else set()
    missing = {m["key"] for m in (diagnosis.missing or [])} if diagnosis is not None else set()

    def attrs(key: str) -> dict[str, str]:
        a: dict[str, str] = {}
        if key == marked_state:
            a.update(color=red, penwidth="3", fontcolor=red)
        if key == observed and diagnosis is not None and diagnosis.diverged:
            a.update(style="filled", fillcolor="#f8c9c9", color=red, penwidth="3")
        elif key in missing:
            a.update(style="dashed", color=red, penwidth="2")
        return a

    # The marks override the grey fill (an early end that diverges is filled red).
    plain = {"style": "filled", "fillcolor": "#dddddd", "fontsize": "9", "width": "0.5",
             "fixedsize": "true"}  # fmt: skip
    graph.node(node[START], START, shape="circle", **{**plain, **attrs(START)})
    graph.node(node[END], END, shape="doublecircle", **{**plain, **attrs(END)})
    group_of = {k: i for i, g in enumerate(wf.concurrent) for k in g}
    for i, g in enumerate(wf.concurrent):
        with graph.subgraph(name=f"cluster_{prefix}c{i}") as sub:
            sub.attr(label="in any order (concurrent)", style="dashed", color="#555555",
                     fontsize="10")  # fmt: skip
            for k in g:
                sub.node(node[k], _node_label(k, templates.get(k)), **attrs(k))
    for k in wf.keys:
        if k not in group_of:
            graph.node(node[k], _node_label(k, templates.get(k)), **attrs(k))
    loop_edges = set()
    for c in wf.loops:
        members = set(c)
        loop_edges |= {(a, b) for (a, b) in wf.edges if a in members and b in members}
    biggest = max(wf.edges.values(), default=1)
    order = {k: i for i, k in enumerate(wf.keys)}
    for (a, b), n in sorted(
        wf.edges.items(), key=lambda e: (natural_key(e[0][0]), natural_key(e[0][1]))
    ):
        if a in group_of and group_of.get(b) == group_of[a] and a != b:
            continue  # every order inside a concurrent group is normal: no tangle
        width = 0.6 + 4.0 * math.log1p(n) / math.log1p(biggest)
        p = wf.probability(a, b)
        e: dict[str, str] = {
            "penwidth": f"{width:.2f}",
            "label": f"{p:.2f}" if p >= 0.005 else "<0.01",  # a rare edge, not an impossible one
            "fontsize": "9",
        }
        back = (a, b) in loop_edges and (a == b or order.get(b, 0) <= order.get(a, 0))
        if back:
            e.update(color="#1f77b4", fontcolor="#1f77b4", constraint="false" if a != b else "true")
        if diagnosis is not None and a == marked_state and b in expected:
            e.update(color=green, fontcolor=green)
        graph.edge(node[a], node[b], **e)
    if diagnosis is not None and observed is not None and observed not in node:
        # A step this workflow never has: drawn beside it, in red.
        obs = f"{prefix}observed"
        graph.node(obs, "observed: " + _node_label(observed, diagnosis.observed_template),
                   style="filled", fillcolor="#f8c9c9", color=red, penwidth="3")  # fmt: skip
        if marked_state in node:
            graph.edge(node[marked_state], obs, color=red, style="dashed", penwidth="2.5",
                       label="observed", fontcolor=red)  # fmt: skip
    elif diagnosis is not None and diagnosis.diverged and observed in node:
        graph.edge(node[marked_state or START], node[observed], color=red, style="dashed",
                   penwidth="2.5", label="observed", fontcolor=red, constraint="false")  # fmt: skip


def _digraph(name: str) -> Any:
    try:
        import graphviz
    except ImportError as exc:  # declared dependency; a broken install says so
        raise RenderError(f"the graphviz package is missing ({exc})") from None
    g = graphviz.Digraph(name)
    g.attr(rankdir="TB", fontname="Helvetica", nodesep="0.3", ranksep="0.35")
    g.attr("node", shape="box", style="rounded", fontname="Helvetica", fontsize="10")
    g.attr("edge", fontname="Helvetica")
    return g


def workflows_dot(workflows: Workflows, templates: Mapping[str, str]) -> str:
    """All workflows in one Graphviz graph (one box per workflow), as DOT source."""
    g = _digraph("workflows")
    for i, wf in enumerate(workflows):
        with g.subgraph(name=f"cluster_w{i}") as sub:
            sub.attr(label=f"{wf.name}: {wf.sessions:,} executions", fontsize="14", color="#999999")
            _add_workflow(sub, wf, templates, f"w{i}_")
    return str(g.source)


def diagnosis_dot(wf: Workflow, templates: Mapping[str, str], diagnosis: Diagnosis) -> str:
    g = _digraph(wf.name)
    g.attr(label=f"{wf.name}: {wf.sessions:,} executions", labelloc="t", fontsize="14")
    _add_workflow(g, wf, templates, "", diagnosis)
    return str(g.source)


def to_svg(dot: str) -> str:
    """Lay out DOT source with Graphviz's ``dot``: the ``<svg>`` element."""
    try:
        import graphviz
    except ImportError as exc:
        raise RenderError(f"the graphviz package is missing ({exc})") from None
    try:
        svg = graphviz.Source(dot).pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise RenderError(
            "Graphviz's 'dot' program is not installed (Debian: apt-get install graphviz)"
        ) from None
    except graphviz.CalledProcessError as exc:
        raise RenderError(f"Graphviz failed: {exc.stderr or exc}") from None
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


# --- the HTML report -----------------------------------------------------------------------

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.9em;
         overflow-wrap: anywhere; }
th { background: #f2f2f2; }
.anomaly { border-top: 2px solid #d62728; padding-top: 0.5em; }
.observed { color: #d62728; font-weight: bold; }
.expected { color: #2ca02c; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.picture svg { max-width: 100%; height: auto; }
.note { color: #666; font-size: 0.9em; }
mark.flagged { background: #fde0dc; color: #a50e0e; font-weight: bold; }
"""


def html_report(
    verdicts: Sequence[Any],
    workflows: Workflows | None,
    templates: Mapping[str, str],
    reasons: Mapping[str, str],
    limit: int = 100,
    title: str = "logwarden: anomalies and their workflows",
    *,
    sessions: int | None = None,
    notes: Sequence[str] = (),
    cut_at_end: Collection[Any] = (),
    began_before: Collection[Any] = (),
) -> str:
    """A self-contained HTML page (inline CSS and SVG, nothing fetched): a summary of the
    anomalous verdicts, then for each of the first ``limit`` its workflow picture with the
    divergence in red, the expected and observed steps and the raw lines. ``sessions``:
    how many sessions were scored, when ``verdicts`` holds only the anomalous ones (a
    streaming caller keeps no more); default ``len(verdicts)``. ``notes``: lines under
    the summary; ``cut_at_end``: the early-end verdicts of sessions still active when the
    input ended (they say so; the very verdicts, since a session id can come back);
    ``began_before``: the verdicts of sessions that began before the input did (the same)."""
    esc = html.escape
    anomalies = [v for v in verdicts if v.anomalous]
    by_reason: dict[str, int] = {}
    for v in anomalies:
        by_reason[v.reason] = by_reason.get(v.reason, 0) + 1
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p id="summary">{len(verdicts) if sessions is None else sessions:,} sessions, <b>{len(anomalies):,} anomalous</b>'
        + (
            " (" + ", ".join(f"{esc(k)}: {n:,}" for k, n in sorted(by_reason.items())) + ")"
            if by_reason
            else ""
        )
        + "</p>",
    ]
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    if workflows is None:
        parts.append('<p class="note">The model has no workflows (trained without them).</p>')
    if anomalies:
        parts.append("<table><tr><th>#</th><th>session</th><th>line</th><th>reason</th>"
                     "<th>workflow</th><th>state</th><th>observed</th></tr>")  # fmt: skip
        for n, v in enumerate(anomalies, start=1):
            d = v.diagnosis
            link = f'<a href="#a{n}">{n}</a>' if n <= limit else str(n)
            parts.append(
                f"<tr><td>{link}</td><td>{esc(v.session)}</td>"
                f"<td>{getattr(v, 'line', None) or '-'}</td><td>{esc(v.reason or '')}</td>"
                f"<td>{esc(d.workflow or '-') if d else '-'}</td>"
                f"<td>{esc(d.state) if d else '-'}</td>"
                f'<td class="observed">{esc(d.observed if d else v.observed or "")}</td></tr>'
            )
        parts.append("</table>")
        if len(anomalies) > limit:
            parts.append(f'<p class="note">Pictures for the first {limit:,} anomalies.</p>')
    cut = {id(v) for v in cut_at_end}
    began = {id(v) for v in began_before}
    for n, v in enumerate(anomalies[:limit], start=1):
        marks = [note for note, ids in ((BEGAN_NOTE, began), (CUT_NOTE, cut)) if id(v) in ids]
        parts.append(_anomaly_section(n, v, workflows, templates, reasons, marks))
    parts.append("</body></html>")
    return "\n".join(parts)


def _pre(lines: Sequence[str], at: int | None, numbers: Sequence[int] | None) -> str:
    """Raw lines in a ``<pre>``, each with its input line number when known, the one at
    index ``at`` (the flagged entry's) highlighted."""
    esc = html.escape
    rows = []
    for k, text in enumerate(lines):
        num = f"{numbers[k]}: " if numbers is not None and k < len(numbers) else ""
        row = esc(num + text)
        rows.append(f'<mark class="flagged">{row}</mark>' if k == at else row)
    return "<pre>" + "\n".join(rows) + "</pre>"


def _anomaly_section(
    n: int,
    v: Any,
    workflows: Workflows | None,
    templates: Mapping[str, str],
    reasons: Mapping[str, str],
    marks: Sequence[str] = (),
) -> str:
    esc = html.escape
    d: Diagnosis | None = v.diagnosis
    out = [
        f'<section class="anomaly" id="a{n}" data-session="{esc(v.session)}">',
        f"<h2>{n}. {esc(v.session)}: {esc(reasons.get(v.reason or '', v.reason or ''))}</h2>",
    ]
    end = v.reason == "early_end"
    where = "at its end" if end else f"at entry {(v.position or 0) + 1}"  # from 1, for people
    place = ""
    if getattr(v, "line", None) is not None:
        place = (
            f" {'Its last line' if end else 'The entry'} is {esc(v.place())}"
            + (f" ({esc(v.timestamp)})" if v.timestamp else "")
            + f"; the session spans lines {v.first_line}-{v.last_line} of the input."
        )
    out.append(
        f"<p>Flagged by the {esc(v.detector or '')} model {where} of {v.length} entries.{place}</p>"
    )
    out += [f'<p class="note">{esc(note)}</p>' for note in marks]
    if d is not None:
        text = d.describe(v.position, lines=False)  # the raw lines come below
        out.append("<p>" + "<br>".join(esc(line.strip()) for line in text) + "</p>")
        rows = [
            f'<tr class="expected"><td>{esc(e["key"])}</td><td>{esc(e.get("template") or "")}</td>'
            f"<td>{e['probability']:.3f}</td></tr>"
            for e in d.expected
        ]
        out.append(
            "<table><tr><th colspan=3>steps the workflow allows after "
            f"{esc(d.state)}</th></tr><tr><th>key</th><th>template</th><th>probability</th></tr>"
            + "".join(rows)
            + f'<tr class="observed"><td>{esc(d.observed)}</td>'
            f"<td>{esc(d.observed_template or '')}</td><td>observed</td></tr></table>"
        )
        if d.missing:
            out.append(
                "<p>Still missing to reach the workflow's end: "
                + " &rarr; ".join(
                    f"<b>{esc(m['key'])}</b> {esc(m.get('template') or '')}" for m in d.missing
                )
                + "</p>"
            )
        wf = workflows.by_name(d.workflow) if (workflows is not None and d.workflow) else None
        if wf is not None:
            try:
                svg = to_svg(diagnosis_dot(wf, templates, d))
                out.append(f'<div class="picture">{svg}</div>')
            except RenderError as exc:
                out.append(f'<p class="note">No picture: {esc(str(exc))}</p>')
    elif v.expected:
        out.append(
            "<p>Expected: "
            + "; ".join(f"{esc(e['key'])} ({e['probability']:.2f})" for e in v.expected)
            + f'; observed <span class="observed">{esc(v.observed or "")}</span></p>'
        )
    if v.lines:
        at = None if end or v.position is None else v.position - max(0, v.position - 3)
        out.append(
            "<p>Raw lines around the flagged entry:</p>"
            + _pre(v.lines, at, getattr(v, "line_numbers", None))
        )
    if d is not None and d.lines:
        line = f", line {d.line}" if d.line is not None else ""
        out.append(
            f"<p>Raw lines where the run left its workflow (entry {d.position + 1}{line}):</p>"
            + _pre(d.lines, d.position - max(0, d.position - 3), d.line_numbers)
        )
    out.append("</section>")
    return "\n".join(out)
