"""DeepLog's models. This module holds the log-key model (section 2 of the method).

The key model predicts the next log key of a session from the ``window`` keys before it:
an embedding, ``layers`` stacked LSTM layers of ``hidden`` units, and a softmax over the
vocabulary. Two reserved keys make every position of a session checkable:

* ``PAD`` fills the window before the first key, so the first keys are scored too;
* ``END`` is the key after the last one. The model learns where sessions end, so a
  session that stops early is caught at its end ("early end") instead of being flagged
  blindly for being short or missed for having nothing wrong in it.

A key never seen in training maps to ``UNK`` and is always anomalous, and so is a key
after ``context`` keys it never followed in a normal training session (END included: a
session that ends where none ended), whatever the network says.

The threshold comes from every training session (``fit_key_model``): fold models trained
as the model itself, each on the other folds, score the sessions they did not see; the
rules' costs are counted leaving one session out; a tail model of the scores
(``calibration.TailModel``) turns a session's statistic into its tail probability among
normal sessions, and the cut into an expected false-positive rate with an interval.

Training runs in PyTorch on the *distinct* (window, next key) rows of the training
sessions, each weighted by how often it occurs: the gradient of an epoch is the same as
over all windows, for a fraction of the work (HDFS: 4.7k distinct rows for 100k windows).
Inference runs in NumPy from the same weights: no PyTorch import at detection time, which
matters for a command that must start, load and score 285k events in about two seconds.
Identical windows are scored once (``np.unique``), and a streaming scorer keeps an LRU
cache of windows.
"""

from __future__ import annotations

import math
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import chain, repeat
from typing import Any, NamedTuple

import numpy as np

from logwarden.errors import ConfigError
from logwarden.models.calibration import TailModel, binomial_interval, bootstrap_rate
from logwarden.models.numpy_nets import KeyNetNumpy

TRANSITIONS = "rule.transitions"  # the array of known transitions, beside the weights
FOLD_PREFIX = "fold"  # the fold models' weights: fold<k>/<weight name>
PAD = 0  # before the first key of a session
END = 1  # after the last key of a session
UNK = 2  # a key never seen in training
FIRST_KEY = 3
RESERVED = ("<pad>", "<end>", "<unk>")
# The rules, each with its own rate (``KeyCalibration.rule_counts``), named as
# ``Assessment``'s per-session arrays: a key never seen; a transition (END included: an
# early end by the transitions, the ends or the length) no normal session holds; a key
# more often than in any normal session.
RULES = ("unseen_key", "unseen_transition", "count_exceeded")


