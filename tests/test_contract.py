"""One contract over every stateful part: state and parameters survive a round trip.

State: ``meta, arrays = part.to_state()``; the meta goes through JSON text (strict: no NaN
or infinity, which other languages' JSON readers refuse) and the arrays through
safetensors bytes, as in a bundle; ``type(part).from_state(meta, arrays)`` must give the
same state again, and the same predictions (for a learner, also the same learning from
there on).

Parameters: what a part is configured with (an estimator's ``get_params()``, a typed
config's fields) goes through JSON text too and back into the constructor, giving the same
parameters.

The parts share one small training run: a ``Detector`` (raw simulated logs, both
detectors) holds the template miner, the key model, the parameter models, the estimator
and the input settings; an estimator fitted on key sequences alone covers the other form.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from logwarden.detect import DeepLog, Detector, InputSpec
from logwarden.detect.detector import Inputs
from logwarden.errors import ConfigError
from logwarden.io.formats import get_format
from logwarden.models import KeyModelConfig, ParamModelConfig
from logwarden.parsing import GENERALIZED, MinerConfig
from logwarden.parsing.miner import ParserStateError
from logwarden.records import Line
from logwarden.sessions import SessionConfig
from logwarden.sim import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate
from logwarden.workflow import WorkflowConfig
from synthetic import grammar

TINY = {
    "window": 6, "hidden": 16, "embedding": 8, "layers": 1, "epochs": 40,
    "learning_rate": 0.02, "device": "cpu", "seed": 0, "param_epochs": 5,
}  # fmt: skip


@dataclass
class Trained:
    detector: Detector
    mixed: Path  # a log with anomalies
    test: Inputs  # the mixed log as the detector reads it
    keys_only: DeepLog  # fitted on key sequences, no parameter models
    sequences: list[list[str]]
    contents: list[str]  # messages of the mixed log
    novel: list[str]  # messages to learn from the state on


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    d = tmp_path_factory.mktemp("contract")
    simulate(SimConfig(seed=41, sessions=300, normal_only=True)).write(d / "normal.log")
    simulate(SimConfig(seed=42, sessions=120, anomaly_rate=0.2)).write(d / "mixed.log")
    det = Detector(DeepLog(**TINY), InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX))
    det.fit(det.read([str(d / "normal.log")], learn=True))
    test = det.read([str(d / "mixed.log")])
    assert test.lines is not None and det.model.params_ is not None
    fmt = get_format(SIM_FORMAT)
    contents = [fmt.parse(Line(text, "mixed.log", 0, 1)).content for s in test.lines for text in s]
    keys_only = DeepLog(**{**TINY, "epochs": 60}).fit(grammar(200, seed=3))
    sequences = [list("ABCDE"), list("ABCBCDE"), list("ACBDE"), list("ABXDE"), list("ABC"), []]
    novel = [
        "VM Started (Lifecycle Event)",
        "VM Stopped (Lifecycle Event)",
        "Took 10.52 seconds to build instance.",
        "Took 3.1 seconds to build instance.",
        "user alice logged in from 10.0.0.7",
        "user bob logged in from 10.0.0.9",
        "user carol logged in from 10.0.0.8",
        # A third word where training saw "cache hit" and "cache miss": the two trained
        # templates merge, which needs the trained signatures and their word index.
        "[req-7e5764c8-598d-4cd5-a58c-b8036b2dc186] cache stale for servers/detail of "
        "project ceddab19311e3e5c3d7e61dbff62543c",
    ]
    return Trained(det, d / "mixed.log", test, keys_only, sequences, contents[:400], novel)


# --- the parts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A stateful part: how to get a fitted one from the training run, and what it
    predicts (plain values; NaN counts as equal to NaN)."""

    name: str
    get: Callable[[Trained], Any]
    predict: Callable[[Any, Trained], Any]


def miner_predictions(miner: Any, t: Trained) -> Any:
    matched = [miner.match(c) for c in t.contents]
    # Learning goes on the same way: ids, generalisations and merges from the same state.
    learned = [miner.add(c) for c in t.novel]
    return [None if r is None else dataclasses.astuple(r) for r in matched + learned]


def key_model_predictions(model: Any, t: Trained) -> Any:
    scores = model.score(model.encode_many(t.test.keys))
    flags = model.threshold.flags(scores.rank, scores.prob)
    return scores.rank.tolist(), scores.prob.tolist(), flags.tolist()


def param_model_predictions(models: Any, t: Trained) -> Any:
    scored = models.score(models.series(t.test.events))
    out = {}
    for unit, s in sorted(scored.items(), key=lambda kv: str(kv[0])):
        arrays = (s.anomalous, s.dim, s.error, s.expected)
        out[str(unit)] = (s.model, s.threshold, *(a.tolist() for a in arrays))
    return out


