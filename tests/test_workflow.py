"""Workflows mined from normal sessions: task types, edges, counting rules, concurrency,
loops, state round trip, and the diagnosis of anomalous sessions against them."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from collections import Counter

import pytest

from logwarden.sim import CONCURRENT_STEPS, StepClassifier, task_paths
from logwarden.workflow import (
    END,
    START,
    Workflows,
    WorkflowStateError,
    mine_interleaved,
    mine_sessions,
)
from logwarden.workflow.diagnose import Diagnosis, diagnose


def _task_a(rng: random.Random) -> list[str]:
    """login, then either list (with 0-2 retries before the page) or show, then done;
    two checks run concurrently in between."""
    s = ["a_login"]
    s += rng.sample(["a_check1", "a_check2"], 2)  # either order
    if rng.random() < 0.6:
        s += ["a_retry"] * rng.choice([0, 0, 1, 2]) + ["a_list"]
    else:
        s.append("a_show")
    s.append("a_done")
    return s


def _task_b(rng: random.Random) -> list[str]:
    """A second task type that shares the ledger step with nothing else; `ledger` is
    written once per item (1-3 items), each item opened first."""
    s = ["b_begin"]
    n = rng.randint(1, 3)
    for _ in range(n):
        s += ["b_item", "ledger"]
    s.append("b_commit")
    return s


def _sessions(n: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [(_task_a if rng.random() < 0.5 else _task_b)(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def mined() -> Workflows:
    return mine_sessions(_sessions(600))


def _wf_of(wfs: Workflows, key: str):
    i = wfs.workflow_of_key(key)
    assert i is not None
    return wfs[i]


def test_one_workflow_per_task_type_with_counts_and_probabilities(mined: Workflows) -> None:
    assert len(mined) == 2
    a, b = _wf_of(mined, "a_login"), _wf_of(mined, "b_begin")
    assert a is not b
    assert set(a.keys) == {
        "a_login",
        "a_check1",
        "a_check2",
        "a_retry",
        "a_list",
        "a_show",
        "a_done",
    }
    assert set(b.keys) == {"b_begin", "b_item", "ledger", "b_commit"}
    assert a.sessions + b.sessions == 600
    # Edge counts come from the data: every execution of a starts with a_login.
    assert a.edges[(START, "a_login")] == a.sessions
    assert a.edges[("a_done", END)] == a.sessions
    assert a.probability(START, "a_login") == 1.0
    # a branch: list or show after the checks; its probabilities add up with the rest.
    succ = dict(a.successors("a_check2")) | dict(a.successors("a_check1"))
    assert "a_show" in succ and ("a_list" in succ or "a_retry" in succ)
    total = sum(p for _, p in a.successors("a_check1"))
    assert total == pytest.approx(1.0)
    # Sessions are assigned to the workflow their keys point to.
    assert mined.assign(["b_begin", "b_item"]) == mined.workflow_of_key("b_begin")


def test_concurrency_and_loops_are_recognised(mined: Workflows) -> None:
    a, b = _wf_of(mined, "a_login"), _wf_of(mined, "b_begin")
    assert [sorted(g) for g in a.concurrent] == [["a_check1", "a_check2"]]
    assert ["a_retry"] in a.loops  # a retry that repeats
    # b's item loop: b_item -> ledger -> b_item is a cycle, not concurrency.
    assert b.concurrent == []
    assert any(set(c) == {"b_item", "ledger"} for c in b.loops)


def test_counting_rules(mined: Workflows) -> None:
    a, b = _wf_of(mined, "a_login"), _wf_of(mined, "b_begin")
    assert a.max_count["a_retry"] == 2 and a.max_count["a_login"] == 1
    assert a.min_count["a_login"] == 1 and "a_retry" not in a.min_count
    # every ledger write needs its item first, and completes it
    assert ("b_item", "ledger", True) in b.precedes
    assert b.allowed("b_item", {"b_begin": 1, "b_item": 1}) == [("ledger", 1.0)]
    # a second ledger write without a second item is not allowed
    assert "ledger" not in {
        k for k, _ in b.allowed("ledger", {"b_begin": 1, "b_item": 1, "ledger": 1})
    }
    assert not b.can_end({"b_begin": 1, "b_item": 2, "ledger": 1})
    assert b.deficits({"b_begin": 1, "b_item": 2, "ledger": 1}) == {"ledger": 1, "b_commit": 1}


def test_allows_answers_as_allowed_does(mined: Workflows) -> None:
    """The replay asks ``allows`` at each entry; it must agree with the listed steps for
    every state, step and count, the end and a step outside the workflow included."""
    rng = random.Random(3)
    for wf in mined.workflows:
        states = [START, *wf.keys]
        for _ in range(300):
            counts = {k: rng.randint(0, 3) for k in wf.keys if rng.random() < 0.6}
            state = rng.choice(states)
            listed = {k for k, _ in wf.allowed(state, counts)}
            for key in [*wf.keys, END, "not_a_step"]:
                assert wf.allows(state, key, counts) == (key in listed), (wf.name, state, key)


def _cheapest_completion(wf, state: str, counts: dict[str, int]) -> float | None:
    """Reference: a plain uniform-cost search over (step, counts), no heuristic, no pruning:
    the cost (-log probability) of the most likely way to an allowed end."""
    import heapq
    import math

    heap = [(0.0, 0, state, tuple(sorted(counts.items())))]
    seen = set()
    tie = 0
    while heap:
        cost, _, s, cnt = heapq.heappop(heap)
        if s == END:
            return cost
        if (s, cnt) in seen or len(seen) > 50_000:
            continue
        seen.add((s, cnt))
        for b, p in wf.allowed(s, dict(cnt)):
            nxt = dict(cnt)
            if b != END:
                nxt[b] = nxt.get(b, 0) + 1
            tie += 1
            heapq.heappush(heap, (cost - math.log(p), tie, b, tuple(sorted(nxt.items()))))
    return None


def test_completion_is_the_most_likely_allowed_way_to_the_end(mined: Workflows) -> None:
    """The completion search (A*, its bound the cheapest way to END over the edges alone)
    finds a path the counting rules allow, as likely as the best one a plain search finds,
    and finds none exactly when there is none."""
    import math

    rng = random.Random(5)
    checked = 0
    cases = []
    for keys in _sessions(200, seed=7):  # prefixes of real runs, and random states
        cut = rng.randint(0, len(keys) - 1)
        cases.append((keys[cut - 1] if cut else START, dict(Counter(keys[:cut])), keys))
    for wf in mined.workflows:
        for _ in range(100):
            counts = {k: rng.randint(0, 2) for k in wf.keys if rng.random() < 0.5}
            cases.append((rng.choice([START, *wf.keys]), counts, wf.keys))
    for state, counts, keys in cases:
        wf = mined[mined.assign(keys)]
        best = _cheapest_completion(wf, state, counts)
        path = wf.completion(state, counts)
        if best is None:
            assert path is None, (wf.name, state, counts)
            continue
        assert path is not None, (wf.name, state, counts)
        cost, s, cnt = 0.0, state, dict(counts)
        for k in [*path, END]:
            assert wf.allows(s, k, cnt), (wf.name, state, counts, path)
            cost -= math.log(wf.probability(s, k))
            cnt[k] = cnt.get(k, 0) + 1
            s = k
        assert cost == pytest.approx(best, rel=1e-9, abs=1e-12)
        checked += 1
    assert checked > 100


def test_state_round_trip_is_json_and_checked(mined: Workflows) -> None:
    state = json.loads(json.dumps(mined.to_state()[0]))
    again = Workflows.from_state(state)
    assert again.to_state() == mined.to_state()
    assert again.assign(["a_login", "a_show"]) == mined.assign(["a_login", "a_show"])
    with pytest.raises(WorkflowStateError, match="not supported"):
        Workflows.from_state({**state, "schema": "logwarden.workflow/999"})
    with pytest.raises(WorkflowStateError, match="malformed"):
        Workflows.from_state({**state, "workflows": [{"name": "x"}]})


def test_export_follows_the_documented_schema(mined: Workflows) -> None:
    out = mined.export({"a_login": "User <*> logged in"})
    assert set(out) == {"workflows"}
    for wf in out["workflows"]:
        assert isinstance(wf["name"], str)
        for node in wf["nodes"]:
            assert set(node) == {"key", "template"}
        keys = {n["key"] for n in wf["nodes"]}
        for e in wf["edges"]:
            assert set(e) == {"from", "to", "count", "probability"}
            assert e["from"] in keys | {START} and e["to"] in keys | {END}
            assert isinstance(e["count"], int) and 0 < e["probability"] <= 1
    login = next(n for w in out["workflows"] for n in w["nodes"] if n["key"] == "a_login")
    assert login["template"] == "User <*> logged in"


def test_diagnosis_of_a_wrong_step(mined: Workflows) -> None:
    keys = ["a_login", "a_check1", "a_check2", "a_done"]  # neither list nor show
    d = diagnose(mined, keys, 3, "ranked_out", {"a_done": "done"})
    assert d.workflow == _wf_of(mined, "a_login").name
    assert d.state == "a_check2" and d.observed == "a_done" and d.diverged
    expected = {e["key"] for e in d.expected}
    assert "a_show" in expected and "a_done" not in expected
    assert d.observed_template == "done"
    assert "never right after a_check2" in (d.why or "")
    text = "\n".join(d.describe())
    assert "left the workflow at entry 4" in text and "allows next" in text  # from 1


def test_a_description_names_the_likeliest_next_steps_and_counts_the_rest() -> None:
    # A hub with eight successors, one common and seven rare: the diagnosis keeps all of
    # them, the text names the five likeliest (most likely first) and counts the others.
    rng = random.Random(3)
    rare = [f"r{i}" for i in range(7)]
    sessions = [["hub", "common", "end"] for _ in range(300)]
    sessions += [["hub", rng.choice(rare), "end"] for _ in range(70)]
    wfs = mine_sessions(sessions)
    d = diagnose(wfs, ["hub", "odd", "end"], 1, "unseen_key")
    assert len(d.expected) == 8 and d.expected[0]["key"] == "common"
    line = next(t for t in d.describe() if "allows next" in t)
    assert line.count("(0.") == 5 and line.endswith("; and 3 rarer")
    assert line.index("common (0.81)") < line.index("r3 (0.03)")


def test_a_rare_edge_is_labelled_rare_not_zero() -> None:
    from logwarden.workflow.render import workflows_dot

    wfs = mine_sessions([["a", "b", "c"]] * 400 + [["a", "c"]])
    dot = workflows_dot(wfs, {})
    assert 'label="<0.01"' in dot and "label=0.00" not in dot
    assert "label=1.00" in dot  # b -> c, always


def test_diagnosis_of_a_count_violation_and_an_unseen_key(mined: Workflows) -> None:
    # Three retries: every edge exists, the count rule does not allow the third.
    keys = ["a_login", "a_check1", "a_check2", "a_retry", "a_retry", "a_retry", "a_list", "a_done"]
    d = diagnose(mined, keys, 5, "ranked_out")
    assert (d.position, d.observed, d.diverged) == (5, "a_retry", True)
    assert "at most 2 times" in (d.why or "")
    assert "a_retry" not in {e["key"] for e in d.expected}
    d = diagnose(mined, ["b_begin", "b_item", "boom"], 2, "unseen_key")
    assert d.workflow == _wf_of(mined, "b_begin").name
    assert d.state == "b_item" and d.observed == "boom"
    assert [e["key"] for e in d.expected] == ["ledger"]


def test_diagnosis_of_an_early_end_names_the_missing_steps(mined: Workflows) -> None:
    keys = ["b_begin", "b_item", "ledger", "b_item"]
    d = diagnose(mined, keys, len(keys), "early_end")
    assert d.observed == END and d.diverged
    assert [m["key"] for m in d.missing or []] == ["ledger", "b_commit"]
    assert "still missing" in "\n".join(d.describe())
    # A step owed several times is named with its template once.
    owed = Diagnosis(
        "W1", "b_item", END, 4,
        missing=[{"key": "ledger", "template": "write <*>"}] * 2 + [{"key": "b_commit"}],
    )  # fmt: skip
    assert "  still missing to reach its end: ledger 'write <*>' -> ledger -> b_commit" in (
        owed.describe()
    )
    # A complete session that the key model found too short: the workflow may end there.
    keys = ["b_begin", "b_item", "ledger", "b_commit"]
    d = diagnose(mined, keys, len(keys), "early_end")
    assert not d.diverged and d.missing == []


def test_a_diagnosis_copy_is_equal_and_shares_nothing_mutable(mined: Workflows) -> None:
    """Copies of a session share one diagnosis search; each verdict gets a copy that
    equals it field by field and whose lists and dicts are its own."""
    keys = ["b_begin", "b_item", "ledger", "b_item"]
    d = diagnose(mined, keys, len(keys), "early_end", lines=["l0", "l1", "l2", "l3"])
    d.step, d.lines = {"key": "b_item"}, ["x"]
    c = d.copy()
    assert c == d and c.to_dict() == d.to_dict()
    for f in dataclasses.fields(d):
        value = getattr(d, f.name)
        if isinstance(value, list | dict):
            assert getattr(c, f.name) is not value, f.name
    assert c.missing and d.missing and c.missing[0] is not d.missing[0]
    c.expected.append({"key": "x"})
    assert {"key": "x"} not in d.expected


def test_repeated_early_ends_get_the_same_completion(mined: Workflows) -> None:
    """Completions are remembered (thousands of early ends share a few prefixes): the same
    answer every time, and a caller changing the list it got changes nothing."""
    keys = ["b_begin", "b_item", "ledger", "b_item"]
    first = diagnose(mined, keys, len(keys), "early_end")
    wf = next(w for w in mined.workflows if "b_commit" in w.keys)
    path = wf.completion("b_item", Counter(keys))
    assert path and path[-1] == "b_commit"
    path.append("x")
    assert wf.completion("b_item", Counter(keys)) == path[:-1]
    again = diagnose(mined, keys, len(keys), "early_end")
    assert again.missing == first.missing


def test_a_step_missing_among_concurrent_ones_is_diagnosed_at_the_end() -> None:
    """Two workers each log ``work`` then ``done``, interleaved in any order: without one
    ``done`` every entry still follows an edge and no prefix breaks a rule, but the
    execution owes that ``done`` at its end."""
    rng = random.Random(1)
    sessions = []
    for _ in range(300):
        order = rng.choice([["w", "w", "d", "d"], ["w", "d", "w", "d"]])
        sessions.append(["c_open", *[f"c_{'work' if k == 'w' else 'done'}" for k in order],
                         "c_close"])  # fmt: skip
    wfs = mine_sessions(sessions)
    keys = ["c_open", "c_work", "c_work", "c_done", "c_close"]
    d = diagnose(wfs, keys, 3, "ranked_out")
    assert (d.observed, d.position, d.state, d.diverged) == (END, 5, "c_close", True)
    assert [m["key"] for m in d.missing or []] == ["c_done"]
    assert "c_done x1" in (d.why or "") and END not in {e["key"] for e in d.expected}
    # The whole execution fits: nothing diverged, the flagged entry is described.
    d = diagnose(wfs, [*keys[:3], "c_done", "c_done", "c_close"], 3, "ranked_out")
    assert (d.observed, d.position, d.diverged) == ("c_done", 3, False)


def test_diagnosis_of_a_parameter_anomaly_names_the_step(mined: Workflows) -> None:
    keys = ["a_login", "a_check2", "a_check1", "a_show", "a_done"]
    d = diagnose(mined, keys, 3, "performance", {"a_show": "show <*>"})
    assert d.step == {"key": "a_show", "template": "show <*>"}
    assert d.state == "a_check1" and not d.diverged
    assert "happened in step a_show" in "\n".join(d.describe())
    again = Diagnosis.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again.to_dict() == d.to_dict()


def test_a_parameter_anomaly_at_a_step_off_the_workflow_says_so_too(mined: Workflows) -> None:
    """A timing anomaly at a step the workflow does not allow there (a step before it is
    missing): the text names the step and also that the run left its workflow, with the
    steps it allows instead, as the JSON's ``diverged`` and ``expected`` do."""
    keys = ["a_login", "a_check1", "a_check2", "a_done"]  # neither list nor show
    d = diagnose(mined, keys, 3, "performance", {"a_done": "done", "a_show": "show <*>"})
    assert d.step == {"key": "a_done", "template": "done"} and d.diverged
    assert "never right after a_check2" in (d.why or "")
    text = "\n".join(d.describe())
    assert "happened in step a_done 'done'" in text
    assert (
        "the run left the workflow here: at step a_check2, observed a_done (never right after a_check2)"
        in text
    )
    allows = next(t for t in d.describe() if "allows next" in t)
    assert "a_show 'show <*>'" in allows and "a_done" not in allows
    again = Diagnosis.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again.describe() == d.describe()


