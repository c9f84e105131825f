"""The streaming template miner: message content -> log key (template id) + typed parameters.

A parser of the Drain family, designed around what Drain gets wrong:

* **Masking first, by token rules that work across systems.** Every whitespace token is
  stripped of surrounding punctuation, split at a ``key=``/``key:``/``name(`` prefix, and its
  value classified: anything containing a digit is a parameter (int, float, ip, hex, time,
  size, duration, path or id), and so are digit-free paths, URLs, e-mail addresses, host and
  dotted class names, file names with a known extension, empty brackets, and month, weekday
  and zone names next to a masked number. Adjacent parameters collapse into one ``<*>`` so
  that variable-length values (dates, ``chrome.exe *64``) give one template. This is what
  makes parameter-heavy messages, which Drain's similarity threshold never matches, group
  correctly.
* **Exact signatures instead of a similarity threshold.** The masked token sequence is the
  template's signature. Two messages that differ in a constant word (``VM Started`` vs ``VM
  Stopped``, ``bytes`` vs ``values``) stay apart, which matters for short messages where one
  word is the whole meaning.
* **Generalisation by evidence.** A slot holding plain words becomes a parameter only when
  ``min_merge_values`` distinct words have been seen in it with everything else equal and at
  least ``min_merge_constants`` other constant tokens (``session closed for user cyrus |
  news | test``). The older templates are merged into the oldest one, whose id is kept; the
  others become aliases (``resolve``), so ids handed out earlier stay meaningful.
* **Speed.** Masking depends only on a line's *shape* (its text with every digit replaced by
  ``0``), so the result of the slow path is cached per shape: a repeated shape costs a
  ``str.translate``, a dict lookup and a ``split``.

State is saved as versioned JSON (``to_dict`` / ``from_dict`` / ``save`` / ``load``), never
pickle.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from logwarden.errors import ConfigError, StateError
from logwarden.records import Event, Param, Record

SCHEMA = "logwarden.parser/1"
WILDCARD = "<*>"

# Changes reported by TemplateMiner.add
UNCHANGED = ""
CREATED = "created"
GENERALIZED = "generalized"


class ParserStateError(StateError):
    """Saved parser state that cannot be loaded (foreign, tampered or wrong version)."""


@dataclass
class MaskRule:
    """A user mask: every match of ``pattern`` in the content becomes one parameter."""

    name: str
    pattern: str
    kind: str = "text"


@dataclass
class MinerConfig:
    """Template miner settings. The defaults are meant for any system; change with care."""

    min_merge_values: int = 3  # distinct words seen in one slot before it becomes <*>
    min_merge_constants: int = 3  # other constant tokens the merged templates must share
    max_templates: int | None = None  # evict least recently used templates beyond this
    masks: list[MaskRule] = field(default_factory=list)  # extra user masks, applied first
    cache_size: int = 200_000  # shape cache entries (cleared when full)

    def __post_init__(self) -> None:
        if self.min_merge_values < 2:
            raise ConfigError("min_merge_values must be >= 2", field="min_merge_values")
        if self.min_merge_constants < 0:
            raise ConfigError("min_merge_constants must be >= 0", field="min_merge_constants")
        if self.max_templates is not None and self.max_templates < 1:
            raise ConfigError("max_templates must be >= 1 or None", field="max_templates")
        self.masks = [m if isinstance(m, MaskRule) else MaskRule(**m) for m in self.masks]
        for m in self.masks:
            try:
                re.compile(m.pattern)
            except re.error as exc:
                raise ConfigError(
                    f"mask {m.name!r}: invalid regex {m.pattern!r}: {exc}", field="masks"
                ) from None


@dataclass(slots=True)
class ParseResult:
    key: int
    template: str
    params: list[Param]
    change: str = UNCHANGED


# --- token classification ---------------------------------------------------------------

_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
# The shape cache key: every run of digits and lower-case hex letters that holds a digit
# becomes "0", whatever its length (ids, hashes, uuid parts, numbers). A token with a digit
# is always a parameter, so two lines of one shape have the same tokens, punctuation and
# words, and mask to the same signature and slots. Their parameters take the kinds of the
# first line of the shape: a slot holding "3f2a" in one line and "3321" in another is one
# kind of value (numeric_value refuses a value that does not parse as its kind).
_NUMBER_RUN = re.compile(r"[a-f]*+[0-9][0-9a-f]*+")  # possessive: no backtracking
_LEAD = frozenset("([{<\"'`")
_TRAIL = frozenset(")]}>\"'`,;:.!?")
_EMPTY_BRACKETS = frozenset({"()", "[]", "{}", "<>", '""', "''"})

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")
_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?")
_IPV6 = re.compile(r"\[?[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\]?(?::\d{1,5})?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+|[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*")
_TIME = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[-T_ ]?\d{1,2}[:.]\d{2}(?:[:.]\d{2}(?:[.,]\d+)?)?)?"
    r"(?:Z|[-+]\d{2}:?\d{2})?|\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
)
_SIZE = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[kKMGTP]i?[bB]|[bB]|bytes?)")
_DURATION = re.compile(r"[-+]?\d+(?:\.\d+)?(?:ns|us|µs|ms|s|sec|secs|min|mins|h|hrs?)")
# key=value, key:value and call(arg prefixes: the key stays in the template
_KEYED = re.compile(r"([A-Za-z_][A-Za-z_.\-]*(?:=|:|\(|\[|\.\.))(.+)")
_LABEL = re.compile(r"[A-Za-z0-9_\-$]+")
# Words that may turn out to be a parameter (user and program names): lower-case only, since
# capitalised and upper-case words in logs are mostly states and verbs ("VM Started").
_WORD = re.compile(r"[a-z][a-z_\-']*")

_TLDS = frozenset(
    "com net org edu gov mil int io us uk de jp cn ru fr it nl br au ca in kr es se ch pl be at "
    "dk no fi cz hu tw hk sg il ie nz za mx ar gr pt tr ua ro info biz co me tv cc ws eu asia "
    "local lan internal localdomain home corp arpa".split()
)
_FILE_EXTS = frozenset(
    "exe dll sys so dylib jar war class py pyc java js ts sh bat ps1 log txt out err csv tsv "
    "json xml yaml yml ini conf cfg properties toml html htm jsp php asp css png jpg gif svg "
    "zip gz tgz bz2 xz tar rpm deb img iso bin dat db sqlite tmp pid lock sock pem crt key "
    "rts".split()
)
_DATE_WORDS = frozenset(
    "Mon Tue Wed Thu Fri Sat Sun Monday Tuesday Wednesday Thursday Friday Saturday Sunday "
    "Jan Feb Mar Apr May Jun Jul Aug Sep Sept Oct Nov Dec January February March April June "
    "July August September October November December "
    "UTC GMT Z PDT PST MDT MST CDT CST EDT EST CET CEST BST IST JST AM PM am pm".split()
)
_UNITS = frozenset("B KB MB GB TB PB KiB MiB GiB TiB bytes".split())


def classify(value: str) -> str | None:
    """The parameter kind of a punctuation-stripped value, or None for a constant word."""
    if not value:
        return None
    if any(c.isdigit() for c in value):
        if _INT.fullmatch(value):
            return "int"
        if _FLOAT.fullmatch(value):
            return "float"
        if _IPV4.fullmatch(value):
            return "ip"
        if _UUID.fullmatch(value):
            return "id"
        if _TIME.fullmatch(value):
            return "time"
        if _SIZE.fullmatch(value):
            return "size"
        if _DURATION.fullmatch(value):
            return "duration"
        if value.count(":") >= 2 and _IPV6.fullmatch(value):
            return "ip"
        if _HEX.fullmatch(value):
            return "hex"
        if "/" in value or "\\" in value:
            return "path"
        return "id"
    return _classify_word(value)


def _classify_word(value: str) -> str | None:
    """Digit-free values that are still parameters: paths, URLs, hosts, files, e-mails."""
    first = value[0]
    if "://" in value:
        return "path"
    if (first == "/" and len(value) > 1) or value.startswith(("./", "../", "~/")) or "\\" in value:
        return "path"
    if "@" in value and "." in value.split("@", 1)[1]:
        return "id"
    dots = value.count(".")
    if dots and not value.endswith(".") and not value.startswith("."):
        labels = value.split(".")
        if all(_LABEL.fullmatch(lab) for lab in labels):
            last = labels[-1]
            if dots >= 3:  # host names and fully qualified class names
                return "host" if value.islower() else "id"
            if value.islower() and last in _TLDS:
                return "host"
            if dots == 1 and last.lower() in _FILE_EXTS and len(labels[0]) > 0:
                return "path"
    if value.count(":") >= 2 and _IPV6.fullmatch(value) and any(c in "abcdefABCDEF" for c in value):
        return "ip"
    return None


@dataclass(slots=True)
class Slot:
    """One parameter of a shape: tokens [start, end) minus a prefix and a suffix."""

    start: int
    end: int
    prefix: int
    suffix: int
    kind: str


def _mask(
    tokens: Sequence[str], user_kinds: dict[str, str] | None = None
) -> tuple[list[str], list[Slot], list[bool]]:
    """Mask a token list: (signature tokens, parameter slots, token-is-mergeable-word)."""
    sig: list[str] = []
    slots: list[Slot | None] = []
    for i, tok in enumerate(tokens):
        n = len(tok)
        a = 0
        while a < n and tok[a] in _LEAD:
            a += 1
        b = n
        while b > a and tok[b - 1] in _TRAIL:
            b -= 1
        core = tok[a:b]
        if not core:
            if tok in _EMPTY_BRACKETS:  # an empty value: "()" groups with "(host)"
                sig.append(tok[0] + WILDCARD + tok[1])
                slots.append(Slot(i, i + 1, 1, 1, "text"))
            else:
                sig.append(tok)
                slots.append(None)
            continue
        # "uid=0", "lr:0a3f", "chdir(/tmp", "depth.....0": the key stays in the template.
        kind = None
        m = _KEYED.fullmatch(core)
        if user_kinds and any(c in user_kinds for c in core):
            # A user mask matched here: the value (after any key= prefix) is that parameter.
            if m is not None and not any(c in user_kinds for c in m.group(1)):
                a += len(m.group(1))
            marks = [user_kinds[c] for c in tok[a:b] if c in user_kinds]
            kind = marks[0] if len(set(marks)) == 1 else "text"
        elif m is not None:
            kind = classify(m.group(2))
            if kind is not None:
                a += len(m.group(1))
        if kind is None:
            kind = classify(core)
        if kind is None:
            sig.append(tok)
            slots.append(None)
        else:
            sig.append(tok[:a] + WILDCARD + tok[b:])
            slots.append(Slot(i, i + 1, a, n - b, kind))
    # Month, weekday and zone names next to a masked number are part of a date.
    for order in (range(len(sig) - 1, -1, -1), range(len(sig))):
        for i in order:
            if slots[i] is None and tokens[i] in _DATE_WORDS:
                left = i > 0 and sig[i - 1] == WILDCARD
                right = i + 1 < len(sig) and sig[i + 1] == WILDCARD
                if left or right:
                    sig[i] = WILDCARD
                    slots[i] = Slot(i, i + 1, 0, 0, "time")
    # A size unit after a bare number belongs to it ("5.2 KB," -> "<*>,").
    for i in range(1, len(sig)):
        s = slots[i - 1]
        if slots[i] is None and sig[i - 1] == WILDCARD and s is not None:
            tok = tokens[i]
            unit = tok.rstrip(",;.)")
            if unit in _UNITS and s.kind in ("int", "float"):
                sig[i] = WILDCARD + tok[len(unit) :]
                slots[i] = Slot(i, i + 1, 0, len(tok) - len(unit), "size")
                s.kind = "size"
    # Collapse runs of adjacent parameters: "<*> <*> <*>" -> "<*>" (variable-length values).
    out_sig: list[str] = []
    out_slots: list[Slot] = []
    mergeable: list[bool] = []
    prev_open = False  # the previous output token ends with a wildcard
    for tok_sig, slot in zip(sig, slots, strict=True):
        if slot is not None and prev_open and tok_sig.startswith(WILDCARD) and out_slots:
            last = out_slots[-1]
            if last.end == slot.start and last.suffix == 0:
                out_sig[-1] = out_sig[-1][: -len(WILDCARD)] + tok_sig
                last.end = slot.end
                last.suffix = slot.suffix
                if last.kind != slot.kind:
                    last.kind = "time" if "time" in (last.kind, slot.kind) else "text"
                prev_open = tok_sig.endswith(WILDCARD)
                continue
        out_sig.append(tok_sig)
        if slot is not None:
            out_slots.append(slot)
            mergeable.append(False)
        else:
            mergeable.append(_WORD.fullmatch(tok_sig) is not None)
        prev_open = slot is not None and tok_sig.endswith(WILDCARD)
    return out_sig, out_slots, mergeable


# --- clusters -----------------------------------------------------------------------------


@dataclass
class Template:
    """A log key: its stable id, current template tokens, and how often it was seen."""

    id: int
    tokens: list[str]
    count: int = 0
    last_seen: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(slots=True)
class _Plan:
    """What a cached shape resolves to: the template id and where its parameters are."""

    key: int
    slots: list[Slot]  # sorted by start
    extract: Callable[[list[str]], list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.extract = _extractor(self.slots)


def _extractor(slots: list[Slot]) -> Callable[[list[str]], list[str]]:
    """``_extract`` for one set of slots, specialised: every line of a cached shape uses it."""
    if any(s.end - s.start != 1 for s in slots):
        return lambda tokens: _extract(tokens, slots)
    if not slots:
        return lambda tokens: []
    if all(s.prefix == 0 and s.suffix == 0 for s in slots):
        if len(slots) == 1:
            only = slots[0].start
            return lambda tokens: [tokens[only]]
        get = operator.itemgetter(*(s.start for s in slots))
        return lambda tokens: list(get(tokens))
    cuts = [(s.start, s.prefix, s.suffix) for s in slots]
    return lambda tokens: [tokens[i][a : len(tokens[i]) - b] for i, a, b in cuts]


_USER_MARK = 0xE000  # private-use characters U+E000.. stand for user-mask matches, one per rule


class TemplateMiner:
    """Streaming template miner (learn mode with ``add``, match-only mode with ``match``)."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self.templates_: dict[int, Template] = {}
        self._aliases: dict[int, int] = {}  # merged id -> surviving id
        self._by_sig: dict[tuple[str, ...], int] = {}  # masked signature -> template id
        self._sigs_of: dict[int, list[tuple[str, ...]]] = {}  # template id -> its signatures
        # (length, position, signature with that position blanked) -> {word: template id}
        self._holes: dict[tuple[int, int, tuple[str, ...]], dict[str, int]] = {}
        self._shape_cache: dict[str, _Plan] = {}
        self._generalized: dict[int, set[int]] = {}  # template id -> slots generalised by merges
        self._next_id = 1
        self.changes_ = 0  # generalisations and merges so far: ids/texts handed out may be stale
        self.changed_ids_: set[int] = set()  # ids whose template text or identity has changed
        self._clock = 0  # lines seen, for LRU eviction
        self._user_masks = [re.compile(m.pattern) for m in self.config.masks]
        self._user_kinds = {chr(_USER_MARK + i): m.kind for i, m in enumerate(self.config.masks)}

    # -- public API ------------------------------------------------------------------------

    def add(self, content: str) -> ParseResult:
        """Parse one message in learn mode: match, generalise or create its template."""
        key, values, slots, change = self._parse(content, learn=True)
        assert key is not None
        return ParseResult(key, self.templates_[key].text, self._params(values, slots), change)

    def match(self, content: str) -> ParseResult | None:
        """Parse one message without learning; None when no template matches."""
        key, values, slots, _ = self._parse(content, learn=False)
        if key is None:
            return None
        return ParseResult(key, self.templates_[key].text, self._params(values, slots))

    def add_values(self, content: str, learn: bool = True) -> tuple[int | None, list[str]]:
        """Fast form of ``add``/``match`` for bulk parsing: (template id, parameter values)."""
        key, values, _, _ = self._parse(content, learn)
        return key, values

    def parse_record(self, record: Record, learn: bool = True) -> Event | None:
        """Turn a Record into an Event (None in match-only mode when nothing matches)."""
        key, values, slots, _ = self._parse(record.content, learn)
        if key is None:
            return None
        return Event(record, key, self.templates_[key].text, self._params(values, slots))

    def resolve(self, key: int) -> int:
        """The surviving id of a template id that may have been merged into another."""
        while key in self._aliases:
            key = self._aliases[key]
        return key

    def template(self, key: int) -> str:
        """Current text of a template id (merged ids resolve to their survivor)."""
        return self.templates_[self.resolve(key)].text

    @property
    def aliases(self) -> dict[int, int]:
        return {k: self.resolve(k) for k in self._aliases}

    def __len__(self) -> int:
        return len(self.templates_)

    # -- the seam for fast paths (the structured CSV sink, raw ingest) -----------------------

    def parse_slots(
        self, content: str, learn: bool = True
    ) -> tuple[int | None, list[str], list[Slot], str]:
        """Parse one message: its key (None: no template and ``learn`` off), parameter
        values, the slots they came from (cacheable per shape) and the change it made
        (UNCHANGED, CREATED or GENERALIZED)."""
        return self._parse(content, learn)

    @property
    def clock(self) -> int:
        """Messages seen so far (the time of least-recently-used eviction)."""
        return self._clock

    # -- the core ----------------------------------------------------------------------------

    def _parse(self, content: str, learn: bool) -> tuple[int | None, list[str], list[Slot], str]:
        self._clock += 1
        user_values: list[str] | None = None
        if self._user_masks:
            content, user_values = self._apply_user_masks(content)
        if user_values is None:
            shape = _NUMBER_RUN.sub("0", content)
        else:  # user masks may treat digits in any way: only same-length shapes
            shape = content.translate(_DIGITS_TO_ZERO)
        plan = self._shape_cache.get(shape)
        tokens = content.split()
        if plan is not None:
            key = plan.key
            tpl = self.templates_.get(key)
            if tpl is None:  # evicted or merged since the plan was cached
                del self._shape_cache[shape]
            else:
                if learn:
                    tpl.count += 1
                    tpl.last_seen = self._clock
                values = plan.extract(tokens)
                if user_values:
                    values = _restore_user_values(values, user_values)
                return key, values, plan.slots, UNCHANGED
        sig_list, slots, mergeable = _mask(tokens, self._user_kinds)
        sig = tuple(sig_list)
        key, change = self._lookup(sig, mergeable, learn)
        if key is None:
            return None, [], [], UNCHANGED
        tpl = self.templates_[key]
        if learn:
            tpl.count += 1
            tpl.last_seen = self._clock
        slots = self._with_generalized_slots(tpl.tokens, sig, tokens, slots)
        if len(self._shape_cache) >= self.config.cache_size:
            self._shape_cache.clear()
        self._shape_cache[shape] = _Plan(key, slots)
        values = _extract(tokens, slots)
        if user_values:
            values = _restore_user_values(values, user_values)
        return key, values, slots, change

    def _lookup(
        self, sig: tuple[str, ...], mergeable: list[bool], learn: bool
    ) -> tuple[int | None, str]:
        key = self._by_sig.get(sig)
        if key is not None:
            key = self.resolve(key)
            if key in self.templates_:
                return key, UNCHANGED
            del self._by_sig[sig]  # its template was evicted
        n = len(sig)
        # A template generalised at some slot matches any word there.
        for i in range(n):
            if mergeable[i]:
                hole = (n, i, (*sig[:i], WILDCARD, *sig[i + 1 :]))
                key = self._by_sig.get(hole[2])
                if key is not None and self.resolve(key) in self.templates_:
                    key = self.resolve(key)
                    if learn:
                        self._bind(sig, key)
                    return key, UNCHANGED
        if not learn:
            return self._match_generalized(sig, mergeable), UNCHANGED
        key = self._match_generalized(sig, mergeable)
        if key is not None:
            self._bind(sig, key)
            return key, UNCHANGED
        # Enough distinct words in one slot, everything else equal: generalise.
        cfg = self.config
        constants = sum(1 for t in sig if WILDCARD not in t)
        for i in range(n):
            if not mergeable[i] or constants - 1 < cfg.min_merge_constants:
                continue
            blank = (*sig[:i], "", *sig[i + 1 :])
            seen = self._holes.get((n, i, blank))
            if seen is None:
                continue
            live = {
                w: self.resolve(k) for w, k in seen.items() if self.resolve(k) in self.templates_
            }
            if sig[i] not in live and len(live) + 1 >= cfg.min_merge_values:
                return self._generalize(sig, i, live), GENERALIZED
        key = self._create(sig, mergeable)
        return key, CREATED

    def _match_generalized(self, sig: tuple[str, ...], mergeable: list[bool]) -> int | None:
        """Templates generalised at several slots: compare token by token (few of them)."""
        for key, slots in self._generalized.items():
            t = self.templates_[key].tokens
            if len(t) == len(sig) and all(
                a == b or (i in slots and mergeable[i])
                for i, (a, b) in enumerate(zip(t, sig, strict=True))
            ):
                return key
        return None

    def _create(self, sig: tuple[str, ...], mergeable: list[bool]) -> int:
        cap = self.config.max_templates
        if cap is not None and len(self.templates_) >= cap:
            self._evict()
        key = self._next_id
        self._next_id += 1
        self.templates_[key] = Template(key, list(sig), 0, self._clock)
        self._bind(sig, key)
        self._register_holes(sig, mergeable, key)
        return key

    def _bind(self, sig: tuple[str, ...], key: int) -> None:
        self._by_sig[sig] = key
        self._sigs_of.setdefault(key, []).append(sig)

    def _register_holes(self, sig: tuple[str, ...], mergeable: Sequence[bool], key: int) -> None:
        n = len(sig)
        for i in range(n):
            if mergeable[i]:
                blank = (*sig[:i], "", *sig[i + 1 :])
                self._holes.setdefault((n, i, blank), {}).setdefault(sig[i], key)

    def _generalize(self, sig: tuple[str, ...], i: int, live: dict[str, int]) -> int:
        survivor = min(live.values())
        tpl = self.templates_[survivor]
        tpl.tokens[i] = WILDCARD
        self._generalized.setdefault(survivor, set()).add(i)
        for other in set(live.values()) - {survivor}:
            self._generalized.pop(other, None)
            gone = self.templates_.pop(other)
            tpl.count += gone.count
            tpl.last_seen = max(tpl.last_seen, gone.last_seen)
            self._aliases[other] = survivor
        for other in set(live.values()) - {survivor}:
            self._sigs_of.setdefault(survivor, []).extend(self._sigs_of.pop(other, []))
        self._bind(sig, survivor)
        self._bind(tuple(tpl.tokens), survivor)
        # Cached shapes of the merged templates now have one more parameter.
        self._shape_cache.clear()
        self.changes_ += 1
        self.changed_ids_.update(live.values())
        return survivor

    def _evict(self) -> None:
        victim = min(self.templates_.values(), key=lambda t: t.last_seen)
        del self.templates_[victim.id]
        self._generalized.pop(victim.id, None)
        # Forget everything that pointed at it, so memory stays bounded on endless input.
        for sig in self._sigs_of.pop(victim.id, []):
            if self._by_sig.get(sig) == victim.id:
                del self._by_sig[sig]
            n = len(sig)
            for i, word in enumerate(sig):
                hole = (n, i, (*sig[:i], "", *sig[i + 1 :]))
                seen = self._holes.get(hole)
                if seen is not None and seen.get(word) == victim.id:
                    del seen[word]
                    if not seen:
                        del self._holes[hole]
        for old in [k for k, v in self._aliases.items() if v == victim.id]:
            del self._aliases[old]
        self._shape_cache.clear()

    @staticmethod
    def _with_generalized_slots(
        template: list[str], sig: tuple[str, ...], tokens: list[str], slots: list[Slot]
    ) -> list[Slot]:
        """Add parameter slots for words that the template has generalised to <*>."""
        if len(template) != len(sig) or tuple(template) == sig:
            return slots
        extra: list[Slot] = []
        # Map signature positions back to token positions (runs may have collapsed).
        pos = 0
        si = 0
        for j, t in enumerate(sig):
            while si < len(slots) and slots[si].end <= pos:
                si += 1
            if si < len(slots) and slots[si].start == pos and WILDCARD in t:
                width = slots[si].end - slots[si].start
            else:
                width = 1
            if template[j] == WILDCARD and t != WILDCARD and WILDCARD not in t:
                extra.append(Slot(pos, pos + 1, 0, 0, "text"))
            pos += width
        if not extra or pos != len(tokens):
            return slots
        return sorted([*slots, *extra], key=lambda s: s.start)

    def _apply_user_masks(self, content: str) -> tuple[str, list[str]]:
        found: list[tuple[int, int, str, str]] = []
        for idx, rx in enumerate(self._user_masks):
            for m in rx.finditer(content):
                if m.end() > m.start():
                    found.append((m.start(), m.end(), chr(_USER_MARK + idx), m.group()))
        if not found:
            return content, []
        found.sort()
        parts: list[str] = []
        values: list[str] = []
        pos = 0
        for start, end, mark, text in found:
            if start < pos:
                continue  # overlapping matches: the earlier one wins
            parts.append(content[pos:start])
            parts.append(mark)
            values.append(text)
            pos = end
        parts.append(content[pos:])
        return "".join(parts), values

    @staticmethod
    def _params(values: list[str], slots: list[Slot]) -> list[Param]:
        return [Param(v, s.kind) for v, s in zip(values, slots, strict=False)]

    # -- persistence -----------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The parser state as JSON-ready data (no arrays: the second item is empty)."""
        state = {
            "schema": SCHEMA,
            "config": asdict(self.config),
            "next_id": self._next_id,
            "templates": [
                {"id": t.id, "tokens": t.tokens, "count": t.count}
                for t in sorted(self.templates_.values(), key=lambda t: t.id)
            ],
            "aliases": sorted([k, v] for k, v in self._aliases.items()),
            "generalized": sorted([k, sorted(v)] for k, v in self._generalized.items()),
            "signatures": [[list(sig), key] for sig, key in self._by_sig.items()],
        }
        return state, {}

    @classmethod
    def from_state(
        cls, state: dict[str, Any], arrays: Mapping[str, Any] | None = None
    ) -> TemplateMiner:
        if not isinstance(state, dict) or state.get("schema") != SCHEMA:
            found = state.get("schema") if isinstance(state, dict) else type(state).__name__
            raise ParserStateError(
                f"not a logwarden parser state of schema {SCHEMA} (found {found!r})"
            )
        try:
            miner = cls(MinerConfig(**state["config"]))
            miner._next_id = int(state["next_id"])
            for t in state["templates"]:
                tokens = [str(x) for x in t["tokens"]]
                miner.templates_[int(t["id"])] = Template(int(t["id"]), tokens, int(t["count"]))
            miner._aliases = {int(k): int(v) for k, v in state["aliases"]}
            miner._generalized = {int(k): {int(i) for i in v} for k, v in state["generalized"]}
            for sig_list, key in state["signatures"]:
                sig = tuple(str(x) for x in sig_list)
                miner._bind(sig, int(key))
                mergeable = [_WORD.fullmatch(t) is not None for t in sig]
                miner._register_holes(sig, mergeable, int(key))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParserStateError(f"corrupt parser state: {exc}") from None
        return miner

    def save(self, path: str | Path) -> None:
        state, _ = self.to_state()
        Path(path).write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TemplateMiner:
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParserStateError(f"cannot read parser state {path}: {exc}") from None
        return cls.from_state(state)


def _extract(tokens: list[str], slots: list[Slot]) -> list[str]:
    out = []
    for s in slots:
        if s.end - s.start == 1:
            tok = tokens[s.start]
            out.append(tok[s.prefix : len(tok) - s.suffix])
        else:
            text = " ".join(tokens[s.start : s.end])
            out.append(text[s.prefix : len(text) - s.suffix])
    return out


def _restore_user_values(values: list[str], user_values: list[str]) -> list[str]:
    """Put the text that user masks replaced back into the extracted parameter values."""
    it = iter(user_values)
    out = []
    for v in values:
        if any(_USER_MARK <= ord(c) < _USER_MARK + 256 for c in v):
            v = "".join(next(it, "") if _USER_MARK <= ord(c) < _USER_MARK + 256 else c for c in v)
        out.append(v)
    return out
