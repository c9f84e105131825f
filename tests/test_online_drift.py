"""The drift tracker on hand-made streams: it warns when a new template recurs, when flagged
sessions share one cause, when scores move; it stays quiet for dispersed anomalies and
rare new messages; it suggests varied sessions; buckets follow time or line counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from logwarden.errors import ConfigError
from logwarden.online import DriftBaseline, DriftConfig, DriftTracker
from logwarden.online.drift import track_batch

KNOWN = ["A", "B", "C", "D", "E"]
BASE = DriftBaseline.from_scores(np.linspace(0.0, 1.0, 500), flagged=2)


def tracker(**config: object) -> DriftTracker:
    assert BASE is not None
    return DriftTracker(BASE, KNOWN, {"N": "a new message", "M": "another"}, DriftConfig(**config))


def feed(
    t: DriftTracker, sessions: list[tuple[list[str], bool, str | None]], t0: float = 0.0
) -> None:
    """Each session's entries one second apart, the session closing at its last entry."""
    now = t0
    line = 0
    rng = np.random.default_rng(len(sessions))
    for i, (keys, flagged, cause) in enumerate(sessions):
        for k in keys:
            line += 1
            now += 1.0
            t.update_line(k, session=f"s{i}", time=now, line=line)
        score = 40.0 if flagged else float(rng.uniform(0.0, 1.0))  # normal: the baseline's
        t.update(f"s{i}", flagged=flagged, score=score, cause=cause, keys=keys, time=now, line=line)


def test_a_recurring_new_template_warns_and_names_it() -> None:
    t = tracker(bucket_seconds=10_000)
    normal = (list("ABCDE"), False, None)
    new = (list("ABNDE"), True, "N")
    feed(t, [normal] * 20 + [new, normal, normal] * 6)
    warnings = t.close()
    assert len(warnings) == 1
    w = warnings[0]
    assert w.reasons == ["new_templates"]
    assert w.causes[0]["key"] == "N" and w.causes[0]["template"] == "a new message"
    assert w.causes[0]["sessions"] == 5 and w.causes[0]["unseen"]
    assert w.line is not None and w.line < 5 * 38  # as soon as the fifth session shows it
    assert "N" in w.describe() and "a new message" in w.describe()
    report = t.report()
    assert report["drift_templates"] == [{"key": "N", "template": "a new message"}]
    assert report["buckets"][0]["unseen_templates"] == {"N": 6}


