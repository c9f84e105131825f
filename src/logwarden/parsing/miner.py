"""The streaming template miner: message content -> log key (template id) + typed parameters.

Two stages, both meant for systems nobody here has looked at:

1. **Masking by shape** (the fast path). Every whitespace token is stripped of surrounding
   punctuation, split at ``key=`` / ``key:`` / ``name(`` prefixes (nested ones too, but a
   key must be a name: ``www.example.com:443`` is a host and port), and its value
   classified by a few named rules (:data:`RULES`): anything holding a digit is a value,
   and so are URLs (the scheme stays), paths, e-mail addresses, host and qualified names,
   file names, empty brackets and date words next to a number; ``name()`` is a function
   name, digits or not. Adjacent values collapse into one ``<*>``. A message gives two
   forms:

   * the *fine* form, shown as the template text (``<*> bytes (<*> KB) sent``,
     ``core.<*>``: a word glued to a number stays visible);
   * the *canonical* form, the grouping key, in which a value with its units and bracketed
     annotations is one ``<*>`` (``<*> sent``), and so is a bracketed list of one-token
     items, so that optional and variable-length parts (``12 bytes`` / ``12 bytes (0.01
     KB)``, ``<1 sec`` / ``00:01``, ``[a, b]`` / ``[a, b, c]``) do not split an event.

   Masking depends only on a line's *shape* (digit runs replaced by ``0``), so its result
   is cached per shape: a repeated shape costs a ``re.sub``, a dict lookup and a ``split``.

2. **Variable positions learned from the data** (new shapes only). A canonical signature
   seen for the first time that differs from a known template at one position only
   (sharing at least ``min_merge_constants`` constant tokens with it) joins that
   template's *family*: the family counts the distinct values seen at the position. When
   they reach the evidence threshold, the position becomes a parameter whatever its tokens
   look like (host names, user names, ``key=word``, codes): ``min_merge_values`` distinct
   values when they are all lower-case words, ``min_merge_values_other`` for any other
   shape, and two words beside a masked value seen in the same frame (``rhost=<*>`` /
   ``rhost=alpha`` / ``rhost=beta``). Templates that now match merge into the oldest, whose
   id survives; templates that now differ from it at one position join the family as
   evidence, so positions that vary together are learned one after the other. Two
   messages that differ in one word (``VM Started`` / ``VM Stopped``, ``bytes`` /
   ``values``) stay apart until that much evidence says the word is a value. Merged ids
   resolve to the survivor (``resolve``); every merge or change of a template's text is
   counted in ``changes_`` / ``changed_ids_``.

The template text is the fine form shared by all of a template's messages, generalised
token by token (``user=root`` + ``user=news`` -> ``user=<*>``); where they do not share it
(a value whose units or annotations vary), the canonical ``<*>`` is shown. The
parameters of a message always rebuild it: the template text with the values put back
equals the message, whitespace normalised.

Candidates are found by dict lookups (a root is indexed under its pattern with one more
position blanked), so the cost per new shape does not grow with the number of templates.
State is saved as versioned JSON (``to_state`` / ``from_state`` / ``save`` / ``load``),
never pickle. ``logwarden.parsing.diagnostics.diagnose`` looks at a miner for signs of a
shattered template set.
"""

from __future__ import annotations

import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from logwarden.errors import ConfigError, StateError
from logwarden.records import Event, Param, Record

SCHEMA = "logwarden.parser/2"
WILDCARD = "<*>"

# Changes reported by TemplateMiner.add
UNCHANGED = ""
CREATED = "created"
GENERALIZED = "generalized"

# The token rules and learning mechanisms, named for what they match in general. Each can
# be switched off (MinerConfig.disabled_rules) so that bench/parser_accuracy.py can show
# which of them each system needs; `TemplateMiner.rule_hits_` counts where they fire.
RULES: dict[str, str] = {
    "number": "a token holding a digit is a value (integers, floats, IPs, times, hex, ids)",
    "key-value": "key=value, key:value, name(value: the key stays, the value is classified",
    "glued-words": "display only: a word glued to a number stays (core.<*>, <*>:Got)",
    "call-names": "name() is a function name, digits or not (jk2_init())",
    "url": "scheme://... (the scheme stays in the template)",
    "path": "absolute, relative and Windows paths",
    "email": "user@host.domain",
    "hostname": "lower-case dotted names ending in a top-level domain",
    "qualified-name": "names with three or more dots (host names, Java classes)",
    "file-name": "name.ext with a common file extension",
    "empty-brackets": "(), [], {}, <> and empty quotes: an empty value",
    "date-words": "month, weekday and zone names next to a number",
    "value-runs": "values next to each other are one value (dates, lists of numbers); for "
    "grouping, so are a value's units and bracketed annotations (12 bytes (0.01 KB))",
    "bracket-lists": "grouping only: a bracketed list of one-token items is one position",
    "quoted-strings": "grouping only: a quoted string of several words is one position",
    "masked-slot": "words where a masked value was seen, in the same frame, are values",
    "learn-words": "a position of lower-case words becomes a parameter on enough evidence",
    "learn-any": "a position of any other shape becomes a parameter on more evidence",
}


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
    """Template miner settings. The defaults are meant for any system; change with care.

    The thresholds were checked on eight loghub systems leave one system out (see
    bench/parser_accuracy.py): for each system held out, the other seven choose these
    values. ``min_merge_values_other`` at 4 or more keeps apart the events of four systems
    that differ in one of three upper-case or punctuated words (states, methods, axes);
    at 5, a fifth (OpenStack's four ``VM`` lifecycle events) as well.
    """

    # distinct lower-case words seen at one position before it becomes <*>
    min_merge_values: int = 3
    # distinct values of any other shape (Capitalised, UPPER, key=word, codes) needed
    min_merge_values_other: int = 5
    # constant tokens a message must share in place with a template to join its family
    min_merge_constants: int = 3
    max_templates: int | None = None  # evict least recently used templates beyond this
    masks: list[MaskRule] = field(default_factory=list)  # extra user masks, applied first
    cache_size: int = 100_000  # shape cache entries per generation (two; recently used kept)
    disabled_rules: list[str] = field(default_factory=list)  # names from RULES to switch off

    def __post_init__(self) -> None:
        if self.min_merge_values < 2:
            raise ConfigError("min_merge_values must be >= 2", field="min_merge_values")
        if self.min_merge_values_other < 2:
            raise ConfigError("min_merge_values_other must be >= 2", field="min_merge_values_other")
        if self.min_merge_constants < 0:
            raise ConfigError("min_merge_constants must be >= 0", field="min_merge_constants")
        if self.max_templates is not None and self.max_templates < 1:
            raise ConfigError("max_templates must be >= 1 (or unset)", field="max_templates")
        if self.cache_size < 1:
            raise ConfigError("cache_size must be >= 1", field="cache_size")
        if isinstance(self.disabled_rules, str):
            raise ConfigError(
                f"disabled_rules is a list of rule names, got the string {self.disabled_rules!r}",
                field="disabled_rules",
            )
        self.disabled_rules = [str(r) for r in self.disabled_rules]
        unknown = sorted(set(self.disabled_rules) - set(RULES))
        if unknown:
            raise ConfigError(
                f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}",
                field="disabled_rules",
            )
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
# is always a value, so two lines of one shape have the same tokens, punctuation and
# words, and mask to the same forms and slots. Their parameters take the kinds of the
# first line of the shape: a slot holding "3f2a" in one line and "3321" in another is one
# kind of value (numeric_value refuses a value that does not parse as its kind).
_NUMBER_RUN = re.compile(r"[a-f]*+[0-9][0-9a-f]*+")  # possessive: no backtracking
# A finer key looked up first: the message's UTF-8 bytes with every digit made "0" (a
# bytes translate, ten times cheaper than the regex). Two messages with the same finer key
# have their digits at the same places among the same other characters, so the same
# shape: the finer key only ever finds the plan the shape would. Numbers of varying
# length give a few shapes each (1,469 finer keys for 42 shapes in 200,000 HDFS lines).
_DIGIT_BYTES_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_DIGIT_ROUND = 4096  # misses counted before the finer keys' hit rate is judged
_DIGIT_PAUSE = 65536  # messages parsed without them after a round of mostly misses
_LEAD = frozenset("([{<\"'`")
_TRAIL = frozenset(")]}>\"'`,;:.!?")
_EMPTY_BRACKETS = frozenset({"()", "[]", "{}", "<>", '""', "''"})
_SEPARATORS = frozenset(",;:.!?")  # punctuation that ends a value run and stays outside it

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
# a word glued to a number ("core.1234", "CPU#0", "jetty-6.1.26"): shown as "core.<*>"
# A word glued to a number ("core.1234", "CPU#0", "jetty-6.1.26", "10.0.0.1:80:Got"): the word
# stays visible in the template text. The number part is one alphanumeric run, then dotted
# numbers at most (a host name such as "cp-1.example.org" is a value as a whole).
_GLUED_WORDS = re.compile(
    r"(?P<pre>[A-Za-z]+[.#\-])(?P<value>[A-Za-z0-9_]*\d[A-Za-z0-9_]*(?:\.\d+)*)"
    r"|(?P<value2>.*\d.*?)(?P<post>:[A-Za-z]{2,})"
)
# A call with no arguments is a function name, digits or not: "jk2_init()".
_CALL = re.compile(r"[A-Za-z_][A-Za-z0-9_.:$]*\(\)")
_LABEL = re.compile(r"[A-Za-z0-9_\-$]+")
# Words that may turn out to be a parameter on little evidence (user and program names):
# lower-case only, since capitalised and upper-case words in logs are mostly states, verbs
# and methods ("VM Started", "GET"), which need more evidence.
_WORD = re.compile(r"[a-z][a-z_\-']*")

