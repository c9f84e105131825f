"""The structured CSV sink: the shape-plan fast path must write exactly what the full path writes."""

from __future__ import annotations

import csv
import inspect
import io
import random
import sys
from types import FrameType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logwarden.io.formats import get_format
from logwarden.io.sources import LineReader
from logwarden.parsing import MaskRule, MinerConfig, TemplateMiner
from logwarden.parsing.structured import StructuredCsv, finalise_rows
from logwarden.records import Stats

TOKENS = [
    "PacketResponder", "for", "block", "terminating", "user", "session", "closed", "opened",
    "a,b", 'say "hi"', "50%", "%s", "it's", "back\\slash", "ünïcode", "tab\there", "x=1",
    "(uid=0)", "[instance:", "/var/lib/x", "Fri", "Jun", "5.2", "KB,", "blk_-12", "0x1f",
    "10.0.0.1:50010", "host.example.com", "cyrus", "news", "test", "root", "", "\r", "\x1c",
]  # fmt: skip


def random_content(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(0, 8)):
        r = rng.random()
        if r < 0.55:
            words.append(rng.choice(TOKENS))
        elif r < 0.85:
            words.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        else:
            words.append(
                f"{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}"
            )
    sep = rng.choice([" ", " ", " ", "  ", "\t"])
    return sep.join(words)


def random_line(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        return ""
    if r < 0.16:
        return random_content(rng)  # does not match the format
    head = f"0811{rng.randint(10, 30)} {rng.randint(100000, 235959)} {rng.randint(1, 9999)} "
    level = rng.choice(["INFO", "WARN", "ERROR"])
    comp = rng.choice(["dfs.DataNode$PacketResponder", "dfs.FSNamesystem", "a,b.C"])
    return f"{' ' * rng.randint(0, 1)}{head}{level} {comp}: {random_content(rng)}"


def run(batches: list[list[str]], fast: bool, fmt: str = "hdfs", config: MinerConfig | None = None):
    out = io.StringIO()
    stats = Stats()
    miner = TemplateMiner(config)
    sink = StructuredCsv(get_format(fmt), miner, out, stats=stats)
    if not fast:
        sink.fast = False
    for batch in batches:
        sink.write_texts(batch)
    counts = {k: t.count for k, t in miner.templates_.items()}
    # Rows written before a template changed are brought up to date at the end (as the CLI
    # does); the two paths must agree on the final rows.
    final = io.StringIO()
    id_col = sink.columns.index("EventId")
    finalise_rows(io.StringIO(out.getvalue()), final, miner, id_col, sink.stale_rows)
    # Rows after the sink's stale mark are final already: finalising all of them agrees.
    every = io.StringIO()
    finalise_rows(io.StringIO(out.getvalue()), every, miner, id_col)
    assert final.getvalue() == every.getvalue()
    return final.getvalue(), counts, stats.as_dict(), sink


def test_fast_path_writes_exactly_what_the_full_path_writes() -> None:
    rng = random.Random(7)
    batches = [[random_line(rng) for _ in range(rng.randint(1, 400))] for _ in range(40)]
    fast = run(batches, fast=True)
    full = run(batches, fast=False)
    assert fast[3].fast and not full[3].fast
    assert fast[0] == full[0]
    assert fast[1] == full[1]
    assert fast[2] == full[2]
    # and it is real CSV: every row has the header's number of columns, LineIds in order
    rows = list(csv.reader(io.StringIO(fast[0])))
    assert all(len(r) == len(rows[0]) for r in rows)
    ids = [int(r[0]) for r in rows[1:]]
    assert ids == sorted(ids) and len(ids) == sum(len(b) for b in batches) - fast[2].get(
        "empty_line", 0
    )


def test_most_lines_take_the_fast_path() -> None:
    rng = random.Random(1)
    lines = [
        f"081109 {rng.randint(100000, 235959)} {rng.randint(1, 999)} INFO dfs.DataNode$PacketResponder: "
        f"PacketResponder {rng.randint(0, 2)} for block blk_{rng.randint(-(10**18), 10**18)} terminating"
        for _ in range(2000)
    ]
    fast, fast_calls = miner_calls(lines, fast=True)
    full, full_calls = miner_calls(lines, fast=False)
    assert fast == full
    assert full_calls >= len(lines)  # the full path parses every line
    # The fast path parses one line of each shape (a few digit counts), then only cuts.
    assert fast_calls < len(lines) / 4, f"{fast_calls} calls into the miner for {len(lines)} lines"


def miner_calls(lines: list[str], fast: bool) -> tuple[str, int]:
    """The CSV written for ``lines`` and the calls made into the template miner's module
    from outside it meanwhile (counted by a profile hook: whatever the miner's methods are;
    what one call does inside the module is its own business)."""
    out = io.StringIO()
    sink = StructuredCsv(get_format("hdfs"), TemplateMiner(), out, stats=Stats())
    sink.fast = fast
    miner_file = inspect.getfile(TemplateMiner)
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if (
            event == "call"
            and frame.f_code.co_filename == miner_file
            and (frame.f_back is None or frame.f_back.f_code.co_filename != miner_file)
        ):
            calls += 1

    sys.setprofile(count)
    try:
        sink.write_texts(lines)
    finally:
        sys.setprofile(None)
    return out.getvalue(), calls


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=80), max_size=30
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["hdfs", "linux", "<Date> <Time> <Content>", "apache"]),
)
def test_any_text_same_output_on_both_paths(batches: list[list[str]], fmt: str) -> None:
    fast = run(batches, fast=True, fmt=fmt)
    full = run(batches, fast=False, fmt=fmt)
    assert fast[0] == full[0]
    assert fast[1] == full[1]
    assert fast[2] == full[2]


def test_fast_path_is_off_when_it_could_differ() -> None:
    miner = TemplateMiner(MinerConfig(masks=[MaskRule("x", "12", "id")]))
    assert not StructuredCsv(get_format("hdfs"), miner, io.StringIO()).fast
    assert not StructuredCsv(get_format("json"), TemplateMiner(), io.StringIO()).fast
    assert not StructuredCsv(
        get_format(r"<Date> 2024 <Content>"), TemplateMiner(), io.StringIO()
    ).fast
    assert StructuredCsv(get_format(r"<Date> \d+ <Content>"), TemplateMiner(), io.StringIO()).fast


def test_text_batches_match_line_iteration(tmp_path) -> None:
    data = b"ok line 1\n\xff bad utf8\nnul\x00here\r\n" + b"x" * 200 + b"\nlast no newline"
    p = tmp_path / "a.log"
    p.write_bytes(data)
    s1, s2 = Stats(), Stats()
    from logwarden.io.sources import SourceConfig

    cfg = SourceConfig(max_line_bytes=100, chunk_bytes=16)
    texts = [t for batch in LineReader([str(p)], cfg, s1).text_batches() for t in batch]
    lines = [line.text for line in LineReader([str(p)], cfg, s2)]
    assert texts == lines
    assert s1.as_dict() == s2.as_dict()
    assert s1["invalid_utf8"] == 1 and s1["nul_bytes"] == 1 and s1["truncated_line"] == 1
