"""DeepLog verdicts on sessions of a known grammar: what is normal, what is flagged, why.

Normal sessions are ``A (B C){1,3} D E``: the loop runs once (20 %), twice (30 %) or
three times (50 %), so after ``A B C`` the next key is ``B`` (80 %) or ``D`` (20 %). With
a window of 6 the model sees enough history to know where it is in the loop.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logwarden.detect import REASONS, DeepLog, Verdict
from logwarden.models.keys import END, FIRST_KEY, PAD, UNK, Threshold
from synthetic import TINY, grammar

WINDOW = 6
TEMPLATES = {
    "A": "start job <*>",
    "B": "open file <*>",
    "C": "close file <*>",
    "D": "commit <*>",
    "E": "job <*> done",
}


def tiny(**kw: object) -> DeepLog:
    # 15 distinct windows: one batch per epoch, so more epochs and a higher rate than the
    # defaults; training stops early once the loss settles (about 1 s).
    return DeepLog(**{**TINY, "window": WINDOW, "seed": 0, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def auto() -> DeepLog:
    return tiny().fit(grammar(300, seed=1), TEMPLATES)


@pytest.fixture(scope="module")
def topg() -> DeepLog:
    return tiny(top_g=2).fit(grammar(300, seed=1), TEMPLATES)


def without_rule(est: DeepLog) -> DeepLog:
    """The same model without the unseen-transition, count and length rules: the network's
    verdicts alone."""
    other = copy.copy(est)
    other.model_ = copy.copy(est.model_)
    cal = est.model_.calibration
    assert cal is not None
    other.model_.calibrate_with(
        dataclasses.replace(cal, context=0, max_counts=None, min_length=None)
    )
    return other


def with_g(est: DeepLog, g: int) -> DeepLog:
    """The same network under another top-g rule (no retraining needed to test the rule)."""
    other = copy.copy(est)
    other.model_ = copy.copy(est.model_)
    other.model_.threshold = Threshold("top_g", g=g)
    return other


NORMAL = [list("ABCDE"), list("ABCBCDE"), list("ABCBCBCDE")]
REORDERED = {  # session -> position of the first out-of-order key
    "ACBDE": 1,
    "ABDCE": 2,
    "BACDE": 0,
    "ABCBCBCBCDE": 7,  # a 4th loop: after 3 loops only D follows
    "ABCDDE": 4,
    "ABCDEA": 5,
}
# Of those, the ones whose first odd key is one repeat too many: no normal session holds
# B more than 3 times, D or A more than once (the count rule names them first).
REPEATED = {"ABCBCBCBCDE", "ABCDDE", "ABCDEA"}


# --- what is normal -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "topg"])
def test_sessions_of_the_grammar_are_normal(name: str, request: pytest.FixtureRequest) -> None:
    est: DeepLog = request.getfixturevalue(name)
    fresh = grammar(200, seed=99)
    assert not est.predict(fresh).any()
    assert not any(v.anomalous for v in est.verdicts(NORMAL))


def test_fit_learns_the_vocabulary_and_an_automatic_threshold(auto: DeepLog) -> None:
    # By frequency: B and C loop (1-3 times a session), A, D and E once each (ties broken
    # by where they sit in their sessions).
    assert auto.keys_ == ["B", "C", "A", "D", "E"]
    th = auto.threshold_
    assert th.mode == "probability"
    # The grammar's statistics take a handful of values: no tail to fit, so the cut sits
    # just past the least likely normal step, D after one loop (p = 0.2 from the data).
    assert th.tau is not None and 0.1 < th.tau < 0.25
    assert th.calibration_sessions == 300
    assert th.expected_fpr is not None and th.fpr_low is not None and th.fpr_high is not None
    assert th.fpr_low <= th.expected_fpr <= th.fpr_high <= 0.02
    assert auto.train_info_["sessions"] == 300
    # Every fold model trained as the model itself (the same early stop).
    assert len(auto.train_info_["calibration"]["fold_epochs"]) == auto.folds


# --- why a session is flagged -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "topg"])
def test_unseen_key(name: str, request: pytest.FixtureRequest) -> None:
    est: DeepLog = request.getfixturevalue(name)
    (v,) = est.verdicts([["A", "B", "X", "C", "D", "E"]], ids=["s1"])
    assert v.anomalous and v.session == "s1"
    assert (v.reason, v.detector, v.position, v.observed) == ("unseen_key", "keys", 2, "X")
    assert v.probability == 0.0 and v.rank is None
    assert v.observed_template is None  # no template known for it
    assert v.window == ["A", "B"]
    if name == "auto":
        # As rare as the rules say a normal session with an unseen key or transition is:
        # (left-out count + 1) / (sessions + 1), and at most the cut's level (flagged).
        cal = est.model_.calibration
        level = est.threshold_.level
        assert cal is not None and cal.rule_sessions == 0 and level is not None
        assert v.score == pytest.approx(-math.log10(min(1 / 301, level)))
    else:  # the rank after every key and END
        assert v.score == len(est.keys_) + 2


def test_unseen_key_first_even_after_an_earlier_oddity(auto: DeepLog) -> None:
    # The first anomalous entry is reported, whatever its reason.
    (v,) = auto.verdicts([list("ACBXDE")])
    assert (v.reason, v.position) == ("unseen_transition", 1)  # C never follows A
    (v,) = without_rule(auto).verdicts([list("ACBXDE")])
    assert (v.reason, v.position) == ("ranked_out", 1)
    (v,) = auto.verdicts([list("XACBDE")])
    assert (v.reason, v.position, v.window) == ("unseen_key", 0, [])


def test_strict_prefixes_end_early_at_their_length(auto: DeepLog) -> None:
    full = list("ABCBCBCDE")
    prefixes = [full[:n] for n in range(1, len(full))] + [list("ABCD"), list("ABCBCD")]
    for v, p in zip(auto.verdicts(prefixes), prefixes, strict=True):
        assert v.anomalous, p
        assert v.reason == "early_end", (p, v.reason, v.position)
        assert v.position == v.length == len(p)
        assert v.observed == "<end>" and v.observed_template is None
        assert v.window == p[-WINDOW:]
        assert v.rank is not None and v.rank > 1  # END was not the expected next key


def test_empty_session_ends_early_at_zero(auto: DeepLog) -> None:
    (v,) = auto.verdicts([[]])
    assert (v.anomalous, v.reason, v.position, v.length, v.window) == (
        True,
        "early_end",
        0,
        0,
        [],
    )
    assert v.expected[0]["key"] == "A"  # every session starts with A


@pytest.mark.parametrize("rule", [True, False])
@pytest.mark.parametrize(("session", "position"), list(REORDERED.items()))
def test_reordered_sessions_are_caught_by_the_rule_and_by_the_network(
    auto: DeepLog, session: str, position: int, rule: bool
) -> None:
    # Every reordering is a transition no normal session holds; the network alone finds
    # it unlikely too.
    est = auto if rule else without_rule(auto)
    (v,) = est.verdicts([list(session)])
    assert v.anomalous
    ruled = "count_exceeded" if session in REPEATED else "unseen_transition"
    assert v.reason == (ruled if rule else "ranked_out")
    assert v.position == position
    assert v.observed == session[position]
    assert v.observed_template == TEMPLATES[session[position]]
    assert v.probability is not None and v.probability < auto.threshold_.tau  # type: ignore[operator]
    assert v.rank is not None and v.rank >= 2


def test_the_count_rule_learns_each_keys_most_repeats_and_flags_one_more(auto: DeepLog) -> None:
    """B and C loop 1-3 times in training, A, D and E occur once: a session going one
    past that is flagged at the entry that goes past, as count_exceeded, even where every
    transition is a normal one; up to the most, nothing is flagged by the rule."""
    km = auto.model_
    cal = km.calibration
    assert cal is not None and cal.max_counts is not None
    most = {k: cal.max_counts[km.index[k]] for k in "ABCDE"}
    assert most == {"A": 1, "B": 3, "C": 3, "D": 1, "E": 1}
    # A loop of 4 B C, without the transition rule: the count rule alone names it.
    short = copy.copy(auto)
    short.model_ = copy.copy(km)
    short.model_.calibrate_with(dataclasses.replace(cal, context=0))
    session = list("ABCBCBCBCDE")
    (v,) = short.verdicts([session])
    assert (v.anomalous, v.reason, v.position, v.observed) == (True, "count_exceeded", 7, "B")
    assert "repeated more times" in v.describe()
    # The count and the bound: the 4th B, at most 3 in a normal session.
    assert (v.count, v.max_count) == (4, 3)
    assert (v.to_dict()["count"], v.to_dict()["max_count"]) == (4, 3)
    assert "occurrence 4 of B in this session; at most 3 times in any normal" in v.describe()
    a = short.model_.assess([km.encode(session)])
    assert a.over_count is not None and a.count_exceeded is not None
    assert np.flatnonzero(a.over_count).tolist() == [7, 8]  # the 4th B and the 4th C
    assert a.count_exceeded.tolist() == [True] and a.ruled.tolist() == [True]
    (ok,) = short.verdicts([list("ABCBCBCDE")])
    assert not ok.anomalous
    assert not short.model_.assess([km.encode(list("ABCBCBCDE"))]).ruled.any()


# --- top-g and automatic modes ----------------------------------------------------------------


def test_top_g_one_flags_the_less_likely_branch(topg: DeepLog) -> None:
    g1 = with_g(topg, 1)
    # After A B C the model expects B (80 %) before D (20 %): D ranks 2nd.
    (v,) = g1.verdicts([list("ABCDE")])
    assert (v.anomalous, v.reason, v.position, v.observed, v.rank) == (
        True,
        "ranked_out",
        3,
        "D",
        2,
    )
    assert [e["key"] for e in v.expected[:2]] == ["B", "D"]
    # Three loops leave a single possible path: nothing ranks below 1st.
    assert not g1.predict([list("ABCBCBCDE")]).any()
    assert not topg.predict([list("ABCDE")]).any()  # g = 2 accepts the branch


def test_top_g_over_the_whole_vocabulary_flags_only_unseen_keys(topg: DeepLog) -> None:
    everything = without_rule(with_g(topg, len(topg.keys_) + 1))  # the keys and END
    sessions = [list(s) for s in REORDERED] + [list("ABC"), [], list("ABXDE")]
    flagged = everything.predict(sessions)
    assert flagged.tolist() == [False] * (len(sessions) - 1) + [True]


def test_top_g_scores_are_worst_ranks(topg: DeepLog) -> None:
    sessions = [list(s) for s in REORDERED] + NORMAL + [list("ABC")]
    scores = topg.decision_function(sessions)
    flagged = topg.predict(sessions)
    for s, score, f in zip(sessions, scores, flagged, strict=True):
        ranks = naive_positions(topg, s)[1]
        # A session the rule flags scores past g, however its keys rank.
        assert score == (max(max(ranks), 3) if f else max(ranks))
    assert topg.threshold_.mode == "top_g" and topg.threshold_.g == 2


# --- scores, labels and verdicts agree ------------------------------------------------------


def mutants(seed: int) -> list[list[str]]:
    """Normal sessions with one random edit each: a mix of normal and anomalous ones."""
    rng = np.random.default_rng(seed)
    out = []
    for s in grammar(120, seed=seed):
        s = list(s)
        op = rng.integers(0, 6)
        i = int(rng.integers(0, len(s)))
        if op == 0:
            s.insert(i, str(rng.choice(list("ABCDE"))))
        elif op == 1:
            del s[i]
        elif op == 2 and i + 1 < len(s):
            s[i], s[i + 1] = s[i + 1], s[i]
        elif op == 3:
            s = s[:i]
        elif op == 4:
            s[i] = "Z"
        out.append(s)  # op 5: unchanged
    return out


def naive_positions(est: DeepLog, session: list[str]) -> tuple[list[float], list[int]]:
    """Probability and rank of each key of the session and of its END, window by window."""
    model = est.model_
    index = {k: i + FIRST_KEY for i, k in enumerate(est.keys_)}
    enc = [index.get(k, UNK) for k in session]
    padded = [PAD] * WINDOW + enc
    probs, ranks = [], []
    for t in range(len(session) + 1):
        p = model.net.probabilities(np.array([padded[t : t + WINDOW]]))[0]
        target = enc[t] if t < len(session) else END
        if target == UNK:
            probs.append(0.0)
            ranks.append(len(est.keys_) + 2)
            continue
        others = [p[k] for k in range(len(p)) if k not in (PAD, UNK)]
        probs.append(float(p[target]))
        ranks.append(1 + sum(x > p[target] for x in others))
    return probs, ranks


def naive_new_transitions(session: list[str], context: int) -> list[bool]:
    """Per position (and END): does this key after its ``context`` keys (padded) appear in
    no training session? The training sessions are the fixtures' own."""

    def transitions(s: list[str]) -> list[tuple[str, ...]]:
        padded = ["<pad>"] * context + list(s) + ["<end>"]
        return [tuple(padded[t : t + context + 1]) for t in range(len(s) + 1)]

    known = {t for s in grammar(300, seed=1) for t in transitions(s)}
    return [t not in known for t in transitions(session)]


