"""Mining workflows from logs without identifiers (windows of interleaved executions)
from keys and times alone: for the entries that no identifier value links into
executions (``linking``), or for every entry when ``link_identifiers`` is off.

Without identifiers the entries of concurrent executions are interleaved, so neither the
sessions nor their directly-follows pairs are observed. Following the DeepLog paper, the
tasks are separated by co-occurrence of keys within a time horizon, and each task's
automaton comes from the ordering of its keys:

1. **Co-occurrence beyond chance.** For every ordered pair of keys ``(a, b)``, the lags
   from each ``a`` to the ``b`` entries after it within ``horizon`` are counted in
   log-spaced bins; what exceeds the count expected by chance (``b``'s own rate, measured
   at lags between one and two horizons, where no execution reaches) is the share of
   those ``b`` that belong to the same execution as the ``a``. Only bins whose excess is
   beyond two standard deviations of chance, and beyond a tenth of it (a drifting rate),
   count.
2. **Task types**: keys whose same-execution partners make up more than ``cooccurrence``
   of each other's occurrences are linked (the same rule as with identifiers); linked keys
   form cores, and every other key joins the core holding its most frequent partner, when
   that partner is in the same execution as more than half of its occurrences (otherwise
   it is a task of its own).
3. **Next steps**: for each entry of a task, its later entries of the same task within
   the horizon are candidates for the next step of its execution, in order; each is that
   step with the probability that it belongs to the same execution at its lag (from 1.),
   unless an earlier candidate already was. The expected counts give the edges; what is
   left after the horizon is the end of the execution. The start is estimated the same
   way backwards. Edges below ``min_edge_share`` of their source's transitions are noise.

Counting rules (occurrences per execution, precedence) need whole executions and are not
stated here; concurrency and loops come from the edges. Entries are placed on their
timestamps; without timestamps, on their position (the horizon then counts entries).
"""

from __future__ import annotations

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

_BINS = 48
# Occurrences of one key used as anchors for the lag statistics and the next-step
# estimates: enough for the rates, bounded cost on large logs.
_MAX_ANCHORS = 4000
# How far chance can be off through a drifting rate (a share of it).
_DRIFT = 0.1


def mine_interleaved(
    windows: Sequence[Sequence[str]],
    times: Sequence[Sequence[float | None]] | None = None,
    config: WorkflowConfig | None = None,
    seed: int = 0,
) -> Workflows:
    """Workflows from windows of a log without identifiers, in log order (their entries
    concatenated are the stream); ``times``: each entry's timestamp (seconds), if known."""
    config = config or WorkflowConfig()
    config.validate()
    keys: list[str] = [str(k) for w in windows for k in w]
    if not keys:
        return Workflows([], {}, True, config)
    t = timeline(windows, times, len(keys))
    vocab = sorted(set(keys))
    code = {k: i for i, k in enumerate(vocab)}
    stream = np.fromiter((code[k] for k in keys), dtype=np.int64, count=len(keys))
    order = np.argsort(t, kind="stable")
    stream, t = stream[order], t[order]
    rng = np.random.default_rng(seed)
    K = len(vocab)
    horizon = float(config.horizon)
    edges_bins = _lag_bins(t, horizon)
    # Anchors see two horizons of log after them (else chance would be underestimated).
    complete = t + 2 * horizon <= t[-1]
    anchors = _anchors(np.where(complete, stream, -1), K, rng)
    excess, same = _excess(stream, t, anchors, edges_bins, horizon, K)

    n = np.bincount(stream, minlength=K).astype(np.float64)
    # same[a, b]: estimated same-execution b entries within the horizon after one a entry.
    pair = same * n[:, None]  # same-execution (a, b) pairs, a first
    both = pair + pair.T  # either order
    frac = both / np.maximum(n[:, None], 1.0)  # per occurrence of the row key
    tau = config.cooccurrence
    uf = UnionFind([str(i) for i in range(K)])
    for a in range(K):
        for b in range(a + 1, K):
            if frac[a, b] > tau and frac[b, a] > tau:
                uf.union(str(a), str(b))
    roots: dict[str, list[int]] = {}
    for a in range(K):
        roots.setdefault(uf.find(str(a)), []).append(a)
    cores = [g for g in roots.values() if len(g) > 1]
    member = np.full(K, -1, dtype=np.int64)
    for ci, g in enumerate(cores):
        member[g] = ci
    for a in range(K):
        if member[a] >= 0 or not cores:
            continue
        scores = [frac[a, g].max() for g in cores]
        best = int(np.argmax(scores))
        if scores[best] > 0.5:
            member[a] = best
    groups = [list(np.flatnonzero(member == ci)) for ci in range(len(cores))]
    groups += [[a] for a in range(K) if member[a] < 0]

    workflows: list[Workflow] = []
    share: dict[str, dict[int, float]] = {}
    mined = []
    for g in groups:
        counts = _next_steps(stream, t, g, excess, edges_bins, horizon, config, rng)
        mined.append((g, counts))
    mined.sort(key=lambda m: -float(m[1][1].sum()))  # by estimated executions
    for g, (trans, start) in mined:
        wf = _automaton(f"W{len(workflows) + 1}", g, vocab, trans, start, n, frac, config)
        if wf is None:
            continue
        for a in g:
            share.setdefault(vocab[a], {})[len(workflows)] = 1.0
        workflows.append(wf)
    return Workflows(workflows, share, True, config)


