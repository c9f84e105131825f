"""Shattering diagnostics: one-position warnings with a working --mask, and the growth alarm."""

from __future__ import annotations

import random

import pytest

from logwarden.parsing import MaskRule, MinerConfig, TemplateMiner
from logwarden.parsing.diagnostics import diagnose, suggest_mask

PROGRAMS = ["chrome.exe", "firefox.exe", "Skype.exe", "Teams.exe"]


def proxy_lines(n: int, seed: int, programs: list[str] = PROGRAMS) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(programs)} - 10.0.{rng.randint(0, 9)}.{rng.randint(1, 99)}:443 close, "
        f"{rng.randint(1, 9999)} bytes sent, lifetime 00:{rng.randint(10, 59)}"
        for _ in range(n)
    ]


def program_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) + ".exe"
        for _ in range(n)
    ]


def test_a_shattered_parameter_is_reported_with_a_mask_that_works() -> None:
    # File names are not masked here, and the miner does not learn positions of that
    # shape: every program a template of its own. Most programs are seen once, as a
    # parameter's values are: the warning stays, with a mask that works.
    config = MinerConfig(disabled_rules=["file-name", "learn-any"])
    lines = proxy_lines(400, 1, program_names(300, 2))
    m = TemplateMiner(config)
    for line in lines:
        m.add(line)
    assert len(m) > 100
    (w,) = diagnose(m)
    assert w.kind == "one-position" and w.position == 1 and len(w.templates) == len(m)
    assert len(w.examples) == 3 and w.mask is not None and "--mask" in w.message
    assert "likely a value the parser took for text" in w.message
    assert "distinct events" not in w.message  # new programs kept coming to the end
    kind, _, pattern = w.mask.partition("=")
    fixed = TemplateMiner(
        MinerConfig(disabled_rules=["file-name", "learn-any"], masks=[MaskRule("m", pattern, kind)])
    )
    for line in lines:
        fixed.add(line)
    assert len(fixed) == 1 and diagnose(fixed) == []


def test_a_closed_set_of_recurring_words_gets_no_mask_suggestion() -> None:
    # Four program names that all recur, and four VM states that all recur: the miner
    # keeps them apart (too few distinct values), and nothing says they are a value the
    # parser missed rather than distinct events (VM Started / VM Paused are).
    config = MinerConfig(disabled_rules=["file-name"])
    m = TemplateMiner(config)
    for line in proxy_lines(400, 1):
        m.add(line)
    assert len(m) == 4
    assert diagnose(m) == []
    rng = random.Random(4)
    states = ["Started", "Paused", "Resumed", "Stopped"]
    m = TemplateMiner()
    for i in range(300):
        m.add(f"[instance: {rng.getrandbits(64):016x}] VM {rng.choice(states)} (Lifecycle Event)")
        m.add(f'10.11.10.1 "{rng.choice(["GET", "POST", "DELETE"])} /v2/servers/{i}" status: 200')
    assert len(m) == 7
    assert diagnose(m) == []


def test_values_seen_once_that_stopped_coming_may_be_distinct_events() -> None:
    # Settings logged once each at startup ("<name> is <value>": one constant, too few
    # for the miner to learn the position), then never again: values seen once, yet the
    # set stopped growing. The warning stays, and says they may be distinct events.
    rng = random.Random(6)
    m = TemplateMiner()
    for name in [
        "maxTasks",
        "blacklistPercent",
        "retryLimit",
        "queueName",
        "outputCommitter",
        "speculativeMaps",
        "heapFraction",
        "shuffleBuffer",
        "commitAlgorithm",
    ]:
        m.add(f"{name} is {rng.randint(1, 99)}")
    for _ in range(2000):
        m.add(f"Progress of task attempt_{rng.getrandbits(32)} is {rng.random():.2f}")
    warnings = [w for w in diagnose(m) if w.kind == "one-position"]
    assert len(warnings) == 1 and warnings[0].mask is not None
    assert "no new value came after line 9: they may be distinct events" in warnings[0].message


def test_suggested_masks_are_anchored_and_keep_shared_parts() -> None:
    assert (
        suggest_mask(["user=root", "user=news"], "rhost=<*>") == r"text=(?<=user=)\S+(?=(?:\s|$))"
    )
    assert suggest_mask(["cyrus", "news"], "for") == r"text=(?<=for\ )\S+(?=(?:\s|$))"
    mask = suggest_mask(["cupsd", "klogd"], None, "startup")
    assert mask == r"text=(?<!\S)\S+(?=\s+startup(?:\s|$))"
    assert suggest_mask(["a", "b"], "<*>", None) is None  # nothing to anchor it: no mask


def test_growth_alarm_fires_when_templates_keep_appearing() -> None:
    rng = random.Random(3)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(3000)
    ]
    m = TemplateMiner()
    for _ in range(8000):
        # Two words that are values, in a message too short for the miner to learn that
        # (two constants): a new template for almost every line.
        m.add(f"copy {rng.choice(words)} to {rng.choice(words)}")
    warnings = diagnose(m)
    growth = [w for w in warnings if w.kind == "growth"]
    assert len(growth) == 1 and len(growth[0].rates) >= 3
    assert growth[0].rates[-1] >= 1.0 and "per 1,000 lines" in growth[0].message


def test_a_healthy_template_set_gives_no_warning() -> None:
    rng = random.Random(5)
    m = TemplateMiner()
    for _ in range(9000):
        m.add(
            rng.choice(
                [
                    f"PacketResponder {rng.randint(0, 3)} for block blk_{rng.randint(1, 10**9)} terminating",
                    f"Received block blk_{rng.randint(1, 10**9)} of size {rng.randint(1, 10**8)} from /10.0.0.{rng.randint(1, 99)}",
                    f"Verification succeeded for blk_{rng.randint(1, 10**9)}",
                ]
            )
        )
    assert len(m) == 3
    assert diagnose(m) == []


def test_diagnose_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        diagnose(TemplateMiner(), min_templates=1)
    with pytest.raises(ValueError):
        diagnose(TemplateMiner(), first_window=0)