@pytest.mark.parametrize("rule", [True, False])
@pytest.mark.parametrize("name", ["auto", "topg"])
def test_predict_verdicts_and_a_naive_detector_agree(
    name: str, rule: bool, request: pytest.FixtureRequest
) -> None:
    est: DeepLog = request.getfixturevalue(name)
    est = est if rule else without_rule(est)
    sessions = mutants(seed=5)
    predicted = est.predict(sessions)
    verdicts = est.verdicts(sessions)
    scores = est.decision_function(sessions)
    assert predicted.dtype == bool and predicted.shape == (len(sessions),)
    assert [v.anomalous for v in verdicts] == predicted.tolist()
    assert [v.score for v in verdicts] == pytest.approx(scores.tolist())
    assert 0 < predicted.sum() < len(sessions)  # a real mix
    th = est.threshold_
    for s, v in zip(sessions, verdicts, strict=True):
        probs, ranks = naive_positions(est, s)
        if th.mode == "top_g":
            assert th.g is not None
            bad = [r > th.g for r in ranks]
        else:
            assert th.tau is not None
            bad = [(p < th.tau and r > 1) or p == 0.0 for p, r in zip(probs, ranks, strict=True)]
        cal = est.model_.calibration
        assert cal is not None
        if cal.context:
            new = naive_new_transitions(s, cal.context)
            bad = [b or n for b, n in zip(bad, new, strict=True)]
        first = bad.index(True) if any(bad) else None
        assert v.position == first, (s, v)
        if first is not None:
            assert v.probability == pytest.approx(probs[first], abs=1e-5)
            if v.reason != "unseen_key":
                assert v.rank == ranks[first]


