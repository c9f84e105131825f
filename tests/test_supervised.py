"""The supervised model for logs without session ids, per-line verdicts and line labels:
loaders and their errors, features, windows, the NumPy forward pass against PyTorch's,
learning on a small log with known anomalies, the bundle, and DeepLog's per-entry scores."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logwarden.detect import DeepLog, Detector, LineVerdicts, SupervisedDetector
from logwarden.detect.lines import rolling_any, rolling_max
from logwarden.errors import BundleError, ConfigError, NotFittedError
from logwarden.evaluate import LineReport
from logwarden.io.datasets import DataError, LineLabels, load_line_labels
from logwarden.io.entries import feature_fields, read_stream
from logwarden.models.supervised import (
    OTHER,
    UNK,
    Features,
    SupervisedConfig,
    SupervisedDeepLog,
    average_precision,
    best_f1_threshold,
    span_rows,
    tokenize,
    window_labels,
    windows_of,
)
from logwarden.records import Stats
from synthetic import grammar

FMT = "<Level> <Component>: <Content>"
TINY = {"hidden": 8, "embedding": 4, "epochs": 40, "patience": 8, "device": "cpu"}


def labelled_log(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Interleaved normal traffic with two kinds of labelled anomaly: a disk error line
    (a key of its own) and a request that took 50-100x longer than usual."""
    rng = random.Random(seed)
    lines: list[str] = []
    labels: list[int] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.03:
            lines.append(
                f"ERROR disk: I/O error on /dev/sd{rng.choice('abc')} sector {rng.randrange(10**6)}"
            )
            labels.append(1)
        elif r < 0.06:
            lines.append(
                f"INFO api: request {rng.randrange(1000)} served in {rng.randrange(2000, 4000)} ms"
            )
            labels.append(1)
        elif r < 0.5:
            lines.append(
                f"INFO api: request {rng.randrange(1000)} served in {rng.randrange(20, 40)} ms"
            )
            labels.append(0)
        elif r < 0.8:
            lines.append(f"INFO cache: hit for key user{rng.randrange(50)}")
            labels.append(0)
        else:
            lines.append(
                f"DEBUG worker: heartbeat from node{rng.randrange(8)} load {rng.random():.2f}"
            )
            labels.append(0)
    return lines, labels


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_labels(path: Path, labels: list[int], header: str = "LineId,Label") -> Path:
    path.write_text(header + "\n" + "".join(f"{i},{y}\n" for i, y in enumerate(labels, 1)))
    return path


# --- line labels ------------------------------------------------------------------------------


def test_line_labels_from_csv_any_order_words_and_extra_columns(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_text(
        "label,Other,LineId\nNormal,x,2\nAnomaly,y,1\n0,z,3\n\n1,w,3\n".replace("1,w,3", "0,w,3")
    )
    stats = Stats()
    labels = load_line_labels(p, stats=stats)
    assert labels.labels == [1, 0, 0]
    assert labels.rows == [3, 2, 4]
    assert stats["duplicate_label"] == 1 and stats["blank_line"] == 1
    labels.check(3)
    p.write_text("LineId,Label\n1,True\n2,false\n")  # a boolean column as pandas writes it
    assert load_line_labels(p).labels == [1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("LineId,Label\n1,0\n2,maybe\n", "l.csv:3: unknown label 'maybe' for line 2"),
        # loghub's structured CSV: its Label column holds BGL's convention (it pointed to
        # --line-label-format bgl, which then read the CSV as a log).
        ("LineId,Label\n1,-\n", "give the log itself (BGL_2k.log) with --line-label-format"),
        ("LineId,Label\n1,KERNDTLB\n", "give the log itself"),
        (
            "LineId,Label\n1,0\n3,1\n",
            "l.csv: no label for line 2 (LineIds go up to 3: missing lines)",
        ),
        ("LineId,Label\n1,0\n1,1\n", "l.csv:3: line 1 labelled 1 here, 0 before"),
        ("LineId,Label\n0,0\n", "l.csv:2: LineId must be a line number from 1, got '0'"),
        ("LineId,Label\nx,0\n", "l.csv:2: LineId must be a line number from 1, got 'x'"),
        ("Line,Label\n1,0\n", "l.csv:1: header needs a LineId and a Label column"),
        ("LineId,Label\n1\n", "l.csv:2: expected at least 2 fields, got 1"),
        ("", "l.csv: empty file"),
    ],
)
def test_bad_line_label_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "l.csv"
    p.write_text(text)
    with pytest.raises(DataError) as exc:
        load_line_labels(p)
    assert message in str(exc.value)


