"""The deployable unit: how input is read (format, parser, sessions) plus the fitted models.

A ``Detector`` is what ``logwarden train`` writes and ``detect``/``eval`` (and later the
service) load: the DeepLog estimator together with everything needed to turn the same
kind of input into the same keys again, the input form and log format, the session
settings and the template miner's state. ``Detector.save()`` from Python therefore writes a
bundle that reads raw logs exactly as the CLI's does.

    det = Detector(DeepLog(), InputSpec(format="hdfs", session="hdfs"))
    det.fit(det.read(["normal.log"], learn=True))
    det.save("model/")
    verdicts = Detector.load("model/").verdicts(Detector.load("model/").read(["today.log"]))
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from logwarden.detect.estimator import (
    DeepLog,
    Verdict,
    attach_lines,
    attach_places,
    bundle_source,
)
from logwarden.errors import BundleError, ConfigError, DataError, NotFittedError
from logwarden.io.datasets import load_jsonl, load_labels, load_sequences
from logwarden.online.feedback import Feedback, check_feedback
from logwarden.online.update import UpdatePolicy
from logwarden.parsing import TemplateMiner
from logwarden.persist.bundle import join_arrays, load_bundle, save_bundle, split_arrays
from logwarden.records import Event, Stats
from logwarden.sessions import Session, SessionTable

__all__ = ["INPUT_FORMATS", "Detector", "InputSpec", "Inputs", "VerdictStream", "idle_timeout_from"]

INPUT_FORMATS = ("raw", "sequences", "jsonl")


@dataclass(frozen=True)
class InputSpec:
    """How input is read: its form, and for raw logs the format and session settings."""

    input_format: str = "raw"  # raw | sequences | jsonl
    format: str | None = None  # raw: a preset or loghub format string
    session: str | None = None  # raw: session id regex or preset name
    window: int | None = None  # raw: sessions of N lines (logs without ids)
    session_in_line: bool = False  # raw: search the id in the whole line, header included
    # raw id sessions: seconds of log time after which an idle session is complete when
    # detecting on a stream (``Detector.stream``); None: complete at the end of input.
    # ``train`` learns it from the training sessions' gaps (``idle_timeout_from``).
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(
                f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {self.input_format!r}",
                field="input_format",
            )
        if self.session is not None and self.window is not None:
            raise ConfigError("give session or window, not both", field="window")
        if self.idle_timeout is not None and not (
            isinstance(self.idle_timeout, int | float) and 0 < self.idle_timeout < math.inf
        ):
            raise ConfigError(
                f"idle_timeout must be a positive number of seconds, got {self.idle_timeout!r}",
                field="idle_timeout",
            )

    def override(self, **changes: Any) -> InputSpec:
        """A copy with the given settings replaced; ``None`` values keep the current ones.
        A new ``session`` drops a saved ``window`` and the other way round."""
        given = {k: v for k, v in changes.items() if v is not None}
        if given.get("session") is not None:
            given.setdefault("window", None)
        if given.get("window") is not None:
            given.setdefault("session", None)
            given.setdefault("session_in_line", False)  # a setting of the id regex
        return replace(self, **given)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return asdict(self), {}

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
    ) -> InputSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


# Raw input for a model without a log parser: it was trained on key sequences (or JSONL).
_NO_PARSER = (
    "this model has no log parser (it was trained on key sequences, not raw logs): read "
    "its input form (--input-format sequences or jsonl), or train on raw logs"
)


@dataclass
class Inputs:
    """Sessions read from input files, aligned by index."""

    ids: list[str]
    keys: list[list[str]]
    labels: list[int | None]
    templates: dict[str, str] = field(default_factory=dict)  # key -> template text
    lines: list[list[str]] | None = None  # raw input: each session's lines
    events: Sequence[Session] | None = None  # raw input: entries, for the parameter models
    stats: Stats = field(default_factory=Stats)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    entries: int = 0  # log entries read (raw input)
    # raw input in window sessions: each entry's input line (from 1), and the lines read
    line_ids: list[int] | None = None
    lines_read: int = 0
    # raw input: where each input starts among the lines read (``LineReader.files``)
    files: list[tuple[int, str]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


class Detector:
    """Input settings, parser state and a DeepLog estimator: fit, score, save, load.

    ``workers``: processes that scan raw lines in parallel when the miner only matches
    (0: none, the library default; the CLI chooses by input size, see
    ``logwarden.io.ingest.default_workers``).
    """

    def __init__(
        self,
        model: DeepLog | None = None,
        input: InputSpec | None = None,
        miner: TemplateMiner | None = None,
    ) -> None:
        self.model = model if model is not None else DeepLog()
        self.input = input if input is not None else InputSpec()
        self.miner = miner

    # -- reading ---------------------------------------------------------------------------

    def read(
        self,
        paths: Sequence[str],
        *,
        learn: bool = False,
        labels: str | Path | None = None,
        include_anomalous: bool = False,
        workers: int = 0,
        only: Collection[str] | None = None,
        idle_timeout: float | None = None,
    ) -> Inputs:
        """Sessions of ``paths`` in this detector's input form.

        ``learn``: raw input grows the parser (training); otherwise the parser only matches,
        so keys keep the meaning the model learnt. ``labels``: a label CSV for raw input.
        Labelled JSONL keeps only normal sessions when ``learn`` unless ``include_anomalous``.
        ``only``: the session ids wanted (others may be left out unread where sessions
        are grouped by an id pattern; an online update reads only what it learns).
        ``idle_timeout``: id sessions also complete after that many seconds of log time
        without a line, as ``stream`` completes them (``train --idle-timeout``: the model
        learns the sessions detection will judge); by default they end with the input.
        Raises DataError / ConfigError for bad input or settings, TypeError for a single
        path where a list of them goes. Raw input that cannot be read (a missing file) is
        not an exception: the rest is read, and ``Inputs.errors`` names each (the CLI then
        exits 1).
        """
        if isinstance(paths, str | bytes | os.PathLike):
            raise TypeError(f"paths is a list of paths: give [{paths!r}]")
        spec = self.input
        if spec.input_format == "sequences":
            seqs = [s for p in paths for s in load_sequences(p)]
            return Inputs([s.id for s in seqs], [s.keys for s in seqs], [s.label for s in seqs])
        if spec.input_format == "jsonl":
            sessions = [s for p in paths for s in load_jsonl(p)]
            if learn and not include_anomalous:
                sessions = [s for s in sessions if s.label in (0, None)]
            return Inputs(
                [s.id for s in sessions],
                [s.keys for s in sessions],
                [s.label for s in sessions],
                {k: k for s in sessions for k in s.keys},
            )
        from logwarden.io.ingest import read_raw_sessions, session_config

        if not spec.format:
            raise ConfigError("raw input needs a log format", field="format")
        config = session_config(
            spec.session, spec.window, in_line=spec.session_in_line, idle_timeout=idle_timeout
        )
        if self.miner is None:
            if not learn:
                raise NotFittedError(_NO_PARSER)
            self.miner = TemplateMiner()
        raw = read_raw_sessions(
            paths, spec.format, config, miner=self.miner, learn=learn, workers=workers, only=only
        )
        self.miner = raw.miner
        found: list[int | None] = [None] * len(raw.ids)
        if labels is not None:
            by_id = load_labels(labels)
            found = [by_id.get(sid) for sid in raw.ids]
        return Inputs(
            raw.ids,
            raw.keys,
            found,
            raw.templates,
            raw.lines,
            raw.sessions,
            raw.stats,
            list(raw.errors),
            raw.events,
            raw.line_ids if spec.window is not None else None,
            raw.stats["lines_read"],
            raw.files,
        )

    # -- the estimator -----------------------------------------------------------------------

    def fit(
        self,
        data: Inputs,
        progress: Callable[[int, int, float], None] | None = None,
        fold_progress: Callable[[int, int], None] | None = None,
        unfinished: Collection[int] = (),
    ) -> Detector:
        """Fit the models on ``data`` (normal sessions, as ``read(..., learn=True)`` gives);
        ``progress``, ``fold_progress`` and ``unfinished`` (see ``cut_off_at_end`` and
        ``cut_off_at_start``) as for ``DeepLog.fit``."""
        self.model.fit(
            data.keys,
            data.templates,
            progress=progress,
            events=data.events,
            interleaved=self.input.window is not None,  # windows of a log without ids
            fold_progress=fold_progress,
            unfinished=unfinished,
        )
        if self.input.input_format == "raw" and self.input.window is None and data.events:
            # How near the input's edge a run counts as cut by it, kept for detect's note
            # on runs that began before its input (BeganBefore).
            self.model.train_info_["longest_gap"] = longest_gaps(data.events)
        return self

    def verdicts(
        self, data: Inputs, *, diagnose: bool = True, share: bool = False
    ) -> list[Verdict]:
        """One explained verdict per session of ``data``; ``diagnose``: with the workflow
        diagnosis of each anomaly (a search per anomaly: ``eval``'s counts do without);
        ``share``: as for ``DeepLog.verdicts`` (for readers that change no verdict)."""
        self._learn_texts(data.templates)
        verdicts = self.model.verdicts(
            data.keys, data.ids, data.lines, events=data.events, diagnose=diagnose, share=share
        )
        attach_places(verdicts, session_places(data), data.files)
        return verdicts

    def _learn_texts(self, templates: Mapping[str, str]) -> None:
        # Lines the model never saw still get their template text in explanations. Their
        # labels (U<n>) are numbered per read, so this read's text replaces an earlier one.
        known = set(self.model.keys_)
        for key, text in templates.items():
            if key in known:
                self.model.templates_.setdefault(key, text)
            else:
                self.model.templates_[key] = text

    def stream(
        self,
        paths: Sequence[str],
        *,
        labels: str | Path | None = None,
        workers: int = 0,
        diagnose: bool = True,
        chunk_sessions: int = 8192,
        values: str = "all",
        share: bool = False,
    ) -> VerdictStream:
        """Verdicts of raw logs in bounded memory: each session is scored once complete
        (``InputSpec.idle_timeout`` past its last line in log time, or the end of input; see
        ``io.ingest.SessionStream``), a chunk of completed sessions at a time, and freed.
        Iterating gives ``(chunk, verdicts)`` pairs, sessions in order of first line (as
        ``read`` gives them; without an idle split, these are ``verdicts(read(...))``, scores
        equal to float32 precision); ``workers`` > 0 scans lines and scores chunks in that
        many forked processes (the same verdicts, bit for bit). ``diagnose``: as for
        ``verdicts``. Other input forms (sequences, jsonl) and session configurations
        without the column path are read whole and given as one chunk. ``values``:
        ``"all"`` keeps every parameter value of the chunks' sessions; ``"modelled"`` only
        those the parameter models read (the others read as empty or are left out), all
        the verdicts need: less to pass to workers and to hold (``detect``, ``eval``).
        ``share``: verdicts of sessions read whole (sequences, jsonl) as ``verdicts(...,
        share=True)`` gives them, for a reader that changes none."""
        if values not in ("all", "modelled"):
            raise ValueError(f"values is 'all' or 'modelled', not {values!r}")
        return VerdictStream(
            self, paths, labels, workers, diagnose, chunk_sessions, values == "modelled", share
        )

    def predict(self, data: Inputs) -> np.ndarray:
        """True for each anomalous session of ``data``."""
        return self.model.predict(data.keys, events=data.events)

    def partial_fit(
        self,
        data: Inputs,
        feedback: Sequence[Feedback],
        policy: UpdatePolicy | None = None,
    ) -> Detector:
        """Learn from operator ``feedback`` on sessions of ``data`` (read by this detector).

        Lines of sessions marked normal that no template matches teach the parser new
        templates (created, never merged into the ones the model knows, so old keys keep
        their meaning); those sessions and the confirmed ones are keyed again with them, and
        ``DeepLog.partial_fit`` learns. Refused updates (``UpdateRefusedError``) and bad
        ids (``DataError``) leave the detector unchanged.
        """
        check_feedback(feedback)
        where = {sid: i for i, sid in enumerate(data.ids)}
        missing = [f.session for f in feedback if f.session not in where]
        if missing:
            raise DataError(
                f"{len(missing)} session(s) marked in feedback are not in the input: "
                + ", ".join(missing[:5])
            )
        normal = [where[f.session] for f in feedback if f.label == "normal"]
        confirmed = [where[f.session] for f in feedback if f.label == "confirmed"]
        miner = self.miner
        if miner is not None and data.events is not None:
            miner = _learn_templates(miner, [data.events[i] for i in normal])
            n_keys, n_events, templates = _rekey(miner, [data.events[i] for i in normal])
            c_keys, c_events, c_templates = _rekey(miner, [data.events[i] for i in confirmed])
            templates.update(c_templates)
        else:  # key sequences: new keys are simply keys the model has not seen
            n_keys = [data.keys[i] for i in normal]
            c_keys = [data.keys[i] for i in confirmed]
            n_events = c_events = None
            templates = {k: data.templates.get(k, k) for s in n_keys for k in s}
        self.model.partial_fit(
            n_keys,
            templates,
            n_events,
            confirmed=c_keys,
            confirmed_events=c_events,
            feedback=list(feedback),
            policy=policy,
        )
        self.miner = miner
        return self

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The manifest entries and arrays of the bundle: the model's, plus ``input`` and
        ``parser``."""
        meta, arrays = self.model.to_state()
        meta = dict(meta)
        meta["input"] = self.input.to_state()[0]
        if self.miner is not None:
            meta["parser"] = self.miner.to_state()[0]
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Detector:
        if meta.get("model") == "supervised":
            raise BundleError(
                "a supervised model for logs without session ids: it gives per-line verdicts"
                " (logwarden.detect.SupervisedDetector; detect --line-scores, eval --line-labels)"
            )
        model = DeepLog.from_state(meta, arrays)
        try:
            spec = InputSpec.from_state(meta.get("input") or {})
        except (ConfigError, TypeError) as exc:
            raise BundleError(f"bundle input settings are not valid: {exc}") from None
        parser = meta.get("parser")
        miner = TemplateMiner.from_state(parser) if parser is not None else None
        return cls(model, spec, miner)

    def save(self, path: str | Path, replace: bool = True) -> None:
        """Write the bundle directory (manifest, checksums, weights); ``replace=False``:
        only where no bundle is (BundleError otherwise, nothing replaced)."""
        meta, arrays = self.to_state()
        save_bundle(path, meta, split_arrays(arrays), replace=replace)

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        """Load and verify a bundle; BundleError (or StateError for its parser) if it is
        not one, was modified, or is of another schema."""
        manifest, weights = load_bundle(path)
        detector = cls.from_state(manifest, join_arrays(weights))
        detector.model.source_ = bundle_source(path, manifest)
        return detector


class VerdictStream:
    """``Detector.stream``'s iteration: ``(Inputs, verdicts)`` per chunk of completed
    sessions. After it: ``stats``, ``errors``, ``entries`` (log entries read), ``sessions``,
    ``templates`` (every key's text), ``max_open`` (most sessions open at once) and
    ``open_at_end`` (raw input read as a stream: the sessions the end of input completed,
    not closed for idleness, by id: the input line of the last entry and the log clock at
    it) and ``end_clock`` (the log clock then; NaN: no timestamp)."""

    def __init__(
        self,
        detector: Detector,
        paths: Sequence[str],
        labels: str | Path | None,
        workers: int,
        diagnose: bool,
        chunk_sessions: int,
        modelled_values: bool = False,
        share: bool = False,
    ) -> None:
        self.detector = detector
        self.modelled_values = modelled_values
        self.share = share
        self.paths = list(paths)
        self.labels = labels
        self.workers = workers
        self.diagnose = diagnose
        self.chunk_sessions = chunk_sessions
        self.stats = Stats()
        self.errors: list[tuple[str, str]] = []
        self.entries = 0
        self.sessions = 0
        self.templates: dict[str, str] = {}
        self.max_open = 0
        self.open_at_end: dict[str, tuple[int, float]] = {}
        self.end_clock = math.nan
        # With a label file: the sessions it labels, and how many of them the input held.
        self.labels_total = 0
        self.labels_found = 0

    def score(self, task: tuple[Inputs, Mapping[Any, np.ndarray] | None]) -> list[Verdict]:
        """One chunk's verdicts, with the parameter series' history before it (the task a
        worker runs)."""
        data, history = task
        det = self.detector
        det._learn_texts(data.templates)
        lines = data.lines
        if lines is None and isinstance(data.events, SessionTable):
            lines = data.events.session_lines()
        return det.model.verdicts(
            data.keys, data.ids, lines, events=data.events, diagnose=self.diagnose,
            param_history=history,
        )  # fmt: skip

    def __iter__(self) -> Iterator[tuple[Inputs, list[Verdict]]]:
        det = self.detector
        spec = det.input
        if spec.input_format != "raw":
            data = det.read(self.paths, labels=self.labels)
            self.sessions, self.templates = len(data.ids), dict(data.templates)
            yield data, self.detector.verdicts(data, diagnose=self.diagnose, share=self.share)
            return
        from collections import deque

        from logwarden.io.ingest import SessionStream, WorkerPool, session_config

        if not spec.format:
            raise ConfigError("raw input needs a log format", field="format")
        if det.miner is None:
            raise NotFittedError(_NO_PARSER)
        config = session_config(
            spec.session, spec.window, in_line=spec.session_in_line, idle_timeout=spec.idle_timeout
        )
        by_id = load_labels(self.labels) if self.labels is not None else None
        found_ids: set[str] = set()
        self.labels_total = len(by_id) if by_id is not None else 0
        stats = Stats()
        with WorkerPool(self.workers, {"score": self.score}, stats) as pool:
            stream = SessionStream(
                self.paths, spec.format, config, det.miner, pool=pool,
                chunk_sessions=self.chunk_sessions, stats=stats,
                keep_values=modelled_positions(det.model) if self.modelled_values else None,
            )  # fmt: skip
            inflight: deque[tuple[Any, Any]] = deque()
            params = getattr(det.model, "params_", None)
            history: dict[Any, np.ndarray] | None = None
            for raw in stream:
                found = (
                    [by_id.get(sid) for sid in raw.ids]
                    if by_id is not None
                    else [None] * len(raw.ids)
                )
                if by_id is not None:
                    found_ids.update(
                        s for s, label in zip(raw.ids, found, strict=True) if label is not None
                    )
                    self.labels_found = len(found_ids)
                data = Inputs(
                    raw.ids, raw.keys, found, raw.templates, raw.lines, raw.sessions,
                    entries=raw.events,
                    line_ids=raw.line_ids if spec.window is not None else None,
                    files=raw.files,
                )  # fmt: skip
                # Explanations here (describe, HTML) need the texts of unseen keys too.
                det._learn_texts(raw.templates)
                # A worker scores from keys and columns; the verdicts get their raw lines
                # here (attach_lines): the texts were most of what a chunk sent weighed.
                table = raw.sessions if isinstance(raw.sessions, SessionTable) else None
                sent = (
                    replace(data, lines=None, events=table.without_texts())
                    if pool.workers and table is not None and data.lines is not None
                    else data
                )
                task = (sent, history)
                if params is not None and data.events is not None:
                    # The series of the parameter models run on from chunk to chunk.
                    history = params.tails_of(data.events, history)
                inflight.append((data, task, pool.submit("score", task)))
                while inflight and (len(inflight) > pool.workers or inflight[0][2] is None):
                    yield self._scored(pool, *inflight.popleft())
                self._settle(stream)
            while inflight:
                yield self._scored(pool, *inflight.popleft())
            self._settle(stream)

    @staticmethod
    def _scored(
        pool: Any, whole: Inputs, task: tuple[Inputs, Any], future: Any
    ) -> tuple[Inputs, list[Verdict]]:
        """A chunk and its verdicts, with their raw lines when the task went without."""
        verdicts = pool.result("score", task, future)
        if task[0].lines is None and whole.lines is not None:
            attach_lines(verdicts, whole.lines)
        attach_places(verdicts, session_places(whole), whole.files)
        return whole, verdicts

    def _settle(self, stream: Any) -> None:
        self.stats, self.errors, self.entries = stream.stats, stream.errors, stream.events
        self.sessions, self.templates, self.max_open = (
            stream.sessions, stream.templates, stream.max_open,
        )  # fmt: skip
        self.open_at_end, self.end_clock = stream.open_at_end, stream.end_clock


def modelled_positions(model: Any) -> dict[int, set[int]]:
    """Per key, the positions of the parameter values the model's parameter models read
    (none: a model without them reads no value)."""
    out: dict[int, set[int]] = {}
    params = getattr(model, "params_", None)
    for (key, _), unit in params.models.items() if params is not None else ():
        out.setdefault(int(key), set()).update(unit.positions)
    return out


def session_places(data: Inputs) -> Any:
    """Per session of raw input, its entries' input line numbers and timestamps, asked
    for one session at a time (``estimator.attach_places`` asks the anomalous ones only):
    from the session table's columns, from the entries' lines for window sessions (their
    entries follow ``Inputs.line_ids``), or from the ``Session`` objects; None for input
    that is not raw lines."""
    events = data.events
    if events is None or data.lines is None:
        return None
    if isinstance(events, SessionTable):
        return _TablePlaces(events)
    line_ids = data.line_ids
    if line_ids is not None and sum(len(k) for k in data.keys) == len(line_ids):
        return _WindowPlaces(events, line_ids, data.keys)
    return _SessionPlaces(events, data.files or [])


class _TablePlaces:
    def __init__(self, table: SessionTable) -> None:
        self.table = table

    def __getitem__(self, i: int) -> tuple[list[int], list[float | None]]:
        from logwarden.sessions import gather

        t = self.table
        rows = t.members[i]
        numbers = [r + 1 for r in rows] if t.line_numbers is None else gather(t.line_numbers, rows)
        return numbers, gather(t.timestamps, rows)


class _WindowPlaces:
    """Windows of consecutive entries: session ``i`` holds the next ``len(keys[i])`` of
    ``line_ids``."""

    def __init__(
        self, events: Sequence[Session], line_ids: Sequence[int], keys: Sequence[Sequence[str]]
    ) -> None:
        self.events, self.line_ids = events, line_ids
        self.starts = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)

    def __getitem__(self, i: int) -> tuple[list[int], list[float | None]]:
        a, b = int(self.starts[i]), int(self.starts[i + 1])
        stamps = [e.record.timestamp for e in self.events[i].events]
        return list(self.line_ids[a:b]), stamps