def test_rare_new_messages_and_dispersed_anomalies_do_not_warn() -> None:
    t = tracker(bucket_seconds=10_000)
    sessions = []
    for i in range(400):
        if i % 20 == 0:  # 5% anomalies, each of its own kind: four new messages, causes
            cause = KNOWN[i // 20 % 5] if i % 40 else f"U{i}"
            keys = list("ABCDE") if i % 40 else ["A", "B", f"U{i}"]
            sessions.append((keys, True, cause))
        else:
            sessions.append((list("ABCDE"), False, None))
    feed(t, sessions)
    assert t.close() == []
    assert t.report()["suggested"] == []


def test_flagged_sessions_sharing_one_cause_warn() -> None:
    t = tracker(bucket_seconds=10_000)
    changed = (list("ACBDE"), True, "C")  # an upgrade moved a step: no new template
    feed(t, [(list("ABCDE"), False, None)] * 60 + [changed, (list("ABCDE"), False, None)] * 15)
    warnings = t.close()
    assert [w.reasons for w in warnings] == [["one_cause"]]
    assert warnings[0].causes[0]["key"] == "C" and not warnings[0].causes[0]["unseen"]


def test_runs_cut_by_the_end_of_the_input_are_not_one_cause() -> None:
    t = tracker(bucket_seconds=10_000, min_ks=1.0)
    cut = (list("AB"), True, "<end>")  # the input ended while they were running
    feed(t, [(list("ABCDE"), False, None)] * 60 + [cut] * 15)
    assert t.close() == []


def test_runs_cut_by_the_end_of_the_input_are_no_template_behind_a_score_shift() -> None:
    # Their scores do move the bucket's (a log slice: every run still open ends early), but
    # the warning neither calls the end a new template nor lists it as one behind the drift;
    # it counts the early ends and says what they may mean.
    t = tracker(bucket_seconds=10_000)
    cut = (list("AB"), True, "<end>")
    feed(t, [(list("ABCDE"), False, None)] * 60 + [cut] * 15)
    warnings = t.close()
    assert [w.reasons for w in warnings] == [["scores"]]
    w = warnings[0]
    assert w.causes == [] and w.early_ends == 15
    assert "new template" not in w.describe() and "15 of them end early" in w.describe()
    assert t.report()["drift_templates"] == []


def test_a_score_shift_warns_at_the_bucket_close() -> None:
    t = tracker(bucket_seconds=10_000, cause_sessions=1000)
    rng = np.random.default_rng(0)
    for i in range(200):  # scores moved up by half the baseline's range, nothing flagged
        t.update(f"s{i}", flagged=False, score=float(rng.uniform(0.5, 1.5)), time=float(i))
    warnings = t.close()
    assert [w.reasons for w in warnings] == [["scores"]]
    assert warnings[0].ks is not None and warnings[0].ks > 0.4
    quiet = tracker(bucket_seconds=10_000)
    for i in range(200):
        quiet.update(f"s{i}", flagged=False, score=float(rng.uniform(0.0, 1.0)), time=float(i))
    assert quiet.close() == [] and quiet.buckets[0]["ks"] < 0.15


def test_suggestions_cover_the_new_templates_contexts() -> None:
    t = tracker(bucket_seconds=10_000)
    a = (list("ABNDE"), True, "N")  # N between B and D: common
    b = (list("ACNE"), True, "N")  # N between C and E: rarer
    c = (list("ABNDEM"), True, "N")  # and a second new template, late in the run
    feed(t, [a] * 12 + [b] * 2 + [c] * 6)
    t.close()
    chosen = t.suggestions(3)
    kinds = {tuple(k) for k, _, _ in [a, b, c]}
    assert len(chosen) == 3
    seqs = set()
    for sid in chosen:
        i = int(sid[1:])
        seqs.add(tuple((a if i < 12 else b if i < 14 else c)[0]))
    assert seqs == kinds  # one of each variant, not three of the common one
    assert [d["key"] for d in t.report()["drift_templates"]] == ["N", "M"]


def test_suggestions_asked_along_the_way_are_those_of_a_tracker_asked_once() -> None:
    # Every warning asks for suggestions, and the answer is kept while no candidate and
    # no drift template was added: asked after every session, a tracker must answer what
    # one fed the same sessions and asked only then does.
    a = (list("ABNDE"), True, "N")
    b = (list("ACNE"), True, "N")
    c = (list("ABNDEM"), True, "N")
    sessions = [a] * 5 + [b] * 2 + [a] * 4 + [c] * 4 + [b] * 3

    def fed(n: int, ask: bool) -> tuple[DriftTracker, list[list[str]]]:
        t = tracker(bucket_seconds=10_000, candidates=6)
        asked = []
        for i, (keys, flagged, cause) in enumerate(sessions[:n]):
            for j, k in enumerate(keys):
                t.update_line(k, session=f"s{i}", time=10.0 * i + j, line=10 * i + j)
            t.update(f"s{i}", flagged=flagged, score=40.0, cause=cause, keys=keys,
                     time=10.0 * i + len(keys), line=10 * i + len(keys))  # fmt: skip
            if ask:
                asked.append(t.suggestions(3))
        return t, asked

    along, asked = fed(len(sessions), ask=True)
    assert len({tuple(x) for x in asked}) > 2  # the answer changed along the way
    for n in range(1, len(sessions) + 1):
        assert asked[n - 1] == fed(n, ask=False)[0].suggestions(3)
    along.close()
    once, _ = fed(len(sessions), ask=False)
    once.close()
    assert along.suggestions(3) == once.suggestions(3)
    assert along.suggestions(2) == once.suggestions(2)


def test_buckets_follow_time_or_line_counts() -> None:
    t = tracker(bucket_seconds=10.0)
    feed(t, [(list("ABCDE"), False, None)] * 6)  # 30 entries, one a second
    t.close()
    assert [b["bucket"] for b in t.buckets] == [0, 1, 2]
    assert t.buckets[0]["entries"] == 10 and t.buckets[0]["first_line"] == 1
    untimed = tracker(bucket_lines=7)
    for i in range(6):
        untimed.update(f"s{i}", flagged=False, score=0.1, entries=5)
    untimed.close()
    assert sum(b["sessions"] for b in untimed.buckets) == 6 and len(untimed.buckets) >= 3


@dataclass
class V:
    session: str
    anomalous: bool
    score: float
    observed: str | None = None


def test_track_batch_without_lines_feeds_sessions_in_order() -> None:
    keys = [list("ABCDE")] * 30 + [list("ABNDE")] * 6
    verdicts = [V(f"s{i}", i >= 30, 40.0 if i >= 30 else 0.3, "N" if i >= 30 else None)
                for i in range(36)]  # fmt: skip
    warnings = track_batch(tracker(), verdicts, keys)
    assert len(warnings) == 1 and warnings[0].causes[0]["key"] == "N"
    assert warnings[0].line is None


def test_baseline_and_config_are_checked() -> None:
    assert BASE is not None
    again = DriftBaseline.from_state(*BASE.to_state())
    assert again == BASE and again.flagged_share == pytest.approx(2 / 500)
    with pytest.raises(ValueError, match="increasing"):
        DriftBaseline.from_state({**BASE.to_state()[0], "score_quantiles": [1.0, 0.0]})
    assert DriftBaseline.from_scores(np.zeros(0), 0) is None
    for bad in ({"bucket_seconds": 0}, {"min_share": 2.0}, {"alpha": 0.0}, {"min_ks": 0.0}):
        with pytest.raises(ConfigError):
            DriftConfig(**bad)  # type: ignore[arg-type]


def test_a_long_stream_keeps_the_latest_buckets_and_warnings_and_counts_all() -> None:
    """A service's tracker runs for ever: it keeps ``history`` buckets and warnings for its
    report (the latest ones) and counts every one of them."""
    t = tracker(bucket_seconds=1000, history=5)
    changed = (list("ACBDE"), True, "C")
    # 40 buckets (a burst of sessions every 10,000 s), every other one a one-cause drift.
    for b in range(40):
        sessions = [(list("ABCDE"), False, None)] * 2
        if b % 2:
            sessions += [changed] * 12
        feed(t, sessions, t0=b * 10_000.0)
    warnings = t.close()
    assert t.buckets_closed == 40 and t.warnings_total == 20
    assert len(t.buckets) < 10 and len(warnings) < 10  # trimmed as they come
    report = t.report()
    assert (report["buckets_closed"], report["warnings_total"]) == (40, 20)
    assert [b["bucket"] for b in report["buckets"]] == [10 * b for b in range(35, 40)]
    assert len(report["warnings"]) == 5
    assert report["warnings"][-1]["bucket"] == report["buckets"][-1]["bucket"]


def test_lines_in_batches_give_what_lines_one_by_one_give() -> None:
    rng = np.random.default_rng(3)
    rows: list[tuple[str, str | None, float | None, int | None]] = []
    now = 0.0
    for line in range(1, 4001):
        now += float(rng.exponential(2.0))
        # mostly in order, some late, some without a time, new templates now and then
        t: float | None = now - float(rng.uniform(0, 50)) if rng.random() < 0.3 else now
        if rng.random() < 0.03:
            t = None
        elif rng.random() < 0.002:
            t = float("nan")
        key = "N" if rng.random() < 0.05 else "ABCDE"[int(rng.integers(5))]
        rows.append((key, f"s{line // 7}", t, line))
    one, many = tracker(bucket_seconds=600), tracker(bucket_seconds=600)
    for key, session, t, line in rows:
        one.update_line(key, session=session, time=t, line=line)
    for i in range(0, len(rows), 333):
        many.update_lines(rows[i : i + 333])
    assert one.report() == many.report()
    assert one.buckets_closed > 5 and one.warnings_total > 0


def test_batch_buckets_give_the_lines_of_the_entries_they_count() -> None:
    # A session's entries of known templates are counted at its end: the bucket's line
    # range still starts at its first entry (it read 50/50 for 48 entries).
    keys = [["A"] * 20 + ["N"] + ["B"] * 27, list("ABCDE")]
    positions = [
        (list(range(3, 51)), [100.0 + i for i in range(48)]),
        (list(range(51, 56)), [700.0 + i for i in range(5)]),
    ]
    verdicts = [V("s0", False, 0.3), V("s1", False, 0.2)]
    t = tracker(bucket_seconds=300.0)
    track_batch(t, verdicts, keys, positions=positions)
    got = [(b["entries"], b["first_line"], b["last_line"]) for b in t.buckets]
    assert got == [(48, 3, 50), (5, 51, 55)]