def test_line_labels_in_utf8_with_a_bom_and_utf16_and_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Excel's "Unicode text" (UTF-16 with a byte order mark, CRLF) was refused as a
    binary file; now every encoding Excel saves a CSV in reads the same, and ``-`` reads
    standard input."""
    text = "LineId,Label\r\n1,Normal\r\n2,Anomaly\r\n3,0\r\n"
    encoded = {
        "utf8.csv": text.encode("utf-8"),
        "utf8bom.csv": text.encode("utf-8-sig"),
        "utf16.csv": text.encode("utf-16"),  # this machine's order, with its mark
        "utf16le.csv": b"\xff\xfe" + text.encode("utf-16-le"),
        "utf16be.csv": b"\xfe\xff" + text.encode("utf-16-be"),
    }
    for name, data in encoded.items():
        (tmp_path / name).write_bytes(data)
        got = load_line_labels(tmp_path / name)
        assert (got.labels, got.rows) == ([0, 1, 0], [2, 3, 4]), name
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        got = load_line_labels("-")
        assert (got.path, got.labels) == ("<stdin>", [0, 1, 0]), name
    # What cannot be decoded is named: the file and the line.
    bom, good = b"\xff\xfe", "LineId,Label\r\n1,0\r\n".encode("utf-16-le")
    bad = {
        "half.csv": (
            bom + good + b"\x00\xd8" + "2,1\r\n".encode("utf-16-le"),
            ":3: invalid UTF-16",
        ),
        "cut.csv": (bom + good + "2,1".encode("utf-16-le")[:-1], ":3: invalid UTF-16"),
        "nobom.csv": (good, ":1: NUL byte (a binary file, or UTF-16 without a byte order mark?"),
        "latin1.csv": ("LineId,Label\n1,0\n2,Anomal\xeda\n".encode("latin-1"), ":3: invalid UTF-8"),
    }
    for name, (data, message) in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as exc:
            load_line_labels(tmp_path / name)
        assert str(exc.value).startswith(str(tmp_path / name) + message), exc.value


def test_line_label_count_must_match_the_input(tmp_path: Path) -> None:
    labels = load_line_labels(write_labels(tmp_path / "l.csv", [0, 1, 0, 0]))
    with pytest.raises(
        DataError,
        match=r"l\.csv:5: label for line 4, but the input has only 3 lines \(more labels than lines\)",
    ):
        labels.check(3)
    with pytest.raises(DataError, match=r"no label for input line 5 .*missing lines"):
        labels.check(6)
    labels.check(4)


def test_bgl_convention_labels_from_the_first_field(tmp_path: Path) -> None:
    lines = [
        "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02 RAS KERNEL INFO ok",
        "KERNDTLB 1117838571 2005.06.03 R02 2005-06-03-15.42.51.000000 R02 RAS KERNEL FATAL bad",
        "-   1117838572 2005.06.03 R02 2005-06-03-15.42.52.000000 R02 RAS KERNEL INFO ok",
    ]
    p = tmp_path / "bgl.log.gz"
    p.write_bytes(gzip.compress("".join(x + "\n" for x in lines).encode()))
    labels = load_line_labels(p, label_format="bgl")
    assert labels.labels == [0, 1, 0]
    # A blank line names no alert: normal (it was an error, and a log with one could not
    # label itself though detection reads the line and gives it a verdict).
    blank = write_lines(tmp_path / "e.log", [lines[0], "", lines[1], "   "])
    assert load_line_labels(blank, label_format="bgl").labels == [0, 0, 1, 0]
    with pytest.raises(DataError, match="unknown line label format"):
        load_line_labels(p, label_format="xml")


# --- reading and features ----------------------------------------------------------------------


def test_read_stream_numbers_lines_over_all_inputs(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a.log", ["INFO x: started 1", "", "INFO x: started 2"])
    b = write_lines(tmp_path / "b.log", ["not in the format", "WARN y: stopped 3"])
    stream, miner = read_stream([str(a), str(b)], FMT, learn=True)
    assert stream.lines == 5
    assert stream.line_ids.tolist() == [1, 3, 4, 5]
    assert stream.stats["empty_line"] == 1 and stream.stats["unmatched_format"] == 1
    assert stream.field_names == ("Level", "Component")
    assert stream.fields[0] == ("INFO", "x") and stream.fields[2] == (None, None)
    assert stream.keys[0] == stream.keys[1] and stream.values[1] == ["2"]
    again, _ = read_stream([str(b)], FMT, miner)
    assert again.keys[1] == stream.keys[3]
    unseen = write_lines(tmp_path / "c.log", ["INFO z: something new entirely here"])
    assert read_stream([str(unseen)], FMT, miner)[0].keys == [None]


def test_time_and_label_fields_are_never_features() -> None:
    from logwarden.io.formats import get_format

    assert feature_fields(get_format("bgl")) == ("Node", "NodeRepeat", "Type", "Component", "Level")
    assert feature_fields(get_format("hdfs")) == ("Pid", "Level", "Component")


def test_features_rare_keys_unknown_values_kept_only_when_telling(tmp_path: Path) -> None:
    rng = random.Random(0)
    lines, labels = [], []
    for i in range(600):
        node = f"node{rng.randrange(4)}"
        bad = node == "node3" and rng.random() < 0.5
        lines.append(f"{'ERROR' if bad else 'INFO'} svc: ping {node} from pid{rng.randrange(3)}")
        labels.append(int(bad))
        if i == 100:
            lines.append("INFO svc: a message seen once")
            labels.append(0)
    stream, _ = read_stream([str(write_lines(tmp_path / "f.log", lines))], FMT, learn=True)
    cfg = SupervisedConfig(max_categorical=2)
    y = np.asarray(labels, dtype=np.int8)
    f = Features.fit(stream, cfg, np.arange(len(stream)), y)
    once = stream.keys[101]
    assert once not in f.keys and len(f.keys) == 1
    key, _, cat = f.encode(stream)
    assert key[101] == UNK
    # The node that goes with errors first (the others, never in trouble, tell a little
    # too); pids tell nothing.
    assert f.vocab[0][0] == "node3"
    assert f.vocab[1] == []
    level = f.field_names.index("Level") + cfg.max_categorical
    assert set(f.vocab[level]) == {"ERROR", "INFO"}
    assert cat[0, 1] == OTHER  # pid: other


def test_numeric_values_count_only_beyond_their_usual_band(tmp_path: Path) -> None:
    lines = [f"INFO api: served in {20 + i % 5} ms" for i in range(200)] + [
        "INFO api: served in 4000 ms"
    ]
    stream, _ = read_stream([str(write_lines(tmp_path / "n.log", lines))], FMT, learn=True)
    f = Features.fit(stream, SupervisedConfig(), np.arange(200), np.zeros(200, dtype=np.int8))
    _, num, _ = f.encode(stream)
    assert np.all(num[:200, 0] == 0.0)
    assert num[200, 0] == 8.0  # clipped at 10 standard deviations, minus the band of 2
    tokens = tokenize(*f.encode(stream))
    assert len(tokens.key) == 3  # padding, the usual entries, the slow one


def test_windows_and_their_labels() -> None:
    key = np.array([2, 3, 2, 3, 2], dtype=np.int32)
    tokens = tokenize(key, np.zeros((5, 0), np.float32), np.zeros((5, 0), np.int32))
    w = windows_of(tokens, 3)
    assert w.shape == (5, 3)
    assert w[0].tolist() == [tokens.pad, tokens.pad, tokens.of_entry[0]]
    assert window_labels(np.array([0, 1, 0, 0, 0], np.int8), 3).tolist() == [0, 1, 1, 1, 0]
    assert rolling_any(np.array([0, 0, 1, 0, 0, 0], bool), 2).tolist() == [0, 0, 1, 1, 0, 0]
    assert rolling_max(np.array([1.0, 3.0, 2.0]), 2).tolist() == [1.0, 3.0, 3.0]


def test_line_verdicts_cover_every_line_and_empty_lines_repeat() -> None:
    # Entries on lines 2, 3, 5 (line 1 and 4 empty), window 2.
    v = LineVerdicts.from_entries(
        np.array([2, 3, 5]), np.array([False, True, False]), np.array([0.1, 0.9, 0.2]), 6, 2
    )
    assert v.flags.tolist() == [False, False, True, True, False, False]
    assert v.scores.tolist() == [0.0, 0.1, 0.9, 0.9, 0.2, 0.2]
    labels = [0, 1, 0, 1, 0, 0]
    assert v.window_labels(labels).tolist() == [0, 1, 1, 1, 0, 0]
    r = v.report(labels)
    assert (r.lines.tp, r.lines.fp, r.lines.fn, r.lines.tn) == (1, 1, 1, 3)
    assert (r.windows.tp, r.windows.fp, r.windows.fn, r.windows.tn) == (2, 0, 1, 3)
    d = r.as_dict()
    assert d["flag_all"]["windows"]["tp"] == 3 and d["flag_all"]["windows"]["fp"] == 3  # type: ignore[index]
    import io

    out = io.StringIO()
    v.write_csv(out)
    assert out.getvalue().splitlines() == [
        "LineId,Anomalous,Score", "1,0,0", "2,0,0.1", "3,1,0.9", "4,1,0.9", "5,0,0.2", "6,0,0.2",
    ]  # fmt: skip
    with pytest.raises(DataError):
        v.report(LineLabels("x.csv", [0] * 7, list(range(1, 8))))


def test_line_report_rejects_misaligned_input() -> None:
    with pytest.raises(ValueError, match="one each per line"):
        LineReport.from_flags([True], [1, 0], [1, 0], 10)


def test_threshold_and_average_precision_by_hand() -> None:
    prob = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    y = np.array([1.0, 1.0, 0.0, 1.0, 0.0])
    c = np.ones(5)
    # Flag >= 0.9: F1 2/4; >= 0.8: 4/6; >= 0.3: 6/7; >= 0.1: 6/8.
    assert best_f1_threshold(prob, y, c) == pytest.approx((0.3, 6 / 7))
    # Steps at recall 1/3 (precision 1), 2/3 (2/3), 1 (3/4).
    assert average_precision(prob, y, c) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # Counts weigh rows: 20 normal windows at 0.8 make the top one alone the best.
    assert best_f1_threshold(prob, y, np.array([1, 1, 20, 1, 1.0]))[0] == pytest.approx(0.9)


# --- the model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("sup")
    lines, labels = labelled_log(2400, seed=1)
    det = SupervisedDetector(SupervisedDeepLog(SupervisedConfig(window=5, seed=0, **TINY)), FMT)
    det.fit(det.read([str(write_lines(d / "train.log", lines))], learn=True), labels)
    test_lines, test_labels = labelled_log(1200, seed=2)
    test = det.read([str(write_lines(d / "test.log", test_lines))])
    return {"model": det.model, "detector": det, "test": test, "labels": test_labels}


def test_learns_both_kinds_of_anomaly(fitted: dict[str, object]) -> None:
    model, test, labels = fitted["model"], fitted["test"], fitted["labels"]
    assert isinstance(model, SupervisedDeepLog)
    info = model.train_info_
    assert info["train_entries"] == 1920 and info["validation_entries"] == 480
    assert 0.0 < model.threshold_ < 1.0 and info["threshold_rule"] == "validation F1"
    det = fitted["detector"]
    assert isinstance(det, SupervisedDetector)
    report = det.line_verdicts(test).report(labels)  # type: ignore[arg-type]
    flag_all = report.as_dict()["flag_all"]["windows"]["f1"]  # type: ignore[index]
    assert report.windows.f1 > 0.8 and report.windows.f1 > 2 * flag_all
    assert report.lines.recall > 0.9  # nearly every anomalous line is in a flagged window
    prob = model.predict_proba(test)  # type: ignore[arg-type]
    y = np.asarray(labels)[test.line_ids - 1]  # type: ignore[attr-defined]
    # Both kinds: the error lines and the slow requests score high where they occur.
    texts = [line.split(":", 1)[1] for line in labelled_log(1200, seed=2)[0]]
    slow = [i for i, (t, lab) in enumerate(zip(texts, y, strict=True)) if lab and "served" in t]
    errors = [i for i, (t, lab) in enumerate(zip(texts, y, strict=True)) if lab and "error" in t]
    assert slow and errors
    assert np.mean(prob[slow] >= model.threshold_) > 0.9
    assert np.mean(prob[errors] >= model.threshold_) > 0.9


def test_numpy_forward_matches_pytorch(fitted: dict[str, object]) -> None:
    import torch

    model, test = fitted["model"], fitted["test"]
    assert isinstance(model, SupervisedDeepLog)
    tokens = tokenize(*model.features_.encode(test))  # type: ignore[arg-type]
    wins = windows_of(tokens, model.window)[:300]
    with torch.no_grad():
        want = torch.sigmoid(torch_logits(model, tokens, wins)[:, -1]).numpy()
    got = model.predict_proba(test)[:300]  # type: ignore[arg-type]
    np.testing.assert_allclose(got, want, atol=1e-5)


def torch_logits(model: SupervisedDeepLog, tokens: Any, rows: np.ndarray) -> Any:
    """PyTorch's logits for every step of ``rows`` (token ids) from a zero state: the
    reference the NumPy forward pass is checked against."""
    import torch

    f = model.features_
    w = {k: torch.as_tensor(v) for k, v in model.weights_.items()}
    lstm = torch.nn.LSTM(w["lstm.weight_ih_l0"].shape[1], model.config.hidden, 1, batch_first=True)
    lstm.load_state_dict({k[5:]: v for k, v in w.items() if k.startswith("lstm.")})
    onehots = [torch.nn.functional.one_hot(torch.as_tensor(tokens.cat[:, p]).long(), s).float()
               for p, s in enumerate(f.onehot_sizes)]  # fmt: skip
    x_tok = torch.cat([w["embed.weight"][torch.as_tensor(tokens.key).long()],
                       torch.as_tensor(tokens.num), *onehots], dim=1)  # fmt: skip
    out, _ = lstm(x_tok[torch.as_tensor(np.array(rows))])
    return (out @ w["out.weight"].T + w["out.bias"]).squeeze(-1)


def test_bundle_round_trip(fitted: dict[str, object], tmp_path: Path) -> None:
    det, test = fitted["detector"], fitted["test"]
    assert isinstance(det, SupervisedDetector)
    det.save(tmp_path / "m")
    back = SupervisedDetector.load(tmp_path / "m")
    model = det.model
    assert back.model.threshold_ == model.threshold_ and back.model.config == model.config
    assert back.format == FMT and back.miner is not None
    np.testing.assert_array_equal(back.model.predict_proba(test), model.predict_proba(test))  # type: ignore[arg-type]
    manifest = (tmp_path / "m" / "manifest.json").read_text()
    assert '"model": "supervised"' in manifest and "pickle" not in manifest
    assert (tmp_path / "m" / "supervised.safetensors").is_file()
    # The state alone (JSON text and arrays) gives the same model again.
    import json

    meta, arrays = model.to_state()
    again = SupervisedDeepLog.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(again.predict_proba(test), model.predict_proba(test))  # type: ignore[arg-type]
    # A DeepLog bundle is not a supervised one, and the other way round.
    DeepLog(hidden=8, layers=1, epochs=2, top_g=3, param_models=False, workflows=False).fit(
        grammar(20, 0)
    ).save(tmp_path / "d")
    with pytest.raises(BundleError, match="not a supervised model"):
        SupervisedDetector.load(tmp_path / "d")
    with pytest.raises(BundleError, match="a supervised model"):
        Detector.load(tmp_path / "m")


def test_training_needs_anomalies_in_its_training_part(tmp_path: Path) -> None:
    lines, labels = labelled_log(400, seed=3)
    labels = [0] * 350 + [1] * 50  # anomalies only in the validation part
    stream, _ = read_stream([str(write_lines(tmp_path / "t.log", lines))], FMT, learn=True)
    with pytest.raises(DataError, match="no anomalous window in the training part"):
        SupervisedDeepLog(SupervisedConfig(**TINY)).fit(stream, labels)
    with pytest.raises(DataError, match="399 labels for 400 input lines"):
        SupervisedDeepLog(SupervisedConfig(**TINY)).fit(stream, labels[:-1])
    with pytest.raises(NotFittedError, match="not fitted"):
        SupervisedDeepLog().predict(stream)


def delayed_log(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Normal traffic in which a degraded-array warning (labelled) is followed 8-12 lines
    later by a line of its episode that looks like any other (labelled too): the telling
    line is never in a window of 5 that holds the later one."""
    rng = random.Random(seed)
    lines: list[str] = []
    labels: list[int] = []
    due: dict[int, int] = {}  # line index -> episodes whose late line falls there
    i = 0
    while len(lines) < n:
        if due.pop(i, 0):
            lines.append(f"INFO cache: hit for key user{rng.randrange(50)}")
            labels.append(1)
        elif rng.random() < 0.03:
            lines.append(f"WARN raid: array md{rng.randrange(4)} degraded")
            labels.append(1)
            later = i + rng.randrange(8, 13)
            due[later] = due.get(later, 0) + 1
        else:
            r = rng.random()
            if r < 0.5:
                lines.append(f"INFO cache: hit for key user{rng.randrange(50)}")
            else:
                lines.append(f"INFO api: request {rng.randrange(1000)} served in 30 ms")
            labels.append(0)
        i += 1
    return lines, labels


