"""``logwarden demo``: the main job on built-in data, end to end.

Simulate a multi-task log with injected anomalies, read it back as a user's file would be
read, parse it into templates and parameters, group it into sessions, and show what the
later stages (the DeepLog models) receive. It grows as the models land.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .formats import get_format
from .parsing import TemplateMiner
from .records import Event, Stats
from .sessions import SessionConfig, group
from .simulate import SIM_FORMAT, SIM_SESSION_REGEX, SimConfig, simulate
from .sources import LineReader


def parse_file(path: Path, fmt_spec: str, stats: Stats) -> tuple[list[Event], TemplateMiner]:
    """Read, header-split and template-mine one file: the first stages of the data path."""
    fmt = get_format(fmt_spec)
    miner = TemplateMiner()
    events: list[Event] = []
    for record in fmt.records(LineReader([str(path)], stats=stats), stats):
        event = miner.parse_record(record)
        if event is not None:
            events.append(event)
    # Keys handed out before a template merge point to the surviving template now.
    for e in events:
        e.key = miner.resolve(e.key)
        e.template = miner.templates_[e.key].text
    return events, miner


def run_demo(sessions: int = 1500, seed: int = 7, console: Console | None = None) -> int:
    console = console or Console(stderr=False)
    console.rule("[bold]logwarden demo")
    with tempfile.TemporaryDirectory(prefix="logwarden-demo-") as tmp:
        log = Path(tmp) / "simulated.log"
        labels = Path(tmp) / "labels.csv"
        t0 = time.perf_counter()
        sim = simulate(SimConfig(seed=seed, sessions=sessions))
        sim.write(log, labels)
        kinds = Counter(s.kind for s in sim.sessions)
        console.print(
            f"Simulated [bold]{len(sim.lines):,}[/] lines from {len(sim.sessions):,} sessions "
            f"(seed {seed}): "
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + f"  [dim]({time.perf_counter() - t0:.1f} s)[/]"
        )

        t0 = time.perf_counter()
        stats = Stats()
        events, miner = parse_file(log, SIM_FORMAT, stats)
        dt = time.perf_counter() - t0
        console.print(
            f"Parsed [bold]{len(events):,}[/] lines into [bold]{len(miner)}[/] templates "
            f"in {dt:.2f} s ({len(events) / max(dt, 1e-9):,.0f} lines/s)"
        )
        if stats.problems():
            console.print(
                "Skipped or altered: " + ", ".join(f"{k} {v}" for k, v in stats.problems().items())
            )

        table = Table(title="Templates (log keys)", show_lines=False)
        table.add_column("key", justify="right")
        table.add_column("count", justify="right")
        table.add_column("template")
        for t in sorted(miner.templates_.values(), key=lambda t: -t.count):
            table.add_row(str(t.id), f"{t.count:,}", escape(t.text))
        console.print(table)

        sess_stats = Stats()
        grouped = group(events, SessionConfig(id_pattern=SIM_SESSION_REGEX), sess_stats)
        truth = {s.session: s for s in sim.sessions}
        console.print(
            f"Grouped into [bold]{len(grouped):,}[/] sessions by identifier; "
            f"{sess_stats['no_session_id']:,} lines carry no identifier (background noise)."
        )
        st = Table(title="A few sessions: key sequences and elapsed times")
        st.add_column("session")
        st.add_column("truth")
        st.add_column("keys")
        st.add_column("elapsed (s)")
        shown: set[str] = set()
        for s in grouped:
            t = truth.get(s.id)
            kind = t.kind if t else "?"
            if kind in shown and len(shown) < 4:
                continue
            shown.add(kind)
            elapsed = " ".join("-" if e is None else f"{e:.2f}" for e in s.elapsed[:8])
            keys = " ".join(str(k) for k in s.keys[:16]) + (" ..." if len(s.keys) > 16 else "")
            detail = f"{kind}" + (f": {t.detail}" if t and t.detail else "")
            st.add_row(
                escape(s.id), escape(detail), keys, elapsed + (" ..." if len(s.elapsed) > 8 else "")
            )
            if len(st.rows) >= 6:
                break
        console.print(st)
    console.print(
        "[dim]Next stages (the DeepLog key and parameter models) train on these sessions.[/]"
    )
    return 0
