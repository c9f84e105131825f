"""`logwarden train --supervised`, `detect --line-scores` and `eval --line-labels` end to
end, in process, for the supervised model and DeepLog in window mode, and the mistakes a
user can make with them (exit 2, one line naming the problem)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from logwarden.cli import main
from logwarden.detect import SupervisedDetector
from test_supervised import FMT, labelled_log, write_labels, write_lines

FAST = ["--hidden", "8", "--epochs", "30", "--device", "cpu", "-q"]


def run(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def error_line(err: str) -> str:
    errors = [line for line in err.strip().splitlines() if line.startswith("logwarden: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("supcli")
    train, train_labels = labelled_log(1500, seed=11)
    test, test_labels = labelled_log(600, seed=12)
    test.insert(10, "")  # an empty line: a line without an entry, still one output row
    test_labels.insert(10, 0)
    f = {
        "train": write_lines(d / "train.log", train),
        "train_labels": write_labels(d / "train.csv", train_labels),
        "test": write_lines(d / "test.log", test),
        "test_labels": write_labels(d / "test.csv", test_labels),
        "model": d / "model",
        "window_model": d / "window_model",
    }
    argv = ["train", f["train"], "--format", FMT, "--supervised", "--line-labels",
            f["train_labels"], "--window-size", "5", "--out", f["model"], *FAST]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    argv = ["train", f["train"], "--format", FMT, "--window", "50", "--window-size", "5",
            "--layers", "1", "--no-params", "--out", f["window_model"], *FAST]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return f


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_supervised_writes_a_bundle(files: dict[str, Path]) -> None:
    m = json.loads((files["model"] / "manifest.json").read_text())
    assert m["model"] == "supervised" and m["params"]["window"] == 5
    assert m["params"]["hidden"] == 8 and m["params"]["layers"] == 1  # supervised default
    assert m["input"] == {"input_format": "raw", "format": FMT, "supervised": True}
    assert m["parser"]["templates"] and 0 < m["threshold"]["probability"] < 1


def test_detect_line_scores_one_row_per_input_line(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "scores.csv"
    code, out, err = run(["detect", files["test"], "--model", files["model"],
                          "--line-scores", out_csv], capsys)  # fmt: skip
    assert code == 0, err
    rows = read_scores(out_csv)
    assert [int(r["LineId"]) for r in rows] == list(range(1, 602))
    assert rows[10] == {**rows[9], "LineId": "11"}  # the empty line repeats the verdict before
    # The same verdicts as the library gives.
    det = SupervisedDetector.load(files["model"])
    want = det.line_verdicts(det.read([str(files["test"])]))
    assert [r["Anomalous"] == "1" for r in rows] == want.flags.tolist()
    flagged = sum(r["Anomalous"] == "1" for r in rows)
    assert out.startswith(f"601 lines, {flagged} in anomalous windows")
    assert flagged > 0


def test_a_line_target_ensemble_from_the_cli(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["train", files["train"], "--format", FMT, "--supervised", "--line-labels",
                        files["train_labels"], "--window-size", "5", "--target", "line",
                        "--ensemble", "2", "--out", tmp_path / "m", *FAST], capsys)  # fmt: skip
    assert code == 0, err
    assert "warning" not in err, err  # the validation part holds dozens of anomalous lines
    assert "2 networks" in err and re.search(r"\d+/\d+ epochs \(best \d+/\d+\)", err), err
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"]["target"] == "line" and manifest["params"]["ensemble"] == 2
    assert [m["seed"] for m in manifest["train_info"]["members"]] == [0, 1]
    code, out, err = run(["eval", files["test"], "--model", tmp_path / "m", "--line-labels",
                          files["test_labels"], "--json"], capsys)  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    assert rep["windows"]["f1"] > 0.8, rep


def test_training_warns_when_validation_holds_few_anomalous_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last 20% of the entries pick the epoch and the threshold: with 1 anomalous line
    there (loghub-2k BGL's case) the user is told, and the bundle keeps the count."""
    lines, labels = labelled_log(600, seed=5)
    tail = [i for i in range(480, 600) if labels[i]]
    for i in tail[1:]:  # one anomaly left in the validation part
        lines[i] = "INFO cache: hit for key user1"
        labels[i] = 0
    log = write_lines(tmp_path / "t.log", lines)
    csv_path = write_labels(tmp_path / "t.csv", labels)
    code, _, err = run(["train", log, "--format", FMT, "--supervised", "--line-labels", csv_path,
                        "--window-size", "5", "--out", tmp_path / "m", "--hidden", "8",
                        "--epochs", "2", "--device", "cpu", "-q"], capsys)  # fmt: skip
    assert code == 0, err
    assert len(tail) > 1 and "holds 1 anomalous line:" in err, err
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["train_info"]["anomalous_validation_entries"] == 1


