"""Online updates end to end on small simulated logs: a version-1 model meets the
version-2 system, detect warns of drift, ``logwarden feedback`` learns a few sessions,
``models history`` shows the lineage, the parent is still there to roll back to, and a
tampered updated bundle is refused like any other."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logwarden.cli import main
from logwarden.detect import DeepLog, Detector, InputSpec
from logwarden.errors import BundleError
from logwarden.online import Lineage
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate

NEW_STEP = "Allocating IP information in the background."
REWORDED = "seconds to build the instance."


def run(argv: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def read_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r["session"]: r for r in rows}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small version-1 model and logs of both versions, with their truth."""
    d = tmp_path_factory.mktemp("online")
    simulate(SimConfig(seed=31, sessions=800, normal_only=True)).write(d / "train.log")
    logs = {
        "v2": simulate(SimConfig(seed=32, sessions=1500, version=2)),
        "v2b": simulate(SimConfig(seed=33, sessions=600, version=2)),
        "v1": simulate(SimConfig(seed=34, sessions=600)),
    }
    for name, sim in logs.items():
        sim.write(d / f"{name}.log")
    model = DeepLog(
        hidden=16, layers=1, embedding=16, epochs=80, param_max_steps=40, device="cpu", seed=0
    )
    det = Detector(model, InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX))
    det.fit(det.read([str(d / "train.log")], learn=True))
    det.save(d / "m1")
    truth = {name: {s.session: s for s in sim.sessions} for name, sim in logs.items()}
    return {"dir": d, "m1": d / "m1", "truth": truth}


def vm_normal(truth: dict[str, Any]) -> list[str]:
    return [sid for sid, t in truth.items() if t.label == 0 and not sid.startswith(("blk", "req"))]


@pytest.fixture(scope="module")
def updated(world: dict[str, Any]) -> dict[str, Any]:
    """Detect on the version-2 log (drift report), then feedback on suggested sessions."""
    d: Path = world["dir"]
    argv = ["detect", d / "v2.log", "--model", world["m1"], "--show", "0"]
    argv += ["--jsonl", d / "v2_m1.jsonl", "--drift-json", d / "drift.json"]
    assert main([str(a) for a in argv]) == 0
    report = json.loads((d / "drift.json").read_text(encoding="utf-8"))
    truth = world["truth"]["v2"]
    suggested = report["suggested"]
    normal = [s for s in suggested if truth[s].label == 0][:5]
    verdicts = read_jsonl(d / "v2_m1.jsonl")
    confirmed = [sid for sid, t in truth.items() if t.label and verdicts[sid]["anomalous"]][:3]
    argv = ["feedback", d / "v2.log", "--model", world["m1"], "--out", d / "m2", "--normal"]
    argv += [*normal, "--confirmed", *confirmed, "--who", "alice", "--why", "nova upgrade"]
    code = main([str(a) for a in argv])
    return {"code": code, "normal": normal, "confirmed": confirmed, "report": report,
            "m2": d / "m2", "before": verdicts}  # fmt: skip


def test_a_version_2_log_flags_the_changed_task_and_warns_of_drift(
    world: dict[str, Any], updated: dict[str, Any]
) -> None:
    truth = world["truth"]["v2"]
    before = updated["before"]
    vm = vm_normal(truth)
    assert len(vm) >= 40
    assert sum(before[s]["anomalous"] for s in vm) >= 0.9 * len(vm)
    report = updated["report"]
    assert report["warnings"], report["buckets"]
    first = report["warnings"][0]
    assert "new_templates" in first["reasons"]
    texts = [c["template"] for c in first["causes"]]
    assert any(NEW_STEP in (t or "") for t in texts), texts
    n_lines = sum(1 for _ in (world["dir"] / "v2.log").open())
    assert first["line"] <= 0.05 * n_lines
    # The suggestions are sessions holding the new templates, varied.
    assert 3 <= len(report["suggested"]) <= 5
    assert len(set(report["suggested"])) == len(report["suggested"])


