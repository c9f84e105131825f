"""Detectors combined into verdicts with explanations, behind a scikit-learn-like API.

``DeepLog`` is the estimator: ``fit`` on normal sessions (sequences of log keys),
``decision_function`` / ``predict`` for scores and labels, ``verdicts`` for one explained
``Verdict`` per session, ``save`` / ``load`` for the model bundle. Constructor arguments
are the hyperparameters; fitted state ends in ``_``.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from logwarden import __version__
from logwarden.errors import (
    BundleError,
    ConfigError,
    DataError,
    NotFittedError,
    StateError,
    UpdateRefusedError,
)
from logwarden.models.keys import (
    END,
    FIRST_KEY,
    RESERVED,
    UNK,
    Assessment,
    KeyModel,
    KeyModelConfig,
    Threshold,
    fit_key_model,
)
from logwarden.models.params import ParamModelConfig, ParamModels, ParamScores
from logwarden.online.drift import DriftBaseline
from logwarden.online.feedback import Feedback, Lineage
from logwarden.online.update import (
    Memory,
    UpdatePolicy,
    fine_tune,
    recheck_threshold,
    reworded,
    template_id,
    update_param_models,
)
from logwarden.persist.bundle import join_arrays, load_bundle, save_bundle, split_arrays
from logwarden.sessions import Session, SessionTable
from logwarden.workflow import Workflows, mine_workflows
from logwarden.workflow.diagnose import Diagnosis, attach_diagnosis_lines, diagnose
from logwarden.workflow.linking import MIN_SPANS

REASONS = {
    "unseen_key": "a log key never seen in normal runs",
    "early_end": "the session ended where normal sessions go on",
    "unseen_transition": "a key that never followed these keys in normal runs",
    "ranked_out": "the observed key was not among the keys the model expected next",
    "count_exceeded": "a key repeated more times than in any normal run",
    "performance": "a step took far longer than in normal runs",
    "parameter": "a parameter value far from what normal runs produce",
}


def key_reason(new_transition: bool, over_count: bool) -> str:
    """The reason of a key-model flag at a known key: the count rule first (the most
    specific: one repeat too many), then the transition rule, else the network's rank."""
    if over_count:
        return "count_exceeded"
    return "unseen_transition" if new_transition else "ranked_out"


@dataclass
class Verdict:
    """The outcome for one session, with what a person needs to act on it."""

    session: str
    anomalous: bool
    length: int  # number of log keys in the session
    # Higher is more anomalous: -log10 of how rare such a session is among normal ones, one
    # scale for both detectors (see DeepLog.decision_function); the worst rank with top-g.
    score: float
    # unseen_key | unseen_transition | count_exceeded | early_end | ranked_out (keys) |
    # performance | parameter (params)
    reason: str | None = None  # None when normal
    detector: str | None = None  # which model fired: "keys" or "params"
    position: int | None = None  # index of the first anomalous entry (length: the end)
    observed: str | None = None  # the observed key ("<end>" for an early end)
    observed_template: str | None = None
    probability: float | None = None  # the model's probability of the observed key
    rank: int | None = None  # its rank among the expected keys (1 = most likely)
    window: list[str] = field(default_factory=list)  # the keys before it
    expected: list[dict[str, Any]] = field(default_factory=list)  # key, template, probability
    lines: list[str] | None = None  # raw lines around the anomaly, when the input was raw
    # params: the deviating dimension, observed and expected values, sigmas (see describe)
    deviation: dict[str, Any] | None = None
    # where the session stands against its task's workflow (when workflows were mined)
    diagnosis: Diagnosis | None = None
    # count_exceeded: the observed key's occurrences in the session up to the entry, and
    # the most any normal training session held
    count: int | None = None
    max_count: int | None = None
    # raw input (see attach_places): the flagged entry's input line (from 1 across the
    # inputs, empty lines counted; an early end: the session's last line) and the time it
    # carries, the session's first and last lines, and the line number of each of ``lines``
    line: int | None = None
    timestamp: str | None = None
    first_line: int | None = None
    last_line: int | None = None
    line_numbers: list[int] | None = None
    # the input holding ``line`` (a path, "<stdin>") and the line's number within it
    file: str | None = None
    file_line: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Hundreds of thousands go from the processes that score to the one that writes
        # them, most of them normal: the fields by position (no names, no __dict__ to
        # rebuild), a normal one's first four alone when the rest are their defaults
        # (575,061 HDFS verdicts: 2.6x less time pickling and unpickling them).
        cls = type(self)
        if cls is not Verdict:  # a subclass's own fields: pickled as it would be
            return (_rebuild_verdict, (cls, self.__dict__))
        if _verdict_rest(self) == _VERDICT_DEFAULTS:
            return (cls, _verdict_head(self))
        return (cls, _verdict_fields(self))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "session": self.session,
            "anomalous": self.anomalous,
            "length": self.length,
            "score": self.score,
        }
        if not self.anomalous:
            return d
        for name in _DETAIL_FIELDS:
            d[name] = getattr(self, name)
        if self.deviation is not None:
            d["deviation"] = self.deviation
        if self.count is not None:
            d["count"] = self.count
            d["max_count"] = self.max_count
        if self.lines is not None:
            d["lines"] = self.lines
        if self.line is not None:
            for name in _PLACE_FIELDS:
                d[name] = getattr(self, name)
            if self.file is not None:
                d["file"], d["file_line"] = self.file, self.file_line
        if self.diagnosis is not None:
            d["diagnosis"] = self.diagnosis.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """The verdict of a ``to_dict`` (a line of ``detect --jsonl``): its diagnosis a
        ``Diagnosis`` again; keys that are no field of a verdict are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"not fields of a verdict: {', '.join(unknown)}")
        kw = dict(d)
        if isinstance(kw.get("diagnosis"), Mapping):
            kw["diagnosis"] = Diagnosis.from_dict(kw["diagnosis"])
        return cls(**kw)

    def place(self) -> str:
        """Where the flagged line is, for people: ``file:line`` (with its number across the
        inputs when that differs), or ``line N of the input`` without a file."""
        if self.file is None:
            return f"line {self.line} of the input"
        across = f" (line {self.line} of the input)" if self.file_line != self.line else ""
        return f"{self.file}:{self.file_line}{across}"

    def describe(self) -> str:
        """A short readable explanation."""
        if not self.anomalous:
            return f"{self.session}: normal ({self.length} keys)"
        # Entries from 1 for people (the JSON's positions count from 0).
        end = self.reason == "early_end"
        where = "at its end" if end else f"at entry {(self.position or 0) + 1}"
        out = [
            f"{self.session}: ANOMALY {where} ({self.length} keys): {REASONS.get(self.reason or '', self.reason)}"
        ]
        if self.line is not None:
            out.append(
                f"  {'its last line' if end else 'at'}: {self.place()}"
                + (f", {self.timestamp}" if self.timestamp else "")
                + f"; the session spans lines {self.first_line}-{self.last_line} of the input"
            )
        obs = self.observed_template or self.observed
        if self.reason == "unseen_key":
            out.append(f"  observed: {obs} (never seen in training)")
        elif self.reason in ("ranked_out", "unseen_transition", "count_exceeded"):
            out.append(f"  observed: {obs} (p={self.probability:.2g}, rank {self.rank})")
            if self.count is not None:
                most = self.max_count
                out.append(
                    f"  count: occurrence {self.count} of {self.observed} in this session; "
                    f"at most {most} time{'' if most == 1 else 's'} in any normal training session"
                )
        elif self.deviation is not None:
            out.append(f"  entry: {obs}")
            out.append("  " + _describe_deviation(self.deviation))
        if self.window:
            out.append(f"  after: {' '.join(self.window)}")
        if self.expected:
            # Those the model gave a chance (the first always): "(0.00)" tells nothing.
            likely = self.expected[:1] + [e for e in self.expected[1:] if e["probability"] >= 0.005]
            out.append(
                "  expected: "
                + "; ".join(f"{e['template'] or e['key']} ({e['probability']:.2f})" for e in likely)
            )
        if self.lines:
            out += context_lines(self.lines, self.position, self.line_numbers, end)
        if self.diagnosis is not None:
            out += self.diagnosis.describe(self.position)
        return "\n".join(out)


def _rebuild_verdict(cls: type[Verdict], state: dict[str, Any]) -> Verdict:
    out = cls.__new__(cls)
    out.__dict__.update(state)
    return out


_VERDICT_NAMES = tuple(f.name for f in fields(Verdict))
_verdict_fields = operator.attrgetter(*_VERDICT_NAMES)
_verdict_head = operator.attrgetter(*_VERDICT_NAMES[:4])  # the four without a default
_verdict_rest = operator.attrgetter(*_VERDICT_NAMES[4:])
_VERDICT_DEFAULTS = _verdict_rest(Verdict("", False, 0, 0.0))


def _twin(verdict: Verdict, session: str) -> Verdict:
    """``verdict`` for another session: its fields' objects shared (``verdicts(share=...)``)."""
    twin = object.__new__(type(verdict))
    twin.__dict__.update(verdict.__dict__)
    twin.session = session
    return twin


