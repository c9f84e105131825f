"""`logwarden train`, `detect` and `eval` end to end, in process: the three input formats,
the JSON outputs checked against the library and the ground truth, and the errors a user
can make (exit 2, one line) or meet (exit 1, one line), never a traceback."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logwarden.cli import main
from logwarden.detect import DeepLog, InputSpec
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate
from synthetic import grammar

# Small and fast: 1 layer of 16 units. Training stops once the loss settles.
# Two folds: the threshold's calibration is tested in test_key_calibration.py.
FAST = ["--hidden", "16", "--layers", "1", "--device", "cpu", "--folds", "2", "-q"]
RAW = ["--format", SIM_FORMAT, "--session", SIM_SESSION_REGEX]
REPORT_KEYS = {"tp", "fp", "fn", "tn", "precision", "recall", "f1", "breakdown"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def error_line(err: str) -> str:
    """The one error line (informational lines about what was read may precede it)."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("logwarden: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(line.startswith("logwarden: ") for line in lines), err
    return errors[0]


ABNORMAL = [list("ACBDE"), list("ABXCDE"), list("ABC"), list("ABCBCBCBCDE"), list("EDCBA")]


def write_sequences(path: Path, sessions: list[list[str]]) -> Path:
    path.write_text("".join(" ".join(s) + "\n" for s in sessions), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[tuple[str, int | None, list[str]]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for sid, label, events in rows:
            fh.write(json.dumps({"session": sid, "label": label, "events": events}) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def manifest(model: Path) -> dict[str, Any]:
    return json.loads((model / "manifest.json").read_text(encoding="utf-8"))


# --- sequences --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("seq")
    files = {
        "train": write_sequences(d / "train.txt", grammar(300, seed=1)),
        "normal": write_sequences(d / "normal.txt", grammar(40, seed=2)),
        "abnormal": write_sequences(d / "abnormal.txt", ABNORMAL),
        "model": d / "model",
    }
    argv = ["train", files["train"], "--input-format", "sequences", "--out", files["model"]]
    assert main([str(a) for a in [*argv, "--window-size", "6", *FAST]]) == 0
    return files


def test_train_on_sequences(seq: dict[str, Path]) -> None:
    m = manifest(seq["model"])
    assert [v["key"] for v in m["vocabulary"]] == list("BCADE")  # by frequency
    assert m["params"]["window"] == 6 and m["params"]["hidden"] == 16
    assert m["params"]["layers"] == 1
    assert m["threshold"]["mode"] == "probability"
    # The bundle keeps the expected false-positive rate with its interval.
    th = m["threshold"]
    assert th["fpr_low"] <= th["expected_fpr"] <= th["fpr_high"] and th["target_fpr"] == 0.005
    assert m["train_info"]["sessions"] == 300
    assert "parser" not in m  # nothing to parse in key sequences


def test_train_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sequences(tmp_path / "t.txt", grammar(40, seed=3))
    argv = ["train", data, "--input-format", "sequences", "--out", tmp_path / "m", "--force"]
    code, out, err = run([*argv, "--top-g", "2", "--epochs", "3", *FAST], capsys)
    assert code == 0, err
    assert "40 sessions" in err and "5 keys" in err and "top-g, g = 2" in err
    assert "ever ranked out" not in err
    assert "training stopped at --epochs 3 while the loss still fell" in err
    # The last line: the expected false-positive rate, with its interval.
    assert re.search(r"expected false positives \(key model\): [\d.]+% .* 95% interval", err)
    assert out == ""
    # A g beyond the vocabulary ranks nothing out: said, not silently accepted.
    code, _, err = run([*argv, "--top-g", "6", "--epochs", "3", *FAST], capsys)
    assert code == 0 and "--top-g 6 is more than the 5 keys" in err
    # Without cross-fitting (top-g only) there is no estimate, and train says so.
    code, _, err = run([*argv, "--top-g", "2", "--epochs", "3", *FAST, "--folds", "0"], capsys)
    assert code == 0 and "not estimated" in err
    code, _, err = run([*argv, "--epochs", "3", *FAST, "--jobs", "-1"], capsys)
    assert code == 2 and "--jobs" in error_line(err)


def test_detect_sequences_writes_one_json_verdict_per_session(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_sequences(tmp_path / "mixed.txt", grammar(20, seed=4) + ABNORMAL)
    out_path = tmp_path / "v.jsonl"
    argv = ["detect", data, "--input-format", "sequences", "--model", seq["model"]]
    code, out, err = run([*argv, "--jsonl", out_path], capsys)
    assert code == 0, err
    rows = read_jsonl(out_path)
    assert [r["session"] for r in rows] == [f"mixed:{i}" for i in range(1, 26)]
    # The same verdicts as the library gives.
    est = DeepLog.load(seq["model"])
    sessions = grammar(20, seed=4) + ABNORMAL
    want = est.verdicts(sessions, ids=[f"mixed:{i}" for i in range(1, 26)])
    assert [r["anomalous"] for r in rows] == [v.anomalous for v in want]
    for r, v in zip(rows, want, strict=True):
        assert r["score"] == pytest.approx(v.score, rel=1e-3)
        assert r["length"] == v.length
        if v.anomalous:
            assert r["reason"] == v.reason and r["position"] == v.position
            assert r["expected"] and {"key", "probability"} <= set(r["expected"][0])
            assert r["window"] == v.window and r["observed"] == v.observed
    flagged = sum(r["anomalous"] for r in rows)
    assert rows[21]["reason"] == "unseen_key" and rows[21]["position"] == 2  # A B X ...
    assert out.splitlines()[0].startswith(f"25 sessions, {flagged} anomalous")


def test_detect_remembers_the_sequences_input_format(
    seq: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The model was trained on key sequences; detection without --input-format should read
    # its input the same way (as it does for jsonl and raw models), not as raw logs.
    code, out, err = run(["detect", seq["abnormal"], "--model", seq["model"]], capsys)
    assert code == 0, err
    assert out.startswith("5 sessions")


def test_detect_jsonl_to_stdout(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # "--jsonl -" sends the summary to stderr, so the verdicts must go to stdout, not to a
    # file named "-".
    monkeypatch.chdir(tmp_path)
    argv = ["detect", seq["abnormal"], "--input-format", "sequences", "--model", seq["model"]]
    code, out, err = run([*argv, "--jsonl", "-"], capsys)
    assert code == 0, err
    assert not (tmp_path / "-").exists()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["session"] for r in rows] == [f"abnormal:{i}" for i in range(1, 6)]


def test_eval_normal_abnormal_json(
    seq: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--model", seq["model"], "--normal", seq["normal"]]
    code, out, err = run([*argv, "--abnormal", seq["abnormal"], "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert set(report) >= REPORT_KEYS
    est = DeepLog.load(seq["model"])
    normal_flags = est.predict(grammar(40, seed=2))
    abnormal_flags = est.predict(ABNORMAL)
    assert report["tp"] == int(abnormal_flags.sum())
    assert report["fn"] == len(ABNORMAL) - report["tp"]
    assert report["fp"] == int(normal_flags.sum())
    assert report["tn"] == 40 - report["fp"]
    tp, fp, fn = report["tp"], report["fp"], report["fn"]
    assert report["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert report["recall"] == pytest.approx(tp / (tp + fn))
    assert report["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    reasons = report["breakdown"]["reason"]
    assert reasons["unseen_key"]["tp"] >= 1  # A B X ... cannot be missed
    assert sum(r["tp"] for r in reasons.values()) == tp
    # Without --json: a readable summary.
    code, out, _ = run([*argv, "--abnormal", seq["abnormal"]], capsys)
    assert code == 0 and "precision" in out and "recall" in out


# --- jsonl ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("jsonl")
    rows: list[tuple[str, int | None, list[str]]] = [
        (f"n{i}", 0, s) for i, s in enumerate(grammar(120, seed=5))
    ]
    # Anomalous sessions hold a key that normal ones never do.
    rows += [(f"a{i}", 1, ["A", "B", "Z", "C", "D", "E"]) for i in range(10)]
    rows += [(f"r{i}", 1, list("ACBDE")) for i in range(5)]
    return write_jsonl(d / "data.jsonl", rows)


def test_train_jsonl_uses_normal_sessions_only(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", labelled, "--input-format", "jsonl", "--top-g", "3", "--epochs", "5", *FAST]
    code, _, err = run([*base, "--out", tmp_path / "normal"], capsys)
    assert code == 0, err
    m = manifest(tmp_path / "normal")
    assert m["train_info"]["sessions"] == 120
    assert "Z" not in [v["key"] for v in m["vocabulary"]]
    assert m["input"]["input_format"] == "jsonl"
    code, _, err = run([*base, "--out", tmp_path / "all", "--include-anomalous"], capsys)
    assert code == 0, err
    m = manifest(tmp_path / "all")
    assert m["train_info"]["sessions"] == 135
    assert "Z" in [v["key"] for v in m["vocabulary"]]


def test_train_jsonl_with_no_normal_session_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", [("a", 1, ["A", "B"])])
    code, _, err = run(
        ["train", data, "--input-format", "jsonl", "--out", tmp_path / "m", *FAST], capsys
    )
    assert code == 1
    assert "no training session" in error_line(err)


@pytest.fixture(scope="module")
def jsonl_model(labelled: Path) -> Path:
    out = labelled.parent / "model"
    argv = ["train", labelled, "--input-format", "jsonl", "--out", out, "--window-size", "6"]
    assert main([str(a) for a in [*argv, *FAST]]) == 0
    return out


def test_detect_and_eval_on_jsonl(
    jsonl_model: Path, labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No --input-format: the model remembers it was trained on jsonl.
    code, _, err = run(
        ["detect", labelled, "--model", jsonl_model, "--jsonl", tmp_path / "v.jsonl"], capsys
    )
    assert code == 0, err
    rows = read_jsonl(tmp_path / "v.jsonl")
    assert len(rows) == 135
    by_id = {r["session"]: r for r in rows}
    for i in range(10):  # the unseen key Z at entry 2
        r = by_id[f"a{i}"]
        assert (r["anomalous"], r["reason"], r["position"], r["observed"]) == (
            True,
            "unseen_key",
            2,
            "Z",
        )
    code, out, err = run(["eval", labelled, "--model", jsonl_model, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    flagged = {sid for sid, r in by_id.items() if r["anomalous"]}
    anomalous = {sid for sid in by_id if sid[0] in "ar"}
    assert report["tp"] == len(flagged & anomalous)
    assert report["fp"] == len(flagged - anomalous)
    assert report["fn"] == len(anomalous - flagged)
    assert report["tn"] == 135 - len(flagged | anomalous)
    assert report["breakdown"]["reason"]["unseen_key"] == {"tp": 10, "fp": 0}


def test_bad_jsonl_is_a_usage_error(
    jsonl_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"session": "x", "label": 0, "events": ["A"]}\n{"session": 5\n')
    code, _, err = run(["detect", bad, "--model", jsonl_model], capsys)
    assert code == 2
    assert "bad.jsonl:2" in error_line(err)


# --- raw logs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("raw")
    simulate(SimConfig(seed=11, sessions=300, normal_only=True)).write(d / "train.log")
    test = simulate(SimConfig(seed=12, sessions=200, anomaly_rate=0.2))
    test.write(d / "test.log", d / "labels.csv")
    model = d / "model"
    argv = ["train", d / "train.log", *RAW, "--out", model, "--epochs", "60", *FAST]
    assert main([str(a) for a in argv]) == 0
    return {"dir": d, "model": model, "sim": test}


def test_train_on_raw_logs_keeps_what_detection_needs(raw: dict[str, Any]) -> None:
    m = manifest(raw["model"])
    # When detection calls a session complete: learnt from the training sessions' gaps.
    assert m["input"].pop("idle_timeout") > 0
    assert m["input"] == {
        "input_format": "raw",
        "format": SIM_FORMAT,
        "session": SIM_SESSION_REGEX,
        "window": None,
        "session_in_line": False,
    }
    assert m["parser"]  # the templates, to read new logs with the same keys
    assert m["train_info"]["sessions"] == 300
    vocab = m["vocabulary"]
    assert all(v["key"].startswith("E") and v["template"] for v in vocab)


def test_detect_raw_logs(raw: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d: Path = raw["dir"]
    out_path = d / "verdicts.jsonl"
    # Format and session rule come from the model.
    code, out, err = run(
        ["detect", d / "test.log", "--model", raw["model"], "--jsonl", out_path], capsys
    )
    assert code == 0, err
    rows = read_jsonl(out_path)
    truth = {s.session: s for s in raw["sim"].sessions}
    assert sorted(r["session"] for r in rows) == sorted(truth)
    anomalous = [r for r in rows if r["anomalous"]]
    assert anomalous, "the simulated anomalies include error messages never seen in training"
    log_lines = (d / "test.log").read_text(encoding="utf-8").splitlines()
    position_in_log = {line: i for i, line in enumerate(log_lines)}
    for r in anomalous:
        assert isinstance(r["position"], int) and 0 <= r["position"] <= r["length"]
        lines = r["lines"]
        p, n = r["position"], r["length"]
        if r["detector"] == "keys":
            assert r["reason"] in (
                "unseen_key", "early_end", "ranked_out", "unseen_transition", "count_exceeded"
            )  # fmt: skip
            assert r["expected"] and all(
                e["template"] for e in r["expected"] if e["key"] != "<end>"
            )
        else:
            assert r["detector"] == "params"
            check_deviation(r)
        assert len(lines) == min(p, 3) + min(2, n - p)
        assert all(r["session"] in line for line in lines)
        where = [position_in_log[line] for line in lines]
        assert where == sorted(where)  # in log order
        if r["reason"] == "unseen_key":
            assert r["observed"].startswith("U")  # a line no training template matches
    # Every injected error message is a key never seen in training: caught.
    for r in anomalous:
        assert truth[r["session"]].label == 1 or r["reason"] != "unseen_key"
    assert out.startswith(f"200 sessions, {len(anomalous)} anomalous")


def _detect_on_half(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str], half: str
) -> tuple[Path, str, Path, Path]:
    """detect on the ``first`` or ``second`` half of the simulated test log (a slice):
    the half, the command's output, its --jsonl and its --html."""
    d: Path = raw["dir"]
    lines = (d / "test.log").read_text(encoding="utf-8").splitlines(keepends=True)
    middle = len(lines) // 2
    part = d / f"{half}_half.log"
    part.write_text("".join(lines[:middle] if half == "first" else lines[middle:]), "utf-8")
    out_path, page = d / f"{half}_half.jsonl", d / f"{half}_half.html"
    argv = ["detect", part, "--model", raw["model"], "--jsonl", out_path, "--html", page]
    code, out, err = run([*argv, "--show", "1000"], capsys)
    assert code == 0, err
    return part, out, out_path, page


def _noted(out: str, page: Path, note: str, mark: str) -> tuple[int, int]:
    """The two counts of the summary's ``note`` (a pattern: N of the M ...), in the text
    and in the HTML report; each of the N verdicts carries the ``mark`` in both."""
    m = re.search(note, out)
    assert m is not None, out
    in_html = re.search(note, page.read_text(encoding="utf-8"))
    assert in_html is not None and in_html.groups() == m.groups()
    html = page.read_text(encoding="utf-8")
    n = int(m.group(1))
    assert out.count(mark) == html.count(mark) == n
    return n, int(m.group(2))


def test_detect_says_which_early_ends_the_end_of_input_cut(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # A log cut in the middle (a slice, a rotation): the runs still active at its end are
    # judged as ended there, and the summary says how many early ends that may explain.
    part, out, out_path, page = _detect_on_half(raw, capsys, "first")
    early = sum(1 for r in read_jsonl(out_path) if r.get("reason") == "early_end")
    note = r"(\d+) of the (\d+) early ends were still active when the input ended"
    cut, of = _noted(out, page, note, "Still active when the input ended")
    assert of == early and 0 < cut <= early
    # Without an idle timeout every session completes at the end of input; the same ones
    # were still active then (their last line within the longest gap of a training run).
    code, out, _ = run(["detect", part, "--model", raw["model"], "--idle-timeout", "0"], capsys)
    m = re.search(note, out)
    assert code == 0 and m is not None, out
    assert (int(m.group(1)), int(m.group(2))) == (cut, of)


def _but_file(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "file"}


def test_the_end_of_input_note_goes_to_the_instance_still_active(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # An early end closed for idleness whose id comes back at the end of a cut log: only the
    # second instance was still active when the input ended.
    d: Path = raw["dir"]
    lines = (d / "test.log").read_text(encoding="utf-8").splitlines(keepends=True)
    half = lines[: len(lines) // 2]
    part = d / "half_for_reopen.log"
    part.write_text("".join(half), encoding="utf-8")
    rows_path = d / "half_for_reopen.jsonl"
    timeout = 60.0  # shorter than the learnt one (hours): sessions close for idleness
    flags = ["--model", raw["model"], "--idle-timeout", str(timeout)]
    code, out, err = run(["detect", part, *flags, "--jsonl", rows_path], capsys)
    assert code == 0, err
    m = re.search(r"(\d+) of the (\d+) early ends were still active", out)
    assert m is not None, out
    cut_before, early_before = int(m.group(1)), int(m.group(2))
    end = _log_time(half[-1])
    # An early end whose last line is older than the timeout at the end: closed for
    # idleness, not still active.
    idle = [
        r["session"]
        for r in read_jsonl(rows_path)
        if r.get("reason") == "early_end"
        and end - max(_log_time(x) for x in half if r["session"] in x) > timeout
    ]
    assert idle, "the cut log has early ends that closed for idleness"
    sid = idle[0]
    first = next(x for x in half if sid in x)
    again = half[-1][:23] + first[23:]  # the id's first line again, at the end's time
    reopened = d / "reopened.log"
    reopened.write_text("".join([*half, again]), encoding="utf-8")
    out_path = d / "reopened.jsonl"
    argv = ["detect", reopened, *flags, "--jsonl", out_path, "--show", "1000"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    # The same lines in both files: the same verdicts but for the file they name.
    before = [_but_file(r) for r in read_jsonl(rows_path) if r["session"] == sid]
    rows = [_but_file(r) for r in read_jsonl(out_path) if r["session"] == sid]
    # The id's instances as before (a 60 s timeout may have split it already), then a new one.
    assert rows[:-1] == before and rows[-1]["reason"] == "early_end"
    m = re.search(r"(\d+) of the (\d+) early ends were still active", out)
    assert m is not None, out
    # One more early end, and one more still active: the new instance, not the old one.
    assert (int(m.group(1)), int(m.group(2))) == (cut_before + 1, early_before + 1)
    assert out.count("Still active when the input ended") == cut_before + 1


def _log_time(line: str) -> float:
    from datetime import UTC, datetime

    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    return stamp.replace(tzinfo=UTC).timestamp()


def test_a_reader_that_stops_early_gets_no_error(raw: dict[str, Any]) -> None:
    # logwarden detect ... --jsonl - | head -1: the pipe closes while verdicts are written.
    import subprocess
    import sys

    d: Path = raw["dir"]
    cmd = [sys.executable, "-m", "logwarden", "detect", str(d / "test.log"), "--model",
           str(raw["model"]), "--jsonl", "-", "--no-drift"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.readline().startswith(b"{")
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception" not in err, err


def _stamp(line: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(line[:23]).timestamp()


def check_deviation(r: dict[str, Any]) -> None:
    """A parameter-model verdict names the deviating value, and it is the log's own."""
    dev = r["deviation"]
    p = r["position"]
    line = r["lines"][min(p, 3)]  # the flagged entry's raw line
    assert r["observed_template"] and dev["model"] in ("lstm", "robust")
    assert dev["unit"].startswith(r["observed"] + " after ")
    assert dev["error"] > dev["threshold"]
    if dev["dimension"] == "elapsed":
        assert r["reason"] == "performance" and p > 0
        gap = _stamp(line) - _stamp(r["lines"][min(p, 3) - 1])
        assert dev["observed"] == pytest.approx(gap, abs=2e-3)
        assert dev["sigmas"] > 0 and dev["observed"] > dev["expected"]  # slower, never faster
    else:
        assert r["reason"] == "parameter" and dev["dimension"] == "parameter"
        assert dev["text"] in line and float(dev["text"]) == pytest.approx(dev["observed"])
        assert abs(dev["sigmas"]) > 3 or dev["constant"]


def test_eval_raw_with_labels(raw: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d: Path = raw["dir"]
    code, out, err = run(
        ["eval", d / "test.log", "--model", raw["model"], "--labels", d / "labels.csv", "--json"],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    assert set(report) >= REPORT_KEYS
    with (d / "labels.csv").open(newline="") as fh:
        labels = {row["session"]: int(row["label"]) for row in csv.DictReader(fh)}
    # The same counts as detect's verdicts against the labels file.
    code, _, err = run(
        ["detect", d / "test.log", "--model", raw["model"], "--jsonl", d / "v2.jsonl"], capsys
    )
    assert code == 0, err
    flagged = {r["session"]: r["anomalous"] for r in read_jsonl(d / "v2.jsonl")}
    cells = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for sid, y in labels.items():
        f = flagged[sid]
        cells["tp" if y and f else "fn" if y else "fp" if f else "tn"] += 1
    assert {k: report[k] for k in cells} == cells
    assert sum(cells.values()) == 200
    assert set(report["breakdown"]["reason"]) >= {"unseen_key", "early_end", "ranked_out"}
    by_detector = report["breakdown"]["detector"]
    assert set(by_detector) >= {"keys", "params"}
    assert sum(c["tp"] + c["fp"] for c in by_detector.values()) == cells["tp"] + cells["fp"]


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Enough normal sessions for LSTM parameter models; a test set with only parameter and
    performance anomalies, which a key model cannot see."""
    d = tmp_path_factory.mktemp("timed")
    simulate(SimConfig(seed=21, sessions=1500, normal_only=True)).write(d / "train.log")
    test = simulate(SimConfig(seed=22, sessions=800, anomaly_rate=0.15, kinds=("param", "perf")))
    test.write(d / "test.log", d / "labels.csv")
    model = d / "model"
    argv = ["train", d / "train.log", *RAW, "--out", model, "--epochs", "60", *FAST]
    assert main([str(a) for a in argv]) == 0
    return {"dir": d, "model": model, "sim": test}


def test_parameter_and_performance_anomalies_are_caught(
    timed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    d: Path = timed["dir"]
    m = manifest(timed["model"])
    assert m["detectors"] == ["keys", "params"]
    units = m["param_models"]["units"]
    assert {u["model"] for u in units.values()} == {"lstm", "robust"}
    assert (timed["model"] / "params.safetensors").is_file()
    code, _, err = run(
        ["detect", d / "test.log", "--model", timed["model"], "--jsonl", d / "v.jsonl"], capsys
    )
    assert code == 0, err
    rows = {r["session"]: r for r in read_jsonl(d / "v.jsonl")}
    truth = {s.session: s for s in timed["sim"].sessions}
    for kind in ("param", "perf"):
        ids = [sid for sid, t in truth.items() if t.kind == kind]
        assert len(ids) >= 40
        caught = [rows[sid] for sid in ids if rows[sid]["anomalous"]]
        assert len(caught) >= 0.9 * len(ids), (kind, len(caught), len(ids))
        want = "parameter" if kind == "param" else "performance"
        assert sum(r["reason"] == want for r in caught) >= 0.8 * len(ids)
    normal = [sid for sid, t in truth.items() if t.label == 0]
    flagged = [sid for sid in normal if rows[sid]["anomalous"]]
    assert len(flagged) <= 0.02 * len(normal), flagged
    for r in rows.values():
        if r["anomalous"] and r["detector"] == "params":
            check_deviation(r)


def test_no_params_flag_and_key_sequences_train_the_key_model_only(
    timed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d: Path = timed["dir"]
    argv = ["train", "--force", d / "train.log", *RAW, "--out", tmp_path / "m", "--epochs", "5"]
    argv += FAST
    code, _, err = run([*argv, "--no-params"], capsys)
    assert code == 0, err
    assert "skipped (--no-params)" in err
    m = manifest(tmp_path / "m")
    assert m["detectors"] == ["keys"] and "param_models" not in m
    assert not (tmp_path / "m" / "params.safetensors").exists()
    code, _, err = run(
        ["detect", d / "test.log", "--model", tmp_path / "m", "--jsonl", tmp_path / "v.jsonl"],
        capsys,
    )
    assert code == 0, err
    assert all(r.get("detector") in (None, "keys") for r in read_jsonl(tmp_path / "v.jsonl"))
    code, _, err = run([*argv[:-7], "--confidence", "1.5", *FAST], capsys)
    assert code == 2 and "--confidence" in error_line(err)


def test_parameter_model_weights_are_checked(
    timed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "m"
    shutil.copytree(timed["model"], bundle)
    weights = bundle / "params.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run(["detect", timed["dir"] / "test.log", "--model", bundle], capsys)
    assert code == 1 and "params.safetensors" in err


# --- usage errors: exit 2, one line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--session", SIM_SESSION_REGEX], "--format"),  # raw input without --format
        (["--format", SIM_FORMAT, "--session", "x", "--window", "5"], "not both"),
        (["--format", SIM_FORMAT], "--session"),  # neither --session nor --window
        (["--format", SIM_FORMAT, "--window", "0"], "window"),
        (["--format", "<Date> <Nope", "--window", "5"], ""),  # a broken format string
        (["--format", SIM_FORMAT, "--session", "(unclosed"], ""),  # a broken regex
    ],
)
def test_raw_input_usage_errors(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    extra: list[str], words: str,
) -> None:  # fmt: skip
    argv = ["train", raw["dir"] / "train.log", "--out", tmp_path / "m", *extra, *FAST]
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert words in error_line(err)
    assert not (tmp_path / "m").exists()


def test_an_out_that_cannot_be_a_model_is_refused_before_training(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "a_file"
    taken.write_text("x")
    for out, words in ((taken, "is a file, not a model directory"),
                       (taken / "m", "is not a writable directory")):  # fmt: skip
        argv = ["train", raw["dir"] / "train.log", *RAW, "--out", out, *FAST]
        code, _, err = run(argv, capsys)
        assert code == 2 and words in error_line(err), err
        assert "read" not in err  # nothing was read, nothing trained
        argv = ["feedback", raw["dir"] / "test.log", "--model", raw["model"], "--normal", "x",
                "--out", out]  # fmt: skip
        code, _, err = run(argv, capsys)
        assert code == 2 and words in error_line(err), err


def test_a_session_regex_with_two_groups_is_pointed_out(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["detect", raw["dir"] / "test.log", "--model", raw["model"], "--no-drift"]
    code, _, err = run([*argv, "--session", r"(req)-([0-9a-f-]+)"], capsys)
    assert code == 0 and "--session has 2 groups: the id is what group 1 matches" in err
    code, _, err = run([*argv, "--session", r"req-([0-9a-f-]+)"], capsys)
    assert code == 0 and "groups" not in err


def test_report_paths_are_checked_before_detection(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written once every session is scored: a path that cannot take them fails first.
    nowhere = tmp_path / "missing_dir"
    for flag in ("--html", "--drift-json", "--jsonl"):
        argv = ["detect", raw["dir"] / "test.log", "--model", raw["model"], flag, nowhere / "x"]
        code, out, err = run(argv, capsys)
        assert code == 2 and f"{flag} {nowhere / 'x'}: cannot write there" in err, err
        assert "sessions" not in out and "read" not in err  # nothing was scored
    argv = ["detect", raw["dir"] / "test.log", "--model", raw["model"], "--html", tmp_path]
    code, _, err = run(argv, capsys)
    assert code == 2 and "is a directory, not a file" in err


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        # errors name the flag the user typed, not the config field behind it
        ("--window-size", "0", "--window-size"),
        ("--top-g", "0", "--top-g"),
        ("--layers", "0", "--layers"),
        ("--hidden", "0", "--hidden"),
        ("--epochs", "0", "--epochs"),
        ("--target-fpr", "0", "--target-fpr"),
        ("--target-fpr", "1.5", "--target-fpr"),
    ],
)
def test_bad_hyperparameters(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    flag: str, value: str, words: str,
) -> None:  # fmt: skip
    argv = ["train", seq["normal"], "--input-format", "sequences", "--out", tmp_path / "m"]
    code, _, err = run([*argv, *FAST, flag, value], capsys)
    assert code == 2, err
    assert words in error_line(err)
    assert not (tmp_path / "m").exists()


def test_too_few_sessions_for_the_automatic_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3 sessions for 5 folds: not every session can be scored by a model without it.
    data = write_sequences(tmp_path / "few.txt", grammar(3, seed=0))
    argv = ["train", data, "--input-format", "sequences", "--out", tmp_path / "m", *FAST]
    code, _, err = run([*argv, "--folds", "5"], capsys)
    assert code == 2
    assert "top_g" in error_line(err) and "folds" in error_line(err)


def test_eval_without_labels(seq: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["eval", "--model", seq["model"], "--json"], capsys)
    assert code == 2
    assert "--labels" in error_line(err)
    # Key sequences carry no labels.
    argv = ["eval", seq["normal"], "--input-format", "sequences", "--model", seq["model"]]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "no labels" in error_line(err)
    # Both ways at once.
    code, _, err = run([*argv, "--normal", seq["normal"]], capsys)
    assert code == 2
    assert "not both" in error_line(err)


def test_missing_input_file_is_one_line(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["detect", tmp_path / "nope.txt", "--input-format", "sequences"]
    code, _, err = run([*argv, "--model", seq["model"]], capsys)
    assert code in (1, 2)
    assert "nope.txt" in error_line(err)


# --- runtime failures: exit 1, one line -------------------------------------------------------


def test_missing_model(tmp_path: Path, seq: dict[str, Path], capsys) -> None:
    argv = ["detect", seq["abnormal"], "--input-format", "sequences"]
    code, _, err = run([*argv, "--model", tmp_path / "no-model"], capsys)
    assert code == 1
    assert "no-model" in error_line(err)


@pytest.mark.parametrize("command", ["detect", "eval"])
@pytest.mark.parametrize("damage", ["weights", "manifest"])
def test_tampered_model_exits_1(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    command: str, damage: str,
) -> None:  # fmt: skip
    model = Path(shutil.copytree(seq["model"], tmp_path / "model"))
    if damage == "weights":
        path = model / "keys.safetensors"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        m = manifest(model)
        m["threshold"]["tau"] = 0.5
        (model / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    if command == "detect":
        argv = ["detect", seq["abnormal"], "--input-format", "sequences", "--model", model]
    else:
        argv = ["eval", "--model", model, "--abnormal", seq["abnormal"], "--json"]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert "modified" in error_line(err)
    assert out == ""


def test_missing_raw_input_file_is_named(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The user must learn which file could not be read, not only that no session formed.
    code, _, err = run(["detect", tmp_path / "nope.log", "--model", raw["model"]], capsys)
    assert code == 1
    error_line(err)
    assert "nope.log" in err


def test_train_output_that_cannot_be_written(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    argv = ["train", seq["normal"], "--input-format", "sequences", "--out", taken]
    code, _, err = run([*argv, "--top-g", "2", "--epochs", "2", *FAST], capsys)
    assert code == 2  # a usage error, found before training
    assert "a-file" in error_line(err)
    assert taken.read_text() == "not a directory"


def test_session_in_line_finds_ids_in_header_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shared_data: Callable[..., Path]
) -> None:
    """The openstack format preset moves [req-...] into a header field: --session alone
    finds no id there, --session-in-line does, and the model remembers it."""
    log = shared_data("loghub-2k", "OpenStack", "OpenStack_2k.log")
    base = ["train", log, "--format", "openstack", "--session", "request", "--epochs", "5"]
    code, _, err = run([*base, "--out", tmp_path / "a", *FAST], capsys)
    assert code == 1 and "no session could be formed" in err
    code, _, err = run([*base, "--session-in-line", "--out", tmp_path / "b", *FAST], capsys)
    assert code == 0, err
    assert manifest(tmp_path / "b")["input"]["session_in_line"] is True
    code, out, err = run(["detect", log, "--model", tmp_path / "b", "--show", "0"], capsys)
    assert code == 0, err
    sessions = int(out.split(" sessions")[0].replace(",", ""))
    assert sessions > 800  # one per request id of the file
    argv = ["train", log, "--format", "openstack", "--window", "5", "--session-in-line"]
    code, _, err = run([*argv, "--out", tmp_path / "c", *FAST], capsys)
    assert code == 2 and "--session-in-line" in error_line(err)


def test_repeated_sessions_are_written_as_the_library_gives_them(
    seq: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--jsonl`` encodes an anomalous verdict once per key sequence (repeats share it):
    every line is still the verdict's own JSON, its session id included."""
    sessions = (ABNORMAL * 4) + grammar(10, seed=5) + ABNORMAL[::-1]
    data = write_sequences(tmp_path / "rep.txt", sessions)
    out_path = tmp_path / "v.jsonl"
    argv = ["detect", data, "--input-format", "sequences", "--model", seq["model"]]
    code, _, err = run([*argv, "--jsonl", out_path], capsys)
    assert code == 0, err
    est = DeepLog.load(seq["model"])
    ids = [f"rep:{i}" for i in range(1, len(sessions) + 1)]
    want = est.verdicts(sessions, ids=ids)
    rows = out_path.read_text(encoding="utf-8").splitlines()
    assert sum(v.anomalous for v in want) >= 4 * len(ABNORMAL)
    for line, v in zip(rows, want, strict=True):
        if v.anomalous:
            assert json.loads(line) == json.loads(json.dumps(v.to_dict()))
        else:
            assert json.loads(line)["session"] == v.session


def test_train_keeps_the_fold_models_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_sequences(tmp_path / "t.txt", grammar(200, seed=3))
    argv = ["train", data, "--input-format", "sequences", "--epochs", "30", *FAST]
    # A level the folds' 100 held-out sessions each can judge (1/(100 + 1) <= 5%).
    code, _, err = run([*argv, "--out", tmp_path / "m", "--target-fpr", "0.05"], capsys)
    assert code == 0, err
    assert "fold check: a session the probability cut flags" in err
    est = DeepLog.load(tmp_path / "m")
    assert est.fold_check and est.model_.fold_check and len(est.model_.fold_weights) == 2
    # At 0.5% they cannot (a fold's p-value under 1/101 is its tail model's guess): the
    # cut alone decides, and train says so.
    code, _, err = run([*argv, "--out", tmp_path / "low"], capsys)
    assert code == 0, err
    assert "fold check: off, the fold models held out too few sessions" in err
    low = DeepLog.load(tmp_path / "low").model_
    assert low.config.fold_check and low.fold_weights and not low.fold_resolution
    assert not low.fold_check
    code, _, err = run([*argv, "--out", tmp_path / "n", "--no-fold-check"], capsys)
    assert code == 0, err
    assert "fold check" not in err
    plain = DeepLog.load(tmp_path / "n")
    assert not plain.fold_check and not plain.model_.fold_check
    assert plain.model_.fold_weights is None and plain.model_.calibration.fold_tails is None
    # Smaller: no fold models in the bundle.
    size = lambda m: sum(f.stat().st_size for f in m.iterdir())  # noqa: E731
    assert size(tmp_path / "n") < size(tmp_path / "m")


def test_an_output_never_overwrites_an_input_the_model_or_another_output(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any work, with the log, the model and the other output untouched
    (before, `detect in.log --jsonl in.log` emptied the log)."""
    d, model = raw["dir"], raw["model"]
    log = tmp_path / "in.log"
    log.write_bytes((d / "test.log").read_bytes())
    before = log.read_bytes()
    manifest = (model / "manifest.json").read_bytes()
    same = tmp_path / "same.out"
    cases = [
        (["detect", log, "--model", model, "--jsonl", log], "destroy the input"),
        (["detect", log, "--model", model, "--html", tmp_path / "." / "in.log"], "destroy"),
        (["detect", log, "--model", model, "--jsonl", model / "manifest.json"], "model bundle"),
        (["detect", log, "--model", model, "--jsonl", same, "--html", same], "also --html"),
        (["eval", log, "--model", model, "--labels", d / "labels.csv", "--jsonl", log], "input"),
        (["parse", log, *RAW[:2], "--out", log], "destroy the input"),
        (["parse", log, *RAW[:2], "--out", same, "--templates", same], "also --out"),
        (["workflow", "--model", model, "--json", model / "w.json"], "model bundle"),
        (["simulate", "--out", same, "--labels", same], "also --out"),
    ]
    for argv, message in cases:
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
    assert log.read_bytes() == before
    assert (model / "manifest.json").read_bytes() == manifest
    assert not same.exists() and not (model / "w.json").exists()
    # A hard link to the input is the input too.
    link = tmp_path / "link.log"
    link.hardlink_to(log)
    assert main([str(a) for a in ["detect", log, "--model", model, "--jsonl", link]]) == 2
    assert log.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", "{log}", "--model", "{model}", "--drift-bucket", "0"], "--drift-bucket must be > 0"),
        (["detect", "{log}", "--model", "{model}", "--show", "-1"], "--show must not be negative"),
        (["train", "{log}", *RAW, "--out", "{tmp}/m", "--seed", "-1"], "--seed must be >= 0"),
        (["train", "{log}", *RAW, "--out", "{tmp}/m", "--epochs", "0"], "--epochs must be >= 1"),
        (["parse", "{log}", *RAW[:2], "--out", "{tmp}/p.csv", "--max-templates", "0"],
         "--max-templates must be >= 1 (or unset)"),
    ],
)  # fmt: skip
def test_bad_values_are_named_by_their_flag(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
    message: str,
) -> None:  # fmt: skip
    where = {"{log}": raw["dir"] / "test.log", "{model}": raw["model"], "{tmp}": tmp_path}
    for name, path in where.items():
        argv = [a.replace(name, str(path)) for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")


def test_eval_says_how_many_labelled_sessions_the_input_lacks(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels of sessions that are not in the input were ignored without a word (it hid
    sessions the reading had lost)."""
    d = raw["dir"]
    labels = tmp_path / "labels.csv"
    text = (d / "labels.csv").read_text()
    labels.write_text(text + "blk_123456789,1\nblk_987654321,0\n")
    argv = ["eval", d / "test.log", "--model", raw["model"], "--labels", labels, *RAW, "--json"]
    assert main([str(a) for a in argv]) == 0
    n = len(text.strip().splitlines()) - 1 + 2
    assert f"2 of the {n:,} sessions in {labels} are not in the input" in capsys.readouterr().err
    argv[5] = d / "labels.csv"
    assert main([str(a) for a in argv]) == 0
    assert "not in the input" not in capsys.readouterr().err


def test_raw_lines_given_as_sequences_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw_like = tmp_path / "raw.log"
    raw_like.write_text(
        "".join(f"081109 2036{i:02d} 148 INFO dfs.DataNode: Receiving block blk_{i} src: /10.0.0.{i}:50010\n"
                for i in range(60))
    )  # fmt: skip
    argv = ["train", raw_like, "--input-format", "sequences", "--out", tmp_path / "m",
            "--epochs", "1", *FAST]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert "is the input raw (--input-format raw) or jsonl?" in capsys.readouterr().err
    seqs = write_sequences(tmp_path / "s.txt", grammar(60, seed=3))
    argv[1], argv[5] = seqs, tmp_path / "m2"
    assert main([str(a) for a in argv]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_session_word_that_is_no_preset_is_pointed_out(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """--session instance (for openstack) was taken as the regex 'instance': every line
    holding the word made one session, without a word said."""
    d = raw["dir"]
    base = ["detect", str(d / "test.log"), "--model", str(raw["model"]), "--format", SIM_FORMAT]
    main([*base, "--session", "instance"])
    assert "--session 'instance' is not a preset (hdfs, openstack" in capsys.readouterr().err
    main([*base, "--session", "hdfs"])
    assert "not a preset" not in capsys.readouterr().err


def test_a_grouping_other_than_the_models_is_pointed_out(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """--window 10 on a model of id sessions flagged 79 of 79 windows, and --session X
    replaced the model's sessions, without a word (only --format said it replaced the
    model's)."""
    d = raw["dir"]
    log, model = d / "test.log", raw["model"]
    base = ["detect", log, "--model", model, "--show", "0", "--no-drift"]
    replaced = "replaces the model's sessions (--session "
    code, _, err = run([*base, "--window", "10"], capsys)
    assert code == 0 and f"--window 10 {replaced}" in err
    code, _, err = run([*base, "--session", r"blk_-?\d+"], capsys)
    assert code == 0 and replaced in err
    code, _, err = run([*base, "--session-in-line"], capsys)
    assert code == 0 and f"--session-in-line {replaced}" in err
    # (The labels name id sessions, which windows do not hold: eval then stops.)
    _, _, err = run(
        ["eval", log, "--model", model, "--labels", d / "labels.csv", "--window", "10"], capsys
    )
    assert f"--window 10 {replaced}" in err
    # The model's own grouping, given again, or none given: nothing to say.
    for extra in ([], ["--session", SIM_SESSION_REGEX]):
        code, _, err = run([*base, *extra], capsys)
        assert code == 0 and "replaces the model's" not in err


def test_most_lines_without_a_session_id_are_warned_about(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hadoop by task attempt ids: 1,590 of 2,000 lines without an id, 151 ERROR lines
    among them, were left out with a count in the summary, and detect said "0 anomalous"."""
    d = raw["dir"]
    lines = (d / "test.log").read_text(encoding="utf-8").splitlines()
    mixed = tmp_path / "mixed.log"
    extra = [
        f"{line[:23]} 7 {'ERROR' if i % 3 == 0 else 'INFO'} node.Monitor: disk {i} checked"
        for i, line in enumerate(lines)
    ]
    mixed.write_text("\n".join(lines + extra) + "\n", encoding="utf-8")
    errors = sum(1 for i in range(len(lines)) if i % 3 == 0)
    warning = re.compile(
        r"warning: ([\d,]+) of ([\d,]+) lines hold no session id and were not judged "
        r"\(([\d,]+) of them at level WARN, ERROR or FATAL\): check the --session"
    )
    model = raw["model"]
    code, _, err = run(["detect", mixed, "--model", model, "--show", "0", "--no-drift"], capsys)
    found = warning.search(err)
    assert code == 0 and found, err
    no_id, total, severe = (int(g.replace(",", "")) for g in found.groups())
    # The simulator's own lines without an id, and the added ones.
    assert total == 2 * len(lines) and len(lines) < no_id < total and severe >= errors
    assert f"no_session_id {no_id:,}" in err
    code, _, err = run(["eval", mixed, "--model", model, "--labels", d / "labels.csv"], capsys)
    assert code == 0 and found.group(0) in err
    code, _, err = run(["detect", d / "test.log", "--model", model, "--show", "0"], capsys)
    assert code == 0 and "no session id" not in err


def test_train_warns_when_most_times_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format '<Date> <Time> <Content>' on OpenStack counted bad_timestamp 1,200 of
    1,200 and trained anyway: timing models without elapsed times and no idle timeout,
    without a warning."""
    log = tmp_path / "t.log"
    simulate(SimConfig(seed=5, sessions=60, normal_only=True)).write(log)
    shifted = "<Pid> <Date> <Time> <Level> <Content>"  # Date, Time: '00:00:00.910', '35'
    base = ["train", log, "--session", SIM_SESSION_REGEX, "--epochs", "1", *FAST]
    code, _, err = run([*base, "--format", shifted, "--out", tmp_path / "m1"], capsys)
    assert code == 0 and "could not be read: the timing models" in err
    assert "and the idle timeout (sessions complete at the end of input only) are off" in err
    assert manifest(tmp_path / "m1")["input"]["idle_timeout"] is None
    code, _, err = run([*base, "--format", SIM_FORMAT, "--out", tmp_path / "m2"], capsys)
    assert code == 0 and "could not be read" not in err


def test_files_given_newest_first_are_warned_about(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rotated logs globbed as app.log* come newest first: OpenStack's sessions of both
    days merged (9 sessions of ~50 entries, all flagged count_exceeded) without a word;
    in the other order 18 sessions and normal verdicts. The input is not reordered."""
    log = raw["dir"] / "test.log"
    newer = tmp_path / "newer.log"
    newer.write_text(log.read_text(encoding="utf-8").replace("2026-03-01 ", "2026-03-02 "))
    base = ["detect", "--model", raw["model"], "--show", "0", "--no-drift"]
    code, _, err = run([*base, newer, log], capsys)
    lines = len(log.read_text(encoding="utf-8").splitlines())
    assert code == 0
    assert "1 input file starts before the file before it ends, in log time; " in err
    assert f"{lines:,} lines go back in log time" in err and "give the files oldest first" in err
    assert "input_went_back 1" in err and f"time_went_back {lines:,}" in err
    code, _, err = run([*base, log, newer], capsys)
    assert code == 0 and "went_back" not in err and "oldest first" not in err


def test_input_in_another_form_than_the_models_is_pointed_out(
    seq: dict[str, Path],
    raw: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A raw log read by a sequences model (or sequences by a raw model, or another
    --format) flagged every session as unseen_key without a word, and feedback learnt
    every word of the lines as a key (found by a helper)."""
    log = raw["dir"] / "test.log"
    code, _, err = run(
        ["detect", log, "--model", seq["model"], "--show", "0", "--no-drift"], capsys
    )
    assert code == 0
    assert "hold words like a log line's" in err and "keys the model never saw" in err
    code, _, err = run(
        ["detect", seq["normal"], "--model", raw["model"], "--input-format", "sequences",
         "--show", "0", "--no-drift"],
        capsys,
    )  # fmt: skip
    assert code == 0 and "keys the model never saw" in err
    code, _, err = run(["detect", log, "--model", raw["model"], "--show", "0"], capsys)
    assert code == 0 and "never saw" not in err and "replaces the model's format" not in err
    other = "<Date> <Time> <Level> <Content>"
    code, _, err = run(["detect", log, "--model", raw["model"], "--format", other], capsys)
    assert code == 0 and "replaces the model's format" in err
    code, _, err = run(
        ["detect", log, "--model", seq["model"], "--input-format", "raw", *RAW], capsys
    )
    assert code == 1 and "trained on key sequences" in error_line(err)
    # feedback learns nothing from such input.
    sid = raw["sim"].sessions[0].session
    for extra in (["--model", seq["model"]], ["--model", raw["model"], "--format", other]):
        args = ["feedback", log, *extra, "--normal", sid, "--out", tmp_path / "m2"]
        code, _, err = run(args, capsys)
        assert code == 2 and "nothing learnt" in error_line(err), err
        assert not (tmp_path / "m2").exists()
    # An idle timeout means nothing to windows of N lines: refused, not ignored.
    code, _, err = run(["detect", log, "--model", raw["model"], "--window", "5",
                        "--idle-timeout", "60"], capsys)  # fmt: skip
    assert code == 2 and "not to --window" in error_line(err)
    # --window on a model of in-line id sessions drops the in-line setting with the regex.
    spec = InputSpec(format="x", session="req", session_in_line=True).override(window=5)
    assert spec.window == 5 and spec.session is None and not spec.session_in_line


def test_train_says_when_a_log_is_too_short_to_link_executions(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Window workflows of a short log (Spark_2k: 31 s) were 36 one-step fragments, and
    nothing said why: linking entries by identifiers needs a log several horizons long."""
    log = raw["dir"] / "test.log"
    lines = log.read_text(encoding="utf-8").splitlines()[:300]
    short = tmp_path / "short.log"
    short.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["train", short, "--format", SIM_FORMAT, "--window", "20", "--epochs", "2", *FAST]
    code, _, err = run([*args, "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    info = manifest(tmp_path / "m")["train_info"]["workflows"]
    assert info["interleaved"] and info["log_span_seconds"] < info["linking_needs_seconds"]
    assert "under the" in err and "may be fragments" in err


def test_the_command_keeps_large_freed_blocks_for_reuse() -> None:
    # NumPy's large temporaries otherwise cost a page fault every 4 KB each time they are
    # made (glibc hands blocks of 128 KB and more back to the system when freed).
    import platform

    from logwarden.cli.main import tune_allocator

    assert tune_allocator() is (platform.libc_ver()[0] == "glibc")


def test_the_service_keeps_the_allocators_defaults() -> None:
    # A service runs for weeks: blocks kept in the heap can fragment it.
    from logwarden.cli.main import build_parser, long_running

    def args(*argv: str) -> Any:
        return build_parser().parse_known_args(list(argv))[0]

    assert long_running(args("serve", "--model", "m", "--store", "s.db"))
    assert long_running(args("demo", "--serve"))
    assert not long_running(args("demo"))
    assert not long_running(args("detect", "x.log", "--model", "m"))


def test_train_names_the_counters_it_does_not_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task counter in a log without ids grows past its training range in every later
    window: train learns it is a counter, says so, and keeps the decision in the bundle."""
    import random

    rng = random.Random(3)
    lines, t = [], 0.0
    for task in range(400):
        for text in (
            f"Got assigned task {task}",
            f"Finished task {task} in {rng.randint(90, 110)} ms",
        ):
            t += rng.uniform(0.01, 0.03)
            stamp = f"2026-03-01 00:{int(t) // 60:02d}:{t % 60:06.3f}"
            lines.append(f"{stamp} 7 INFO exec.Executor: {text}")
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    argv = ["train", tmp_path / "train.log", "--format", SIM_FORMAT, "--window", "10"]
    code, _, err = run([*argv, "--out", out, "--epochs", "2", *FAST], capsys)
    assert code == 0, err
    said = " ".join(err.split())
    assert "counters, not modelled" in said, err
    assert "parameter 0 (task)" in said
    counters = manifest(out)["param_models"]["counters"]
    assert len(counters) == 2 and all(p == [0] for p in counters.values()), counters


def test_train_warns_when_the_order_rules_could_not_be_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With 14 training sessions no rule can be calibrated at the 0.5% target (one session
    left out is 7%): train says which rules are gone, why, and what to do."""
    few = tmp_path / "few.txt"
    runs = []
    for i in range(14):
        steps = list(range(1, 26)) + [26] * (i % 3)  # a retried last step
        if i == 0:
            steps.append(27)  # the only run that ends with this step
        if i == 1:
            steps.remove(13)  # the only run that skips one, and the shortest
        runs.append(" ".join(map(str, steps)))
    few.write_text("\n".join(runs) + "\n", encoding="utf-8")
    argv = ["train", few, "--input-format", "sequences", "--epochs", "3", *FAST]
    code, _, err = run([*argv, "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    said = " ".join(err.split())
    assert "rules not kept: unseen transitions" in said, err
    assert "early ends" in said and "the length rule" in said
    assert "with 14 sessions one alone is 7.14%, too few sessions to calibrate" in said
    assert "Only unseen keys" in said and "--target-fpr (11.90%" in said and "--top-g" in said
    # Enough sessions that take one path: every rule is kept, nothing to say.
    many = tmp_path / "many.txt"
    many.write_text((" ".join(map(str, range(1, 26))) + "\n") * 400, encoding="utf-8")
    argv = ["train", many, "--input-format", "sequences", "--epochs", "3", *FAST]
    code, _, err = run([*argv, "--out", tmp_path / "m2"], capsys)
    assert code == 0, err
    assert "rules not kept" not in err


def test_rules_lost_to_rare_paths_are_not_blamed_on_too_few_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """800 sessions, enough for one to fit the budget, but 12 each with an order of its
    own: the advice named 'at least 667 sessions' and a --target-fpr lower than the
    target as 'higher'."""
    steps = list(range(1, 21))
    runs = [" ".join(map(str, steps))] * 788
    for i in range(12):  # each swaps its own pair of steps
        own = steps.copy()
        own[i + 2], own[i + 3] = own[i + 3], own[i + 2]
        runs.append(" ".join(map(str, own)))
    paths = tmp_path / "paths.txt"
    paths.write_text("\n".join(runs) + "\n", encoding="utf-8")
    argv = ["train", paths, "--input-format", "sequences", "--epochs", "3", *FAST]
    code, _, err = run([*argv, "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    said = " ".join(err.split())
    assert "rules not kept: unseen transitions" in said, err
    assert "hold a path of their own" in said and "too few sessions" not in said
    assert "lets one of" not in said and "a higher --target-fpr than 0.50%" in said
    assert "may pass as normal" in said and "with steps out of order" in said


CUT_PART = {"end": slice(None, 2), "start": slice(2, None)}  # what a cut run logs


@pytest.mark.parametrize("cut", ["end", "start"])
def test_train_does_not_learn_an_end_or_start_where_the_input_cut_a_run_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: str
) -> None:
    """end: the last run of the training log stops after its second step because the file
    ends there; start: the first run begins at its third step because the file starts
    there (a slice, a rotation). train says so and learns no end after that step, or no
    start at it (the workflow has none), while its entries still train the parameter
    models."""
    runs = [(r, slice(None)) for r in range(21)]
    at = 20 if cut == "end" else 0  # the run the file cuts
    runs[at] = (at, CUT_PART[cut])
    _job_log(tmp_path / "train.log", runs)
    out = tmp_path / "model"
    argv = ["train", tmp_path / "train.log", "--format", SIM_FORMAT, "--session", r"run-\d+"]
    code, _, err = run([*argv, "--out", out, "--epochs", "5", *FAST], capsys)
    assert code == 0, err
    said = " ".join(err.split())
    ended, began = "still going when the input ended", "already going when the input began"
    assert f"1 session {ended if cut == 'end' else began}" in said, err
    assert (began if cut == "end" else ended) not in said
    assert "left out of the key model and the workflows" in said
    assert "logwarden train: 20 sessions" in said
    m = manifest(out)
    assert m["calibration"]["sessions"] == 20
    assert m["train_info"]["params"]["entries"] == 82  # the cut run's 2 entries too
    code, _, err = run(["workflow", "--model", out, "--json", tmp_path / "wf.json"], capsys)
    assert code == 0, err
    flows = json.loads((tmp_path / "wf.json").read_text(encoding="utf-8"))["workflows"]
    edge = "<end>" if cut == "end" else "<start>"
    found = {
        (e["from"], e["to"], e["count"])
        for w in flows
        for e in w["edges"]
        if edge in (e["from"], e["to"])
    }
    assert len(found) == 1 and next(iter(found))[2] == 20, found


def test_detect_says_which_anomalies_began_before_the_input(
    raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # A log cut in the middle (a slice, a rotation): the runs already going at its start
    # miss their first steps; the summary says how many anomalies that may explain, and
    # each such verdict says so (text, HTML), its verdict unchanged.
    d: Path = raw["dir"]
    part, out, out_path, page = _detect_on_half(raw, capsys, "second")
    rows = read_jsonl(out_path)
    flagged = sum(r["anomalous"] for r in rows)
    note = r"(\d+) of the (\d+) anomalies (?:is a run|are runs) that began before the input"
    began, of = _noted(out, page, note, "Began before the input")
    assert of == flagged and 0 < began <= flagged
    # eval says the same of the flagged sessions, on stderr.
    code, out, err = run(
        ["eval", part, "--model", raw["model"], "--labels", d / "labels.csv"], capsys
    )
    assert code == 0, err
    assert f"{began} of the {flagged} anomalies" in " ".join(err.split()), err
    # The whole log began with its runs: nothing to say.
    code, out, err = run(["detect", d / "test.log", "--model", raw["model"]], capsys)
    assert code == 0, err
    assert "began before the input" not in out


UNTIMED_FORMAT = "<Pid> <Level> <Component>: <Content>"  # _job_log's lines without a time


def _job_log(path: Path, runs: list[tuple[int, slice]], t: float = 0.0, timed: bool = True) -> Path:
    """A log of jobs of four steps, one after the other: per run, its number and the
    steps it logs (``timed``: each line with its date and time, in SIM_FORMAT; else
    without, in UNTIMED_FORMAT)."""
    steps = ["Starting job {r}", "Loaded {n} items for job {r}", "Job {r} computing now",
             "Finished job {r} cleanly"]  # fmt: skip
    lines = []
    for run_no, part in runs:
        for i, step in enumerate(steps[part]):
            t += 1.0 + 0.1 * (run_no % 3) + (2.0 if i == 0 else 0.0)
            stamp = f"2026-03-01 00:{int(t) // 60:02d}:{t % 60:06.3f} " if timed else ""
            text = step.format(r=f"run-{run_no}", n=10 + run_no % 5)
            lines.append(f"{stamp}7 INFO app.Worker: {text}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_only_a_run_near_the_start_of_the_input_began_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two runs miss their first two steps: the first line of the input's, cut by its start,
    # and one a minute later, a run that really skipped them. Both are flagged; only the
    # first is said to have begun before the input.
    whole = slice(None)
    train = _job_log(tmp_path / "train.log", [(r, whole) for r in range(40)])
    out = tmp_path / "model"
    argv = ["train", train, "--format", SIM_FORMAT, "--session", r"run-\d+", "--out", out]
    code, _, err = run([*argv, "--epochs", "30", *FAST], capsys)
    assert code == 0, err
    runs = [(100, slice(2, None)), *((r, whole) for r in range(101, 106))]
    runs += [(106, slice(2, None)), *((r, whole) for r in range(107, 110))]
    test = _job_log(tmp_path / "test.log", runs, t=600.0)
    code, out_text, err = run(["detect", test, "--model", out, "--show", "10"], capsys)
    assert code == 0, err
    assert "10 sessions, 2 anomalous" in out_text, out_text
    assert "1 of the 2 anomalies is a run that began before the input" in out_text
    noted = out_text.split("(Began before the input")[0]
    assert "run-100" in noted and "run-106" not in noted
    assert out_text.count("(Began before the input") == 1


def test_durations_read_as_a_person_reads_them() -> None:
    # train printed "sessions complete after 4.3202e+06 s of log time".
    from logwarden.cli.train import duration_text

    assert duration_text(4.3202e06) == "4,320,200 s (50 days)"
    assert duration_text(2500.0) == "2,500 s (42 minutes)"
    assert duration_text(7200.0) == "7,200 s (2 hours)"
    assert duration_text(1.5) == "1.5 s"
    assert duration_text(100.0) == "100 s"


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models of _job_log's jobs, every training run whole: one trained with log times
    (the longest gap of a run: 1.2 s; the idle timeout, 100 times it: 120 s), one without
    (the longest stretch of lines of a run: 1, and no idle timeout)."""
    d = tmp_path_factory.mktemp("jobs")
    whole = [(r, slice(None)) for r in range(40)]
    models = {}
    for name, fmt in (("timed", SIM_FORMAT), ("untimed", UNTIMED_FORMAT)):
        train = _job_log(d / f"{name}.log", whole, timed=name == "timed")
        models[name] = d / f"{name}_model"
        argv = ["train", train, "--format", fmt, "--session", r"run-\d+", "--out", models[name]]
        code = main([str(a) for a in [*argv, "--epochs", "30", *FAST]])
        assert code == 0
    return models


# A run that stops after its second step (an early end) at the start of the input, ten
# whole runs (about 65 s of log time, within the idle timeout), and one more that stops
# there at the input's end, as a log cut there would show it.
ENDED_LONG_AGO = [(100, slice(0, 2)), *((r, slice(None)) for r in range(101, 111))]
CUT_AT_END = [*ENDED_LONG_AGO, (111, slice(0, 2))]
STILL_ACTIVE = r"(\d+) of the (\d+) early ends were still active when the input ended \(([^)]*)\)"


def _still_active(out: str) -> tuple[int, int, str]:
    """The note on early ends still active when the input ended: its counts and window."""
    m = re.search(STILL_ACTIVE, " ".join(out.split()))
    assert m is not None, out
    return int(m.group(1)), int(m.group(2)), m.group(3)


def _marked_still_active(out: str) -> list[str]:
    """The sessions whose verdict (as --show prints it) is marked still active at the end."""
    verdicts = re.split(r"\n(?=\S)", out)
    return [v.split(":")[0] for v in verdicts if "(Still active when the input ended" in v]


def test_an_early_end_long_before_the_input_ended_was_not_still_active(
    jobs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two early ends, both within the idle timeout of the input's end: only the run cut by
    # the end (its last line within the longest gap of a training run, 1.2 s, of the
    # input's last) was still active; the other stopped a minute before the input did.
    test = _job_log(tmp_path / "test.log", CUT_AT_END, t=600.0)
    page = tmp_path / "report.html"
    argv = ["detect", test, "--model", jobs["timed"], "--show", "10", "--html", page]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "12 sessions, 2 anomalous (early_end 2)" in out, out
    cut, early, window = _still_active(out)
    assert (cut, early) == (1, 2)
    assert (
        window == "a line within the longest gap of a training run, 1.2 s of log time, of its last"
    )
    # The mark goes to the run still active at the end, not to the one long over.
    assert _marked_still_active(out) == ["run-111"], out
    assert page.read_text(encoding="utf-8").count("Still active when the input ended") == 1
    # Without its last run, the input ended long after either early end: no note at all.
    test = _job_log(tmp_path / "over.log", ENDED_LONG_AGO, t=600.0)
    code, out, err = run(["detect", test, "--model", jobs["timed"], "--show", "10"], capsys)
    assert code == 0, err
    assert "1 anomalous" in out and "were still active" not in out, out
    assert "(Still active when the input ended" not in out


def test_eval_says_which_early_ends_were_still_active_and_how_they_are_labelled(
    jobs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # eval gives detect's note too, with the labels of those early ends: the run the end
    # of the input cut is normal, the one that stopped a minute before is not.
    test = _job_log(tmp_path / "test.log", CUT_AT_END, t=600.0)
    labels = tmp_path / "labels.csv"
    rows = [f"run-{r},{'Anomaly' if r == 100 else 'Normal'}" for r, _ in CUT_AT_END]
    labels.write_text("BlockId,Label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    argv = ["eval", test, "--model", jobs["timed"], "--labels", labels]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert _still_active(err)[:2] == (1, 2), err
    assert "(0 of them labelled anomalous)" in " ".join(err.split()), err
    # Nothing cut at the end: no note.
    over = _job_log(tmp_path / "over.log", ENDED_LONG_AGO, t=600.0)
    code, _, err = run(["eval", over, "--model", jobs["timed"], "--labels", labels], capsys)
    assert code == 0 and "were still active" not in err, err


def test_without_timestamps_still_active_is_judged_in_lines(
    jobs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A log without times (no idle timeout either): the run whose last line is within the
    # longest stretch of lines of a training run (1) of the input's last was still active.
    test = _job_log(tmp_path / "test.log", CUT_AT_END, t=600.0, timed=False)
    code, out, err = run(["detect", test, "--model", jobs["untimed"], "--show", "10"], capsys)
    assert code == 0, err
    assert "12 sessions, 2 anomalous (early_end 2)" in out, out
    cut, early, window = _still_active(out)
    assert (cut, early) == (1, 2)
    assert window == "a line within the longest gap of a training run, 1 line, of its last"
    assert _marked_still_active(out) == ["run-111"], out


def test_a_bundle_without_the_longest_gap_judges_still_active_by_the_idle_timeout(
    jobs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bundle trained before the longest gap was kept: every early end within the idle
    # timeout (120 s) of the input's end was still active, as that version said.
    from logwarden.detect.detector import Detector

    old = Detector.load(jobs["timed"])
    del old.model.train_info_["longest_gap"]
    old.save(tmp_path / "old")
    test = _job_log(tmp_path / "test.log", CUT_AT_END, t=600.0)
    code, out, err = run(["detect", test, "--model", tmp_path / "old", "--show", "10"], capsys)
    assert code == 0, err
    cut, early, window = _still_active(out)
    assert (cut, early) == (2, 2)
    assert window == "a line within the idle timeout, 120 s of log time, of its last"
    assert _marked_still_active(out) == ["run-100", "run-111"], out


def test_the_began_before_note_says_one_line_not_one_lines() -> None:
    from types import SimpleNamespace

    from logwarden.cli.detect import began_note

    one = SimpleNamespace(seconds=None, first_time=None, lines=1)
    assert "longest gap of a training run, 1 line, of" in began_note(1, 3, one)
    many = SimpleNamespace(seconds=None, first_time=None, lines=1929)
    assert "longest gap of a training run, 1,929 lines, of" in began_note(2, 3, many)
