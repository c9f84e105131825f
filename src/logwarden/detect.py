"""Detectors combined into verdicts with explanations, behind a scikit-learn-like API.

``DeepLog`` is the estimator: ``fit`` on normal sessions (sequences of log keys),
``decision_function`` / ``predict`` for scores and labels, ``verdicts`` for one explained
``Verdict`` per session, ``save`` / ``load`` for the model bundle. Constructor arguments
are the hyperparameters; fitted state ends in ``_``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .bundle import BundleError, load_bundle, save_bundle
from .models import (
    END,
    FIRST_KEY,
    UNK,
    KeyModel,
    KeyModelConfig,
    Threshold,
    fit_key_model,
)

REASONS = {
    "unseen_key": "a log key never seen in normal runs",
    "early_end": "the session ended where the model expected it to go on",
    "ranked_out": "the observed key was not among the keys the model expected next",
}


@dataclass
class Verdict:
    """The outcome for one session, with what a person needs to act on it."""

    session: str
    anomalous: bool
    length: int  # number of log keys in the session
    score: float  # higher is more anomalous (see DeepLog.decision_function)
    reason: str | None = None  # unseen_key | early_end | ranked_out (None when normal)
    detector: str | None = None  # which model fired: "keys"
    position: int | None = None  # index of the first anomalous entry (length: the end)
    observed: str | None = None  # the observed key ("<end>" for an early end)
    observed_template: str | None = None
    probability: float | None = None  # the model's probability of the observed key
    rank: int | None = None  # its rank among the expected keys (1 = most likely)
    window: list[str] = field(default_factory=list)  # the keys before it
    expected: list[dict[str, Any]] = field(default_factory=list)  # key, template, probability
    lines: list[str] | None = None  # raw lines around the anomaly, when the input was raw

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
        if self.lines is not None:
            d["lines"] = self.lines
        return d

    def describe(self) -> str:
        """A short readable explanation."""
        if not self.anomalous:
            return f"{self.session}: normal ({self.length} keys)"
        where = "at its end" if self.reason == "early_end" else f"at entry {self.position}"
        out = [
            f"{self.session}: ANOMALY {where} ({self.length} keys): {REASONS.get(self.reason or '', self.reason)}"
        ]
        obs = self.observed_template or self.observed
        if self.reason == "unseen_key":
            out.append(f"  observed: {obs} (never seen in training)")
        elif self.reason == "ranked_out":
            out.append(f"  observed: {obs} (p={self.probability:.2g}, rank {self.rank})")
        if self.window:
            out.append(f"  after: {' '.join(self.window)}")
        if self.expected:
            out.append(
                "  expected: "
                + "; ".join(
                    f"{e['template'] or e['key']} ({e['probability']:.2f})" for e in self.expected
                )
            )
        if self.lines:
            out += [f"  | {line}" for line in self.lines]
        return "\n".join(out)


_DETAIL_FIELDS = (
    "reason", "detector", "position", "observed", "observed_template", "probability", "rank",
    "window", "expected",
)  # fmt: skip


class DeepLog:
    """DeepLog's log-key detector (the parameter models join in a later version).

    ``top_g=None`` (the default) chooses a probability threshold automatically from a
    held-out part (``holdout``) of the normal training sessions, at ``target_fpr``;
    ``top_g=9`` uses the paper's top-g rule.
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
        patience: int = 30,
        holdout: float = 0.1,
        target_fpr: float = 0.005,
        seed: int = 0,
        device: str = "auto",
        explain_top: int = 5,
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
        self.holdout = holdout
        self.target_fpr = target_fpr
        self.seed = seed
        self.device = device
        self.explain_top = explain_top

    # -- scikit-learn contract ---------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    @staticmethod
    def _param_names() -> list[str]:
        return [
            "window", "top_g", "layers", "hidden", "embedding", "epochs", "batch_size",
            "learning_rate", "patience", "holdout", "target_fpr", "seed", "device", "explain_top",
        ]  # fmt: skip

    def _config(self) -> KeyModelConfig:
        p = self.get_params()
        p.pop("explain_top")
        return KeyModelConfig(**p)

    def fit(
        self,
        sessions: Sequence[Sequence[str]],
        templates: Mapping[str, str] | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> DeepLog:
        """Learn normal execution paths from normal sessions (sequences of key labels)."""
        import time

        started = time.perf_counter()
        sessions = [[str(k) for k in s] for s in sessions]
        self.model_ = fit_key_model(sessions, self._config(), progress)
        self.model_.train_info["seconds"] = round(time.perf_counter() - started, 3)
        self.templates_ = {str(k): v for k, v in (templates or {}).items()}
        return self

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
            raise RuntimeError("this DeepLog is not fitted yet: call fit() or load()")
        return model

    def _scores(
        self, sessions: Sequence[Sequence[str]], keep_probs: bool = False
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        model = self._fitted()
        encoded = model.encode_many(sessions)
        scores = model.score(encoded, keep_probs=keep_probs)
        flags = model.threshold.flags(scores.rank, scores.prob) | (scores.target == UNK)
        return scores, flags, _first_flag(flags, scores.offsets)

    def decision_function(self, sessions: Sequence[Sequence[str]]) -> np.ndarray:
        """Anomaly score per session, higher is more anomalous: with the probability
        threshold, -log10 of the lowest probability given to one of its keys (40 for a
        key never seen); with top-g, the worst rank of one of its keys."""
        scores, _, _ = self._scores(sessions)
        return self._session_scores(scores)

    def _session_scores(self, scores: Any) -> np.ndarray:
        starts = scores.offsets[:-1]
        if len(starts) == 0:
            return np.zeros(0)
        if self._fitted().threshold.mode == "top_g":
            return np.maximum.reduceat(scores.rank, starts).astype(np.float64)
        low = np.minimum.reduceat(scores.prob.astype(np.float64), starts)
        return -np.log10(np.maximum(low, 1e-40))

    def predict(self, sessions: Sequence[Sequence[str]]) -> np.ndarray:
        """True for each anomalous session."""
        _, _, first = self._scores(sessions)
        return first >= 0

    def verdicts(
        self,
        sessions: Sequence[Sequence[str]],
        ids: Sequence[str] | None = None,
        lines: Sequence[Sequence[str]] | None = None,
    ) -> list[Verdict]:
        """One explained verdict per session. ``lines``: the raw lines of each session."""
        model = self._fitted()
        scores, _, first = self._scores(sessions, keep_probs=True)
        session_scores = self._session_scores(scores)
        ids = ids if ids is not None else [str(i) for i in range(len(sessions))]
        h = model.config.window
        out: list[Verdict] = []
        anomalous = np.flatnonzero(first >= 0)
        # The expected keys at each anomaly, from the probabilities the scoring computed.
        pos = scores.offsets[anomalous] + first[anomalous]
        assert scores.probs is not None
        expected_at = model.expected(scores.probs[scores.window_rows[pos]], self.explain_top)
        row_of = {int(s): j for j, s in enumerate(anomalous)}
        templates = self.templates_
        for i, (sid, sess) in enumerate(zip(ids, sessions, strict=True)):
            score = float(session_scores[i])
            j = row_of.get(i)
            if j is None:
                out.append(Verdict(sid, False, len(sess), score))
                continue
            p = int(first[i])
            flat = int(scores.offsets[i]) + p
            target = int(scores.target[flat])
            observed = "<end>" if target == END else str(sess[p])
            reason = (
                "unseen_key" if target == UNK else "early_end" if target == END else "ranked_out"
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
            if lines is not None:
                raw = lines[i]
                v.lines = list(raw[max(0, p - 3) : p + 2])
            out.append(v)
        return out

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write the model bundle directory (``extra``: e.g. parser state, input settings)."""
        model = self._fitted()
        vocabulary = [
            {"index": i + FIRST_KEY, "key": k, "template": self.templates_.get(k)}
            for i, k in enumerate(model.keys)
        ]
        manifest = {
            "logwarden_version": __version__,
            "detectors": ["keys"],
            "params": self.get_params(),
            "vocabulary": vocabulary,
            "threshold": asdict(model.threshold),
            "train_info": model.train_info,
            **(dict(extra) if extra else {}),
        }
        save_bundle(path, manifest, {"keys": model.weights})

    @classmethod
    def load(cls, path: str | Path) -> DeepLog:
        manifest, weights = load_bundle(path)
        return cls.from_bundle(manifest, weights)

    @classmethod
    def from_bundle(
        cls, manifest: dict[str, Any], weights: dict[str, dict[str, np.ndarray]]
    ) -> DeepLog:
        try:
            est = cls(**manifest["params"])
            config = est._config()
            vocab = sorted(manifest["vocabulary"], key=lambda v: v["index"])
            keys = [str(v["key"]) for v in vocab]
            threshold = Threshold(**manifest["threshold"])
            est.model_ = KeyModel(
                config, keys, weights["keys"], threshold, manifest.get("train_info", {})
            )
            est.templates_ = {
                str(v["key"]): v["template"] for v in vocab if v.get("template") is not None
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle content is not a valid DeepLog model: {exc}") from None
        return est


def _first_flag(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per session, the position of its first flagged entry, or -1."""
    n = len(offsets) - 1
    idx = np.flatnonzero(flags)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    j = np.searchsorted(idx, offsets[:-1])
    first = np.full(n, -1, dtype=np.int64)
    ok = j < len(idx)
    cand = np.where(ok, idx[np.minimum(j, max(len(idx) - 1, 0))] if len(idx) else 0, 0)
    hit = ok & (cand < offsets[1:])
    first[hit] = cand[hit] - offsets[:-1][hit]
    return first
