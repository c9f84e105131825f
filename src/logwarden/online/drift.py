"""Drift: when the system, not a run, has changed (an upgrade added a step, reworded a message).

A frozen model then flags every run of the changed task: many alerts with one cause. The
:class:`DriftTracker` watches detection in time buckets against the baseline stored at
training (:class:`DriftBaseline`: the score distribution and flagged share of held-out
normal sessions) and warns when, within one bucket,

* **new templates**: one template never seen in training turns up in at least
  ``min_sessions`` distinct sessions and ``min_share`` of the bucket's sessions (an
  anomaly's error message is rare; an upgrade's new message recurs in every run of its
  task), or
* **one cause**: one key is where at least ``cause_sessions`` flagged sessions (and
  ``cause_share`` of the bucket) go wrong, while the bucket's flagged share is
  significantly above the baseline's (binomial test at ``alpha``): anomalies spread over
  many steps, a changed step concentrates them (an early end does not count: the end of
  the input ends every open run early), or
* **scores**: the bucket's session scores have moved away from the baseline's
  (Kolmogorov-Smirnov distance at least ``min_ks`` and significant at ``alpha``).

Each warning names the templates that caused it and suggests sessions to review: among
the sessions where those templates occur, a few that together cover the most distinct
contexts (predecessor and successor, and the keys within ``context`` steps before and
after: the branches a run took around the new template), so that marking them normal
teaches the model the new behaviour in its variants (``logwarden feedback``).

The API is streaming, for the batch command and a service alike: ``update_line`` for each
log entry as it arrives, ``update`` for each session once its verdict is known, ``close``
at the end. Buckets follow the entries' timestamps (``bucket_seconds``), or their count
(``bucket_lines``) when there are none.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np

from logwarden.errors import ConfigError
from logwarden.sessions import Session, SessionTable

__all__ = ["DriftBaseline", "DriftConfig", "DriftTracker", "DriftWarning", "track_batch"]

_QUANTILES = 101
# The cause of an early end. Not one cause of drift: input that ends (a log cut or rotated)
# ends the runs still open all at once, and they all stop early.
EARLY_END = "<end>"


@dataclass
class DriftBaseline:
    """What normal detection looks like, measured at training on held-out normal sessions."""

    sessions: int
    flagged_share: float  # of held-out normal sessions the key model flags
    score_quantiles: list[float]  # session scores at 0%, 1%, ..., 100%

    @classmethod
    def from_scores(cls, scores: np.ndarray, flagged: int) -> DriftBaseline | None:
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) == 0:
            return None
        q = np.quantile(scores, np.linspace(0.0, 1.0, _QUANTILES))
        return cls(len(scores), flagged / len(scores), [float(v) for v in q])  # not rounded: ties

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """The baseline's share of sessions scoring at most ``x`` (to 1% resolution)."""
        q = np.asarray(self.score_quantiles)
        return np.searchsorted(q, x, side="right") / len(q)

    def ks(self, scores: Sequence[float]) -> float:
        """Kolmogorov-Smirnov distance of ``scores`` from the baseline distribution.

        Both distributions are step functions with ties (sessions with the same keys score
        the same), so the distance is taken between the two right-continuous CDFs at every
        point where either steps: comparing one sample's points with the other's left
        limits would count a tie's whole mass as distance."""
        s = np.sort(np.asarray(scores, dtype=np.float64))
        if len(s) == 0:
            return 0.0
        points = np.union1d(s, np.asarray(self.score_quantiles))
        mine = np.searchsorted(s, points, side="right") / len(s)
        return float(np.abs(mine - self.cdf(points)).max())

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return asdict(self), {}

    @classmethod
    def from_state(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
    ) -> DriftBaseline:
        """ValueError/KeyError when ``meta`` is not a baseline."""
        q = [float(v) for v in meta["score_quantiles"]]
        if len(q) < 2 or any(b < a for a, b in pairwise(q)):
            raise ValueError("baseline score quantiles must be increasing")
        return cls(int(meta["sessions"]), float(meta["flagged_share"]), q)