def context_lines(
    lines: Sequence[str],
    position: int | None,
    numbers: Sequence[int] | None = None,
    end: bool = False,
) -> list[str]:
    """Raw lines around entry ``position`` (as ``attach_lines`` cuts them) for people: the
    entry's own line marked ``>``, the others ``|``, each with its input line number when
    known. ``end``: an early end, which is no line of its own."""
    at = None if position is None or end else position - max(0, position - 3)
    out = []
    for k, line in enumerate(lines):
        mark = ">" if k == at else "|"
        num = f"{numbers[k]}: " if numbers is not None and k < len(numbers) else ""
        out.append(f"  {mark} {num}{line}")
    return out


def _describe_deviation(d: Mapping[str, Any]) -> str:
    if d["dimension"] == "elapsed":
        what = f"time since the previous entry ({d['after']})"
        unit, digits = " s", ".3g"
        obs = f"{d['observed']:.3g} s"
    else:
        name = d.get("name")
        what = f"parameter {d['parameter']}" + (f" ({name})" if name else "")
        unit, digits = "", ".6g"
        obs = d.get("text") or f"{d['observed']:.6g}"
    exp = f"{d['expected']:{digits}}{unit}"
    how = "robust statistics" if d["model"] == "robust" else "LSTM"
    if d.get("constant"):
        far = f"always {exp} in normal runs"
    else:
        far = f"expected about {exp}, {d['sigmas']:+.1f} sigma"
    span = d.get("range")
    if span is not None and not d.get("constant"):
        # A unit that flags only values beyond its training range (and a margin): that is
        # the bound, whatever the sigmas say.
        lo, hi = (f"{v:{digits}}" for v in span)
        side = "above" if d["observed"] > span[1] else "below"
        obs += (
            f", {side} the training range [{lo}, {hi}]{unit} and its margin "
            f"({d['limit']:{digits}}{unit})"
        )
    return f"{what}: {obs}; {far} ({how} model of {d['unit']})"


def _slot_name(template: str | None, slot: int) -> str | None:
    """The word before a template's ``slot``-th ``<*>`` (``len: <*>`` -> ``len``), if any."""
    if not template:
        return None
    parts = template.split("<*>")
    if slot >= len(parts) - 1:
        return None
    words = parts[slot].split()
    if not words:
        return None
    word = words[-1].strip(":=([{,")
    return word if word.replace("_", "").replace("-", "").isalpha() else None


_DETAIL_FIELDS = (
    "reason", "detector", "position", "observed", "observed_template", "probability", "rank",
    "window", "expected",
)  # fmt: skip
_PLACE_FIELDS = ("line", "timestamp", "first_line", "last_line", "line_numbers")


def attach_lines(verdicts: Sequence[Verdict], lines: Sequence[Sequence[str]]) -> None:
    """Each anomalous verdict's raw lines around its entry (``Verdict.lines``) and, when
    its diagnosis diverged elsewhere, the lines there: ``lines`` holds each session's raw
    lines, aligned with ``verdicts``. Verdicts are made from keys alone and get their
    lines here, so that a process that scores sessions needs no raw text."""
    if len(lines) != len(verdicts):
        raise ValueError(f"{len(lines)} sessions' lines for {len(verdicts)} verdicts")
    for i, v in enumerate(verdicts):
        if not v.anomalous or v.position is None:
            continue
        raw = lines[i]  # only these: a stream's chunk cuts a session's lines when asked
        p = v.position
        v.lines = list(raw[max(0, p - 3) : p + 2])
        if v.diagnosis is not None:
            attach_diagnosis_lines(v.diagnosis, p, raw)


def attach_places(
    verdicts: Sequence[Verdict],
    places: Any,
    files: Sequence[tuple[int, str]] | None = None,
) -> None:
    """Where each anomalous verdict is in the input (``Verdict.line``, ``timestamp``,
    ``first_line``, ``last_line``, ``line_numbers``; a diagnosis elsewhere gets its
    ``line`` and ``line_numbers`` too). ``places[i]``: the input line numbers and
    timestamps (seconds, None: none) of session ``i``'s entries; only the anomalous
    sessions are asked (``detect.detector.session_places`` gives them from the session
    table's columns). ``files``: where each input starts (``LineReader.files``), for
    ``file`` and ``file_line``."""
    from logwarden.io.sources import file_of

    if places is None:
        return
    for i, v in enumerate(verdicts):
        if not v.anomalous or v.position is None:
            continue
        got = places[i]
        if got is None:
            continue
        numbers, stamps = got
        if len(numbers) == 0:
            continue
        p = v.position
        at = min(p, len(numbers) - 1)  # an early end: the session's last line
        v.line = int(numbers[at])
        v.timestamp = _clock_text(stamps[at] if at < len(stamps) else None)
        v.first_line, v.last_line = int(numbers[0]), int(numbers[-1])
        where = file_of(files, v.line) if files else None
        if where is not None:
            v.file, v.file_line = where
        if v.lines is not None:
            v.line_numbers = [int(n) for n in numbers[max(0, p - 3) : p + 2]]
        d = v.diagnosis
        if d is not None and d.lines is not None and d.position < len(numbers):
            d.line = int(numbers[d.position])
            d.line_numbers = [int(n) for n in numbers[max(0, d.position - 3) : d.position + 2]]


def _clock_text(t: float | None) -> str | None:
    """A timestamp as the log's clock reads it (timestamps are parsed as UTC)."""
    if t is None or not math.isfinite(t):
        return None
    import datetime as dt

    try:
        when = dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat(timespec="milliseconds")


