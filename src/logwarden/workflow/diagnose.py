"""Where an execution left its workflow: the diagnosis attached to every anomalous verdict.

The session is replayed through the workflow it follows (its task type). For an execution
with identifiers the replay keeps the counts of each step, so the counting rules apply
too: at each entry the workflow allows the successors of the current state that do not
exceed a step's usual number and do not outnumber a step they need. The first entry the
workflow does not allow is where the path diverged: the diagnosis names the workflow, the
state (the last step that fitted, or ``<start>``), the steps allowed next with their
probabilities, and what was observed instead.

* key-model anomalies (``unseen_key``, ``ranked_out``): the first divergence of the
  session; when the workflow allows every entry but not the end (a step missing among
  concurrent ones breaks only a counting rule), that end, with the steps still owed;
  when it allows the whole session (the key model judged from a longer context), the
  state and allowed steps at the flagged entry, with ``diverged`` False.
* ``early_end``: the state at the end, and the steps still missing to reach an allowed end
  (the most likely completion that satisfies the counting rules).
* parameter and performance anomalies: the workflow step the entry is, and its state.

Windows of interleaved tasks (logs without identifiers) have no single execution: the
observed entry's task type gives the workflow, and the state is the latest earlier entry
of that task from which the workflow leads to it (or the latest entry of the task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from logwarden.workflow.model import END, START, Workflow, Workflows

KEY_REASONS = ("unseen_key", "ranked_out", "early_end")


@dataclass
class Diagnosis:
    """Where a session stands against its workflow (see the module docstring)."""

    workflow: str | None  # None: no key of the session belongs to a known workflow
    state: str  # the last step that fitted (a key), or "<start>"
    observed: str  # the key observed there, or "<end>"
    position: int  # entry index of the observation (the session's length for its end)
    expected: list[dict[str, Any]] = field(default_factory=list)  # key, template, probability
    diverged: bool = True  # False: the workflow allows what was observed
    why: str | None = None  # why the workflow does not allow it
    missing: list[dict[str, Any]] | None = None  # early end: steps still missing (key, template)
    step: dict[str, Any] | None = None  # parameter anomaly: the workflow step of the entry
    state_template: str | None = None
    observed_template: str | None = None
    lines: list[str] | None = None  # raw lines around ``position`` when it is not the verdict's
    # with ``lines`` on raw input: the input line of ``position`` and of each of ``lines``
    line: int | None = None
    line_numbers: list[int] | None = None

    def copy(self) -> Diagnosis:
        """A copy whose lists and step dicts are its own (one diagnosis serves the copies of
        a session; each verdict gets its own)."""
        return Diagnosis(
            self.workflow,
            self.state,
            self.observed,
            self.position,
            [dict(e) for e in self.expected],
            self.diverged,
            self.why,
            None if self.missing is None else [dict(m) for m in self.missing],
            None if self.step is None else dict(self.step),
            self.state_template,
            self.observed_template,
            None if self.lines is None else list(self.lines),
            self.line,
            None if self.line_numbers is None else list(self.line_numbers),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "workflow": self.workflow,
            "state": self.state,
            "state_template": self.state_template,
            "expected": [e["key"] for e in self.expected],
            "expected_steps": self.expected,
            "observed": self.observed,
            "observed_template": self.observed_template,
            "position": self.position,
            "diverged": self.diverged,
        }
        if self.why is not None:
            d["why"] = self.why
        if self.missing is not None:
            d["missing"] = self.missing
        if self.step is not None:
            d["step"] = self.step
        if self.lines is not None:
            d["lines"] = self.lines
        if self.line is not None:
            d["line"] = self.line
            d["line_numbers"] = self.line_numbers
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Diagnosis:
        return cls(
            workflow=d.get("workflow"),
            state=d["state"],
            observed=d["observed"],
            position=int(d["position"]),
            expected=list(d.get("expected_steps") or [{"key": k} for k in d["expected"]]),
            diverged=bool(d.get("diverged", True)),
            why=d.get("why"),
            missing=d.get("missing"),
            step=d.get("step"),
            state_template=d.get("state_template"),
            observed_template=d.get("observed_template"),
            lines=d.get("lines"),
            line=d.get("line"),
            line_numbers=d.get("line_numbers"),
        )

    def describe(self, flagged: int | None = None, lines: bool = True) -> list[str]:
        """Plain-words lines for ``Verdict.describe``; ``flagged``: the verdict's entry, so
        that a divergence at another entry says so; ``lines``: with the raw lines there."""
        if self.workflow is None:
            return ["  workflow: none of its keys belongs to a workflow mined in training"]
        state = (
            "its start"
            if self.state == START
            else f"step {_named(self.state, self.state_template)}"
        )
        out = []
        if self.step is not None:
            out.append(
                f"  workflow {self.workflow}: happened in step {_named(self.step['key'], self.step.get('template'))}"
                f", after {'its start' if self.state == START else self.state}"
            )
            if not self.diverged:
                return out
            # The step is not one the workflow allows there: the run had left its workflow
            # too (a step missing before it), which matters more than the timing.
            out.append(
                f"  the run left the workflow here: at {state}, observed {self.observed}"
                + (f" ({self.why})" if self.why else "")
            )
        elif self.observed == END:
            head = f"  workflow {self.workflow}: the execution ended at {state}"
            if self.diverged:
                out.append(head + ", where the workflow does not end")
            else:
                out.append(head + ", where the workflow may end")
            if self.missing:
                named: set[str] = set()  # each step's template once: HDFS owes E5 three times
                steps = []
                for m in self.missing:
                    first = m["key"] not in named
                    named.add(m["key"])
                    steps.append(_named(m["key"], m.get("template")) if first else m["key"])
                out.append("  still missing to reach its end: " + " -> ".join(steps))
        else:
            obs = _named(self.observed, self.observed_template)
            if self.diverged:
                out.append(
                    f"  workflow {self.workflow}: {self._left(flagged)}, at {state}: observed "
                    f"{obs}" + (f" ({self.why})" if self.why else "")
                )
            else:
                out.append(
                    f"  workflow {self.workflow}: at entry {self.position + 1}, at {state}, the "
                    f"workflow allows {obs}; the key model judged it from a longer context"
                )
        if self.expected:
            # The likeliest few: a busy state allows a dozen steps, most of them rarely.
            shown = self.expected[:_SHOWN_NEXT]
            rest = len(self.expected) - len(shown)
            out.append(
                "  the workflow allows next: "
                + "; ".join(
                    f"{_named(e['key'], e.get('template'))} ({e['probability']:.2f})" for e in shown
                )
                + (f"; and {rest} rarer" if rest else "")
            )
        elif self.observed != END or self.diverged:
            out.append("  the workflow allows nothing after this state")
        if self.lines and lines:
            out.append(f"  lines where it left the workflow ({self._entry()}):")
            at = self.position - max(0, self.position - 3)
            numbers = self.line_numbers
            for k, text in enumerate(self.lines):
                num = f"{numbers[k]}: " if numbers is not None and k < len(numbers) else ""
                out.append(f"  {'>' if k == at else '|'} {num}{text}")
        return out

    def _entry(self) -> str:
        """``entry N`` (from 1, for people), with its input line when known."""
        return f"entry {self.position + 1}" + (f", line {self.line}" if self.line else "")

    def _left(self, flagged: int | None) -> str:
        """Where the run left its workflow, saying so when that is not the verdict's entry
        (the key model can flag an entry well after the run left its workflow). Entries
        from 1, for people."""
        if flagged is None or flagged == self.position:
            return f"left the workflow at entry {self.position + 1}"
        when = "earlier" if self.position < flagged else "later"
        return (
            f"the run had left the workflow {when}, at {self._entry()} "
            f"(the flagged entry is {flagged + 1})"
        )


def _named(key: str, template: str | None) -> str:
    if key in (START, END) or not template:
        return key
    short = template if len(template) <= 70 else template[:67] + "..."
    return f"{key} '{short}'"


def diagnose(
    workflows: Workflows,
    keys: Sequence[str],
    position: int,
    reason: str,
    templates: Mapping[str, str] | None = None,
    lines: Sequence[str] | None = None,
) -> Diagnosis:
    """The diagnosis of one anomalous session: ``keys`` its log keys, ``position`` the
    flagged entry (``len(keys)`` for an early end), ``reason`` the verdict's reason,
    ``lines`` its raw lines (for the lines around a divergence elsewhere)."""
    templates = templates or {}
    keys = [str(k) for k in keys]
    if workflows.interleaved:
        d = _diagnose_window(workflows, keys, position, reason)
    else:
        d = _diagnose_session(workflows, keys, position, reason)
    d.state_template = templates.get(d.state)
    d.observed_template = templates.get(d.observed)
    for e in d.expected:
        e["template"] = templates.get(e["key"])
    for m in d.missing or []:
        m["template"] = templates.get(m["key"])
    if d.step is not None:
        d.step["template"] = templates.get(d.step["key"])
    if lines is not None:
        attach_diagnosis_lines(d, position, lines)
    return d


def attach_diagnosis_lines(d: Diagnosis, position: int, lines: Sequence[str]) -> None:
    """The raw lines around the divergence (``d.lines``) when it is not the verdict's
    ``position`` (whose lines the verdict shows) and not the session's end."""
    if d.position != position and d.observed != END:
        d.lines = list(lines[max(0, d.position - 3) : d.position + 2])


