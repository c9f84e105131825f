"""Executions recovered from a log without identifiers, by the values their entries share.

A log read without a session identifier (``--window``) usually still names its objects in
the messages: a block id, a request id, an instance uuid, a transaction number. Which
parameter is such an identifier is not told; it is learned from the data, per *slot* (a
log key, a parameter of it, and a token of that parameter's value, split at spaces and
punctuation, so that ``[req-1 user project]`` has three tokens):

* a token value is **local** when it recurs, and all its entries lie within ``horizon``
  of each other (one execution's lifetime); it is **spread** when it recurs over a longer
  time (a host, a user, a constant, a status code: values shared by many executions);
* a slot holds an **identifier** when most of its entries carry a local value
  (``_LINK_SHARE``) and few a spread one (``_SPREAD_SHARE``): an identifier comes back
  within one execution and never again; a host or a small number comes back for ever, a
  fresh random value (a size, a duration) does not come back at all, and a value from a
  pool that is reused (a worker, a wrapping counter) comes back later often enough that
  two executions close in time may share it: such a slot is no identifier. A few spread
  values are tolerated (executions that lived longer than the horizon).

Entries that share a value of an identifier slot belong to one execution (a union-find
over entries), whatever key or parameter position the value is in, as long as each comes
within ``horizon`` of the one before: a long execution stays whole, a value back after a
longer pause starts another. Keys most of whose entries join an execution of two entries
or more are **linked**; their executions are mined as sessions (``mine_sessions``).
Entries of the other keys (background lines, tasks whose messages name nothing) are left
to the statistical miner (``mine_interleaved``).

The test of locality needs a log several horizons long (``MIN_SPANS``): in a shorter one
a host seen twice looks like an identifier, so no slot is taken there.

This is how request-flow tools recover executions from logs without a request context
(lprof, OSDI 2014; CloudSeer, ASPLOS 2016): identifiers are values, not a format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from logwarden.workflow.interleaved import mine_interleaved, timeline
from logwarden.workflow.mine import mine_sessions
from logwarden.workflow.model import Workflow, WorkflowConfig, Workflows

# A slot is an identifier when at least this share of its entries carry a local value...
_LINK_SHARE = 0.5
# ...and at most this share of its entries carry a value spread over a longer time.
_SPREAD_SHARE = 0.2
# The log must span this many horizons before locality means anything.
MIN_SPANS = 4.0
# A key is linked when at least this share of its entries join executions.
_KEY_SHARE = 0.5
# Tokens shorter than this are small numbers, words and flags: never identifiers (and
# they are most of the tokens; skipping them keeps the pass cheap).
_MIN_TOKEN = 4

_SPLIT = re.compile(r"[\s/:,;=()\[\]{}\"'<>|@]+")


@dataclass
class Linked:
    """What ``link_executions`` found: ``executions`` (entry indices of each execution of
    two entries or more, in log order), ``linked_keys``, ``residual`` (entry indices left
    to the statistical miner, in log order), ``slots`` (the identifier slots:
    ``(key, parameter, token)``) and ``dropped`` (entries of linked keys that joined no
    execution: their identifier came once, so nothing says where they belong)."""

    executions: list[list[int]] = field(default_factory=list)
    linked_keys: set[str] = field(default_factory=set)
    residual: list[int] = field(default_factory=list)
    slots: list[tuple[str, int, int]] = field(default_factory=list)
    dropped: int = 0


def link_executions(
    keys: Sequence[str],
    times: np.ndarray,
    values: Sequence[Sequence[str]],
    horizon: float,
) -> Linked:
    """Executions of a log without identifiers (see the module docstring): ``keys`` and
    ``times`` per entry, in log order (times ascending: seconds, or positions),
    ``values`` each entry's parameter values."""
    n = len(keys)
    if n == 0:
        return Linked()
    t = np.asarray(times, dtype=np.float64)
    if float(t[-1] - t[0]) < MIN_SPANS * horizon:
        return Linked(residual=list(range(n)))

    # Every token of every parameter, with its slot and value as small integers.
    slot_id: dict[tuple[str, int, int], int] = {}
    value_id: dict[str, int] = {}
    tok_entry: list[int] = []
    tok_slot: list[int] = []
    tok_value: list[int] = []
    for i, (k, vals) in enumerate(zip(keys, values, strict=True)):
        for p, v in enumerate(vals):
            for j, tok in enumerate(_SPLIT.split(v)):
                if len(tok) < _MIN_TOKEN:
                    continue
                tok_entry.append(i)
                tok_slot.append(slot_id.setdefault((k, p, j), len(slot_id)))
                tok_value.append(value_id.setdefault(tok, len(value_id)))
    if not tok_entry:
        return Linked(residual=list(range(n)))
    entry = np.asarray(tok_entry, dtype=np.int64)
    slot = np.asarray(tok_slot, dtype=np.int64)
    value = np.asarray(tok_value, dtype=np.int64)
    V, S = len(value_id), len(slot_id)

    # Per value: entries, and the time between its first and last.
    count = np.bincount(value, minlength=V)
    first = np.full(V, np.inf)
    last = np.full(V, -np.inf)
    np.minimum.at(first, value, t[entry])
    np.maximum.at(last, value, t[entry])
    local = (count >= 2) & (last - first <= horizon)
    spread = (count >= 2) & ~local

    # Per slot: the share of its entries with a local value, and with a spread one.
    total = np.bincount(slot, minlength=S).astype(np.float64)
    n_local = np.bincount(slot, weights=local[value].astype(np.float64), minlength=S)
    n_spread = np.bincount(slot, weights=spread[value].astype(np.float64), minlength=S)
    is_id = (n_local >= _LINK_SHARE * total) & (n_spread <= _SPREAD_SHARE * total)
    slots = [s for s, i in slot_id.items() if is_id[i]]

    # Entries sharing a value of an identifier slot, each within ``horizon`` of the one
    # before: one execution. A value that comes back after a longer pause starts another
    # (and an execution that lived longer than the horizon, with pauses shorter than it,
    # stays whole: whether a slot is an identifier was settled above).
    use = is_id[slot] & (count[value] >= 2)
    parent = np.arange(n)
    order = np.lexsort((entry[use], value[use]))
    v_used, e_used = value[use][order], entry[use][order]
    same = np.flatnonzero((v_used[1:] == v_used[:-1]) & (t[e_used[1:]] - t[e_used[:-1]] <= horizon))
    for a, b in zip(e_used[same].tolist(), e_used[same + 1].tolist(), strict=True):
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    root = np.array([_find(parent, i) for i in range(n)], dtype=np.int64)
    size = np.bincount(root, minlength=n)
    joined = size[root] >= 2

    # Keys linked: most of their entries joined an execution.
    key_id: dict[str, int] = {}
    codes = np.fromiter((key_id.setdefault(k, len(key_id)) for k in keys), np.int64, count=n)
    per_key = np.bincount(codes, minlength=len(key_id)).astype(np.float64)
    joined_key = np.bincount(codes, weights=joined.astype(np.float64), minlength=len(key_id))
    linked_code = joined_key >= _KEY_SHARE * per_key
    linked_entry = linked_code[codes]
    linked_keys = {k for k, c in key_id.items() if linked_code[c]}

    groups: dict[int, list[int]] = {}
    for i in np.flatnonzero(linked_entry & joined).tolist():
        groups.setdefault(int(root[i]), []).append(i)
    # An execution whose other entries were of unlinked keys is left with one entry: it
    # is kept (a one-step execution), as the id-based miner would.
    executions = list(groups.values())
    executions.sort(key=lambda e: e[0])
    return Linked(
        executions=executions,
        linked_keys=linked_keys,
        residual=np.flatnonzero(~linked_entry).tolist(),
        slots=sorted(slots),
        dropped=int((linked_entry & ~joined).sum()),
    )


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = int(parent[root])
    while parent[i] != root:
        parent[i], i = root, int(parent[i])
    return root


