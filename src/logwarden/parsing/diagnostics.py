"""Signs that a template set is shattered: one event split into many templates.

Two checks on a :class:`~logwarden.parsing.TemplateMiner` after parsing:

* **Templates that differ at one position only.** Several templates equal everywhere but
  at one token are either one event with a value the parser did not recognise (a host
  name, a user name, a code) or a few genuinely distinct events that differ in one word
  (``"GET`` / ``"POST`` / ``"DELETE``, ``VM Started`` / ``VM Paused``, ``user=root`` /
  ``user=guest``). The position's values tell them apart (:func:`open_vocabulary`): a
  closed vocabulary of events recurs, a parameter keeps bringing values seen once. By
  Good-Turing, the share of the position's lines whose value was seen only once,
  ``n1 / N``, estimates the chance that its next line brings a value not seen yet; it is
  warned about only when that estimate is clearly above zero: ``n1 > z * sqrt(n1 +
  2 * n2)`` (``n2``: values seen on two lines), more than ``z = 1.96`` standard errors
  (Esty's variance of the estimate, 1983, without its finite-sample correction, which can
  only shrink it). So a set whose values all recur gets no warning, and neither do three
  values seen once each: three lines cannot tell a parameter from three events (for the
  same reason the miner waits for 3 to 5 distinct values before it makes a parameter).
  The warning names the position, three example values and a ``--mask`` for ``logwarden
  parse`` that would make it a parameter. The templates' creation times are the second
  sign: a parameter keeps adding templates as the input grows, a closed set appears and
  stops (settings logged once each at startup). When no template of the set was created
  in the second half of the stretch from its first one to the end of the input, the
  warning stays (the mask may be right) but says that the values may be distinct events.
* **Templates keep appearing as input grows.** Over windows that double in size (lines 1
  to 1,000, 1,001 to 2,000, 2,001 to 4,000, ...), a healthy template set stops growing:
  new templates per 1,000 lines fall towards zero. When the rate in the last window is
  still at least ``max_new_per_1k`` and no lower than half the rate of the window before,
  every new stretch of input brings new templates: a parameter is being taken for text.

Both are warnings, not errors. The first rule was chosen on four loghub-2k systems
(OpenStack, Linux, Hadoop, BGL) and checked on the other four (Apache, HDFS, Spark,
Zookeeper), against loghub's ground truth, which keeps events that differ in one word
apart. Warned about before for any three such templates, those sets' masks lowered
grouping accuracy wherever there were any (OpenStack 1.000 -> 0.437, Linux 1.000 ->
0.805, Hadoop 0.994 -> 0.992, BGL 0.991 -> 0.989; held out, Zookeeper 0.995 -> 0.985);
what stays is one warning, Linux's ``<name> startup succeeded`` (9 daemons, 8 of 14
lines with a daemon seen once), whose mask costs 0.007 there because loghub counts each
daemon's startup as an event of its own. The price: a small recurring set of names (the
same three users or hosts again and again) is a value nothing here can tell from
events, and is no longer warned about.
"""

from __future__ import annotations

import itertools
import math
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
        counts = [miner.templates_[k].count for k in ids]
        if not open_vocabulary(counts):
            continue  # every value recurs, or too few lines: distinct events as far as seen
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
        once = sum(1 for c in counts if c == 1)
        created = [miner.templates_[k].created_at for k in ids]
        message = (
            f"{len(ids)} templates ({lines:,} lines, {once:,} of them with a value seen once) "
            f"differ only at token {i + 1} of '{_clip(shown)}', e.g. "
            f"{', '.join(repr(v) for v in examples)}: likely a value the parser took for text"
            + (
                f", though no new value came after line {max(created):,}: they may be distinct events"
                if _stopped_growing(created, miner.clock)
                else ""
            )
            + (f"; try --mask '{mask}'" if mask else "")
        )
        warning = ShatterWarning("one-position", message, tuple(ids), i + 1, examples, mask, ())
        found.append((lines, warning))
    found.sort(key=lambda lw: -lw[0])
    return [w for _, w in found]


def open_vocabulary(counts: list[int], z: float = 1.96) -> bool:
    """Whether values seen on ``counts`` lines each (one count per distinct value) look
    like a parameter's open vocabulary rather than a closed set of events.

    Good-Turing: ``n1 / N`` (``n1`` values seen once, ``N`` lines) estimates the chance
    that the next line brings a value not seen yet. True when it is more than ``z``
    standard errors above zero, the variance taken as ``(n1 + 2 * n2) / N**2`` (Esty 1983,
    without the ``- n1**2 / N`` term: never smaller). With no value seen twice that is
    ``n1 > z**2``: four values seen once at least; a set whose values all recur never is."""
    n1 = sum(1 for c in counts if c == 1)
    n2 = sum(1 for c in counts if c == 2)
    return n1 > 0 and n1 > z * math.sqrt(n1 + 2 * n2)


def _stopped_growing(created: list[int], clock: int) -> bool:
    """No template of the set was created in the second half of the stretch from its
    first one to the end of the input (``clock`` messages): it appeared and stopped."""
    first = min(created)
    return max(created) <= first + (clock - first) / 2


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
