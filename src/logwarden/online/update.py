"""Online updates from sessions an operator marked normal (DeepLog section 3.3).

The building blocks ``DeepLog.partial_fit`` puts together:

* :class:`Memory`, what a model keeps from training so that it can be updated later
  without its training data: a *replay sample* of normal (window, next key) rows with
  their counts, *calibration* sessions (training sessions) its threshold is re-checked on,
  and the feedback it has learnt so far (rows and sessions). It is saved in the bundle
  (``online/...``).
* :func:`fine_tune`: the key network, warm-started from its weights (with the vocabulary
  grown for new keys, ``KeyModel.grow``), trained for a few steps on the feedback rows
  mixed with the replay sample, the feedback carrying ``feedback_share`` of the loss: the
  new behaviour is learnt and the old one is not forgotten.
* :func:`recheck_threshold`: the probability threshold checked on the calibration
  sessions: kept while the updated model flags about as many of them as the model did
  when trained, raised when it flags clearly more; the feedback is then checked against
  it: sessions marked normal must pass (or fine-tuning goes on for another round),
  confirmed ones must not.
* :func:`update_param_models`: parameter models for the keys the feedback touches: new
  keys and new (key, predecessor) transitions get a model of their own from the feedback
  entries (robust statistics when few), units that flag a feedback entry take it as
  normal (``ParamModels.accept``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from itertools import pairwise
from typing import Any

import numpy as np

from logwarden.errors import ConfigError
from logwarden.models.keys import (
    FIRST_KEY,
    KeyModel,
    Threshold,
    session_rows,
)
from logwarden.models.params import ParamModels, build_series
from logwarden.sessions import Session

__all__ = [
    "Memory",
    "UpdatePolicy",
    "fine_tune",
    "recheck_threshold",
    "reworded",
    "template_id",
    "update_param_models",
]


@dataclass
class UpdatePolicy:
    """How an online update learns from feedback."""

    # Share of the fine-tuning loss carried by the feedback windows (the replay sample has
    # the rest): enough for a handful of sessions to be learnt next to tens of thousands of
    # replayed windows, little enough that they do not crowd the old behaviour out.
    feedback_share: float = 0.2
    # Optimizer steps of one round at most (the loss settling for ``patience`` steps ends
    # it earlier): steps, not epochs, since a handful of distinct rows makes an epoch of
    # two steps and tens of thousands one of twelve.
    steps: int = 60
    patience: int = 24
    batch_size: int = 128
    # Replayed rows learnt against the model's own distribution before the update (True),
    # or against the key that came, as at training (False).
    distill: bool = True
    # Rounds of fine-tuning while a session marked normal is still flagged.
    rounds: int = 3
    learning_rate: float = 0.003
    # While an update would silence a confirmed anomaly, the feedback share is halved and
    # the update tried again, this many times in all; then it is refused.
    attempts: int = 3
    # A new template this similar to a known one (token sequences, difflib's ratio) that
    # the sessions marked normal no longer log is taken for its rewording: the new key
    # starts as a copy of the old one in the network. 1.0 turns this off.
    reworded_similarity: float = 0.8
    replay_rows: int = 50_000  # distinct training rows kept for replay (the most frequent)
    calibration_sessions: int = 50_000  # training sessions kept for threshold re-checks
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (0.0 < self.feedback_share < 1.0, "feedback_share", "must be in (0, 1)"),
            (self.steps >= 1, "steps", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.patience >= 1, "patience", "must be >= 1"),
            (self.rounds >= 1, "rounds", "must be >= 1"),
            (self.learning_rate > 0, "learning_rate", "must be > 0"),
            (self.attempts >= 1, "attempts", "must be >= 1"),
            (0.0 < self.reworded_similarity <= 1.0, "reworded_similarity", "must be in (0, 1]"),
            (self.replay_rows >= 1, "replay_rows", "must be >= 1"),
            (self.calibration_sessions >= 1, "calibration_sessions", "must be >= 1"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(f"{name} {msg}", field=name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UpdatePolicy:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _empty_rows(width: int) -> np.ndarray:
    return np.zeros((0, width), dtype=np.int32)


def _flat(sessions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = (
        np.concatenate([np.asarray(s, dtype=np.int32) for s in sessions])
        if sessions
        else np.zeros(0, np.int32)
    )
    return flat, offsets


def _unflat(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(flat):
        raise ValueError("session offsets do not match the keys")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("session offsets are not increasing")
    return [flat[a:b].astype(np.int32) for a, b in pairwise(offsets.tolist())]


def merge_rows(
    a: np.ndarray, a_counts: np.ndarray, b: np.ndarray, b_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of both sets, counts added."""
    rows = np.vstack([a, b]).astype(np.int32)
    counts = np.concatenate([a_counts, b_counts]).astype(np.int64)
    if len(rows) == 0:
        return rows, counts
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    summed = np.zeros(len(distinct), dtype=np.int64)
    np.add.at(summed, inverse.reshape(-1), counts)
    return distinct.astype(np.int32), summed


