"""Mining workflows from normal executions that have identifiers (one session each).

1. **Task types.** Sessions of different tasks may share keys (a storage or ledger step
   used by several request types), so tasks are separated by key co-occurrence, as the
   DeepLog paper does: two keys are linked when each occurs in more than
   ``cooccurrence`` (0.6) of the sessions of the other; linked keys form a task type's
   core. Above 0.5 a shared key cannot link two task types (it cannot be in most sessions
   of both), and optional steps (in fewer sessions than their task's core) do not form
   cores of their own. Each session goes to the core it shares most keys with; a task
   type's workflow then holds every key of its sessions, shared ones included.
2. **The automaton** of each task type: the directly-follows edges of its sessions with
   ``<start>`` and ``<end>``, their counts and probabilities; per-step occurrence bounds;
   the precedence rules every prefix obeys; concurrent groups and loops (see ``model``).

Identical sessions are counted once with their multiplicity, so the cost grows with the
number of distinct paths, not with the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from logwarden.workflow.model import (
    END,
    START,
    UnionFind,
    Workflow,
    WorkflowConfig,
    Workflows,
    find_loops,
    natural_key,
)


def mine_sessions(
    sessions: Sequence[Sequence[str]], config: WorkflowConfig | None = None
) -> Workflows:
    """Workflows from normal sessions (sequences of log keys, one execution each)."""
    config = config or WorkflowConfig()
    config.validate()
    paths = Counter(tuple(str(k) for k in s) for s in sessions if len(s))
    distinct = list(paths)
    weight = np.array([paths[p] for p in distinct], dtype=np.int64)
    keysets = [frozenset(p) for p in distinct]

    # 1. Task types: cores of mutually co-occurring keys.
    n_key: Counter[str] = Counter()
    n_pair: Counter[tuple[str, str]] = Counter()
    by_set: Counter[frozenset[str]] = Counter()
    for ks, w in zip(keysets, weight.tolist(), strict=True):
        by_set[ks] += w
    for ks, w in by_set.items():
        ordered = sorted(ks)
        for i, a in enumerate(ordered):
            n_key[a] += w
            for b in ordered[i + 1 :]:
                n_pair[(a, b)] += w
    tau = config.cooccurrence
    uf = UnionFind(sorted(n_key))
    for (a, b), n in n_pair.items():
        if n > tau * n_key[a] and n > tau * n_key[b]:
            uf.union(a, b)
    cores: dict[str, set[str]] = {}
    for k in n_key:
        cores.setdefault(uf.find(k), set()).add(k)

    # A task type is entered by its first steps: each session goes to the core of its
    # first key that has a core of several keys (the http routes that all start with a
    # token check are one task, a ledger step in the middle of two request types does not
    # join them); a session without such a key, to the core it shares most keys with
    # (ties: the core of more sessions, then the smaller root key, for determinism).
    core_sessions = Counter({root: 0 for root in cores})
    for ks, w in by_set.items():
        for k in ks:
            core_sessions[uf.find(k)] += w
    first_core: dict[tuple[str, ...], str] = {}
    for p in distinct:
        for k in p:
            root = uf.find(k)
            if len(cores[root]) > 1:
                first_core[p] = root
                break
    assign: dict[frozenset[str], str] = {}
    for ks in by_set:
        hits = Counter(uf.find(k) for k in ks)
        assign[ks] = max(hits, key=lambda r: (hits[r], core_sessions[r], -_rank(r)))
    members: dict[str, list[int]] = {}
    for i, (p, ks) in enumerate(zip(distinct, keysets, strict=True)):
        members.setdefault(first_core.get(p) or assign[ks], []).append(i)
    groups = [
        (root, idx)
        for root, idx in members.items()
        if int(weight[idx].sum()) >= config.min_sessions
    ]
    groups.sort(key=lambda g: (-int(weight[g[1]].sum()), g[0]))

    workflows = []
    for n, (_, idx) in enumerate(groups, start=1):
        workflows.append(
            _automaton(f"W{n}", [distinct[i] for i in idx], weight[idx].tolist(), config)
        )
    # Which workflow each key points to: its sessions' shares.
    share: dict[str, dict[int, float]] = {}
    for n, (_, idx) in enumerate(groups):
        for i in idx:
            for k in keysets[i]:
                share.setdefault(k, {})
                share[k][n] = share[k].get(n, 0.0) + float(weight[i])
    for k, s in share.items():
        total = sum(s.values())
        share[k] = {i: v / total for i, v in s.items()}
    return Workflows(workflows, share, False, config)


def _rank(key: str) -> int:
    """A stable integer for tie-breaking (``E12`` -> 12; other labels by their hash of
    characters, which does not depend on the process)."""
    digits = "".join(ch for ch in key if ch.isdigit())
    return int(digits) if digits else sum(ord(c) for c in key)


def _one_at_a_time(
    a: str, b: str, paths: list[tuple[str, ...]], precedes: list[tuple[str, str, bool]]
) -> bool:
    """True when one of the two steps always comes first and never more than one is
    waiting for its partner: ``item, ledger, item, ledger`` is a loop of one sub-task,
    not two concurrent steps (concurrent pipelines open several at once)."""
    for first, second in ((a, b), (b, a)):
        if not any(x == first and y == second for x, y, _ in precedes):
            continue
        most = 0
        for p in paths:
            open_ = 0
            for k in p:
                open_ += (k == first) - (k == second)
                most = max(most, open_)
            if most > 1:
                return False
        return True
    return False


def _automaton(
    name: str, paths: list[tuple[str, ...]], weights: list[int], config: WorkflowConfig
) -> Workflow:
    edges: Counter[tuple[str, str]] = Counter()
    present: Counter[str] = Counter()  # sessions containing the key
    together: Counter[tuple[str, str]] = Counter()
    pos_sum: Counter[str] = Counter()
    pos_n: Counter[str] = Counter()
    for p, w in zip(paths, weights, strict=True):
        prev = START
        for i, k in enumerate(p):
            edges[(prev, k)] += w
            pos_sum[k] += w * (i + 0.5) / len(p)
            pos_n[k] += w
            prev = k
        edges[(prev, END)] += w
        ks = sorted(set(p))
        for a in ks:
            present[a] += w
        for i, a in enumerate(ks):
            for b in ks[i + 1 :]:
                together[(a, b)] += w
    # Steps in the order they usually come (mean relative position; ties: E2 before E10).
    keys = sorted(present, key=lambda k: (pos_sum[k] / pos_n[k], natural_key(k)))
    index = {k: i for i, k in enumerate(keys)}
    total = sum(weights)

    # Occurrence bounds and precedence rules, over the per-path count matrices.
    K = len(keys)
    min_count = np.full(K, np.iinfo(np.int64).max, dtype=np.int64)
    max_count = np.zeros(K, dtype=np.int64)
    holds = np.ones((K, K), dtype=bool)  # holds[a, b]: b never outnumbers a in a prefix
    equal = np.ones((K, K), dtype=bool)  # equal[a, b]: same counts at the end
    for p in paths:
        codes = np.fromiter((index[k] for k in p), dtype=np.int64, count=len(p))
        onehot = np.zeros((len(p), K), dtype=np.int64)
        onehot[np.arange(len(p)), codes] = 1
        cum = np.cumsum(onehot, axis=0)
        final = cum[-1]
        min_count = np.minimum(min_count, final)
        max_count = np.maximum(max_count, final)
        # b can only outnumber a right after a b: check each position against its key.
        t, a = np.nonzero(cum < cum[np.arange(len(p)), codes][:, None])
        holds[a, codes[t]] = False
        equal &= final[:, None] == final[None, :]
    precedes = []
    for a in range(K):
        for b in range(K):
            if a == b or not holds[a, b] or present[keys[b]] < config.min_support:
                continue
            precedes.append((keys[a], keys[b], bool(equal[a, b])))

    # Concurrency: both orders, each step in nearly every execution of the other, and not
    # the two halves of a sequential loop.
    def with_other(a: str, b: str) -> int:
        return together[(a, b) if a < b else (b, a)]

    out_total: Counter[str] = Counter()
    for (a, _), n in edges.items():
        out_total[a] += n
    structural = {
        (a, b)
        for (a, b), n in edges.items()
        if a != START
        and b != END
        and n >= config.min_support
        and n >= config.structure_share * out_total[a]
    }
    pairs = []
    for a, b in structural:
        if a >= b or (b, a) not in structural:
            continue
        both = with_other(a, b)
        mutual = min(both / present[a], both / present[b]) >= config.concurrency
        if mutual and not _one_at_a_time(a, b, paths, precedes):
            pairs.append((a, b))
    pairs.sort()
    uf = UnionFind(keys)
    for a, b in pairs:
        uf.union(a, b)
    grouped: dict[str, list[str]] = {}
    for a, b in pairs:
        for k in (a, b):
            grouped.setdefault(uf.find(k), [])
            if k not in grouped[uf.find(k)]:
                grouped[uf.find(k)].append(k)
    concurrent = sorted(
        (sorted(g, key=index.__getitem__) for g in grouped.values()),
        key=lambda g: index[g[0]],
    )
    inner = sorted(structural)
    return Workflow(
        name=name,
        keys=keys,
        edges=dict(edges),
        sessions=total,
        max_count={k: int(max_count[i]) for i, k in enumerate(keys)},
        min_count={k: int(min_count[i]) for i, k in enumerate(keys) if min_count[i] > 0},
        precedes=precedes,
        concurrent=concurrent,
        loops=find_loops(keys, inner, concurrent),
        counted=True,
    )
