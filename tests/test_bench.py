"""The bench scripts: they start, share code only through bench/'s ``_`` modules, and the
harness measures what it says (the figures themselves are the scripts' business)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
MODULES = sorted(BENCH.glob("*.py"))
SCRIPTS = [p for p in MODULES if not p.name.startswith("_")]


def _load(name: str) -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the module by its path.
    qualified = f"logwarden_bench_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


harness = _load("_harness")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports anywhere in a file (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_scripts_share_code_only_through_private_modules() -> None:
    names = {p.stem for p in MODULES}
    assert {"_harness", "parse_speed", "keys_hdfs"} <= names
    wrong = {
        p.name: sorted(m for m in imported_modules(p) & names if not m.startswith("_"))
        for p in MODULES
    }
    assert not {k: v for k, v in wrong.items() if v}, "bench modules importing a script"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_starts(script: Path) -> None:
    # As a user runs it: python bench/NAME.py (bench/ on the path by Python itself), with
    # this checkout's package.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


# --- the harness ------------------------------------------------------------------------------


def test_run_child_measures_wall_time_and_peak_memory(tmp_path: Path) -> None:
    code = "import time; b = bytearray(96 << 20); time.sleep(0.2); print(len(b))"
    run = harness.run_child([sys.executable, "-c", code], tmp_path)
    assert run.stdout.strip() == str(96 << 20)
    assert run.wall_s >= 0.2
    # The child's own peak (96 MiB and the interpreter), not the parent's.
    assert 96 <= run.peak_mb < 96 + 200
    assert list(tmp_path.iterdir()) != []  # its outputs stay in the work folder


def test_run_child_reports_a_failing_command(tmp_path: Path) -> None:
    code = "import sys; print('went wrong', file=sys.stderr); sys.exit(3)"
    with pytest.raises(harness.ChildFailed, match="exited 3:\nwent wrong"):
        harness.run_child([sys.executable, "-c", code], tmp_path)
    with pytest.raises(harness.ChildFailed, match="no-such-program exited 127"):
        harness.run_child([str(tmp_path / "no-such-program")], tmp_path)


def test_count_lines(tmp_path: Path) -> None:
    for data, n in ((b"", 0), (b"a\n", 1), (b"a\nb", 2), (b"\n\n", 2), (b"a\r\nb\r\n", 2)):
        path = tmp_path / "f"
        path.write_bytes(data)
        assert harness.count_lines(path) == n, data


def test_machine_probe() -> None:
    info = harness.machine()
    major, minor = sys.version_info[:2]
    assert info["cpu"] and str(info["python"]).startswith(f"{major}.{minor}.")
    assert 1 <= int(info["usable_cores"]) <= int(info["cores"])
    line = harness.machine_line(harness.machine_info())
    assert line.startswith(f"machine: {info['cpu']}, {info['cores']} cores")


def test_peer_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.missing_peers(["json", "no_such_peer_module"]) == ["no_such_peer_module"]
    harness.warn_peer_version("bench", "pytest", pytest.__version__)
    assert capsys.readouterr().err == ""
    harness.warn_peer_version("bench", "pytest", "0.0.1")
    err = capsys.readouterr().err
    assert err == (
        f"bench: warning: pytest {pytest.__version__} installed, the comparison is defined "
        "against 0.0.1\n"
    )


def test_formatting() -> None:
    assert harness.ratio(1, 4) == 0.25
    assert harness.ratio(3, 0) == 0.0
    assert (harness.check(True), harness.check(False)) == ("PASS", "FAIL")


# --- full_scale.py end to end ----------------------------------------------------------------


def test_full_scale_runs_every_configuration_end_to_end(
    shared_data: object, tmp_path: Path
) -> None:
    """``full_scale.py`` at its smallest size, with small models: it renders the logs,
    trains and runs ``eval`` in one process, with all cores and on a Ray it starts, and
    finds the same models and verdicts in all three. (Its ray run once failed at once,
    unnoticed: it gave ``train`` an option only ``eval`` has.)"""
    import json

    data = shared_data("hdfs-deeplog", "hdfs_train").parents[1]  # type: ignore[operator]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    small = "--epochs 2 --hidden 8 --layers 1 --folds 2 --no-workflows"
    done = subprocess.run(
        [sys.executable, str(BENCH / "full_scale.py"), "--data", str(data),
         "--cache", str(tmp_path), "--lines", "1000", "--runs", "single", "all", "ray",
         "--train-options", small, "--json"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    info = out["log"]
    assert info["train_sessions"] == 4855 and 0 < info["abnormal"] < info["sessions"]
    assert (tmp_path / "1000_seed0" / "test.log").stat().st_size == info["bytes"]
    assert out["skipped"] == {}
    assert set(out["runs"]) == {"single", "all", "ray"}
    assert out["same_verdicts"] is True and out["same_model"] is True
    for run in out["runs"].values():
        report = run["report"]
        assert run["train"]["wall_s"] > 0 and run["eval"]["peak_mb"] > 0
        assert report["tp"] + report["fn"] == info["abnormal"]
        assert report["tp"] + report["fn"] + report["fp"] + report["tn"] == info["sessions"]


# --- supervised.py's ceiling -----------------------------------------------------------------


def test_supervised_id_oracle_knows_what_a_session_s_keys_tell() -> None:
    """The ceiling of the hdfs sets: anomalous sessions told by their first key are found
    whole (F1 1); told only by their length, by the oracle that knows the length alone."""
    code = """
import json
import supervised as sb
normal, first, longer = [["5", "22", "11"]] * 40, [["7", "22", "11"]] * 40, [["5", "22", "11", "9"]] * 40
for abnormal in (first, longer):
    lines, labels, where = sb.render_hdfs(normal, abnormal, 600, 3.0, 1, 0.1)
    assert len(where) == len(lines) == len(labels) and sum(labels) > 0
    print(json.dumps(sb.id_oracle(where, labels, normal, abnormal, 0.1)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    by_first, by_length = (json.loads(line) for line in out)
    assert by_first == {"keys so far": 1.0, "keys so far and length": 1.0}
    assert by_length["keys so far and length"] == 1.0
    assert by_length["keys so far"] < 0.9


def test_supervised_variants_parse_to_the_cli_s_flags() -> None:
    """``--variants`` settings become the flags of ``train --supervised``; a bad one is
    refused when the arguments are read, not after an hour of runs."""
    code = """
import argparse, json
import supervised as sb
texts = ["30", "30:line", "20:line:5", "100:line:5:100", "50:window:1:200"]
out = [[v.name, v.flags] for v in map(sb.Variant.parse, texts)]
for bad in ("30:session", "x", "30:line:0", "30:line:two", "30:line:5:x", "30:line:5:-1"):
    try:
        sb.Variant.parse(bad)
    except argparse.ArgumentTypeError:
        out.append(bad)
print(json.dumps(out))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [
        ["supervised_context_30_window", ["--context", "30", "--target", "window"]],
        ["supervised_context_30_line", ["--context", "30", "--target", "line"]],
        ["supervised_context_20_line_x5",
         ["--context", "20", "--target", "line", "--ensemble", "5"]],
        ["supervised_context_100_line_x5_span_100",
         ["--context", "100", "--target", "line", "--ensemble", "5", "--span", "100"]],
        ["supervised_context_50_window_span_200",
         ["--context", "50", "--target", "window", "--span", "200"]],
        "30:session", "x", "30:line:0", "30:line:two", "30:line:5:x", "30:line:5:-1",
    ]  # fmt: skip