_TLDS = frozenset(
    "com net org edu gov mil int io us uk de jp cn ru fr it nl br au ca in kr es se ch pl be at "
    "dk no fi cz hu tw hk sg il ie nz za mx ar gr pt tr ua ro info biz co me tv cc ws eu asia "
    "local lan internal localdomain home corp arpa".split()
)
_FILE_EXTS = frozenset(
    "exe dll sys so dylib jar war class py pyc java js ts sh bat ps1 log txt out err csv tsv "
    "json xml yaml yml ini conf cfg properties toml html htm jsp php asp css png jpg gif svg "
    "zip gz tgz bz2 xz tar rpm deb img iso bin dat db sqlite tmp pid lock sock pem crt key".split()
)
_DATE_WORDS = frozenset(
    "Mon Tue Wed Thu Fri Sat Sun Monday Tuesday Wednesday Thursday Friday Saturday Sunday "
    "Jan Feb Mar Apr May Jun Jul Aug Sep Sept Oct Nov Dec January February March April June "
    "July August September October November December "
    "UTC GMT Z PDT PST MDT MST CDT CST EDT EST CET CEST BST IST JST AM PM am pm".split()
)
# Units of size and time: after a value they belong to it (in the grouping form only).
_SIZE_UNITS = frozenset("B KB MB GB TB PB kB KiB MiB GiB TiB bytes byte".split())
_TIME_UNITS = frozenset(
    "ns us µs ms s sec secs second seconds min mins minute minutes h hr hrs hour hours".split()
)
_UNITS = _SIZE_UNITS | _TIME_UNITS
_NO_RULES: frozenset[str] = frozenset()


def classify(value: str) -> str | None:
    """The parameter kind of a punctuation-stripped value, or None for a constant word."""
    return _classify(value, _NO_RULES)[0]


def _classify(value: str, off: frozenset[str]) -> tuple[str | None, str]:
    """(kind or None, name of the rule that made it a value)."""
    if not value:
        return None, ""
    if any(c.isdigit() for c in value):
        if "number" in off:
            return None, ""
        return _number_kind(value), "number"
    return _classify_word(value, off)


def _number_kind(value: str) -> str:
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


def _classify_word(value: str, off: frozenset[str]) -> tuple[str | None, str]:
    """Digit-free values that are still parameters: paths, URLs, hosts, files, e-mails."""
    first = value[0]
    if "://" in value:
        return ("path", "url") if "url" not in off else (None, "")
    if (first == "/" and len(value) > 1) or value.startswith(("./", "../", "~/")) or "\\" in value:
        return ("path", "path") if "path" not in off else (None, "")
    if "@" in value and "." in value.split("@", 1)[1]:
        return ("id", "email") if "email" not in off else (None, "")
    dots = value.count(".")
    if dots and not value.endswith(".") and not value.startswith("."):
        labels = value.split(".")
        if all(_LABEL.fullmatch(lab) for lab in labels):
            last = labels[-1]
            if dots >= 3 and "qualified-name" not in off:  # host names, qualified class names
                return ("host" if value.islower() else "id"), "qualified-name"
            if value.islower() and last in _TLDS and "hostname" not in off:
                return "host", "hostname"
            if dots == 1 and last.lower() in _FILE_EXTS and labels[0] and "file-name" not in off:
                return "path", "file-name"
    return None, ""


@dataclass(slots=True)
class Slot:
    """One parameter of a shape: tokens [start, end) minus a prefix and a suffix."""

    start: int
    end: int
    prefix: int
    suffix: int
    kind: str


@dataclass(slots=True)
class _Masked:
    """A message after masking: fine (display) and canonical (grouping) tokens, one each per
    fine position, before the canonical form's value runs collapse."""

    fine: list[str]
    canon: list[str]
    spans: list[tuple[int, int]]  # whitespace-token range of each position
    fslots: list[Slot | None]  # slot of each fine token (None: a constant)
    cslots: list[Slot | None]  # slot of each canonical token


def _strip(tok: str) -> tuple[int, int]:
    n = len(tok)
    a = 0
    while a < n and tok[a] in _LEAD:
        a += 1
    b = n
    while b > a and tok[b - 1] in _TRAIL:
        b -= 1
    return a, b


def _key_prefix(core: str, off: frozenset[str]) -> int:
    """Length of the ``key=`` / ``name(`` prefix that stays in the template (0: none).

    Nested keys count too (``Retry(maxRetries=10``, ``headroom=<memory:0``), but a key must
    be a name, not itself a value: ``www.example.com:443`` is a host and port."""
    if "key-value" in off:
        return 0
    total = 0
    rest = core
    while True:
        m = _KEYED.fullmatch(rest)
        if m is None:
            return total
        key = m.group(1)
        name = key.rstrip("=:([.")
        if _classify(name, off)[0] is not None:
            return total
        total += len(key)
        rest = m.group(2)
        lead = 0
        while lead < len(rest) - 1 and rest[lead] in _LEAD:
            lead += 1
        if lead:  # "headroom=<memory:0": look for a key inside the bracket
            inner = _KEYED.fullmatch(rest[lead:])
            if inner is None or _classify(inner.group(1).rstrip("=:([."), off)[0] is not None:
                return total
            total += lead
            rest = rest[lead:]


