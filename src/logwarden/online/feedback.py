"""Operator feedback on sessions, and the lineage of model versions it produces.

A :class:`Feedback` record says that one session is *normal* (the model flagged it: a false
positive, to learn from) or *confirmed* (a true positive: the model must go on flagging
it), with who said so, when and why. Records are kept with the model: every bundle carries
its :class:`Lineage`, the list of versions from the trained one to itself, each with its
parent's checksum and path, the feedback it learnt and the figures of its update. Rolling
back is loading the parent.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from logwarden.errors import ConfigError, DataError

__all__ = ["LABELS", "Feedback", "Lineage", "Version", "read_id_file", "utc_now"]

#: ``normal``: a false positive the model should learn; ``confirmed``: a true positive.
LABELS = ("normal", "confirmed")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _default_who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers): anonymous, not a crash
        return ""


@dataclass(frozen=True)
class Feedback:
    """One operator verdict on one session."""

    session: str
    label: str  # one of LABELS
    who: str = field(default_factory=_default_who)
    when: str = field(default_factory=utc_now)  # ISO 8601, UTC
    why: str = ""

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ConfigError(
                f"feedback label must be one of {', '.join(LABELS)}, got {self.label!r}",
                field="label",
            )
        if not self.session:
            raise ConfigError("feedback needs a session id", field="session")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feedback:
        return cls(
            str(d["session"]),
            str(d["label"]),
            str(d.get("who", "")),
            str(d.get("when", "")),
            str(d.get("why", "")),
        )


def check_feedback(records: Sequence[Feedback]) -> None:
    """TypeError when ``records`` are not ``Feedback`` (ids alone said "'str' object has no
    attribute 'session'"); ConfigError when one session is marked both normal and
    confirmed."""
    if isinstance(records, str | bytes) or not all(isinstance(r, Feedback) for r in records):
        raise TypeError(
            "feedback is a list of Feedback records: Feedback(session_id, 'normal') or "
            "Feedback(session_id, 'confirmed')"
        )
    labels: dict[str, set[str]] = {}
    for r in records:
        labels.setdefault(r.session, set()).add(r.label)
    both = sorted(s for s, ls in labels.items() if len(ls) > 1)
    if both:
        raise ConfigError(
            f"sessions marked both normal and confirmed: {', '.join(both[:5])}", field="feedback"
        )


def read_id_file(path: str) -> list[str]:
    """Session ids, one per line; blank lines and ``#`` comments are skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    out = []
    for line in text.splitlines():
        sid = line.split("#", 1)[0].strip()
        if sid:
            out.append(sid)
    return out


@dataclass
class Version:
    """One version of a model: where it came from and what changed."""

    version: int
    created: str
    kind: str  # "train" | "feedback"
    parent: dict[str, Any] | None = None  # version, manifest_sha256, path (when loaded from one)
    feedback: list[Feedback] = field(default_factory=list)
    update: dict[str, Any] = field(default_factory=dict)  # the update's figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created": self.created,
            "kind": self.kind,
            "parent": self.parent,
            "feedback": [f.to_dict() for f in self.feedback],
            "update": self.update,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Version:
        return cls(
            int(d["version"]),
            str(d.get("created", "")),
            str(d.get("kind", "train")),
            dict(d["parent"]) if d.get("parent") else None,
            [Feedback.from_dict(f) for f in d.get("feedback", [])],
            dict(d.get("update", {})),
        )


@dataclass
class Lineage:
    """The versions of a model, oldest first; the last one is the model itself."""

    versions: list[Version] = field(default_factory=list)

    @classmethod
    def trained(cls, info: Mapping[str, Any] | None = None) -> Lineage:
        return cls([Version(1, utc_now(), "train", update=dict(info or {}))])

    @property
    def current(self) -> Version:
        return self.versions[-1]

    @property
    def version(self) -> int:
        return self.current.version if self.versions else 0

    @property
    def ancestors(self) -> list[dict[str, Any]]:
        """The bundles this model descends from, as each child named its parent (version,
        and ``path`` and ``manifest_sha256`` when the parent was loaded from one)."""
        return [dict(v.parent) for v in self.versions if v.parent]

    def child(
        self,
        feedback: Iterable[Feedback],
        update: Mapping[str, Any],
        source: Mapping[str, Any] | None = None,
    ) -> Lineage:
        """The lineage of a model updated from this one. ``source``: where this one was
        loaded from (``path``, ``manifest_sha256``), so the child can name its parent."""
        parent: dict[str, Any] = {"version": self.version}
        if source:
            parent.update({k: source[k] for k in ("manifest_sha256", "path") if k in source})
        return Lineage(
            [
                *self.versions,
                Version(
                    self.version + 1,
                    utc_now(),
                    "feedback",
                    parent,
                    list(feedback),
                    dict(update),
                ),
            ]
        )

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"versions": [v.to_dict() for v in self.versions]}, {}

    @classmethod
    def from_state(
        cls, meta: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray] | None = None
    ) -> Lineage:
        """The lineage a manifest holds; an old bundle without one is version 1.
        ValueError/KeyError when ``meta`` is not a lineage."""
        if not meta or not meta.get("versions"):
            return cls.trained()
        versions = [Version.from_dict(v) for v in meta["versions"]]
        if [v.version for v in versions] != list(range(1, len(versions) + 1)):
            raise ValueError("lineage versions are not 1, 2, ... in order")
        return cls(versions)