class _SessionPlaces:
    """``Session`` objects: their lines' numbers across the inputs (a table's count
    already; the object path's lines count within their file, which starts where
    ``files`` says)."""

    def __init__(self, events: Sequence[Session], files: Sequence[tuple[int, str]]) -> None:
        self.events = events
        self.starts: dict[str, int] = {}
        for start, name in files:  # a file given twice: its first reading
            self.starts.setdefault(name, start)

    def __getitem__(self, i: int) -> tuple[list[int], list[float | None]]:
        got = self.events[i].events
        starts = self.starts
        numbers = [starts.get(e.record.line.source, 0) + e.record.line.lineno for e in got]
        return numbers, [e.record.timestamp for e in got]


def idle_timeout_from(sessions: Sequence[Session], factor: float = 100.0) -> float | None:
    """The idle timeout ``train`` keeps with the model: ``factor`` times the longest gap in
    log time between two consecutive entries of one training session (at least one
    second: timestamps often have whole seconds). None when no session has two timed
    entries (the detector then completes sessions at the end of input only).

    Generous on purpose: it only bounds memory, and an open session costs little, while a
    stall longer than the timeout splits a session in two, judged apart (counted as
    ``reopened_session``). On the simulator's logs, performance anomalies stall up to 15
    times the longest normal gap; 10 times split some of them, 100 times none."""
    longest: float | None = None
    if isinstance(sessions, SessionTable):  # the gaps from its columns, no Session built
        clock = sessions.clock
        for rows in sessions.members:
            prev = None
            for r in rows:
                t = clock[r]
                if t is not None and prev is not None and (longest is None or t - prev > longest):
                    longest = t - prev
                prev = t
    else:
        for session in sessions:
            for gap in session.elapsed[1:]:
                if gap is not None and (longest is None or gap > longest):
                    longest = gap
    if longest is None:
        return None
    return max(1.0, factor * longest)


