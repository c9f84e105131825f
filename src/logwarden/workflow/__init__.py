"""Workflows mined from normal executions, and the diagnosis of verdicts against them
(DeepLog's third component): see ``model`` (the automaton and its JSON state), ``mine``
(sessions with identifiers), ``interleaved`` (logs without identifiers), ``diagnose`` and
``render`` (text, Graphviz pictures, the HTML report)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from logwarden.workflow.interleaved import mine_interleaved
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
    "Workflow",
    "WorkflowConfig",
    "WorkflowStateError",
    "Workflows",
    "mine_interleaved",
    "mine_sessions",
    "mine_workflows",
]


def mine_workflows(
    sessions: Sequence[Sequence[str]],
    events: Sequence[Session] | None = None,
    interleaved: bool = False,
    config: WorkflowConfig | None = None,
) -> Workflows:
    """Workflows from normal training sessions: one execution per session
    (``mine_sessions``), or with ``interleaved`` windows of a log without identifiers
    (``mine_interleaved``, placed on the entries' timestamps when ``events`` are given)."""
    if not interleaved:
        return mine_sessions(sessions, config)
    times = None
    if events is not None:
        times = [[e.record.timestamp for e in s.events] for s in events]
    return mine_interleaved(sessions, times, config)
