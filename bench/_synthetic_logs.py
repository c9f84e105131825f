"""Synthetic logs of kinds loghub lacks, generated with their own ground truth (shared by
``parser_synthetic.py`` and ``parser_accuracy.py``).

The loghub-2k systems are what the parser is developed on; these check it on shapes none of
them has, so that a rule fitted to loghub shows here. Each kind is a list of event
templates whose fields are drawn at random; the truth of a line is its event's index.

* ``service``: a key=value service log: user names, currency codes, amounts, URLs, order
  ids, e-mail addresses, bracketed lists of variable length, durations written two ways,
  plugin names, and a few events that differ in one state word (kept apart in the truth).
* ``proxy``: a proxy log of the kind the parser issue describes: host names with ports,
  program names, byte counts with an optional ``(0.01 KB)`` part, lifetimes written as
  ``<1 sec`` or ``00:01``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Field = Callable[[random.Random], str]

_USERS = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert "
    "sybil trent victor walter xavier yolanda zoe amir bianca chen dmitri elena farid gita "
    "hiro ines jonas kofi lena mateo nadia oscar priya quinn rosa sven tariq uma"
).split()
_CURRENCIES = "USD EUR GBP JPY CHF CAD AUD SEK NOK DKK PLN CZK".split()
_HOSTS = (
    "api.example.com shop.example.com cdn.example.net mail.example.org auth.example.io "
    "search.example.com img.example.net static.example.org pay.example.com db.internal "
    "cache.internal queue.internal metrics.example.io login.example.com"
).split()
_PATHS = "/cart /checkout /api/items /api/users /login /search /static/app.js /health".split()
_ITEMS = "apple pear book lamp chair pen mug shirt shoe kettle plate clock".split()
_PLUGINS = (
    "AuthPlugin CachePlugin MetricsPlugin TracingPlugin RateLimiter Compressor Scheduler "
    "Notifier Exporter Importer Validator Sanitizer"
).split()
_JOBS = "nightly-backup report-gen index-rebuild cleanup vacuum reindex export sync".split()
_QUEUES = "orders emails refunds invoices webhooks audit".split()
_COUNTRIES = "DE FR US GB NL SE NO ES IT PL".split()
_CARRIERS = "DHL UPS FedEx GLS USPS PostNL".split()
_PROGRAMS = (
    "chrome.exe firefox.exe Dropbox.exe Skype.exe outlook.exe Teams.exe svchost.exe "
    "OneDrive.exe steam.exe Spotify.exe"
).split()
_PROXY_HOSTS = (
    "www.google.com mail.yahoo.com www.bing.com news.bbc.co.uk update.microsoft.com "
    "api.dropbox.com clients4.google.com s.youtube.com www.wikipedia.org cdn.jsdelivr.net "
    "github.com raw.githubusercontent.com login.live.com www.reddit.com"
).split()


def _pick(xs: list[str]) -> Field:
    return lambda r: r.choice(xs)


def _int(lo: int, hi: int) -> Field:
    return lambda r: str(r.randint(lo, hi))


def _amount(r: random.Random) -> str:
    return f"{r.randint(1, 999)}.{r.randint(0, 99):02d}"


def _url(r: random.Random) -> str:
    q = f"?page={r.randint(1, 9)}" if r.random() < 0.5 else ""
    return f"https://{r.choice(_HOSTS)}{r.choice(_PATHS)}{q}"


def _list(r: random.Random) -> str:
    return "[" + ", ".join(r.sample(_ITEMS, r.randint(1, 4))) + "]"


def _duration(r: random.Random) -> str:
    if r.random() < 0.3:
        return "<1 sec"
    return f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"


def _order(r: random.Random) -> str:
    return f"ord-{r.getrandbits(32):08x}"


def _user_token(r: random.Random) -> str:
    u = r.choice(_USERS)
    return u if r.random() < 0.8 else f"{u}.{r.choice(_USERS)}"


def _email(r: random.Random) -> str:
    return f"{r.choice(_USERS)}@{r.choice(_HOSTS)}"


def _bytes(r: random.Random) -> str:
    n = r.randint(0, 90000)
    return f"{n} bytes" if n < 1024 else f"{n} bytes ({n / 1024:.2f} KB)"


@dataclass(frozen=True)
class Event:
    text: str  # str.format template; fields by name
    fields: dict[str, Field]
    weight: float = 1.0

    def render(self, r: random.Random) -> str:
        return self.text.format(**{k: f(r) for k, f in self.fields.items()})


SERVICE: list[Event] = [
    Event(
        "payment accepted user={u} amount={a} currency={c} order={o}",
        {"u": _user_token, "a": _amount, "c": _pick(_CURRENCIES), "o": _order},
        3,
    ),
    Event(
        "payment declined user={u} amount={a} currency={c} reason=card_expired",
        {"u": _user_token, "a": _amount, "c": _pick(_CURRENCIES)},
    ),
    Event("GET {url} -> {s} in {ms}ms", {"url": _url, "s": _int(200, 204), "ms": _int(1, 900)}, 3),
    Event("POST {url} -> {s} in {ms}ms", {"url": _url, "s": _int(200, 204), "ms": _int(1, 900)}),
    Event("cart updated for {u}: items={items}", {"u": _user_token, "items": _list}, 2),
    Event(
        "user {u} logged in from {h}:{p}",
        {"u": _user_token, "h": _pick(_HOSTS), "p": _int(1024, 65535)},
        2,
    ),
    Event("user {u} logged out after {d}", {"u": _user_token, "d": _duration}, 2),
    Event(
        "exchange rate {a}/{b} updated to {x}",
        {"a": _pick(_CURRENCIES), "b": _pick(_CURRENCIES), "x": _amount},
    ),
    Event("sent receipt to {e} for order {o}", {"e": _email, "o": _order}),
    Event("job {j} finished in {d}", {"j": _pick(_JOBS), "d": _duration}),
    Event("Loaded plugin {p} from {path}", {"p": _pick(_PLUGINS), "path": _pick(_PATHS)}),
    Event(
        "order {o} shipped to {c} via {v}",
        {"o": _order, "c": _pick(_COUNTRIES), "v": _pick(_CARRIERS)},
    ),
    Event(
        "refund issued: {a} {c} to {u}",
        {"a": _amount, "c": _pick(_CURRENCIES), "u": _user_token},
    ),
    Event("health check ok: {n}/{m} instances up", {"n": _int(1, 9), "m": _int(9, 12)}),
    Event(
        "request {o} failed: upstream {h} timed out after {ms} ms",
        {"o": _order, "h": _pick(_HOSTS), "ms": _int(100, 30000)},
    ),
    Event(
        "queue {q} depth {n} (max {m})", {"q": _pick(_QUEUES), "n": _int(0, 99), "m": _int(99, 999)}
    ),
    Event("rate limit exceeded for {u} on {url}", {"u": _user_token, "url": _url}),
    Event("config reloaded: {n} keys changed {items}", {"n": _int(1, 9), "items": _list}),
    # One state word is the whole meaning: three events, kept apart.
    Event("circuit breaker for {h} is now OPEN", {"h": _pick(_HOSTS)}),
    Event("circuit breaker for {h} is now CLOSED", {"h": _pick(_HOSTS)}),
    Event("circuit breaker for {h} is now HALF_OPEN", {"h": _pick(_HOSTS)}),
    Event(
        "cache warmed for region {r} with {n} entries", {"r": _pick(_QUEUES), "n": _int(1, 5000)}
    ),
    Event("scheduler tick", {}),
]

PROXY: list[Event] = [
    Event(
        "{prog} - {h}:{p} open through proxy {ph}:{pp} HTTPS",
        {
            "prog": _pick(_PROGRAMS),
            "h": _pick(_PROXY_HOSTS),
            "p": _pick(["80", "443"]),
            "ph": _pick(["proxy.example.edu", "proxy2.example.edu"]),
            "pp": _pick(["5070", "8080"]),
        },
        4,
    ),
    Event(
        "{prog} - {h}:{p} close, {s} sent, {rcv} received, lifetime {d}",
        {
            "prog": _pick(_PROGRAMS),
            "h": _pick(_PROXY_HOSTS),
            "p": _pick(["80", "443"]),
            "s": _bytes,
            "rcv": _bytes,
            "d": _duration,
        },
        5,
    ),
    Event(
        "{prog} - {h}:{p} error : Could not connect through proxy {ph}:{pp} - Proxy server "
        "cannot establish a connection with the target, status code {code}",
        {
            "prog": _pick(_PROGRAMS),
            "h": _pick(_PROXY_HOSTS),
            "p": _pick(["80", "443"]),
            "ph": _pick(["proxy.example.edu", "proxy2.example.edu"]),
            "pp": _pick(["5070", "8080"]),
            "code": _pick(["403", "502", "504"]),
        },
    ),
    Event(
        "{prog} - {h}:{p} error : A connection request was canceled before the completion.",
        {"prog": _pick(_PROGRAMS), "h": _pick(_PROXY_HOSTS), "p": _pick(["80", "443"])},
    ),
    Event(
        "{prog} - {h}:{p} open directly",
        {"prog": _pick(_PROGRAMS), "h": _pick(_PROXY_HOSTS), "p": _pick(["80", "443"])},
    ),
]

KINDS: dict[str, list[Event]] = {"service": SERVICE, "proxy": PROXY}


def generate(kind: str, lines: int, seed: int) -> tuple[list[str], list[int]]:
    """``lines`` messages of ``kind`` and the index of the event of each."""
    events = KINDS[kind]
    r = random.Random(seed)
    weights = [e.weight for e in events]
    texts: list[str] = []
    truth: list[int] = []
    for _ in range(lines):
        k = r.choices(range(len(events)), weights)[0]
        texts.append(events[k].render(r))
        truth.append(k)
    return texts, truth


def logwarden_groups(texts: list[str]) -> list[Hashable]:
    from logwarden.parsing import TemplateMiner

    miner = TemplateMiner()
    keys = [miner.add(t).key for t in texts]
    return [miner.resolve(k) for k in keys]


def drain3_groups(texts: list[str]) -> list[Hashable]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    miner = TemplateMiner(config=TemplateMinerConfig())
    return [miner.add_log_message(t)["cluster_id"] for t in texts]