@dataclass
class DriftConfig:
    """When the tracker warns (see the module docstring)."""

    bucket_seconds: float = 300.0
    bucket_lines: int = 10_000  # entries per bucket when they carry no timestamp
    min_sessions: int = 5  # distinct sessions sharing one new template
    min_share: float = 0.02  # ... and this share of the bucket's sessions
    # Flagged sessions sharing one cause: more of them than for a new template, since a
    # model's own false positives also cluster on a few keys (a new template never
    # occurs in normal runs at all).
    cause_sessions: int = 10
    cause_share: float = 0.05
    alpha: float = 1e-4  # significance of the flagged-share and score tests
    min_ks: float = 0.25  # smallest score-distribution shift that counts
    min_ks_sessions: int = 30  # sessions a bucket needs for the score test
    suggest: int = 5  # sessions suggested for review
    context: int = 10  # keys before and after a new template that suggestions try to vary
    min_support: int = 2  # sessions a context needs to count for suggestions
    candidates: int = 200  # sessions remembered per template, to choose suggestions from
    # Closed buckets and warnings kept for the report, the latest ones (a service runs for
    # ever: 30 minutes of a busy stream close thousands of buckets); counts cover all.
    history: int = 1000

    def __post_init__(self) -> None:
        checks = [
            (self.bucket_seconds > 0, "bucket_seconds", "must be > 0"),
            (self.bucket_lines >= 1, "bucket_lines", "must be >= 1"),
            (self.min_sessions >= 1, "min_sessions", "must be >= 1"),
            (0.0 <= self.min_share <= 1.0, "min_share", "must be in [0, 1]"),
            (self.cause_sessions >= 1, "cause_sessions", "must be >= 1"),
            (0.0 <= self.cause_share <= 1.0, "cause_share", "must be in [0, 1]"),
            (0.0 < self.alpha < 1.0, "alpha", "must be in (0, 1)"),
            (0.0 < self.min_ks <= 1.0, "min_ks", "must be in (0, 1]"),
            (self.suggest >= 0 and self.candidates >= 1, "suggest", "must be >= 0"),
            (self.context >= 0, "context", "must be >= 0"),
            (self.min_support >= 1, "min_support", "must be >= 1"),
            (self.history >= 1, "history", "must be >= 1"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(f"{name} {msg}", field=name)


@dataclass
class DriftWarning:
    """A bucket where detection drifted from the baseline, and why."""

    bucket: int
    reasons: list[str]  # "new_templates" | "one_cause" | "scores"
    line: int | None  # the entry (or session end) at which it fired
    time: float | None
    sessions: int  # sessions of the bucket when it fired
    flagged_share: float
    baseline_flagged_share: float | None
    ks: float | None
    causes: list[dict[str, Any]]  # key, template, unseen, sessions, share
    suggested: list[str] = field(default_factory=list)
    # Flagged sessions of the bucket that end early (never a cause: see EARLY_END).
    early_ends: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, suggested: Sequence[str] | None = None) -> str:
        """A few readable lines; ``suggested``: sessions to review (default: those known
        when it fired)."""
        where = f"line {self.line:,}" if self.line is not None else f"bucket {self.bucket}"
        if self.time is not None:
            where += " (" + _iso(self.time) + ")"
        out = [f"drift warning at {where}: " + "; ".join(_REASONS[r] for r in self.reasons)]
        for c in self.causes[:5]:
            what = "new template" if c["unseen"] else "flagged at"
            out.append(f"  {what} {c['key']}: {c['template'] or '?'} (in {c['sessions']} sessions)")
        base = (
            f" (training baseline {self.baseline_flagged_share:.1%})"
            if self.baseline_flagged_share is not None
            else ""
        )
        out.append(
            f"  flagged so far in its bucket: {self.flagged_share:.0%} of {self.sessions:,} "
            f"sessions{base}" + (f"; score shift {self.ks:.2f}" if self.ks is not None else "")
        )
        flagged = round(self.flagged_share * self.sessions)
        if self.early_ends and 2 * self.early_ends >= flagged:
            out.append(
                f"  {self.early_ends:,} of them end early: if the input was cut (a slice, a "
                "rotated log), the runs still open at its end stopped there"
            )
        review = list(self.suggested if suggested is None else suggested)
        if review:
            out.append("  sessions to review: " + " ".join(review))
            out.append(
                "  (mark the normal ones: logwarden feedback LOG --model M --normal ID ... --out M2)"
            )
        return "\n".join(out)


_REASONS = {
    "new_templates": "templates never seen in training recur",
    "one_cause": "flagged sessions share one cause",
    "scores": "session scores moved from the baseline",
}


class _Bucket:
    __slots__ = (
        "causes", "end", "entries", "first_line", "flagged", "index", "last_line", "scores",
        "sessions", "start", "unseen", "unseen_entries", "warning",
    )  # fmt: skip

    def __init__(self, index: int, start: float | None) -> None:
        self.index = index
        self.start = start
        self.end: float | None = start
        self.first_line: int | None = None
        self.last_line: int | None = None
        self.entries = 0
        self.unseen_entries = 0
        self.unseen: dict[str, set[Any]] = {}  # new template -> sessions (or lines) with it
        self.sessions = 0
        self.flagged = 0
        self.scores: list[float] = []
        self.causes: Counter[str] = Counter()
        self.warning: DriftWarning | None = None


class DriftTracker:
    """Streaming drift detection against a training baseline (see the module docstring).

    ``known``: the keys the model was trained on (anything else is a new template);
    ``templates``: key -> template text, for warnings (may grow while detecting).
    """

    def __init__(
        self,
        baseline: DriftBaseline | None,
        known: Collection[str],
        templates: Mapping[str, str] | None = None,
        config: DriftConfig | None = None,
    ) -> None:
        self.baseline = baseline
        self.known = frozenset(known)
        self.templates = dict(templates or {})
        self.config = config or DriftConfig()
        # Summaries of the latest closed buckets: a ring (a list trimmed from 2x to 1x its
        # bound swung by about a megabyte in a service: 1,000 summaries of ~850 bytes).
        self.buckets: deque[dict[str, Any]] = deque(maxlen=self.config.history)
        self.warnings: list[DriftWarning] = []  # the latest warnings
        self.buckets_closed = 0  # all of them
        self.warnings_total = 0
        self._t0: float | None = None
        self._bucket = _Bucket(0, None)
        # Suggestion candidates: template -> [(session, contexts, hash of the key sequence)].
        self._candidates: dict[str, list[tuple[str, frozenset[tuple[str, ...]], int]]] = {}
        self._drift_keys: dict[str, None] = {}  # templates named by warnings, in order
        self._shared: dict[Any, Any] = {}  # one copy of each context (and set of them) kept
        # Both only grow: the last suggestions hold while neither has (every warning asks).
        self._kept = 0  # candidates kept so far
        self._suggested: tuple[tuple[int, int, int], list[str]] | None = None

    # -- the streaming API -------------------------------------------------------------------

    def update_line(
        self,
        key: str,
        *,
        session: str | None = None,
        time: float | None = None,
        line: int | None = None,
    ) -> DriftWarning | None:
        """One log entry (its key, session, timestamp, line number), as it arrives."""
        b = self._advance(time, line)
        b.entries += 1
        if key in self.known:
            return None
        b.unseen_entries += 1
        b.unseen.setdefault(key, set()).add(session if session is not None else ("line", line))
        return self._check(b, line, time)

    def update_lines(
        self, entries: Iterable[tuple[str, str | None, float | None, int | None]]
    ) -> list[DriftWarning]:
        """``update_line`` for many entries, each (key, session, time, line), in order;
        the warnings they raised. A stream calls it once per batch of lines."""
        warnings: list[DriftWarning] = []
        known = self.known
        width = self.config.bucket_seconds
        b = self._bucket
        # Within the current bucket of log time (the common case) an entry only counts.
        limit = -math.inf if self._t0 is None else self._t0 + (b.index + 1) * width
        for key, session, time, line in entries:
            # NaN compares false: the slow path.
            if time is not None and b.start is not None and b.start <= time < limit:
                if b.end is None or time > b.end:
                    b.end = time
                if line is not None:
                    if b.first_line is None:
                        b.first_line = line
                    b.last_line = line
            else:
                b = self._advance(time, line)
                if self._t0 is not None:
                    limit = self._t0 + (b.index + 1) * width
            b.entries += 1
            if key in known:
                continue
            b.unseen_entries += 1
            b.unseen.setdefault(key, set()).add(session if session is not None else ("line", line))
            w = self._check(b, line, time)
            if w is not None:
                warnings.append(w)
        return warnings

    def update(
        self,
        session: str,
        *,
        flagged: bool,
        score: float,
        cause: str | None = None,
        keys: Sequence[str] = (),
        entries: int = 0,
        time: float | None = None,
        line: int | None = None,
        first_line: int | None = None,
    ) -> DriftWarning | None:
        """One session's verdict once it is known: flagged or not, its score, the key at
        which it was flagged (``cause``) and its keys (to suggest varied sessions).
        ``entries``: how many of its entries were not given to ``update_line`` (a batch
        caller feeds only the new-template ones line by line; they are counted here);
        ``first_line``: the first line of those, so that the bucket's line range covers
        every entry it counts (``line``, the session's last, is where it is counted)."""
        b = self._advance(time, line)
        b.entries += entries
        if entries and first_line is not None:
            if b.first_line is None or first_line < b.first_line:
                b.first_line = first_line
            if b.last_line is None or first_line > b.last_line:
                b.last_line = first_line
        b.sessions += 1
        b.scores.append(float(score))
        if flagged:
            b.flagged += 1
            if cause is not None:
                b.causes[cause] += 1
        interesting = [k for k in keys if k not in self.known]
        if flagged and cause is not None:
            interesting.append(cause)
        if interesting:
            self._remember(session, keys, set(interesting))
        return self._check(b, line, time)

    def learn_one(
        self, verdict: Any, keys: Sequence[str] = (), **where: Any
    ) -> DriftWarning | None:
        """``update`` from a ``Verdict`` (the estimator's), for callers that hold one."""
        return self.update(
            verdict.session,
            flagged=bool(verdict.anomalous),
            score=float(verdict.score),
            cause=verdict.observed if verdict.anomalous else None,
            keys=keys,
            **where,
        )

    def close(self) -> list[DriftWarning]:
        """Close the last bucket (the score test runs at each bucket's close); all warnings."""
        self._close(self._bucket)
        return self.warnings

    # -- results ---------------------------------------------------------------------------

    def suggestions(self, n: int | None = None) -> list[str]:
        """Sessions to review: where the warnings' templates occur, chosen greedily to
        cover the most distinct contexts of those templates (then distinct key sequences).

        Only contexts seen in ``min_support`` sessions or more count: a context of one
        session is as likely an anomaly of that run as a variant of the new behaviour,
        and counting it would put anomalous runs, which have the most unusual contexts,
        at the top of the list."""
        n = self.config.suggest if n is None else n
        state = (n, self._kept, len(self._drift_keys))
        if self._suggested is not None and self._suggested[0] == state:
            return list(self._suggested[1])
        chosen = self._suggest(n)
        self._suggested = (state, chosen)
        return list(chosen)

    def _suggest(self, n: int) -> list[str]:
        wanted = set(self._drift_keys)
        pool: dict[str, tuple[frozenset[tuple[str, ...]], int]] = {}
        for key in self._drift_keys:
            for sid, ctx, seq in self._candidates.get(key, []):
                mine = frozenset(c for c in ctx if c[1] in wanted)
                pool.setdefault(sid, (mine, seq))
        support = Counter(c for ctx, _ in pool.values() for c in ctx)
        pool = {
            sid: (frozenset(c for c in ctx if support[c] >= self.config.min_support), seq)
            for sid, (ctx, seq) in pool.items()
        }
        covered: set[tuple[str, ...]] = set()
        seqs: set[int] = set()
        chosen: list[str] = []
        while len(chosen) < n and pool:
            best = max(pool.items(), key=lambda kv: (len(kv[1][0] - covered), kv[1][1] not in seqs))
            sid, (ctx, seq) = best
            if not (ctx - covered) and seq in seqs:
                break
            chosen.append(sid)
            covered |= ctx
            seqs.add(seq)
            del pool[sid]
        return chosen

    def report(self) -> dict[str, Any]:
        """Everything as JSON-ready data: the latest buckets and warnings (``history`` of
        each) with the counts of all, suggestions, the baseline."""
        keep = self.config.history
        return {
            "baseline": self.baseline.to_state()[0] if self.baseline is not None else None,
            "config": asdict(self.config),
            "buckets_closed": self.buckets_closed,
            "warnings_total": self.warnings_total,
            "buckets": list(self.buckets),
            "warnings": [w.to_dict() for w in self.warnings[-keep:]],
            "drift_templates": [
                {"key": k, "template": self.templates.get(k)} for k in self._drift_keys
            ],
            "suggested": self.suggestions(),
        }

    # -- internals ---------------------------------------------------------------------------

    def _advance(self, time: float | None, line: int | None) -> _Bucket:
        b = self._bucket
        cfg = self.config
        if time is not None and math.isfinite(time):
            if self._t0 is None:
                self._t0 = time
                b.start = b.end = time
            index = int((time - self._t0) // cfg.bucket_seconds)
            if index > b.index:
                self._close(b)
                b = self._bucket = _Bucket(index, self._t0 + index * cfg.bucket_seconds)
            b.end = time if b.end is None else max(b.end, time)
        elif b.entries >= cfg.bucket_lines and self._t0 is None:
            self._close(b)
            b = self._bucket = _Bucket(b.index + 1, None)
        if line is not None:
            if b.first_line is None:
                b.first_line = line
            b.last_line = line
        return b

    def _remember(self, session: str, keys: Sequence[str], interesting: set[str]) -> None:
        room = self.config.candidates
        if all(len(self._candidates.get(k, ())) >= room for k in interesting):
            return  # every list it could join is full: nothing to keep
        ks = list(keys)
        ctx: set[tuple[str, ...]] = set()
        h = self.config.context
        for i, k in enumerate(ks):
            if k in interesting:
                prev = ks[i - 1] if i > 0 else "<start>"
                nxt = ks[i + 1] if i + 1 < len(ks) else "<end>"
                ctx.add((prev, k, nxt))
                # What else a model window holding it sees: the branches a run took before
                # and after it (a config drive, a reboot), which a key model must learn too.
                ctx.update(("<", k, other) for other in ks[max(0, i - h) : i])
                ctx.update((">", k, other) for other in ks[i + 1 : i + 1 + h])
        for k in interesting:
            if not any(c[1] == k for c in ctx):
                ctx.add(("?", k, "?"))
        # Runs repeat: equal contexts and sets of them are stored once (a long stream
        # fills every template's list: 200 entries of a few kilobytes each otherwise).
        shared = self._shared
        contexts = frozenset(shared.setdefault(c, c) for c in ctx)
        # The key sequence only tells runs apart (suggestions prefer distinct ones): its
        # hash is enough (a collision only changes which run is suggested first), and the
        # sequences were a third of the candidates' memory.
        entry = (session, shared.setdefault(contexts, contexts), hash(tuple(ks)))
        for k in interesting:
            lst = self._candidates.setdefault(k, [])
            if len(lst) < self.config.candidates:
                lst.append(entry)
                self._kept += 1

    def _check(self, b: _Bucket, line: int | None, time: float | None) -> DriftWarning | None:
        if b.warning is not None:
            return None
        cfg = self.config
        denom = max(b.sessions, 1)
        reasons: list[str] = []
        causes: list[dict[str, Any]] = []
        for key, where in b.unseen.items():
            n = len(where)
            if n >= cfg.min_sessions and n / max(denom, n) >= cfg.min_share:
                causes.append(self._cause(key, n, denom, True))
        if causes:
            reasons.append("new_templates")
        one = [
            self._cause(k, n, denom, k not in self.known)
            for k, n in b.causes.most_common(6)
            if n >= cfg.cause_sessions and n / denom >= cfg.cause_share and k != EARLY_END
        ]
        if one and self._flag_excess(b):  # the cheap test first: this one sums a tail
            reasons.append("one_cause")
            causes += [c for c in one if all(c["key"] != d["key"] for d in causes)]
        if not reasons:
            return None
        return self._warn(b, reasons, causes, line, time, None)

    def _flag_excess(self, b: _Bucket) -> bool:
        """The bucket's flagged share is significantly above the baseline's."""
        p0 = self.baseline.flagged_share if self.baseline is not None else 0.0
        p0 = min(max(p0, 1e-4), 0.5)
        return _binomial_tail(b.flagged, b.sessions, p0) < self.config.alpha

    def _cause(self, key: str, n: int, denom: int, unseen: bool) -> dict[str, Any]:
        return {
            "key": key,
            "template": self.templates.get(key),
            "unseen": unseen,
            "sessions": n,
            "share": round(n / max(denom, n), 4),
        }

    def _warn(
        self,
        b: _Bucket,
        reasons: list[str],
        causes: list[dict[str, Any]],
        line: int | None,
        time: float | None,
        ks: float | None,
    ) -> DriftWarning:
        causes.sort(key=lambda c: (-c["sessions"], c["key"]))
        for c in causes:
            self._drift_keys.setdefault(c["key"], None)
        w = DriftWarning(
            b.index,
            reasons,
            line,
            time,
            b.sessions,
            round(b.flagged / max(b.sessions, 1), 4),
            self.baseline.flagged_share if self.baseline is not None else None,
            ks,
            causes,
            early_ends=b.causes[EARLY_END],
        )
        w.suggested = self.suggestions()
        b.warning = w
        self.warnings_total += 1
        _keep_latest(self.warnings, w, self.config.history)
        return w

    def _close(self, b: _Bucket) -> None:
        if b.entries == 0 and b.sessions == 0:
            return
        cfg = self.config
        ks = None
        if self.baseline is not None and b.sessions >= cfg.min_ks_sessions:
            ks = self.baseline.ks(b.scores)
            critical = math.sqrt(-math.log(cfg.alpha / 2.0) / 2.0) / math.sqrt(b.sessions)
            if b.warning is None and ks >= max(cfg.min_ks, critical):
                top = [
                    self._cause(k, n, b.sessions, k not in self.known)
                    for k, n in b.causes.most_common(4)
                    if k != EARLY_END  # not a template (counted in the warning instead)
                ][:3]
                self._warn(b, ["scores"], top, b.last_line, b.end, round(ks, 4))
        if b.warning is not None:
            # Every new template that recurred in a drifting bucket is behind the drift, also
            # those that reached the bar after the warning fired (later steps of a run).
            for key, where in b.unseen.items():
                n = len(where)
                if n >= cfg.min_sessions and n / max(b.sessions, n) >= cfg.min_share:
                    self._drift_keys.setdefault(key, None)
        scores = np.asarray(b.scores) if b.scores else np.zeros(0)
        self.buckets_closed += 1
        self.buckets.append(
            {
                "bucket": b.index,
                "start": b.start,
                "end": b.end,
                "first_line": b.first_line,
                "last_line": b.last_line,
                "entries": b.entries,
                "unseen_share": round(b.unseen_entries / max(b.entries, 1), 4),
                "unseen_templates": {k: len(v) for k, v in sorted(b.unseen.items())},
                "sessions": b.sessions,
                "flagged_share": round(b.flagged / max(b.sessions, 1), 4),
                "score_median": round(float(np.median(scores)), 4) if len(scores) else None,
                "score_p90": round(float(np.quantile(scores, 0.9)), 4) if len(scores) else None,
                "ks": None if ks is None else round(ks, 4),
                "drift": b.warning is not None,
            }
        )


def _iso(t: float) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        return f"t={t:g}"


def track_batch(
    tracker: DriftTracker,
    verdicts: Sequence[Any],
    keys: Sequence[Sequence[str]],
    events: Sequence[Session] | None = None,
    *,
    positions: Sequence[tuple[Sequence[int], Sequence[float | None]]] | None = None,
) -> list[DriftWarning]:
    """Run ``tracker`` over a batch of verdicts as a stream would have seen them.

    With ``events`` (raw input: line numbers and timestamps), entries of new templates
    are fed at their line and each session at its last line, in line order; without them,
    sessions in order. ``positions`` instead of ``events``: per session, its entries' line
    numbers and timestamps (what an engine that keeps the entries elsewhere gives back).
    Returns the warnings (the tracker is closed).
    """
    feed_batch(tracker, verdicts, keys, events, positions=positions)
    return tracker.close()


def feed_batch(
    tracker: DriftTracker,
    verdicts: Sequence[Any],
    keys: Sequence[Sequence[str]],
    events: Sequence[Session] | None = None,
    *,
    positions: Sequence[tuple[Sequence[int], Sequence[float | None]]] | None = None,
) -> None:
    """``track_batch`` without closing the tracker: for batches of sessions completed one
    after another (``detect`` on a large log feeds each chunk of completed sessions)."""
    known = tracker.known
    # (line, order, kind, session index, entry index): kind 0 = a new template's entry,
    # 1 = the session's end; the end comes after its own last entry.
    feed: list[tuple[int, int, int, int, int]] = []
    times: dict[tuple[int, int], float | None] = {}
    firsts: dict[int, int] = {}  # session -> line of its first entry counted at its end
    table = events if isinstance(events, SessionTable) else None
    for i, sess_keys in enumerate(keys):
        if (events is None and positions is None) or not sess_keys:
            feed.append((i, 0, 1, i, len(sess_keys) - 1))
            continue
        if positions is not None:
            lines, stamps = positions[i]
        elif table is not None:
            rows = table.members[i]
            lines = [table.line_number(r) for r in rows]
            stamps = [table.timestamps[r] for r in rows]
        else:
            assert events is not None
            evs = events[i].events
            lines = [e.record.line.lineno for e in evs]
            stamps = [e.record.timestamp for e in evs]
        for j, k in enumerate(sess_keys):
            if k not in known:
                feed.append((lines[j], 0, 0, i, j))
                times[(i, j)] = stamps[j]
            elif i not in firsts or lines[j] < firsts[i]:
                firsts[i] = lines[j]
        last = len(sess_keys) - 1
        feed.append((lines[last], 1, 1, i, last))
        times[(i, last)] = stamps[last]
    feed.sort()
    ordered = events is not None or positions is not None
    for line, _, kind, i, j in feed:
        v = verdicts[i]
        when = times.get((i, j))
        at = line if ordered else None
        if kind == 0:
            tracker.update_line(keys[i][j], session=v.session, time=when, line=at)
            continue
        fed = sum(1 for k in keys[i] if k not in known) if ordered else 0
        tracker.update(
            v.session,
            flagged=bool(v.anomalous),
            score=float(v.score),
            cause=v.observed if v.anomalous else None,
            keys=keys[i],
            entries=len(keys[i]) - fed,
            time=when,
            line=at,
            first_line=firsts.get(i) if ordered else None,
        )


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), in log space (no SciPy for one number)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _keep_latest(items: list[Any], item: Any, keep: int) -> None:
    """Append ``item`` and keep the latest ``keep`` (trimmed in steps: amortised O(1))."""
    items.append(item)
    if len(items) >= 2 * keep:
        del items[:-keep]