def cut_off_at_end(data: Inputs, gap: float | None) -> list[int]:
    """Training sessions the end of the input seems to have cut off: still going when the
    input ended (a line within ``gap`` of log time of its last: ``train`` gives the
    longest gap between two entries of one training session, so a run quiet for longer
    was over or stalled by the training runs' own evidence; without timestamps, a line
    within the longest stretch of lines between two entries of one training session of
    the input's last line) and ending with a key no training session away from the end
    ends with, though other sessions hold it (a step that runs go on from). The idle timeout, 100
    times that gap, is too generous to tell: most sessions of a short log end within it.
    Learnt as complete runs, they would teach the key model's end-of-session rule and the
    workflows an end there (``fit``'s ``unfinished``). Indices into ``data``; none for
    window sessions, key sequences or a single session."""
    return _cut_by_input(data, gap, at_end=True)


def cut_off_at_start(data: Inputs, gap: float | None) -> list[int]:
    """Training sessions the start of the input seems to have cut (a slice, a rotation):
    the mirror of ``cut_off_at_end``. Already going when the input began (a first line
    within ``gap`` of log time of the input's first, or within the longest stretch of
    lines of one training session of its first line) and starting with a key no training
    session away from the start starts with, though other sessions hold it (a step runs
    reach from another). Learnt as complete runs, they would teach the key model and the workflows
    a start where runs never start."""
    return _cut_by_input(data, gap, at_end=False)