@pytest.mark.parametrize("name", ["auto", "topg"])
def test_decision_function_orders_anomalous_above_normal(
    name: str, request: pytest.FixtureRequest
) -> None:
    est: DeepLog = request.getfixturevalue(name)
    sessions = mutants(seed=6) + NORMAL + [list(s) for s in REORDERED]
    scores = est.decision_function(sessions)
    flagged = est.predict(sessions)
    assert scores[flagged].min() > scores[~flagged].max()
    if name == "auto":
        # -log10 of the tail probability: the level sits between the two groups.
        cut = -math.log10(est.threshold_.level)  # type: ignore[arg-type]
        assert scores[flagged].min() >= cut > scores[~flagged].max()


def test_empty_input() -> None:
    est = tiny(top_g=1, epochs=2).fit(grammar(20, seed=0))
    assert est.verdicts([]) == []
    assert est.predict([]).shape == (0,)
    assert est.decision_function([]).shape == (0,)


# --- explanations ---------------------------------------------------------------------------


def test_explanation_fields(auto: DeepLog) -> None:
    sessions = [list("ABCBCDXE"), list("ABCBCBCBCDE"), list("ABCB")]
    lines = [[f"line {i}.{j} {k}" for j, k in enumerate(s)] for i, s in enumerate(sessions)]
    verdicts = auto.verdicts(sessions, ids=["x", "y", "z"], lines=lines)
    assert [v.session for v in verdicts] == ["x", "y", "z"]
    for v, s, raw in zip(verdicts, sessions, lines, strict=True):
        assert v.anomalous
        p = v.position
        assert p is not None
        # The window: the keys before the position (at most h of them).
        assert v.window == s[max(0, p - WINDOW) : p]
        # The expected keys: the explain_top most likely ones, most likely first.
        pad = [PAD] * WINDOW + [auto.model_.index[k] for k in s[:p]]
        probs = auto.model_.net.probabilities(np.array([pad[-WINDOW:]]))[0]
        exp = v.expected
        assert len(exp) == auto.explain_top
        got = [e["probability"] for e in exp]
        assert got == sorted(got, reverse=True)
        labels = {auto.model_.label(i): float(probs[i]) for i in range(len(probs))}
        for e in exp:
            assert e["probability"] == pytest.approx(labels[e["key"]], abs=1e-4)
            assert e["template"] == TEMPLATES.get(e["key"])  # None for <end>
        listed = {e["key"] for e in exp}
        for key, prob in labels.items():
            if key not in listed and key not in ("<pad>", "<unk>"):
                assert prob <= min(got) + 1e-4, key
        # The raw lines around the anomaly: up to 3 before, the entry, 1 after.
        assert v.lines == raw[max(0, p - 3) : p + 2]
    x, y, z = verdicts
    assert (x.reason, x.position, x.observed, x.observed_template) == ("unseen_key", 6, "X", None)
    assert (y.reason, y.observed, y.observed_template) == (
        "count_exceeded",  # a 4th loop: one B more than any normal session holds
        "B",
        TEMPLATES["B"],
    )
    assert (z.reason, z.position, z.observed) == ("early_end", 4, "<end>")
    assert z.expected[0]["key"] == "C"  # after A B C B comes C
    assert z.lines == raw[1:4] == ["line 2.1 B", "line 2.2 C", "line 2.3 B"]