class DeepLog:
    """DeepLog: the log-key model, then the parameter-value models.

    ``top_g=None`` (the default) chooses a probability threshold automatically so that
    about ``target_fpr`` of normal sessions are flagged: every training session is scored
    by one of ``folds`` fold models that did not train on it (cross-fitting; each trained
    as the full model was), the tail of those scores is modelled, and the expected
    false-positive rate is kept with an interval (``threshold_``). ``top_g=9`` uses the
    paper's top-g rule (its false-positive rate is estimated the same way). In both modes
    a key that never followed its preceding keys in a normal session (END included: an
    early end) is anomalous (``rule_share``: the most of ``target_fpr`` that rule may cost,
    see ``KeyCalibration``). ``fold_check`` (probability mode): the fold models are kept,
    and a session the probability cut flags is flagged only when their averaged p-value
    agrees (see ``KeyModel.fold_statistics``). ``n_jobs`` > 1 trains the fold models in
    that many worker processes (spawned) beside the model itself.

    The parameter models (``param_models``, on by default) need the sessions' entries with
    their parameters and elapsed times: pass ``events`` (``Session`` objects aligned with
    ``sessions``, as ``pipeline.read_raw_sessions`` gives them) to ``fit``, ``predict``
    and ``verdicts``. Without ``events`` only the key model runs. An entry whose key the key
    model finds normal is checked by the parameter model of its key (and predecessor) at
    the ``confidence`` interval (the paper's 0.98, 0.99 or 0.999).

    ``workflows`` (on by default): ``fit`` also mines one workflow per task type from the
    normal sessions (``workflows_``, see ``logwarden.workflow``), and every anomalous
    verdict carries a ``diagnosis`` against it. Pass ``interleaved=True`` to ``fit`` when
    the sessions are windows of a log without identifiers.
    """

    def __init__(
        self,
        window: int = 10,
        top_g: int | None = None,
        layers: int = 2,
        hidden: int = 64,
        embedding: int = 32,
        epochs: int = 1000,
        batch_size: int = 512,
        learning_rate: float = 0.01,
        patience: int = 10,
        target_fpr: float = 0.005,
        folds: int = 5,
        rule_share: float = 0.6,
        fold_check: bool = True,
        n_jobs: int = 1,
        seed: int = 0,
        device: str = "auto",
        explain_top: int = 5,
        param_models: bool = True,
        confidence: float = 0.999,
        param_window: int = 5,
        param_hidden: int = 16,
        param_layers: int = 1,
        param_epochs: int = 40,
        param_max_steps: int = 150,
        param_batch_size: int = 256,
        param_learning_rate: float = 0.01,
        param_validation: float = 0.2,
        param_min_samples: int = 100,
        param_min_contextual: int = 1000,
        param_range_margin: float = 0.25,
        param_by_predecessor: bool = True,
        param_slower_only: bool = True,
        workflows: bool = True,
    ) -> None:
        self.window = window
        self.top_g = top_g
        self.layers = layers
        self.hidden = hidden
        self.embedding = embedding
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.target_fpr = target_fpr
        self.folds = folds
        self.rule_share = rule_share
        self.fold_check = fold_check
        self.n_jobs = n_jobs
        self.seed = seed
        self.device = device
        self.explain_top = explain_top
        self.param_models = param_models
        self.confidence = confidence
        self.param_window = param_window
        self.param_hidden = param_hidden
        self.param_layers = param_layers
        self.param_epochs = param_epochs
        self.param_max_steps = param_max_steps
        self.param_batch_size = param_batch_size
        self.param_learning_rate = param_learning_rate
        self.param_validation = param_validation
        self.param_min_samples = param_min_samples
        self.param_min_contextual = param_min_contextual
        self.param_range_margin = param_range_margin
        self.param_by_predecessor = param_by_predecessor
        self.param_slower_only = param_slower_only
        self.workflows = workflows

    # -- scikit-learn contract ---------------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        """The hyperparameters: the constructor's arguments, in order (as scikit-learn)."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters by name (``deep`` is accepted for scikit-learn compatibility)."""
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params: Any) -> DeepLog:
        """Change hyperparameters; an unknown name is a ConfigError. Returns self."""
        known = set(self.param_names())
        for name, value in params.items():
            if name not in known:
                raise ConfigError(f"{name} is not a DeepLog parameter", field=name)
            setattr(self, name, value)
        return self

    def clone(self) -> DeepLog:
        """A new, unfitted estimator with the same hyperparameters."""
        return type(self)(**self.get_params())

    def key_config(self) -> KeyModelConfig:
        """The key model's settings (validated: ConfigError names the bad parameter)."""
        p = self.get_params()
        for name, low in (("explain_top", 1), ("n_jobs", 0)):
            value = p[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
        return KeyModelConfig(**{f.name: p[f.name] for f in fields(KeyModelConfig)})

    def param_config(self) -> ParamModelConfig:
        """The parameter models' settings: ``param_<name>`` for each of ParamModelConfig's
        fields, ``confidence`` and ``seed`` shared (validated, naming the bad parameter)."""
        values = {
            f.name: getattr(self, f"param_{f.name}")
            for f in fields(ParamModelConfig)
            if f.name not in _SHARED_PARAM_SETTINGS
        }
        try:
            return ParamModelConfig(**values, confidence=self.confidence, seed=self.seed)
        except ConfigError as exc:
            name = exc.field if exc.field in _SHARED_PARAM_SETTINGS else f"param_{exc.field}"
            raise ConfigError(f"{name}{str(exc)[len(exc.field or '') :]}", field=name) from None

    def fit(
        self,
        sessions: Sequence[Sequence[str]],
        templates: Mapping[str, str] | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        events: Sequence[Session] | None = None,
        interleaved: bool = False,
        fold_progress: Callable[[int, int], None] | None = None,
        unfinished: Collection[int] = (),
    ) -> DeepLog:
        """Learn normal execution paths from normal sessions (sequences of key labels), and
        with ``events`` (their entries, see the class docstring) the parameter models;
        ``interleaved``: the sessions are windows of a log without identifiers (for the
        workflows). ``progress(epoch, epochs, loss)`` follows the key model's training,
        ``fold_progress(done, folds)`` its calibration. ``unfinished``: indices of
        sessions the input cut (its end, before they ended, or its start, after they
        began): their entries train the parameter models, but the key model and the
        workflows do not learn them, as they would learn an end where runs go on, or a
        start where runs never start."""
        import time

        param_config = self.param_config()  # validates before any training
        if sessions is not None and not isinstance(sessions, str | bytes):
            sessions = list(sessions)  # an iterable of sessions is read once
        _check_events(sessions, events)
        param_events = events
        if unfinished:
            gone = set(unfinished)
            kept = [i for i in range(len(sessions)) if i not in gone]
            if not kept:
                raise ValueError("every training session is unfinished: none to learn from")
            sessions = [sessions[i] for i in kept]
            events = None if events is None else _subset(events, kept)
        started = time.perf_counter()
        sessions = _no_reserved([[str(k) for k in s] for s in sessions])
        self.model_ = fit_key_model(
            sessions, self.key_config(), progress, fold_progress, n_jobs=self.n_jobs
        )
        self.model_.train_info["seconds"] = round(time.perf_counter() - started, 3)
        self.templates_ = {str(k): v for k, v in (templates or {}).items()}
        self.params_: ParamModels | None = None
        if self.param_models and param_events is not None:
            started = time.perf_counter()
            params = ParamModels(param_config)
            params.fit(params.build(param_events))
            self.params_ = params
            self.model_.train_info["params"] = {
                "seconds": round(time.perf_counter() - started, 3),
                **params.summary(),
            }
        self.workflows_: Workflows | None = None
        if self.workflows:
            started = time.perf_counter()
            self.workflows_ = mine_workflows(sessions, events=events, interleaved=interleaved)
            self.model_.train_info["workflows"] = {
                "seconds": round(time.perf_counter() - started, 3),
                "count": len(self.workflows_),
                "interleaved": interleaved,
            }
            if interleaved and events is not None:
                # Executions are linked by shared identifiers only in a log several
                # horizons long; a shorter one gives statistical fragments (train says so).
                stamps = [
                    t
                    for s in events
                    for e in s.events
                    if (t := e.record.timestamp) is not None and math.isfinite(t)
                ]
                span = max(stamps) - min(stamps) if stamps else 0.0
                self.model_.train_info["workflows"]["log_span_seconds"] = round(span, 3)
                self.model_.train_info["workflows"]["linking_needs_seconds"] = (
                    MIN_SPANS * self.workflows_.config.horizon
                )
        # What online updates and drift tracking need later, kept before it is let go.
        self.memory_: Memory | None = Memory.from_training(self.model_)
        self.drift_baseline_ = self._training_baseline(sessions)
        self.model_.training_rows = self.model_.recheck_sessions = None
        self.model_.cross_fitted = self.model_.own_assessment = None
        self.lineage_ = Lineage.trained(_lineage_summary(self.model_.train_info))
        self.source_: dict[str, str] | None = None
        return self

    def _training_baseline(self, sessions: Sequence[Sequence[str]]) -> DriftBaseline | None:
        """The scores later normal sessions are expected to get, for drift tracking.

        A later normal session either repeats a key sequence seen in training, and the
        model scores it as it scores that training session (having trained on it), or it
        is new, and a model that did not train on it is the honest proxy. So the baseline
        takes the model's own score for training sessions whose sequence recurs in training
        and the cross-fitted score for those seen once: the share of once-seen sequences
        estimates the share of new ones (Good-Turing). Cross-fitted scores alone sit
        systematically above what the model gives the recurring sequences (a score shift of
        0.2 on every bucket of a normal simulated log); own scores alone, below what it
        gives new ones."""
        model = self._fitted()
        cross, own = model.cross_fitted, model.own_assessment
        encoded = model.recheck_sessions
        if cross is None or own is None or encoded is None or len(encoded) != len(cross[0]):
            return self._baseline(model.encode_many(sessions[:2000]))
        seen = Counter(s.tobytes() for s in encoded)
        recurs = np.fromiter((seen[s.tobytes()] > 1 for s in encoded), bool, len(encoded))
        scores = np.where(recurs, self._combined(own, None), cross[0])
        flagged = np.where(recurs, own.first >= 0, cross[1])
        return DriftBaseline.from_scores(scores, int(flagged.sum()))

    def _baseline(self, encoded: Sequence[np.ndarray]) -> DriftBaseline | None:
        """Score distribution and flagged share of normal sessions, for drift tracking."""
        if not encoded:
            return None
        a = self._fitted().assess(list(encoded))
        return DriftBaseline.from_scores(self._combined(a, None), int((a.first >= 0).sum()))

    def partial_fit(
        self,
        sessions: Sequence[Sequence[str]],
        templates: Mapping[str, str] | None = None,
        events: Sequence[Session] | None = None,
        *,
        confirmed: Sequence[Sequence[str]] = (),
        confirmed_events: Sequence[Session] | None = None,
        feedback: Sequence[Feedback] = (),
        policy: UpdatePolicy | None = None,
    ) -> DeepLog:
        """Learn from ``sessions`` an operator marked normal, without forgetting.

        Keys never seen join the vocabulary (the network grows, old weights kept; a new
        key that rewords a known one the sessions no longer log starts as its copy); the
        key network is fine-tuned from its weights on the sessions' windows mixed with the
        replay sample kept from training, in rounds while one of them is still flagged;
        parameter models of the keys they touch update (``events``: their entries); the
        threshold is checked on the calibration sessions kept from training and chosen
        again only when it no longer meets its target (``online.update``). ``confirmed``
        sessions (true anomalies, with
        ``confirmed_events``) must still be flagged afterwards: while one would not be,
        the feedback's weight is halved and the update tried again, and in the end it is
        refused (``UpdateRefusedError``; the estimator is left as it was). ``feedback``:
        the operator's records, kept in the lineage. ``update_info_`` has the figures.
        """
        import time

        started = time.perf_counter()
        model = self._fitted()
        memory = getattr(self, "memory_", None)
        if memory is None:
            raise StateError(
                "this model keeps no replay sample for online updates (saved by an older "
                "logwarden): train it again to update it from feedback"
            )
        policy = policy or UpdatePolicy(seed=self.seed)
        _check_sessions(sessions)  # before str(): a str session was cut into characters
        _check_sessions(confirmed)
        sessions = _no_reserved([[str(k) for k in s] for s in sessions])
        confirmed = _no_reserved([[str(k) for k in s] for s in confirmed])
        _check_events(sessions, events)
        _check_events(confirmed, confirmed_events)
        params = getattr(self, "params_", None)
        use_events = params is not None and events is not None
        conf_events = confirmed_events if params is not None else None
        conf_before = self.predict(confirmed, conf_events)
        norm_before = self.predict(sessions, events if use_events else None)
        new_keys = [k for k in dict.fromkeys(chain.from_iterable(sessions)) if k not in model.index]
        merged = {**self.templates_, **{str(k): v for k, v in (templates or {}).items()}}
        known = {k: merged[k] for k in model.keys if merged.get(k)}
        twins = reworded(
            {k: merged[k] for k in new_keys if merged.get(k)},
            known,
            sessions,
            policy.reworded_similarity,
        )
        grown = model.grow(new_keys, seed=policy.seed, like=twins)
        encoded = grown.encode_many(sessions)
        mem = memory.learn(encoded, grown.config.window)
        pinfo = None
        if use_events:
            assert params is not None and events is not None
            t_params = time.perf_counter()
            ids = {k: template_id(k) for k in twins} | {v: template_id(v) for v in twins.values()}
            param_twins = {
                ids[k]: ids[v]
                for k, v in twins.items()
                if ids[k] is not None and ids[v] is not None
            }
            params, pinfo = update_param_models(params, events, param_twins)
            pinfo["seconds"] = round(time.perf_counter() - t_params, 3)
        share = policy.feedback_share
        tries: list[dict[str, Any]] = []
        for _ in range(policy.attempts):
            t_tune = time.perf_counter()
            km, rounds = _tune(grown, mem, share, policy) if sessions else (grown, [])
            cand = self._with(km, params, merged)
            conf_after = cand.predict(confirmed, conf_events)
            silenced = np.flatnonzero(conf_before & ~conf_after)
            tries.append({"feedback_share": round(share, 4), "rounds": rounds,
                          "seconds": round(time.perf_counter() - t_tune, 3),
                          "silenced": len(silenced)})  # fmt: skip
            if len(silenced) == 0:
                break
            share /= 2
        else:
            raise UpdateRefusedError(
                self._refusal(sessions, confirmed, conf_events, silenced, feedback, policy)
            )
        norm_after = cand.predict(sessions, events if use_events else None)
        before_th, after_th = model.threshold, km.threshold
        self.update_info_ = {
            "sessions_normal": len(sessions),
            "sessions_confirmed": len(confirmed),
            "new_keys": [
                {"key": k, "template": merged.get(k), "rewords": twins.get(k)} for k in new_keys
            ],
            "vocabulary": [len(model.keys), len(km.keys)],
            "feedback_windows": int(sum(len(s) + 1 for s in sessions)),
            "replay_rows": len(mem.replay_rows),
            "attempts": tries,
            "threshold": [_threshold_value(before_th), _threshold_value(after_th)],
            "calibration_fpr": [
                float(_flagged(model, mem.calibration).mean()) if mem.calibration else None,
                float(_flagged(km, mem.calibration).mean()) if mem.calibration else None,
            ],
            "calibration_sessions": len(mem.calibration),
            "normal_flagged": [int(norm_before.sum()), int(norm_after.sum())],
            "confirmed_flagged": [int(conf_before.sum()), int(conf_after.sum())],
            # Confirmed sessions the model did not flag (indices into ``confirmed``): a missed
            # anomaly cannot be taught to a model of normal behaviour; nothing changed them.
            "confirmed_unflagged": np.flatnonzero(~conf_before).tolist(),
            "params": pinfo,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.model_ = km
        self.params_ = params
        self.templates_ = merged
        self.memory_ = mem
        workflows = getattr(self, "workflows_", None)
        if workflows is not None:
            # Diagnoses follow the update: a step learnt as normal is no longer "a step
            # this workflow never has".
            self.workflows_ = workflows.learn(sessions)
        # The drift baseline stays: the cross-fitted scores of normal sessions the update
        # keeps normal (the threshold re-check above holds the model to them).
        self.lineage_ = self.lineage_.child(feedback, self.update_info_, self.source_)
        self.source_ = None  # no longer the model that was loaded
        return self

    def _with(
        self, model: KeyModel, params: ParamModels | None, templates: dict[str, str]
    ) -> DeepLog:
        """A copy of this estimator with other fitted parts (a candidate update)."""
        other = self.clone()
        other.model_ = model
        other.params_ = params
        other.templates_ = templates
        return other

    def _refusal(
        self,
        sessions: list[list[str]],
        confirmed: list[list[str]],
        conf_events: Sequence[Session] | None,
        silenced: np.ndarray,
        feedback: Sequence[Feedback],
        policy: UpdatePolicy,
    ) -> str:
        """One line: which confirmed anomaly the update would silence, and why."""
        conf_ids = [f.session for f in feedback if f.label == "confirmed"]
        norm_ids = [f.session for f in feedback if f.label == "normal"]
        i = int(silenced[0])
        ids = (
            conf_ids
            if len(conf_ids) == len(confirmed)
            else [f"#{j}" for j in range(len(confirmed))]
        )
        v = self.verdicts(
            [confirmed[i]], [ids[i]], events=None if conf_events is None else [conf_events[i]]
        )[0]
        what = f"{v.reason} at entry {(v.position or 0) + 1}" + (
            f", {v.observed}" if v.observed else ""
        )
        names = (
            norm_ids if len(norm_ids) == len(sessions) else [f"#{j}" for j in range(len(sessions))]
        )
        teach = [names[j] for j, s in enumerate(sessions) if v.observed in s][:5]
        more = f" (and {len(silenced) - 1} more)" if len(silenced) > 1 else ""
        return (
            f"update refused: confirmed anomaly {ids[i]}{more} would no longer be flagged "
            f"(it is flagged for {what}), even with the feedback's weight halved "
            f"{policy.attempts - 1} times"
            + (f"; sessions marked normal that show the same: {', '.join(teach)}" if teach else "")
            + "; nothing was changed"
        )

    @property
    def threshold_(self) -> Threshold:
        return self._fitted().threshold

    @property
    def train_info_(self) -> dict[str, Any]:
        return self._fitted().train_info

    @property
    def keys_(self) -> list[str]:
        return list(self._fitted().keys)

    def _fitted(self) -> KeyModel:
        model = getattr(self, "model_", None)
        if model is None:
            raise NotFittedError("this DeepLog is not fitted yet: call fit() or load()")
        return model

    def _assess(self, sessions: Sequence[Sequence[str]], keep_probs: bool = False) -> Assessment:
        _check_sessions(sessions)
        model = self._fitted()
        return model.assess(model.encode_many(sessions), keep_probs=keep_probs)

    def decision_function(
        self, sessions: Sequence[Sequence[str]], events: Sequence[Session] | None = None
    ) -> np.ndarray:
        """Anomaly score per session on one scale for both detectors, higher is more
        anomalous, and a session is anomalous exactly when its score reaches
        ``-log10(threshold_.level)``.

        With the probability threshold: -log10 of the session's tail probability among
        normal sessions under the key model (cross-fitted, see ``Threshold``; a session a
        rule flags: the rate of that rule among the training sessions left out, +1, see
        ``KeyCalibration.rule_rates``), and for the parameter models (with ``events``) the
        tail probability of its most deviating entry put on the same scale by its ratio to
        the interval's own level: a parameter entry at its bound scores like a key-model
        session at its bound, one ten times less probable scores one more. A rule's rate
        is at least 1/(n + 1) of the n training sessions; one the data cannot place past
        the threshold scores at it. Sorting by score mixes both detectors' findings by how
        far past their thresholds they lie. With top-g: the worst rank of one of its keys, a
        parameter anomaly ``g + 1`` plus its decades past its bound.
        """
        a = self._assess(sessions)
        _, param_log10_p = self._param_evidence(sessions, events, a)
        return self._combined(a, param_log10_p)

    def _combined(self, a: Assessment, param_log10_p: np.ndarray | None) -> np.ndarray:
        starts = a.scores.offsets[:-1]
        worst = (
            np.maximum.reduceat(a.scores.rank, starts).astype(np.float64)
            if len(starts)
            else np.zeros(0)
        )
        ruled = a.ruled
        return self.session_scores(
            a.statistic, ruled, a.first >= 0, worst, param_log10_p, rule_p=a.rule_p
        )

    def session_scores(
        self,
        statistic: np.ndarray,
        ruled: np.ndarray,
        flagged: np.ndarray,
        worst_rank: np.ndarray,
        param_log10_p: np.ndarray | None = None,
        rule_p: np.ndarray | None = None,
    ) -> np.ndarray:
        """The score of sessions (see ``decision_function``) from what the key model found
        (``KeyModel.assess``: the statistic, whether a rule fired, whether it flags the
        session, the worst rank, and the tail probability of the rules that fired,
        ``Assessment.rule_p``; None: the rules' joint rate) and the lowest log10 tail
        probability of an entry the parameter models checked (None: no parameter
        models). Batch and streaming detection score with this one definition."""
        th = self._fitted().threshold
        flagged = np.asarray(flagged, dtype=bool)
        if th.mode == "top_g":
            assert th.g is not None
            worst = np.asarray(worst_rank, dtype=np.float64)
            # A session the rule flags scores past g, however its keys rank.
            keys = np.where(flagged, np.maximum(worst, th.g + 1), worst)
        else:
            p = self._fitted().p_values(statistic, np.asarray(ruled, dtype=bool), flagged, rule_p)
            keys = 0.0 - np.log10(np.maximum(p, 1e-300))
        params = getattr(self, "params_", None)
        if param_log10_p is None or params is None:
            return keys
        # Decades past the parameter interval's own per-entry level (> 0: anomalous).
        past = math.log10(params.config.tail) - np.asarray(param_log10_p, dtype=np.float64)
        # Within its interval (past <= 0) a parameter check adds nothing: a normal session
        # scores as the key model scores it, the scale of the drift baseline.
        if th.mode == "top_g":
            assert th.g is not None
            by_params = np.where(past > 0, th.g + 1 + past, -np.inf)
        else:
            assert th.level is not None
            by_params = np.where(past > 0, -math.log10(th.level) + past, -np.inf)
        return np.maximum(keys, by_params)

    def predict(
        self, sessions: Sequence[Sequence[str]], events: Sequence[Session] | None = None
    ) -> np.ndarray:
        """True for each anomalous session (by either detector when ``events`` are given)."""
        a = self._assess(sessions)
        found = a.first >= 0
        first_params, _ = self._param_evidence(sessions, events, a, explain=False)
        for i in first_params:
            found[i] = True
        return found

    def entry_scores(
        self, sessions: Sequence[Sequence[str]], events: Sequence[Session] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per entry of the sessions, flattened in order (session ends left out): whether a
        detector flags it, and its score: the key model's (-log10 of the key's probability,
        40 for an unseen key; its rank with top-g), at least the cut's (-log10 tau; g + 1)
        where an entry is flagged and below it where not, so that sorting by score puts
        every flagged entry first (a rule's or the parameter models' flag on a likely key,
        and a cut the fold check turned down, kept their own scores: in window mode most
        flagged lines scored below unflagged ones). With ``events``, an entry the parameter
        models flag is flagged too. For per-line verdicts of logs without session ids
        (window sessions)."""
        _check_events(sessions, events)
        a = self._assess(sessions)
        scores, flags = a.scores, a.flags
        th = self._fitted().threshold
        if th.mode == "top_g":
            value = scores.rank.astype(np.float64)
            cut = float(th.g or 0) + 1.0
        else:
            value = -np.log10(np.maximum(scores.prob.astype(np.float64), 1e-40))
            cut = -math.log10(float(th.tau or 1.0))
        flags = flags.copy()
        params = getattr(self, "params_", None)
        if params is not None and events is not None:
            for sc in params.score(params.series(events)).values():
                hits = np.flatnonzero(sc.anomalous)
                if len(hits):
                    refs = sc.refs[hits]
                    flags[scores.offsets[refs[:, 0]] + refs[:, 1]] = True
        value = np.where(flags, np.maximum(value, cut), np.minimum(value, np.nextafter(cut, 0)))
        keep = np.ones(len(flags), dtype=bool)
        keep[scores.offsets[1:] - 1] = False  # each session's end row
        return flags[keep], value[keep]

    def _param_evidence(
        self,
        sessions: Sequence[Sequence[str]],
        events: Sequence[Session] | None,
        a: Assessment,
        explain: bool = True,
        scored: Mapping[Any, ParamScores] | None = None,
        history: Mapping[Any, np.ndarray] | None = None,
    ) -> tuple[dict[int, tuple[int, dict[str, Any] | None]], np.ndarray | None]:
        """The parameter models' findings among entries whose key the key model found
        normal: per session index, the first flagged entry (position, and its deviation
        when ``explain``), and per session the lowest log10 tail probability of an entry
        (0 where no entry was checked; None without parameter models or ``events``).
        ``scored``: the units' scores when already computed (see ``verdicts``);
        ``history``: otherwise, the series' history before these sessions."""
        _check_events(sessions, events)
        params = getattr(self, "params_", None)
        if params is None or events is None:
            return {}, None
        if scored is None:
            scored = params.score(params.series(events), history)
        offsets = a.scores.offsets
        lowest = np.zeros(len(sessions))
        first: dict[int, tuple[int, Any, int]] = {}  # session -> (entry, scores, row)
        for sc in scored.values():
            if len(sc.refs) == 0:
                continue
            normal_key = ~a.flags[offsets[sc.refs[:, 0]] + sc.refs[:, 1]]
            if sc.log10_p is not None:
                np.minimum.at(lowest, sc.refs[normal_key, 0], sc.log10_p[normal_key])
            hits = np.flatnonzero(sc.anomalous & normal_key)
            for j, (si, ei) in zip(hits.tolist(), sc.refs[hits].tolist(), strict=True):
                if si not in first or ei < first[si][0]:
                    first[si] = (ei, sc, j)
        # Explanations only for the entry each session reports (a Session is built for it).
        found = {
            si: (ei, self.deviation(sc, j, sessions[si], events[si], ei) if explain else None)
            for si, (ei, sc, j) in first.items()
        }
        return found, lowest

    def counter_parameters(self) -> list[str]:
        """The parameters the parameter models learnt to be counters (identifiers that
        grow with the log, not modelled), as ``E18 parameter 0 (task)``."""
        params = getattr(self, "params_", None)
        out = []
        for key, positions in sorted((params.counters if params is not None else {}).items()):
            label = f"E{key}"
            for pos in positions:
                name = _slot_name(self.templates_.get(label), pos)
                out.append(f"{label} parameter {pos}" + (f" ({name})" if name else ""))
        return out

    def deviation(
        self, sc: Any, j: int, keys: Sequence[str], session: Session, ei: int
    ) -> dict[str, Any]:
        """The explanation of a parameter-model hit: row ``j`` of the unit scores ``sc``
        (``ParamScores``), entry ``ei`` of a session with log keys ``keys`` and entries
        ``session`` (the streaming detector builds the same explanation per entry)."""
        dim = int(sc.dim[j])
        key = str(keys[ei])
        prev = "<start>" if ei == 0 else str(keys[ei - 1])
        unit = f"{key} after {prev}" if sc.prev is not None else f"{key} after rarer keys"
        expected = float(sc.expected[j])
        if dim == 0:  # a regression may predict a gap below 0 s; no gap is
            expected = max(expected, 0.0)
        d: dict[str, Any] = {
            "dimension": "elapsed" if dim == 0 else "parameter",
            "parameter": None,
            "observed": float(sc.observed[j]),
            "expected": round(expected, 6),
            "sigmas": round(float(sc.sigmas[j]), 2),
            "error": round(float(sc.error[j]), 4),
            "threshold": round(float(sc.threshold), 4),
            "model": sc.model,
            "unit": unit,
            "after": prev,
            "constant": bool(sc.constant[j]) if sc.constant is not None else False,
        }
        params = getattr(self, "params_", None)
        beyond = (
            None
            if params is None
            else params.beyond_range((sc.key, sc.prev), dim, float(sc.observed[j]))
        )
        if beyond is not None:  # a unit that flags only values beyond its training range
            d.update(beyond)
        if dim > 0:
            assert params is not None
            pos = params.models[(sc.key, sc.prev)].positions[dim - 1]
            d["parameter"] = pos
            d["name"] = _slot_name(self.templates_.get(key), pos)
            event_params = session.events[ei].params
            if pos < len(event_params):
                d["text"] = event_params[pos].value
        return d

    def verdicts(
        self,
        sessions: Sequence[Sequence[str]],
        ids: Sequence[str] | None = None,
        lines: Sequence[Sequence[str]] | None = None,
        events: Sequence[Session] | None = None,
        param_scores: Mapping[Any, ParamScores] | None = None,
        diagnose: bool = True,
        param_history: Mapping[Any, np.ndarray] | None = None,
        share: bool = False,
    ) -> list[Verdict]:
        """One explained verdict per session. ``lines``: the raw lines of each session;
        ``events``: their entries, for the parameter models. The first anomalous entry
        of a session, by either detector, is the one explained; ``diagnose``: with its
        workflow diagnosis (a search per anomaly, which counting verdicts does not need).

        ``share``: for a reader that only reads the verdicts (the CLI's writers), sessions
        with the same keys and score and no parameter finding get verdicts that share
        their ``window``, ``expected`` and ``diagnosis`` objects (key sequences repeat: the
        DeepLog split has 4,123 distinct among 16,838 anomalous sessions); each is still a
        verdict of its own. Only without ``lines``, which are attached to each verdict's
        diagnosis after.

        ``param_scores``: the parameter models' scores of these sessions' entries, per
        unit, when computed elsewhere (``ParamModels.score`` of each unit's whole series,
        entries referred to by this batch's session indices); by default they are scored
        here from ``events``. A unit's series runs across sessions, so a process that holds
        only some of the sessions gets them from where each whole series was scored
        (``logwarden.engine.ray``). ``param_history``: the series' history before these
        sessions (see ``ParamModels.tails``), when a log is scored a batch of sessions at a
        time in order."""
        model = self._fitted()
        _check_sessions(sessions)
        for name, given in (("ids", ids), ("lines", lines)):
            if given is not None and len(given) != len(sessions):
                raise ValueError(
                    f"{name} has {len(given)} entries for {len(sessions)} sessions; "
                    "they must be aligned"
                )
        a = self._assess(sessions, keep_probs=True)
        scores, first = a.scores, a.first
        by_params, param_log10_p = self._param_evidence(
            sessions, events, a, scored=param_scores, history=param_history
        )
        session_scores = self._combined(a, param_log10_p)
        ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(sessions))]
        h = model.config.window
        out: list[Verdict] = []
        diagnosed: dict[tuple[Any, ...], Diagnosis | None] = {}
        anomalous = np.flatnonzero(first >= 0)
        # The expected keys at each anomaly, from the probabilities the scoring computed.
        pos = scores.offsets[anomalous] + first[anomalous]
        assert scores.probs is not None
        expected_at = model.expected(scores.probs[scores.window_rows[pos]], self.explain_top)
        row_of = {int(s): j for j, s in enumerate(anomalous)}
        templates = self.templates_
        sharing = share and lines is None
        twins: dict[tuple[Any, ...], Verdict] = {}
        for i, (sid, sess) in enumerate(zip(ids, sessions, strict=True)):
            score = float(session_scores[i])
            j = row_of.get(i)
            param_hit = by_params.get(i)
            # (the keys and score tell a verdict without a parameter finding)
            twin_key = (tuple(sess), score) if sharing and param_hit is None else None
            if twin_key is not None:
                twin = twins.get(twin_key)
                if twin is not None:
                    out.append(_twin(twin, sid))
                    continue
            if param_hit is not None and (j is None or param_hit[0] < int(first[i])):
                p, deviation = param_hit
                assert deviation is not None
                observed = str(sess[p])
                v = Verdict(
                    sid, True, len(sess), score,
                    "performance" if deviation["dimension"] == "elapsed" else "parameter",
                    "params", p, observed, templates.get(observed),
                    window=[str(k) for k in sess[max(0, p - h) : p]], deviation=deviation,
                )  # fmt: skip
                if diagnose:
                    v.diagnosis = self._diagnose(sess, p, v.reason)
                out.append(v)
                continue
            if j is None:
                out.append(Verdict(sid, False, len(sess), score))
                if twin_key is not None:
                    twins[twin_key] = out[-1]
                continue
            p = int(first[i])
            flat = int(scores.offsets[i]) + p
            target = int(scores.target[flat])
            observed = "<end>" if target == END else str(sess[p])
            if target == UNK:
                reason = "unseen_key"
            elif target == END:
                reason = "early_end"
            else:
                reason = key_reason(
                    bool(a.new_transition[flat]),
                    a.over_count is not None and bool(a.over_count[flat]),
                )
            window = [str(k) for k in sess[max(0, p - h) : p]]
            expected = [
                {"key": k, "template": templates.get(k), "probability": round(prob, 4)}
                for k, prob in expected_at[j]
            ]
            v = Verdict(
                sid,
                True,
                len(sess),
                score,
                reason,
                "keys",
                p,
                observed,
                templates.get(observed),
                round(float(scores.prob[flat]), 6),
                int(scores.rank[flat]) if target != UNK else None,
                window,
                expected,
            )
            if reason == "count_exceeded":
                v.count, v.max_count = self.count_detail(sess, p)
            if diagnose:
                # A diagnosis depends on the keys alone (its raw lines come after), and
                # anomalous sessions repeat (the DeepLog split: 4,123 distinct of 16,838).
                memo = (tuple(sess), p, reason)
                if memo not in diagnosed:
                    diagnosed[memo] = self._diagnose(sess, p, reason)
                found = diagnosed[memo]
                # Shared as it is among twins; a verdict of its own otherwise.
                v.diagnosis = found.copy() if found is not None and not sharing else found
            out.append(v)
            if twin_key is not None:
                twins[twin_key] = v
        if lines is not None:
            attach_lines(out, lines)
        return out

    def count_detail(self, keys: Sequence[str], position: int) -> tuple[int, int | None]:
        """A count_exceeded entry's numbers: how many times its key occurs in ``keys`` up
        to ``position`` (included), and the most any normal training session held it."""
        key = str(keys[position])
        seen = sum(1 for k in keys[: position + 1] if str(k) == key)
        km = self._fitted()
        return seen, km.count_limit(km.index.get(key, UNK))

    def _diagnose(
        self,
        keys: Sequence[str],
        position: int,
        reason: str | None,
    ) -> Diagnosis | None:
        workflows = getattr(self, "workflows_", None)
        if workflows is None:
            return None
        return diagnose(workflows, keys, position, reason or "", self.templates_)

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A JSON-ready description and the weights (``keys/...``, ``params/...``).

        Hyperparameters are stored once, under ``params``; the parts' own copies of their
        settings are rebuilt from them by ``from_state``.
        """
        model = self._fitted()
        kmeta, karrays = model.to_state()
        vocabulary = [
            {"index": i + FIRST_KEY, "key": k, "template": self.templates_.get(k)}
            for i, k in enumerate(kmeta["keys"])
        ]
        params = getattr(self, "params_", None)
        meta: dict[str, Any] = {
            "logwarden_version": __version__,
            "detectors": ["keys"] if params is None else ["keys", "params"],
            "params": self.get_params(),
            "vocabulary": vocabulary,
            "threshold": kmeta["threshold"],
            "calibration": kmeta["calibration"],
            "train_info": kmeta["train_info"],
        }
        arrays = {f"keys/{k}": v for k, v in karrays.items()}
        if params is not None:
            pmeta, parrays = params.to_state()
            meta["param_models"] = {k: v for k, v in pmeta.items() if k != "config"}
            arrays.update({f"params/{k}": v for k, v in parrays.items()})
        workflows = getattr(self, "workflows_", None)
        if workflows is not None:
            meta["workflows"] = workflows.to_state()[0]
        memory = getattr(self, "memory_", None)
        baseline = getattr(self, "drift_baseline_", None)
        online: dict[str, Any] = {
            "drift_baseline": baseline.to_state()[0] if baseline is not None else None
        }
        if memory is not None:
            mmeta, marrays = memory.to_state()
            online["memory"] = mmeta
            arrays.update({f"online/{k}": v for k, v in marrays.items()})
        meta["online"] = online
        meta["lineage"] = getattr(self, "lineage_", Lineage.trained()).to_state()[0]
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> DeepLog:
        """The estimator ``to_state`` described; BundleError when it is not a valid one."""
        try:
            est = cls(**meta["params"])
            vocab = sorted(meta["vocabulary"], key=lambda v: v["index"])
            kmeta = {
                "config": asdict(est.key_config()),
                "keys": [str(v["key"]) for v in vocab],
                "threshold": meta["threshold"],
                "calibration": meta.get("calibration"),
                "train_info": meta.get("train_info", {}),
            }
            est.model_ = KeyModel.from_state(kmeta, _part(arrays, "keys"))
            est.templates_ = {
                str(v["key"]): v["template"] for v in vocab if v.get("template") is not None
            }
            est.params_ = None
            param_arrays = _part(arrays, "params")
            if "param_models" in meta:
                pmeta = {**meta["param_models"], "config": asdict(est.param_config())}
                est.params_ = ParamModels.from_state(pmeta, param_arrays)
            elif param_arrays:
                raise ValueError("parameter model weights without their description")
            est.workflows_ = None
            if "workflows" in meta:
                est.workflows_ = Workflows.from_state(meta["workflows"])
            online = meta.get("online") or {}
            online_arrays = _part(arrays, "online")
            est.memory_ = None
            if "memory" in online:
                est.memory_ = Memory.from_state(online["memory"], online_arrays)
                if est.memory_.window != est.window:
                    raise ValueError("replay rows do not fit the model's window")
            elif online_arrays:
                raise ValueError("online update arrays without their description")
            baseline = online.get("drift_baseline")
            est.drift_baseline_ = DriftBaseline.from_state(baseline) if baseline else None
            est.lineage_ = Lineage.from_state(meta.get("lineage"))
            est.source_ = None
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle content is not a valid DeepLog model: {exc}") from None
        return est

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write a model bundle directory of this estimator alone (no parser, no input
        settings: a ``Detector`` saves those too); ``extra`` adds manifest entries."""
        meta, arrays = self.to_state()
        save_bundle(path, {**meta, **(extra or {})}, split_arrays(arrays))

    @classmethod
    def load(cls, path: str | Path) -> DeepLog:
        manifest, weights = load_bundle(path)
        est = cls.from_state(manifest, join_arrays(weights))
        est.source_ = bundle_source(path, manifest)
        return est