def estimator_predictions(est: Any, t: Trained) -> Any:
    data = t.test
    verdicts = est.verdicts(data.keys, data.ids, data.lines, events=data.events)
    return [v.to_dict() for v in verdicts], est.decision_function(data.keys).tolist()


def keys_only_predictions(est: Any, t: Trained) -> Any:
    verdicts = est.verdicts(t.sequences)
    return [v.to_dict() for v in verdicts], est.predict(t.sequences).tolist()


def workflow_predictions(workflows: Any, t: Trained) -> Any:
    # Which task's workflow each session belongs to, and each workflow as it is drawn.
    assigned = [workflows.assign(keys) for keys in t.test.keys]
    return assigned, workflows.export(t.detector.model.templates_)


def memory_predictions(memory: Any, t: Trained) -> Any:
    # What an update replays and checks, and what it keeps after learning a session.
    learned = memory.learn([np.array([3, 4, 5, 3], dtype=np.int32)], memory.window)
    return (
        memory.summary(), [c.tolist() for c in memory.calibration],
        learned.summary(), learned.feedback_rows.tolist(), learned.replay_counts.tolist(),
    )  # fmt: skip


def lineage_predictions(lineage: Any, t: Trained) -> Any:
    from logwarden.online import Feedback

    child = lineage.child([Feedback("s1", "normal", who="a", when="t")], {"new_keys": []})
    return [(v.version, v.kind, v.parent) for v in child.versions]


def baseline_predictions(baseline: Any, t: Trained) -> Any:
    scores = t.detector.model.decision_function(t.test.keys)
    return baseline.ks(scores), baseline.cdf(np.sort(scores)).tolist()


def detector_predictions(det: Any, t: Trained) -> Any:
    # The raw log read again through the part's own format, parser and session settings.
    data = det.read([str(t.mixed)])
    return data.ids, data.keys, [v.to_dict() for v in det.verdicts(data)]


# Not here, having no state of their own to carry: SessionConfig (a Detector keeps its
# session settings in InputSpec), LogFormat (its format string, in InputSpec), thresholds and
# configs (inside their model's state). Sessionizer's open sessions and Follower's position
# are runtime state that nothing saves yet.
PARTS = [
    Part("TemplateMiner", lambda t: copy.deepcopy(t.detector.miner), miner_predictions),
    Part("KeyModel", lambda t: t.detector.model.model_, key_model_predictions),
    Part("ParamModels", lambda t: t.detector.model.params_, param_model_predictions),
    Part("DeepLog (keys and parameters)", lambda t: t.detector.model, estimator_predictions),
    Part("DeepLog (keys only)", lambda t: t.keys_only, keys_only_predictions),
    Part("Workflows", lambda t: t.detector.model.workflows_, workflow_predictions),
    Part("Memory (online updates)", lambda t: t.detector.model.memory_, memory_predictions),
    Part("Lineage", lambda t: t.detector.model.lineage_, lineage_predictions),
    Part("DriftBaseline", lambda t: t.detector.model.drift_baseline_, baseline_predictions),
    Part("InputSpec", lambda t: t.detector.input, lambda spec, t: dataclasses.asdict(spec)),
    Part("Detector", lambda t: copy.deepcopy(t.detector), detector_predictions),
]


# --- state round trip -------------------------------------------------------------------------