def _cut_by_input(data: Inputs, gap: float | None, at_end: bool) -> list[int]:
    """``cut_off_at_end`` (``at_end``) or ``cut_off_at_start``: one rule, seen from the
    input's last line or from its first."""
    events = data.events
    if events is None or len(data.keys) < 2:
        return []
    edge = -1 if at_end else 0  # the session's entry that faces the cut
    if isinstance(events, SessionTable):
        clock = events.clock
        times = [clock[rows[edge]] if rows else None for rows in events.members]
    else:
        times = [s.events[edge].record.timestamp if s.events else None for s in events]
    timed = [t for t in times if t is not None and math.isfinite(t)]
    if gap and timed:
        cut = max(timed) if at_end else min(timed)

        def near(i: int) -> bool:
            t = times[i]
            return t is None or abs(cut - t) <= gap

    else:
        # No log time to go by: the lines tell instead. A run going on at the cut has a
        # line within the longest stretch of lines between two entries of one training
        # run of the input's edge line (every session counted as going on would take each
        # run anywhere in the log that ends, or starts, in its own way for a cut one).
        lines = _line_numbers(events)
        at = [ln[edge] if ln else 0 for ln in lines]
        longest = longest_line_stretch(lines)
        cut_line = max(at) if at_end else min(at)

        def near(i: int) -> bool:
            return abs(cut_line - at[i]) <= longest

    # The runs away from the cut ended (or began) there by the training runs' own
    # evidence: only their edge steps vouch for a run at the cut. Counted over every run,
    # the runs the cut took at one step vouched for each other (an HDFS slice: 1 of 56 cut
    # runs found, against 31 of 56 this way, none wrongly). With no run away from it, the
    # step of a run at the cut has to be its own.
    close = [bool(k) and near(i) for i, k in enumerate(data.keys)]
    vouch = not all(close)
    edges: dict[str, int] = {}
    held: dict[str, int] = {}
    for k, at_cut in zip(data.keys, close, strict=True):
        if k and not (vouch and at_cut):
            edges[k[edge]] = edges.get(k[edge], 0) + 1
        for key in set(k):
            held[key] = held.get(key, 0) + 1
    most = 0 if vouch else 1
    return [
        i
        for i, k in enumerate(data.keys)
        if close[i] and edges.get(k[edge], 0) <= most and held[k[edge]] > 1
    ]


