"""One scale for both detectors: what a score says, and what the training data support.

A session's score is -log10 of its tail probability among normal sessions. A rule's flag
(an unseen key, transition, end or count) gets its rule's own rate among the training
sessions left out (before, every rule's flag scored at the threshold, the lowest score of
an anomaly), never less than the threshold's score. Whatever the scores, a session is
anomalous exactly when its score reaches the threshold, so no flag changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logwarden.detect import DeepLog
from logwarden.persist.bundle import load_bundle, save_bundle
from logwarden.records import Event, Line, Record
from logwarden.sessions import Session
from synthetic import TINY

KEYS = [1, 2, 3, 4, 5, 6]  # every run: the same six steps, a few milliseconds apart
UNSEEN = 99  # a message no training run logged


def tiny(**kw: Any) -> DeepLog:
    return DeepLog(**{**TINY, "seed": 0, "workflows": False, **kw})


def _event(key: int) -> Event:
    return Event(Record(Line("", "x", 0, 1), "", {}, None), key, f"step {key}", [])


def run(
    sid: str,
    rng: np.random.Generator,
    *,
    unseen: bool = False,
    delay: float = 0.0,
    keys: list[int] | None = None,
) -> Session:
    """One run (``keys``, by default the six steps), its steps 5-20 ms apart; ``unseen``: a
    step never seen, after the third; ``delay``: seconds more before the fourth step."""
    keys = list(KEYS if keys is None else keys)
    if unseen:
        keys.insert(3, UNSEEN)
    elapsed: list[float | None] = [0.0]
    elapsed += [float(x) for x in rng.uniform(0.005, 0.02, len(keys) - 1)]
    elapsed[3] = (elapsed[3] or 0.0) + delay
    return Session(sid, events=[_event(k) for k in keys], elapsed=elapsed)


def labels(sessions: list[Session]) -> list[list[str]]:
    return [[f"E{e.key}" for e in s.events] for s in sessions]


def cases(seed: int = 7) -> list[Session]:
    rng = np.random.default_rng(seed)
    return [
        run("normal", rng),
        run("unseen", rng, unseen=True),
        run("slow", rng, delay=0.1),  # a 0.1 s delay, 5-20x a normal step's time
    ]


@pytest.fixture(scope="module")
def small() -> DeepLog:
    """A model of 14 runs, as of 14 OpenStack instances: robust parameter units of 14
    entries each."""
    rng = np.random.default_rng(0)
    train = [run(f"t{i}", rng) for i in range(14)]
    return tiny().fit(labels(train), events=train)


def scores_of(model: DeepLog, sessions: list[Session]) -> dict[str, tuple[bool, str | None, float]]:
    verdicts = model.verdicts(labels(sessions), [s.id for s in sessions], events=sessions)
    return {v.session: (v.anomalous, v.reason, v.score) for v in verdicts}


def test_each_rule_has_its_own_rate() -> None:
    """A session a rule flags scores by that rule's rate among the training sessions left
    out, not by the rules' joint one: here one run repeats a step more often than any
    other (the count rule's rate, 2/401), none holds a message of its own (1/401)."""
    rng = np.random.default_rng(2)
    train = [run(f"t{i}", rng) for i in range(398)]
    train.append(run("twice", rng, keys=[1, 2, 3, 4, 5, 5, 6]))
    train.append(run("thrice", rng, keys=[1, 2, 3, 4, 5, 5, 5, 6]))
    model = tiny(param_min_samples=1000, target_fpr=0.02).fit(labels(train), events=train)
    cal = model.model_.calibration
    level = model.threshold_.level
    assert cal is not None and cal.rule_counts is not None and level is not None
    assert cal.rule_counts["unseen_key"] == 0 and cal.rule_counts["count_exceeded"] == 1
    assert cal.rule_sessions >= 1
    rates = cal.rule_rates()
    assert rates["unseen_key"] == pytest.approx(1 / 401)
    assert rates["count_exceeded"] == pytest.approx(2 / 401)
    assert rates["unseen_transition"] == pytest.approx(
        (cal.rule_counts["unseen_transition"] + 1) / 401
    )
    got = scores_of(model, cases())
    assert got["unseen"][:2] == (True, "unseen_key")
    assert got["unseen"][2] == pytest.approx(-math.log10(1 / 401))
    # The joint rate counts every rule's sessions: an unseen message is rarer than that.
    assert got["unseen"][2] > -math.log10(min(cal.rule_p, level))
    # A session that set off several rules: the rarest of them.
    none, both = np.array([False, False]), np.array([True, True])
    got_p = cal.sessions_rule_p(np.array([False, True]), none, both)
    assert got_p.tolist() == pytest.approx([2 / 401, 1 / 401])
    assert cal.sessions_rule_p(none, none, none).tolist() == [1.0, 1.0]


def test_unknown_rule_counts_are_refused(small: DeepLog, tmp_path: Path) -> None:
    from logwarden.errors import BundleError

    small.save(tmp_path / "m")
    manifest, weights = load_bundle(tmp_path / "m")
    body = {k: v for k, v in manifest.items() if k not in ("files", "manifest_sha256")}
    counts = dict.fromkeys(("unseen_key", "unseen_transition", "count_exceeded"), -1)
    bad_parts = [
        {"calibration": {**body["calibration"], "rule_counts": {"unseen_key": 0}}},
        {"calibration": {**body["calibration"], "rule_counts": counts}},
    ]
    for i, bad in enumerate(bad_parts):
        save_bundle(tmp_path / f"bad{i}", {**body, **bad}, weights)
        with pytest.raises(BundleError):
            DeepLog.load(tmp_path / f"bad{i}")