def mine_windows(
    keys: Sequence[str],
    times: Sequence[float | None] | None,
    values: Sequence[Sequence[str]],
    config: WorkflowConfig | None = None,
    seed: int = 0,
) -> Workflows:
    """Workflows of a log without identifiers from its entries (in log order: ``keys``,
    ``times`` in seconds when known, ``values`` their parameter values): the executions
    their shared identifier values give (``link_executions``) mined as sessions, the
    entries of keys that no identifier links mined statistically (``mine_interleaved``).
    Workflows from linked executions keep their edges, concurrency and loops; their
    counting rules are dropped, since a window of interleaved tasks cannot be replayed
    step by step against them."""
    config = config or WorkflowConfig()
    config.validate()
    n = len(keys)
    t = timeline([keys], [list(times)] if times is not None else None, n)
    order = np.argsort(t, kind="stable")
    keys = [str(keys[i]) for i in order]
    values = [values[i] for i in order]
    t = t[order]
    linked = (
        link_executions(keys, t, values, float(config.horizon))
        if config.link_identifiers
        else Linked(residual=list(range(n)))
    )
    if not linked.executions:
        return mine_interleaved([keys], [t.tolist()], config, seed)
    by_links = mine_sessions([[keys[i] for i in e] for e in linked.executions], config)
    parts: list[tuple[Workflow, dict[str, float]]] = []
    for w_i, wf in enumerate(by_links):
        share = {k: s[w_i] for k, s in by_links.key_share.items() if w_i in s}
        uncounted = replace(wf, max_count={}, min_count={}, precedes=[], counted=False)
        parts.append((uncounted, share))
    if linked.residual:
        rest = mine_interleaved(
            [[keys[i] for i in linked.residual]],
            [[float(t[i]) for i in linked.residual]],
            config,
            seed,
        )
        for w_i, wf in enumerate(rest):
            share = {k: s[w_i] for k, s in rest.key_share.items() if w_i in s}
            parts.append((wf, share))
    # Most executions first, named in that order as either miner does.
    parts.sort(key=lambda p: -p[0].sessions)
    workflows: list[Workflow] = []
    key_share: dict[str, dict[int, float]] = {}
    for i, (wf, share) in enumerate(parts):
        workflows.append(replace(wf, name=f"W{i + 1}"))
        for k, s in share.items():
            key_share.setdefault(k, {})[i] = s
    return Workflows(workflows, key_share, True, config)