def test_a_context_catches_the_lines_whose_telling_line_came_before_the_window(
    tmp_path: Path,
) -> None:
    """Windows of 5 whose only anomalous line is an episode's late, ordinary-looking line
    cannot be told apart from the others; reading 20 entries, the model sees the warning
    before them, whether it learns windows or lines. The context models save, load and
    score a line the same bits whatever lines follow it."""
    import dataclasses

    lines, labels = delayed_log(2400, seed=1)
    test_lines, test_labels = delayed_log(1200, seed=2)
    train_path = write_lines(tmp_path / "train.log", lines)
    f1 = {}
    for context, target in ((0, "window"), (20, "window"), (20, "line")):
        cfg = SupervisedConfig(
            window=5,
            context=context,
            target=target,
            seed=0,
            **{**TINY, "hidden": 16, "epochs": 80, "patience": 20},
        )
        det = SupervisedDetector(SupervisedDeepLog(cfg), FMT)
        det.fit(det.read([str(train_path)], learn=True), labels)
        test = det.read([str(write_lines(tmp_path / "test.log", test_lines))])
        verdicts = det.line_verdicts(test)
        assert verdicts.window == 5  # the unit judged and labelled stays the window
        f1[context, target] = verdicts.report(test_labels).windows.f1
        if context == 0:
            continue
        assert det.model.reach == 20
        det.save(tmp_path / target)
        back = SupervisedDetector.load(tmp_path / target)
        assert back.model.config.context == 20 and back.model.config.target == target
        whole = back.model.predict_proba(test)
        np.testing.assert_array_equal(whole, det.model.predict_proba(test))
        for k in (1, 13, 400):
            head = dataclasses.replace(
                test, line_ids=test.line_ids[:k], keys=test.keys[:k], values=test.values[:k],
                fields=test.fields[:k],
            )  # fmt: skip
            assert np.array_equal(back.model.predict_proba(head), whole[:k]), (k, target)
    # The window alone finds the warnings' windows, about half the anomalous ones (the
    # counting of lines since a warning takes the context model more epochs).
    assert f1[0, "window"] < 0.75, f1
    assert f1[20, "window"] > 0.85 and f1[20, "line"] > 0.85, f1


