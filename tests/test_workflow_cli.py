"""``logwarden workflow`` and ``detect --jsonl/--html`` end to end on a small simulation;
the HTML report is opened in headless Chromium (a screenshot, and the page's DOM)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from logwarden.cli import main
from logwarden.detect import DeepLog
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOT = shutil.which("dot")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wfcli")
    normal, mixed = tmp / "normal.log", tmp / "mixed.log"
    simulate(SimConfig(seed=21, sessions=400, normal_only=True)).write(normal)
    simulate(SimConfig(seed=22, sessions=300, anomaly_rate=0.15)).write(mixed, tmp / "labels.csv")
    model = tmp / "model"
    raw = ["--format", SIM_FORMAT, "--session", SIM_SESSION_REGEX]
    rc = main(["train", str(normal), *raw, "--out", str(model), "--epochs", "8", "-q",
               "--device", "cpu", "--no-params"])  # fmt: skip
    assert rc == 0
    return {"tmp": tmp, "model": model, "mixed": mixed, "labels": tmp / "labels.csv"}


def test_bundle_stores_the_workflows(trained: dict[str, Path]) -> None:
    manifest = json.loads((trained["model"] / "manifest.json").read_text())
    assert manifest["workflows"]["schema"] == "logwarden.workflow/1"
    model = DeepLog.load(trained["model"])
    assert model.workflows_ is not None and len(model.workflows_) >= 3


def test_workflow_json_follows_the_schema(trained: dict[str, Path], capsys) -> None:
    out = trained["tmp"] / "wf.json"
    assert main(["workflow", "--model", str(trained["model"]), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "workflow W1" in text and "->" in text
    data = json.loads(out.read_text())
    assert len(data["workflows"]) >= 3
    for wf in data["workflows"]:
        keys = {n["key"] for n in wf["nodes"]}
        assert all(isinstance(n["template"], str) for n in wf["nodes"])
        for e in wf["edges"]:
            assert {"from", "to", "count", "probability"} <= set(e)
            assert e["from"] in keys | {"<start>"} and e["to"] in keys | {"<end>"}
        # probabilities out of each state add up to one
        sums: dict[str, float] = {}
        for e in wf["edges"]:
            sums[e["from"]] = sums.get(e["from"], 0.0) + e["probability"]
        assert all(abs(v - 1.0) < 1e-3 for v in sums.values())
    # the simulated block life cycle: its replicas' steps are one concurrent group
    assert any(len(g) == 3 for wf in data["workflows"] for g in wf["concurrent"])


@pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (CI installs it)")
def test_workflow_svg_and_json_in_one_call(trained: dict[str, Path]) -> None:
    svg, js = trained["tmp"] / "wf.svg", trained["tmp"] / "wf2.json"
    rc = main(["workflow", "--model", str(trained["model"]), "--svg", str(svg),
               "--json", str(js), "-q"])  # fmt: skip
    assert rc == 0
    body = svg.read_text()
    assert body.startswith("<svg") and "in any order (concurrent)" in body
    assert "allocateBlock" in body and json.loads(js.read_text())["workflows"]


def test_workflow_refuses_a_model_without_workflows(tmp_path: Path, capsys) -> None:
    model = DeepLog(epochs=2, workflows=False, param_models=False).fit([["a", "b"]] * 30)
    model.save(tmp_path / "m")
    assert main(["workflow", "--model", str(tmp_path / "m")]) == 1
    assert "has no workflows" in capsys.readouterr().err


def test_detect_jsonl_carries_a_diagnosis(trained: dict[str, Path]) -> None:
    out = trained["tmp"] / "v.jsonl"
    rc = main(["detect", str(trained["mixed"]), "--model", str(trained["model"]),
               "--jsonl", str(out), "--show", "0"])  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    flagged = [r for r in rows if r["anomalous"]]
    assert flagged
    for r in flagged:
        d = r["diagnosis"]
        assert {"workflow", "state", "expected", "observed"} <= set(d)
        assert isinstance(d["expected"], list)
        if r["reason"] in ("unseen_key", "ranked_out") and d["diverged"]:
            assert d["observed"] not in d["expected"]
    assert all("diagnosis" not in r for r in rows if not r["anomalous"])


def test_a_verdict_names_its_input_line_time_and_range(trained: dict[str, Path]) -> None:
    """Each anomaly on raw input gives the flagged entry's input line (counted as
    --line-scores counts lines: every line from 1 across the inputs, empty ones too), its
    file and line there, its time, its session's line range, and the line number of each
    context line; the text marks the flagged line
    and counts entries from 1 (the JSON's positions from 0), and the HTML highlights it."""
    lines = trained["mixed"].read_text(encoding="utf-8").splitlines()
    for at in (0, 5, 6, 300):
        lines.insert(at, "")
    # Two inputs: a line's number counts across them, and its file is named.
    half = len(lines) // 2
    first, gappy = trained["tmp"] / "first.log", trained["tmp"] / "gappy.log"
    first.write_text("\n".join(lines[:half]) + "\n", encoding="utf-8")
    gappy.write_text("\n".join(lines[half:]) + "\n", encoding="utf-8")
    out, page = trained["tmp"] / "gappy.jsonl", trained["tmp"] / "gappy.html"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        rc = main(["detect", str(first), str(gappy), "--model", str(trained["model"]),
                   "--jsonl", str(out), "--show", "100", "--html", str(page)])  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    flagged = [r for r in rows if r["anomalous"]]
    assert flagged
    for r in flagged:
        n, p = r["line"], r["position"]
        assert r["first_line"] <= n <= r["last_line"]
        if n <= half:
            assert (r["file"], r["file_line"]) == (str(first), n)
        else:
            assert (r["file"], r["file_line"]) == (str(gappy), n - half)
        assert len(r["line_numbers"]) == len(r["lines"])
        for k, text_k in zip(r["line_numbers"], r["lines"], strict=True):
            assert lines[k - 1] == text_k
        if r["reason"] == "early_end":
            assert n == r["last_line"] == r["line_numbers"][-1]
        else:
            assert r["line_numbers"][p - max(0, p - 3)] == n
            assert r["timestamp"] and lines[n - 1].startswith(r["timestamp"][:10])
        d = r["diagnosis"]
        if "lines" in d:
            assert lines[d["line"] - 1] == d["lines"][d["line_numbers"].index(d["line"])]
    shown = text.getvalue()
    assert any(r["file"] == str(first) for r in flagged)
    key = next(r for r in flagged if r["reason"] != "early_end" and r["file"] == str(gappy))
    assert f"{key['session']}: ANOMALY at entry {key['position'] + 1} (" in shown
    assert f"  > {key['line']}: {lines[key['line'] - 1]}" in shown
    assert (
        f"at: {gappy}:{key['file_line']} (line {key['line']} of the input), {key['timestamp']}"
        in shown
    )
    html_page = page.read_text(encoding="utf-8")
    assert html_page.count('<mark class="flagged">') >= 1
    assert f"at entry {key['position'] + 1} of {key['length']} entries" in html_page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
@pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (CI installs it)")
def test_html_report_in_headless_chromium(trained: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    rc = main(["detect", str(trained["mixed"]), "--model", str(trained["model"]),
               "--html", str(report), "--show", "0", "--html-limit", "5"])  # fmt: skip
    assert rc == 0
    page = report.read_text()
    assert "<svg" in page and "http://" not in page.split("<svg", 1)[0]  # nothing fetched
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    assert 'id="summary"' in dom and "anomalous" in dom
    assert dom.count('class="anomaly"') == 5
    assert dom.count("<svg") >= 5 and "steps the workflow allows after" in dom