def test_explain_top_and_text(auto: DeepLog) -> None:
    short = copy.copy(auto)
    short.explain_top = 2
    (v,) = short.verdicts([list("ACBDE")])
    assert len(v.expected) == 2 and v.expected[0]["key"] == "B"
    text = v.describe()
    assert "ANOMALY at entry 2" in text  # position 1: entries from 1 for people
    assert REASONS["unseen_transition"] in text
    assert TEMPLATES["C"] in text  # the observed entry, by its template
    assert TEMPLATES["B"] in text  # what was expected instead
    (n,) = auto.verdicts([list("ABCDE")], ids=["ok"])
    assert n.describe() == "ok: normal (5 keys)"
    # The text leaves out what the model gave no chance (the verdict keeps it).
    odd = copy.copy(v)
    odd.expected = [
        {"key": "B", "template": "b", "probability": 0.9},
        {"key": "C", "template": "c", "probability": 0.004},
        {"key": "D", "template": "d", "probability": 0.08},
    ]
    assert "  expected: b (0.90); d (0.08)" in odd.describe().splitlines()


def test_to_dict_is_json_and_minimal_for_normal_sessions(auto: DeepLog) -> None:
    normal, anomalous = auto.verdicts([list("ABCDE"), list("ABXDE")])
    assert set(normal.to_dict()) == {"session", "anomalous", "length", "score"}
    d = json.loads(json.dumps(anomalous.to_dict()))
    for field in ("reason", "detector", "position", "observed", "probability", "rank"):
        assert field in d
    assert d["window"] == ["A", "B"] and d["expected"][0]["key"] in TEMPLATES
    assert "lines" not in d  # no raw lines given
    assert isinstance(anomalous, Verdict)