def test_a_line_target_scores_each_window_as_the_highest_of_its_lines(
    fitted: dict[str, object],
) -> None:
    """A line-target model's window is the highest of its lines' scores: where one line
    stands out, the windows holding it score at least as high, those after it less; and
    a bundle saved before line targets existed still learnt windows."""
    import json

    model, test = fitted["model"], fitted["test"]
    assert isinstance(model, SupervisedDeepLog)
    meta, arrays = model.to_state()
    del meta["params"]["target"]  # written before the field existed
    old = SupervisedDeepLog.from_state(json.loads(json.dumps(meta)), arrays)
    assert old.config.target == "window"
    np.testing.assert_array_equal(old.predict_proba(test), model.predict_proba(test))  # type: ignore[arg-type]
    # The same weights read as line scores (each entry read with the 5 entries up to it):
    # windows of 1 give each entry's own score, windows of 5 the highest of their 5.
    meta["params"].update(target="line", context=5)
    for h in (1, 5):
        meta["params"]["window"] = h
        as_lines = SupervisedDeepLog.from_state(json.loads(json.dumps(meta)), arrays)
        got = as_lines.predict_proba(test)  # type: ignore[arg-type]
        if h == 1:
            own = got
        else:
            want = [own[max(0, t - h + 1) : t + 1].max() for t in range(len(own))]
            np.testing.assert_array_equal(got, want)