def test_a_divergence_before_the_flagged_entry_is_named_as_such(mined: Workflows) -> None:
    """The key model flags entry 5; the run had left its workflow at entry 3 already: the
    text and the HTML say that it is an earlier entry than the flagged one, and show the
    raw lines of both places, each under its own heading."""
    from logwarden.detect import REASONS, Verdict
    from logwarden.workflow.render import html_report

    keys = ["a_login", "a_check1", "a_check2", "a_done", "a_done", "boom"]
    lines = [f"line of {k} #{i}" for i, k in enumerate(keys)]
    d = diagnose(mined, keys, 5, "unseen_key", lines=lines)
    assert (d.position, d.observed, d.diverged) == (3, "a_done", True)
    v = Verdict("s1", True, len(keys), 9.0, "unseen_key", "keys", 5, "boom", diagnosis=d)
    v.lines = lines[2:]
    text = v.describe()
    # Entries from 1 in the text (positions 3 and 5), the divergence's own line marked.
    assert "the run had left the workflow earlier, at entry 4 (the flagged entry is 6)" in text
    assert "lines where it left the workflow (entry 4):\n  | line of a_login #0" in text
    assert "  > line of a_done #3" in text
    # Where the divergence is the flagged entry, nothing more is said.
    same = diagnose(mined, keys[:4], 3, "ranked_out")
    assert "left the workflow at entry 4, at step a_check2" in "\n".join(same.describe(3))
    page = html_report([v], mined, {}, REASONS)
    assert "the run had left the workflow earlier, at entry 4 (the flagged entry is 6)" in page
    flagged = page.index("Raw lines around the flagged entry:")
    left = page.index("Raw lines where the run left its workflow (entry 4):")
    assert "line of boom #5" in page[flagged:left] and "line of a_login #0" in page[left:]


