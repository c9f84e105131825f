"""Workflows mined from normal executions, and the diagnosis of verdicts against them
(DeepLog's third component): see ``model`` (the automaton and its JSON state), ``mine``
(sessions with identifiers), ``linking`` (logs without identifiers: executions recovered
from the identifier values their entries share), ``interleaved`` (logs without
identifiers: key co-occurrence statistics, for what no identifier links), ``diagnose`` and
``render`` (text, Graphviz pictures, the HTML report)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from logwarden.workflow.interleaved import mine_interleaved
from logwarden.workflow.linking import Linked, link_executions, mine_windows
from logwarden.workflow.mine import mine_sessions
from logwarden.workflow.model import (
    END,
    START,
    STATE_SCHEMA,
    Workflow,
    WorkflowConfig,
    Workflows,
    WorkflowStateError,
)

if TYPE_CHECKING:
    from logwarden.sessions import Session

__all__ = [
    "END",
    "START",
    "STATE_SCHEMA",
    "Linked",
    "Workflow",
    "WorkflowConfig",
    "WorkflowStateError",
    "Workflows",
    "link_executions",
    "mine_interleaved",
    "mine_sessions",
    "mine_windows",
    "mine_workflows",
]


def mine_workflows(
    sessions: Sequence[Sequence[str]],
    events: Sequence[Session] | None = None,
    interleaved: bool = False,
    config: WorkflowConfig | None = None,
) -> Workflows:
    """Workflows from normal training sessions: one execution per session
    (``mine_sessions``), or with ``interleaved`` windows of a log without identifiers. With
    their ``events`` (entries with timestamps and parameters), executions are recovered from
    the identifier values the entries share and the rest is mined statistically
    (``mine_windows``); without, statistically from the keys alone (``mine_interleaved``)."""
    if not interleaved:
        return mine_sessions(sessions, config)
    if events is None:
        return mine_interleaved(sessions, None, config)
    keys: list[str] = []
    times: list[float | None] = []
    values: list[list[str]] = []
    seen: set[tuple[str, int]] = set()
    for window, session in zip(sessions, events, strict=True):
        for k, e in zip(window, session.events, strict=True):
            line = e.record.line
            # Overlapping (sliding) windows hold a line more than once: it is one entry.
            where = (line.source, line.lineno)
            if line.lineno > 0:
                if where in seen:
                    continue
                seen.add(where)
            keys.append(str(k))
            times.append(e.record.timestamp)
            values.append([p.value for p in e.params])
    return mine_windows(keys, times, values, config)