def distinct_rows(encoded: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (window, next key) rows of encoded sessions, with their counts."""
    rows, _ = session_rows(list(encoded), window)
    if len(rows) == 0:
        return _empty_rows(window + 1), np.zeros(0, dtype=np.int64)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    return distinct.astype(np.int32), counts.astype(np.int64)


@dataclass
class Memory:
    """What a model keeps for online updates (see the module docstring)."""

    replay_rows: np.ndarray  # (n, window + 1) distinct normal rows of the training part
    replay_counts: np.ndarray  # (n,) how often each occurred
    calibration: list[np.ndarray]  # encoded training sessions (threshold re-checks)
    feedback_rows: np.ndarray  # (m, window + 1) rows of sessions marked normal so far
    feedback_counts: np.ndarray
    feedback_sessions: list[np.ndarray]  # those sessions, encoded
    replay_total: int = 0  # training rows before the sample was cut (for reports)

    @classmethod
    def from_training(cls, model: KeyModel, policy: UpdatePolicy | None = None) -> Memory | None:
        """The memory of a freshly trained key model (None when training left nothing)."""
        policy = policy or UpdatePolicy()
        if model.training_rows is None:
            return None
        rows, counts = model.training_rows
        total = len(rows)
        if len(rows) > policy.replay_rows:
            # The most frequent rows: what most normal runs do, which forgetting would hurt
            # most; rare rows move little in a few epochs of fine-tuning anyway.
            keep = np.sort(np.argsort(-counts, kind="stable")[: policy.replay_rows])
            rows, counts = rows[keep], counts[keep]
        calibration = list(model.recheck_sessions or [])
        if len(calibration) > policy.calibration_sessions:
            rng = np.random.default_rng(policy.seed)
            pick = np.sort(rng.choice(len(calibration), policy.calibration_sessions, False))
            calibration = [calibration[i] for i in pick]
        width = rows.shape[1]
        return cls(
            rows.astype(np.int32),
            counts.astype(np.int64),
            calibration,
            _empty_rows(width),
            np.zeros(0, dtype=np.int64),
            [],
            total,
        )

    def learn(self, encoded: Sequence[np.ndarray], window: int) -> Memory:
        """A copy that also holds these feedback sessions (encoded)."""
        rows, counts = distinct_rows(encoded, window)
        fb_rows, fb_counts = merge_rows(self.feedback_rows, self.feedback_counts, rows, counts)
        return replace(
            self,
            feedback_rows=fb_rows,
            feedback_counts=fb_counts,
            feedback_sessions=[*self.feedback_sessions, *encoded],
        )

    @property
    def window(self) -> int:
        return int(self.replay_rows.shape[1]) - 1

    def summary(self) -> dict[str, int]:
        return {
            "window": self.window,
            "replay_rows": len(self.replay_rows),
            "replay_rows_trained": self.replay_total,
            "calibration_sessions": len(self.calibration),
            "feedback_rows": len(self.feedback_rows),
            "feedback_sessions": len(self.feedback_sessions),
        }

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        cal, cal_off = _flat(self.calibration)
        fb, fb_off = _flat(self.feedback_sessions)
        arrays = {
            "replay_rows": self.replay_rows,
            "replay_counts": self.replay_counts,
            "calibration_keys": cal,
            "calibration_offsets": cal_off,
            "feedback_rows": self.feedback_rows,
            "feedback_counts": self.feedback_counts,
            "feedback_keys": fb,
            "feedback_offsets": fb_off,
        }
        return self.summary(), arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Memory:
        """ValueError/KeyError when the arrays do not form a memory of the meta's window."""
        window = int(meta["window"])
        rows = np.asarray(arrays["replay_rows"], dtype=np.int32)
        counts = np.asarray(arrays["replay_counts"], dtype=np.int64)
        fb_rows = np.asarray(arrays["feedback_rows"], dtype=np.int32)
        fb_counts = np.asarray(arrays["feedback_counts"], dtype=np.int64)
        for r, c in ((rows, counts), (fb_rows, fb_counts)):
            if r.ndim != 2 or r.shape[1] != window + 1 or c.shape != (len(r),):
                raise ValueError("replay rows do not fit the model's window")
        return cls(
            rows,
            counts,
            _unflat(arrays["calibration_keys"], arrays["calibration_offsets"]),
            fb_rows,
            fb_counts,
            _unflat(arrays["feedback_keys"], arrays["feedback_offsets"]),
            int(meta.get("replay_rows_trained", len(rows))),
        )


# Teacher predictions kept for all replayed rows up to this many cells (rows x outputs,
# float32: 80 MB); beyond, they are computed per batch.
TEACHER_CELLS = 20_000_000


def fine_tune(
    model: KeyModel,
    memory: Memory,
    share: float,
    policy: UpdatePolicy,
    init: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Weights of ``model`` (already grown for new keys) fine-tuned on the memory's
    feedback rows, carrying ``share`` of the loss, and its replay sample, for at most
    ``policy.steps`` optimizer steps. ``init``: weights to continue from (another round)
    instead of the model's.

    Replayed rows (and feedback rows the replay sample holds) are learnt against the
    model's own distribution before the update, new rows against the key that came.
    Batches are drawn in proportion to each row's weight (its count; the feedback rows that
    are new scaled to their share), so a handful of feedback rows is seen in every batch rather than
    weighting the loss of the rare batch that holds one. Runs on the CPU, one thread: a
    few dozen steps of a small network, where starting a GPU would cost more than they
    do. Adam is written out here: ``torch.optim``'s constructor imports PyTorch's compiler
    stack (``torch._dynamo``), seconds of an update that takes a few.
    """
    import torch

    from logwarden.models.nets import KeyNet

    replay_w = memory.replay_counts.astype(np.float64)
    fb_w = memory.feedback_counts.astype(np.float64)
    # Feedback rows the replay sample already holds (a run's first steps, the parts an
    # upgrade left alone) are old behaviour: they keep their plain count. Weighting them
    # up too would shift what the model expects there (the first key of any run, say)
    # toward the marked sessions' task, and old runs would pay for it.
    known = {r.tobytes() for r in memory.replay_rows}
    novel = np.fromiter(
        (r.tobytes() not in known for r in memory.feedback_rows), dtype=bool, count=len(fb_w)
    )
    if fb_w[novel].sum() > 0 and replay_w.sum() > 0:
        fb_w[novel] *= share / (1.0 - share) * replay_w.sum() / fb_w[novel].sum()
    rows = np.vstack([memory.replay_rows, memory.feedback_rows])
    weights = np.concatenate([replay_w, fb_w])
    if len(rows) == 0 or weights.sum() <= 0:
        return dict(init if init is not None else model.weights), {"steps": 0, "loss": 0.0}
    cfg = model.config
    h = cfg.window
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: a second thread only spins (see models.keys)
    try:
        torch.manual_seed(policy.seed)
        n_out = len(model.keys) + FIRST_KEY

        net = KeyNet(n_out, cfg.embedding, cfg.hidden, cfg.layers)
        start = init if init is not None else model.weights
        net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in start.items()})
        # The model before the update teaches the old behaviour: on replayed rows the
        # target is its whole distribution of next keys, not the one key that came, so the
        # rare successors it allowed keep their probability (distillation, "learning
        # without forgetting"): what a probability threshold needs kept. Its predictions
        # are computed once, for all those rows (NumPy, ``KeyModel.net``), when they fit in
        # memory; otherwise per batch by a frozen copy of the network.
        soft_np = np.concatenate([np.ones(len(replay_w), bool), ~novel]) & policy.distill
        soft = torch.as_tensor(soft_np, dtype=torch.bool)
        teacher_rows = np.full(len(rows), -1, dtype=np.int64)
        teacher_rows[soft_np] = np.arange(int(soft_np.sum()))
        teacher_probs: Any = None
        frozen: Any = None
        if int(soft_np.sum()) * n_out <= TEACHER_CELLS:
            teacher_probs = torch.as_tensor(model.net.probabilities(rows[soft_np, :h]))
        else:
            frozen = KeyNet(n_out, cfg.embedding, cfg.hidden, cfg.layers)
            frozen.load_state_dict(
                {k: torch.as_tensor(np.asarray(v)) for k, v in model.weights.items()}
            )
            frozen.eval()
        row_in_teacher = torch.as_tensor(teacher_rows)
        params = [p for p in net.parameters() if p.requires_grad]
        moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        x_all = torch.as_tensor(rows[:, :h], dtype=torch.long)
        y_all = torch.as_tensor(rows[:, h], dtype=torch.long)
        rng = np.random.default_rng(policy.seed)
        prob = weights / weights.sum()
        batch = min(policy.batch_size, max(32, len(rows)))
        lr, beta1, beta2, eps = policy.learning_rate, 0.9, 0.999, 1e-8
        best = avg = math.inf
        stale = steps = 0
        net.train()
        for steps in range(1, policy.steps + 1):
            idx = torch.as_tensor(rng.choice(len(rows), size=batch, p=prob))
            x = x_all[idx]
            logp = torch.log_softmax(net(x), dim=1)
            old = soft[idx]
            if teacher_probs is not None:
                target = teacher_probs[row_in_teacher[idx][old]]
            else:
                with torch.no_grad():
                    target = torch.softmax(frozen(x[old]), dim=1)
            loss = (
                -(target * logp[old]).sum()
                - logp[~old].gather(1, y_all[idx][~old].unsqueeze(1)).sum()
            ) / batch
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                c1, c2 = 1.0 - beta1**steps, 1.0 - beta2**steps
                for p, (m, v) in zip(params, moments, strict=True):
                    if p.grad is None:
                        continue
                    m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                    v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                    p.addcdiv_(m, (v / c2).sqrt_().add_(eps), value=-lr / c1)
            value = float(loss.detach())
            avg = value if avg == math.inf else 0.9 * avg + 0.1 * value  # the loss, smoothed
            if avg < best * 0.99:
                best, stale = avg, 0
            else:
                stale += 1
                if stale >= policy.patience:
                    break
        out = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    finally:
        torch.set_num_threads(threads)
    return out, {"steps": steps, "loss": avg}


def reworded(
    new: Mapping[str, str],
    known: Mapping[str, str],
    sessions: Sequence[Sequence[str]],
    similarity: float,
) -> dict[str, str]:
    """New key -> the known key it rewords: the most similar known template (token
    sequences) at ``similarity`` or more, among those the ``sessions`` (marked normal)
    never log, since an upgrade that rewords a message stops logging the old wording."""
    from difflib import SequenceMatcher

    if similarity >= 1.0:
        return {}
    logged = {k for s in sessions for k in s}
    gone = {k: text.split() for k, text in known.items() if k not in logged and text}
    out: dict[str, str] = {}
    for key, text in new.items():
        tokens = text.split()
        best, score = None, similarity
        for old, old_tokens in gone.items():
            ratio = SequenceMatcher(None, tokens, old_tokens, autojunk=False).ratio()
            if ratio >= score and (best is None or ratio > score):
                best, score = old, ratio
        if best is not None:
            out[key] = best
    return out


def recheck_threshold(model: KeyModel, calibration: Sequence[np.ndarray]) -> Threshold:
    """The threshold of an updated key model, checked on the calibration sessions.

    The threshold was calibrated on fold models (``models.keys``), which an update does not
    change; what can change is how the model scores normal sessions. The calibration
    sessions are training sessions, scored by the model itself, so the check compares
    with what the model flagged of them when trained (``Threshold.checked_flagged``,
    scaled to this sample): the threshold stays while the updated model flags no more of
    them than that count plus the chance excess a binomial count has (at 95%), and
    otherwise its probability cut is raised so that the network alone flags no more of
    them than before (the rules stay as they are). A fixed top-g rule stays.

    Staying is what keeps an update from changing what the model flags on the old
    behaviour. The sessions marked normal are not among the calibration sessions; they
    are checked against the threshold instead (``DeepLog.partial_fit``)."""
    th = model.threshold
    if th.mode == "top_g" or not calibration or th.tau is None or not th.checked_sessions:
        return th
    n = len(calibration)
    base = round(th.checked_flagged * n / th.checked_sessions)
    a = model.assess(list(calibration))
    flagged = int((a.first >= 0).sum())
    if flagged <= max(base, _binomial_quantile(n, max(base, 1) / n, 0.95)):
        return th
    ruled = a.ruled
    rest = np.sort(a.statistic[~ruled])[::-1]
    allowed = max(base - int(ruled.sum()), 0)
    if allowed >= len(rest):
        return th
    cut = float(rest[allowed])  # sessions strictly above it stay flagged: at most allowed
    return replace(th, tau=min(float(th.tau), 10.0 ** (-cut)))


def _binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(X <= k) >= q for X ~ Binomial(n, p): how many of n normal
    sessions a threshold that meets its target ``p`` may flag by chance (with 150
    calibration sessions and a 0.5% target, 2; a count above it says the target is missed,
    one more session does not)."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for k in range(n + 1):
        total += math.exp(
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq
        )
        if total >= q:
            return k
    return n


def template_id(label: str) -> int | None:
    """The template id of a raw-input key label (``E<id>``, see ``io.ingest``), the key of
    the parameter models; None for other labels."""
    return int(label[1:]) if label[:1] == "E" and label[1:].isdigit() else None


def update_param_models(
    params: ParamModels, events: Sequence[Session], twins: Mapping[int, int] | None = None
) -> tuple[ParamModels, dict[str, Any]]:
    """A copy of ``params`` that takes the entries of ``events`` (sessions marked normal)
    as normal, and what changed.

    * a reworded key (``twins``: new template id -> the old one) starts with copies of the
      old key's units (``ParamModels.alias``);
    * a key without a model (new) gets one from its entries: robust statistics while they
      are fewer than ``min_samples``, made cautious for so few (``ParamModels.fit_few``);
    * a (key, predecessor) transition that is not a unit gets one of its own when the
      key's shared unit flags its entries (or there is none): an upgrade's new step makes
      the step after it follow a new predecessor, whose timing the shared unit never saw;
    * a unit that still flags an entry takes it as normal (``ParamModels.accept``).
    """
    meta, arrays = params.to_state()
    new = ParamModels.from_state(meta, arrays)
    aliased = sum(new.alias(k, old) for k, old in (twins or {}).items())
    modelled = {k for k, _ in new.models}
    present = {e.key for s in events for e in s.events if e.key > 0}
    fresh_keys = sorted(present - modelled)
    fits = dict(build_series(events, by_predecessor=False, keys=fresh_keys))
    pairs = build_series(events, new.layouts, by_predecessor=True, min_samples=1, keys=modelled)
    for (key, prev), s in pairs.items():
        if (key, prev) in new.models:
            continue
        shared = (key, None)
        if shared in new.models:
            routed = replace(s, prev=None)
            if not new.score_key(routed).anomalous.any():
                continue
        fits[(key, prev)] = s
    new.fit_few(fits)
    accepted: dict[str, int] = {}
    for unit, s in new.series(events).items():
        n = new.accept(s)
        if n:
            accepted[f"{unit[0]}<-{'*' if unit[1] is None else unit[1]}"] = n
    info = {
        "aliased_units": aliased,
        "new_keys": len(fresh_keys),
        "new_units": len([u for u in fits if u in new.models]),
        "accepted": accepted,
        **new.summary(),
    }
    return new, info