def test_unknown_keys_have_no_workflow(mined: Workflows) -> None:
    d = diagnose(mined, ["x", "y"], 1, "unseen_key")
    assert d.workflow is None and d.to_dict()["expected"] == []


def _mine_stream(events: list[tuple[float, str]]) -> Workflows:
    """Workflows of (time, key) entries merged in time order, cut into windows of 50."""
    events = sorted(events)
    keys = [k for _, k in events]
    times = [ts for ts, _ in events]
    windows = [keys[i : i + 50] for i in range(0, len(keys), 50)]
    wtimes = [times[i : i + 50] for i in range(0, len(times), 50)]
    return mine_interleaved(windows, wtimes)


def test_interleaved_windows_separate_tasks_and_find_their_edges() -> None:
    """Two tasks with distinct keys run concurrently, their entries interleaved in one
    stream without identifiers; cut into windows, the miner still finds each task's
    chain from the lags between entries."""
    rng = random.Random(3)
    events: list[tuple[float, str]] = []
    t = 0.0
    for _ in range(3000):
        t += rng.expovariate(1.0)  # about two executions overlapping
        if rng.random() < 0.5:
            steps = ["p1", "p2", "p3", "p4"]
            gaps = [0.0, 0.2, 0.5, 0.3]
        else:
            steps = ["q1", "q2", "q3"]
            gaps = [0.0, 1.0, 0.1]
        at = t
        for s, g in zip(steps, gaps, strict=True):
            at += g * rng.uniform(0.5, 1.5)
            events.append((at, s))
    wfs = _mine_stream(events)
    assert wfs.interleaved
    p = wfs[wfs.workflow_of_key("p1")]
    q = wfs[wfs.workflow_of_key("q1")]
    assert p is not q
    assert set(p.keys) == {"p1", "p2", "p3", "p4"} and set(q.keys) == {"q1", "q2", "q3"}
    # Every true edge is found, and each step's most likely successor is the true one
    # (weaker edges remain: without identifiers the estimate leaks onto later steps).
    for wf, chain in ((p, ["p1", "p2", "p3", "p4"]), (q, ["q1", "q2", "q3"])):
        path = [START, *chain, END]
        for a, b in itertools.pairwise(path):
            assert (a, b) in wf.edges
            assert wf.successors(a)[0][0] == b, (a, wf.successors(a))
    d = diagnose(wfs, ["p4", "q1", "p3"], 2, "ranked_out")
    assert d.workflow == p.name and d.observed == "p3" and d.state == "p4" and d.diverged
    d = diagnose(wfs, ["p1", "q1", "p2"], 2, "ranked_out")
    assert (d.state, d.diverged) == ("p1", False)