# Allowed next steps a description names (the diagnosis keeps them all).
_SHOWN_NEXT = 5


def _expected(allowed: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"key": k, "probability": round(p, 4)} for k, p in allowed]


def _diagnose_session(
    workflows: Workflows, keys: list[str], position: int, reason: str
) -> Diagnosis:
    i = workflows.assign(keys)
    observed = END if position >= len(keys) else keys[position]
    if i is None:
        state = START if position == 0 else keys[min(position, len(keys)) - 1]
        return Diagnosis(None, state, observed, position)
    wf = workflows[i]
    counts: dict[str, int] = {}
    state = START
    first: tuple[int, str, dict[str, int]] | None = None  # position, state, counts
    snapshot: tuple[str, dict[str, int]] = (START, {})
    # The state at the end is wanted for an early end, or when every entry fits; else the
    # replay stops once it has passed both the flagged entry and the first misfit.
    at_end = reason == "early_end" or position >= len(keys)
    for t, k in enumerate(keys):
        if t == position:
            snapshot = (state, dict(counts))
        if first is None and not wf.allows(state, k, counts):
            first = (t, state, dict(counts))
        if first is not None and t >= position and not at_end:
            break
        # Replay on: later steps are judged from where the session really is.
        counts[k] = counts.get(k, 0) + 1
        state = k
    if position >= len(keys):
        snapshot = (state, dict(counts))

    if reason in ("parameter", "performance") and position < len(keys):
        st, cnt = snapshot
        allowed = wf.allowed(st, cnt)
        diverged = observed not in {b for b, _ in allowed}
        return Diagnosis(
            wf.name, st, observed, position, _expected(allowed), diverged=diverged,
            why=_why(wf, st, observed, cnt) if diverged else None, step={"key": observed},
        )  # fmt: skip
    if first is not None and not at_end:  # the replay may have stopped: no final state
        t, st, cnt = first
        allowed = wf.allowed(st, cnt)
        return Diagnosis(
            wf.name, st, keys[t], t, _expected(allowed), diverged=True,
            why=_why(wf, st, keys[t], cnt),
        )  # fmt: skip
    final = wf.allowed(state, counts)
    ends = END in {b for b, _ in final}
    if at_end or (first is None and not ends):
        # An early end; or every entry fits but the execution as a whole does not: it ends
        # owing steps (a step missing among concurrent ones shows only in the counts).
        rest: list[str] = []
        if not ends:
            found = wf.completion(state, counts)
            if found is None:  # no allowed end within the search: what the counts owe
                found = (
                    list(wf.deficits(counts))
                    or [k for k, _ in wf.successors(state) if k != END][:1]
                )
            rest = found
        return Diagnosis(
            wf.name, state, END, len(keys), _expected(final), diverged=not ends,
            why=None if ends else _why_not_end(wf, counts),
            missing=[{"key": k} for k in rest],
        )  # fmt: skip
    st, cnt = snapshot
    return Diagnosis(
        wf.name, st, observed, position, _expected(wf.allowed(st, cnt)), diverged=False
    )