def _mask(
    tokens: Sequence[str],
    user_kinds: dict[str, str] | None,
    off: frozenset[str],
    hits: Counter[str],
) -> _Masked:
    """Mask a token list into its fine and canonical forms (see the module docstring)."""
    fine: list[str] = []
    canon: list[str] = []
    fslots: list[Slot | None] = []
    cslots: list[Slot | None] = []
    for i, tok in enumerate(tokens):
        n = len(tok)
        a, b = _strip(tok)
        core = tok[a:b]
        if not core:
            if tok in _EMPTY_BRACKETS and "empty-brackets" not in off:
                # an empty value: "()" groups with "(host)"
                hits["empty-brackets"] += 1
                t = tok[0] + WILDCARD + tok[1]
                s = Slot(i, i + 1, 1, 1, "text")
                fine.append(t)
                canon.append(t)
                fslots.append(s)
                cslots.append(s)
            else:
                fine.append(tok)
                canon.append(tok)
                fslots.append(None)
                cslots.append(None)
            continue
        kind: str | None = None
        rule = ""
        if "call-names" not in off and _CALL.fullmatch(tok, a, len(tok.rstrip(",;:.!?"))):
            hits["call-names"] += 1
            fine.append(tok)
            canon.append(tok)
            fslots.append(None)
            cslots.append(None)
            continue
        if user_kinds and any(c in user_kinds for c in core):
            # A user mask matched here: the value (after any key= prefix) is that parameter.
            m = _KEYED.fullmatch(core)
            if m is not None and not any(c in user_kinds for c in m.group(1)):
                a += len(m.group(1))
            marks = [user_kinds[c] for c in tok[a:b] if c in user_kinds]
            kind = marks[0] if len(set(marks)) == 1 else "text"
            rule = "user-mask"
        else:
            scheme = core.find("://")
            if scheme > 0 and core[:scheme].isalpha() and "url" not in off:
                a += scheme + 3  # "hdfs://host/x": the scheme stays, like a key
                kind, rule = "path", "url"
                if a >= b:
                    kind = None
            else:
                k = _key_prefix(core, off)
                if k:
                    kind, rule = _classify(core[k:], off)
                    if kind is not None:
                        a += k
                        hits["key-value"] += 1
                if kind is None:
                    kind, rule = _classify(core, off)
        if kind is None:
            fine.append(tok)
            canon.append(tok)
            fslots.append(None)
            cslots.append(None)
            continue
        hits[rule] += 1
        t = tok[:a] + WILDCARD + tok[b:]
        s = Slot(i, i + 1, a, n - b, kind)
        canon.append(t)
        cslots.append(s)
        # Display: a word glued to a number stays visible ("core.<*>"), the group key does not
        # need it (a different word there is the same event at least as often as not).
        g = (
            _GLUED_WORDS.fullmatch(tok, a, b)
            if rule == "number" and "glued-words" not in off
            else None
        )
        if g is not None:
            hits["glued-words"] += 1
            va, vb = g.span("value" if g["pre"] else "value2")
            fine.append(tok[:va] + WILDCARD + tok[vb:])
            fslots.append(Slot(i, i + 1, va, n - vb, kind))
        else:
            fine.append(t)
            fslots.append(s)
    # Month, weekday and zone names next to a masked value are part of a date.
    if "date-words" not in off:
        for order in (range(len(fine) - 1, -1, -1), range(len(fine))):
            for i in order:
                if fslots[i] is None and tokens[i] in _DATE_WORDS:
                    left = i > 0 and canon[i - 1] == WILDCARD
                    right = i + 1 < len(canon) and canon[i + 1] == WILDCARD
                    if left or right:
                        hits["date-words"] += 1
                        fine[i] = canon[i] = WILDCARD
                        fslots[i] = cslots[i] = Slot(i, i + 1, 0, 0, "time")
    spans = [(i, i + 1) for i in range(len(fine))]
    if "value-runs" in off:
        return _Masked(fine, canon, spans, fslots, cslots)
    # Collapse runs of adjacent values: "<*> <*> <*>" -> "<*>" (dates, "chrome.exe *64").
    out = _Masked([], [], [], [], [])
    for i in range(len(fine)):
        fs, cs = fslots[i], cslots[i]
        if out.fine and fs is not None and cs is not None and fs.prefix == 0 == cs.prefix:
            lf, lc = out.fslots[-1], out.cslots[-1]
            if lf is not None and lc is not None and lf.suffix == 0 == lc.suffix:
                hits["value-runs"] += 1
                out.fine[-1] = out.fine[-1][: -len(WILDCARD)] + fine[i]
                out.canon[-1] = out.canon[-1][: -len(WILDCARD)] + canon[i]
                out.spans[-1] = (out.spans[-1][0], i + 1)
                kind = _joint_kind(lf.kind, fs.kind)
                out.fslots[-1] = Slot(lf.start, i + 1, lf.prefix, fs.suffix, kind)
                out.cslots[-1] = Slot(lc.start, i + 1, lc.prefix, cs.suffix, kind)
                continue
        out.fine.append(fine[i])
        out.canon.append(canon[i])
        out.spans.append(spans[i])
        out.fslots.append(fs)
        out.cslots.append(cs)
    return out


def _joint_kind(a: str, b: str) -> str:
    if a == b:
        return a
    return "time" if "time" in (a, b) else "text"


def _is_value_token(tok: str) -> bool:
    """A masked value with nothing but punctuation around it: ``<*>``, ``(<*>)``, ``<<*>,``."""
    i = tok.find(WILDCARD)
    if i < 0:
        return False
    rest = tok[:i] + tok[i + len(WILDCARD) :]
    return not any(c.isalnum() for c in rest) and WILDCARD not in rest


def _is_unit(tok: str) -> bool:
    a, b = _strip(tok)
    return WILDCARD not in tok and tok[a:b] in _UNITS


_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def _outside_suffix(run: Sequence[str]) -> int:
    """How many trailing characters of a value run stay outside it: separators, and closing
    brackets that no bracket inside the run opened (``14.0 KB),`` -> ``),``)."""
    last = run[-1]
    k = len(last)
    while k > 0 and (last[k - 1] in _SEPARATORS or last[k - 1] in _CLOSERS):
        k -= 1
    tail = last[k:]
    if not tail:
        return 0
    body = " ".join(run)[: -len(tail)].replace(WILDCARD, "")
    depth = {c: body.count(o) - body.count(c) for c, o in _CLOSERS.items()}
    i = 0
    while i < len(tail) and tail[i] in _CLOSERS and depth[tail[i]] > 0:
        depth[tail[i]] -= 1
        i += 1
    return len(tail) - i


_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _list_end(m: _Masked, i: int) -> int:
    """The end (exclusive) of a bracketed list of one-token items, without values, that
    starts at position ``i`` (``[apple,`` ``pear,`` ``lamp]``), or ``i`` when none does."""
    first = m.canon[i]
    if not first.endswith(","):
        return i
    o = max(first.rfind(c) for c in _OPENERS)
    if o < 0 or _OPENERS[first[o]] in first[o:]:
        return i
    closer = _OPENERS[first[o]]
    for j in range(i + 1, len(m.canon)):
        t = m.canon[j]
        if m.cslots[j] is not None or any(c in t for c in _OPENERS):
            return i
        body = t.rstrip(",;:.!?")
        if body.endswith(closer) and closer not in body[:-1]:
            return j + 1
        if not t.endswith(",") or closer in t:
            return i
    return i