def test_simulator_exposes_its_transition_graph() -> None:
    paths = list(task_paths("http", 300, seed=1))
    assert all(p[0] == "Token validated" and p[-1] == "HTTP response" for p in paths)
    edges = Counter((a, b) for p in paths for a, b in itertools.pairwise(p))
    assert edges[("Token validated", "cache hit")] > 0
    assert ("HTTP response", "Token validated") not in edges
    assert CONCURRENT_STEPS["vm"] == (frozenset({"VM Resumed", "Instance spawned"}),)
    classify = StepClassifier()
    line = (
        "2026-03-01 00:00:00.000 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: "
        "/user/root/x/part-00001. blk_-42"
    )
    assert classify(line) == ("hdfs", "allocateBlock")
    assert classify("2026-03-01 00:00:00.000 1 INFO x: nothing") is None


def test_what_an_execution_owes_is_listed_in_the_keys_natural_order() -> None:
    """The rules' order differed between a fitted workflow and a loaded one, and so did
    the explanation ("still owes 5 x1, 11 x3" before a save, "11 x3, 5 x1" after)."""
    from logwarden.workflow.model import Workflow

    base = {"name": "W1", "keys": ["5", "9", "11", "26"], "edges": [], "sessions": 10}
    a = Workflow.from_dict({**base, "min_count": {"26": 3, "5": 1, "11": 3, "9": 3}})
    b = Workflow.from_dict({**base, "min_count": {"11": 3, "26": 3, "5": 1, "9": 3}})
    assert list(a.deficits({})) == list(b.deficits({})) == ["5", "9", "11", "26"]
    c = Workflow.from_dict({**base, "keys": ["E11", "E5"], "min_count": {"E11": 1, "E5": 2}})
    assert list(c.deficits({})) == ["E5", "E11"]