def timeline(
    windows: Sequence[Sequence[str]], times: Sequence[Sequence[float | None]] | None, n: int
) -> np.ndarray:
    """Entry times of ``n`` entries in windows: their timestamps when (nearly) all have
    one (a missing one takes the one before), else their positions."""
    if times is not None:
        flat = [x for w in times for x in w]
        known = [x for x in flat if x is not None]
        if len(flat) == n and len(known) >= 0.9 * n:
            out = np.empty(n, dtype=np.float64)
            last = known[0]
            for i, x in enumerate(flat):
                last = x if x is not None else last
                out[i] = last
            return out
    return np.arange(n, dtype=np.float64)


def _lag_bins(t: np.ndarray, horizon: float) -> np.ndarray:
    """Log-spaced lag bin edges over [0, horizon], the first from 0 (same instant)."""
    steps = np.diff(t)
    positive = steps[steps > 0]
    low = float(np.min(positive)) if len(positive) else horizon * 1e-6
    low = min(max(low, horizon * 1e-7), horizon / 100)
    return np.concatenate(([0.0], np.geomspace(low, horizon, _BINS)))


def _anchors(stream: np.ndarray, K: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for a in range(K):
        idx = np.flatnonzero(stream == a)
        if len(idx) > _MAX_ANCHORS:
            idx = np.sort(rng.choice(idx, _MAX_ANCHORS, replace=False))
        out.append(idx)
    return out


def _excess(
    stream: np.ndarray,
    t: np.ndarray,
    anchors: list[np.ndarray],
    bins: np.ndarray,
    horizon: float,
    K: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (a, b, lag bin): the probability that a ``b`` at that lag after an ``a``
    belongs to the same execution (0 where not significant); and per (a, b) the expected
    same-execution ``b`` entries within the horizon after one ``a``."""
    nb = len(bins) - 1
    width = np.diff(bins)
    width[0] = max(width[0], bins[1])  # the first bin holds lag 0 up to the second edge
    prob = np.zeros((K, K, nb), dtype=np.float64)
    same = np.zeros((K, K), dtype=np.float64)
    end_far = np.searchsorted(t, t + 2 * horizon, side="right")
    start_far = np.searchsorted(t, t + horizon, side="right")
    end_near = start_far
    for a in range(K):
        idx = anchors[a]
        if len(idx) == 0:
            continue
        hist = np.zeros((K, nb), dtype=np.float64)
        far = np.zeros(K, dtype=np.float64)
        for chunk in np.array_split(idx, max(1, len(idx) // 256)):
            near_i, near_j = _ranges(chunk + 1, end_near[chunk])
            lag = t[near_j] - t[near_i]
            b = stream[near_j]
            bin_of = np.clip(np.searchsorted(bins, lag, side="right") - 1, 0, nb - 1)
            np.add.at(hist, (b, bin_of), 1.0)
            _far_i, far_j = _ranges(start_far[chunk], end_far[chunk])
            np.add.at(far, stream[far_j], 1.0)
        m = len(idx)
        rate = far / (m * horizon)  # chance entries of b per unit of lag, per anchor
        chance = rate[:, None] * width[None, :] * m
        over = hist - chance
        # Beyond two standard deviations of chance, and beyond a tenth of it: the rate
        # of a log drifts (arrivals stop before its last entries), which a far-lag
        # estimate of chance misses by a few percent.
        significant = (over > 2.0 * np.sqrt(chance + 1.0)) & (over > _DRIFT * chance)
        over = np.where(significant, over, 0.0)
        prob[a] = np.where(hist > 0, over / np.maximum(hist, 1e-12), 0.0)
        same[a] = over.sum(axis=1) / m
    return prob, same


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (row, index) pairs with index in [lo[row], hi[row]) as two flat arrays of the
    anchor position (``lo - 1``) and the later index."""
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(lo)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    j = lo[rows] + offsets
    return lo[rows] - 1, j


def _next_steps(
    stream: np.ndarray,
    t: np.ndarray,
    group: list[int],
    prob: np.ndarray,
    bins: np.ndarray,
    horizon: float,
    config: WorkflowConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected transitions within one task: (trans[a, b] over the group's keys and END as
    the last column, per occurrence of a; start[b]: expected executions starting with b,
    per occurrence of b)."""
    G = len(group)
    local = {a: i for i, a in enumerate(group)}
    mask = np.isin(stream, group)
    pos = np.flatnonzero(mask)
    sub = np.array([local[int(a)] for a in stream[pos]], dtype=np.int64)
    ts = t[pos]
    sub_prob = prob[np.ix_(group, group)]  # (G, G, bins)
    nb = len(bins) - 1
    trans = np.zeros((G, G + 1), dtype=np.float64)
    start = np.zeros(G, dtype=np.float64)
    count = np.zeros(G, dtype=np.float64)
    M = config.candidates
    for a in range(G):
        idx = np.flatnonzero(sub == a)
        if len(idx) > _MAX_ANCHORS:
            idx = np.sort(rng.choice(idx, _MAX_ANCHORS, replace=False))
        count[a] = len(idx)
        if len(idx) == 0:
            continue
        for direction in (1, -1):
            j = idx[:, None] + direction * np.arange(1, M + 1)[None, :]
            valid = (j >= 0) & (j < len(sub))
            jj = np.clip(j, 0, len(sub) - 1)
            lag = np.abs(ts[jj] - ts[idx][:, None])
            valid &= lag <= horizon
            bin_of = np.clip(np.searchsorted(bins, lag, side="right") - 1, 0, nb - 1)
            other = sub[jj]
            p = sub_prob[a, other, bin_of] if direction == 1 else sub_prob[other, a, bin_of]
            p = np.where(valid, p, 0.0)
            survive = np.cumprod(1.0 - p, axis=1)
            before = np.concatenate([np.ones((len(idx), 1)), survive[:, :-1]], axis=1)
            take = before * p
            left = survive[:, -1]
            if direction == 1:
                np.add.at(trans[a], other.ravel(), take.ravel())
                trans[a, G] += left.sum()
            else:
                start[a] += left.sum()
    per = np.maximum(count, 1.0)
    return trans / per[:, None], start / per


def _automaton(
    name: str,
    group: list[int],
    vocab: list[str],
    trans: np.ndarray,
    start: np.ndarray,
    n: np.ndarray,
    frac: np.ndarray,
    config: WorkflowConfig,
) -> Workflow | None:
    G = len(group)
    names = [vocab[a] for a in group] + [END]
    totals = n[group]
    counts = trans * totals[:, None]  # expected transitions over the whole log
    starts = start * totals
    edges: dict[tuple[str, str], int] = {}
    for i in range(G):
        row = counts[i]
        keep = row >= max(config.min_edge_share * row.sum(), 0.5)
        for j in np.flatnonzero(keep):
            edges[(names[i], names[j])] = max(1, round(float(row[j])))
    start_keep = starts >= max(config.min_edge_share * starts.sum(), 0.5)
    for i in np.flatnonzero(start_keep):
        edges[(START, names[i])] = max(1, round(float(starts[i])))
    if not any(a == START for a, _ in edges):
        # Nothing looks like a beginning: the most frequent key starts it.
        edges[(START, names[int(np.argmax(totals))])] = 1
    _reach_every_step(edges, names[:G], counts[:, :G], starts)
    executions = round(float(starts.sum())) or 1
    # Order of steps: breadth-first from the start along the strongest edges.
    keys = _order([vocab[a] for a in group], edges)
    out_total: dict[str, int] = {}
    for (a, _), c in edges.items():
        out_total[a] = out_total.get(a, 0) + c
    structural = {
        (a, b)
        for (a, b), c in edges.items()
        if a != START and b != END and c >= config.min_support
        and c >= config.structure_share * out_total[a]
    }  # fmt: skip
    code = {vocab[a]: a for a in group}
    together = {
        (a, b)
        for a in code
        for b in code
        if frac[code[a], code[b]] > config.cooccurrence
        and frac[code[b], code[a]] > config.cooccurrence
    }
    concurrent = _concurrent(keys, structural, together)
    return Workflow(
        name=name,
        keys=keys,
        edges=edges,
        sessions=executions,
        concurrent=concurrent,
        loops=find_loops(keys, sorted(structural), concurrent),
        counted=False,
    )


def _reach_every_step(
    edges: dict[tuple[str, str], int], names: list[str], counts: np.ndarray, starts: np.ndarray
) -> None:
    """Keep, for each step no kept edge leads to from the start, its strongest way in from
    a step that is reached (or from the start), until every step is: the shares drop rare
    edges, and a step left with edges out but none in was drawn and diagnosed as a place
    no execution can get to."""
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    reached: set[str] = set()
    todo = [START]
    while True:
        while todo:
            a = todo.pop()
            for b in succ.get(a, ()):
                if b not in reached:
                    reached.add(b)
                    todo.append(b)
        missing = [j for j, k in enumerate(names) if k not in reached]
        if not missing:
            return
        best = (-1.0, START, missing[0])
        for j in missing:
            ways = [(float(starts[j]), START)] + [
                (float(counts[i, j]), names[i]) for i, k in enumerate(names) if k in reached
            ]
            value, source = max(ways)
            if value > best[0]:
                best = (value, source, j)
        value, source, j = best
        edges[(source, names[j])] = max(1, round(value))
        succ.setdefault(source, []).append(names[j])
        reached.add(names[j])
        todo.append(names[j])


def _order(keys: list[str], edges: dict[tuple[str, str], int]) -> list[str]:
    succ: dict[str, list[tuple[int, str]]] = {}
    for (a, b), c in edges.items():
        succ.setdefault(a, []).append((-c, b))
    seen: list[str] = []
    frontier = [START]
    while frontier:
        nxt = []
        for a in frontier:
            # The strongest edges first; ties in the keys' natural order (E2 before E10).
            for _, b in sorted(succ.get(a, []), key=lambda cb: (cb[0], natural_key(cb[1]))):
                if b not in seen and b != END and b != START:
                    seen.append(b)
                    nxt.append(b)
        frontier = nxt
    return seen + sorted((k for k in keys if k not in seen), key=natural_key)


def _concurrent(
    keys: list[str], structural: set[tuple[str, str]], together: set[tuple[str, str]]
) -> list[list[str]]:
    """Two steps seen in both orders are concurrent when each has the other in its
    executions (same-execution co-occurrence above ``cooccurrence`` both ways); otherwise
    the two-step cycle is a loop."""
    uf = UnionFind(keys)
    pairs = []
    for a, b in structural:
        if a < b and (b, a) in structural and (a, b) in together:
            pairs.append((a, b))
    for a, b in sorted(pairs):
        uf.union(a, b)
    grouped: dict[str, list[str]] = {}
    for a, b in pairs:
        for k in (a, b):
            g = grouped.setdefault(uf.find(k), [])
            if k not in g:
                g.append(k)
    index = {k: i for i, k in enumerate(keys)}
    return sorted(
        (sorted(g, key=index.__getitem__) for g in grouped.values()), key=lambda g: index[g[0]]
    )
