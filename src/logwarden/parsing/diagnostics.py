"""Signs that a template set is shattered: one event split into many templates.

Two checks on a :class:`~logwarden.parsing.TemplateMiner` after parsing:

* **Templates that differ at one position only.** Several templates equal everywhere but
  at one token are most likely one event with a value the parser did not recognise (a
  host name, a user name, a code): fewer distinct values than the miner's evidence
  threshold were seen there, or the values vary together with another position. The
  warning names the position, three example values and a ``--mask`` for
  ``logwarden parse`` that would make it a parameter.
* **Templates keep appearing as input grows.** Over windows that double in size (lines 1
  to 1,000, 1,001 to 2,000, 2,001 to 4,000, ...), a healthy template set stops growing:
  new templates per 1,000 lines fall towards zero. When the rate in the last window is
  still at least ``max_new_per_1k`` and no lower than half the rate of the window before,
  every new stretch of input brings new templates: a parameter is being taken for text.

Both are warnings, not errors: a few events that really differ in one word (``VM Started``
/ ``VM Stopped``) look like the first.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass

from logwarden.parsing.miner import WILDCARD, TemplateMiner


@dataclass(frozen=True)
class ShatterWarning:
    """One sign of a shattered template set; ``message`` is a line for a person."""

    kind: str  # "one-position" or "growth"
    message: str
    templates: tuple[int, ...] = ()  # ids involved (one-position)
    position: int | None = None  # 1-based token position in the template (one-position)
    examples: tuple[str, ...] = ()  # up to three values seen there
    mask: str | None = None  # a --mask spec for `logwarden parse` (KIND=REGEX)
    rates: tuple[float, ...] = ()  # new templates per 1,000 lines, per window (growth)


def diagnose(
    miner: TemplateMiner,
    *,
    min_templates: int = 3,
    max_new_per_1k: float = 1.0,
    first_window: int = 1000,
    limit: int = 5,
) -> list[ShatterWarning]:
    """Warnings for a miner's template set (empty when it looks healthy).

    ``min_templates``: templates that must differ at one position only for a warning;
    ``max_new_per_1k`` and ``first_window``: the growth alarm (see the module docstring);
    ``limit``: at most this many one-position warnings, largest first."""
    if min_templates < 2:
        raise ValueError("min_templates must be >= 2")
    if first_window < 1:
        raise ValueError("first_window must be >= 1")
    out = _one_position(miner, min_templates)[:limit]
    growth = _growth(miner, max_new_per_1k, first_window)
    if growth is not None:
        out.append(growth)
    return out


def _one_position(miner: TemplateMiner, min_templates: int) -> list[ShatterWarning]:
    groups: dict[tuple[int, int, tuple[str, ...]], list[int]] = defaultdict(list)
    for t in miner.templates_.values():
        tokens = t.tokens
        for i, tok in enumerate(tokens):
            if WILDCARD in tok:
                continue
            groups[(len(tokens), i, (*tokens[:i], *tokens[i + 1 :]))].append(t.id)
    found: list[tuple[int, ShatterWarning]] = []
    seen: set[frozenset[int]] = set()
    for (_, i, rest), ids in groups.items():
        if len(ids) < min_templates or not any(WILDCARD not in r for r in rest):
            continue
        key = frozenset(ids)
        if key in seen:
            continue
        seen.add(key)
        ids.sort(key=lambda k: -miner.templates_[k].count)
        tokens = miner.templates_[ids[0]].tokens
        values = [miner.templates_[k].tokens[i] for k in ids]
        examples = tuple(values[:3])
        mask = suggest_mask(
            values,
            tokens[i - 1] if i > 0 else None,
            tokens[i + 1] if i + 1 < len(tokens) else None,
        )
        lines = sum(miner.templates_[k].count for k in ids)
        shown = " ".join("<?>" if j == i else tok for j, tok in enumerate(tokens))
        message = (
            f"{len(ids)} templates ({lines:,} lines) differ only at token {i + 1} of "
            f"'{_clip(shown)}', e.g. {', '.join(repr(v) for v in examples)}: likely a value "
            f"the parser took for text" + (f"; try --mask '{mask}'" if mask else "")
        )
        warning = ShatterWarning("one-position", message, tuple(ids), i + 1, examples, mask, ())
        found.append((lines, warning))
    found.sort(key=lambda lw: -lw[0])
    return [w for _, w in found]


def suggest_mask(
    values: list[str], previous: str | None, following: str | None = None
) -> str | None:
    r"""A ``--mask`` spec (``text=REGEX``) matching the part the values do not share.

    The values' common prefix and suffix (ending at punctuation) stay outside the match.
    A constant token next to them anchors the match, so that the mask touches only this
    position: the one before (``user root`` -> ``text=(?<=user )\S+(?!\S)``), else the
    one after. None when nothing would anchor it (it would mask every token)."""
    if not values:
        return None
    prefix = _common_prefix(values)
    suffix = _common_suffix([v[len(prefix) :] for v in values])
    core = r"[^\s]+?" if suffix else r"\S+"
    tail = re.escape(suffix) if suffix else ""
    if previous is not None and WILDCARD not in previous:
        pattern = f"(?<={re.escape(previous + ' ' + prefix)}){core}"
        return f"text={pattern}(?={tail}(?:\\s|$))"
    if following is not None and WILDCARD not in following:
        head = f"(?<={re.escape(prefix)})" if prefix else r"(?<!\S)"
        return f"text={head}{core}(?={tail}\\s+{re.escape(following)}(?:\\s|$))"
    if prefix or suffix:
        head = f"(?<={re.escape(prefix)})" if prefix else r"(?<!\S)"
        return f"text={head}{core}(?={tail}(?:\\s|$))"
    return None


def _common_prefix(values: list[str]) -> str:
    first = values[0]
    k = 0
    while k < len(first) and all(len(v) > k and v[k] == first[k] for v in values):
        k += 1
    while k > 0 and first[k - 1].isalnum():
        k -= 1
    return first[:k]


def _common_suffix(values: list[str]) -> str:
    first = values[0]
    k = 0
    while k < len(first) and all(len(v) > k and v[-1 - k] == first[-1 - k] for v in values):
        k += 1
    while k > 0 and first[len(first) - k].isalnum():
        k -= 1
    return first[len(first) - k :] if k else ""


def _growth(miner: TemplateMiner, max_new_per_1k: float, first: int) -> ShatterWarning | None:
    lines = miner.clock
    bounds = [0, first]
    while bounds[-1] * 2 <= lines:
        bounds.append(bounds[-1] * 2)
    if bounds[-1] < lines and lines - bounds[-1] >= first:
        bounds.append(lines)
    if len(bounds) < 4:  # three windows at least
        return None
    created = sorted(t.created_at for t in miner.templates_.values())
    rates: list[float] = []
    for a, b in itertools.pairwise(bounds):
        n = sum(1 for c in created if a < c <= b)
        rates.append(1000.0 * n / (b - a))
    last, before = rates[-1], rates[-2]
    if last < max_new_per_1k or last < 0.5 * before:
        return None
    windows = ", ".join(
        f"{r:.1f} in lines {a + 1:,}-{b:,}"
        for r, a, b in zip(rates, bounds, bounds[1:], strict=False)
    )
    message = (
        f"new templates keep appearing as input grows ({windows} per 1,000 lines): a value "
        f"is probably being taken for text; see the other warnings, or --mask"
    )
    return ShatterWarning("growth", message, rates=tuple(rates))


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