def test_a_verdict_reads_back_from_its_json_line(auto: DeepLog) -> None:
    # A line of detect --jsonl gives the same verdict and text again (the diagnosis as a
    # Diagnosis: describe() failed on its dict).
    from logwarden.workflow.diagnose import Diagnosis

    _, anomalous = auto.verdicts([list("ABCDE"), list("ABXDE")])
    anomalous.diagnosis = Diagnosis("W1", "B", "X", 2, why="never right after B")
    back = Verdict.from_dict(json.loads(json.dumps(anomalous.to_dict())))
    assert isinstance(back.diagnosis, Diagnosis)
    assert back.describe() == anomalous.describe()
    assert back.to_dict() == anomalous.to_dict()
    with pytest.raises(ValueError, match="not fields of a verdict: colour"):
        Verdict.from_dict({**anomalous.to_dict(), "colour": "red"})


# --- API edges ------------------------------------------------------------------------------


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        DeepLog().predict([["A"]])


def test_verdict_ids_must_match_sessions(auto: DeepLog) -> None:
    with pytest.raises(ValueError):
        auto.verdicts([list("ABCDE"), list("ABCDE")], ids=["only-one"])


def test_integer_keys_are_the_same_keys_at_detection() -> None:
    # fit() turns keys into strings (str(k)); detection must do the same, or a session
    # seen in training is reported as made of keys never seen.
    sessions = [[1, *([2, 3] * int(k)), 4, 5] for k in np.random.default_rng(0).integers(1, 4, 60)]
    est = tiny(top_g=6, epochs=5).fit(sessions)  # type: ignore[arg-type]
    assert sorted(est.keys_) == ["1", "2", "3", "4", "5"]
    (v,) = est.verdicts([[1, 2, 3, 4, 5]])  # type: ignore[list-item]
    assert v.reason != "unseen_key", v.to_dict()
    assert not est.predict([[1, 2, 3, 4, 5]]).any()  # type: ignore[list-item]


# --- both detectors through the API ---------------------------------------------------------


@pytest.fixture(scope="module")
def timed_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from logwarden.io.ingest import read_raw_sessions
    from logwarden.sessions import SessionConfig
    from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

    d = tmp_path_factory.mktemp("timed_api")
    simulate(SimConfig(seed=31, sessions=700, normal_only=True)).write(d / "n.log")
    sim = simulate(SimConfig(seed=32, sessions=400, anomaly_rate=0.2, kinds=("perf", "param")))
    sim.write(d / "m.log")
    cfg = SessionConfig(id_pattern=SIM_SESSION_REGEX)
    train = read_raw_sessions([str(d / "n.log")], SIM_FORMAT, cfg)
    test = read_raw_sessions(
        [str(d / "m.log")], SIM_FORMAT, SessionConfig(id_pattern=SIM_SESSION_REGEX),
        miner=train.miner, learn=False,
    )  # fmt: skip
    # A 1% target: the key model flags a few sessions too, so both detectors' verdicts meet.
    model = tiny(epochs=40, param_epochs=10, target_fpr=0.01).fit(
        train.keys, train.templates, events=train.sessions
    )
    truth = {s.session: s for s in sim.sessions}
    return {"model": model, "test": test, "truth": truth, "dir": d}