def _tune(
    grown: KeyModel, memory: Memory, share: float, policy: UpdatePolicy
) -> tuple[KeyModel, list[dict[str, Any]]]:
    """The key model fine-tuned on the memory, its threshold re-checked, in rounds while a
    session marked normal (now or before) is still flagged, each round giving the new
    feedback rows more weight (the operator said they are normal: a window where the old
    successor is very frequent needs more than ``share`` for a new one to pass); the
    model and each round's figures. The transitions of every session marked normal join
    the rule's known ones, their key counts raise the count rule's and their ends join the
    early-end rule's (the operator says they are normal)."""
    weights = grown.weights
    rounds: list[dict[str, Any]] = []
    km = grown
    known = grown.learn_transitions(memory.feedback_sessions)
    calibration = grown.learn_rules(memory.feedback_sessions)
    for r in range(policy.rounds):
        round_share = 1.0 - (1.0 - share) * 0.5**r
        weights, info = fine_tune(grown, memory, round_share, policy, init=weights)
        km = KeyModel(
            grown.config, grown.keys, weights, grown.threshold, dict(grown.train_info),
            calibration, known, fold_weights=grown.fold_weights,
        )  # fmt: skip
        km.threshold = recheck_threshold(km, memory.calibration)
        still = int(_flagged(km, memory.feedback_sessions).sum())
        rounds.append({"share": round(round_share, 4), "steps": info["steps"],
                       "loss": round(float(info["loss"]), 5), "still_flagged": still})  # fmt: skip
        if still == 0:
            break
    return km, rounds


