"""``logwarden demo`` end to end on a small simulation: both detectors and their explanations."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from rich.console import Console

from logwarden.cli.demo_job import run_demo
from logwarden.detect import REASONS


def test_demo_trains_both_detectors_and_explains_a_slow_step(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    assert run_demo(sessions=1500, seed=3, console=console, out_dir=tmp_path) == 0
    out = console.export_text()
    assert re.search(r"Trained \d+ parameter models", out)
    m = re.search(r"precision ([\d.]+)\s+recall ([\d.]+)", out)
    assert m is not None and float(m.group(1)) >= 0.8 and float(m.group(2)) >= 0.8
    for kind in ("param", "perf"):
        row = re.search(rf"│ {kind}\s+│\s+(\d+) │\s+(\d+) ", out)
        assert row is not None and int(row.group(2)) >= 0.8 * int(row.group(1)), kind
    # One explained performance anomaly: the slow step, its time and the expected time.
    assert "a step took far longer than in normal runs" in out
    slow = re.search(
        r"time since the previous entry \(E\d+\): ([\d.]+) s"
        r"(?:, above the training range \[[\d.]+, [\d.]+\] s and its margin \([\d.]+ s\))?"
        r"; expected about ([\d.]+) s",
        out,
    )
    assert slow is not None and float(slow.group(1)) > 5 * float(slow.group(2))
    key_reasons = ("unseen_key", "ranked_out", "unseen_transition", "count_exceeded")
    assert any(REASONS[r] in out for r in key_reasons), "a key-model anomaly is explained"
    # The workflows: one shown as text, all drawn, an anomaly diagnosed against its own.
    assert re.search(r"Mined \d+ workflows", out) and "workflow W1:" in out
    assert "concurrent, in any order" in out
    if shutil.which("dot"):
        assert (tmp_path / "workflows.svg").read_text().startswith("<svg")
        assert str(tmp_path / "workflows.svg") in out.replace("\n", "")
    assert re.search(r"workflow W\d+: (left the workflow|happened in step|at entry)", out)
    assert (tmp_path / "report.html").is_file()