def through_files(
    meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The state as a bundle would carry it: strict JSON text and safetensors bytes."""
    try:
        text = json.dumps(meta, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"state is not plain JSON: {exc}") from None
    data = st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}) if arrays else b""
    return json.loads(text), (st_load(data) if arrays else {})


def assert_same_state(
    got: tuple[dict[str, Any], dict[str, np.ndarray]],
    want: tuple[dict[str, Any], dict[str, np.ndarray]],
) -> None:
    assert json.loads(json.dumps(got[0])) == json.loads(json.dumps(want[0]))
    assert sorted(got[1]) == sorted(want[1])
    for name, w in want[1].items():
        g = np.asarray(got[1][name])
        assert (g.dtype, g.shape) == (w.dtype, w.shape), name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.name)
def test_state_round_trip(part: Part, trained: Trained) -> None:
    obj = part.get(trained)
    cls = type(obj)
    for method in ("to_state", "from_state"):
        assert callable(getattr(cls, method, None)), f"{cls.__name__} has no {method}()"
    state = obj.to_state()
    # One vocabulary: (JSON-ready meta, named arrays), the arrays empty when there are none.
    assert isinstance(state, tuple) and len(state) == 2, (
        f"{cls.__name__}.to_state() gives {type(state).__name__}, not (meta, arrays)"
    )
    meta, arrays = state
    assert isinstance(meta, dict) and isinstance(arrays, dict)
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    rebuilt = cls.from_state(*through_files(meta, arrays))
    assert type(rebuilt) is cls
    assert_same_state(rebuilt.to_state(), state)
    # The same predictions, the original's and the rebuilt one's from the same point.
    np.testing.assert_equal(part.predict(rebuilt, trained), part.predict(obj, trained))


def test_predictions_compared_are_not_trivial(trained: Trained) -> None:
    # The parts predict anomalies and normal sessions alike, so that equal predictions
    # say something (a model that flags nothing would agree with anything).
    verdicts = estimator_predictions(trained.detector.model, trained)[0]
    reasons = {v.get("reason") for v in verdicts}
    assert {None, "performance"} <= reasons or {None, "parameter"} <= reasons, reasons
    assert any(v.get("detector") == "keys" for v in verdicts)
    flags = keys_only_predictions(trained.keys_only, trained)[1]
    assert True in flags and False in flags
    matched = miner_predictions(copy.deepcopy(trained.detector.miner), trained)
    assert None not in matched[: len(trained.contents)]
    assert matched[-1][3] == GENERALIZED  # the merge of trained templates happened


# --- parameters round trip --------------------------------------------------------------------


def test_estimator_parameters_round_trip(trained: Trained) -> None:
    for est in (trained.detector.model, trained.keys_only, DeepLog()):
        params = est.get_params()
        again = json.loads(json.dumps(params, allow_nan=False))
        assert again == params
        assert type(est)(**again).get_params() == params
        assert est.clone().get_params() == params
        assert not hasattr(est.clone(), "model_")  # a clone is not fitted
    # Every constructor argument is a parameter, and nothing else is (scikit-learn's rule).
    names = [p for p in inspect.signature(DeepLog).parameters]
    assert list(DeepLog().get_params()) == names


def test_estimator_reaches_every_model_setting() -> None:
    """Each setting of the key model and of the parameter models is a DeepLog parameter
    (``param_<name>`` for the parameter models; ``confidence`` and ``seed`` shared)."""
    est = DeepLog()
    names = set(est.get_params())
    for f in dataclasses.fields(KeyModelConfig):
        assert f.name in names, f.name
    for f in dataclasses.fields(ParamModelConfig):
        assert (f.name if f.name in ("confidence", "seed") else f"param_{f.name}") in names, f.name
    # and each reaches its model: a value other than the default comes through
    changed = {
        "window": 7, "layers": 3, "hidden": 9, "embedding": 5, "epochs": 11, "patience": 4,
        "batch_size": 33, "learning_rate": 0.03, "folds": 3, "rule_share": 0.2, "target_fpr": 0.02,
        "top_g": 4, "seed": 5, "device": "cpu", "confidence": 0.99,
        "param_window": 4, "param_hidden": 6, "param_layers": 2, "param_epochs": 3,
        "param_max_steps": 10, "param_batch_size": 17, "param_learning_rate": 0.02,
        "param_validation": 0.3, "param_min_samples": 50, "param_min_contextual": 500,
        "param_range_margin": 0.5, "param_by_predecessor": False, "param_slower_only": False,
    }  # fmt: skip
    est = DeepLog(**changed)
    key, par = dataclasses.asdict(est.key_config()), dataclasses.asdict(est.param_config())
    for name, value in changed.items():
        field = name.removeprefix("param_")
        if name.startswith("param_"):
            assert par[field] == value, name
        else:
            assert key.get(name, par.get(name)) == value, name
    assert par["seed"] == key["seed"] == 5 and par["confidence"] == 0.99


CONFIGS = [
    KeyModelConfig(window=4, top_g=3, device="cpu"),
    ParamModelConfig(window=3, confidence=0.99, by_predecessor=False),
    MinerConfig(max_templates=10, masks=[{"name": "ticket", "pattern": r"T-\d+", "kind": "id"}]),
    SessionConfig(id_pattern=SIM_SESSION_REGEX, idle_timeout=30.0),
    InputSpec(format=SIM_FORMAT, session=SIM_SESSION_REGEX, session_in_line=True),
    WorkflowConfig(cooccurrence=0.7, min_support=3, horizon=60.0),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_config_parameters_round_trip(config: Any) -> None:
    params = dataclasses.asdict(config)
    again = json.loads(json.dumps(params, allow_nan=False))
    rebuilt = type(config)(**again)
    assert rebuilt == config
    assert dataclasses.asdict(rebuilt) == params


@pytest.mark.parametrize(
    ("part", "config"),
    [("TemplateMiner", MinerConfig), ("ParamModels", ParamModelConfig)],
)
def test_parts_built_from_their_config_keep_it(part: str, config: type, trained: Trained) -> None:
    obj = next(p for p in PARTS if p.name == part).get(trained)
    params = dataclasses.asdict(obj.config)
    rebuilt = type(obj)(config(**json.loads(json.dumps(params))))
    assert dataclasses.asdict(rebuilt.config) == params


# --- inputs and settings of the wrong type (a new user's Python session) ---------------------


def test_a_string_where_sessions_go_is_a_type_error_not_a_model_of_characters() -> None:
    from synthetic import grammar

    sessions = grammar(60, seed=1)
    model = DeepLog(epochs=2, hidden=8, layers=1, folds=2, workflows=False)
    for bad in ("A B C", [" ".join(s) for s in sessions], None):
        with pytest.raises(TypeError, match="session"):
            model.fit(bad)  # type: ignore[arg-type]
    model.fit(iter(sessions))  # an iterable of sessions is read once
    assert " " not in model.keys_ and all(len(k) == 1 for k in model.keys_)
    for bad in ("A B C", [["A", "B"], "A B"]):
        with pytest.raises(TypeError, match="session"):
            model.predict(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of paths"):
        Detector(DeepLog(), InputSpec(format="hdfs", session="hdfs")).read("x.log")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": 2.5}, "window"), ({"window": True}, "window"), ({"epochs": 2.5}, "epochs"),
        ({"hidden": "16"}, "hidden"), ({"seed": None}, "seed"), ({"top_g": 2.5}, "top_g"),
        ({"fold_check": "no"}, "fold_check"), ({"explain_top": -1}, "explain_top"),
        ({"patience": -5}, "patience"), ({"n_jobs": -1}, "n_jobs"),
        ({"learning_rate": "0.1"}, "learning_rate"),
    ],
)  # fmt: skip
def test_settings_of_the_wrong_type_are_named_before_training(
    kwargs: dict[str, Any], field: str
) -> None:
    """They failed deep in NumPy or torch (top_g after training), or were taken: "no" was
    a true fold_check, explain_top=-1 listed the padding key."""
    from synthetic import grammar

    with pytest.raises(ConfigError) as err:
        DeepLog(**kwargs).fit(grammar(20, seed=1))
    assert err.value.field == field


def test_a_parser_state_that_reuses_ids_or_names_missing_templates_is_refused() -> None:
    from logwarden.parsing import TemplateMiner

    t = TemplateMiner()
    t.add("Took 10.52 seconds to build instance.")
    t.add("VM Started")
    state, _ = t.to_state()
    assert TemplateMiner.from_state(state).match("VM Started") is not None
    low = json.loads(json.dumps(state))
    low["next_id"] = 1  # a new template would take id 1, which is in use
    dangling = json.loads(json.dumps(state))
    dangling["signatures"].append([["no", "such"], 99])
    for bad in (low, dangling):
        with pytest.raises(ParserStateError):
            TemplateMiner.from_state(bad)
    with pytest.raises(ConfigError, match="list of rule names"):
        MinerConfig(disabled_rules="digits")  # type: ignore[arg-type]


def test_verdicts_take_ids_as_text_and_refuse_misaligned_ids_and_lines() -> None:
    from synthetic import grammar

    sessions = grammar(40, seed=2)
    model = DeepLog(epochs=2, hidden=8, layers=1, folds=2, workflows=False).fit(sessions)
    got = model.verdicts(sessions[:2], ids=[1, 2])  # type: ignore[list-item]
    assert [v.session for v in got] == ["1", "2"]
    with pytest.raises(ValueError, match="ids has 1 entries for 3 sessions"):
        model.verdicts(sessions[:3], ids=["a"])
    with pytest.raises(ValueError, match="lines has 1 entries for 3 sessions"):
        model.verdicts(sessions[:3], lines=[["x"]])


def test_keys_named_like_the_model_s_markers_are_refused() -> None:
    """A key named <end> could not be told from an early end in an explanation."""
    from logwarden.errors import DataError
    from synthetic import grammar

    sessions = grammar(30, seed=3)
    model = DeepLog(epochs=2, hidden=8, layers=1, folds=2, workflows=False)
    with pytest.raises(DataError, match="'<end>'"):
        model.fit([*sessions, ["A", "<end>"]])
    model.fit(sessions)
    with pytest.raises(TypeError, match="session"):
        model.partial_fit("A B")  # type: ignore[arg-type]