def _flagged(model: KeyModel, encoded: Sequence[np.ndarray]) -> np.ndarray:
    """Which encoded sessions the key model flags."""
    if not encoded:
        return np.zeros(0, dtype=bool)
    return model.assess(list(encoded)).first >= 0


def bundle_source(path: str | Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Where a model was loaded from: the bundle's path and its manifest checksum (a
    child version names its parent by these; rolling back is loading it)."""
    return {"path": str(Path(path).resolve()), "manifest_sha256": str(manifest["manifest_sha256"])}


def _threshold_value(th: Threshold) -> float | int | None:
    return th.g if th.mode == "top_g" else th.tau


def _lineage_summary(info: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("sessions", "epochs", "seconds")
    return {k: info[k] for k in keep if k in info}


_SHARED_PARAM_SETTINGS = ("confidence", "seed")  # DeepLog's own, used by both detectors


def _part(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``prefix/``, without it."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _check_sessions(sessions: Any) -> None:
    """Sessions are sequences of keys: a str (or a list of lines) was read one character
    at a time, into a vocabulary of characters and no error."""
    if sessions is None or isinstance(sessions, str | bytes) or not hasattr(sessions, "__len__"):
        raise TypeError(
            "sessions must be a list of sessions (each a list of keys), got "
            + type(sessions).__name__
        )
    for s in sessions:
        if isinstance(s, str | bytes) or not hasattr(s, "__len__"):
            raise TypeError(
                "a session must be a list of keys, got "
                + (f"the string {s[:40]!r}: split it (line.split())" if isinstance(s, str)
                   else type(s).__name__)
            )  # fmt: skip


_RESERVED_KEYS = frozenset((*RESERVED, "<start>"))


def _no_reserved(sessions: list[list[str]]) -> list[list[str]]:
    """The sessions, when no key is one of the names the explanations use for the model's
    own markers (``<end>`` for an early end, ``<start>``, ``<pad>``, ``<unk>``)."""
    clash = _RESERVED_KEYS.intersection(chain.from_iterable(sessions))
    if clash:
        raise DataError(
            f"key {sorted(clash)[0]!r} is a name logwarden keeps for its own markers "
            f"({', '.join(sorted(_RESERVED_KEYS))}): rename it"
        )
    return sessions


def _subset(events: Sequence[Session], kept: Sequence[int]) -> Sequence[Session]:
    """The sessions at ``kept`` (a session table stays one, sharing its columns)."""
    if isinstance(events, SessionTable):
        import copy

        table = copy.copy(events)
        table.ids = [events.ids[i] for i in kept]
        table.members = [events.members[i] for i in kept]
        return table
    return [events[i] for i in kept]


def _check_events(sessions: Sequence[Any], events: Sequence[Session] | None) -> None:
    _check_sessions(sessions)
    if events is not None and len(events) != len(sessions):
        raise ValueError(
            f"events has {len(events)} sessions for {len(sessions)} key sequences; "
            "they must be aligned"
        )
