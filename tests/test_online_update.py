"""DeepLog.partial_fit on key sequences: the vocabulary grows with old weights kept, new
behaviour is learnt without forgetting the old, an update that would silence a confirmed
anomaly is refused, and the parts an update needs survive the bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from logwarden.detect import DeepLog
from logwarden.errors import BundleError, StateError, UpdateRefusedError
from logwarden.models import FIRST_KEY, fit_key_model
from logwarden.models.params import KeySeries, ParamModelConfig, ParamModels
from logwarden.online import Feedback, Memory, UpdatePolicy
from logwarden.online.update import reworded
from logwarden.persist.bundle import load_bundle, save_bundle
from synthetic import grammar

NORMAL = [list("ABCDE"), list("ABCBCDE"), list("ABCBCBCDE")]
ABNORMAL = [list("ACBDE"), list("ABC"), list("EDCBA"), list("ABCBCBCBCDE")]
UPGRADED = [list("ABXCDE"), list("ABXCBCDE"), list("ABXCBCBCDE")]  # a new step X after B


def fresh() -> DeepLog:
    est = DeepLog(
        window=5, hidden=16, embedding=8, layers=1, epochs=80, learning_rate=0.02, device="cpu"
    )
    return est.fit(grammar(300, seed=0), {k: f"step {k}" for k in "ABCDE"})


@pytest.fixture(scope="module")
def trained() -> DeepLog:
    return fresh()


def copy(est: DeepLog, tmp: Path) -> DeepLog:
    est.save(tmp / "m")
    return DeepLog.load(tmp / "m")


def test_grow_keeps_every_old_weight(trained: DeepLog) -> None:
    km = trained.model_
    grown = km.grow(["X", "A", "Y"], seed=1)
    assert grown.keys == [*km.keys, "X", "Y"]  # known keys skipped, new ones last
    assert all(grown.index[k] == km.index[k] for k in km.keys)
    n_old = len(km.keys) + FIRST_KEY
    for name, w in km.weights.items():
        g = grown.weights[name]
        if name in ("embed.weight", "out.weight", "out.bias"):
            assert g.shape[0] == n_old + 2
            assert np.array_equal(g[:n_old], w)
        else:
            assert np.array_equal(g, w)
    # New keys start improbable: old windows predict what they predicted.
    probes = km.encode_many(NORMAL)
    old = km.score(probes)
    new = grown.score(grown.encode_many(NORMAL))
    assert np.allclose(old.prob, new.prob, atol=0.02)
    # A stand-in for a known key starts as its copy.
    twin = km.grow(["B2"], like={"B2": "B"})
    for name in ("embed.weight", "out.weight", "out.bias"):
        assert np.array_equal(twin.weights[name][-1], twin.weights[name][km.index["B"]])


def test_partial_fit_learns_a_new_step_without_forgetting(trained: DeepLog, tmp_path: Path) -> None:
    est = copy(trained, tmp_path)
    assert est.predict(UPGRADED).all()  # X was never seen
    assert not est.predict(NORMAL).any() and est.predict(ABNORMAL).all()
    before_keys = est.keys_
    feedback = [Feedback(f"s{i}", "normal", who="bob", why="upgrade") for i in range(3)]
    est.partial_fit(UPGRADED, {"X": "step X"}, feedback=feedback)
    assert est.keys_ == [*before_keys, "X"]
    assert not est.predict(UPGRADED).any()
    assert not est.predict(NORMAL).any()  # not forgotten
    assert est.predict(ABNORMAL).all()  # still anomalies
    assert est.predict([list("AXBCDE"), list("ABXXCDE")]).all()  # X elsewhere is not normal
    info = est.update_info_
    assert info["new_keys"] == [{"key": "X", "template": "step X", "rewords": None}]
    assert info["normal_flagged"] == [3, 0] and info["vocabulary"] == [5, 6]
    assert est.lineage_.version == 2 and est.lineage_.current.feedback == feedback
    # The update survives the bundle, and a second one builds on it.
    est.save(tmp_path / "m2")
    back = DeepLog.load(tmp_path / "m2")
    assert np.array_equal(back.decision_function(UPGRADED), est.decision_function(UPGRADED))
    assert len(back.memory_.feedback_sessions) == 3
    assert back.lineage_.current.parent["path"] == str((tmp_path / "m").resolve())
    back.partial_fit([list("ABXCBCBCBCDE")])
    assert back.lineage_.version == 3 and len(back.memory_.feedback_sessions) == 4
    assert (
        back.lineage_.current.parent["manifest_sha256"]
        == load_bundle(tmp_path / "m2")[0]["manifest_sha256"]
    )


def test_an_update_that_silences_a_confirmed_anomaly_is_refused(tmp_path: Path) -> None:
    # A top-g rule as wide as the grown vocabulary, without the unseen-transition rule
    # (rule_share 0), flags nothing but keys never seen: a confirmed anomaly flagged only
    # for the key X is silenced by any update that learns X, whatever the weight of the
    # feedback.
    est = DeepLog(
        window=5, hidden=16, embedding=8, layers=1, epochs=40, top_g=7, device="cpu",
        rule_share=0.0, folds=0,
    )  # fmt: skip
    est.fit(grammar(200, seed=0))
    confirmed = [list("AXBCDE")]
    assert est.predict(confirmed).all()
    before = est.decision_function(NORMAL + ABNORMAL + UPGRADED)
    feedback = [Feedback("n1", "normal"), Feedback("c1", "confirmed")]
    with pytest.raises(UpdateRefusedError) as info:
        est.partial_fit([UPGRADED[0]], confirmed=confirmed, feedback=feedback)
    msg = str(info.value)
    assert "\n" not in msg and "refused" in msg and "c1" in msg and "n1" in msg
    assert "nothing was changed" in msg and "X" in msg
    # Nothing changed.
    assert est.keys_ == list("BCADE") and est.lineage_.version == 1  # by frequency
    assert np.array_equal(est.decision_function(NORMAL + ABNORMAL + UPGRADED), before)
    # Confirmed anomalies that the update leaves flagged do not stop it.
    est.partial_fit([UPGRADED[0]], confirmed=[list("ABZDE")])
    assert est.update_info_["confirmed_flagged"] == [1, 1] and est.lineage_.version == 2


def test_confirmed_anomalies_stay_flagged_after_an_update(trained: DeepLog, tmp_path: Path) -> None:
    est = copy(trained, tmp_path)
    est.partial_fit(UPGRADED, confirmed=ABNORMAL)
    assert est.update_info_["confirmed_flagged"] == [len(ABNORMAL), len(ABNORMAL)]
    assert est.predict(ABNORMAL).all() and not est.predict(UPGRADED).any()


def test_a_model_without_a_replay_sample_cannot_be_updated(
    trained: DeepLog, tmp_path: Path
) -> None:
    trained.save(tmp_path / "m")
    manifest, weights = load_bundle(tmp_path / "m")
    old = {k: v for k, v in manifest.items() if k not in ("online", "lineage", "files")}
    old.pop("manifest_sha256")
    save_bundle(tmp_path / "old", old, {"keys": weights["keys"]})
    est = DeepLog.load(tmp_path / "old")  # an older bundle still loads and detects
    assert est.lineage_.version == 1 and est.memory_ is None
    with pytest.raises(StateError, match="train it again"):
        est.partial_fit(UPGRADED)


def test_online_arrays_are_checked(trained: DeepLog, tmp_path: Path) -> None:
    trained.save(tmp_path / "m")
    manifest, weights = load_bundle(tmp_path / "m")
    body = {k: v for k, v in manifest.items() if k not in ("files", "manifest_sha256")}
    bad = dict(weights["online"])
    bad["replay_rows"] = bad["replay_rows"][:, :-1]  # rows of another window
    save_bundle(tmp_path / "bad", body, {**weights, "online": bad})
    with pytest.raises(BundleError, match="window"):
        DeepLog.load(tmp_path / "bad")
    shutil.rmtree(tmp_path / "bad")
    bad = dict(weights["online"])
    bad["calibration_offsets"] = bad["calibration_offsets"][::-1].copy()
    save_bundle(tmp_path / "bad", body, {**weights, "online": bad})
    with pytest.raises(BundleError):
        DeepLog.load(tmp_path / "bad")


def test_memory_keeps_the_training_rows_and_calibration_sessions(trained: DeepLog) -> None:
    mem = trained.memory_
    assert mem is not None
    # Every training session, with what the model itself flags of them as the re-check's
    # baseline.
    assert len(mem.calibration) == trained.threshold_.checked_sessions == 300
    assert 0 <= trained.threshold_.checked_flagged <= 300
    assert mem.replay_rows.shape[1] == trained.window + 1 and mem.replay_counts.min() >= 1
    assert trained.model_.training_rows is None  # the estimator lets training's copy go
    # The most frequent rows are kept when the sample is capped.
    km = fit_key_model(grammar(100, seed=3), trained.key_config())
    assert km.training_rows is not None
    rows, counts = km.training_rows
    capped = Memory.from_training(km, UpdatePolicy(replay_rows=5))
    assert capped is not None and len(capped.replay_rows) == 5
    assert capped.replay_total == len(rows) > 5
    assert sorted(capped.replay_counts) == sorted(counts)[-5:]


def test_reworded_messages_are_found_by_text_and_absence() -> None:
    known = {"E1": "Took <*> seconds to build instance.", "E2": "Claim successful"}
    new = {"E9": "Took <*> seconds to build the instance.", "E8": "Allocating IP information"}
    assert reworded(new, known, [["E2", "E9", "E8"]], 0.8) == {"E9": "E1"}
    # Still logged next to the new one: not a rewording, a new message.
    assert reworded(new, known, [["E1", "E9"]], 0.8) == {}
    assert reworded(new, known, [["E9"]], 1.0) == {}


def test_update_policy_is_validated() -> None:
    from logwarden.errors import ConfigError

    for bad in ({"feedback_share": 0.0}, {"steps": 0}, {"attempts": 0}, {"learning_rate": -1}):
        with pytest.raises(ConfigError):
            UpdatePolicy(**bad)
    assert UpdatePolicy.from_dict({**UpdatePolicy().to_dict(), "unknown": 1}) == UpdatePolicy()


def _series(key: int, prev: int | None, values: list[float]) -> KeySeries:
    v = np.array(values, dtype=np.float64).reshape(-1, 1)
    refs = np.stack([np.arange(len(v)), np.zeros(len(v), dtype=np.int64)], axis=1)
    return KeySeries(key, (), v, refs, 0, prev)


def lognormal(rng: np.random.Generator, n: int) -> list[float]:
    return list(0.25 * np.exp(0.3 * rng.standard_normal(n)))


def test_few_entries_give_a_cautious_model_borrowing_the_known_scale() -> None:
    rng = np.random.default_rng(0)
    params = ParamModels(ParamModelConfig(min_samples=100, max_steps=5))
    # A known unit of key 7: elapsed times of about 0.25 s, log-normal.
    params.fit({(7, 1): _series(7, 1, lognormal(rng, 60))})
    # Five entries of key 7 after a new predecessor, close together by chance: their own
    # MAD would make a scale far too small; the known unit's scale is the floor.
    few = [0.25, 0.251, 0.252, 0.249, 0.25]
    params.fit_few({(7, 9): _series(7, 9, few)})
    assert params.models[(7, 9)].info["from_feedback"]
    later = _series(7, 9, lognormal(rng, 2000))
    assert params.score_key(later).anomalous.mean() < 0.005
    assert params.score_key(_series(7, 9, [0.25 * 40])).anomalous.all()
    # A key never seen: the sample's own spread (never below its standard deviation), in
    # log units; over many draws of five, normal values are seldom flagged.
    flagged = []
    for seed in range(40):
        r = np.random.default_rng(100 + seed)
        p = ParamModels(ParamModelConfig(min_samples=100))
        p.fit_few({(8, None): _series(8, None, lognormal(r, 5))})
        flagged.append(p.score_key(_series(8, None, lognormal(r, 200))).anomalous.mean())
        assert p.score_key(_series(8, None, [0.25 * 1000])).anomalous.all()
    assert float(np.mean(flagged)) < 0.01


def test_accept_widens_a_unit_to_take_flagged_entries_as_normal() -> None:
    rng = np.random.default_rng(1)
    params = ParamModels(ParamModelConfig(min_samples=100, max_steps=5))
    params.fit({(3, 1): _series(3, 1, list(1.0 + 0.01 * rng.standard_normal(50)))})
    odd = _series(3, 1, [1.5])
    assert params.score_key(odd).anomalous.all()
    assert params.accept(odd) == 1
    assert not params.score_key(odd).anomalous.any()
    assert params.score_key(_series(3, 1, [30.0])).anomalous.all()  # far beyond: still flagged
    assert params.accept(odd) == 0


def test_confirmations_alone_are_recorded_without_changing_the_model(
    trained: DeepLog, tmp_path: Path
) -> None:
    est = copy(trained, tmp_path)
    before = est.decision_function(NORMAL + ABNORMAL)
    est.partial_fit([], confirmed=ABNORMAL[:2], feedback=[Feedback("c1", "confirmed")] * 1)
    assert est.lineage_.version == 2 and est.lineage_.current.feedback[0].session == "c1"
    assert est.keys_ == trained.keys_
    assert np.array_equal(est.decision_function(NORMAL + ABNORMAL), before)
    assert est.update_info_["confirmed_flagged"] == [2, 2]


def test_the_teacher_is_the_same_computed_once_or_per_batch(
    trained: DeepLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logwarden.online import update

    once = copy(trained, tmp_path).partial_fit(UPGRADED)
    monkeypatch.setattr(update, "TEACHER_CELLS", 0)  # too big to keep: per batch
    per_batch = copy(trained, tmp_path).partial_fit(UPGRADED)
    a, b = once.model_.weights, per_batch.model_.weights
    assert all(np.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert not per_batch.predict(UPGRADED).any()