def longest_line_stretch(lines: Sequence[Sequence[int]]) -> int:
    """The most input lines between two consecutive entries of one session (``lines``:
    each session's line numbers, in order)."""
    return max((b - a for ln in lines for a, b in pairwise(ln)), default=0)


def longest_gaps(events: Sequence[Session]) -> dict[str, float | int | None]:
    """The longest gap between two consecutive entries of one training session, in log
    time (``seconds``, as ``cut_off_at_end`` takes it; None: no timed gap) and in input
    lines (``lines``): how near the input's edge a run counts as cut by it."""
    return {
        "seconds": idle_timeout_from(events, factor=1.0),
        "lines": longest_line_stretch(_line_numbers(events)),
    }


def training_starts(model: Any) -> set[str] | None:
    """The keys normal training sessions start with, as the bundle keeps them: the first
    steps of the workflows (mined from every normal training session, the ones the input
    cut left out; online updates add theirs), else the known transitions of the key
    model's rule from a window of padding alone; None when it keeps neither (trained
    without workflows and without transition rules, or on windows)."""
    from logwarden.models.keys import FIRST_KEY, PAD

    workflows = getattr(model, "workflows_", None)
    if workflows is not None and len(workflows) and all(wf.counted for wf in workflows):
        return {k for wf in workflows for k in wf.start_keys}
    km = getattr(model, "model_", None)
    t = getattr(km, "transitions", None)
    if km is None or t is None or t.ndim != 2 or t.shape[1] < 2 or not len(t):
        return None
    c = t.shape[1] - 1
    first = t[(t[:, :c] == PAD).all(axis=1), c]
    return {km.keys[i - FIRST_KEY] for i in first.tolist() if i >= FIRST_KEY}