def test_a_span_model_from_the_cli(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--span`` trains the state-carrying model; ``detect --line-scores`` and ``eval``
    use the saved bundle, and a context below the window is fine with a span."""
    code, _, err = run(["train", files["train"], "--format", FMT, "--supervised", "--line-labels",
                        files["train_labels"], "--window-size", "5", "--target", "line",
                        "--context", "3", "--span", "40", "--out", tmp_path / "m", *FAST],
                       capsys)  # fmt: skip
    assert code == 0, err
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"]["span"] == 40 and manifest["params"]["context"] == 3
    out_csv = tmp_path / "s.csv"
    code, _, err = run(["detect", files["test"], "--model", tmp_path / "m", "--line-scores",
                        out_csv, "--show", "0"], capsys)  # fmt: skip
    assert code == 0, err
    assert len(read_scores(out_csv)) == 601
    code, out, err = run(["eval", files["test"], "--model", tmp_path / "m", "--line-labels",
                          files["test_labels"], "--json"], capsys)  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    assert rep["windows"]["f1"] > 2 * rep["flag_all"]["windows"]["f1"], rep


def test_eval_line_labels_supervised(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["eval", files["test"], "--model", files["model"], "--line-labels",
                          files["test_labels"], "--json"], capsys)  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    assert rep["window"] == 5
    for level in ("lines", "windows"):
        c = rep[level]
        assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == 601
        assert {"precision", "recall", "f1"} <= set(c)
    assert rep["windows"]["f1"] > 2 * rep["flag_all"]["windows"]["f1"]
    code, out, _ = run(["eval", files["test"], "--model", files["model"], "--line-labels",
                        files["test_labels"]], capsys)  # fmt: skip
    assert code == 0 and "flagging everything" in out


def test_unsupervised_window_mode_line_scores_and_eval(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "u.csv"
    code, out, err = run(["detect", files["test"], "--model", files["window_model"],
                          "--line-scores", out_csv, "--show", "0"], capsys)  # fmt: skip
    assert code == 0, err
    rows = read_scores(out_csv)
    assert len(rows) == 601 and {r["Anomalous"] for r in rows} <= {"0", "1"}
    code, out, err = run(["eval", files["test"], "--model", files["window_model"],
                          "--line-labels", files["test_labels"], "--json"], capsys)  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    flagged_lines = sum(r["Anomalous"] == "1" for r in rows)
    assert rep["lines"]["tp"] + rep["lines"]["fp"] == flagged_lines
    assert rep["window"] == 5


def test_line_scores_need_window_mode(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = write_lines(
        tmp_path / "s.log", [f"INFO a: job {i % 7} step {i}" for i in range(200)]
    )
    model = tmp_path / "m"
    assert main(["train", str(sessions), "--format", FMT, "--session", r"job (\d+)", "--out",
                 str(model), "--layers", "1", "--no-params", *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    code, _, err = run(
        ["detect", sessions, "--model", model, "--line-scores", tmp_path / "x.csv"], capsys
    )
    assert code == 2 and "trained with --window N (or --supervised)" in error_line(err)


def test_labels_saved_by_excel_as_unicode_text_and_labels_from_stdin(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A label CSV in UTF-16 (Excel's "Unicode text") was refused as a binary file; --line-
    labels - (the logs in files) read no standard input; both from standard input: a clear
    error before anything is read."""
    text = files["test_labels"].read_text(encoding="utf-8").replace("\n", "\r\n")
    utf16 = tmp_path / "unicode.csv"
    utf16.write_bytes(text.encode("utf-16"))
    eval_args = ["eval", files["test"], "--model", files["model"], "--json"]
    code, expected, err = run([*eval_args, "--line-labels", files["test_labels"]], capsys)
    assert code == 0, err
    code, out, err = run([*eval_args, "--line-labels", utf16], capsys)
    assert code == 0 and out == expected, err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-16"))))
    code, out, err = run([*eval_args, "--line-labels", "-"], capsys)
    assert code == 0 and out == expected, err
    both = "--line-labels - and the input - both read standard input"
    code, _, err = run(["eval", "-", "--model", files["model"], "--line-labels", "-"], capsys)
    assert code == 2 and both in error_line(err)
    code, _, err = run(["train", "-", "--format", FMT, "--supervised", "--line-labels", "-",
                        "--out", tmp_path / "m", *FAST], capsys)  # fmt: skip
    assert code == 2 and both in error_line(err)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("LineId,Label\n1,0\n2,oops\n", "unknown label 'oops' for line 2"),
        ("LineId,Label\n1,0\n", "no label for input line 2"),
        ("LineId,Label\n" + "".join(f"{i},0\n" for i in range(1, 700)), "more labels than lines"),
        ("LineId,Label\n1,0\n3,0\n", "no label for line 2"),
    ],
)
def test_bad_label_files_are_one_clear_error(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    labels: str,
    message: str,
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(labels)
    code, _, err = run(
        ["eval", files["test"], "--model", files["model"], "--line-labels", bad], capsys
    )
    assert code == 2 and message in error_line(err) and "bad.csv" in error_line(err)
    code, _, err = run(["train", files["test"], "--format", FMT, "--supervised", "--line-labels",
                        bad, "--out", tmp_path / "m", *FAST], capsys)  # fmt: skip
    assert code == 2 and message in error_line(err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--supervised"], "--supervised needs --line-labels"),
        (["--line-labels", "x.csv"], "--ensemble and --span go with"),
        (["--context", "30"], "--ensemble and --span go with"),
        (["--target", "line"], "--ensemble and --span go with"),
        (["--ensemble", "2"], "--ensemble and --span go with"),
        (["--span", "100"], "--ensemble and --span go with --supervised"),
        (
            ["--supervised", "--line-labels", "x.csv", "--span", "-1"],
            "--span must be >= 0",
        ),
        (
            ["--supervised", "--line-labels", "x.csv", "--span", "50", "--context", "-1"],
            "--context must be >= 0 with span",
        ),
        (
            ["--supervised", "--line-labels", "x.csv", "--ensemble", "0"],
            "--ensemble must be >= 1",
        ),
        (
            ["--supervised", "--line-labels", "x.csv", "--context", "3"],
            "--context must be 0 (the window) or >= window",
        ),
        (
            ["--supervised", "--line-labels", "x.csv", "--window", "10"],
            "drop --session and --window",
        ),
        (["--supervised", "--line-labels", "x.csv", "--top-g", "3"], "--top-g and --no-params"),
        (
            ["--supervised", "--line-labels", "x.csv", "--pos-weight", "0"],
            "--pos-weight must be > 0",
        ),
    ],
)
def test_train_usage_errors(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    code, _, err = run(
        ["train", files["train"], "--format", FMT, "--out", tmp_path / "m", *extra, *FAST], capsys
    )
    assert code == 2 and message in error_line(err)


def test_eval_and_detect_usage_errors(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["eval", files["test"], "--model", files["model"]], capsys)
    assert code == 2 and "give --line-labels FILE" in error_line(err)
    code, _, err = run(
        ["detect", files["test"], "--model", files["model"], "--jsonl", "x.jsonl"], capsys
    )
    assert code == 2 and "use --line-scores" in error_line(err)


def test_training_without_anomalies_in_the_training_part(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [f"INFO a: step {i}" for i in range(300)]
    log = write_lines(tmp_path / "n.log", lines)
    labels = write_labels(tmp_path / "n.csv", [0] * 300)
    code, _, err = run(["train", log, "--format", FMT, "--supervised", "--line-labels", labels,
                        "--out", tmp_path / "m", *FAST], capsys)  # fmt: skip
    assert code == 2 and "no anomalous window in the training part" in error_line(err)


def test_bgl_label_format_on_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, labels = labelled_log(900, seed=5)
    bgl = [f"{'KERNDTLB' if y else '-'} {line}" for line, y in zip(lines, labels, strict=True)]
    log = write_lines(tmp_path / "b.log", bgl)
    fmt = "<Label> " + FMT
    code, _, err = run(["train", log, "--format", fmt, "--supervised", "--line-labels", log,
                        "--line-label-format", "bgl", "--out", tmp_path / "m", *FAST], capsys)  # fmt: skip
    assert code == 0, err
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert "Label" not in m["features"]["field_names"]


def test_supervised_commands_take_format_auto_and_warn_of_another_format(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format auto` was "unknown log format 'auto'" in every supervised command, and
    another --format replaced the model's without a word (every line then anomalous)."""
    out_csv = tmp_path / "s.csv"
    code, _, err = run(["detect", files["test"], "--model", files["model"], "--format", "auto",
                        "--line-scores", out_csv], capsys)  # fmt: skip
    assert code == 2 and "--format auto: no preset fits" in error_line(err)
    code, _, err = run(["detect", files["test"], "--model", files["model"], "--format",
                        "<Level> <Content>", "--line-scores", out_csv], capsys)  # fmt: skip
    assert code == 0 and "replaces the model's format" in err
    code, _, err = run(["detect", files["test"], "--model", files["model"], "--format", FMT,
                        "--line-scores", out_csv], capsys)  # fmt: skip
    assert code == 0 and "replaces" not in err
