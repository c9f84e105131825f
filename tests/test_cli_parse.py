"""`logwarden parse` end to end, and the bad-input suite: every case counted and reported."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logwarden.cli import main

HDFS_LINES = [
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
    "081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-6952295868487656571 terminating",
    "081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864",
    "081109 204015 308 INFO dfs.DataNode$PacketResponder: Received block blk_8229193803249955061 of size 67108864 from /10.250.11.100",
    "081109 204106 329 INFO dfs.DataNode$PacketResponder: PacketResponder 2 for block blk_-6670958622368987959 terminating",
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def counts(summary: str) -> dict[str, int]:
    m = re.search(r"skipped or altered: (.*)", summary)
    if not m:
        return {}
    return {k: int(v.replace(",", "")) for k, v in re.findall(r"(\w+) ([\d,]+)", m.group(1))}


def test_parse_writes_structured_and_templates_csv(tmp_path: Path, capsys) -> None:
    log = tmp_path / "hdfs.log"
    log.write_text("\n".join(HDFS_LINES) + "\n")
    out = tmp_path / "out" / "structured.csv"
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 0, err
    rows = read_csv(out)
    assert len(rows) == 5
    assert list(rows[0]) == [
        "LineId", "Date", "Time", "Pid", "Level", "Component", "Content",
        "EventId", "EventTemplate", "ParameterList",
    ]  # fmt: skip
    assert rows[0]["Date"] == "081109" and rows[0]["Component"] == "dfs.DataNode$PacketResponder"
    assert rows[0]["EventId"] == rows[1]["EventId"] == rows[4]["EventId"]
    assert rows[0]["EventTemplate"] == "PacketResponder <*> for block <*> terminating"
    assert rows[2]["EventId"] != rows[0]["EventId"]
    assert [r["LineId"] for r in rows] == ["1", "2", "3", "4", "5"]
    templates = read_csv(tmp_path / "out" / "structured.templates.csv")
    occ = {t["EventId"]: int(t["Occurrences"]) for t in templates}
    assert occ[rows[0]["EventId"]] == 3
    assert sum(occ.values()) == 5
    assert "5 lines read" in err and "3 templates" in err


def test_rows_get_final_ids_after_a_merge(tmp_path: Path, capsys) -> None:
    log = tmp_path / "x.log"
    users = ["cyrus", "news", "test", "cyrus", "root"]
    log.write_text(
        "".join(f"2024-01-01 10:00:0{i} session closed for user {u}\n" for i, u in enumerate(users))
    )
    out = tmp_path / "s.csv"
    code, err = run(
        ["parse", str(log), "--format", "<Date> <Time> <Content>", "--out", str(out)], capsys
    )
    assert code == 0, err
    rows = read_csv(out)
    assert {r["EventId"] for r in rows} == {"E1"}
    assert {r["EventTemplate"] for r in rows} == {"session closed for user <*>"}
    assert [r["ParameterList"] for r in rows][:2] == ["['cyrus']", "['news']"]


def test_state_is_saved_and_match_only_uses_it(tmp_path: Path, capsys) -> None:
    log = tmp_path / "hdfs.log"
    log.write_text("\n".join(HDFS_LINES) + "\n")
    state = tmp_path / "parser.json"
    code, _ = run(
        [
            "parse",
            str(log),
            "--format",
            "hdfs",
            "--out",
            str(tmp_path / "a.csv"),
            "--state",
            str(state),
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(state.read_text())["schema"].startswith("logwarden.parser/")
    new = tmp_path / "new.log"
    new.write_text(HDFS_LINES[0] + "\n081109 204106 329 INFO dfs.X: a message never seen\n")
    code, err = run(
        [
            "parse",
            str(new),
            "--format",
            "hdfs",
            "--out",
            str(tmp_path / "b.csv"),
            "--state",
            str(state),
            "--match-only",
        ],
        capsys,
    )
    assert code == 0, err
    rows = read_csv(tmp_path / "b.csv")
    assert rows[0]["EventId"] == read_csv(tmp_path / "a.csv")[0]["EventId"]
    assert rows[1]["EventId"] == ""
    assert counts(err)["no_template"] == 1


def test_an_unknown_flag_is_reported_with_its_commands_usage(capsys) -> None:
    # Not the top-level usage, which lists no flag of the command the user meant.
    code, err = run(["workflow", "--model", "m", "--format", "json"], capsys)
    assert code == 2
    assert "usage: logwarden workflow" in err and "--json OUT" in err
    assert "logwarden workflow: error: unrecognized arguments: --format json" in err
    code, err = run(["models", "history", "m", "--bogus"], capsys)  # a nested command
    assert code == 2 and "logwarden models history: error: unrecognized arguments" in err
    code, err = run(["--bogus"], capsys)
    assert code == 2 and "logwarden: error: unrecognized arguments: --bogus" in err


def test_format_auto_picks_the_preset_that_fits(tmp_path: Path, capsys, monkeypatch) -> None:
    log = tmp_path / "a.log"
    log.write_text(
        "".join(
            f"081109 2036{i % 60:02d} 148 INFO dfs.DataNode$PacketResponder: "
            f"Received block blk_{i} of size {i * 7}\n"
            for i in range(300)
        )
    )
    code, err = run(
        ["parse", str(log), "--format", "auto", "--out", str(tmp_path / "o.csv")], capsys
    )
    assert code == 0 and "--format auto: hdfs (100% of the first 300 lines)" in err
    assert read_csv(tmp_path / "o.csv")[0]["Component"] == "dfs.DataNode$PacketResponder"
    junk = tmp_path / "junk.log"
    junk.write_text("no header here\nnor here\n")
    code, err = run(
        ["parse", str(junk), "--format", "auto", "--out", str(tmp_path / "j.csv")], capsys
    )
    assert code == 2 and "no preset fits the first 2 lines" in err
    code, err = run(["parse", str(tmp_path / "gone.log"), "--format", "auto", "--out",
                     str(tmp_path / "g.csv")], capsys)  # fmt: skip
    assert code == 2 and "nothing to read (" in err and "gone.log" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    code, err = run(["parse", "-", "--format", "auto", "--out", str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "give --format for stdin" in err


def test_a_wrong_format_that_matches_most_lines_names_the_preset_that_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Spark lines read as BGL: the long ones have the nine tokens BGL's header wants, so
    # most lines "match" (with garbage fields) and no unmatched warning is given; but no
    # BGL time field reads as a time, and spark fits every line.
    log = tmp_path / "spark.log"
    log.write_text(
        "".join(
            f"17/06/09 20:10:{i % 60:02d} INFO executor.CoarseGrainedExecutorBackend: "
            f"Registered signal handlers for [TERM, HUP, INT] try {i}\n"
            if i % 3
            else f"17/06/09 20:11:{i % 60:02d} INFO spark.SecurityManager: Changing acls\n"
            for i in range(300)
        )
    )
    out = str(tmp_path / "o.csv")
    code, err = run(["parse", str(log), "--format", "bgl", "--out", out, "-q"], capsys)
    assert code == 0 and "do not match the log format" not in err
    assert (
        "warning: --format bgl fits 0% of the first 300 lines (matched, with a readable "
        "time), the preset spark 100%: is the input spark?" in err
    )
    code, err = run(["parse", str(log), "--format", "bgl", "--out", out, "--with-source"], capsys)
    assert "the preset spark 100%" in err
    for fmt in ("spark", "<Date> <Time> <Level> <Component>: <Content>", "auto"):
        code, err = run(["parse", str(log), "--format", fmt, "--out", out, "-q"], capsys)
        assert code == 0 and "warning" not in err, fmt
    # train reads the first lines again to say the same (and detect, of the model's format).
    model = str(tmp_path / "m")
    code, err = run(["train", str(log), "--format", "bgl", "--window", "10", "--out", model,
                     "--hidden", "8", "--layers", "1", "--folds", "2", "--epochs", "1",
                     "--no-params", "-q"], capsys)  # fmt: skip
    assert code == 0 and "warning: --format bgl fits 0% of the first 300 lines" in err


def test_json_lines_keep_their_header_fields_in_the_structured_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fields come with the lines: one first seen on line 3 is a column, empty before it.
    objs = [
        {"time": "2024-01-01T00:00:00Z", "level": "INFO", "message": "Started job 1"},
        {"time": "2024-01-01T00:00:01Z", "level": "WARN", "message": "Slow job 1, retry"},
        {
            "time": "2024-01-01T00:00:02Z",
            "level": "INFO",
            "host": "a,b",
            "message": "Started job 2",
        },
        {"message": "Started job 3", "n": 3, "ok": True},
    ]
    log = tmp_path / "a.jsonl"
    log.write_text("".join(json.dumps(o) + "\n" for o in objs) + "not json\n")
    for extra in ([], ["--with-source"]):
        out = tmp_path / "o.csv"
        code, err = run(["parse", str(log), "--format", "json", "--out", str(out), *extra], capsys)
        assert code == 0, err
        rows = read_csv(out)
        assert list(rows[0])[:9] == [
            "LineId", "time", "level", "host", "n", "ok", "Content", "EventId", "EventTemplate",
        ]  # fmt: skip
        assert [(r["time"], r["level"], r["host"], r["n"]) for r in rows] == [
            ("2024-01-01T00:00:00Z", "INFO", "", ""),
            ("2024-01-01T00:00:01Z", "WARN", "", ""),
            ("2024-01-01T00:00:02Z", "INFO", "a,b", ""),
            ("", "", "", "3"),
            ("", "", "", ""),
        ]
        assert [r["Content"] for r in rows] == [o["message"] for o in objs] + ["not json"]
        assert rows[1]["EventTemplate"] == "Slow job <*>, retry" and rows[3]["ok"] == "true"
        if extra:
            assert [r["LineNo"] for r in rows] == ["1", "2", "3", "4", "5"]


def test_standard_output_as_out(tmp_path: Path, capsys, monkeypatch) -> None:
    # simulate writes its log there (the labels still to their file), the same lines as a
    # file gets; parse cannot (it rewrites earlier rows) and says so, creating no file "-".
    log, labels = tmp_path / "sim.log", tmp_path / "labels.csv"
    assert main(["simulate", "--sessions", "40", "--out", str(log), "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["simulate", "--sessions", "40", "--out", "-", "--labels", str(labels),
                 "--seed", "3"]) == 0  # fmt: skip
    assert capsys.readouterr().out == log.read_text(encoding="utf-8")
    assert len(read_csv(labels)) == 40
    monkeypatch.chdir(tmp_path)  # where a file named "-" would land
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", "-"], capsys)
    assert code == 2 and "--out needs a file" in err
    assert not Path("-").exists()


def test_session_errors_name_the_flags(tmp_path: Path, capsys) -> None:
    log = tmp_path / "a.log"
    log.write_text("x\n")
    out = str(tmp_path / "m")
    code, err = run(["train", str(log), "--format", "hdfs", "--window", "0", "--out", out], capsys)
    assert code == 2 and "--window must be a positive integer" in err
    code, err = run(
        ["train", str(log), "--format", "hdfs", "--session", "(x", "--out", out], capsys
    )
    assert code == 2 and "--session '(x' does not compile" in err


def test_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    log = tmp_path / "a.log"
    log.write_text("x\n")
    code, err = run(
        ["parse", str(log), "--format", "nosuchpreset", "--out", str(tmp_path / "o.csv")], capsys
    )
    assert code == 2 and "error" in err and "Traceback" not in err
    code, err = run(
        ["parse", str(log), "--format", "<Date> <Time>", "--out", str(tmp_path / "o.csv")], capsys
    )
    assert code == 2 and "Content" in err
    code, err = run(["parse", str(log), "--format", "hdfs"], capsys)
    assert code == 2
    code, err = run(
        ["parse", str(log), "--format", "hdfs", "--out", str(tmp_path / "o.csv"), "--match-only"],
        capsys,
    )
    assert code == 2 and "--state" in err
    code, err = run(
        [
            "parse",
            str(log),
            "--format",
            "hdfs",
            "--out",
            str(tmp_path / "o.csv"),
            "--mask",
            "nokind",
        ],
        capsys,
    )
    assert code == 2 and "KIND=REGEX" in err
    code, err = run(
        ["parse", str(log), "--format", "hdfs", "--out", str(tmp_path / "o.csv"), "--mask", "id=("],
        capsys,
    )
    assert code == 2 and "invalid regex" in err


def test_user_mask_from_the_command_line(tmp_path: Path, capsys) -> None:
    log = tmp_path / "a.log"
    log.write_text("2024-01-01 00:00:00 job alpha done\n2024-01-01 00:00:01 job omega done\n")
    out = tmp_path / "o.csv"
    code, err = run(
        [
            "parse",
            str(log),
            "--format",
            "<Date> <Time> <Content>",
            "--out",
            str(out),
            "--mask",
            "id=alpha|omega",
        ],
        capsys,
    )
    assert code == 0, err
    rows = read_csv(out)
    assert rows[0]["EventTemplate"] == "job <*> done" and rows[0]["EventId"] == rows[1]["EventId"]


# --- the bad-input suite --------------------------------------------------------------------


def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path, capsys) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(HDFS_LINES[0].encode() + b"\n" + HDFS_LINES[1].encode()[:-4] + b"\xff\xfe\n")
    out = tmp_path / "o.csv"
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 0
    assert counts(err)["invalid_utf8"] == 1
    rows = read_csv(out)
    assert len(rows) == 2 and "\ufffd" in rows[1]["Content"]


def test_nul_bytes_are_counted(tmp_path: Path, capsys) -> None:
    log = tmp_path / "nul.log"
    log.write_bytes(
        HDFS_LINES[0].encode().replace(b"block", b"bl\x00ock")
        + b"\n"
        + HDFS_LINES[1].encode()
        + b"\n"
    )
    out = tmp_path / "o.csv"
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 0
    assert counts(err)["nul_bytes"] == 1
    rows = read_csv(out)
    assert len(rows) == 2 and "\x00" not in rows[0]["Content"]


def test_ten_megabyte_line_is_truncated_and_counted(tmp_path: Path, capsys) -> None:
    log = tmp_path / "huge.log"
    with log.open("wb") as fh:
        fh.write(HDFS_LINES[0].encode() + b"\n")
        fh.write(b"081109 203615 148 INFO dfs.X: " + b"A" * 10_000_000 + b"\n")
        fh.write(HDFS_LINES[1].encode() + b"\n")
    out = tmp_path / "o.csv"
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 0
    assert counts(err)["truncated_line"] == 1
    rows = read_csv(out)
    assert len(rows) == 3
    assert len(rows[1]["Content"]) < 65536
    assert rows[2]["Content"] == HDFS_LINES[1].split(": ", 1)[1]


def test_empty_file_is_reported_and_exits_1(tmp_path: Path, capsys) -> None:
    log = tmp_path / "empty.log"
    log.write_bytes(b"")
    code, err = run(
        ["parse", str(log), "--format", "hdfs", "--out", str(tmp_path / "o.csv")], capsys
    )
    assert code == 1
    assert counts(err)["empty_file"] == 1
    assert "no line could be parsed" in err


def test_truncated_gzip_keeps_what_was_read_and_counts_it(tmp_path: Path, capsys) -> None:
    data = gzip.compress(("\n".join(HDFS_LINES * 200) + "\n").encode())
    log = tmp_path / "cut.log.gz"
    log.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.csv"
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 1  # what was read is written, and the status says the rest was not
    assert counts(err)["truncated_gzip"] == 1
    assert "1 input(s) could not be read" in err
    rows = read_csv(out)
    assert 0 < len(rows) < 1000


def test_wrong_format_lines_are_kept_whole_and_counted(tmp_path: Path, capsys) -> None:
    log = tmp_path / "apache.log"
    log.write_text(
        "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties\n"
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6\n"
    )
    out = tmp_path / "o.csv"
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 0
    assert counts(err)["unmatched_format"] == 2
    rows = read_csv(out)
    assert rows[1]["Content"].startswith("[Sun Dec 04") and rows[1]["Date"] == ""


def test_unreadable_timestamps_are_counted_as_detect_counts_them(tmp_path: Path, capsys) -> None:
    """50 OpenStack lines with the hour 99: detect counted bad_timestamp 50, and the parse
    summary, which lists every skipped or altered line by reason, said nothing."""
    from logwarden.io.formats import get_format
    from logwarden.io.ingest import read_raw_sessions
    from logwarden.sessions import SessionConfig

    lines = HDFS_LINES * 20
    bad = {3: "081109 993615", 17: "081340 203615", 18: "081109 206199", 40: "081109 99"}
    bad.update({25: "081109 993615", 26: "081109 993615"})  # the scan reuses a line's time
    for i in (50, 51, 52, 60, 61):  # for the next line of the same time text: good ones only
        lines[i] = "081109 213000" + lines[i][13:]
    lines[16] = "081109 203615" + lines[16][13:]  # the time of the bad date after it
    for i, head in bad.items():  # the same shape as good lines, but for the last one
        lines[i] = head + lines[i][13:]
    log = tmp_path / "hdfs.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    for extra in ([], ["--with-source"], ["--mask", "id=blk_-?\\d+"]):  # the bulk path, the full
        code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out), *extra], capsys)
        assert code == 0 and counts(err) == {"bad_timestamp": len(bad)}, (extra, err)
    read = read_raw_sessions([str(log)], "hdfs", SessionConfig(id_pattern=r"blk_-?\d+"))
    assert read.stats["bad_timestamp"] == len(bad)
    table = read.sessions
    by_line = {table.line_number(r): table.timestamps[r] for r in range(len(table.line_keys))}
    fmt = get_format("hdfs")
    for i, text in enumerate(lines):
        want = None if i in bad else fmt.parse_time(" ".join(text.split()[:2]))
        assert by_line[i + 1] == want, (i, text)
    log.write_text("\n".join(HDFS_LINES * 20) + "\n")
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", str(out)], capsys)
    assert code == 0 and "bad_timestamp" not in err


def test_missing_file_is_reported_and_others_still_read(tmp_path: Path, capsys) -> None:
    log = tmp_path / "ok.log"
    log.write_text(HDFS_LINES[0] + "\n")
    out = tmp_path / "o.csv"
    code, err = run(
        ["parse", str(tmp_path / "missing.log"), str(log), "--format", "hdfs", "--out", str(out)],
        capsys,
    )
    assert code == 1  # the others are read and written; the status tells a script
    assert counts(err)["unreadable_file"] == 1
    assert "missing.log" in err
    assert len(read_csv(out)) == 1
    # Also under --quiet: the error is printed, the status is 1.
    code, err = run(
        ["parse", str(tmp_path / "missing.log"), str(log), "--format", "hdfs", "--out", str(out),
         "-q"],
        capsys,
    )  # fmt: skip
    assert code == 1 and "missing.log" in err and "could not be read" in err
    code, err = run(
        ["parse", str(tmp_path / "missing.log"), "--format", "hdfs", "--out", str(out)], capsys
    )
    assert code == 1


def test_stdin_through_the_real_command(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "logwarden", "parse", "-", "--format", "hdfs", "--out", str(out)],
        input=("\n".join(HDFS_LINES) + "\n").encode(),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(read_csv(out)) == 5
    assert b"Traceback" not in proc.stderr


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    blob=st.binary(max_size=3000),
    fmt=st.sampled_from(["hdfs", "bgl", "linux", "syslog", "json", "<Date> <Time> <Content>"]),
    gz=st.booleans(),
)
def test_random_bytes_through_the_whole_parse_command(
    blob: bytes, fmt: str, gz: bool, tmp_path_factory: pytest.TempPathFactory, capsys
) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    log = d / "in.log"
    log.write_bytes(gzip.compress(blob) if gz else blob)
    out = d / "o.csv"
    code = main(["parse", str(log), "--format", fmt, "--out", str(out), "--max-line-bytes", "300"])
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert "Traceback" not in err
    n_read = int(re.search(r"([\d,]+) lines read", err).group(1).replace(",", ""))
    rows = read_csv(out)
    # every line read is either a row or a counted empty line: nothing vanishes
    assert len(rows) + counts(err).get("empty_line", 0) == n_read
    assert code == (0 if rows else 1)


def test_summary_ends_with_shattering_warnings(tmp_path: Path, capsys) -> None:
    # Program names, most seen once, in a message of two constant words: too few for the
    # miner to learn that the first token is a value, so one event becomes a template per
    # program; the summary says so last, with a mask.
    log = tmp_path / "proxy.log"
    rng = random.Random(3)
    programs = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(6)).title() for _ in range(400)
    ]
    log.write_text(
        "".join(
            f"2024-01-01 10:00:{i % 60:02d} {rng.choice(programs)} - 10.0.0.{i % 250}:443 close\n"
            for i in range(200)
        )
    )
    fmt = "<Date> <Time> <Content>"
    code, err = run(["parse", str(log), "--format", fmt, "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 0, err
    lines = err.rstrip("\n").split("\n")
    n = int(re.search(r"into ([\d,]+) templates", err).group(1))
    assert n > 100
    assert re.match(
        rf"  warning: {n} templates \(200 lines, \d+ of them with a value seen once\) "
        r"differ only at token 1",
        lines[-1],
    ), lines[-1]
    mask = re.search(r"--mask '([^']+)'", lines[-1])
    assert mask is not None
    # The suggested mask, as given, makes it one template and the warning goes away.
    out = tmp_path / "p.csv"
    code, err = run(
        ["parse", str(log), "--format", fmt, "--out", str(out), "--mask", mask.group(1)], capsys
    )
    assert code == 0, err
    assert "into 1 template\n" in err and "warning" not in err
    assert {r["EventTemplate"] for r in read_csv(out)} == {"<*> - <*> close"}
    # --quiet: no summary, no warnings.
    code, err = run(
        ["parse", str(log), "--format", fmt, "--out", str(tmp_path / "q.csv"), "--quiet"], capsys
    )
    assert code == 0 and err == ""


def test_a_format_that_fits_no_line_is_warned_about_also_under_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "h.log"
    log.write_text("\n".join(HDFS_LINES) + "\n\n")
    out = str(tmp_path / "o.csv")
    code, err = run(
        ["parse", str(log), "--format", "<Date <Time> <Content>", "--out", out, "-q"], capsys
    )
    n = len(HDFS_LINES)
    assert code == 0 and f"warning: {n} of {n} lines do not match the log format" in err
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", out, "-q"], capsys)
    assert code == 0 and "warning" not in err


def test_unescaped_brackets_in_a_format_string_are_named_with_the_escaped_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Literal text of a format string is a regex (loghub's syntax): "[" opens a character
    # class, no line matches, and the warning says how to write the bracket.
    log = tmp_path / "a.log"
    log.write_text(
        "".join(f"[Sun Dec 04 04:47:{i:02d} 2005] [notice] child {i} ok\n" for i in range(20))
    )
    out = str(tmp_path / "o.csv")
    code, err = run(["parse", str(log), "--format", "[<Time>] [<Level>] <Content>",
                     "--out", out, "-q"], capsys)  # fmt: skip
    assert "20 of 20 lines do not match the log format" in err
    assert "[ ] in it are not escaped: for literal text write \\[, as in --format " in err
    assert "'\\[<Time>\\] \\[<Level>\\] <Content>'" in err
    code, err = run(["parse", str(log), "--format", r"\[<Time>\] \[<Level>\] <Content>",
                     "--out", out, "-q"], capsys)  # fmt: skip
    assert code == 0 and err == ""
    assert read_csv(Path(out))[0]["Level"] == "notice"
    # Nothing to say on a preset, or when the characters are escaped already.
    code, err = run(["parse", str(log), "--format", "hdfs", "--out", out, "-q"], capsys)
    assert "do not match" in err and "escaped" not in err


def test_max_templates_lists_the_evicted_templates_its_rows_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --max-templates, rows written before a template was evicted keep its id: the
    templates CSV lists it too (177 of 187 ids were missing from it on BGL_2k), and the
    summary says how many were evicted."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    lines = [
        f"081109 2036{i % 60:02d} 148 INFO dfs.X: {words[i % 8]} {words[(i // 8) % 8]} step {i}"
        for i in range(400)
    ]
    log = tmp_path / "many.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    code, err = run(
        ["parse", str(log), "--format", "hdfs", "--out", str(out), "--max-templates", "5"], capsys
    )
    assert code == 0
    rows = read_csv(out)
    with (tmp_path / "o.templates.csv").open(newline="", encoding="utf-8") as fh:
        listed = {r["EventId"]: r["EventTemplate"] for r in csv.DictReader(fh)}
    used = {r["EventId"] for r in rows}
    assert len(used) > 5 and used <= set(listed)
    assert all(listed[r["EventId"]] == r["EventTemplate"] for r in rows)
    assert f"{len(listed) - 5:,} more evicted by --max-templates" in err


def test_max_templates_evicts_the_least_recently_used_and_counts_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bulk path counted a batch's lines at its end: a template used on every other
    line looked unused to the eviction and went first (BGL_2k: "generating core.<*>", 721
    of 2,000 lines, listed with 0 occurrences; the counts summed to 800)."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    lines = []
    for i in range(600):
        text = (
            f"heartbeat ok from worker {i % 9}"
            if i % 2 == 0
            else f"{words[i % 8]} {words[(i // 8) % 8]} {words[(i // 64) % 8]} step {i}"
        )
        lines.append(f"081109 2036{i % 60:02d} 148 INFO dfs.X: {text}")
    log = tmp_path / "lru.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    args = ["parse", str(log), "--format", "hdfs", "--out", str(out), "--max-templates", "10"]
    code, err = run([*args, "--state", str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    with (tmp_path / "o.templates.csv").open(newline="", encoding="utf-8") as fh:
        listed = list(csv.DictReader(fh))
    assert sum(int(r["Occurrences"]) for r in listed) == 600
    beat = [r for r in listed if r["EventTemplate"].startswith("heartbeat ok")]
    assert len(beat) == 1 and int(beat[0]["Occurrences"]) == 300
    rows = read_csv(out)
    assert {r["EventId"] for r in rows if r["Content"].startswith("heartbeat")} == {
        beat[0]["EventId"]
    }
    state = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert '["heartbeat", "ok", "from", "worker", "<*>"]' in json.dumps(state)  # kept


def test_an_output_that_is_a_directory_is_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It parsed everything, then failed with exit 1 naming its temporary file."""
    log = tmp_path / "a.log"
    log.write_text("081109 203615 148 INFO dfs.X: hello 1\n")
    (tmp_path / "d").mkdir()
    for flag, path in (("--out", tmp_path / "d"), ("--templates", tmp_path / "d")):
        args = ["parse", str(log), "--format", "hdfs", "--out", str(tmp_path / "o.csv")]
        if flag == "--out":
            args[-1] = str(path)
        else:
            args += [flag, str(path)]
        code, err = run(args, capsys)
        assert code == 2 and f"{flag} {path} is a directory" in err, err
        assert ".tmp" not in err