class BeganBefore:
    """The anomalous verdicts of sessions that began before the input did (a slice, a
    rotation): the mirror of a session still active when it ended. A session counts when
    its first line is near the input's first, as ``train`` judges a training run cut at
    the start (within the longest gap of a training run, in log time, or in lines when
    there is none), and its first key is none a normal training session starts with
    (``training_starts``). Verdicts are not changed: ``detect`` notes them. Fed chunk by
    chunk (``feed``), judged at the end (``found``); ``active``: the model keeps what it
    takes (trained on raw sessions with ids by this version, with workflows or
    transition rules)."""

    def __init__(self, detector: Detector) -> None:
        model = detector.model
        measure = model.train_info_.get("longest_gap") if hasattr(model, "model_") else None
        self.starts = training_starts(model)
        spec = detector.input
        self.active = bool(
            measure
            and self.starts is not None
            and spec.input_format == "raw"
            and spec.window is None
        )
        self.seconds: float | None = (measure or {}).get("seconds")
        self.lines: int = int((measure or {}).get("lines") or 0)
        self.first_time: float | None = None
        self.first_line: int | None = None
        self.candidates: list[tuple[Any, int, float | None]] = []

    def feed(self, data: Inputs, verdicts: Sequence[Any], positions: Any = None) -> None:
        """One chunk's sessions (their first lines and times move the input's start) and
        verdicts (the anomalous ones whose first key starts no training run are kept);
        ``positions``: the Ray engine's entries' lines and times, for ``data.events``."""
        if not self.active or not data.keys:
            return
        firsts = _first_entries(data, positions)
        if firsts is None:
            return
        lines, times = firsts
        timed = [t for t in times if t is not None and math.isfinite(t)]
        if timed:
            low = min(timed)
            self.first_time = low if self.first_time is None else min(self.first_time, low)
        if lines:
            low_line = min(lines)
            self.first_line = (
                low_line if self.first_line is None else min(self.first_line, low_line)
            )
        starts = self.starts or set()
        for i, v in enumerate(verdicts):
            k = data.keys[i]
            if v.anomalous and k and k[0] not in starts:
                self.candidates.append((v, lines[i], times[i]))

    def found(self) -> list[Any]:
        """The kept verdicts of sessions whose first line was near the input's first."""
        start, gap = self.first_time, self.seconds
        if gap and start is not None:

            def near(line: int, t: float | None) -> bool:
                return t is None or not math.isfinite(t) or t - start <= gap

        else:
            first = self.first_line or 0

            def near(line: int, t: float | None) -> bool:
                return line - first <= self.lines

        return [v for v, line, t in self.candidates if near(line, t)]


