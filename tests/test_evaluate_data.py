"""Evaluation data: dataset loaders, confusion figures and the detection report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from logwarden.evaluate import Report, confusion
from logwarden.io import datasets as evaluate
from logwarden.io.datasets import (
    DataError,
    LabeledSession,
    iter_jsonl,
    iter_sequences,
    load_jsonl,
    load_labels,
    load_sequences,
    split_in_order,
)
from logwarden.records import Stats
from logwarden.sim import SimConfig, simulate


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- load_sequences -------------------------------------------------------------------------


def test_sequences_crlf_blank_line_trailing_spaces_and_last_line_without_newline(
    tmp_path: Path,
) -> None:
    # Like the DeepLog files: trailing spaces; plus CRLF, an empty line, a blank line, a
    # duplicate session, and a final line with no line break.
    f = write(tmp_path / "split", b"5 5 22 \r\n\n22 5 \n  \r\n5 5 22 \r\n9 11")
    stats = Stats()
    got = load_sequences(f, stats=stats)
    assert [(s.id, s.keys, s.label) for s in got] == [
        ("split:1", ["5", "5", "22"], None),
        ("split:2", [], None),
        ("split:3", ["22", "5"], None),
        ("split:4", [], None),
        ("split:5", ["5", "5", "22"], None),
        ("split:6", ["9", "11"], None),
    ]
    assert stats.as_dict() == {"files_read": 1, "lines_read": 6}


def test_sequences_ids_use_the_file_stem_and_label_is_applied(tmp_path: Path) -> None:
    f = write(tmp_path / "abnormal.txt", b"1 2\n3\n")
    got = load_sequences(f, label=1)
    assert [(s.id, s.label) for s in got] == [("abnormal:1", 1), ("abnormal:2", 1)]


def test_sequences_empty_file_and_single_newline(tmp_path: Path) -> None:
    assert load_sequences(write(tmp_path / "a", b"")) == []
    # One line break ends one (empty) line: one session of no keys.
    assert load_sequences(write(tmp_path / "b", b"\n")) == [LabeledSession("b:1", [], None)]


def test_sequences_utf8_bom_is_not_part_of_the_first_key(tmp_path: Path) -> None:
    got = load_sequences(write(tmp_path / "bom", b"\xef\xbb\xbf5 22\n"))
    assert got[0].keys == ["5", "22"]


@pytest.mark.parametrize(
    ("data", "line", "what"),
    [
        (b"1 2\n3 4\n5 \xff 6\n", 3, "invalid UTF-8"),
        (b"1 2\n3\x004\n", 2, "NUL byte"),
    ],
)
def test_sequences_bad_bytes_name_the_line(
    tmp_path: Path, data: bytes, line: int, what: str
) -> None:
    f = write(tmp_path / "bad", data)
    with pytest.raises(DataError, match=what) as info:
        load_sequences(f)
    msg = str(info.value)
    assert msg.startswith(f"{f}:{line}: ")
    assert "\n" not in msg


def test_sequences_stream_until_the_bad_line(tmp_path: Path) -> None:
    f = write(tmp_path / "s", b"1\n2\n\xfe\n4\n")
    it = iter_sequences(f)
    assert [next(it).keys, next(it).keys] == [["1"], ["2"]]
    with pytest.raises(DataError, match=r":3: invalid UTF-8"):
        next(it)


def test_sequences_overlong_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "MAX_LINE_BYTES", 8)
    f = write(tmp_path / "long", b"1 2 3 4\n1 2 3 4 5\n")  # 7 bytes ok, then 9 bytes
    with pytest.raises(DataError, match=r":2: line longer than 8 bytes"):
        load_sequences(f)
    # Exactly the limit, with or without a final line break, is fine.
    assert len(load_sequences(write(tmp_path / "ok", b"1 2 3 44\n1 2 3 44"))) == 2


def test_sequences_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot open"):
        load_sequences(tmp_path / "nope")


def test_loaders_reject_a_bad_label_argument(tmp_path: Path) -> None:
    f = write(tmp_path / "s", b"1\n")
    with pytest.raises(ValueError, match="label"):
        load_sequences(f, label=2)
    with pytest.raises(ValueError, match="label_filter"):
        load_jsonl(f, label_filter=True)
    with pytest.raises(ValueError, match="label_filter"):
        iter_jsonl(f, label_filter=-1)  # at the call, before any iteration


# --- load_jsonl -----------------------------------------------------------------------------


def jl(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def test_jsonl_fields_labels_and_blank_lines(tmp_path: Path) -> None:
    data = (
        b'{"session": "blk_1", "label": 0, "events": ["Receiving <*>", "Received <*>"]}\r\n'
        b"\n"
        b'{"session": "blk_2", "label": null, "events": [], "extra": {"x": 1}}\n'
        b'{"session": 17, "events": [3, "4"]}\n'
        b"   \n"
        b'{"events": ["E1"], "label": 1, "session": "blk_3"}'  # no final line break
    )
    stats = Stats()
    got = load_jsonl(write(tmp_path / "train.jsonl", data), stats=stats)
    assert got == [
        LabeledSession("blk_1", ["Receiving <*>", "Received <*>"], 0),
        LabeledSession("blk_2", [], None),
        LabeledSession("17", ["3", "4"], None),
        LabeledSession("blk_3", ["E1"], 1),
    ]
    assert stats.as_dict() == {"blank_line": 2, "files_read": 1, "lines_read": 6}


def test_jsonl_label_filter_skips_and_counts(tmp_path: Path) -> None:
    f = write(
        tmp_path / "s.jsonl",
        jl(
            {"session": "a", "label": 0, "events": ["x"]},
            {"session": "b", "label": 1, "events": ["y"]},
            {"session": "c", "events": ["z"]},
            {"session": "d", "label": 0, "events": []},
        ),
    )
    stats = Stats()
    assert [s.id for s in load_jsonl(f, label_filter=0, stats=stats)] == ["a", "d"]
    assert stats["label_filtered"] == 2  # the anomalous one and the unlabelled one
    assert [s.id for s in load_jsonl(f, label_filter=1)] == ["b"]
    assert [s.id for s in load_jsonl(f)] == ["a", "b", "c", "d"]


def test_jsonl_duplicate_ids_are_kept_and_counted(tmp_path: Path) -> None:
    f = write(
        tmp_path / "d.jsonl",
        jl(
            {"session": "a", "label": 0, "events": ["x"]},
            {"session": "a", "label": 0, "events": ["x"]},
            {"session": "b", "label": 0, "events": ["x"]},
        ),
    )
    stats = Stats()
    assert [s.id for s in load_jsonl(f, stats=stats)] == ["a", "a", "b"]
    assert stats["duplicate_session_id"] == 1


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (b'{"session": "a", "events": ["x"]', "invalid JSON"),
        (b"not json", "invalid JSON"),
        (b'["a", 0, ["x"]]', "expected a JSON object, got a list"),
        (b'"just a string"', "expected a JSON object, got a string"),
        (b'{"label": 0, "events": ["x"]}', '"session" is missing'),
        (b'{"session": ["a"], "events": ["x"]}', '"session" must be a string, not a list'),
        (b'{"session": null, "events": ["x"]}', '"session" must be a string, not null'),
        (b'{"session": "", "events": ["x"]}', '"session" is empty'),
        (b'{"session": "a", "label": 2, "events": ["x"]}', '"label" must be 0, 1 or null'),
        (b'{"session": "a", "label": "1", "events": ["x"]}', '"label" must be 0, 1 or null'),
        (b'{"session": "a", "label": true, "events": ["x"]}', '"label" must be 0, 1 or null'),
        (b'{"session": "a", "label": 1.0, "events": ["x"]}', '"label" must be 0, 1 or null'),
        (b'{"session": "a", "label": 0}', '"events" is missing'),
        (b'{"session": "a", "events": "x y"}', '"events" must be a list, not a string'),
        (b'{"session": "a", "events": ["x", {"k": 1}]}', r'"events"\[1\] must be a string'),
        (b'{"session": "a", "events": ["x", 1.5]}', r'"events"\[1\] must be a string'),
        (b'{"session": "a", "events": [null]}', r'"events"\[0\] must be a string'),
        (b"[" * 200_000, "invalid JSON"),
    ],
)
def test_jsonl_malformed_lines_name_file_and_line(tmp_path: Path, line: bytes, what: str) -> None:
    good = b'{"session": "ok", "label": 0, "events": ["x"]}\n'
    f = write(tmp_path / "bad.jsonl", good + good + line + b"\n" + good)
    with pytest.raises(DataError, match=what) as info:
        load_jsonl(f)
    msg = str(info.value)
    assert msg.startswith(f"{f}:3: ")
    assert "\n" not in msg


def test_jsonl_filtered_lines_are_still_validated(tmp_path: Path) -> None:
    f = write(tmp_path / "v.jsonl", b'{"session": "a", "label": 1, "events": "oops"}\n')
    with pytest.raises(DataError, match=":1: "):
        load_jsonl(f, label_filter=0)


# --- load_labels ----------------------------------------------------------------------------


def test_labels_loghub_format_with_bom_and_crlf(tmp_path: Path) -> None:
    f = write(
        tmp_path / "anomaly_label.csv",
        b"\xef\xbb\xbfBlockId,Label\r\nblk_-1,Normal\r\nblk_2,Anomaly\r\nblk_3,normal\r\n",
    )
    assert load_labels(f) == {"blk_-1": 0, "blk_2": 1, "blk_3": 0}


def test_labels_session_label_other_columns_any_order_and_case(tmp_path: Path) -> None:
    f = write(
        tmp_path / "labels.csv",
        b'kind,LABEL,Session,detail\npath,1,t1,"skipped step, then retried"\nnormal,0,t2,\n\n'
        b"perf, 1 , t3 ,x",
    )
    stats = Stats()
    assert load_labels(f, stats=stats) == {"t1": 1, "t2": 0, "t3": 1}
    assert stats["blank_line"] == 1


def test_labels_quoted_id_spanning_lines_keeps_its_line_break(tmp_path: Path) -> None:
    f = write(tmp_path / "q.csv", b'session,label\n"a\nb",1\nc,0\n')
    assert load_labels(f) == {"a\nb": 1, "c": 0}


def test_labels_as_the_simulator_writes_them(tmp_path: Path) -> None:
    sim = simulate(SimConfig(seed=3, sessions=120, anomaly_rate=0.25))
    log, labels = tmp_path / "sim.log", tmp_path / "sim_labels.csv"
    sim.write(log, labels)
    truth = {s.session: s.label for s in sim.sessions}
    assert 0 < sum(truth.values()) < len(truth)  # both classes present: the check has teeth
    assert load_labels(labels) == truth


def test_labels_repeated_rows(tmp_path: Path) -> None:
    same = write(tmp_path / "same.csv", b"session,label\na,1\nb,0\na,1\n")
    stats = Stats()
    assert load_labels(same, stats=stats) == {"a": 1, "b": 0}
    assert stats["duplicate_label"] == 1
    clash = write(tmp_path / "clash.csv", b"session,label\na,1\nb,0\na,0\n")
    with pytest.raises(DataError, match=r":4: session 'a' labelled 0 here, 1 before"):
        load_labels(clash)


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        (b"session,label\na,1\nb,maybe\n", ":3: ", "unknown label 'maybe'"),
        (b"BlockId,Label\nblk_1,Normal\nblk_2,\n", ":3: ", "unknown label ''"),
        (b"session,label\na,2\n", ":2: ", "unknown label '2'"),
        (b"session,label\na\n", ":2: ", "expected at least 2 fields, got 1"),
        (b"session,label\n,1\n", ":2: ", "empty session id"),
        (b"id,value\na,1\n", ":1: ", "header needs an id column"),
        (b"a,1\nb,0\n", ":1: ", "header needs an id column"),
        (b"", ": ", "empty file"),
        (b"session,label\na,\xff\n", ":2: ", "invalid UTF-8"),
        (b'session,label\n"a,1\n', ":2: ", "bad CSV"),
        (b'session,label\n"a"b,1\n', ":2: ", "bad CSV"),
    ],
)
def test_labels_malformed(tmp_path: Path, data: bytes, where: str, what: str) -> None:
    f = write(tmp_path / "labels.csv", data)
    with pytest.raises(DataError, match=what) as info:
        load_labels(f)
    assert str(info.value).startswith(f"{f}{where}")
    assert "\n" not in str(info.value)


# --- split_in_order -------------------------------------------------------------------------


def test_split_in_order_keeps_file_order() -> None:
    items = list("abcdefghij")
    assert split_in_order(items) == (list("abcdefgh"), list("ij"))
    assert split_in_order(items, 0.0) == ([], items)
    assert split_in_order(items, 1.0) == (items, [])
    assert split_in_order([], 0.5) == ([], [])
    # 6,352 * 0.8 = 5,081.6: the first part gets the floor.
    first, second = split_in_order(range(6352))
    assert (len(first), len(second), first[-1], second[0]) == (5081, 1271, 5080, 5081)


def test_split_in_order_is_not_fooled_by_float_noise() -> None:
    assert 100 * 0.29 < 29  # the float product falls just short of 29
    first, second = split_in_order(list(range(100)), 0.29)
    assert (len(first), len(second)) == (29, 71)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_split_in_order_rejects_bad_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_in_order([1, 2, 3], fraction)


# --- confusion ------------------------------------------------------------------------------


def test_confusion_hand_computed() -> None:
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    predicted = [True, False, True, True, False, False, False, False]
    # tp: 0, 2   fn: 1, 7   fp: 3   tn: 4, 5, 6
    got = confusion(labels, predicted)
    assert {k: got[k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 2, "fp": 1, "fn": 2, "tn": 3}
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 4)
    assert got["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))  # = 4/7
    assert got["accuracy"] == pytest.approx(5 / 8)
    assert confusion(labels, [int(p) for p in predicted]) == got


def test_confusion_zero_denominators_are_zero() -> None:
    assert confusion([], []) == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "tn": 0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "accuracy": 0.0,
    }
    # Nothing flagged: precision 0/0 := 0; all normal: recall 0/0 := 0.
    got = confusion([0, 0, 1], [False, False, False])
    assert (got["precision"], got["recall"], got["f1"], got["accuracy"]) == (0.0, 0.0, 0.0, 2 / 3)
    got = confusion([0, 0], [True, False])
    assert (got["fp"], got["tn"], got["recall"], got["precision"]) == (1, 1, 0.0, 0.0)


def test_confusion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2 labels but 1"):
        confusion([0, 1], [True])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        confusion([0, 2], [True, False])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        confusion([None, 1], [True, False])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="predictions"):
        confusion([0, 1], [True, "yes"])  # type: ignore[list-item]


# --- Report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class V:
    """A verdict as the detector produces it (the contract of logwarden.detect.Verdict)."""

    session: str
    anomalous: bool
    reason: str | None
    length: int
    detector: str | None


# (verdict, label or None when absent, key sequence); window h = 3 below.
CASES: list[tuple[V, int | None, list[str]]] = [
    (V("s1", True, "unseen_key", 2, "keys"), 1, ["a", "x"]),  # tp, short
    (V("s2", True, "ranked_out", 5, "keys"), 1, list("abcde")),  # tp, long
    (V("s3", False, None, 5, None), 1, list("abcde")),  # fn, long, repeats s2
    (V("s4", True, "early_end", 3, "keys"), 0, list("abc")),  # fp, short (3 <= h)
    (V("s5", False, None, 4, None), 0, list("abcd")),  # tn, long
    (V("s6", False, None, 4, None), 0, list("abcd")),  # tn, long, repeats s5
    (V("s7", False, None, 5, None), 0, list("abcde")),  # tn, long, same keys as s2/s3
    (V("s8", True, "unseen_key", 1, "keys"), None, ["z"]),  # unlabelled
    (V("s9", True, "parameter", 4, "params"), 1, list("abcq")),  # tp, long
]
H = 3


def hand_report_dict() -> dict[str, object]:
    """CASES worked out by hand (see the comments there)."""
    return {
        "tp": 3,
        "fp": 1,
        "fn": 1,
        "tn": 3,
        "precision": 3 / 4,
        "recall": 3 / 4,
        "f1": 6 / 8,
        "accuracy": 6 / 8,
        "window": 3,
        "breakdown": {
            "reason": {
                "unseen_key": {"tp": 1, "fp": 0},  # s8 is unlabelled: not here
                "early_end": {"tp": 0, "fp": 1},
                "ranked_out": {"tp": 1, "fp": 0},
                "performance": {"tp": 0, "fp": 0},
                "parameter": {"tp": 1, "fp": 0},
            },
            "detector": {"keys": {"tp": 2, "fp": 1}, "params": {"tp": 1, "fp": 0}},
            "length": {
                "<=3": {
                    "tp": 1,
                    "fp": 1,
                    "fn": 0,
                    "tn": 0,
                    "precision": 0.5,
                    "recall": 1.0,
                    "f1": 2 / 3,
                    "accuracy": 0.5,
                },
                ">3": {
                    "tp": 2,
                    "fp": 0,
                    "fn": 1,
                    "tn": 3,
                    "precision": 1.0,
                    "recall": 2 / 3,
                    "f1": 4 / 5,
                    "accuracy": 5 / 6,
                },
            },
        },
        "sessions": {
            "total": 9,
            # s4..s7: 3 distinct (abc, abcd, abcde); s7's abcde also occurs as abnormal.
            "normal": {
                "sessions": 4,
                "detected": 1,
                "distinct": 3,
                "duplicates": 1,
                "ambiguous": 1,
            },
            # s1, s2, s3, s9: 3 distinct (ax, abcde, abcq); s2 and s3 share abcde with s7.
            "abnormal": {
                "sessions": 4,
                "detected": 3,
                "distinct": 3,
                "duplicates": 1,
                "ambiguous": 2,
            },
            "unlabelled": {
                "sessions": 1,
                "detected": 1,
                "distinct": 1,
                "duplicates": 0,
                "ambiguous": None,
            },
            "ambiguous_sequences": 1,
        },
    }


def test_report_by_session_id_matches_the_hand_computed_figures() -> None:
    verdicts = [v for v, _, _ in CASES]
    labels = {v.session: y for v, y, _ in CASES if y is not None}
    keys = {v.session: k for v, _, k in CASES}
    report = Report.from_verdicts(verdicts, labels, H, keys=keys)
    got = report.as_dict()
    assert got == hand_report_dict()  # the ratios are the same float divisions
    assert list(got)[:7] == ["tp", "fp", "fn", "tn", "precision", "recall", "f1"]
    assert json.loads(json.dumps(got)) == got  # JSON-ready as it is
    assert report.sessions == 9


def test_report_in_verdict_order_gives_the_same_figures() -> None:
    report = Report.from_verdicts(
        (v for v, _, _ in CASES),  # a one-pass iterable, as a streaming detector yields
        [y for _, y, _ in CASES],
        H,
        keys=[k for _, _, k in CASES],
    )
    assert report.as_dict() == hand_report_dict()


def test_report_breakdowns_add_up_to_the_detections() -> None:
    report = Report.from_verdicts([v for v, _, _ in CASES], [y for _, y, _ in CASES], H)
    c = report.confusion
    for cells in (report.by_reason, report.by_detector):
        assert sum(d.tp for d in cells.values()) == c.tp
        assert sum(d.fp for d in cells.values()) == c.fp
    assert report.short.tp + report.long.tp == c.tp
    assert report.short.fn + report.long.fn == c.fn


def test_report_counts_duplicate_verdicts_everywhere() -> None:
    # The same session twice (same id): both count, in the figures and the breakdowns.
    v = V("a", True, "unseen_key", 2, "keys")
    report = Report.from_verdicts([v, v, V("b", False, None, 11, None)], {"a": 1, "b": 1}, 10)
    assert (report.confusion.tp, report.confusion.fn) == (2, 1)
    assert report.by_reason["unseen_key"].tp == 2
    assert (report.short.tp, report.long.fn) == (2, 1)
    assert report.abnormal.sessions == 3


def test_report_without_keys_leaves_duplicate_counts_unknown() -> None:
    report = Report.from_verdicts([v for v, _, _ in CASES], [y for _, y, _ in CASES], H)
    sessions = report.as_dict()["sessions"]
    assert sessions["ambiguous_sequences"] is None  # type: ignore[index]
    assert sessions["normal"] == {  # type: ignore[index]
        "sessions": 4,
        "detected": 1,
        "distinct": None,
        "duplicates": None,
        "ambiguous": None,
    }


def test_report_unknown_reason_and_detector_are_listed_after_the_known_ones() -> None:
    verdicts = [V("a", True, "weird", 1, None), V("b", True, None, 1, "rules")]
    report = Report.from_verdicts(verdicts, [1, 0], 5)
    assert list(report.by_reason) == [
        "unseen_key",
        "early_end",
        "ranked_out",
        "performance",
        "parameter",
        "unspecified",
        "weird",
    ]
    assert (report.by_reason["weird"].tp, report.by_reason["unspecified"].fp) == (1, 1)
    assert (report.by_detector["unspecified"].tp, report.by_detector["rules"].fp) == (1, 1)


def test_report_summary_is_readable() -> None:
    labels = {v.session: y for v, y, _ in CASES if y is not None}
    report = Report.from_verdicts(
        [v for v, _, _ in CASES], labels, H, keys={v.session: k for v, _, k in CASES}
    )
    text = report.summary()
    assert "tp 3  fp 1  fn 1  tn 3" in text
    assert "precision 0.7500  recall 0.7500  f1 0.7500" in text
    assert "unlabelled" in text and "not in the figures" in text
    assert "ambiguous: 1 key sequences" in text
    assert "early_end" in text and "ranked_out" in text
    assert "<= 3" in text and "> 3" in text


def test_report_rejects_bad_input() -> None:
    verdicts = [V("a", True, "unseen_key", 1, "keys"), V("b", False, None, 1, None)]
    with pytest.raises(ValueError, match="2 verdicts but 3 labels"):
        Report.from_verdicts(verdicts, [1, 0, 1], 10)
    with pytest.raises(ValueError, match="more verdicts than labels"):
        Report.from_verdicts(verdicts, [1], 10)
    with pytest.raises(ValueError, match="must be 0, 1 or None"):
        Report.from_verdicts(verdicts, {"a": 2}, 10)
    with pytest.raises(ValueError, match="window"):
        Report.from_verdicts(verdicts, [1, 0], 0)
    with pytest.raises(ValueError, match="no key sequence for session 'b'"):
        Report.from_verdicts(verdicts, [1, 0], 10, keys={"a": ["1"]})
    with pytest.raises(TypeError):
        Report.from_verdicts(verdicts, "10", 10)
    with pytest.raises(TypeError):
        Report.from_verdicts(verdicts, [1, 0], 10, keys={"a": "1 2", "b": "3"})


# --- the real data sets ---------------------------------------------------------------------


def test_real_deeplog_split_files_load_completely(shared_data: Callable[..., Path]) -> None:
    # Counts from the data README; event totals and distinct sequences counted independently
    # (python: sum(len(l.split()) for l in open(f)), len(set(tuple(l.split()) ...))).
    folder = shared_data("hdfs-deeplog")
    train = load_sequences(folder / "hdfs_train", label=0)
    abnormal = load_sequences(folder / "hdfs_test_abnormal", label=1)
    assert len(train) == 4855
    assert len(abnormal) == 16838
    assert sum(len(s.keys) for s in train) == 95125
    assert sum(len(s.keys) for s in abnormal) == 284818
    # The last line has no line break and still is a session.
    assert abnormal[-1].id == "hdfs_test_abnormal:16838"
    assert train[0].keys[:4] == ["5", "5", "5", "22"]
    # No empty sessions in either file; the shortest abnormal sessions have 2 keys.
    assert min(len(s.keys) for s in train) == 13
    assert min(len(s.keys) for s in abnormal) == 2
    keys = {k for s in abnormal for k in s.keys}
    assert keys == {str(i) for i in range(1, 29)}
    report = Report.from_verdicts(
        [V(s.id, False, None, len(s.keys), None) for s in abnormal],
        [1] * len(abnormal),
        10,
        keys=[s.keys for s in abnormal],
    )
    assert (report.abnormal.distinct, report.abnormal.duplicates) == (4123, 16838 - 4123)
    assert (report.short.fn, report.long.fn) == (6193, 10645)


def test_real_hdfs_100k_loads_with_its_labels(shared_data: Callable[..., Path]) -> None:
    path = shared_data("hdfs-100k", "train.jsonl")
    sessions = load_jsonl(path)
    assert len(sessions) == 6352
    assert sum(s.label == 1 for s in sessions) == 256
    assert sum(len(s.keys) for s in sessions) == 83973
    stats = Stats()
    normal = load_jsonl(path, label_filter=0, stats=stats)
    assert len(normal) == 6096 and stats["label_filtered"] == 256
    # 133 of the 256 anomalous sessions have a key sequence that normal sessions also have.
    report = Report.from_verdicts(
        [V(s.id, False, None, len(s.keys), None) for s in sessions],
        {s.id: s.label for s in sessions if s.label is not None},
        10,
        keys={s.id: s.keys for s in sessions},
    )
    assert report.abnormal.ambiguous == 133