def test_an_ensemble_scores_the_mean_of_its_networks(
    fitted: dict[str, object], tmp_path: Path
) -> None:
    """``ensemble=2`` trains the networks of seeds 0 and 1, as two models of one network
    each would, and scores each window with the mean of their probabilities; its threshold
    is the best on that mean; it saves, loads and scores as a stream would; a bundle whose
    networks do not match its ensemble size is refused."""
    import dataclasses
    import json

    model, test, det = fitted["model"], fitted["test"], fitted["detector"]
    assert isinstance(model, SupervisedDeepLog) and isinstance(det, SupervisedDetector)
    lines, labels = labelled_log(2400, seed=1)  # the data of `fitted`
    stream = det.read([str(write_lines(tmp_path / "train.log", lines))])
    second = SupervisedDeepLog(dataclasses.replace(model.config, seed=1)).fit(stream, labels)
    both = SupervisedDeepLog(dataclasses.replace(model.config, ensemble=2)).fit(stream, labels)
    want = (model.predict_proba(test) + second.predict_proba(test)) / 2
    got = both.predict_proba(test)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, model.predict_proba(test))
    info = both.train_info_
    assert [m["seed"] for m in info["members"]] == [0, 1]
    assert [m["best_epoch"] for m in info["members"]] == [
        model.train_info_["best_epoch"],
        second.train_info_["best_epoch"],
    ]
    # The cut is the best on the validation part's mean: on it no other cut does better.
    cut = info["train_entries"]
    y = window_labels(np.asarray(labels)[stream.line_ids - 1], 5)[cut:]
    p = both.predict_proba(stream)[cut:]
    _, best = best_f1_threshold(p, y.astype(float), np.ones(len(y)))
    flagged = p >= both.threshold_
    f1 = 2 * (flagged & (y == 1)).sum() / (flagged.sum() + y.sum())
    assert f1 == pytest.approx(best) and info["validation_f1"] == pytest.approx(best, abs=1e-4)
    # A window's score is the same bits alone or with more lines after it.
    for k in (1, 40, 333):
        head = dataclasses.replace(
            test, line_ids=test.line_ids[:k], keys=test.keys[:k], values=test.values[:k],
            fields=test.fields[:k])  # fmt: skip
        assert np.array_equal(both.predict_proba(head), got[:k]), k
    meta, arrays = both.to_state()
    again = SupervisedDeepLog.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(again.predict_proba(test), got)
    for size in (1, 3):
        meta["params"]["ensemble"] = size
        with pytest.raises(BundleError, match="not a valid supervised model"):
            SupervisedDeepLog.from_state(json.loads(json.dumps(meta)), arrays)