def test_steps_and_next_steps_are_listed_in_the_keys_natural_order() -> None:
    """Equally likely steps (alternatives, concurrent ones) were listed in the string order
    of their keys: "-> E10 0.17, E11 0.17, E2 0.17", the steps E10, E11, E12, E2, E20,
    E9, in the text, the HTML's expected steps and the picture; also after a load."""
    from logwarden.workflow.render import workflows_dot, workflows_text

    alternatives = ("E2", "E10", "E11", "E9")
    sessions = [["E1", k, "E3"] for k in alternatives for _ in range(5)]
    sessions += [["E1", "E12", "E20", "E3"]] * 5 + [["E1", "E20", "E12", "E3"]] * 5
    mined = mine_sessions(sessions)
    loaded = Workflows.from_state(json.loads(json.dumps(mined.to_state()[0])))
    natural = ["E2", "E9", "E10", "E11", "E12", "E20"]
    for wfs in (mined, loaded):
        wf = wfs[0]
        assert wf.keys == ["E1", *natural, "E3"]
        assert [k for k, _ in wf.successors("E1")] == natural
        text = workflows_text(wfs, {})
        assert "-> " + ", ".join(f"{k} 0.17" for k in natural) in text
        steps = [line.split()[0] for line in text.splitlines() if line.startswith("  E")]
        assert steps == wf.keys
        d = diagnose(wfs, ["E1", "E7"], 1, "unseen_key", {})
        assert [e["key"] for e in d.expected] == natural
    dot = workflows_dot(mined, {})
    heads = [dot.index(f"w0_n0 -> w0_n{i} ") for i in range(1, 7)]
    assert heads == sorted(heads)  # E1's edges to E2, E9, ..., E20 in that order
    # Mined from interleaved windows: the same order among equally strong steps.
    stream = [k for i in range(400) for k in ("E1", alternatives[i % 4], "E3")]
    inter = mine_interleaved([stream[i : i + 30] for i in range(0, len(stream), 30)])[0]
    assert inter.keys == ["E1", "E2", "E9", "E10", "E11", "E3"]
    assert [k for k, _ in inter.successors("E1")][:4] == ["E2", "E9", "E10", "E11"]