@dataclass
class KeyModelConfig:
    """Hyperparameters of the key model (paper defaults: window 10, g 9, 2 layers of 64)."""

    window: int = 10
    top_g: int | None = None  # fixed top-g threshold; None = automatic (see threshold)
    layers: int = 2
    hidden: int = 64
    embedding: int = 32
    epochs: int = 1000  # upper bound; training stops earlier once the loss settles
    patience: int = 10  # epochs without a 1% improvement before stopping
    batch_size: int = 512  # at most; smaller when there are few distinct windows
    learning_rate: float = 0.01
    target_fpr: float = 0.005  # automatic threshold: expected false-positive rate per session
    folds: int = 5  # cross-fitting folds for the threshold and its false-positive estimate
    rule_share: float = 0.6  # most of target_fpr the unseen-transition rule may take
    # The probability cut's flags confirmed by the fold models (kept in the bundle): see
    # ``KeyModel.fold_statistics``. False: the full model's cut alone.
    fold_check: bool = True
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"

    def __post_init__(self) -> None:
        # Types first: a float window or a string of hidden units failed deep in NumPy or
        # torch (after training, for top_g), and "no" was a true fold_check.
        whole = ("window", "layers", "hidden", "embedding", "epochs", "patience", "batch_size",
                 "folds", "seed")  # fmt: skip
        for name in whole + (("top_g",) if self.top_g is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}", field=name)
        for name in ("learning_rate", "target_fpr", "rule_share"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a number, got {value!r}", field=name)
        if not isinstance(self.fold_check, bool):
            raise ConfigError(
                f"fold_check must be True or False, got {self.fold_check!r}", field="fold_check"
            )
        checks = [
            (self.patience >= 0, "patience", "patience must be >= 0"),
            (self.seed >= 0, "seed", "seed must be >= 0"),
            (self.window >= 1, "window", "window must be >= 1"),
            (self.top_g is None or self.top_g >= 1, "top_g", "top_g must be >= 1"),
            (self.layers >= 1, "layers", "layers must be >= 1"),
            (
                self.hidden >= 1 and self.embedding >= 1,
                "hidden",
                "hidden and embedding must be >= 1",
            ),
            (self.epochs >= 1, "epochs", "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size", "batch_size must be >= 1"),
            (self.learning_rate > 0, "learning_rate", "learning_rate must be > 0"),
            (self.folds == 0 or self.folds >= 2, "folds", "folds must be 0 or >= 2"),
            (0.0 <= self.rule_share < 1.0, "rule_share", "rule_share must be in [0, 1)"),
            (0.0 < self.target_fpr < 1.0, "target_fpr", "target_fpr must be in (0, 1)"),
            (self.device in ("auto", "cpu", "cuda"), "device", "device must be auto, cpu or cuda"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(msg, field=name)


@dataclass
class Threshold:
    """When a position is anomalous, and what that costs on normal sessions.

    ``top_g``: the observed key ranked beyond ``g``. ``probability``: its probability below
    ``tau`` while it is not the model's most likely key (a key the model expects most is
    never the anomaly). Exactly one of ``g`` and ``tau`` is set. Unseen keys and unseen
    transitions (early ends included) are anomalous in both modes (see ``KeyCalibration``).

    ``expected_fpr`` (with its 95% interval ``fpr_low``..``fpr_high``) is the share of
    normal sessions the whole key model flags, estimated from sessions scored by models
    that did not train on them; ``level`` is the part left to the probability cut, so that
    a session is anomalous exactly when its tail probability is at most ``level``. With the
    fold check (``KeyModel.fold_check``) the cut's flags also need the fold models' p-value
    at most ``level``: the estimate is then an upper bound.
    """

    mode: str  # "top_g" | "probability"
    g: int | None = None
    tau: float | None = None
    target_fpr: float | None = None
    level: float | None = None
    expected_fpr: float | None = None
    fpr_low: float | None = None
    fpr_high: float | None = None
    calibration_sessions: int = 0  # cross-fitted normal sessions behind the estimate
    calibration_flagged: int = 0  # of which flagged at this threshold
    method: str | None = None  # how expected_fpr was estimated
    # Online updates: the training sessions the model itself flags (in-sample, so fewer
    # than expected_fpr says); an update that flags clearly more of them moves the cut.
    checked_sessions: int = 0
    checked_flagged: int = 0

    def __post_init__(self) -> None:
        if self.mode == "top_g":
            if not isinstance(self.g, int) or isinstance(self.g, bool) or self.g < 1:
                raise ValueError(f"top_g threshold needs g >= 1, got {self.g!r}")
        elif self.mode == "probability":
            if not isinstance(self.tau, int | float) or not 0.0 < float(self.tau) <= 1.0:
                raise ValueError(f"probability threshold needs 0 < tau <= 1, got {self.tau!r}")
            if self.level is not None and not 0.0 < float(self.level) <= 1.0:
                raise ValueError(f"probability threshold needs 0 < level <= 1, got {self.level!r}")
        else:
            raise ValueError(f"unknown threshold mode {self.mode!r}")

    def flags(self, rank: np.ndarray, prob: np.ndarray) -> np.ndarray:
        if self.mode == "top_g":
            assert self.g is not None
            return rank > self.g
        assert self.tau is not None
        return (prob < self.tau) & (rank > 1)


@dataclass
class KeyCalibration:
    """What normal sessions look like to the key model, from training sessions scored by
    models that did not train on them (cross-fitting) or left out one at a time.

    * ``tail``: the tail of the session statistic (``session_statistic``) over the normal
      sessions no rule flags; a session's tail probability is ``tail.sf``.
    * The unseen-transition rule: a key (END included) after ``context`` keys (padded)
      that it never followed in any normal training session is anomalous whatever the
      network says; so a session that ends where no normal session ended is an early end
      for every seed. ``context`` is the longest whose leave-one-out cost (training
      sessions holding a key or transition no other session holds) stays within
      ``rule_share`` of the target; 0 means only unseen keys.
    * ``unseen_key_sessions`` / ``rule_sessions``: training sessions that would be flagged
      by the rules had they been left out (an unseen key; a key or transition), the rules'
      false-positive estimate.
    * ``rule_keys``: the vocabulary size the rule was learned over (0: all). Keys an online
      update adds later come with a few sessions, which hold a few of the contexts their
      transitions take: the rule, calibrated without them, leaves transitions that involve
      them to the fine-tuned network.
    * ``max_counts``: the count rule (DeepLog's workflow counting, used to detect): per key
      index, the most times one normal training session holds that key; a session holding
      it more often is anomalous at the entry that goes past it (a repeated step, a retry
      too many). Its leave-one-out cost (a session holding the only largest count of a
      key) is among ``rule_sessions``; None when that cost alone is over the rules'
      budget, or for a model from before the rule.
    * ``end_keys``: when ``context`` is 0 (the budget affords no transitions), the early-end
      rule alone: the keys after which some normal training session ended (PAD: an empty
      one); a session ending after another key is an early end whatever the network says.
      Calibrated the same way (a session whose last key no other session ends with); None
      when ``context`` is 1 or more (its transitions hold the ends) or over the budget.
    * ``min_length``: the fewest entries a normal training session held; a session that
      ends with fewer is an early end whatever the network says (the network generalises
      an END it saw after a key in one long session to a two-key session that starts the
      same way). Calibrated the same way (a session shorter than every other one); None
      when over the rules' budget, or for a model from before the rule.
    * ``fold_tails``: per fold model, the tail of the statistics it gave the sessions it did
      not train on (the rules' sessions left out, as for ``tail``): the fold check's
      p-values (``KeyModel.fold_statistics``). None in top-g mode, without cross-fitting,
      with ``fold_check`` off, or for a model from before the check.
    * ``rule_counts``: per rule (``RULES``: an unseen key; an unseen transition, early ends
      by the transitions, the ends or the length included; a count exceeded), the training
      sessions that rule alone flags left out: how often a normal session sets it off
      (for an unseen key, the Good-Turing estimate of holding a key no training session
      held), the tail probability of a session it flags (``rule_rates``). None for a model
      from before them: every rule then has the rules' joint rate ``rule_p``.
    """

    sessions: int
    folds: int
    tail: TailModel | None
    context: int
    unseen_key_sessions: int
    rule_sessions: int
    rule_keys: int = 0
    max_counts: list[int] | None = None
    end_keys: list[int] | None = None
    fold_tails: list[TailModel] | None = None
    min_length: int | None = None
    rule_counts: dict[str, int] | None = None

    def __post_init__(self) -> None:
        got = self.rule_counts
        if got is None:
            return
        if not isinstance(got, Mapping) or set(got) != set(RULES):
            raise ValueError(f"rule_counts must name the rules {', '.join(RULES)}")
        for name, k in got.items():
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= self.sessions:
                raise ValueError(f"rule_counts[{name!r}] must be a session count, got {k!r}")

    @property
    def rule_p(self) -> float:
        """Tail probability of a session some rule flags (leave-one-out count, +1)."""
        return (self.rule_sessions + 1) / (self.sessions + 1)

    def rule_rates(self) -> dict[str, float]:
        """Per rule (``RULES``), the tail probability of a session it flags: the share of
        training sessions it flags left out, +1 so that it is never 0 (an unseen key:
        ``(N1 + 1) / (n + 1)`` with N1 the sessions holding a key no other session holds).
        Every rule has ``rule_p`` for a model from before the counts."""
        if self.rule_counts is None:
            return dict.fromkeys(RULES, self.rule_p)
        return {r: (self.rule_counts[r] + 1) / (self.sessions + 1) for r in RULES}

    def sessions_rule_p(
        self,
        unseen_key: np.ndarray,
        unseen_transition: np.ndarray,
        count_exceeded: np.ndarray | None,
    ) -> np.ndarray:
        """Per session, the tail probability of the rules it set off: the lowest rate of
        those rules (``rule_rates``), 1.0 where none fired."""
        rates = self.rule_rates()
        out = np.ones(len(unseen_key))
        fired = (unseen_key, unseen_transition, count_exceeded)
        for name, hit in zip(RULES, fired, strict=True):
            if hit is not None:
                out = np.where(np.asarray(hit, dtype=bool), np.minimum(out, rates[name]), out)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tail"] = None if self.tail is None else self.tail.to_dict()
        d["fold_tails"] = (
            None if self.fold_tails is None else [t.to_dict() for t in self.fold_tails]
        )
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeyCalibration:
        d = dict(d)
        tail = d.pop("tail", None)
        folds = d.pop("fold_tails", None)
        return cls(
            tail=None if tail is None else TailModel.from_dict(tail),
            fold_tails=None if folds is None else [TailModel.from_dict(t) for t in folds],
            **d,
        )


@dataclass
class Scores:
    """Per-position scores of a batch of sessions, flattened in session order."""

    offsets: np.ndarray  # session i owns positions offsets[i]:offsets[i+1]
    target: np.ndarray  # observed key index at each position (END at the last)
    rank: np.ndarray  # 1 = the most likely key; vocabulary size + 1 for UNK
    prob: np.ndarray  # probability of the observed key (0 for UNK)
    window_rows: np.ndarray  # index into ``windows`` of each position's window
    windows: np.ndarray  # distinct windows (key indices), shape (n, window)
    probs: np.ndarray | None = None  # distinct windows' probabilities, when kept


@dataclass
class Assessment:
    """Sessions judged by the key model: per position, the scores, flags and unseen
    transitions; per session, the first flagged position (-1: none), the statistic, the
    rules that fired and the tail probability (NaN without a calibration)."""

    scores: Scores
    flags: np.ndarray
    first: np.ndarray
    statistic: np.ndarray
    unseen_key: np.ndarray  # per session
    unseen_transition: np.ndarray  # per session
    new_transition: np.ndarray  # per position: a transition no normal session holds
    p_value: np.ndarray
    over_count: np.ndarray | None = None  # per position: past the key's normal count
    count_exceeded: np.ndarray | None = None  # per session
    # per session: the tail probability of the rules it set off (1.0: none; NaN without a
    # calibration), see ``KeyCalibration.sessions_rule_p``
    rule_p: np.ndarray | None = None

    @property
    def ruled(self) -> np.ndarray:
        """Per session: a rule fired (unseen key, unseen transition, count exceeded)."""
        out = self.unseen_key | self.unseen_transition
        return out if self.count_exceeded is None else out | self.count_exceeded

    def take(self, index: np.ndarray) -> Assessment:
        """The assessment of sessions ``index`` of these (repeats allowed), as assessing
        them would give it: every session is judged on its own keys alone."""
        s = self.scores
        index = np.asarray(index, dtype=np.int64)
        lengths = np.diff(s.offsets)[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        pos = np.repeat(s.offsets[:-1][index] - offsets[:-1], lengths) + np.arange(offsets[-1])

        def per_session(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        def per_position(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[pos]

        scores = Scores(
            offsets, s.target[pos], s.rank[pos], s.prob[pos], s.window_rows[pos], s.windows,
            s.probs,
        )  # fmt: skip
        return Assessment(
            scores, self.flags[pos], self.first[index], self.statistic[index],
            self.unseen_key[index], self.unseen_transition[index], self.new_transition[pos],
            self.p_value[index], per_position(self.over_count),
            per_session(self.count_exceeded), per_session(self.rule_p),
        )  # fmt: skip


# Fewer windows than this train their fold models in this process, whatever n_jobs says.
PARALLEL_MIN_WINDOWS = 20_000
# Probabilities below this are taken as it: float32 softmax outputs underflow to 0 there.
PROB_FLOOR = 1e-45


def _distinct_sessions(sessions: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct encoded sessions in order of first appearance, and which one each
    session is."""
    index: dict[bytes, int] = {}
    distinct: list[np.ndarray] = []
    inverse = np.empty(len(sessions), dtype=np.int64)
    for i, s in enumerate(sessions):
        # One dtype for every key, so that equal bytes are equal sessions.
        codes = s if isinstance(s, np.ndarray) and s.dtype == np.int32 else np.asarray(s, np.int32)
        j = index.setdefault(codes.tobytes(), len(distinct))
        if j == len(distinct):
            distinct.append(s)
        inverse[i] = j
    return distinct, inverse


def session_statistic(scores: Scores) -> np.ndarray:
    """Per session, -log10 of the lowest probability the model gave one of its keys (or its
    end), over the positions a probability threshold can flag: not a key never seen, not
    after one (the window holds UNK), not the model's most likely key. 0 when none is left.
    """
    starts = scores.offsets[:-1]
    if len(starts) == 0:
        return np.zeros(0)
    keep = (scores.target != UNK) & (scores.rank > 1)
    if len(scores.windows):
        keep &= ~(scores.windows == UNK).any(axis=1)[scores.window_rows]
    p = np.where(keep, scores.prob.astype(np.float64), 1.0)
    low = np.minimum.reduceat(p, starts)
    return -np.log10(np.maximum(low, PROB_FLOOR))


def session_rows(sessions: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """All (window, next key) rows of the sessions, as one int array (n, window + 1).

    Each session is padded with ``window`` PADs in front and one END behind, so it gives
    ``len + 1`` rows. Also returns the offsets of each session's rows.
    """
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    n_rows = lengths + 1
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(n_rows, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return np.zeros((0, window + 1), dtype=np.int32), offsets
    padded_len = lengths + window + 1
    flat = np.empty(int(padded_len.sum()), dtype=np.int32)
    starts = np.zeros(len(sessions), dtype=np.int64)
    np.cumsum(padded_len[:-1], out=starts[1:])
    # PADs everywhere, then each session's keys and its END in place.
    flat[:] = PAD
    if len(sessions):
        keys = np.concatenate(
            [np.asarray(s, dtype=np.int32) for s in sessions] + [np.empty(0, np.int32)]
        )
        key_pos = np.repeat(starts + window, lengths) + _ranges(lengths)
        flat[key_pos] = keys
        flat[starts + window + lengths] = END
    # Row r of session i starts at starts[i] + (r - offsets[i]).
    row_start = np.repeat(starts, n_rows) + _ranges(n_rows)
    view = np.lib.stride_tricks.sliding_window_view(flat, window + 1)
    return np.ascontiguousarray(view[row_start]), offsets


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [0..c0-1, 0..c1-1, ...]."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    idx = np.arange(total, dtype=np.int64)
    return idx - np.repeat(ends - counts, counts)


# --- inference in NumPy -------------------------------------------------------------------


# --- the key model --------------------------------------------------------------------------


@dataclass
class KeyModel:
    """The fitted key model: vocabulary, weights, threshold. Built by ``fit_key_model``."""

    config: KeyModelConfig
    keys: list[str]  # key label of each index >= FIRST_KEY (index = FIRST_KEY + position)
    weights: dict[str, np.ndarray]
    threshold: Threshold
    train_info: dict[str, Any] = field(default_factory=dict)
    calibration: KeyCalibration | None = None
    # The rule's known transitions: rows of ``calibration.context`` keys and the next key.
    transitions: np.ndarray | None = None
    # What training leaves for online updates (the estimator stores it; not model state):
    # the distinct (window, next key) rows of the training sessions with their counts, and
    # the encoded training sessions an update's threshold is re-checked on (scored by the
    # model itself, so against what it flagged of them when trained, see ``Threshold``).
    training_rows: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    recheck_sessions: list[np.ndarray] | None = field(default=None, repr=False, compare=False)
    # The training sessions' cross-fitted scores (detection's scale) and flags (drift).
    cross_fitted: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    # The model's own assessment of its training sessions (drift baseline, with the above).
    own_assessment: Assessment | None = field(default=None, repr=False, compare=False)
    # The fold models' weights (cross-fitting's, fold k trained without fold k): with the
    # calibration's ``fold_tails`` they confirm the probability cut (``fold_statistics``).
    fold_weights: list[dict[str, np.ndarray]] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.index = {k: i + FIRST_KEY for i, k in enumerate(self.keys)}
        outputs = len(self.keys) + FIRST_KEY
        for name in ("embed.weight", "out.weight"):
            w = self.weights.get(name)
            if w is None or w.ndim != 2 or w.shape[0] != outputs:
                raise ValueError(f"weights {name} do not fit a vocabulary of {len(self.keys)} keys")
        self.net = KeyNetNumpy(self.weights, self.config.layers)
        self._fold_nets = [self._fold_net(w) for w in self.fold_weights or []]
        if len({net.outputs for net in self._fold_nets}) > 1:
            # fold_statistics reads every fold's probabilities over one vocabulary
            raise ValueError("the fold models do not share one vocabulary")
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._batch_cache: dict[bytes, np.ndarray] = {}  # window -> probabilities (score)
        self.calibrate_with(self.calibration, self.transitions)

    def _fold_net(self, weights: Mapping[str, np.ndarray]) -> KeyNetNumpy:
        """A fold model's network, checked against this model (same shapes but the
        vocabulary, which may be shorter: keys an online update added later)."""
        outputs = len(self.keys) + FIRST_KEY
        if set(weights) != set(self.weights):
            raise ValueError("a fold model's weights do not match the model's")
        for name, w in weights.items():
            own = self.weights[name]
            rows_differ = name in ("embed.weight", "out.weight", "out.bias")
            if w.ndim != own.ndim or (rows_differ and not 0 < w.shape[0] <= outputs):
                raise ValueError(f"a fold model's {name} does not fit the model")
            if w.shape[rows_differ:] != own.shape[rows_differ:]:
                raise ValueError(f"a fold model's {name} does not fit the model")
        if (
            not weights["embed.weight"].shape[0]
            == weights["out.weight"].shape[0]
            == len(weights["out.bias"])
        ):
            raise ValueError("a fold model's input and output vocabularies differ")
        return KeyNetNumpy(dict(weights), self.config.layers)

    def calibrate_with(
        self, cal: KeyCalibration | None, transitions: np.ndarray | None = None
    ) -> None:
        """Use this calibration and the rule's known transitions (checked against the
        vocabulary and the window)."""
        outputs = len(self.keys) + FIRST_KEY
        if transitions is not None:
            self.transitions = np.asarray(transitions, dtype=np.int32)
        self.calibration = cal
        self._known = _RowSet.empty()
        self._count_limit: np.ndarray | None = None
        if cal is not None and cal.max_counts is not None:
            limit = np.asarray(cal.max_counts, dtype=np.int64)
            if limit.ndim != 1 or len(limit) > outputs or (limit < 0).any():
                raise ValueError("the count rule does not fit the vocabulary")
            self._count_limit = limit
        self._end_keys: np.ndarray | None = None
        if cal is not None and cal.end_keys is not None:
            ends = np.zeros(outputs, dtype=bool)
            got = np.asarray(cal.end_keys, dtype=np.int64)
            if len(got) and (got.min() < 0 or got.max() >= outputs):
                raise ValueError("the early-end rule names keys outside the vocabulary")
            ends[got] = True
            self._end_keys = ends
        self._min_length = None if cal is None else cal.min_length
        if cal is None or cal.context == 0:
            return
        t = self.transitions
        if cal.context > self.config.window:
            raise ValueError("the rule's context is longer than the model's window")
        if t is None or t.ndim != 2 or t.shape[1] != cal.context + 1:
            raise ValueError("the rule's transitions do not match its context")
        if len(t) and (t.min() < 0 or t.max() >= outputs):
            raise ValueError("the rule's transitions name keys outside the vocabulary")
        self._known = _RowSet(t, outputs)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A JSON-ready description (config, vocabulary, threshold, calibration, training
        facts) and the network's weights."""
        meta = {
            "config": asdict(self.config),
            "keys": list(self.keys),
            "threshold": asdict(self.threshold),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "train_info": self.train_info,
        }
        arrays = dict(self.weights)
        if self.transitions is not None:
            arrays[TRANSITIONS] = self.transitions
        for k, w in enumerate(self.fold_weights or []):
            arrays.update({f"{FOLD_PREFIX}{k}/{name}": v for name, v in w.items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> KeyModel:
        """The model ``to_state`` described; ConfigError/ValueError when it does not fit."""
        cal = meta.get("calibration")
        threshold = Threshold(**meta["threshold"])
        if threshold.mode == "probability" and (cal is None or threshold.level is None):
            raise ValueError(
                "a probability threshold without its calibration (a model from an older "
                "logwarden): train it again"
            )
        weights = {
            k: np.asarray(v)
            for k, v in arrays.items()
            if k != TRANSITIONS and not k.startswith(FOLD_PREFIX)
        }
        folds: dict[int, dict[str, np.ndarray]] = {}
        for name, v in arrays.items():
            if name.startswith(FOLD_PREFIX):
                k, _, part = name[len(FOLD_PREFIX) :].partition("/")
                if not k.isdigit() or not part:
                    raise ValueError(f"unknown array {name!r}")
                folds.setdefault(int(k), {})[part] = np.asarray(v)
        if folds and sorted(folds) != list(range(len(folds))):
            raise ValueError("the fold models are not numbered 0..k-1")
        return cls(
            KeyModelConfig(**meta["config"]),
            [str(k) for k in meta["keys"]],
            weights,
            threshold,
            dict(meta.get("train_info", {})),
            None if cal is None else KeyCalibration.from_dict(cal),
            None if TRANSITIONS not in arrays else np.asarray(arrays[TRANSITIONS]),
            fold_weights=[folds[k] for k in range(len(folds))] or None,
        )

    @property
    def vocab_size(self) -> int:
        """Keys the model can predict: the real keys and END."""
        return len(self.keys) + 1

    def label(self, index: int) -> str:
        return RESERVED[index] if index < FIRST_KEY else self.keys[index - FIRST_KEY]

    def encode(self, session: Iterable[str]) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(k, UNK) for k in session), dtype=np.int32)

    def encode_many(self, sessions: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        """Key indices of many sessions in one pass (keys are compared as strings)."""
        lengths = [len(s) for s in sessions]
        flat = map(str, chain.from_iterable(sessions))
        codes = np.fromiter(
            map(self.index.get, flat, repeat(UNK)), dtype=np.int32, count=sum(lengths)
        )
        return np.split(codes, np.cumsum(lengths)[:-1]) if sessions else []

    def score(self, sessions: Sequence[np.ndarray], keep_probs: bool = False) -> Scores:
        """Rank and probability of every observed key (and END) of encoded sessions."""
        h = self.config.window
        rows, offsets = session_rows(sessions, h)
        windows, inverse = _unique_rows(rows[:, :h], len(self.keys) + FIRST_KEY)
        probs = self._probabilities(windows)
        target = rows[:, h]
        prob, rank = _rank_of(probs, inverse, target)
        unk = target == UNK
        prob[unk] = 0.0
        rank[unk] = self.vocab_size + 1
        return Scores(offsets, target, rank, prob, inverse, windows, probs if keep_probs else None)

    def grow(
        self, new_keys: Sequence[str], seed: int = 0, like: Mapping[str, str] | None = None
    ) -> KeyModel:
        """A copy with ``new_keys`` appended to the vocabulary (keys it knows are skipped).

        Every old weight is kept and old key indices do not change (new keys come last):
        the embedding gets a row per new key, drawn at the scale of the known keys' rows,
        and the output layer a row each, with the bias of the least likely known key, so
        that a new key starts improbable everywhere until fine-tuning teaches where it goes.
        ``like``: new key -> a known key it stands in for (a reworded message): the new
        key starts as a copy of that key's embedding and output rows instead.
        """
        added = [k for k in dict.fromkeys(str(k) for k in new_keys) if k not in self.index]
        weights = {k: v.copy() for k, v in self.weights.items()}
        if added:
            rng = np.random.default_rng(seed)
            n = len(added)
            emb = weights["embed.weight"]
            known = emb[FIRST_KEY:] if len(emb) > FIRST_KEY else emb
            scale = float(known.std()) or 1.0
            weights["embed.weight"] = np.vstack(
                [emb, rng.normal(0.0, scale, (n, emb.shape[1])).astype(emb.dtype)]
            )
            out_w = weights["out.weight"]
            w_scale = float(out_w[FIRST_KEY:].std()) if len(out_w) > FIRST_KEY else 0.01
            weights["out.weight"] = np.vstack(
                [out_w, rng.normal(0.0, w_scale, (n, out_w.shape[1])).astype(out_w.dtype)]
            )
            bias = weights["out.bias"]
            low = float(bias[FIRST_KEY:].min()) if len(bias) > FIRST_KEY else float(bias.min())
            weights["out.bias"] = np.concatenate([bias, np.full(n, low, dtype=bias.dtype)])
            for j, key in enumerate(added):
                twin = self.index.get((like or {}).get(key, ""))
                if twin is not None:
                    row = len(emb) + j
                    for name in ("embed.weight", "out.weight", "out.bias"):
                        weights[name][row] = weights[name][twin]
        # Old indices do not change: the rule's known transitions stay valid.
        return KeyModel(
            self.config,
            [*self.keys, *added],
            weights,
            self.threshold,
            dict(self.train_info),
            self.calibration,
            self.transitions,
            fold_weights=self.fold_weights,  # they judge what they know (fold_statistics)
        )

    # -- the fold check ---------------------------------------------------------------------

    @property
    def fold_check(self) -> bool:
        """Whether the probability cut's flags need the fold models' confirmation: a
        probability threshold, its level, the fold models and their tails, the config's
        ``fold_check``, and ``fold_resolution``."""
        cal = self.calibration
        return bool(
            self.config.fold_check
            and self._fold_nets
            and cal is not None
            and cal.fold_tails is not None
            and len(cal.fold_tails) == len(self._fold_nets)
            and self.threshold.mode == "probability"
            and self.threshold.level is not None
            and self.fold_resolution
        )

    @property
    def fold_resolution(self) -> bool:
        """Whether each fold model held out enough sessions to judge at the cut's level: a
        fold's p-value below 1/(n + 1) rests on its tail model alone, and with a few
        hundred training sessions (120 per fold) the check turned down anomalies the cut
        found (a step skipped in every one of 12 runs: fold p-values 0.0046 against a level
        of 0.0033). Then the cut alone decides."""
        cal = self.calibration
        level = self.threshold.level
        if cal is None or cal.fold_tails is None or level is None:
            return False
        return all((t.n + 1) * float(level) >= 1.0 for t in cal.fold_tails)

    def fold_statistics(
        self, windows: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per fold model and position (``windows`` (n, window) of key indices before each
        ``targets`` key), what the position adds to the session statistic under that fold
        model: -log10 of the target's probability where ``session_statistic`` counts the
        position (a known target, no unknown key in the window, not the fold model's most
        likely key), else 0; shape (folds, n). Also per position whether the folds can
        judge it at all: keys an online update added after them (indices past their
        vocabulary) are unknown to them, and there the full model's cut decides alone.

        Why (issue 9): the cut is calibrated on sessions each scored by a fold model that
        did not train on it, then applied to the full model, which trained on all of them.
        On later data a rare but normal ordering (HDFS: concurrent datanodes' messages)
        gets a low probability from the full model as often as the target says. The fold
        models disagree about such orderings (those that trained on the sessions holding
        them give them moderate probabilities) and agree about anomalies. So a session
        flagged by the cut is flagged only when the fold models' p-values, averaged
        (cross-conformal, "CV+": fold k's p-value from the tail of the statistics fold k's
        model gave the sessions it did not train on), are at most the cut's level too. Both
        conditions are calibrated to that level; together they flag no more than either.
        """
        n = len(targets)
        folds = len(self._fold_nets)
        out = np.zeros((folds, n))
        if n == 0 or folds == 0:
            return out, np.ones(n, dtype=bool)
        known = self._fold_nets[0].outputs
        windows = np.asarray(windows, dtype=np.int32).reshape(n, -1)
        targets = np.asarray(targets, dtype=np.int64)
        judged = (targets < known) & (windows < known).all(axis=1)
        w = np.where(windows < known, windows, UNK)
        t = np.where(targets < known, targets, UNK)
        distinct, inverse = _unique_rows(w, known)
        counted = (t != UNK) & ~(w == UNK).any(axis=1)
        for k, net in enumerate(self._fold_nets):
            prob, rank = _rank_of(net.probabilities(distinct), inverse, t)
            keep = counted & (rank > 1)
            p = np.maximum(prob.astype(np.float64), PROB_FLOOR)
            out[k] = np.where(keep, -np.log10(p), 0.0)
        return out, judged

    def fold_p(self, statistics: np.ndarray) -> np.ndarray:
        """The cross-conformal p-value of sessions (or prefixes) whose statistic under each
        fold model is ``statistics`` (folds, n): the mean over the folds of each fold's
        tail probability."""
        cal = self.calibration
        assert cal is not None and cal.fold_tails is not None
        stats = np.asarray(statistics, dtype=np.float64)
        return np.mean([t.sf(stats[k]) for k, t in enumerate(cal.fold_tails)], axis=0)

    def _confirmed(self, scores: Scores, cut: np.ndarray, rules: np.ndarray) -> np.ndarray:
        """The probability cut's flags ``cut`` (per position) after the fold check: until a
        session's first flag, a position is flagged when the cut flagged it or an earlier
        position of the session, and the fold models' p-value of the session so far is at
        most the level (or the cut flagged it and the folds cannot judge it). From the
        session's first flag on (a rule's or the check's: the session is anomalous there
        whatever follows) the cut alone. Only the positions before the first rule flag of
        sessions the cut flags there go through the fold models."""
        offsets = scores.offsets
        n = len(offsets) - 1
        first_cut = _first_flag(cut, offsets)
        first_rule = _first_flag(rules, offsets)
        need = (first_cut >= 0) & ((first_rule < 0) | (first_cut < first_rule))
        if not need.any():
            return cut
        lengths = np.diff(offsets)
        span = np.where(first_rule >= 0, first_rule, lengths)  # positions before the rule
        owner = np.repeat(np.arange(n), lengths)
        local = np.arange(len(cut)) - offsets[:-1][owner]
        at = need[owner] & (local < span[owner])
        stats, judged = self.fold_statistics(
            scores.windows[scores.window_rows[at]], scores.target[at]
        )
        # Running maxima within each session, exact: a statistic equal to a training
        # session's sits on a step of the tail model, where a rounding error would move it.
        ends = np.cumsum(span[need])
        running = np.empty_like(stats)
        for a, b in zip((ends - span[need]).tolist(), ends.tolist(), strict=True):
            np.maximum.accumulate(stats[:, a:b], axis=1, out=running[:, a:b])
        # Running ORs: sessions are contiguous, so lifting each by its index keeps the
        # cumulative maximum of 0/1 values from crossing sessions (integers: exact).
        lift = np.repeat(np.arange(int(need.sum())), span[need]) * 2
        so_far = np.maximum.accumulate(cut[at] + lift) - lift > 0
        assert self.threshold.level is not None
        ok = self.fold_p(running) <= self.threshold.level
        confirmed = (so_far & ok) | (cut[at] & ~judged)
        # Past a session's first flag it is anomalous whatever follows: the cut alone there,
        # as before a rule (the stream stops asking the folds once it has reported).
        flagged = np.maximum.accumulate(confirmed + lift) - lift > 0
        earlier = np.concatenate([[False], flagged[:-1]])
        earlier[local[at] == 0] = False
        out = cut.copy()
        out[at] = np.where(earlier, cut[at], confirmed)
        return out

    def assess(self, sessions: Sequence[np.ndarray], keep_probs: bool = False) -> Assessment:
        """Score encoded sessions and judge them: flags, first anomalous position, rules,
        the session statistic and its tail probability among normal sessions."""
        # Sessions repeat (the DeepLog split's anomalies: 4,123 distinct key sequences of
        # 16,838): each distinct one is judged once, what it gets copied to its repeats.
        distinct, inverse = _distinct_sessions(sessions)
        if len(distinct) < len(sessions):
            return self._assess(distinct, keep_probs).take(inverse)
        return self._assess(sessions, keep_probs)

    def _assess(self, sessions: Sequence[np.ndarray], keep_probs: bool) -> Assessment:
        scores = self.score(sessions, keep_probs=keep_probs)
        cut = self.threshold.flags(scores.rank, scores.prob)
        flags = scores.target == UNK
        n = len(scores.offsets) - 1
        unseen_key = np.zeros(n, dtype=bool)
        if n:
            unseen_key = np.logical_or.reduceat(scores.target == UNK, scores.offsets[:-1])
        new = np.zeros(len(scores.target), dtype=bool)
        cal = self.calibration
        if cal is not None and cal.context > 0 and len(new):
            contexts = scores.windows[:, self.config.window - cal.context :]
            new = ~self._known.contains_next(contexts, scores.window_rows, scores.target)
            if cal.rule_keys:
                later = (contexts >= cal.rule_keys).any(axis=1)[scores.window_rows]
                new &= ~(later | (scores.target >= cal.rule_keys))
        if self._end_keys is not None and len(new):
            new |= self._unseen_end(scores.windows[scores.window_rows, -1], scores.target)
        if self._min_length and len(new):
            owner = np.repeat(np.arange(n), np.diff(scores.offsets))
            new |= self._short_end(scores.target, np.arange(len(new)) - scores.offsets[owner])
        flags |= new
        over = self.over_count(scores.target, scores.offsets)
        flags |= over
        if self.fold_check and cut.any():
            cut = self._confirmed(scores, cut, flags)
        flags |= cut
        unseen_transition = np.zeros(n, dtype=bool)
        count_exceeded = np.zeros(n, dtype=bool)
        if n:
            unseen_transition = np.logical_or.reduceat(new, scores.offsets[:-1])
            count_exceeded = np.logical_or.reduceat(over, scores.offsets[:-1])
        first = _first_flag(flags, scores.offsets)
        statistic = session_statistic(scores)
        ruled = unseen_key | unseen_transition | count_exceeded
        rule_p = self.sessions_rule_p(unseen_key, unseen_transition, count_exceeded)
        p = self.p_values(statistic, ruled, first >= 0, rule_p)
        return Assessment(
            scores, flags, first, statistic, unseen_key, unseen_transition, new, p,
            over, count_exceeded, rule_p,
        )  # fmt: skip

    def sessions_rule_p(
        self,
        unseen_key: np.ndarray,
        unseen_transition: np.ndarray,
        count_exceeded: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per session, the tail probability of the rules it set off (which it did, per
        rule of ``RULES``): 1.0 where none did, NaN without a calibration."""
        cal = self.calibration
        if cal is None:
            return np.full(len(unseen_key), np.nan)
        return cal.sessions_rule_p(unseen_key, unseen_transition, count_exceeded)

    def rule_rates(self) -> dict[str, float]:
        """Per rule, the tail probability of a session it flags (``KeyCalibration.rule_rates``;
        NaN without a calibration): what streaming detection folds in entry by entry."""
        cal = self.calibration
        return dict.fromkeys(RULES, math.nan) if cal is None else cal.rule_rates()

    def over_count(self, target: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Per position (sessions flattened, ``offsets`` as in ``Scores``): is this the
        occurrence of its key that goes past the most any normal training session held
        (the count rule; all False without it)? Only the first such occurrence of a key
        counts; END, unknown keys and keys added after the rule are not counted."""
        limit = self._count_limit
        out = np.zeros(len(target), dtype=bool)
        if limit is None or len(target) == 0:
            return out
        target = np.asarray(target, dtype=np.int64)
        counted = (target >= FIRST_KEY) & (target < len(limit))
        if not counted.any():
            return out
        owner = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        pos = np.flatnonzero(counted)
        # Occurrence number of each counted key within its session: sort by (session, key),
        # stable, so that occurrences stay in position order.
        order = np.lexsort((pos, target[pos], owner[pos]))
        sp = pos[order]
        group = owner[sp] * len(limit) + target[sp]
        start = np.r_[True, group[1:] != group[:-1]]
        run_start = np.flatnonzero(start)
        nth = np.arange(len(sp)) - np.repeat(run_start, np.diff(np.r_[run_start, len(sp)])) + 1
        out[sp[nth == limit[target[sp]] + 1]] = True
        return out

    def count_limit(self, key: int) -> int | None:
        """The most times one normal training session held ``key`` (an index), the count
        rule's bound; None without the rule or for a key it does not count."""
        limit = self._count_limit
        if limit is None or not FIRST_KEY <= key < len(limit):
            return None
        return int(limit[key])

    def count_over(self, key: int, nth: int) -> bool:
        """Streaming form of ``over_count``: is the ``nth`` occurrence of ``key`` in a
        session the one past its normal count?"""
        limit = self._count_limit
        return limit is not None and FIRST_KEY <= key < len(limit) and nth == int(limit[key]) + 1

    def learn_rules(self, sessions: Sequence[np.ndarray]) -> KeyCalibration | None:
        """The calibration with the count rule raised to these encoded sessions' counts
        and their last keys among the early-end rule's (an operator marked them normal).
        Their transitions: ``learn_transitions``."""
        cal = self.calibration
        if cal is None or not sessions:
            return cal
        if cal.max_counts is not None:
            limit = np.array(cal.max_counts, dtype=np.int64)
            for e in sessions:
                e = np.asarray(e, dtype=np.int64)
                e = e[(e >= FIRST_KEY) & (e < len(limit))]
                if len(e):
                    np.maximum(limit, np.bincount(e, minlength=len(limit)), out=limit)
            cal = replace(cal, max_counts=limit.tolist())
        if cal.end_keys is not None:
            last = {int(e[-1]) if len(e) else PAD for e in sessions}
            cal = replace(cal, end_keys=sorted(set(cal.end_keys) | last))
        if cal.min_length is not None:
            cal = replace(cal, min_length=min(cal.min_length, *(len(e) for e in sessions)))
        return cal

    def p_values(
        self,
        statistic: np.ndarray,
        ruled: np.ndarray,
        flagged: np.ndarray,
        rule_p: np.ndarray | None = None,
    ) -> np.ndarray:
        """Sessions' tail probabilities among normal sessions (NaN without a calibration):
        from their statistic, for sessions a rule flags the rate of those rules (``rule_p``,
        per session, see ``sessions_rule_p``; None: the rules' joint rate), and in
        probability mode held to the verdict (``flagged``: at most the level, else above
        it), so that the two agree by construction (grid steps and rule rates settled): a
        rule's rate above the level (too few sessions to tell it from the cut) scores as
        the cut."""
        cal = self.calibration
        statistic = np.asarray(statistic, dtype=np.float64)
        if cal is None or cal.tail is None:
            return np.full(len(statistic), np.nan)
        p = cal.tail.sf(statistic)
        rates = cal.rule_p if rule_p is None else np.asarray(rule_p, dtype=np.float64)
        p = np.where(ruled, np.minimum(p, rates), p)
        level = self.threshold.level
        if self.threshold.mode == "probability" and level is not None:
            p = np.where(flagged, np.minimum(p, level), np.maximum(p, _above_level(level)))
        return p

    def new_transitions(
        self, windows: np.ndarray, targets: np.ndarray, positions: np.ndarray | None = None
    ) -> np.ndarray:
        """Per row: is ``targets[i]`` after ``windows[i]`` (the model's window of keys) a
        transition no normal training session holds (the rule; all False without it)?
        ``positions``: the entries of its session before each target, for the length rule
        (an END after fewer entries than any normal session held)."""
        cal = self.calibration
        targets = np.asarray(targets)
        new = np.zeros(len(targets), dtype=bool)
        if cal is None or len(targets) == 0:
            return new
        windows = np.asarray(windows).reshape(len(targets), -1)
        # The same rules as ``assess``: transitions at the context, then the ends alone.
        if cal.context > 0:
            ctx = windows[:, self.config.window - cal.context :]
            new = ~self._known.contains(np.concatenate([ctx, targets[:, None]], axis=1))
            if cal.rule_keys:
                new &= ~((ctx >= cal.rule_keys).any(axis=1) | (targets >= cal.rule_keys))
        if self._end_keys is not None:
            new |= self._unseen_end(windows[:, -1], targets)
        if positions is not None and self._min_length:
            new |= self._short_end(targets, np.asarray(positions))
        return new

    def _short_end(self, targets: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The length rule: an END after fewer entries than any normal session held."""
        assert self._min_length is not None
        return (np.asarray(targets) == END) & (positions < self._min_length)

    def _unseen_end(self, last: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The early-end rule: an END after a key no normal session ended with (not after
        a key an online update added: the rule was calibrated without it)."""
        ends = self._end_keys
        assert ends is not None and self.calibration is not None
        last = np.asarray(last, dtype=np.int64)
        known = (last >= 0) & (last < len(ends))
        odd = (np.asarray(targets) == END) & known & ~ends[np.where(known, last, 0)]
        if self.calibration.rule_keys:
            odd &= last < self.calibration.rule_keys
        return odd

    def learn_transitions(self, sessions: Sequence[np.ndarray]) -> np.ndarray | None:
        """The rule's known transitions with those of these encoded sessions added (an
        operator marked them normal: their transitions are normal from now on)."""
        cal = self.calibration
        if cal is None or cal.context == 0 or self.transitions is None or not sessions:
            return self.transitions
        rows, _ = session_rows(list(sessions), self.config.window)
        new = rows[:, self.config.window - cal.context :]
        return np.unique(np.concatenate([self.transitions, new.astype(np.int32)]), axis=0)

    def _probabilities(self, windows: np.ndarray) -> np.ndarray:
        """The network's probabilities after each distinct window, computed once per
        window over this model's life: a log scored a batch of sessions at a time meets the
        same few thousand windows in every batch. A window's probabilities do not depend on
        the other windows computed with it (tests/test_streaming.py checks it)."""
        if len(windows) == 0:
            return np.zeros((0, self.net.outputs), dtype=np.float32)
        cache = self._batch_cache
        keys = [w.tobytes() for w in windows]
        got = [cache.get(k) for k in keys]
        missing = [i for i, g in enumerate(got) if g is None]
        if missing:
            if len(cache) + len(missing) > 1 << 18:
                cache.clear()  # bounded; rows already fetched stay valid
            fresh = self.net.probabilities(windows[missing])
            for j, i in enumerate(missing):
                got[i] = cache[keys[i]] = fresh[j]
        return np.stack(got)  # type: ignore[arg-type]

    def window_probs(self, window: np.ndarray) -> np.ndarray:
        """Probabilities after one window, through an LRU cache (streaming use)."""
        key = window.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        p = self.net.probabilities(window.reshape(1, -1))[0]
        self._cache[key] = p
        if len(self._cache) > 100_000:
            self._cache.popitem(last=False)
        return p

    def expected(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each row of probabilities, the k most likely next keys with their probabilities."""
        p = probs.copy()
        p[:, [PAD, UNK]] = -1.0  # never predicted
        k = min(k, p.shape[1] - 2)
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        vals = np.take_along_axis(probs, top, axis=1)
        labels = [self.label(i) for i in range(p.shape[1])]
        return [
            [(labels[i], float(v)) for i, v in zip(t_row, v_row, strict=True)]
            for t_row, v_row in zip(top.tolist(), vals.tolist(), strict=True)
        ]


def _above(x: float) -> float:
    return float(np.nextafter(x, math.inf))


def _above_level(level: float) -> float:
    """A tail probability just above ``level`` whose -log10 is still below the level's
    (the next float up can round to the same score): a session the fold check cleared
    sits right there, and ranks below every flagged one."""
    return level * (1.0 + 1e-9)


class _RowSet:
    """A set of rows of key indices with a vectorised membership test."""

    def __init__(self, rows: np.ndarray, n_symbols: int) -> None:
        self.width = rows.shape[1] if rows.ndim == 2 else 0
        self.n_symbols = n_symbols
        self._packed = np.unique(_pack(rows, n_symbols)) if len(rows) else np.zeros(0, np.int64)
        self._bytes = {r.tobytes() for r in np.ascontiguousarray(rows, dtype=np.int32)}

    @classmethod
    def empty(cls) -> _RowSet:
        return cls(np.zeros((0, 0), dtype=np.int32), 1)

    def contains(self, rows: np.ndarray) -> np.ndarray:
        packed = _pack(rows, self.n_symbols)
        if packed is not None:
            return np.isin(packed, self._packed)
        rows = np.ascontiguousarray(rows, dtype=np.int32)
        return np.fromiter((r.tobytes() in self._bytes for r in rows), bool, len(rows))

    def contains_next(self, contexts: np.ndarray, which: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """``contains`` of the rows ``contexts[which]`` followed by ``nxt``, without
        building them: the few distinct contexts are packed once."""
        bits = max(1, int(self.n_symbols - 1).bit_length())
        packed = _pack(contexts, self.n_symbols)
        if packed is None or bits * (contexts.shape[1] + 1) > 62:
            return self.contains(np.concatenate([contexts[which], nxt[:, None]], axis=1))
        return np.isin((packed[which] << bits) | nxt.astype(np.int64), self._packed)


def _pack(rows: np.ndarray, n_symbols: int) -> np.ndarray | None:
    """Each row as one int64 (None when the rows do not fit in 62 bits)."""
    bits = max(1, int(n_symbols - 1).bit_length())
    if rows.ndim != 2 or bits * rows.shape[1] > 62:
        return None
    packed = np.zeros(len(rows), dtype=np.int64)
    for col in range(rows.shape[1]):
        packed = (packed << bits) | rows[:, col].astype(np.int64)
    return packed


def _first_flag(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per session, the position of its first flagged entry, or -1."""
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(flags)
    first = np.full(n, -1, dtype=np.int64)
    if len(idx) == 0:
        return first
    j = np.searchsorted(idx, offsets[:-1])
    ok = j < len(idx)
    cand = idx[np.minimum(j, len(idx) - 1)]
    hit = ok & (cand < offsets[1:])
    first[hit] = cand[hit] - offsets[:-1][hit]
    return first


def _unique_rows(rows: np.ndarray, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and the inverse index; rows packed into one int64 when they fit."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    bits = max(1, int(n_symbols - 1).bit_length())
    if bits * rows.shape[1] <= 62:
        packed = np.zeros(len(rows), dtype=np.int64)
        for col in range(rows.shape[1]):
            packed = (packed << bits) | rows[:, col].astype(np.int64)
        _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
        return rows[first], inverse.reshape(-1)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _rank_of(
    probs: np.ndarray, inverse: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Probability and rank of each row's target, computed once per distinct (window, target)."""
    n = len(target)
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    safe_target = np.where(target < probs.shape[1], target, 0)
    pair = inverse.astype(np.int64) * probs.shape[1] + safe_target
    uniq, pair_inv = np.unique(pair, return_inverse=True)
    w_idx = uniq // probs.shape[1]
    t_idx = uniq % probs.shape[1]
    p_obs = probs[w_idx, t_idx]
    rank = np.empty(len(uniq), dtype=np.int64)
    masked = probs.copy()
    masked[:, [PAD, UNK]] = -1.0  # not predictable keys do not take ranks
    for s in range(0, len(uniq), 65536):
        sl = slice(s, s + 65536)
        rank[sl] = (masked[w_idx[sl]] > p_obs[sl, None]).sum(axis=1) + 1
    pair_inv = pair_inv.reshape(-1)
    return p_obs[pair_inv].astype(np.float32), rank[pair_inv]


# --- training (PyTorch) -------------------------------------------------------------------


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return name


def train_weights(
    rows: np.ndarray,
    counts: np.ndarray,
    n_outputs: int,
    config: KeyModelConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the key network on distinct rows weighted by their counts; NumPy weights out."""
    import torch

    torch.manual_seed(config.seed)
    device = _device(config.device)
    # One CPU thread: these networks are small, and with a second thread PyTorch spins on a
    # busy core (measured here: a step took 0.5 s with 2 threads, 2 ms with 1 under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(rows, counts, n_outputs, config, progress, device)
    finally:
        torch.set_num_threads(threads)


def _train(
    rows: np.ndarray,
    counts: np.ndarray,
    n_outputs: int,
    config: KeyModelConfig,
    progress: Callable[[int, int, float], None] | None,
    device: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch
    from torch import nn

    from logwarden.models.nets import KeyNet

    h = config.window
    net = KeyNet(n_outputs, config.embedding, config.hidden, config.layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    x_all = torch.as_tensor(rows[:, :h], dtype=torch.long, device=device)
    y_all = torch.as_tensor(rows[:, h], dtype=torch.long, device=device)
    w_all = torch.as_tensor(counts, dtype=torch.float32, device=device)
    total_w = float(w_all.sum())
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    best = math.inf
    stale = 0
    epoch = 0
    loss_value = math.inf
    # Distinct windows are few (HDFS: 4.6k), so an epoch is a handful of batches; about 12
    # steps an epoch keep the number of updates, not the data size, in charge of convergence.
    batch = max(32, min(config.batch_size, -(-len(rows) // 12)))
    converged = False  # stopped by patience, not by the epochs' cap
    for epoch in range(1, config.epochs + 1):
        net.train()
        perm = torch.randperm(len(rows), generator=gen).to(device)
        epoch_loss = 0.0
        for s in range(0, len(rows), batch):
            idx = perm[s : s + batch]
            w = w_all[idx]
            loss = (loss_fn(net(x_all[idx]), y_all[idx]) * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss += float(loss.detach()) * float(w.sum())
        loss_value = epoch_loss / total_w
        if progress is not None:
            progress(epoch, config.epochs, loss_value)
        if loss_value < best * 0.99:
            best = loss_value
            stale = 0
        else:
            stale += 1
            if stale >= config.patience:
                converged = True
                break
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return weights, {"epochs": epoch, "loss": loss_value, "device": device, "converged": converged}


def fit_key_model(
    sessions: Sequence[Sequence[str]],
    config: KeyModelConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    fold_progress: Callable[[int, int], None] | None = None,
    n_jobs: int = 1,
) -> KeyModel:
    """Train the key model on normal sessions (sequences of key labels) and calibrate it.

    The network trains on all sessions. Its threshold comes from scores every session got
    from a model that did not train on it: ``folds`` fold models, each trained on the
    other folds exactly as the full model is (``cross_fit``), give the session statistic
    of every session; the rules' rates are counted leaving each session out
    (``calibrate``). ``fold_progress(done, folds)`` follows the fold models. With
    ``n_jobs`` > 1 (and training on the CPU) the fold models train in that many worker
    processes while this one trains the full model: same models, less waiting.

    Nothing depends on the order of ``sessions``: the vocabulary is ordered by frequency
    (``vocabulary``), training runs on distinct rows, and folds are drawn over the sessions
    in a canonical order. The same sessions in another order, or under other labels for
    the same keys, give the same model.
    """
    config = config or KeyModelConfig()
    if not sessions:
        raise ValueError("no training sessions")
    n = len(sessions)
    if config.top_g is None and (config.folds < 2 or n < config.folds):
        raise ValueError(
            f"the automatic threshold needs folds >= 2 and at least that many sessions "
            f"(got {n} sessions, folds={config.folds}): give more sessions or set top_g (--top-g)"
        )
    keys = vocabulary(sessions)
    index = {k: i + FIRST_KEY for i, k in enumerate(keys)}
    encoded = [np.fromiter((index[k] for k in s), dtype=np.int32, count=len(s)) for s in sessions]
    n_outputs = len(keys) + FIRST_KEY
    import time

    started = time.perf_counter()
    cross_fitting = config.folds >= 2 and n >= config.folds
    jobs = None
    # Workers pay a start-up (a Python with PyTorch each): only worth it for real data.
    big = sum(len(e) + 1 for e in encoded) >= PARALLEL_MIN_WINDOWS
    if cross_fitting and n_jobs > 1 and big and _device(config.device) == "cpu":
        # Fold models in worker processes (spawned: a fresh interpreter, nothing inherited
        # from a caller with threads), started before the full model trains here.
        jobs = _FoldJobs(encoded, n_outputs, config, min(n_jobs, config.folds))
    try:
        weights, info, n_rows, (distinct, counts) = _train_on(encoded, n_outputs, config, progress)
        info.update({"sessions": n, "windows": n_rows, "distinct_windows": len(distinct)})
        placeholder = Threshold("top_g", g=config.top_g or 1)
        model = KeyModel(config, keys, weights, placeholder, info)
        model.training_rows = (distinct.astype(np.int32), counts.astype(np.int64))
        fold_started = time.perf_counter()
        statistic = worst_rank = None
        fold_info: dict[str, Any] = {"folds": 0}
        fold_weights: list[dict[str, np.ndarray]] | None = None
        if jobs is not None:
            statistic, worst_rank, fold_info, fold_weights = jobs.results(fold_progress)
        elif cross_fitting:
            statistic, worst_rank, fold_info, fold_weights = cross_fit(
                encoded, n_outputs, config, fold_progress
            )
    finally:
        if jobs is not None:
            jobs.close()
    model.threshold, calibration, transitions, cal_info, cross_fitted = calibrate(
        encoded, n_outputs, statistic, worst_rank, config
    )
    if calibration.fold_tails is not None and fold_weights is not None and all(fold_weights):
        model = replace(model, fold_weights=fold_weights)
    model.calibrate_with(calibration, transitions)
    # What the model flags of its own training sessions: the baseline an online update's
    # re-check compares with (``online.recheck_threshold``).
    own = model.assess(encoded)
    model.threshold = replace(
        model.threshold, checked_sessions=n, checked_flagged=int((own.first >= 0).sum())
    )
    model.recheck_sessions = encoded
    model.cross_fitted = cross_fitted
    model.own_assessment = own
    info["calibration"] = {
        **cal_info,
        **fold_info,
        "workers": 1 if jobs is None else jobs.workers,
        # Wall time past the full model's training (all of the fold models' when serial).
        "seconds": round(time.perf_counter() - fold_started, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    return model


def vocabulary(sessions: Sequence[Sequence[str]]) -> list[str]:
    """The keys of ``sessions`` by decreasing frequency; ties broken by the number of
    sessions holding the key, then by where the key sits in its sessions, then the label.

    Nothing here depends on session order, and only the last tie-break on the labels: the
    same sessions under other key names (raw logs parsed again, renumbered templates)
    give the same indices, hence the same network for the same seed.
    """
    count: Counter[str] = Counter()
    holders: Counter[str] = Counter()
    place: Counter[str] = Counter()
    for s in sessions:
        count.update(s)
        holders.update(set(s))
        for i, k in enumerate(s):
            place[k] += i
    return sorted(count, key=lambda k: (-count[k], -holders[k], place[k], k))


def _train_on(
    encoded: Sequence[np.ndarray],
    n_outputs: int,
    config: KeyModelConfig,
    progress: Callable[[int, int, float], None] | None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], int, tuple[np.ndarray, np.ndarray]]:
    """Train a network on the sessions' distinct rows: its weights, training facts, the
    number of rows and the distinct rows with their counts."""
    rows, _ = session_rows(encoded, config.window)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    weights, info = train_weights(distinct, counts, n_outputs, config, progress)
    return weights, info, len(rows), (distinct, counts)


def canonical_order(encoded: Sequence[np.ndarray]) -> np.ndarray:
    """The sessions' indices sorted by content (copies of a sequence in input order)."""
    return np.array(sorted(range(len(encoded)), key=lambda i: encoded[i].tobytes()), dtype=np.int64)


def assign_folds(encoded: Sequence[np.ndarray], folds: int, seed: int) -> np.ndarray:
    """A fold per session, balanced, drawn over the sessions sorted by content: the same
    sessions in any order get the same folds (copies of one sequence are spread out)."""
    n = len(encoded)
    order = canonical_order(encoded)
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.random.default_rng(seed).permutation(np.arange(n) % folds)
    return fold


def cross_fit(
    encoded: Sequence[np.ndarray],
    n_outputs: int,
    config: KeyModelConfig,
    fold_progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Per session, the session statistic and the worst rank given by a fold model trained
    on the other folds (``config.folds`` of them, folds by ``assign_folds``, seeds
    ``seed + 1 + k``, trained as ``config`` says, early stop included); also the fold
    models' epochs."""
    n = len(encoded)
    statistic = np.zeros(n)
    worst_rank = np.zeros(n, dtype=np.int64)
    epochs: list[int] = []
    weights: list[dict[str, np.ndarray]] = []
    for k in range(config.folds):
        if fold_progress is not None:
            fold_progress(k, config.folds)
        held, stat, worst, ep, w = fold_job(encoded, n_outputs, config, k)
        statistic[held], worst_rank[held] = stat, worst
        epochs.append(ep)
        weights.append(w)
    if fold_progress is not None:
        fold_progress(config.folds, config.folds)
    return statistic, worst_rank, {"folds": config.folds, "fold_epochs": epochs}, weights


def fold_job(
    encoded: Sequence[np.ndarray], n_outputs: int, config: KeyModelConfig, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, dict[str, np.ndarray]]:
    """Fold model ``k``: trained on the other folds, it scores fold ``k``'s sessions.
    Returns their indices, statistics, worst ranks, the model's epochs and its weights."""
    fold = assign_folds(encoded, config.folds, config.seed)
    held = np.flatnonzero(fold == k)
    rest = [encoded[i] for i in np.flatnonzero(fold != k)]
    if len(held) == 0 or not rest:
        return held, np.zeros(len(held)), np.zeros(len(held), dtype=np.int64), 0, {}
    cfg = replace(config, seed=config.seed + 1 + k)
    weights, info, _, _ = _train_on(rest, n_outputs, cfg, None)
    fold_model = KeyModel(cfg, [""] * (n_outputs - FIRST_KEY), weights, Threshold("top_g", g=1))
    scores = fold_model.score([encoded[i] for i in held])
    worst = np.maximum.reduceat(scores.rank, scores.offsets[:-1])
    return held, session_statistic(scores), worst, int(info["epochs"]), weights


class _FoldJobs:
    """The fold models of ``cross_fit``, trained in a pool of spawned worker processes."""

    def __init__(
        self, encoded: Sequence[np.ndarray], n_outputs: int, config: KeyModelConfig, workers: int
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.folds = config.folds
        self.n = len(encoded)
        from logwarden.children import die_with_parent

        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            # A killed train must not leave fold models training on (and then idle).
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
        data = list(encoded)
        self._futures = [
            self._pool.submit(fold_job, data, n_outputs, config, k) for k in range(config.folds)
        ]

    def results(
        self, fold_progress: Callable[[int, int], None] | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[dict[str, np.ndarray]]]:
        from concurrent.futures import as_completed

        statistic = np.zeros(self.n)
        worst_rank = np.zeros(self.n, dtype=np.int64)
        epochs = [0] * self.folds
        weights: list[dict[str, np.ndarray]] = [{} for _ in range(self.folds)]
        if fold_progress is not None:
            fold_progress(0, self.folds)
        index = {f: k for k, f in enumerate(self._futures)}
        for done, fut in enumerate(as_completed(self._futures), start=1):
            held, stat, worst, ep, w = fut.result()
            statistic[held], worst_rank[held] = stat, worst
            epochs[index[fut]] = ep
            weights[index[fut]] = w
            if fold_progress is not None:
                fold_progress(done, self.folds)
        return statistic, worst_rank, {"folds": self.folds, "fold_epochs": epochs}, weights

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class LeftOut(NamedTuple):
    """``left_out_rules``' findings (see there)."""

    unseen_key: np.ndarray
    ruled: np.ndarray
    context: int
    transitions: np.ndarray
    max_counts: np.ndarray | None
    counted: np.ndarray  # the sessions the count rule flags (none when it is not kept)
    ordered: np.ndarray  # the sessions the transitions at ``context`` flag (none at 0)


def left_out_rules(
    encoded: Sequence[np.ndarray],
    n_outputs: int,
    window: int,
    budget: float,
    counts: bool = True,
) -> LeftOut:
    """The rules, learned leaving each session out, per session:

    * an unseen key: it holds a key no other session holds (always a rule);
    * the count rule (with ``counts``): it holds a key more times than any other session
      does; kept when the sessions flagged so far stay within ``budget``;
    * an unseen transition: it holds a transition (``c`` keys, padded, then the next key or
      END) no other session holds, for the longest ``c`` <= ``window`` whose sessions,
      with those of the rules before, stay within ``budget``.

    Returns the unseen-key mask, the mask of all the rules, ``c`` (0: none), the distinct
    transitions of all sessions at ``c`` (rows of c + 1 indices), the count rule's
    largest count per key index (None when it is not kept), and the masks of the count
    rule and of the transitions alone (each rule's own rate, ``KeyCalibration``)."""
    n = len(encoded)
    uniq = [np.unique(e) for e in encoded]
    holders = np.bincount(np.concatenate([*uniq, np.zeros(0, np.int32)]), minlength=n_outputs)
    unseen_key = np.fromiter(((holders[u] == 1).any() for u in uniq), dtype=bool, count=n)
    base = unseen_key.copy()
    max_counts = None
    counted = np.zeros(n, dtype=bool)
    if counts:
        over, most = _left_out_counts(encoded, n_outputs)
        if (base | over).mean() <= budget:
            base |= over
            max_counts = most
            counted = over
    rows, offsets = session_rows(encoded, window)
    owner = np.repeat(np.arange(n), np.diff(offsets))
    none = np.zeros(n, dtype=bool)
    best = (0, base, np.zeros((0, 1), dtype=np.int32), none)
    if base.mean() > budget:
        return LeftOut(unseen_key, best[1], 0, best[2], max_counts, counted, none)
    for c in range(1, window + 1):
        part = rows[:, window - c :]
        distinct, which = _unique_rows(part, n_outputs)
        # Sessions holding each transition: a transition held by one session is new to it.
        held = np.unique(owner * len(distinct) + which)
        holders_t = np.bincount(held % len(distinct), minlength=len(distinct))
        alone = np.bincount(owner, weights=holders_t[which] == 1, minlength=n) > 0
        flagged = base | alone
        # Longer contexts only split transitions further: once over budget, all longer are.
        if flagged.mean() > budget:
            break
        best = (c, flagged, distinct, alone)
    return LeftOut(unseen_key, best[1], best[0], best[2], max_counts, counted, best[3])


def left_out_ends(
    encoded: Sequence[np.ndarray], ruled: np.ndarray, budget: float
) -> tuple[np.ndarray, list[int] | None]:
    """The early-end rule alone (for a calibration whose transition context is 0): per
    session, ``ruled`` or its last key (PAD: empty) is one no other session ends with;
    with the keys some session ends with, or None when that is over ``budget``."""
    alone, ends = _ends_alone(encoded)
    flagged = ruled | alone
    if len(encoded) == 0 or flagged.mean() > budget:
        return ruled, None
    return flagged, ends.tolist()


def _ends_alone(encoded: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per session, whether its last key (PAD: empty) is one no other session ends with;
    and the keys sessions end with."""
    last = np.fromiter((int(e[-1]) if len(e) else PAD for e in encoded), np.int64, len(encoded))
    ends, holders = np.unique(last, return_counts=True)
    return holders[np.searchsorted(ends, last)] == 1, ends


def _shortest_alone(encoded: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """Per session, whether it is shorter than every other session (at least two); and the
    fewest entries a session holds."""
    lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
    low, second = np.partition(lengths, 1)[:2]
    return lengths < second, int(low)


def left_out_short(
    encoded: Sequence[np.ndarray], ruled: np.ndarray, budget: float
) -> tuple[np.ndarray, int | None]:
    """The length rule, left out: per session, ``ruled`` or it is shorter than every other
    session; with the fewest entries a session holds, or None when that is over
    ``budget``."""
    if len(encoded) < 2:
        return ruled, None
    alone, low = _shortest_alone(encoded)  # only the shortest, and only when alone
    flagged = ruled | alone
    if flagged.mean() > budget:
        return ruled, None
    return flagged, low


def _left_out_counts(
    encoded: Sequence[np.ndarray], n_outputs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per session, whether it holds some key more times than every other session (the
    count rule, left out), and per key index the largest count in one session."""
    n = len(encoded)
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n)
    most = np.zeros(n_outputs, dtype=np.int64)
    over = np.zeros(n, dtype=bool)
    if n == 0 or lengths.sum() == 0:
        return over, most
    keys = np.concatenate([np.asarray(e, dtype=np.int64) for e in encoded])
    owner = np.repeat(np.arange(n), lengths)
    pair, count = np.unique(owner * n_outputs + keys, return_counts=True)
    who, key = pair // n_outputs, pair % n_outputs
    np.maximum.at(most, key, count)
    # The second largest count of each key: the largest once one holder of the largest
    # is set aside (ties at the top give the largest again).
    top = count == most[key]
    holders_top = np.bincount(key[top], minlength=n_outputs)
    second = np.zeros(n_outputs, dtype=np.int64)
    np.maximum.at(second, key[~top], count[~top])
    second = np.where(holders_top > 1, most, second)
    alone = top & (holders_top[key] == 1) & (count > second[key])
    over[who[alone]] = True
    most[:FIRST_KEY] = 0
    return over, most


def calibrate(
    encoded: Sequence[np.ndarray],
    n_outputs: int,
    statistic: np.ndarray | None,
    worst_rank: np.ndarray | None,
    config: KeyModelConfig,
) -> tuple[
    Threshold, KeyCalibration, np.ndarray, dict[str, Any], tuple[np.ndarray, np.ndarray] | None
]:
    """The threshold, calibration and the rule's known transitions, from cross-fitted
    statistics and worst ranks (see ``fit_key_model``; None without cross-fitting, for
    top-g alone: the rules, and no false-positive estimate); also each session's
    cross-fitted score on the detection scale and whether it was flagged (None without
    cross-fitting).

    The rules (unseen key, unseen transition; ``left_out_rules``) flag a share ``r`` of the
    sessions left out. Probability mode: the probability cut gets the rest of the target,
    ``level = (target - r) / (1 - r)`` (at least a tenth of the target), and sits where the
    tail model of the other sessions' statistics puts that level (``_empirical_cut`` when
    they have no tail to fit). Top-g mode: the share flagged by the rules or a rank beyond
    g, counted.
    """
    n = len(encoded)
    budget = config.rule_share * config.target_fpr
    # rule_share 0: unseen keys only (no count rule; a context of 0 keys tells nothing new).
    longest = config.window if config.rule_share > 0 else 0
    rules = left_out_rules(encoded, n_outputs, longest, budget, counts=config.rule_share > 0)
    unseen_key, ruled, context, transitions, max_counts = rules[:5]
    ordered = rules.ordered.copy()  # the order rules: transitions, ends, length
    end_keys = None
    if context == 0 and config.rule_share > 0:
        # No transitions fit the budget: the ends alone still may (a session ending where
        # no normal session ended is an early end whatever the network says).
        ruled, end_keys = left_out_ends(encoded, ruled, budget)
        if end_keys is not None:
            ordered |= _ends_alone(encoded)[0]
    min_length = None
    if config.rule_share > 0:
        ruled, min_length = left_out_short(encoded, ruled, budget)
        if min_length is not None:
            ordered |= _shortest_alone(encoded)[0]
    rule_counts = {
        "unseen_key": int(unseen_key.sum()),
        "unseen_transition": int(ordered.sum()),
        "count_exceeded": int(rules.counted.sum()),
    }
    r = float(ruled.mean())
    rest = statistic[~ruled] if statistic is not None else np.zeros(0)
    tail = TailModel.fit(rest) if len(rest) else None
    info: dict[str, Any] = {
        "unseen_key_sessions": int(unseen_key.sum()),
        "rule_sessions": int(ruled.sum()),
        "rule_counts": rule_counts,
        "rule_context": context,
        "count_rule": max_counts is not None,
        "end_rule": end_keys is not None,
        "min_length": min_length,
    }
    if config.top_g is not None and worst_rank is None:
        threshold = Threshold("top_g", g=config.top_g)
    elif config.top_g is not None:
        k = int(((worst_rank > config.top_g) | ruled).sum())
        low, high = binomial_interval(k, n)
        threshold = Threshold(
            "top_g",
            g=config.top_g,
            expected_fpr=k / n,
            fpr_low=low,
            fpr_high=high,
            calibration_sessions=n,
            calibration_flagged=k,
            method=f"cross-fitted, {config.folds} folds, counted",
        )
    else:
        level = 0.1 * config.target_fpr
        if r < 1.0:
            level = max((config.target_fpr - r) / (1.0 - r), level)
        assert statistic is not None, "the automatic threshold needs cross-fitted statistics"
        cut = math.inf
        if tail is not None:
            cut = tail.isf(level)
            if not tail.fitted_tail:
                cut = _empirical_cut(tail, cut, encoded, statistic, config)
        tau = float(min(max(10.0 ** (-cut), PROB_FLOOR), 1.0)) if math.isfinite(cut) else PROB_FLOOR
        cut = -math.log10(tau)
        beyond = float(tail.sf(_above(cut))) if tail is not None else 0.0
        expected = r + (1.0 - r) * beyond
        k = int(ruled.sum() + (rest > cut).sum())
        if tail is not None and tail.fitted_tail:
            # Resampled in the sessions' canonical order: the interval, too, is the same
            # for the same sessions in any order.
            order = canonical_order(encoded)
            rng = np.random.default_rng(config.seed)
            low, high = bootstrap_rate(statistic[order], ruled[order], cut, rng)
            method = f"cross-fitted, {config.folds} folds, generalized Pareto tail"
        else:
            low, high = binomial_interval(k, n)
            method = f"cross-fitted, {config.folds} folds, counted (no tail to fit)"
        threshold = Threshold(
            "probability",
            tau=tau,
            target_fpr=config.target_fpr,
            level=level,
            expected_fpr=expected,
            fpr_low=min(low, expected),
            fpr_high=max(high, expected),
            calibration_sessions=n,
            calibration_flagged=k,
            method=method,
        )
        info["level"] = level
    fold_tails = None
    if threshold.mode == "probability" and statistic is not None and config.fold_check:
        # Each fold model's own tail: the statistics it gave the sessions it did not train
        # on, the rules' sessions left out as above (see KeyModel.fold_statistics).
        fold = assign_folds(encoded, config.folds, config.seed)
        parts = [statistic[(fold == k) & ~ruled] for k in range(config.folds)]
        if all(len(part) for part in parts):
            fold_tails = [TailModel.fit(part) for part in parts]
    calibration = KeyCalibration(
        sessions=n,
        folds=config.folds if statistic is not None else 0,
        tail=tail,
        context=context,
        unseen_key_sessions=int(unseen_key.sum()),
        rule_sessions=int(ruled.sum()),
        rule_keys=n_outputs,
        max_counts=None if max_counts is None else max_counts.tolist(),
        end_keys=end_keys,
        fold_tails=fold_tails,
        min_length=min_length,
        rule_counts=rule_counts,
    )
    cross_fitted = None
    if statistic is not None and worst_rank is not None:
        if threshold.mode == "top_g":
            assert threshold.g is not None
            flagged = ruled | (worst_rank > threshold.g)
            scores = np.where(ruled, np.maximum(worst_rank, threshold.g + 1), worst_rank)
        else:
            assert threshold.level is not None and threshold.tau is not None
            flagged = ruled | (statistic > -math.log10(threshold.tau))
            p = tail.sf(statistic) if tail is not None else np.ones(n)
            # Each session left out, by the rules it set off (as detection scores them).
            rule_p = calibration.sessions_rule_p(unseen_key, ordered, rules.counted)
            p = np.where(ruled, np.minimum(p, rule_p), p)
            level = threshold.level
            p = np.where(flagged, np.minimum(p, level), np.maximum(p, _above_level(level)))
            scores = 0.0 - np.log10(np.maximum(p, 1e-300))
        cross_fitted = (scores.astype(np.float64), flagged)
    return threshold, calibration, transitions.astype(np.int32), info, cross_fitted


def _empirical_cut(
    tail: TailModel,
    cut: float,
    encoded: Sequence[np.ndarray],
    statistic: np.ndarray,
    config: KeyModelConfig,
) -> float:
    """Where the cut goes when the statistics have no tail to fit (a handful of values).

    The full model will not reproduce a fold model's probabilities exactly, so a cut right
    at a value the normal sessions took would flag some of them by chance. Below the
    largest value the cut moves half way to the next one; at the largest it moves past it
    by the largest disagreement of two fold models on one key sequence."""
    values = np.asarray(tail.grid)
    above = values[values > cut]
    if len(above):
        return (cut + float(above.min())) / 2.0
    fold = assign_folds(encoded, config.folds, config.seed)
    return cut + _fold_disagreement(encoded, statistic, fold)


def _fold_disagreement(
    encoded: Sequence[np.ndarray], statistic: np.ndarray, fold: np.ndarray
) -> float:
    """The largest spread of the statistic one key sequence got from different fold models
    (0 when no sequence sits in two folds)."""
    by_seq: dict[bytes, dict[int, float]] = {}
    for e, s, f in zip(encoded, statistic.tolist(), fold.tolist(), strict=True):
        by_seq.setdefault(e.tobytes(), {})[f] = s
    spreads = [max(v.values()) - min(v.values()) for v in by_seq.values() if len(v) > 1]
    return max(spreads, default=0.0)