def test_a_span_model_carries_its_state_along_the_log(tmp_path: Path) -> None:
    """With ``span`` the LSTM reads the log in spans, each after the ``context`` entries
    before it, from a zero state: the late lines of an episode, 8-12 lines after its
    telling warning, are found as with a context of 20; NumPy gives each line what PyTorch
    gives it in its span; a line's score is the same bits whatever follows it; the bundle
    keeps the setting."""
    import dataclasses

    import torch

    lines, labels = delayed_log(2400, seed=1)
    test_lines, test_labels = delayed_log(1200, seed=2)
    cfg = SupervisedConfig(
        window=5, context=12, span=20, target="line", seed=0,
        **{**TINY, "hidden": 16, "epochs": 80, "patience": 20},
    )  # fmt: skip
    det = SupervisedDetector(SupervisedDeepLog(cfg), FMT)
    det.fit(det.read([str(write_lines(tmp_path / "train.log", lines))], learn=True), labels)
    test = det.read([str(write_lines(tmp_path / "test.log", test_lines))])
    assert det.line_verdicts(test).report(test_labels).windows.f1 > 0.85
    model = det.model
    assert model.train_info_["distinct_train_windows"] is None
    # Each line's own probability (windows of 1) against PyTorch over its span.
    meta, arrays = model.to_state()
    meta["params"]["window"] = 1
    own = SupervisedDeepLog.from_state(meta, arrays).predict_proba(test)
    tokens = tokenize(*model.features_.encode(test))
    rows = span_rows(tokens.of_entry, tokens.pad, 12, 20)
    assert rows.shape == (-(-len(test) // 20), 32)
    with torch.no_grad():
        logit = torch_logits(model, tokens, rows)[:, 12:].reshape(-1)[: len(test)]
    np.testing.assert_allclose(own, torch.sigmoid(logit).numpy(), atol=1e-5)
    # The lines before a span's warm-up do not reach it: a line 45 lines in (its span
    # starts at 40, read from 28 on) scores the same without the first 20 lines.
    cut = dataclasses.replace(
        test, line_ids=test.line_ids[20:], keys=test.keys[20:], values=test.values[20:],
        fields=test.fields[20:],
    )  # fmt: skip
    assert np.array_equal(
        SupervisedDeepLog.from_state(meta, arrays).predict_proba(cut)[20:40], own[40:60]
    )
    whole = model.predict_proba(test)
    for k in (1, 19, 20, 21, 333):
        head = dataclasses.replace(
            test, line_ids=test.line_ids[:k], keys=test.keys[:k], values=test.values[:k],
            fields=test.fields[:k],
        )  # fmt: skip
        assert np.array_equal(model.predict_proba(head), whole[:k]), k
    det.save(tmp_path / "span")
    back = SupervisedDetector.load(tmp_path / "span")
    assert back.model.config.span == 20 and back.model.config.context == 12
    np.testing.assert_array_equal(back.model.predict_proba(test), whole)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"window": 0}, "window"), ({"validation": 1.0}, "validation"), ({"pos_weight": -1.0}, "pos_weight"),
     ({"device": "tpu"}, "device"), ({"context": 5, "window": 10}, "context"),
     ({"context": -1}, "context"), ({"target": "session"}, "target"), ({"ensemble": 0}, "ensemble"),
     ({"span": -1}, "span"), ({"context": -1, "span": 10}, "context")],
)  # fmt: skip
def test_config_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        SupervisedConfig(**kwargs)  # type: ignore[arg-type]
    assert exc.value.field == next(iter(kwargs))  # the CLI names the flag from it