def test_workflows_learn_the_executions_an_update_marks_normal(mined: Workflows) -> None:
    """An online update learnt a new step but the workflows did not: its diagnoses blamed
    the step just marked normal ("a step this workflow never has")."""
    upgraded = ["a_login", "a_check1", "a_ip", "a_check2", "a_show", "a_done"]
    before = diagnose(mined, upgraded, 2, "unseen_key")
    assert before.diverged and before.observed == "a_ip"
    learnt = mined.learn([upgraded, ["b_begin", "b_item", "ledger", "b_item", "b_commit"]])
    assert "a_ip" not in _wf_of(mined, "a_login")  # a copy: the original is unchanged
    wf = _wf_of(learnt, "a_ip")
    assert wf.name == _wf_of(learnt, "a_login").name
    assert wf.keys.index("a_ip") == wf.keys.index("a_check1") + 1
    assert wf.allows("a_check1", "a_ip", {"a_login": 1, "a_check1": 1})
    assert wf.edges[("a_ip", "a_check2")] == 1
    after = diagnose(learnt, upgraded, 4, "ranked_out")
    assert not after.diverged, after.why
    # Its counting rules widen to admit it: an item without its ledger entry broke "each
    # b_item is completed by a ledger" (balanced) but not "each ledger needs an item".
    b = _wf_of(learnt, "b_begin")
    old = {(x, y): bal for x, y, bal in _wf_of(mined, "b_begin").precedes}
    new = {(x, y): bal for x, y, bal in b.precedes}
    assert old[("b_item", "ledger")] and not new[("b_item", "ledger")]
    assert b.can_end({"b_begin": 1, "b_item": 2, "ledger": 1, "b_commit": 1})
    assert b.sessions == _wf_of(mined, "b_begin").sessions + 1
    state, _ = learnt.to_state()
    assert Workflows.from_state(json.loads(json.dumps(state))).to_state()[0] == state