_QUOTE_START = re.compile(r"(?:[A-Za-z_][\w.\-]*[=:])?([\"'])")
_MAX_GROUP = 32  # tokens in a quoted string or list taken as one position, at most


def _quote_end(m: _Masked, i: int) -> int:
    """The end (exclusive) of a quoted string of several words, without values, that
    starts at position ``i`` (``tag="View`` ``Lock"``), or ``i`` when none does."""
    first = m.canon[i]
    q = _QUOTE_START.match(first)
    if q is None or q.group(1) in first[q.end() :]:
        return i
    quote = q.group(1)
    for j in range(i + 1, min(len(m.canon), i + _MAX_GROUP)):
        t = m.canon[j]
        if m.cslots[j] is not None:
            return i
        k = t.find(quote)
        if k >= 0:
            rest = t[k + 1 :]
            return j + 1 if not rest.strip(",;:.!?)]}") else i
    return i


@dataclass(slots=True)
class _Canon:
    """The grouping form of a message: one token per position, with its slot, its
    whitespace-token range and the fine positions [start, end) it stands for."""

    sig: tuple[str, ...]
    slots: list[Slot | None]
    spans: list[tuple[int, int]]
    fine: list[tuple[int, int]]


def _canonical(m: _Masked, off: frozenset[str], hits: Counter[str]) -> _Canon:
    """The grouping form: a value with the units and bracketed values that follow it is one
    ``<*>`` (trailing separators and unopened brackets stay outside), whatever its length."""
    out: list[str] = []
    slots: list[Slot | None] = []
    spans: list[tuple[int, int]] = []
    fine: list[tuple[int, int]] = []
    n = len(m.canon)
    runs = "value-runs" not in off
    i = 0
    lists = "bracket-lists" not in off
    quotes = "quoted-strings" not in off
    while i < n:
        tok = m.canon[i]
        s = m.cslots[i]
        end = _list_end(m, i) if lists and s is None else i
        if end == i and quotes and s is None:
            end = _quote_end(m, i)
            if end > i:
                hits["quoted-strings"] += 1
        elif end > i:
            hits["bracket-lists"] += 1
        if end > i:
            out.append(" ".join(m.canon[i:end]))
            slots.append(None)
            spans.append((m.spans[i][0], m.spans[end - 1][1]))
            fine.append((i, end))
            i = end
            continue
        if runs and s is not None and _is_value_token(tok):
            j = i + 1
            unit = ""
            kinds = {s.kind}
            while j < n:
                nxt = m.canon[j]
                ns = m.cslots[j]
                if ns is not None and _is_value_token(nxt):
                    kinds.add(ns.kind)
                elif nxt.rstrip(",;:.!?") in _EMPTY_BRACKETS:
                    pass  # an empty value after a value: "<*> ()" groups with "<*> (<*>)"
                elif _is_unit(nxt):
                    a, b = _strip(nxt)
                    unit = unit or ("size" if nxt[a:b] in _SIZE_UNITS else "duration")
                else:
                    break
                j += 1
            sep = _outside_suffix(m.canon[i:j])
            ctok = WILDCARD + m.canon[j - 1][len(m.canon[j - 1]) - sep :] if sep else WILDCARD
            if j - i > 1 or tok != ctok:
                hits["value-runs"] += 1
                start, end = m.spans[i][0], m.spans[j - 1][1]
                kind = unit or (kinds.pop() if len(kinds) == 1 else "text")
                out.append(ctok)
                slots.append(Slot(start, end, 0, sep, kind))
                spans.append((start, end))
                fine.append((i, j))
                i = j
                continue
        out.append(tok)
        slots.append(s)
        spans.append(m.spans[i])
        fine.append((i, i + 1))
        i += 1
    return _Canon(tuple(out), slots, spans, fine)


# --- fine-form generalisation (the template text) ---------------------------------------


def _parts(tok: str) -> tuple[str, str]:
    """(text before the first wildcard, text after the last); a constant is both."""
    i = tok.find(WILDCARD)
    if i < 0:
        return tok, tok
    return tok[:i], tok[tok.rfind(WILDCARD) + len(WILDCARD) :]


def _fits(pattern: str, tok: str) -> bool:
    """Whether a fine token (or pattern) is an instance of a template-text token."""
    if pattern == tok:
        return True
    if WILDCARD not in pattern:
        return False
    p, s = _parts(pattern)
    if WILDCARD in tok:
        pre, post = _parts(tok)
        return pre.startswith(p) and post.endswith(s)
    return tok.startswith(p) and tok.endswith(s) and len(tok) >= len(p) + len(s)


def _generalise_token(a: str, b: str) -> str:
    """The most specific template-text token of which both are instances: a common prefix
    ending at punctuation, ``<*>``, a common suffix starting at punctuation."""
    if _fits(a, b):
        return a
    if _fits(b, a):
        return b
    ap, as_ = _parts(a)
    bp, bs = _parts(b)
    k = 0
    while k < len(ap) and k < len(bp) and ap[k] == bp[k]:
        k += 1
    while k > 0 and ap[k - 1].isalnum():
        k -= 1
    prefix = ap[:k]
    k = 0
    while k < len(as_) and k < len(bs) and as_[-1 - k] == bs[-1 - k]:
        k += 1
    while k > 0 and as_[len(as_) - k].isalnum():
        k -= 1
    suffix = as_[len(as_) - k :] if k else ""
    for tok in (a, b):
        if WILDCARD not in tok and len(prefix) + len(suffix) > len(tok):
            suffix = ""
            if len(prefix) > len(tok):
                prefix = ""
    return prefix + WILDCARD + suffix


Entry = tuple[str, ...] | None  # the fine tokens shown for one canonical position (None:
# its messages do not share them: the canonical token is shown)


def _widen_entry(entry: Entry, fine: Entry) -> Entry:
    """One position of the template text widened to cover one more message's fine tokens.
    A single token generalises (``user=root`` + ``user=news`` -> ``user=<*>``); a value run
    whose units or annotations differ shows its canonical ``<*>``."""
    if entry is None or fine is None or len(entry) != len(fine):
        return None
    if all(_fits(e, f) for e, f in zip(entry, fine, strict=True)):
        return entry
    if len(entry) == 1:
        return (_generalise_token(entry[0], fine[0]),)
    return None


def _widen(display: list[Entry], fine: Sequence[Entry]) -> list[Entry]:
    """The template text widened to cover one more message (the same list when it does)."""
    out = [_widen_entry(e, f) for e, f in zip(display, fine, strict=True)]
    return display if out == display else out


# --- templates ------------------------------------------------------------------------------


@dataclass
class Template:
    """A log key: its stable id, the pattern messages are matched against, and its text."""

    id: int
    tokens: list[str]  # canonical pattern: <*> where values go, whatever their length
    count: int = 0
    last_seen: int = 0
    # per canonical position, the fine tokens all its messages share (None: they do not)
    display: list[Entry] = field(default_factory=list)
    created_at: int = 0  # messages seen by the miner when it was created
    version: int = 0  # bumped whenever the text or the pattern changes (cached plans check it)

    @property
    def text(self) -> str:
        if not self.display:
            return " ".join(self.tokens)
        return " ".join(
            " ".join(e) if e is not None else t
            for e, t in zip(self.display, self.tokens, strict=True)
        )