def test_no_drift_warning_on_a_version_1_log(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    d: Path = world["dir"]
    argv = ["detect", d / "v1.log", "--model", world["m1"], "--drift-json", d / "d1.json"]
    code, _, err = run(argv, capsys)
    assert code == 0
    assert "drift warning" not in err
    report = json.loads((d / "d1.json").read_text(encoding="utf-8"))
    assert report["warnings"] == [] and report["buckets"]


def test_feedback_learns_the_upgrade(
    world: dict[str, Any], updated: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert updated["code"] == 0
    assert 3 <= len(updated["normal"]) <= 5
    d: Path = world["dir"]
    m2 = Detector.load(updated["m2"])
    texts = [m2.model.templates_.get(k, "") for k in m2.model.keys_]
    assert any(NEW_STEP in t for t in texts) and any(REWORDED in t for t in texts)
    # The workflows know the new step too (diagnoses blamed it as never seen).
    new_step = next(k for k in m2.model.keys_ if NEW_STEP in m2.model.templates_.get(k, ""))
    flow = m2.model.workflows_.workflow_of_key(new_step)
    assert flow is not None and new_step in m2.model.workflows_[flow]
    # Another version-2 log: the changed task is no longer flagged as a whole.
    code, _, err = run(
        ["detect", d / "v2b.log", "--model", updated["m2"], "--jsonl", d / "v2b.jsonl"], capsys
    )
    assert code == 0, err
    rows = read_jsonl(d / "v2b.jsonl")
    truth = world["truth"]["v2b"]
    vm = vm_normal(truth)
    assert sum(rows[s]["anomalous"] for s in vm) <= 0.1 * len(vm)
    normal = [s for s, t in truth.items() if t.label == 0]
    assert sum(rows[s]["anomalous"] for s in normal) <= 0.03 * len(normal)
    # Recall on its anomalies close to the original model's on version 1 (this small model
    # misses a few repeated steps there too; 40 anomalies: one is 2.5 points).
    anomalies = [s for s, t in truth.items() if t.label == 1]
    recall = sum(rows[s]["anomalous"] for s in anomalies) / len(anomalies)
    code, _, err = run(
        ["detect", d / "v1.log", "--model", world["m1"], "--jsonl", d / "v1_m1.jsonl"], capsys
    )
    v1_rows = read_jsonl(d / "v1_m1.jsonl")
    v1_anomalies = [s for s, t in world["truth"]["v1"].items() if t.label == 1]
    v1_recall = sum(v1_rows[s]["anomalous"] for s in v1_anomalies) / len(v1_anomalies)
    assert recall >= min(v1_recall, 0.95) - 0.1, (recall, v1_recall)
    # Confirmed anomalies of the feedback log are still flagged.
    again = Detector.load(updated["m2"])
    data = again.read([str(d / "v2.log")])
    flags = dict(zip(data.ids, again.predict(data), strict=True))
    assert all(flags[s] for s in updated["confirmed"])


def test_the_new_version_records_its_lineage(
    world: dict[str, Any], updated: dict[str, Any]
) -> None:
    m = json.loads((updated["m2"] / "manifest.json").read_text(encoding="utf-8"))
    parent_m = json.loads((world["m1"] / "manifest.json").read_text(encoding="utf-8"))
    lineage = Lineage.from_state(m["lineage"])
    assert [v.version for v in lineage.versions] == [1, 2]
    v2 = lineage.current
    assert v2.kind == "feedback"
    assert v2.parent == {
        "version": 1,
        "manifest_sha256": parent_m["manifest_sha256"],
        "path": str(world["m1"].resolve()),
    }
    marks = {(f.session, f.label) for f in v2.feedback}
    assert marks == {(s, "normal") for s in updated["normal"]} | {
        (s, "confirmed") for s in updated["confirmed"]
    }
    assert {f.who for f in v2.feedback} == {"alice"} and {f.why for f in v2.feedback} == {
        "nova upgrade"
    }
    upd = v2.update
    assert upd["normal_flagged"][1] == 0 and upd["normal_flagged"][0] >= 1
    assert upd["confirmed_flagged"] == [len(updated["confirmed"])] * 2
    assert len(upd["new_keys"]) == 2
    # The parent's key indices are kept: old rows of the embedding are where they were.
    old = DeepLog.load(world["m1"])
    new = DeepLog.load(updated["m2"])
    assert new.keys_[: len(old.keys_)] == old.keys_
    assert m["online"]["memory"]["feedback_sessions"] == len(updated["normal"])


def test_models_history_and_rolling_back(
    world: dict[str, Any], updated: dict[str, Any], tmp_path: Path, capsys
) -> None:
    code, out, err = run(["models", "history", updated["m2"]], capsys)
    assert code == 0, err
    assert "version 2" in out and "v1" in out and "present, verified" in out
    assert "alice" in out and "nova upgrade" in out
    code, out, _ = run(["models", "history", updated["m2"], "--json"], capsys)
    versions = json.loads(out)["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    # Rolling back is loading the parent the lineage names: the version-1 model.
    parent = Path(versions[0]["parent"]["path"])
    back = DeepLog.load(parent)
    probe = [["E1", "E2"], DeepLog.load(world["m1"]).keys_[:5]]
    assert np.array_equal(
        back.decision_function(probe), DeepLog.load(world["m1"]).decision_function(probe)
    )
    # A parent moved away or replaced is reported as such.
    moved = tmp_path / "m2"
    shutil.copytree(updated["m2"], moved)
    m = json.loads((moved / "manifest.json").read_text(encoding="utf-8"))
    assert m["lineage"]["versions"][1]["parent"]["path"] == str(world["m1"].resolve())
    saved = tmp_path / "m1-saved"
    shutil.move(str(world["m1"]), saved)
    try:
        code, out, _ = run(["models", "history", moved], capsys)
        assert code == 0 and "missing" in out
    finally:
        shutil.move(str(saved), world["m1"])


def test_an_updated_bundle_is_verified_like_any_other(
    updated: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = Path(shutil.copytree(updated["m2"], tmp_path / "m2"))
    raw = bytearray((copy / "online.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (copy / "online.safetensors").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="checksum mismatch"):
        Detector.load(copy)
    copy2 = Path(shutil.copytree(updated["m2"], tmp_path / "m2b"))
    m = json.loads((copy2 / "manifest.json").read_text(encoding="utf-8"))
    m["lineage"]["versions"][1]["feedback"] = []  # rewriting history is an edit like any other
    (copy2 / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    code, _, err = run(["models", "history", copy2], capsys)
    assert code == 1 and "manifest was modified" in err


def test_feedback_usage_errors(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d: Path = world["dir"]
    base = ["feedback", d / "v2.log", "--model", world["m1"]]
    code, _, err = run([*base, "--out", tmp_path / "x", "--normal", "no-such-session"], capsys)
    assert code == 2 and "no-such-session" in err and not (tmp_path / "x").exists()
    code, _, err = run([*base, "--out", world["m1"], "--normal", "x"], capsys)
    assert code == 2 and "--out must differ" in err
    code, _, err = run([*base, "--out", tmp_path / "x"], capsys)
    assert code == 2 and "nothing to learn" in err
    sid = next(iter(world["truth"]["v2"]))
    code, _, err = run(
        [*base, "--out", tmp_path / "x", "--normal", sid, "--confirmed", sid], capsys
    )
    assert code == 2 and "both normal and confirmed" in err
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# reviewed\n{sid}  # looked fine\n\n", encoding="utf-8")
    code, _, err = run(
        [*base, "--out", tmp_path / "y", "--normal-file", ids, "--steps", "10"], capsys
    )
    assert code == 0, err
    fb = json.loads((tmp_path / "y" / "manifest.json").read_text(encoding="utf-8"))["lineage"][
        "versions"
    ][1]
    assert [f["session"] for f in fb["feedback"]] == [sid]


def test_a_refused_update_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Key sequences (jsonl) and a top-g rule as wide as the grown vocabulary: learning the
    new key X and its transitions from n1 silences the confirmed session, which holds no
    other (the unseen-transition rule would flag A->X in "AXBCDE"), at any weight."""
    rows = [{"session": f"t{i}", "label": 0, "events": list("ABCBCDE" if i % 2 else "ABCDE")}
            for i in range(120)]  # fmt: skip
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    today = [
        {"session": "n1", "label": None, "events": list("ABXCDE")},
        {"session": "c1", "label": None, "events": list("ABXCDE")},
        {"session": "c2", "label": None, "events": list("ABZDE")},
    ]
    (tmp_path / "today.jsonl").write_text("".join(json.dumps(r) + "\n" for r in today))
    argv = ["train", tmp_path / "train.jsonl", "--input-format", "jsonl", "--out", tmp_path / "m"]
    assert (
        main([str(a) for a in [*argv, "--top-g", "7", "--hidden", "8", "--epochs", "20", "-q"]])
        == 0
    )
    base = ["feedback", tmp_path / "today.jsonl", "--model", tmp_path / "m", "--normal", "n1"]
    code, _, err = run([*base, "--confirmed", "c1", "--out", tmp_path / "m2"], capsys)
    assert code == 1 and "update refused" in err and "c1" in err
    assert not (tmp_path / "m2").exists()
    code, _, err = run([*base, "--confirmed", "c2", "--out", tmp_path / "m3"], capsys)
    assert code == 0, err
    assert DeepLog.load(tmp_path / "m3").keys_[-1] == "X"


def test_simulate_version_2_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--version", "2", "--sessions", "200", "--seed", "3"]
    code, _, err = run([*argv, "--out", tmp_path / "v2.log"], capsys)
    assert code == 0 and "version 2" in err
    text = (tmp_path / "v2.log").read_text(encoding="utf-8")
    assert NEW_STEP in text and REWORDED in text
    code, _, err = run(["simulate", "--version", "3", "--out", tmp_path / "x.log"], capsys)
    assert code == 2
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("logwarden ")


def test_feedback_reads_only_the_marked_sessions_lines_and_the_same_sessions(
    world: dict[str, Any],
) -> None:
    """``feedback`` parses only lines naming a marked id; those sessions come out exactly
    as a full read gives them (keys, lines), and the other lines are counted, not lost."""
    det = Detector.load(world["m1"])
    log = str(world["dir"] / "v2.log")
    full = det.read([log])
    marked = [full.ids[3], full.ids[len(full.ids) // 2], full.ids[-1]]
    part = Detector.load(world["m1"]).read([log], only=marked)
    assert sorted(part.ids) == sorted(marked)
    for sid in marked:
        i, j = full.ids.index(sid), part.ids.index(sid)
        assert part.keys[j] == full.keys[i]
        assert part.lines is not None and full.lines is not None
        assert part.lines[j] == full.lines[i]
    kept = sum(len(full.lines[full.ids.index(s)]) for s in marked)
    assert part.stats["other_sessions"] + kept >= full.entries - full.stats["no_session_id"]
    assert part.stats["lines_read"] == full.stats["lines_read"]


def test_the_drift_baseline_matches_the_scores_of_later_normal_sessions(
    world: dict[str, Any],
) -> None:
    """The training baseline is what later normal sessions score: the model's own score
    for sequences that recur in training, the cross-fitted one for those seen once.
    Cross-fitted scores alone sat a score shift of 0.2 away on every normal log."""
    det = Detector.load(world["m1"])
    data = det.read([str(world["dir"] / "v1.log")])
    truth = world["truth"]["v1"]
    scores = np.asarray(det.model.decision_function(data.keys, events=data.events))
    normal = np.array([truth[sid].label == 0 for sid in data.ids])
    assert normal.sum() > 400
    assert det.model.drift_baseline_.ks(scores[normal]) < 0.1


def test_a_model_in_out_is_replaced_only_with_force_and_never_an_ancestor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train`/`feedback --out` onto a model replaced it without a word (another version's
    parent included: the way back to it was lost)."""
    rows = [{"session": f"t{i}", "label": 0, "events": list("ABCBCDE" if i % 2 else "ABCDE")}
            for i in range(60)]  # fmt: skip
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    today = [{"session": "n1", "label": None, "events": list("ABXCDE")},
             {"session": "ok", "label": None, "events": list("ABCDE")}]  # fmt: skip
    (tmp_path / "today.jsonl").write_text("".join(json.dumps(r) + "\n" for r in today))
    train = ["train", tmp_path / "train.jsonl", "--input-format", "jsonl", "--hidden", "8"]
    train += ["--epochs", "40", "--top-g", "3", "-q", "--out"]
    assert main([str(a) for a in [*train, tmp_path / "m1"]]) == 0
    m1 = (tmp_path / "m1" / "manifest.json").read_bytes()
    code, _, err = run([*train, tmp_path / "m1", "--seed", "1"], capsys)
    assert code == 2 and "already holds a model" in err and "--force" in err
    assert (tmp_path / "m1" / "manifest.json").read_bytes() == m1
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    code, _, err = run([*train, tmp_path / "notes"], capsys)
    assert (
        code == 2 and "other files" in err and not (tmp_path / "notes" / "manifest.json").exists()
    )
    (tmp_path / "empty").mkdir()
    assert main([str(a) for a in [*train, tmp_path / "empty"]]) == 0
    # m1 -> m2 -> m3; m3's ancestors (m1, m2) are refused even with --force.
    fb = ["feedback", tmp_path / "today.jsonl", "--normal", "n1", "--steps", "5", "--model"]
    assert main([str(a) for a in [*fb, tmp_path / "m1", "--out", tmp_path / "m2"]]) == 0
    assert main([str(a) for a in [*fb, tmp_path / "m2", "--out", tmp_path / "m3"]]) == 0
    m2 = (tmp_path / "m2" / "manifest.json").read_bytes()
    code, _, err = run([*fb, tmp_path / "m1", "--out", tmp_path / "m2"], capsys)
    assert code == 2 and "already holds a model" in err
    for ancestor, version in (("m1", 1), ("m2", 2)):
        args = [*fb, tmp_path / "m3", "--out", tmp_path / ancestor, "--force"]
        code, _, err = run(args, capsys)
        assert code == 2 and f"holds version {version}, an ancestor" in err, err
    assert (tmp_path / "m2" / "manifest.json").read_bytes() == m2
    assert (tmp_path / "m1" / "manifest.json").read_bytes() == m1
    # --force replaces a model that is no ancestor (m3 is m2's child, not its parent).
    code, _, err = run([*fb, tmp_path / "m2", "--out", tmp_path / "m3", "--force"], capsys)
    assert code == 0, err
    # A --confirmed session the model does not flag is named, not counted as kept flagged.
    args = [*fb, tmp_path / "m1", "--out", tmp_path / "mc", "--confirmed", "ok"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert "1 confirmed anomalies, 0 of them flagged (0 before)" in err
    assert "1 --confirmed sessions were not flagged" in err and "(ok)" in err
    # Two writers to one new path: the second to finish fails and replaces nothing.
    det = Detector.load(tmp_path / "m1")
    det.save(tmp_path / "race", replace=False)
    first = (tmp_path / "race" / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="not empty"):
        Detector.load(tmp_path / "m2").save(tmp_path / "race", replace=False)
    assert (tmp_path / "race" / "manifest.json").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