def _first_entries(
    data: Inputs, positions: Any = None
) -> tuple[list[int], list[float | None]] | None:
    """Each session's first entry: its input line number and log time (None: none)."""
    if positions is not None and hasattr(positions, "starts"):  # the Ray engine's arrays
        at = positions.starts[:-1]
        lines = positions.lines[np.minimum(at, max(len(positions.lines) - 1, 0))].tolist()
        stamps = positions.stamps[np.minimum(at, max(len(positions.stamps) - 1, 0))]
        return lines, [None if math.isnan(t) else float(t) for t in stamps.tolist()]
    events = data.events
    if isinstance(events, SessionTable):
        clock = events.clock
        rows = [r[0] if r else 0 for r in events.members]
        return [events.line_number(r) for r in rows], [clock[r] for r in rows]
    places = positions if positions is not None else session_places(data)
    if places is None:
        return None
    lines: list[int] = []
    times: list[float | None] = []
    for i in range(len(data.keys)):
        numbers, stamps = places[i]
        lines.append(int(numbers[0]) if len(numbers) else 0)
        times.append(stamps[0] if len(stamps) else None)
    return lines, times


def _line_numbers(events: Sequence[Session]) -> list[list[int]]:
    """Each session's input line numbers, in order."""
    if isinstance(events, SessionTable):
        number = events.line_number
        return [[number(r) for r in rows] for rows in events.members]
    return [[e.record.line.lineno for e in s.events] for s in events]