def test_a_loop_is_shown_as_the_steps_it_joins_not_as_a_path() -> None:
    """The text drew "loop: a -> b -> c -> a" for a set of steps that reach each other,
    naming edges the workflow does not have (here c -> b, a -> c)."""
    from logwarden.workflow.render import workflow_text

    wfs = mine_sessions([["s", "a", "b", "c", "a", "e"], ["s", "a", "c", "b", "e"]] * 30)
    wf = wfs[0]
    text = workflow_text(wf, {})
    loop = sorted(next(c for c in wf.loops if len(c) > 1))
    assert f"loop among {', '.join(sorted(loop, key=wf.keys.index))}" in text
    line = next(t for t in text.splitlines() if "loop" in t)
    assert "->" not in line, line


def test_every_step_of_an_interleaved_workflow_can_be_reached() -> None:
    """Edges below their share are dropped; a rare step lost its only way in and was kept
    with its way out: drawn and diagnosed as a place no execution gets to."""
    rng = random.Random(5)
    events: list[tuple[float, str]] = []
    t = 0.0
    for _ in range(3000):
        t += rng.expovariate(1.0)
        steps = ["p1", "p2", "p3", "p4"]
        if rng.random() < 0.002:
            steps = ["p1", "p2", "p_rare", "p3", "p4"]
        at = t
        for s in steps:
            at += 0.3 * rng.uniform(0.5, 1.5)
            events.append((at, s))
    wfs = _mine_stream(events)
    assert "p_rare" in {k for wf in wfs for k in wf.keys}
    for wf in wfs:
        reached, todo = set(), [START]
        while todo:
            for b, _ in wf.successors(todo.pop()):
                if b not in reached:
                    reached.add(b)
                    todo.append(b)
        assert set(wf.keys) <= reached, (wf.name, set(wf.keys) - reached)