# --- DeepLog per entry ---------------------------------------------------------------------------


def test_deeplog_entry_scores_agree_with_its_verdicts() -> None:
    model = DeepLog(
        window=3, hidden=16, layers=1, epochs=60, seed=0, param_models=False, workflows=False
    )
    model.fit(grammar(200, seed=1))
    sessions = [*grammar(5, seed=2), list("ABXCDE"), list("ACBDE")]
    flags, scores = model.entry_scores(sessions)
    assert len(flags) == len(scores) == sum(len(s) for s in sessions)
    verdicts = model.verdicts(sessions)
    at = 0
    for s, v in zip(sessions, verdicts, strict=True):
        own = flags[at : at + len(s)]
        if v.anomalous and v.reason != "early_end":
            assert own.argmax() == v.position and own[v.position]
        if not v.anomalous:
            assert not own.any()
        at += len(s)
    x = sum(len(s) for s in sessions[:5]) + 2
    assert flags[x] and scores[x] == pytest.approx(40.0)  # the unseen key X
    # Sorting by score puts every flagged entry first, however it was flagged (a rule's
    # flag on a likely key scored below unflagged lines in window mode).
    assert flags.any() and (~flags).any()
    assert scores[flags].min() > scores[~flags].max()


def test_a_line_s_score_does_not_depend_on_the_lines_after_it(
    fitted: dict[str, object],
) -> None:
    """A window's probability is the same bits whatever else the input holds: the lines
    of a log scored alone, or with more lines after them (other distinct windows, other
    blocks of the prefix walk), get the same scores, as a stream would give them."""
    import dataclasses

    model, test = fitted["model"], fitted["test"]
    assert isinstance(model, SupervisedDeepLog)
    whole = model.predict_proba(test)  # type: ignore[arg-type]
    for k in (1, 7, 40, 333, 900):
        head = dataclasses.replace(
            test,  # type: ignore[type-var]
            line_ids=test.line_ids[:k],  # type: ignore[attr-defined]
            keys=test.keys[:k],  # type: ignore[attr-defined]
            values=test.values[:k],  # type: ignore[attr-defined]
            fields=test.fields[:k],  # type: ignore[attr-defined]
        )
        assert np.array_equal(model.predict_proba(head), whole[:k]), k