def _why(wf: Workflow, state: str, key: str, counts: Mapping[str, int]) -> str:
    if key not in wf:
        return "a step this workflow never has"
    if (state, key) not in wf.edges:
        return f"never right after {state}" if state != START else "never how it starts"
    n = counts.get(key, 0) + 1
    most = wf.max_count.get(key)
    if most is not None and n > most:
        return f"occurs at most {most} time{'s' if most > 1 else ''} in normal runs; this is number {n}"
    for a, b, _ in wf.precedes:
        if b == key and n > counts.get(a, 0):
            return f"each needs an earlier {a}; this is number {n} after {counts.get(a, 0)}"
    return "not allowed here"


def _why_not_end(wf: Workflow, counts: Mapping[str, int]) -> str:
    owed = wf.deficits(counts)
    if owed:
        return "still owes " + ", ".join(f"{k} x{n}" for k, n in owed.items())
    return "normal runs never end after this step"


def _diagnose_window(
    workflows: Workflows, keys: list[str], position: int, reason: str
) -> Diagnosis:
    at = min(position, len(keys))
    observed = END if position >= len(keys) else keys[position]
    i = workflows.workflow_of_key(observed) if observed != END else None
    if i is None:  # unseen key or the end: the task of the nearest earlier known entry
        for k in reversed(keys[:at]):
            i = workflows.workflow_of_key(k)
            if i is not None:
                break
    if i is None:
        return Diagnosis(None, START, observed, position)
    wf = workflows[i]
    earlier = [k for k in reversed(keys[:at]) if k in wf][: workflows.config.candidates]
    if observed == END:
        state = earlier[0] if earlier else START
        allowed = wf.successors(state)
        can_end = (state, END) in wf.edges
        rest = [] if can_end else (wf.completion(state, {}) or [])
        return Diagnosis(
            wf.name, state, END, len(keys), _expected(allowed), diverged=not can_end,
            missing=[{"key": k} for k in rest],
        )  # fmt: skip
    leads = next((s for s in earlier if (s, observed) in wf.edges), None)
    if leads is None and (START, observed) in wf.edges and not earlier:
        leads = START
    state = leads if leads is not None else (earlier[0] if earlier else START)
    allowed = wf.successors(state)
    if reason in ("parameter", "performance"):
        return Diagnosis(
            wf.name, state, observed, position, _expected(allowed), diverged=leads is None,
            why=None if leads is not None else _why(wf, state, observed, {}),
            step={"key": observed},
        )  # fmt: skip
    return Diagnosis(
        wf.name, state, observed, position, _expected(allowed), diverged=leads is None,
        why=None if leads is not None else _why(wf, state, observed, {}),
    )  # fmt: skip