def test_params_verdicts_predict_and_bundle_agree(
    timed_data: dict[str, object], tmp_path: Path
) -> None:
    model = timed_data["model"]
    test: Any = timed_data["test"]
    truth: Any = timed_data["truth"]
    assert isinstance(model, DeepLog) and model.params_ is not None
    verdicts = model.verdicts(test.keys, test.ids, test.lines, events=test.sessions)
    by_params = [v for v in verdicts if v.anomalous and v.detector == "params"]
    assert by_params and all(v.reason in ("performance", "parameter") for v in by_params)
    caught = sum(1 for v in by_params if truth[v.session].label == 1)
    injected = sum(1 for t in truth.values() if t.label == 1)
    assert caught >= 0.8 * injected
    flags = model.predict(test.keys, events=test.sessions)
    assert flags.tolist() == [v.anomalous for v in verdicts]
    # Without events only the key model runs: the parameter anomalies are not seen.
    keys_only = model.predict(test.keys)
    assert keys_only.sum() < flags.sum()
    model.save(tmp_path / "m")
    back = DeepLog.load(tmp_path / "m")
    again = back.verdicts(test.keys, test.ids, test.lines, events=test.sessions)
    assert [v.to_dict() for v in again] == [v.to_dict() for v in verdicts]


def test_both_detectors_score_on_one_scale(timed_data: dict[str, object]) -> None:
    # Sorting by score lists every anomaly, of either detector, before every normal
    # session: a parameter anomaly is not hidden among normal sessions any more.
    model = timed_data["model"]
    test: Any = timed_data["test"]
    assert isinstance(model, DeepLog)
    verdicts = model.verdicts(test.keys, test.ids, events=test.sessions)
    scores = np.array([v.score for v in verdicts])
    flagged = np.array([v.anomalous for v in verdicts])
    by_params = np.array([v.detector == "params" for v in verdicts])
    assert by_params.any() and (flagged & ~by_params).any()
    cut = -math.log10(model.threshold_.level)  # type: ignore[arg-type]
    assert scores[flagged].min() >= cut > scores[~flagged].max()
    # The same scores from decision_function, given the entries.
    np.testing.assert_allclose(
        model.decision_function(test.keys, events=test.sessions), scores, rtol=1e-12
    )
    # Without entries only the key model scores: parameter anomalies fall back below.
    keys_only = model.decision_function(test.keys)
    assert (keys_only[by_params] < cut).all()


def test_events_must_align_with_sessions(timed_data: dict[str, object]) -> None:
    model = timed_data["model"]
    test: Any = timed_data["test"]
    assert isinstance(model, DeepLog)
    with pytest.raises(ValueError, match="aligned"):
        model.predict(test.keys, events=test.sessions[:-1])


def test_bundle_with_param_weights_but_no_description_is_refused(
    timed_data: dict[str, object], tmp_path: Path
) -> None:
    from logwarden.persist.bundle import BundleError, join_arrays, load_bundle

    model = timed_data["model"]
    assert isinstance(model, DeepLog)
    model.save(tmp_path / "m")
    manifest, weights = load_bundle(tmp_path / "m")
    manifest.pop("param_models")
    with pytest.raises(BundleError, match="without their description"):
        DeepLog.from_state(manifest, join_arrays(weights))
    manifest2, weights2 = load_bundle(tmp_path / "m")
    manifest2["param_models"]["units"] = {"x": {}}
    with pytest.raises(BundleError):
        DeepLog.from_state(manifest2, join_arrays(weights2))