def test_supervised_fit_and_read_refuse_what_they_cannot_use(tmp_path: Path) -> None:
    """Labels of -1, 2 or 0.7 trained a meaningless model without a word (or failed deep
    inside with a bare error), and a path given as a string was read a character at a
    time."""
    from logwarden.detect.lines import SupervisedDetector
    from logwarden.models.supervised import SupervisedConfig, SupervisedDeepLog

    lines = [f"2024-01-01 00:00:{i:02d} INFO step {i % 3} done" for i in range(40)]
    log = write_lines(tmp_path / "a.log", lines)
    det = SupervisedDetector(
        SupervisedDeepLog(SupervisedConfig(epochs=2, hidden=8)), "<Date> <Time> <Level> <Content>"
    )
    with pytest.raises(TypeError, match="list of paths"):
        det.read(str(log), learn=True)  # type: ignore[arg-type]
    assert det.miner is None
    stream = det.read([str(log)], learn=True)
    good = [int(i % 10 == 9) for i in range(40)]
    cases = [
        ([-1, *good[1:]], "line 1: label -1"),
        ([*good[:5], 2, *good[6:]], "line 6"),
        ([0.7, *good[1:]], "line 1: label 0.7"),
        (["Anomaly", *good[1:]], "line 1"),
    ]
    for bad, where in cases:
        with pytest.raises(DataError, match=where):
            det.model.fit(stream, bad)
    with pytest.raises(TypeError, match="sequence of 0/1"):
        det.model.fit(stream, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="LineStream"):
        det.model.fit([["a", "b"]], [0, 1])  # type: ignore[arg-type]
    det.model.fit(stream, [bool(y) for y in good])  # booleans are 0 and 1


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"window": 2.5}, "window"), ({"seed": None}, "seed"), ({"window": True}, "window"),
     ({"window": "10"}, "window"), ({"pos_weight": "2"}, "pos_weight"),
     ({"learning_rate": "0.1"}, "learning_rate"), ({"header_fields": "no"}, "header_fields")],
)  # fmt: skip
def test_supervised_settings_of_the_wrong_type_are_named(kw: dict[str, Any], field: str) -> None:
    """They were accepted and failed inside training with numpy's or torch's words."""
    from logwarden.errors import ConfigError
    from logwarden.models.supervised import SupervisedConfig

    with pytest.raises(ConfigError) as got:
        SupervisedConfig(**kw)
    assert got.value.field == field
    assert SupervisedConfig(window=np.int64(5)).window == 5


def test_misused_line_verdicts_and_feedback_say_what_they_take() -> None:
    """A supervised model or raw keys given to window_line_verdicts, and session ids given
    as feedback, failed with AttributeErrors about missing attributes."""
    from logwarden.detect import window_line_verdicts
    from logwarden.models.supervised import SupervisedDeepLog

    model = DeepLog(window=3, hidden=8, layers=1, epochs=2, seed=0, top_g=2, folds=0)
    model.fit(grammar(40, seed=1))
    with pytest.raises(TypeError, match="a DeepLog and the Inputs"):
        window_line_verdicts(SupervisedDeepLog(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a DeepLog and the Inputs"):
        window_line_verdicts(model, [["A", "B"]])  # type: ignore[arg-type]
    from logwarden.detect.detector import Inputs

    det = Detector(model)
    inputs = Inputs(["s1"], [["A", "B", "C"]], [None])
    with pytest.raises(TypeError, match="Feedback records"):
        det.partial_fit(inputs, ["s1"])  # type: ignore[list-item]