@dataclass(slots=True)
class _Plan:
    """What a cached shape resolves to: the template id and where its parameters are."""

    key: int
    version: int
    slots: list[Slot]  # sorted by start
    canonical: bool = False  # slots of the canonical text (a match-only message that the
    # template's fine text does not cover)
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
_VALUE_CAP = 64  # distinct values remembered per family position (enough for any threshold)

Sig = tuple[str, ...]


class TemplateMiner:
    """Streaming template miner (learn mode with ``add``, match-only mode with ``match``)."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self.templates_: dict[int, Template] = {}
        self._aliases: dict[int, int] = {}  # merged id -> surviving id
        self._by_sig: dict[Sig, int] = {}  # canonical signature -> template id
        self._sigs_of: dict[int, list[Sig]] = {}  # template id -> its signatures
        self._shape_cache: dict[str, _Plan] = {}  # the young generation
        self._digit_cache: dict[bytes, _Plan] = {}  # finer keys (_DIGIT_BYTES_TO_ZERO)
        # Its hits and lookups in the current round, and messages left to parse without it
        # (a log whose ids are hex or of varying length rarely repeats a finer key).
        self._digit_hits = 0
        self._digit_misses = 0
        self._digit_skip = 0
        self._shape_old: dict[str, _Plan] = {}
        self._shapes_of: dict[int, set[str]] = {}  # template id -> shapes cached for it
        # Stage 2. Roots are templates that head a family; members wait to merge into one.
        self._post: dict[tuple[int, int, str], set[int]] = {}  # (len, pos, token) -> roots
        # (len, positions, pattern with those positions blanked) -> roots; the positions are
        # a root's parameters plus one more: a message differing from the root there only
        # finds it with one dict lookup per positions set in use.
        self._holes: dict[tuple[int, tuple[int, ...], Sig], set[int]] = {}
        self._hole_sets: dict[int, Counter[tuple[int, ...]]] = {}  # len -> positions sets
        self._general: dict[int, tuple[int, ...]] = {}  # root -> positions that became <*>
        # (len, generalised positions) -> pattern with those positions blanked -> root
        self._gen_index: dict[tuple[int, tuple[int, ...]], dict[Sig, int]] = {}
        self._gen_sets: dict[int, set[tuple[int, ...]]] = {}  # len -> generalised position sets
        self._root_of: dict[int, int] = {}  # member -> root
        self._members: dict[int, set[int]] = {}  # root -> members
        self._values: dict[int, dict[int, set[str]]] = {}  # root -> position -> values seen
        self._next_id = 1
        self.changes_ = 0  # merges and text changes so far: ids/texts handed out may be stale
        self.changed_ids_: set[int] = set()  # ids whose template text or identity has changed
        self.rule_hits_: Counter[str] = Counter()  # rule -> times it fired (new shapes only)
        self.evicted_ = 0  # templates evicted (max_templates) by this miner
        # Called with each template just before it is evicted (a writer of structured
        # output lists the ids its rows already hold); not part of the state.
        self.on_evict: Callable[[Template], None] | None = None
        self._clock = 0  # lines seen, for LRU eviction and growth diagnostics
        self._off = frozenset(self.config.disabled_rules)
        self._user_masks = [re.compile(m.pattern) for m in self.config.masks]
        self._user_kinds = {chr(_USER_MARK + i): m.kind for i, m in enumerate(self.config.masks)}

    # -- public API ------------------------------------------------------------------------

    def add(self, content: str) -> ParseResult:
        """Parse one message in learn mode: match, generalise or create its template."""
        plan, values, change = self._run(content, learn=True)
        assert plan is not None
        return ParseResult(plan.key, self._text(plan), self._params(values, plan.slots), change)

    def match(self, content: str) -> ParseResult | None:
        """Parse one message without learning; None when no template matches."""
        plan, values, _ = self._run(content, learn=False)
        if plan is None:
            return None
        return ParseResult(plan.key, self._text(plan), self._params(values, plan.slots))

    def add_values(self, content: str, learn: bool = True) -> tuple[int | None, list[str]]:
        """Fast form of ``add``/``match`` for bulk parsing: (template id, parameter values)."""
        plan, values, _ = self._run(content, learn)
        return (plan.key if plan is not None else None), values

    def parse_record(self, record: Record, learn: bool = True) -> Event | None:
        """Turn a Record into an Event (None in match-only mode when nothing matches)."""
        plan, values, _ = self._run(record.content, learn)
        if plan is None:
            return None
        return Event(record, plan.key, self._text(plan), self._params(values, plan.slots))

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
        if not learn and not self._user_masks and not self._digit_skip:
            # ``_run``'s first lookup inlined for the bulk scan's match-only calls, a million
            # a minute: two Python calls were 6% of a scanned line's time.
            self._clock += 1
            fine = content.encode("utf-8", "surrogatepass").translate(_DIGIT_BYTES_TO_ZERO)
            plan = self._digit_cache.get(fine)
            if plan is not None:
                tpl = self.templates_.get(plan.key)
                if tpl is not None and tpl.version == plan.version:
                    self._digit_hits += 1
                    return plan.key, plan.extract(content.split()), plan.slots, UNCHANGED
            plan, values, change = self._run_after_fine(content, False, fine, plan)
        else:
            plan, values, change = self._run(content, learn)
        if plan is None:
            return None, [], [], UNCHANGED
        return plan.key, values, plan.slots, change

    @property
    def clock(self) -> int:
        """Messages seen so far (the time of least-recently-used eviction)."""
        return self._clock

    def parse_text(
        self, content: str, learn: bool = True
    ) -> tuple[int | None, list[str], list[Slot], str]:
        """Like ``parse_slots``, with the template text that the slots belong to instead of
        the change (the text is the template's, except for a message in match-only mode
        whose form the template has not seen: then it is the grouping form's text)."""
        plan, values, _ = self._run(content, learn)
        if plan is None:
            return None, [], [], ""
        return plan.key, values, plan.slots, self._text(plan)

    def advance(self, lines: int) -> None:
        """Count ``lines`` messages that a bulk path parsed without calling the miner."""
        if lines < 0:
            raise ValueError("the clock only moves forward")
        self._clock += lines

    # -- the core ----------------------------------------------------------------------------

    def _text(self, plan: _Plan) -> str:
        tpl = self.templates_[plan.key]
        return " ".join(tpl.tokens) if plan.canonical else tpl.text

    def _run(self, content: str, learn: bool) -> tuple[_Plan | None, list[str], str]:
        self._clock += 1
        user_values: list[str] | None = None
        fine: bytes | None = None
        if self._user_masks:
            content, user_values = self._apply_user_masks(content)
        elif self._digit_skip:
            self._digit_skip -= 1
        else:
            fine = content.encode("utf-8", "surrogatepass").translate(_DIGIT_BYTES_TO_ZERO)
            plan = self._digit_cache.get(fine)
            if plan is not None and self._take(plan, learn):
                self._digit_hits += 1
                return plan, plan.extract(content.split()), UNCHANGED
            return self._run_after_fine(content, learn, fine, plan)
        return self._run_shape(content, learn, None, user_values)

    def _run_after_fine(
        self, content: str, learn: bool, fine: bytes, stale: _Plan | None
    ) -> tuple[_Plan | None, list[str], str]:
        """``_run`` after a miss in the finer keys' cache (``stale``: the plan found there
        that no longer holds, dropped)."""
        if stale is not None:
            del self._digit_cache[fine]
        self._digit_misses += 1
        if self._digit_misses >= _DIGIT_ROUND:
            self._digit_round()
        return self._run_shape(content, learn, fine, None)

    def _run_shape(
        self, content: str, learn: bool, fine: bytes | None, user_values: list[str] | None
    ) -> tuple[_Plan | None, list[str], str]:
        if user_values is None:
            shape = _NUMBER_RUN.sub("0", content)
        else:  # user masks may treat digits in any way: only same-length shapes
            shape = content.translate(_DIGITS_TO_ZERO)
        plan = self._shape_cache.get(shape)
        if plan is None:
            plan = self._shape_old.pop(shape, None)
            if plan is not None:  # used again: back into the young generation
                self._cache_plan(shape, plan)
        tokens = content.split()
        if plan is not None:
            if self._take(plan, learn):
                values = plan.extract(tokens)
                if user_values:
                    values = _restore_user_values(values, user_values)
                elif fine is not None:
                    self._cache_fine(fine, plan)
                return plan, values, UNCHANGED
            del self._shape_cache[shape]  # merged, evicted or changed since it was cached
        masked = _mask(tokens, self._user_kinds, self._off, self.rule_hits_)
        canon = _canonical(masked, self._off, self.rule_hits_)
        entries = [tuple(masked.fine[a:b]) for a, b in canon.fine]
        key, change = self._lookup(canon.sig, learn, entries)
        if key is None:
            return None, [], UNCHANGED
        tpl = self.templates_[key]
        if learn:
            tpl.count += 1
            tpl.last_seen = self._clock
            display = _widen(tpl.display, entries)
            if display is not tpl.display:
                tpl.display = display
                self._touched(key)
                change = change or GENERALIZED
        plan = self._plan(tpl, masked, canon)
        self._cache_plan(shape, plan)
        if fine is not None:
            self._cache_fine(fine, plan)
        values = _extract(tokens, plan.slots)
        if user_values:
            values = _restore_user_values(values, user_values)
        return plan, values, change

    @property
    def cached_shapes(self) -> int:
        """Message shapes whose parse plan is cached (at most twice ``cache_size``)."""
        return len(self._shape_cache) + len(self._shape_old)

    def _cache_plan(self, shape: str, plan: _Plan) -> None:
        """Two generations of at most ``cache_size`` shapes: when the young one is full it
        becomes the old one (the old one is dropped); a hit in the old one moves back.
        Most shapes of a log with hex or random ids are met once: cleared when full, the
        cache held up to its cap in memory and dropped the recurring shapes with the rest."""
        if len(self._shape_cache) >= self.config.cache_size:
            self._shape_old = self._shape_cache
            self._shape_cache = {}
            self._shapes_of = {}
            for s, p in self._shape_old.items():
                self._shapes_of.setdefault(p.key, set()).add(s)
        self._shape_cache[shape] = plan
        self._shapes_of.setdefault(plan.key, set()).add(shape)

    def _take(self, plan: _Plan, learn: bool) -> bool:
        """Whether a cached plan still holds (its template neither merged, evicted nor
        changed since); when it does and ``learn``, the message counts for the template."""
        tpl = self.templates_.get(plan.key)
        if tpl is None or tpl.version != plan.version:
            return False
        if learn:
            tpl.count += 1
            tpl.last_seen = self._clock
        return True

    def _digit_round(self) -> None:
        """End of a round of the finer keys' lookups: when fewer than half found their
        plan (a miss costs about what a hit saves), the next messages go without them."""
        if self._digit_hits < self._digit_misses:
            self._digit_skip = _DIGIT_PAUSE
            self._digit_cache.clear()
        self._digit_hits = self._digit_misses = 0

    def _cache_fine(self, fine: bytes, plan: _Plan) -> None:
        """The finer key's cache: cleared when full (its keys are many more than the
        shapes, and a miss costs one shape lookup)."""
        if len(self._digit_cache) >= self.config.cache_size:
            self._digit_cache.clear()
        self._digit_cache[fine] = plan

    def _plan(self, tpl: Template, masked: _Masked, canon: _Canon) -> _Plan:
        """Where the parameters of a message are, given its template's current text."""
        slots: list[Slot] = []
        fits = True
        for i, entry in enumerate(tpl.display):
            a, b = canon.fine[i]
            if entry is not None and (
                len(entry) != b - a
                or not all(_fits(e, f) for e, f in zip(entry, masked.fine[a:b], strict=True))
            ):
                fits = False  # match-only: a form the template has not seen
                break
        for i, t in enumerate(tpl.tokens):
            entry = tpl.display[i] if fits else None
            if entry is None:
                if WILDCARD not in t:
                    continue
                cs = canon.slots[i]
                if t == canon.sig[i]:
                    if cs is not None:  # else a literal "<*>" in the message
                        slots.append(cs)
                    continue
                start, end = canon.spans[i]  # a position that became a parameter: all of it
                slots.append(Slot(start, end, 0, 0, cs.kind if cs else "text"))
                continue
            a = canon.fine[i][0]
            for j, d in enumerate(entry, a):
                if WILDCARD not in d:
                    continue
                fs = masked.fslots[j]
                if d == masked.fine[j]:
                    if fs is not None:
                        slots.append(fs)
                    continue
                p, s = _parts(d)
                start, end = masked.spans[j]
                slots.append(Slot(start, end, len(p), len(s), fs.kind if fs else "text"))
        return _Plan(tpl.id, tpl.version, slots, canonical=not fits)

    def _touched(self, key: int) -> None:
        """A template's text or pattern changed: cached plans and written rows are stale."""
        self.templates_[key].version += 1
        self.changes_ += 1
        self.changed_ids_.add(key)

    def _live(self, key: int | None) -> int | None:
        if key is None:
            return None
        key = self.resolve(key)
        return key if key in self.templates_ else None

    def _lookup(self, canon: Sig, learn: bool, entries: list[Entry]) -> tuple[int | None, str]:
        key = self._live(self._by_sig.get(canon))
        if key is not None:
            return key, UNCHANGED
        self._by_sig.pop(canon, None)  # its template was evicted
        key = self._match_general(canon)
        if key is not None:
            if learn:
                self._bind(canon, key)
            return key, UNCHANGED
        if not learn:
            return None, UNCHANGED
        found = self._nearest_root(canon)
        if found is None:
            return self._create(canon, None, entries), CREATED
        root, diff = found
        rt = self.templates_[root].tokens
        values = self._values.setdefault(root, {})
        for i in diff:
            seen = values.setdefault(i, {rt[i]})
            if len(seen) < _VALUE_CAP:
                seen.add(canon[i])
        ready = [i for i in diff if self._is_variable(root, i)]
        if ready and self._keeps_constants(root, ready):
            root = self._generalize(root, ready)
            key = self._match_general(canon)
            if key is not None:
                self._bind(canon, key)
                return key, GENERALIZED
            return self._create(canon, root, entries), GENERALIZED
        return self._create(canon, root, entries), CREATED

    def _is_variable(self, root: int, i: int) -> bool:
        seen = self._values[root][i]
        if "masked-slot" not in self._off:
            # A position that has held a masked value is a value position: a word there in
            # the same frame ("rhost=<*>" / "rhost=zummit.com", "(<*>)" / "()") is a value.
            # Two such words at least: one word seen where values go may well be a
            # constant that some message replaced ("tty=NODEVssh" / "tty=:0").
            for m in seen:
                if WILDCARD in m and sum(v != m and _fits(m, v) for v in seen) >= 2:
                    return True
        if all(_WORD.fullmatch(v) for v in seen):
            return "learn-words" not in self._off and len(seen) >= self.config.min_merge_values
        return "learn-any" not in self._off and len(seen) >= self.config.min_merge_values_other

    def _keeps_constants(self, root: int, positions: list[int]) -> bool:
        """Generalising must leave the template enough constant tokens to stand for an event."""
        t = self.templates_[root].tokens
        left = sum(1 for i, tok in enumerate(t) if i not in positions and not _is_value_token(tok))
        return left >= self.config.min_merge_constants

    def _match_general(self, canon: Sig) -> int | None:
        """A template generalised at some positions that matches everywhere else."""
        n = len(canon)
        for positions in self._gen_sets.get(n, ()):
            key = self._gen_index[(n, positions)].get(_blank(canon, positions))
            key = self._live(key)
            if key is not None:
                return key
        return None

    def _nearest_root(self, canon: Sig) -> tuple[int, list[int]] | None:
        """The family root that ``canon`` differs from at one position only (not counting
        the root's parameters), sharing at least ``min_merge_constants`` constant tokens
        with it; the one sharing the most when there are several. Found through the holes
        index, so the cost does not grow with the number of templates."""
        n = len(canon)
        best: tuple[tuple[int, int], int, list[int]] | None = None
        need = self.config.min_merge_constants
        for positions in self._hole_sets.get(n, ()):
            ids = self._holes.get((n, positions, _blank(canon, positions)))
            if not ids:
                continue
            for r in ids:
                t = self.templates_[r].tokens
                general = self._general.get(r, ())
                diff = [i for i in positions if i not in general and t[i] != canon[i]]
                if len(diff) != 1:
                    continue
                shared = sum(
                    1
                    for i, tok in enumerate(t)
                    if i not in general and i != diff[0] and not _is_value_token(tok)
                )
                rank = (shared, -r)
                if shared >= need and (best is None or rank > best[0]):
                    best = (rank, r, diff)
        return None if best is None else (best[1], best[2])

    def _create(self, canon: Sig, root: int | None, entries: list[Entry]) -> int:
        cap = self.config.max_templates
        if cap is not None and len(self.templates_) >= cap:
            self._evict()
            if root is not None and root not in self.templates_:
                root = None
        key = self._next_id
        self._next_id += 1
        self.templates_[key] = Template(key, list(canon), 0, self._clock, entries, self._clock)
        self._bind(canon, key)
        if root is None:
            self._index_root(key)
        else:
            self._root_of[key] = root
            self._members.setdefault(root, set()).add(key)
        return key

    def _bind(self, canon: Sig, key: int) -> None:
        self._by_sig[canon] = key
        self._sigs_of.setdefault(key, []).append(canon)

    # -- families: generalisation and merges -----------------------------------------------

    def _index_root(self, root: int) -> int | None:
        """Index a root's constants and generalised pattern; returns a root it now equals."""
        t = self.templates_[root].tokens
        n = len(t)
        general = self._general.get(root, ())
        sets = self._hole_sets.setdefault(n, Counter())
        need = self.config.min_merge_constants
        anchors = sum(1 for i, tok in enumerate(t) if i not in general and not _is_value_token(tok))
        for i, tok in enumerate(t):
            if i in general:
                continue
            anchor = not _is_value_token(tok)
            if anchor:
                self._post.setdefault((n, i, tok), set()).add(root)
            if anchors - anchor < need:
                continue  # a message differing here would share too few constants to pair
            positions = tuple(sorted({*general, i}))
            self._holes.setdefault((n, positions, _blank(tuple(t), positions)), set()).add(root)
            sets[positions] += 1
        if not general:
            return None
        self._gen_sets.setdefault(n, set()).add(general)
        index = self._gen_index.setdefault((n, general), {})
        blank = _blank(tuple(t), general)
        other = self._live(index.get(blank))
        if other is not None and other != root:
            return other
        index[blank] = root
        return None

    def _unindex_root(self, root: int) -> None:
        t = self.templates_[root].tokens
        n = len(t)
        general = self._general.get(root, ())
        sets = self._hole_sets.get(n)
        for i, tok in enumerate(t):
            if i in general:
                continue
            ids = self._post.get((n, i, tok))
            if ids is not None:
                ids.discard(root)
                if not ids:
                    del self._post[(n, i, tok)]
            positions = tuple(sorted({*general, i}))
            key = (n, positions, _blank(tuple(t), positions))
            ids = self._holes.get(key)
            if ids is not None and root in ids:
                ids.discard(root)
                if not ids:
                    del self._holes[key]
                if sets is not None:
                    sets[positions] -= 1
                    if sets[positions] <= 0:
                        del sets[positions]
        if general:
            index = self._gen_index.get((n, general))
            if index is not None:
                blank = _blank(tuple(t), general)
                if index.get(blank) == root:
                    del index[blank]
                if not index:
                    del self._gen_index[(n, general)]
                    self._gen_sets[n].discard(general)
                    if not self._gen_sets[n]:
                        del self._gen_sets[n]

    def _generalize(self, root: int, positions: list[int]) -> int:
        """Turn ``positions`` of a root into parameters; merge what now matches. Returns the
        surviving id of the root."""
        tpl = self.templates_[root]
        self._unindex_root(root)
        for i in positions:
            seen = self._values[root][i]
            if any(WILDCARD in v for v in seen) and "masked-slot" not in self._off:
                self.rule_hits_["masked-slot"] += 1
            elif all(_WORD.fullmatch(v) for v in seen):
                self.rule_hits_["learn-words"] += 1
            else:
                self.rule_hits_["learn-any"] += 1
            tpl.tokens[i] = WILDCARD
        self._general[root] = tuple(sorted(set(self._general.get(root, ())) | set(positions)))
        self._touched(root)
        return self._settle(root)

    def _settle(self, root: int) -> int:
        """After a root's pattern changed: re-index it, merge every template it now covers
        (its members, other roots), and take in the roots that differ from it at one
        position as evidence for that position. Returns the survivor's id."""
        other = self._index_root(root)
        if other is not None:
            return self._settle(self._merge(other, root))
        t = self.templates_[root].tokens
        general = set(self._general.get(root, ()))
        for m in sorted(self._members.get(root, ())):
            mt = self.templates_[m].tokens
            if all(a == b or i in general for i, (a, b) in enumerate(zip(t, mt, strict=True))):
                return self._settle(self._merge(root, m))
        ready: list[int] = []
        for r, diff in self._neighbours(root):
            if not diff:  # equal but where one of them already has a parameter
                return self._settle(self._merge(root, r))
            i = diff[0]
            self._adopt(root, r, i)
            if self._is_variable(root, i) and self._keeps_constants(root, [i]):
                ready.append(i)
        if ready:
            return self._generalize(root, sorted(set(ready)))
        return root

    def _neighbours(self, root: int) -> list[tuple[int, list[int]]]:
        """Other roots of the same length sharing at least ``min_merge_constants`` constants
        in place and differing from ``root`` at one constant position at most (positions
        that either has made a parameter do not count)."""
        t = self.templates_[root].tokens
        n = len(t)
        need = self.config.min_merge_constants
        general = set(self._general.get(root, ()))
        anchors = [
            (i, tok) for i, tok in enumerate(t) if i not in general and not _is_value_token(tok)
        ]
        if len(anchors) < need or not anchors:
            return []
        # A neighbour has at least `need` of the anchors in place (as constants of its own):
        # it is in the postings of one of the len(anchors) - need + 1 rarest.
        anchors.sort(key=lambda a: len(self._post.get((n, *a), ())))
        candidates: set[int] = set()
        for a in anchors[: len(anchors) - need + 1]:
            candidates.update(self._post.get((n, *a), ()))
        out: list[tuple[int, list[int]]] = []
        for r in sorted(candidates):
            if r == root or r not in self.templates_ or r in self._root_of:
                continue
            rt = self.templates_[r].tokens
            rg = set(self._general.get(r, ()))
            shared = sum(1 for i, tok in anchors if i not in rg and rt[i] == tok)
            if shared < need:
                continue
            diff = [i for i in range(n) if t[i] != rt[i] and i not in general and i not in rg]
            if len(diff) <= 1:
                out.append((r, diff))
        return out

    def _adopt(self, root: int, r: int, i: int) -> None:
        """Root ``r`` (and its family) joins ``root``'s family; its token at ``i`` counts as
        one more value seen there."""
        self._unindex_root(r)
        family = self._members.setdefault(root, set())
        for m in self._members.pop(r, set()):
            self._root_of[m] = root
            family.add(m)
        self._root_of[r] = root
        family.add(r)
        t = self.templates_[root].tokens
        values = self._values.setdefault(root, {})
        for j, seen in self._values.pop(r, {}).items():
            mine = values.setdefault(j, {t[j]})
            mine.update(list(seen)[: max(0, _VALUE_CAP - len(mine))])
        mine = values.setdefault(i, {t[i]})
        if len(mine) < _VALUE_CAP:
            mine.add(self.templates_[r].tokens[i])

    def _merge(self, a: int, b: int) -> int:
        """Merge two templates of the same length into the older; returns its id."""
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return a
        keep, gone = min(a, b), max(a, b)
        tk, tg = self.templates_[keep], self.templates_[gone]
        for t in (keep, gone):
            if t not in self._root_of:
                self._unindex_root(t)
        general = set(self._general.pop(keep, ())) | set(self._general.pop(gone, ()))
        for i, (x, y) in enumerate(zip(tk.tokens, tg.tokens, strict=True)):
            if x != y:
                tk.tokens[i] = WILDCARD
                general.add(i)
        if general:
            self._general[keep] = tuple(sorted(general))
        tk.display = [_widen_entry(x, y) for x, y in zip(tk.display, tg.display, strict=True)]
        tk.count += tg.count
        tk.last_seen = max(tk.last_seen, tg.last_seen)
        tk.created_at = min(tk.created_at, tg.created_at)
        del self.templates_[gone]
        self._aliases[gone] = keep
        self._shapes_of.setdefault(keep, set()).update(self._shapes_of.pop(gone, ()))
        self._sigs_of.setdefault(keep, []).extend(self._sigs_of.pop(gone, []))
        # Families: the survivor heads the union of both (it is a root once merged).
        for t in (keep, gone):
            r = self._root_of.pop(t, None)
            if r is not None and r in self._members:
                self._members[r].discard(t)
        members = self._members.pop(gone, set()) | self._members.pop(keep, set())
        members -= {keep, gone}
        if members:
            self._members[keep] = members
            for m in members:
                self._root_of[m] = keep
        values = self._values.setdefault(keep, {})
        for i, seen in self._values.pop(gone, {}).items():
            mine = values.setdefault(i, set())
            mine.update(list(seen)[: max(0, _VALUE_CAP - len(mine))])
        self._touched(keep)
        self.changed_ids_.add(gone)
        return keep

    def _evict(self) -> None:
        victim = min(self.templates_.values(), key=lambda t: t.last_seen).id
        self.evicted_ += 1
        if self.on_evict is not None:
            self.on_evict(self.templates_[victim])
        root = self._root_of.pop(victim, None)
        if root is None:
            self._unindex_root(victim)
            for m in self._members.pop(victim, set()):  # orphans head families of their own
                del self._root_of[m]
                self._index_root(m)
        elif root in self._members:
            self._members[root].discard(victim)
        del self.templates_[victim]
        self._general.pop(victim, None)
        self._values.pop(victim, None)
        for shape in self._shapes_of.pop(victim, ()):  # its cached plans go with it
            for cache in (self._shape_cache, self._shape_old):
                plan = cache.get(shape)
                if plan is not None and plan.key == victim:
                    del cache[shape]
        self._digit_cache.clear()  # (not indexed by template: evictions are rare but for
        # endless novel input, where these keys are as novel as the shapes)
        # Forget everything that pointed at it, so memory stays bounded on endless input.
        for sig in self._sigs_of.pop(victim, []):
            key = self._by_sig.get(sig)
            if key is not None and self.resolve(key) == victim:
                del self._by_sig[sig]
        for old in [k for k in self._aliases if self.resolve(k) == victim]:
            del self._aliases[old]

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
            "clock": self._clock,
            "templates": [
                {
                    "id": t.id,
                    "tokens": t.tokens,
                    "display": [None if e is None else list(e) for e in t.display],
                    "count": t.count,
                    "last_seen": t.last_seen,
                    "created_at": t.created_at,
                }
                for t in sorted(self.templates_.values(), key=lambda t: t.id)
            ],
            "aliases": sorted([k, v] for k, v in self._aliases.items()),
            "generalized": sorted([k, list(v)] for k, v in self._general.items()),
            "families": sorted([m, r] for m, r in self._root_of.items()),
            "values": sorted(
                [r, i, sorted(seen)] for r, pos in self._values.items() for i, seen in pos.items()
            ),
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
            miner._clock = int(state["clock"])
            for t in state["templates"]:
                key = int(t["id"])
                if key in miner.templates_ or not 1 <= key < miner._next_id:
                    # A reused id (next_id too low) later gave a new template an id in use.
                    raise ValueError(f"template id {key} repeated or not below next_id")
                tokens = [str(x) for x in t["tokens"]]
                display = [None if e is None else tuple(str(x) for x in e) for e in t["display"]]
                if len(display) != len(tokens):
                    raise ValueError(f"template {key}: text and pattern differ in length")
                miner.templates_[key] = Template(
                    key, tokens, int(t["count"]), int(t["last_seen"]), display, int(t["created_at"])
                )
            miner._aliases = {int(k): int(v) for k, v in state["aliases"]}
            miner._general = {int(k): tuple(int(i) for i in v) for k, v in state["generalized"]}
            for m, r in state["families"]:
                if int(m) == int(r):
                    raise ValueError(f"template {m} is its own family's root")
                miner._root_of[int(m)] = int(r)
                miner._members.setdefault(int(r), set()).add(int(m))
            for r, i, seen in state["values"]:
                miner._values.setdefault(int(r), {})[int(i)] = {str(v) for v in seen}
            known = miner.templates_.keys()
            for sig_list, key in state["signatures"]:
                if int(key) not in known and int(key) not in miner._aliases:
                    raise ValueError(f"a signature names template {key}, which is not there")
                miner._bind(tuple(str(x) for x in sig_list), int(key))
            if (
                not set(miner._root_of) | set(miner._members) <= known
                or not set(miner._general) <= known
                or not set(miner._aliases.values()) <= known | miner._aliases.keys()
            ):
                raise ValueError("families or aliases name unknown templates")
            for key in sorted(known):
                if key not in miner._root_of and miner._index_root(key) is not None:
                    raise ValueError("two templates with one generalised pattern")
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


def _blank(sig: Sig, positions: tuple[int, ...]) -> Sig:
    out = list(sig)
    for i in positions:
        out[i] = ""
    return tuple(out)


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
