"""Logs without session ids: per-line verdicts, and the supervised model's deployable unit.

``LineVerdicts``: every input line gets the verdict of the window of the last ``window``
entries ending at it, as a streaming detector would give it when that line arrives (an
empty line repeats the verdict before it). Both kinds of model give them: the supervised
model (its window probability against its threshold) and DeepLog trained on window
sessions (``window_line_verdicts``: a window is anomalous when any entry in it is flagged).

``SupervisedDetector`` is to the supervised model what ``Detector`` is to DeepLog: the log
format, the parser state and the fitted model, saved to and loaded from one bundle.

    det = SupervisedDetector(SupervisedDeepLog(), format="bgl")
    det.fit(det.read(["train.log"], learn=True), load_line_labels("train.log", label_format="bgl"))
    det.save("model/")
    verdicts = det.line_verdicts(det.read(["test.log"]))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from logwarden.detect.detector import Inputs
from logwarden.detect.estimator import DeepLog
from logwarden.errors import BundleError, ConfigError, NotFittedError
from logwarden.evaluate.metrics import LineReport
from logwarden.io.datasets import LineLabels
from logwarden.io.entries import LineStream, read_stream
from logwarden.models.supervised import (
    MODEL_NAME,
    SupervisedDeepLog,
    rolling_max,
    window_labels,
)
from logwarden.parsing import TemplateMiner
from logwarden.persist.bundle import join_arrays, load_bundle, save_bundle, split_arrays

__all__ = [
    "LineVerdicts",
    "SupervisedDetector",
    "is_supervised",
    "rolling_any",
    "rolling_max",
    "window_line_verdicts",
]


def rolling_any(flags: np.ndarray, h: int) -> np.ndarray:
    """Per entry: whether any of the last ``h`` entries is flagged (the window's verdict)."""
    return window_labels(flags.astype(np.int8), h).astype(bool)


@dataclass
class LineVerdicts:
    """One verdict per input line: that of the window of the last ``window`` entries ending
    at it. An empty line (no entry) repeats the verdict before it; lines before the first
    entry are normal with score 0."""

    window: int
    flags: np.ndarray  # bool per input line
    scores: np.ndarray  # float per input line, higher is more anomalous
    entry_lines: np.ndarray  # input line of each entry (from 1)
    lines: int

    @classmethod
    def from_entries(
        cls,
        entry_lines: np.ndarray,
        window_flags: np.ndarray,
        window_scores: np.ndarray,
        lines: int,
        window: int,
    ) -> LineVerdicts:
        """From the verdicts of the windows ending at each entry."""
        entry_lines = np.asarray(entry_lines, dtype=np.int64)
        last = _last_entry(entry_lines, lines)
        has = last >= 0
        flags = np.zeros(lines, dtype=bool)
        scores = np.zeros(lines, dtype=np.float64)
        flags[has] = np.asarray(window_flags, dtype=bool)[last[has]]
        scores[has] = np.asarray(window_scores, dtype=np.float64)[last[has]]
        return cls(window, flags, scores, entry_lines, lines)

    def window_labels(self, labels: Sequence[int]) -> np.ndarray:
        """Per input line, the label of its window: 1 when any line in it is anomalous."""
        y = np.asarray(labels, dtype=np.int8)
        if len(y) != self.lines:
            raise ValueError(f"{len(y)} labels for {self.lines} lines")
        per_entry = window_labels(y[self.entry_lines - 1], self.window)
        last = _last_entry(self.entry_lines, self.lines)
        out = y.copy()  # an empty line's window also holds the line itself
        has = last >= 0
        out[has] |= per_entry[last[has]]
        return out

    def report(self, labels: LineLabels | Sequence[int]) -> LineReport:
        if isinstance(labels, LineLabels):
            labels.check(self.lines)
            labels = labels.labels
        y = np.asarray(labels, dtype=np.int8)
        return LineReport.from_flags(
            self.flags.tolist(), y.tolist(), self.window_labels(y).tolist(), self.window
        )

    def write_csv(self, fh: IO[str]) -> None:
        """``LineId,Anomalous,Score``, one row per input line."""
        fh.write("LineId,Anomalous,Score\n")
        flags = self.flags.astype(np.int8).tolist()
        scores = self.scores.tolist()
        step = 65536
        for s in range(0, self.lines, step):
            fh.write(
                "".join(
                    f"{i},{a},{v:.6g}\n"
                    for i, a, v in zip(
                        range(s + 1, min(s + step, self.lines) + 1),
                        flags[s : s + step],
                        scores[s : s + step],
                        strict=True,
                    )
                )
            )


def _last_entry(entry_lines: np.ndarray, lines: int) -> np.ndarray:
    """Per input line (1..lines), the index of the last entry at or before it, or -1."""
    return np.searchsorted(entry_lines, np.arange(1, lines + 1), side="right") - 1


def window_line_verdicts(model: DeepLog, data: Inputs) -> LineVerdicts:
    """Per-line verdicts of DeepLog on the window sessions of a log without ids (``data``
    as ``Detector.read`` gives it for an input with ``window`` set): the window of the last
    h entries ending at a line is anomalous when any entry in it is flagged (by either
    detector), scored by the highest -log10 probability among them."""
    if not isinstance(model, DeepLog) or not isinstance(data, Inputs):
        raise TypeError(
            "window_line_verdicts takes a DeepLog and the Inputs Detector.read gives for a "
            f"log read in windows, got {type(model).__name__} and {type(data).__name__} "
            "(a SupervisedDetector judges lines itself: line_verdicts)"
        )
    if data.line_ids is None or len(data.line_ids) == 0:
        raise ConfigError(
            "per-line verdicts need a model for logs without session ids: one trained with"
            " --window N (or --supervised)",
            field="window",
        )
    flags, scores = model.entry_scores(data.keys, events=data.events)
    if len(flags) != len(data.line_ids):
        raise ConfigError("per-line verdicts need window sessions of consecutive lines")
    h = model.window
    return LineVerdicts.from_entries(
        np.asarray(data.line_ids, dtype=np.int64),
        rolling_any(flags, h),
        rolling_max(scores, h),
        data.lines_read,
        h,
    )


class SupervisedDetector:
    """The log format, the parser state and a ``SupervisedDeepLog``: read, fit, judge every
    line, save, load."""

    def __init__(
        self,
        model: SupervisedDeepLog | None = None,
        format: str | None = None,
        miner: TemplateMiner | None = None,
    ) -> None:
        self.model = model if model is not None else SupervisedDeepLog()
        self.format = format
        self.miner = miner

    def read(self, paths: Sequence[str], *, learn: bool = False) -> LineStream:
        """The entries of raw logs (``learn``: the parser learns templates, for training)."""
        if isinstance(paths, str | bytes | os.PathLike):
            raise TypeError(f"paths is a list of paths: give [{paths!r}]")
        if not self.format:
            raise ConfigError("raw input needs a log format", field="format")
        if self.miner is None:
            if not learn:
                raise NotFittedError(
                    "this model has no log parser: train it on raw logs (learn=True)"
                )
            self.miner = TemplateMiner()
        stream, self.miner = read_stream(paths, self.format, self.miner, learn=learn)
        return stream

    def fit(
        self,
        stream: LineStream,
        labels: Sequence[int] | LineLabels,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> SupervisedDetector:
        self.model.fit(stream, labels, progress=progress)
        return self

    def line_verdicts(self, stream: LineStream) -> LineVerdicts:
        """One verdict per input line of ``stream`` (see ``LineVerdicts``)."""
        model = self.model
        prob = model.predict_proba(stream)
        return LineVerdicts.from_entries(
            stream.line_ids, prob >= model.threshold_, prob, stream.lines, model.window
        )

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = self.model.to_state()
        meta = dict(meta)
        meta["input"] = {"input_format": "raw", "format": self.format, "supervised": True}
        if self.miner is not None:
            meta["parser"] = self.miner.to_state()[0]
        return meta, arrays

    @classmethod
    def from_state(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> SupervisedDetector:
        model = SupervisedDeepLog.from_state(meta, arrays)
        spec = meta.get("input") or {}
        if not isinstance(spec, Mapping) or not isinstance(spec.get("format"), str):
            raise BundleError("bundle input settings are not valid: no log format")
        parser = meta.get("parser")
        miner = TemplateMiner.from_state(parser) if parser is not None else None
        return cls(model, spec["format"], miner)

    def save(self, path: str | Path, replace: bool = True) -> None:
        """As ``Detector.save``."""
        meta, arrays = self.to_state()
        save_bundle(path, meta, split_arrays(arrays), replace=replace)

    @classmethod
    def load(cls, path: str | Path) -> SupervisedDetector:
        manifest, weights = load_bundle(path)
        return cls.from_state(manifest, join_arrays(weights))


def is_supervised(meta: Mapping[str, Any]) -> bool:
    """Whether a bundle's manifest holds a supervised model."""
    return meta.get("model") == MODEL_NAME