def test_an_elapsed_time_is_never_expected_below_zero() -> None:
    """A regression may predict a gap below 0 s; the explanation says 0 s (it said
    "expected about -9e-06 s"), and the sigmas stay."""
    from logwarden.models.params import ParamScores

    for predicted, shown in ((-9e-06, 0.0), (0.5, 0.5)):
        sc = ParamScores(
            key=3, model="lstm", anomalous=np.array([True]), dim=np.array([0]),
            expected=np.array([predicted]), observed=np.array([0.125]),
            sigmas=np.array([22.4]), error=np.ones(1), threshold=1.0,
            refs=np.zeros((1, 2), int), prev=2,
        )  # fmt: skip
        d = DeepLog().deviation(sc, 0, ["E2", "E3"], None, 1)  # type: ignore[arg-type]
        assert d["expected"] == shown and d["sigmas"] == 22.4
        text = Verdict("s", True, 2, 1.0, "performance", "params", deviation=d).describe()
        assert "expected about -" not in text and f"expected about {shown:.3g} s" in text


def test_cut_off_at_end_needs_an_active_run_ending_where_no_other_ends() -> None:
    from logwarden.detect.detector import Inputs, cut_off_at_end
    from logwarden.records import Event, Line, Record
    from logwarden.sessions import Session

    def session(sid: str, keys: list[str], start: float) -> Session:
        events = [
            Event(Record(Line("", "x", 0, 1), "", {}, start + i), int(k[1:]), "", [])
            for i, k in enumerate(keys)
        ]
        return Session(sid, events, [0.0] + [1.0] * (len(keys) - 1))

    runs = [
        ("a", ["E1", "E2", "E3"], 0.0),
        ("b", ["E1", "E2"], 10.0),  # ends at E2, which runs go on from, long before the end
        ("c", ["E1", "E2", "E3"], 20.0),
        ("d", ["E1", "E4"], 30.0),  # the only run with E4: nothing says it goes on
        ("e", ["E1", "E2"], 40.0),  # still active at the end, cut after E2
    ]
    sessions = [session(*r) for r in runs]
    data = Inputs([r[0] for r in runs], [r[1] for r in runs], [None] * 5, events=sessions)
    # b ends with E2 as well: neither b nor e is the only one to end there.
    assert cut_off_at_end(data, 5.0) == []
    del runs[1], sessions[1]
    data = Inputs([r[0] for r in runs], [r[1] for r in runs], [None] * 4, events=sessions)
    assert cut_off_at_end(data, 5.0) == [3]  # e, and not d (E4 held by no other run)
    early = dataclasses.replace(data, events=[*sessions[:3], session("e", ["E1", "E2"], 0.0)])
    assert cut_off_at_end(early, 5.0) == []  # e stopped long before the input ended
    assert cut_off_at_end(early, None) == [3]  # no time, every line 1: all go on to the end


def test_without_log_time_a_cut_off_run_is_one_near_the_last_line() -> None:
    # No timestamps: a run whose last line lies further before the input's last line than
    # any training run's entries lie apart ended; it is not taken for one the end cut off.
    from logwarden.detect.detector import Inputs, cut_off_at_end
    from logwarden.records import Event, Line, Record
    from logwarden.sessions import Session

    def session(sid: str, keys: list[str], lines: list[int]) -> Session:
        events = [
            Event(Record(Line("", "x", 0, n), "", {}, None), int(k[1:]), "", [])
            for k, n in zip(keys, lines, strict=True)
        ]
        return Session(sid, events, [None] * len(keys))

    runs = [
        ("a", ["E1", "E2", "E3"], [1, 3, 5]),
        ("b", ["E1", "E2"], [2, 4]),  # ends at E2 (runs go on from it), long before the end
        ("c", ["E1", "E2", "E3"], [10, 12, 14]),
        ("d", ["E1", "E2", "E3"], [20, 22, 24]),
    ]
    data = Inputs(
        [r[0] for r in runs], [r[1] for r in runs], [None] * 4,
        events=[session(*r) for r in runs],
    )  # fmt: skip
    assert cut_off_at_end(data, None) == []
    runs.append(("e", ["E1", "E4"], [30, 31]))
    runs.append(("f", ["E1", "E5", "E6"], [32, 33, 35]))  # E6: no other run holds it
    runs.append(("g", ["E1", "E5"], [34, 36]))  # at the end, cut after E5
    data = Inputs(
        [r[0] for r in runs], [r[1] for r in runs], [None] * 7,
        events=[session(*r) for r in runs],
    )  # fmt: skip
    assert cut_off_at_end(data, None) == [6]


