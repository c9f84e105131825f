"""Workflows: one finite automaton over log keys per task type, with what the data says.

A ``Workflow`` is a directly-follows automaton: its states are log keys (plus ``<start>``
and ``<end>``), an edge ``a -> b`` means that ``b`` came right after ``a`` in a normal
execution, with its count and its probability among ``a``'s successors. Mined from
sessions with identifiers, it also keeps counting rules that the same sessions obey,
which a first-order automaton alone cannot express:

* ``max_count`` / ``min_count``: how often a step occurs in one execution (a retry that
  repeats at most twice, a step done once per replica);
* ``precedes``: ``(a, b, balanced)`` when in every prefix of every execution ``b`` never
  occurred more often than ``a`` (each ``b`` needs an ``a`` before it), and with
  ``balanced`` the two counts are equal at the end (each ``a`` is completed by its ``b``).

``concurrent`` lists groups of steps that occur in either order (both edges exist, each
step occurs in almost every execution of the other, and they are not the two halves of a
sequential loop where one always comes first), ``loops`` the cycles that remain once
the edges inside those groups are set aside (repeats and retries). The state is plain JSON
(``to_state`` / ``from_state``, versioned): no pickle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from logwarden.errors import ConfigError, StateError

START = "<start>"
END = "<end>"
STATE_SCHEMA = "logwarden.workflow/1"


class WorkflowStateError(StateError):
    """A workflow state that cannot be loaded (another schema version, or malformed)."""


def natural_key(key: str) -> tuple[tuple[int, int, str], ...]:
    """A key's sort order with its digit runs as numbers: E5 before E11, 9 before 10 (the
    order keys are listed in for people, where nothing else orders them)."""
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key) if p
    )


@dataclass
class WorkflowConfig:
    """How workflows are mined (see ``mine_workflows``)."""

    # Task separation: two keys belong to one task type's core when each occurs in more
    # than this fraction of the executions (or time windows) of the other. Above 0.5 a key
    # shared by two tasks cannot glue them together (it cannot be in most of both).
    cooccurrence: float = 0.6
    # Concurrency: both orders seen, and each step present in at least this fraction of the
    # executions that have the other (otherwise a two-step cycle is a loop or a branch).
    concurrency: float = 0.95
    # Counting rules need this many executions containing their steps to be stated.
    min_support: int = 5
    # A task type needs this many training executions to get its own workflow.
    min_sessions: int = 1
    # An edge shapes loops and concurrency only with min_support occurrences and at least
    # this share of its source's transitions (rare orders stay edges, drawn thin).
    structure_share: float = 0.005
    # Interleaved logs (no identifiers): how far apart (seconds, or entries when there are
    # no timestamps) two entries of one execution can be, and how many later entries of
    # the same task are examined as the possible next step of each entry.
    horizon: float = 300.0
    candidates: int = 64
    # Interleaved logs: an edge needs this estimated share of its source's transitions.
    min_edge_share: float = 0.002
    # Interleaved logs: recover executions from the identifier values their entries share
    # (which parameters are identifiers is learned; see ``linking``). False: key
    # co-occurrence statistics only.
    link_identifiers: bool = True

    def validate(self) -> None:
        if not 0.5 <= self.cooccurrence < 1.0:
            raise ConfigError(
                f"cooccurrence must be in [0.5, 1) (got {self.cooccurrence!r})",
                field="cooccurrence",
            )
        if not 0.5 <= self.concurrency <= 1.0:
            raise ConfigError(
                f"concurrency must be in [0.5, 1] (got {self.concurrency!r})", field="concurrency"
            )
        for name in ("min_support", "min_sessions", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer (got {value!r})", field=name)
        if not (isinstance(self.horizon, int | float) and self.horizon > 0):
            raise ConfigError(f"horizon must be positive (got {self.horizon!r})", field="horizon")
        if not 0.0 <= self.structure_share < 1.0:
            raise ConfigError(
                f"structure_share must be in [0, 1) (got {self.structure_share!r})",
                field="structure_share",
            )
        if not isinstance(self.link_identifiers, bool):
            raise ConfigError(
                f"link_identifiers must be true or false (got {self.link_identifiers!r})",
                field="link_identifiers",
            )
        if not 0.0 <= self.min_edge_share < 1.0:
            raise ConfigError(
                f"min_edge_share must be in [0, 1) (got {self.min_edge_share!r})",
                field="min_edge_share",
            )


# How many completions a workflow remembers (bounded: a service runs for ever).
_COMPLETIONS_KEPT = 4096


@dataclass
class Workflow:
    """One task type's automaton (see the module docstring)."""

    name: str
    keys: list[str]  # its steps, in the order they usually come
    edges: dict[tuple[str, str], int]  # (from, to) -> count; from may be START, to END
    sessions: int  # training executions it was mined from (estimated when interleaved)
    max_count: dict[str, int] = field(default_factory=dict)
    min_count: dict[str, int] = field(default_factory=dict)
    precedes: list[tuple[str, str, bool]] = field(default_factory=list)
    concurrent: list[list[str]] = field(default_factory=list)
    loops: list[list[str]] = field(default_factory=list)
    counted: bool = True  # False when mined from interleaved logs (no counting rules)

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        out: dict[str, list[tuple[str, int]]] = {}
        totals: dict[str, int] = {}
        for (a, b), n in self.edges.items():
            out.setdefault(a, []).append((b, n))
            totals[a] = totals.get(a, 0) + n
        for succ in out.values():  # the most frequent first; ties in natural order (E2, E10)
            succ.sort(key=lambda t: (-t[1], natural_key(t[0])))
        self._out = out
        self._totals = totals
        # Successors with their probabilities, most likely first: asked at every entry.
        self._succ = {a: [(b, n / totals[a]) for b, n in lst] for a, lst in out.items()}
        self._needs: dict[str, list[str]] = {}
        self._balanced: list[tuple[str, str]] = []
        for a, b, balanced in self.precedes:
            self._needs.setdefault(b, []).append(a)
            if balanced:
                self._balanced.append((a, b))
        self._keyset = set(self.keys)
        self._to_end: dict[str, float] | None = None  # see _end_costs
        # Completions found so far: early ends repeat (a few distinct prefixes among
        # thousands of sessions), and a search that finds no end spends its whole budget.
        self._completions: dict[tuple[Any, ...], list[str] | None] = {}

    # -- reading the automaton ------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self._keyset

    def probability(self, a: str, b: str) -> float:
        total = self._totals.get(a, 0)
        return self.edges.get((a, b), 0) / total if total else 0.0

    def successors(self, state: str) -> list[tuple[str, float]]:
        """The steps seen right after ``state`` (END included), most likely first."""
        return list(self._succ.get(state, ()))

    @property
    def start_keys(self) -> list[str]:
        return [k for k, _ in self.successors(START)]

    def allowed(self, state: str, counts: Mapping[str, int]) -> list[tuple[str, float]]:
        """The steps the workflow allows after ``state`` when the execution so far has
        ``counts`` of each step: a successor edge, not beyond the step's most occurrences,
        and no step outnumbering one it needs; END when the counts are complete."""
        out = []
        counted = self.counted
        for b, p in self._succ.get(state, ()):
            if b == END:
                if self.can_end(counts):
                    out.append((b, p))
            elif not counted or self._count_ok(b, counts):
                out.append((b, p))
        return out

    def allows(self, state: str, key: str, counts: Mapping[str, int]) -> bool:
        """Whether ``key`` is among ``allowed(state, counts)``, without listing them (the
        replay of a session asks this at every entry)."""
        if (state, key) not in self.edges:
            return False
        if key == END:
            return self.can_end(counts)
        return not self.counted or self._count_ok(key, counts)

    def _count_ok(self, b: str, counts: Mapping[str, int]) -> bool:
        n = counts.get(b, 0) + 1
        if n > self.max_count.get(b, n):
            return False
        needs = self._needs.get(b)
        if needs:  # a plain loop: asked for every successor at every entry of a replay
            for a in needs:
                if n > counts.get(a, 0):
                    return False
        return True

    def can_end(self, counts: Mapping[str, int]) -> bool:
        if not self.counted:
            return True
        if any(counts.get(k, 0) < m for k, m in self.min_count.items()):
            return False
        return all(counts.get(a, 0) == counts.get(b, 0) for a, b in self._balanced)

    def deficits(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Steps the execution still owes: below their fewest occurrences, or fewer than the
        step they complete (balanced rules)."""
        need: dict[str, int] = {}
        if not self.counted:
            return need
        for k, m in self.min_count.items():
            if counts.get(k, 0) < m:
                need[k] = max(need.get(k, 0), m - counts.get(k, 0))
        for a, b in self._balanced:
            gap = counts.get(a, 0) - counts.get(b, 0)
            if gap > 0:
                need[b] = max(need.get(b, 0), gap)
        # In the keys' natural order (5 before 11): the rules' own order differs between a
        # fitted workflow and a loaded one (its state keeps them sorted as text), and an
        # explanation said "owes 5 x1, 11 x3" before a save and "11 x3, 5 x1" after.
        return dict(sorted(need.items(), key=lambda kv: natural_key(kv[0])))

    def completion(
        self, state: str, counts: Mapping[str, int], max_expansions: int = 20000
    ) -> list[str] | None:
        """The most likely steps that take an execution from ``state`` with ``counts`` to
        an allowed end (a best-first search over the automaton and its counting rules),
        or None when no end is reachable within the search budget."""
        start_counts = tuple(sorted((k, v) for k, v in counts.items() if v))
        memo = (state, start_counts, max_expansions)
        if memo in self._completions:
            found = self._completions[memo]
            return None if found is None else list(found)
        if len(self._completions) >= _COMPLETIONS_KEPT:
            self._completions.clear()
        found = self._search(state, start_counts, max_expansions)
        self._completions[memo] = found
        return None if found is None else list(found)

    def _end_costs(self) -> dict[str, float]:
        """Per step, the cost (-log probability) of the cheapest way to END over the edges
        alone, counting rules ignored (Dijkstra backwards from END); steps that cannot
        reach END are absent. A lower bound of every completion's cost: the search's
        heuristic."""
        if self._to_end is None:
            import heapq

            into: dict[str, list[tuple[str, float]]] = {}
            for a, succ in self._succ.items():
                for b, p in succ:
                    into.setdefault(b, []).append((a, -math.log(p)))
            best: dict[str, float] = {END: 0.0}
            heap = [(0.0, END)]
            while heap:
                d, b = heapq.heappop(heap)
                if d > best.get(b, math.inf):
                    continue
                for a, c in into.get(b, ()):
                    if d + c < best.get(a, math.inf):
                        best[a] = d + c
                        heapq.heappush(heap, (d + c, a))
            self._to_end = best
        return self._to_end

    def _search(
        self, state: str, start_counts: tuple[tuple[str, int], ...], max_expansions: int
    ) -> list[str] | None:
        import heapq

        # A*: ordered by cost so far plus the cheapest way to END ignoring the counts, a
        # lower bound that never overestimates, so the first END reached is still the most
        # likely completion; and steps with no way to END at all are never queued.
        to_end = self._end_costs()
        if state not in to_end:
            return None
        Item = tuple[float, int, float, str, tuple[tuple[str, int], ...], tuple[str, ...]]
        heap: list[Item] = [(to_end[state], 0, 0.0, state, start_counts, ())]
        seen: set[tuple[str, tuple[tuple[str, int], ...]]] = set()
        tie = 0
        expansions = 0
        while heap and expansions < max_expansions:
            _, _, cost, s, cnt, path = heapq.heappop(heap)
            if s == END:
                return list(path)
            if (s, cnt) in seen:
                continue
            seen.add((s, cnt))
            expansions += 1
            current = dict(cnt)
            for b, p in self.allowed(s, current):
                rest = to_end.get(b)
                if rest is None:
                    continue
                c = cost - math.log(p)
                tie += 1
                if b == END:
                    # Ending is a step too: the cheapest complete path wins.
                    heapq.heappush(heap, (c, tie, c, END, cnt, path))
                    continue
                nxt = dict(current)
                nxt[b] = nxt.get(b, 0) + 1
                heapq.heappush(heap, (c + rest, tie, c, b, tuple(sorted(nxt.items())), (*path, b)))
        return None

    # -- state ----------------------------------------------------------------------------

    def absorb(self, keys: Sequence[str]) -> None:
        """Take one more normal execution (an online update's): its edges are counted,
        steps new to the workflow join ``keys`` after the step before them, and the
        counting rules widen to admit it (occurrence bounds; a precedence rule it breaks
        is dropped, a balance it breaks is no longer required). Concurrency groups and
        loops stay as mined: they describe the picture, not what is allowed."""
        prev = START
        for k in keys:
            self.edges[(prev, k)] = self.edges.get((prev, k), 0) + 1
            if k not in self._keyset:
                at = self.keys.index(prev) + 1 if prev in self._keyset else 0
                self.keys.insert(at, k)
                self._keyset.add(k)
            prev = k
        self.edges[(prev, END)] = self.edges.get((prev, END), 0) + 1
        self.sessions += 1
        if self.counted:
            final: dict[str, int] = {}
            for k in keys:
                final[k] = final.get(k, 0) + 1
            for k, n in final.items():
                self.max_count[k] = max(self.max_count.get(k, 0), n)
            for k, m in list(self.min_count.items()):
                if final.get(k, 0) < m:
                    if final.get(k, 0):
                        self.min_count[k] = final[k]
                    else:
                        del self.min_count[k]
            kept = []
            for a, b, balanced in self.precedes:
                seen: dict[str, int] = {}
                ok = True
                for k in keys:
                    seen[k] = seen.get(k, 0) + 1
                    if k == b and seen[b] > seen.get(a, 0):
                        ok = False
                        break
                if ok:
                    kept.append((a, b, balanced and final.get(a, 0) == final.get(b, 0)))
            self.precedes = kept
        self._index()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keys": list(self.keys),
            "edges": [[a, b, n] for (a, b), n in sorted(self.edges.items())],
            "sessions": self.sessions,
            "max_count": dict(sorted(self.max_count.items())),
            "min_count": dict(sorted(self.min_count.items())),
            "precedes": [[a, b, bal] for a, b, bal in self.precedes],
            "concurrent": [list(g) for g in self.concurrent],
            "loops": [list(c) for c in self.loops],
            "counted": self.counted,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Workflow:
        return cls(
            name=str(d["name"]),
            keys=[str(k) for k in d["keys"]],
            edges={(str(a), str(b)): int(n) for a, b, n in d["edges"]},
            sessions=int(d["sessions"]),
            max_count={str(k): int(v) for k, v in d.get("max_count", {}).items()},
            min_count={str(k): int(v) for k, v in d.get("min_count", {}).items()},
            precedes=[(str(a), str(b), bool(bal)) for a, b, bal in d.get("precedes", [])],
            concurrent=[[str(k) for k in g] for g in d.get("concurrent", [])],
            loops=[[str(k) for k in c] for c in d.get("loops", [])],
            counted=bool(d.get("counted", True)),
        )


@dataclass
class Workflows:
    """The workflows of a training set, and which task type each key points to.

    ``key_share[k][i]``: the share of the training executions containing key ``k`` that
    belong to workflow ``i``; a session is assigned to the workflow its keys point to most.
    ``interleaved``: mined from windows of interleaved tasks (no identifiers)."""

    workflows: list[Workflow]
    key_share: dict[str, dict[int, float]]
    interleaved: bool = False
    config: WorkflowConfig = field(default_factory=WorkflowConfig)

    def __len__(self) -> int:
        return len(self.workflows)

    def __iter__(self) -> Any:
        return iter(self.workflows)

    def __getitem__(self, i: int) -> Workflow:
        return self.workflows[i]

    def by_name(self, name: str) -> Workflow | None:
        return next((w for w in self.workflows if w.name == name), None)

    def assign(self, keys: Iterable[str]) -> int | None:
        """The workflow an execution with these keys follows (None: no known key)."""
        score: dict[int, float] = {}
        for k in set(keys):
            for i, share in self.key_share.get(k, {}).items():
                score[i] = score.get(i, 0.0) + share
        if not score:
            return None
        return max(score, key=lambda i: (score[i], self.workflows[i].sessions, -i))

    def learn(self, sessions: Iterable[Sequence[str]]) -> Workflows:
        """A copy that also knows these normal executions (an online update's sessions):
        each joins the workflow its known keys point to (``Workflow.absorb``), and keys
        new to every workflow point to that one. Executions without a known key, and
        workflows of interleaved logs (mined from statistics, not executions), are left
        as they are."""
        state, _ = self.to_state()
        out = Workflows.from_state(state)
        if out.interleaved:
            return out
        for session in sessions:
            keys = [str(k) for k in session]
            i = out.assign(keys) if keys else None
            if i is None:
                continue
            out.workflows[i].absorb(keys)
            for k in keys:
                out.key_share.setdefault(k, {i: 1.0})
        return out

    def workflow_of_key(self, key: str) -> int | None:
        shares = self.key_share.get(key)
        if not shares:
            return None
        return max(shares, key=lambda i: (shares[i], -i))

    # -- state ----------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Plain JSON (the bundle's manifest stores it); no arrays (the second item)."""
        from dataclasses import asdict

        state = {
            "schema": STATE_SCHEMA,
            "interleaved": self.interleaved,
            "config": asdict(self.config),
            "workflows": [w.to_dict() for w in self.workflows],
            "key_share": {
                k: {str(i): round(v, 6) for i, v in sorted(s.items())}
                for k, s in sorted(self.key_share.items())
            },
        }
        return state, {}

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], arrays: Mapping[str, Any] | None = None
    ) -> Workflows:
        if not isinstance(state, Mapping) or state.get("schema") != STATE_SCHEMA:
            found = state.get("schema") if isinstance(state, Mapping) else type(state).__name__
            raise WorkflowStateError(
                f"workflow state {found!r} is not supported (this logwarden reads {STATE_SCHEMA})"
            )
        try:
            config = WorkflowConfig(**state.get("config", {}))
            workflows = [Workflow.from_dict(w) for w in state["workflows"]]
            share = {
                str(k): {int(i): float(v) for i, v in s.items()}
                for k, s in state["key_share"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkflowStateError(f"malformed workflow state: {exc}") from None
        n = len(workflows)
        if any(not 0 <= i < n for s in share.values() for i in s):
            raise WorkflowStateError("malformed workflow state: key share of an unknown workflow")
        return cls(workflows, share, bool(state.get("interleaved", False)), config)

    def export(self, templates: Mapping[str, str]) -> dict[str, Any]:
        """The documented machine-readable form (``logwarden workflow --json``):
        ``{"workflows": [{"name", "nodes": [{"key", "template"}], "edges": [{"from", "to",
        "count", "probability"}]}]}``, plus each workflow's ``concurrent`` groups and
        ``loops``."""
        out = []
        for w in self.workflows:
            edges = []
            for (a, b), n in sorted(w.edges.items(), key=lambda e: _edge_order(w, e[0])):
                edges.append(
                    {
                        "from": a,
                        "to": b,
                        "count": int(n),
                        "probability": round(w.probability(a, b), 6),
                    }
                )
            out.append(
                {
                    "name": w.name,
                    "nodes": [{"key": k, "template": templates.get(k, k)} for k in w.keys],
                    "edges": edges,
                    "concurrent": [list(g) for g in w.concurrent],
                    "loops": [list(c) for c in w.loops],
                }
            )
        return {"workflows": out}


def _edge_order(w: Workflow, edge: tuple[str, str]) -> tuple[int, int]:
    pos = {k: i for i, k in enumerate(w.keys)}
    a, b = edge
    return (-1 if a == START else pos.get(a, len(pos)), len(pos) if b == END else pos.get(b, -1))


class UnionFind:
    """Disjoint sets of keys (path halving)."""

    def __init__(self, items: Sequence[str]) -> None:
        self.parent = {k: k for k in items}

    def find(self, k: str) -> str:
        root = k
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[k] != root:
            self.parent[k], k = root, self.parent[k]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def strongly_connected(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), in ``nodes`` order."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in succ and b in succ:
            succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    order = {n: i for i, n in enumerate(nodes)}
    for comp in out:
        comp.sort(key=order.__getitem__)
    out.sort(key=lambda c: order[c[0]])
    return out


def find_loops(
    keys: Sequence[str], edges: Iterable[tuple[str, str]], concurrent: Sequence[Sequence[str]]
) -> list[list[str]]:
    """Cycles of the automaton once the edges inside concurrency groups are set aside:
    each strongly connected component of two or more steps, and each step with an edge to
    itself."""
    group = {k: i for i, g in enumerate(concurrent) for k in g}
    kept = []
    self_loops = set()
    for a, b in edges:
        if a == b:
            self_loops.add(a)
        elif not (a in group and group.get(b) == group[a]):
            kept.append((a, b))
    loops = [c for c in strongly_connected(keys, kept) if len(c) > 1]
    in_cycle = {k for c in loops for k in c}
    loops += [[k] for k in keys if k in self_loops and k not in in_cycle]
    order = {k: i for i, k in enumerate(keys)}
    loops.sort(key=lambda c: order[c[0]])
    return loops
