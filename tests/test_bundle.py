"""The model bundle: a faithful round trip, and a one-line refusal of anything foreign,
edited, damaged or incomplete. No pickle anywhere."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from logwarden.detect import DeepLog
from logwarden.persist.bundle import SCHEMA, BundleError, load_bundle, save_bundle
from synthetic import grammar

TEMPLATES = {"A": "start <*>", "B": "open <*>", "C": "close <*>", "D": "commit", "E": "done"}


PROBES = [
    list("ABCDE"),
    list("ABCBCBCDE"),
    list("ACBDE"),
    list("ABXDE"),
    list("ABC"),
    [],
    list("ABCBCBCBCDE"),
]


@pytest.fixture(scope="module")
def model() -> DeepLog:
    est = DeepLog(
        window=5, hidden=16, embedding=8, layers=2, epochs=60, learning_rate=0.02, device="cpu"
    )
    return est.fit(grammar(200, seed=0), TEMPLATES)


@pytest.fixture(scope="module")
def saved(model: DeepLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "model"
    model.save(path, extra={"input": {"input_format": "sequences"}})
    return path


@pytest.fixture
def bundle(saved: Path, tmp_path: Path) -> Path:
    """A fresh copy of the saved bundle, free to damage."""
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(path: Path, manifest: dict[str, Any], *, reseal: bool = False) -> None:
    if reseal:
        # The manifest's checksum is over its canonical JSON without the checksum field, as
        # documented; anyone can recompute it, so the content checks must hold on their own.
        body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        manifest = {**manifest, "manifest_sha256": hashlib.sha256(canonical.encode()).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def refused(path: Path, *words: str) -> str:
    with pytest.raises(BundleError) as info:
        DeepLog.load(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip(), msg
    for w in words:
        assert w in msg, msg
    return msg


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_gives_identical_verdicts(model: DeepLog, saved: Path) -> None:
    loaded = DeepLog.load(saved)
    assert loaded.get_params() == model.get_params()
    assert loaded.keys_ == model.keys_
    assert loaded.threshold_ == model.threshold_
    assert loaded.templates_ == TEMPLATES
    for name, w in model.model_.weights.items():
        assert np.array_equal(loaded.model_.weights[name], w), name
    want = [v.to_dict() for v in model.verdicts(PROBES, lines=[list(p) for p in PROBES])]
    got = [v.to_dict() for v in loaded.verdicts(PROBES, lines=[list(p) for p in PROBES])]
    assert got == want
    assert any(v["anomalous"] for v in got) and not all(v["anomalous"] for v in got)
    assert np.array_equal(loaded.decision_function(PROBES), model.decision_function(PROBES))


def test_manifest_content(model: DeepLog, saved: Path) -> None:
    m = read_manifest(saved)
    assert m["schema"] == SCHEMA
    assert m["params"] == model.get_params()
    assert m["threshold"]["mode"] == "probability"
    assert m["threshold"]["tau"] == model.threshold_.tau
    assert [(v["key"], v["template"]) for v in m["vocabulary"]] == [
        (k, TEMPLATES[k])
        for k in "BCADE"  # by frequency
    ]
    # The calibration behind the threshold is kept with it: the expected false-positive
    # rate with its interval, the tail model, the rule's context.
    th = m["threshold"]
    assert th["fpr_low"] <= th["expected_fpr"] <= th["fpr_high"]
    assert th["level"] == model.threshold_.level
    assert m["calibration"]["context"] >= 1 and m["calibration"]["tail"]["n"] == 200
    assert m["input"] == {"input_format": "sequences"}  # extra settings kept
    assert m["train_info"]["sessions"] == 200
    # The key model's weights, and what online updates keep (replay sample, calibration).
    assert set(m["files"]) == {"keys.safetensors", "online.safetensors"}
    assert m["online"]["memory"]["calibration_sessions"] == m["threshold"]["checked_sessions"]
    assert [(v["version"], v["kind"]) for v in m["lineage"]["versions"]] == [(1, "train")]


def test_bundle_holds_only_json_and_safetensors(saved: Path) -> None:
    names = sorted(p.name for p in saved.iterdir())
    # No temporary files left.
    assert names == ["keys.safetensors", "manifest.json", "online.safetensors"]
    m = read_manifest(saved)  # plain JSON
    for name, info in m["files"].items():
        data = (saved / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
        assert info["bytes"] == len(data)
        # safetensors: an 8-byte little-endian header length, a JSON header, raw data.
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        # Weights are floats and the rule's known transitions key indices; the online part
        # holds key indices and counts.
        dtypes = {"F32", "I32"} if name == "keys.safetensors" else {"I32", "I64"}
        assert tensors and all(v["dtype"] in dtypes for v in tensors.values())
        end = max(v["data_offsets"][1] for v in tensors.values())
        assert 8 + n + end == len(data)


def test_no_pickle_is_used(model: DeepLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_a: object, **_k: object) -> None:
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch, "save", forbidden)
    model.save(tmp_path / "m")
    loaded = DeepLog.load(tmp_path / "m")
    assert [v.anomalous for v in loaded.verdicts(PROBES)] == list(model.predict(PROBES))


def test_saving_over_an_existing_bundle(model: DeepLog, bundle: Path) -> None:
    model.save(bundle)
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["keys.safetensors", "manifest.json", "online.safetensors"]
    assert DeepLog.load(bundle).keys_ == model.keys_


def test_save_and_load_bundle_directly(tmp_path: Path) -> None:
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    save_bundle(tmp_path / "b", {"note": "héllo"}, {"net": tensors})
    manifest, weights = load_bundle(tmp_path / "b")
    assert manifest["note"] == "héllo" and manifest["schema"] == SCHEMA
    assert set(weights) == {"net"}
    for k, v in tensors.items():
        assert np.array_equal(weights["net"][k], v)


# --- refusals -------------------------------------------------------------------------------


def test_refuses_a_missing_manifest(bundle: Path, tmp_path: Path) -> None:
    (bundle / "manifest.json").unlink()
    refused(bundle, "manifest.json")
    refused(tmp_path / "does-not-exist", "not a logwarden model bundle")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", ("unreadable manifest",)),
        ("[1, 2]", ("not a logwarden manifest",)),
        ("", ("unreadable manifest",)),
    ],
)
def test_refuses_an_unreadable_manifest(bundle: Path, content: str, words: tuple[str]) -> None:
    (bundle / "manifest.json").write_text(content, encoding="utf-8")
    refused(bundle, *words)


def test_refuses_invalid_utf8_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").write_bytes(b'{"schema": "\xff"}')
    refused(bundle, "unreadable manifest")


@pytest.mark.parametrize("reseal", [False, True])
def test_refuses_an_unknown_schema_version(bundle: Path, reseal: bool) -> None:
    m = read_manifest(bundle)
    m["schema"] = "logwarden.bundle/99"
    write_manifest(bundle, m, reseal=reseal)
    refused(bundle, "logwarden.bundle/99", "not supported")
    del m["schema"]
    write_manifest(bundle, m, reseal=reseal)
    refused(bundle, "not supported")


def test_reseal_helper_matches_the_saved_checksum(saved: Path, tmp_path: Path) -> None:
    # Otherwise the resealed-manifest tests below would be refused for the wrong reason.
    m = read_manifest(saved)
    write_manifest(tmp_path, m, reseal=True)
    assert read_manifest(tmp_path)["manifest_sha256"] == m["manifest_sha256"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["threshold"].update(tau=m["threshold"]["tau"] * 2),
        lambda m: m["threshold"].update(mode="top_g", g=9),
        lambda m: m["params"].update(window=3),
        lambda m: m["vocabulary"][0].update(key="Z"),
        lambda m: m["files"]["keys.safetensors"].update(sha256="0" * 64),
        lambda m: m.update(extra_field=1),
        lambda m: m.pop("created"),
    ],
    ids=["tau", "mode", "window", "vocabulary", "file-checksum", "added", "removed"],
)
def test_refuses_an_edited_manifest(bundle: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    m = read_manifest(bundle)
    edit(m)
    write_manifest(bundle, m)
    refused(bundle, "manifest was modified")


def test_whitespace_only_reformatting_is_not_an_edit(bundle: Path) -> None:
    # The checksum is over the content, not the bytes: re-indenting is harmless.
    write_manifest(bundle, read_manifest(bundle))
    assert DeepLog.load(bundle).keys_ == list("BCADE")


@pytest.mark.parametrize("where", [0, 100, -1])
def test_refuses_a_modified_weight_file(bundle: Path, where: int) -> None:
    path = bundle / "keys.safetensors"
    data = bytearray(path.read_bytes())
    data[where] ^= 0x01
    path.write_bytes(bytes(data))
    refused(bundle, "keys.safetensors", "checksum mismatch")


def test_refuses_a_missing_weight_file(bundle: Path) -> None:
    (bundle / "keys.safetensors").unlink()
    refused(bundle, "missing weight file", "keys.safetensors")


def test_refuses_a_weight_file_replaced_by_a_directory(bundle: Path) -> None:
    (bundle / "keys.safetensors").unlink()
    (bundle / "keys.safetensors").mkdir()
    refused(bundle, "keys.safetensors")


@pytest.mark.parametrize(
    "name", ["../x.safetensors", "sub/keys.safetensors", "/tmp/x.safetensors", "keys.pkl"]
)
def test_refuses_a_file_entry_with_a_path(bundle: Path, name: str) -> None:
    m = read_manifest(bundle)
    info = m["files"].pop("keys.safetensors")
    m["files"][name] = info
    if not name.startswith("/") and name.endswith(".safetensors"):
        # Put a genuine copy there, with the right checksum: the entry must be refused for
        # its name, not because the file is absent.
        target = bundle / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(bundle / "keys.safetensors", target)
    write_manifest(bundle, m, reseal=True)
    refused(bundle, "unexpected file entry")


def test_refuses_a_truncated_weight_file_even_with_a_matching_checksum(bundle: Path) -> None:
    path = bundle / "keys.safetensors"
    data = path.read_bytes()[:50]
    path.write_bytes(data)
    m = read_manifest(bundle)
    m["files"]["keys.safetensors"]["sha256"] = hashlib.sha256(data).hexdigest()
    write_manifest(bundle, m, reseal=True)
    refused(bundle, "unreadable weights")


def test_refuses_a_bundle_without_the_key_weights(bundle: Path) -> None:
    m = read_manifest(bundle)
    m["files"] = {}
    write_manifest(bundle, m, reseal=True)
    refused(bundle, "not a valid DeepLog model")


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["params"].update(layers=3),  # weights for 2 layers
        lambda m: m["params"].update(window=0),
        lambda m: m["params"].update(unknown=1),
        lambda m: m.pop("params"),
        lambda m: m["threshold"].update(mode="bogus"),
        lambda m: m["threshold"].update(mode="top_g", g=None),
        lambda m: m.update(vocabulary=m["vocabulary"][:-1]),  # 4 keys, weights for 5
    ],
    ids=["layers", "window", "unknown-param", "no-params", "mode", "g-null", "vocabulary"],
)
def test_refuses_content_that_is_not_a_valid_model(
    bundle: Path, edit: Callable[[dict[str, Any]], Any]
) -> None:
    # A well-formed, correctly checksummed bundle whose content does not describe a usable
    # model must be refused at load time, with BundleError, not fail later at detection.
    m = read_manifest(bundle)
    edit(m)
    write_manifest(bundle, m, reseal=True)
    refused(bundle)


def test_every_file_of_a_bundle_and_of_parse_gets_the_umask_s_mode(tmp_path: Path) -> None:
    """safetensors and mkstemp create files 0600: a bundle held 0600 weights beside a
    0644 manifest, and parse's structured CSV was 0600 beside a 0644 templates CSV."""
    import os

    from logwarden.cli import main
    from logwarden.persist import save_bundle

    old = os.umask(0o022)
    try:
        save_bundle(tmp_path / "b", {"k": 1}, {"w": {"x": np.zeros(3, np.float32)}})
        log = tmp_path / "a.log"
        log.write_text("081109 203615 148 INFO dfs.X: PacketResponder 1 terminating\n")
        assert (
            main(["parse", str(log), "--format", "hdfs", "--out", str(tmp_path / "o.csv"), "-q"])
            == 0
        )
    finally:
        os.umask(old)
    files = [*(tmp_path / "b").iterdir(), tmp_path / "o.csv", tmp_path / "o.templates.csv"]
    assert {f.name: f.stat().st_mode & 0o777 for f in files} == {f.name: 0o644 for f in files}