def test_cut_off_at_start_needs_a_run_near_the_start_starting_where_no_other_starts() -> None:
    # The mirror of cut_off_at_end: a run whose first steps were before the input.
    from logwarden.detect.detector import Inputs, cut_off_at_start
    from logwarden.records import Event, Line, Record
    from logwarden.sessions import Session

    def session(sid: str, keys: list[str], start: float | None, line: int) -> Session:
        def at(i: int) -> float | None:
            return None if start is None else start + i

        events = [
            Event(Record(Line("", "x", 0, line + 2 * i), "", {}, at(i)), int(k[1:]), "", [])
            for i, k in enumerate(keys)
        ]
        return Session(sid, events, [0.0] + [1.0] * (len(keys) - 1))

    runs = [
        ("e", ["E2", "E3"], 0.0, 1),  # began before the input: its E1 is missing
        ("a", ["E1", "E2", "E3"], 10.0, 20),
        ("b", ["E1", "E2", "E3"], 20.0, 40),
        ("d", ["E4", "E1"], 30.0, 60),  # the only run with E4: nothing says runs reach it
        ("f", ["E3"], 40.0, 80),  # starts at E3 like no other, long after the start
    ]

    def data_of(rows: list[tuple[str, list[str], float | None, int]]) -> Inputs:
        return Inputs(
            [r[0] for r in rows], [r[1] for r in rows], [None] * len(rows),
            events=[session(*r) for r in rows],
        )  # fmt: skip

    assert cut_off_at_start(data_of(runs), 5.0) == [0]  # e, not d (E4) nor f (late)
    assert cut_off_at_start(data_of(runs[1:]), 5.0) == []  # f alone: too far from the start
    # Another run starting at E2 as well: neither is the only one to start there.
    assert cut_off_at_start(data_of([*runs, ("g", ["E2", "E3"], 50.0, 100)]), 5.0) == []
    # No timestamps: the lines tell (e's first line is the input's; f's is 79 lines on).
    untimed = [(r[0], r[1], None, r[3]) for r in runs]
    assert cut_off_at_start(data_of(untimed), None) == [0]


def test_runs_cut_at_one_step_do_not_vouch_for_each_other() -> None:
    # A slice cuts many runs at once, several at the same step: only the runs away from
    # the cut, over by the training runs' own evidence, show where runs end (or start).
    from logwarden.detect.detector import Inputs, cut_off_at_end, cut_off_at_start
    from logwarden.records import Event, Line, Record
    from logwarden.sessions import Session

    def session(sid: str, keys: list[str], start: float) -> Session:
        events = [
            Event(Record(Line("", "x", 0, 1), "", {}, start + i), int(k[1:]), "", [])
            for i, k in enumerate(keys)
        ]
        return Session(sid, events, [0.0] + [1.0] * (len(keys) - 1))

    def data_of(rows: list[tuple[str, list[str], float]]) -> Inputs:
        return Inputs(
            [r[0] for r in rows], [r[1] for r in rows], [None] * len(rows),
            events=[session(*r) for r in rows],
        )  # fmt: skip

    runs = [
        ("p", ["E2", "E3"], 0.0),  # began before the input, after E1
        ("q", ["E2", "E3"], 0.5),  # so did this one
        ("a", ["E1", "E2", "E3"], 20.0),
        ("b", ["E1", "E2", "E3"], 30.0),
        ("c", ["E1", "E2", "E3"], 40.0),
        ("x", ["E1", "E2"], 60.0),  # still going when the input ended, after E2
        ("y", ["E1", "E2"], 60.5),  # so was this one
    ]
    assert cut_off_at_end(data_of(runs), 5.0) == [5, 6]
    assert cut_off_at_start(data_of(runs), 5.0) == [0, 1]
    # A run away from the end that ended at E2 vouches for an end there.
    done = [*runs, ("z", ["E1", "E2"], 45.0)]
    assert cut_off_at_end(data_of(done), 5.0) == []


def test_verdicts_pickle_whole_in_their_short_form() -> None:
    # Sent by position, a normal one as its four required fields when the rest are
    # defaults: every field must come back, whatever is set.
    import pickle

    plain = Verdict("s", False, 3, 0.25)
    normal_set = Verdict("t", False, 2, 0.5, detector="keys", window=["E1"])
    flagged = Verdict("u", True, 4, 3.0, "early_end", "keys", 4, lines=["a", "b"], line=7)

    @dataclasses.dataclass
    class Tagged(Verdict):
        tag: str = "x"

    globals()["Tagged"] = Tagged  # picklable by name for this test
    Tagged.__qualname__ = "Tagged"
    tagged = Tagged("v", True, 1, 2.0, tag="y")
    for v in (plain, normal_set, flagged, tagged):
        back = pickle.loads(pickle.dumps(v, protocol=5))
        assert type(back) is type(v) and back == v and back.to_dict() == v.to_dict()
    # by name and value, each of them was over 350 bytes
    assert len(pickle.dumps(plain)) < len(pickle.dumps(normal_set)) < 200