def _learn_templates(miner: TemplateMiner, sessions: Sequence[Session]) -> TemplateMiner:
    """A copy of ``miner`` that also knows the templates of the sessions' unmatched lines.

    New templates are only created: generalising one the model knows (merging it with
    another) would change what its key means, so the copy learns with merges off and then
    takes the original settings back.
    """
    state, _ = miner.to_state()
    config = dict(state["config"])
    learner = TemplateMiner.from_state({**state, "config": {**config, "min_merge_values": 1 << 30}})
    for session in sessions:
        for event in session.events:
            if learner.parse_record(event.record, learn=False) is None:
                learner.parse_record(event.record, learn=True)
    learnt, _ = learner.to_state()
    return TemplateMiner.from_state({**learnt, "config": config})


def _rekey(
    miner: TemplateMiner, sessions: Sequence[Session]
) -> tuple[list[list[str]], list[Session], dict[str, str]]:
    """The sessions keyed again by ``miner`` (their entries' content is parsed anew): key
    labels as raw input gives them (``E<id>``; ``U<n>`` for lines still unmatched), the
    sessions with the new keys and parameters, and the template of each key."""
    unknown = TemplateMiner()
    keys: list[list[str]] = []
    out: list[Session] = []
    templates: dict[str, str] = {}
    for session in sessions:
        labels: list[str] = []
        events: list[Event] = []
        for old in session.events:
            event = miner.parse_record(old.record, learn=False)
            if event is None:
                event = unknown.parse_record(old.record, learn=True)
                assert event is not None
                k = unknown.resolve(event.key)
                label, event.key = f"U{k}", -k  # no parameter model applies
            else:
                event.key = miner.resolve(event.key)
                label = f"E{event.key}"
            templates[label] = event.template
            labels.append(label)
            events.append(event)
        keys.append(labels)
        out.append(Session(session.id, events, list(session.elapsed), session.closed_by))
    return keys, out, templates


@dataclass(frozen=True)
class EndWindow:
    """How near the input's end the last entry of a session the end of input completed
    (not closed for idleness) must be for it to count as still active when the input
    ended (``detect``'s note on early ends a cut log may explain): the mirror of
    ``BeganBefore``'s start. With the measure ``train`` keeps (``learnt``: the longest gap
    of a training run), within ``seconds`` of log time of the log clock at the end, or,
    without a timed gap or without timestamps in the input, within ``lines`` input lines
    of the last line of a session. A bundle trained before the measure was kept judges by
    the idle timeout (``seconds``; without timestamps every session open at the end
    counts), and ``of`` gives None for it without an idle timeout (every session
    completes at the end of input then: nothing to tell)."""

    seconds: float | None
    lines: int | None
    learnt: bool

    @classmethod
    def of(cls, detector: Detector) -> EndWindow | None:
        model = detector.model
        measure = model.train_info_.get("longest_gap") if hasattr(model, "model_") else None
        if measure:
            return cls(measure.get("seconds") or None, int(measure.get("lines") or 0), True)
        timeout = detector.input.idle_timeout
        return None if timeout is None else cls(timeout, None, False)

    def select(
        self,
        ids: Sequence[str],
        last_lines: Sequence[int] | np.ndarray,
        last_clocks: Sequence[float] | np.ndarray,
        end_clock: float,
    ) -> tuple[set[str], bool]:
        """The ids whose session's last entry is near the end, and whether log time told
        (else lines, or, by the idle timeout without timestamps, nothing: all count).
        ``last_lines``: each session's last input line; ``last_clocks``: the log clock at
        it (NaN: none; before the first timestamp, the first one); ``end_clock``: the log
        clock when the input ended (NaN: no timestamp at all)."""
        if not len(ids):
            return set(), False
        lines = np.asarray(last_lines, dtype=np.int64)
        clocks = np.asarray(last_clocks, dtype=np.float64)
        if self.seconds is not None and math.isfinite(end_clock):
            # An entry without a clock (none known then) is near, as in BeganBefore.
            near = np.isnan(clocks) | (clocks >= end_clock - self.seconds)
            by_time = True
        elif self.lines is not None:
            near = lines >= lines.max() - self.lines
            by_time = False
        else:
            return set(ids), False
        return {sid for sid, n in zip(ids, near.tolist(), strict=True) if n}, by_time

    def describe(self, by_time: bool) -> str:
        """The window, as the note on early ends states it."""
        if not self.learnt:
            return f"the idle timeout, {self.seconds or 0.0:,.0f} s of log time"
        lines = self.lines or 0
        near = (
            f"{self.seconds:,.3g} s of log time"
            if by_time
            else f"{lines:,} line{'' if lines == 1 else 's'}"
        )
        return f"the longest gap of a training run, {near}"
