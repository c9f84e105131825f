"""``logwarden serve`` as a user runs it: the HTTP contract, limits, tokens, metrics."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from logwarden.cli.main import main


def wait_for(fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_logs_anomalies_flush_feedback_metrics(sim_model: Any, serve: Any, tmp_path: Path) -> None:
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "0"])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=30)
    assert c.get("/healthz").json()["ok"] is True
    lines = sim_model.mixed_lines
    half = len(lines) // 2
    r = c.post("/api/v1/logs", content="\n".join(lines[:half]) + "\n",
               headers={"Content-Type": "text/plain"})  # fmt: skip
    assert r.status_code == 202 and r.json()["accepted"] == half
    r = c.post("/api/v1/logs", content="\n".join(lines[half:]).encode(),
               headers={"Content-Type": "text/plain; charset=utf-8", "Idempotency-Key": "b2"})  # fmt: skip
    assert r.json()["accepted"] == len(lines) - half
    again = c.post("/api/v1/logs", content="\n".join(lines[half:]).encode(),
                   headers={"Content-Type": "text/plain", "Idempotency-Key": "b2"})  # fmt: skip
    assert again.status_code == 202 and again.json().get("duplicate") is True
    # The same key with other lines is not a repeat: 409, nothing stored (the line count
    # in the metrics below is the two requests' alone).
    other = c.post("/api/v1/logs", content="\n".join(lines[half:-1]).encode(),
                   headers={"Content-Type": "text/plain", "Idempotency-Key": "b2"})  # fmt: skip
    assert other.status_code == 409 and "other lines" in other.json()["detail"]
    # Entry-level anomalies appear before any flush.
    early = wait_for(lambda: c.get("/api/v1/anomalies").json())
    assert all(v["closed"] is False or v["reason"] == "early_end" for v in early[:1])
    done = c.post("/api/v1/flush?wait=true").json()
    assert done["done"] is True
    got = c.get("/api/v1/anomalies").json()
    from logwarden.detect import Detector

    det = Detector.load(sim_model.path)
    batch = det.verdicts(det.read([str(sim_model.mixed_log)]))
    assert sorted(v["session"] for v in got) == sorted(v.session for v in batch if v.anomalous)
    assert [v["id"] for v in got] == sorted({v["id"] for v in got})
    assert all(v["closed"] for v in got)
    # since / limit
    page = c.get("/api/v1/anomalies", params={"since": got[2]["id"], "limit": 3}).json()
    assert [v["id"] for v in page] == [v["id"] for v in got[3:6]]
    one = c.get(f"/api/v1/anomalies/{got[0]['id']}").json()
    assert one["session_lines"] and one["session"] == got[0]["session"]
    assert c.get("/api/v1/anomalies/999999").status_code == 404
    # metrics
    m = c.get("/metrics").text
    assert f"logwarden_lines_total {float(len(lines))}" in m
    n_anom = sum(
        float(line.rsplit(" ", 1)[1])
        for line in m.splitlines()
        if line.startswith("logwarden_anomalies_total{")
    )
    assert n_anom == len(got)
    # The detector's bounded caches are reported (the soak bench follows them over time).
    caches = c.get("/api/v1/status").json()["caches"]
    assert set(caches) == {"windows", "fold"} and caches["windows"] > 0
    tpl = c.get("/api/v1/templates").json()
    assert tpl["new"] == len(tpl["latest"]) > 0  # the mixed log has unseen messages
    assert all(k.startswith("U") for k in tpl["latest"])
    for name in ("logwarden_sessions_open", "logwarden_verdict_latency_seconds_bucket",
                 "logwarden_model_version 1.0", "logwarden_bad_input_total"):  # fmt: skip
        assert name in m
    models = c.get("/api/v1/models").json()
    assert models["current"] == 1 and models["versions"][0]["version"] == 1
    # feedback
    r = c.post("/api/v1/feedback", json={"session": got[0]["session"], "label": "normal"})
    assert r.status_code == 202 and r.json()["anomaly"] == got[0]["id"]
    assert (
        c.post(
            "/api/v1/feedback", json={"session": got[0]["session"], "label": "maybe"}
        ).status_code
        == 422
    )
    assert (
        c.post("/api/v1/feedback", json={"session": "nope", "label": "normal"}).status_code == 404
    )
    assert c.post("/api/v1/feedback", content=b"{not json").status_code == 400
    assert [f["label"] for f in c.get("/api/v1/feedback").json()] == ["normal"]
    page = c.get("/").text
    assert "<title>logwarden</title>" in page and "/static/app.js" in page
    for asset in ("/", "/static/app.js", "/static/style.css"):  # nothing from elsewhere
        text = c.get(asset).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_limits_and_bad_input(sim_model: Any, serve: Any, tmp_path: Path) -> None:
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--max-body", "100000", "--max-line", "2000"])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=30)
    r = c.post("/api/v1/logs", content=b"x" * 100001, headers={"Content-Type": "text/plain"})
    assert r.status_code == 413 and "100,000 bytes" in r.json()["detail"]
    r = c.post("/api/v1/logs", content=b"ok\n" + b"y" * 2001 + b"\n",
               headers={"Content-Type": "text/plain"})  # fmt: skip
    assert r.status_code == 413 and "line 2" in r.json()["detail"]
    assert c.post("/api/v1/logs", json={"a": 1}).status_code == 415
    # Another charset, named: decoded (the line stored as its text); unknown: 415; a body
    # not in the charset it names: 400. Nothing stored in either case.
    r = c.post("/api/v1/logs", content="caf\u00e9 \u20ac\n".encode("utf-16"),
               headers={"Content-Type": "text/plain; charset=utf-16"})  # fmt: skip
    assert r.status_code == 202 and r.json()["accepted"] == 1  # no NUL bytes counted below
    r = c.post("/api/v1/logs", content=b"x\n", headers={"Content-Type": "text/plain; charset=nope"})
    assert r.status_code == 415 and "charset" in r.json()["detail"]
    r = c.post("/api/v1/logs", content=b"\xff\xfe\x00\xd8x\x00",
               headers={"Content-Type": "text/plain; charset=utf-16"})  # fmt: skip
    assert r.status_code == 400 and "nothing stored" in r.json()["detail"]
    junk = b"\xff\xfe bad utf8\n\x00\x01\x02 binary\nnot a log line\n\n" + bytes(range(256))
    r = c.post("/api/v1/logs", content=junk, headers={"Content-Type": "text/plain"})
    assert r.status_code == 202 and r.json()["accepted"] == 6  # bytes(range(256)) holds a newline
    c.post("/api/v1/flush?wait=true")
    m = c.get("/metrics").text
    assert 'logwarden_bad_input_total{reason="bad_utf8"} 2.0' in m
    assert 'logwarden_bad_input_total{reason="nul_bytes"} 2.0' in m
    assert 'logwarden_bad_input_total{reason="line_too_long"} 1.0' in m
    assert 'logwarden_bad_input_total{reason="unmatched_format"}' in m
    assert c.get("/healthz").status_code == 200


def test_token_and_binding(sim_model: Any, serve: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-0123456789\n")
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--token-file", str(token_file)])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=30)
    for path in ("/api/v1/logs", "/api/v1/flush", "/api/v1/feedback"):
        assert c.post(path, content=b"x\n").status_code == 401
        wrong = c.post(path, content=b"x\n", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not this server's" in wrong.json()["detail"]
    ok = c.post("/api/v1/logs", content=b"x\n",
                headers={"Authorization": "Bearer s3cret-token-0123456789"})  # fmt: skip
    assert ok.status_code == 202
    assert c.get("/api/v1/anomalies").status_code == 200  # reading needs no token
    # Another address than loopback without a token is refused before binding.
    assert main(["serve", "--model", str(sim_model.path), "--store",
                 str(tmp_path / "w.db"), "--host", "0.0.0.0"]) == 2  # fmt: skip


def test_a_port_out_of_range_or_taken_is_one_line(
    tmp_path: Path, sim_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    base = ["serve", "--model", str(sim_model.path), "--store", str(tmp_path / "p.db")]
    assert main([*base, "--port", "99999"]) == 2
    assert "--port must be 0 to 65535 (got 99999)" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main([*base, "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert not (tmp_path / "p.db").exists()  # refused before the store was made


def test_anomalies_expire_after_the_retention_unless_given_feedback(
    sim_model: Any, serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["serve", "--model", str(sim_model.path), "--store", str(tmp_path / "r.db")]
    assert main([*base, "--retain-days", "-1"]) == 2
    assert "retain_days must be positive" in capsys.readouterr().err
    days = 6.0 / 86_400  # six seconds
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "0", "--retain-days", repr(days)])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=30)
    c.post("/api/v1/logs", content="\n".join(sim_model.mixed_lines).encode(),
           headers={"Content-Type": "text/plain"})  # fmt: skip
    assert c.post("/api/v1/flush?wait=true").json()["done"]
    got = c.get("/api/v1/anomalies").json()
    assert len(got) > 1
    kept = got[0]
    fb = c.post("/api/v1/feedback", json={"id": kept["id"], "label": "confirmed"})
    assert fb.status_code == 202
    left = wait_for(
        lambda: (a := c.get("/api/v1/anomalies").json()) and len(a) == 1 and a, timeout=60
    )
    assert left[0]["id"] == kept["id"]  # feedback keeps it
    gone = got[1]
    r = c.post("/api/v1/feedback", json={"id": gone["id"], "label": "normal"})
    assert r.status_code == 404  # expired: nothing to learn from
    m = c.get("/metrics").text

    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in m.splitlines()
                   if line.startswith(name))  # fmt: skip

    assert total("logwarden_anomalies_total{") == len(got)  # a counter: never goes down
    assert total("logwarden_verdicts_expired_total") == len(got) - 1


def test_store_is_checked(tmp_path: Path, sim_model: Any) -> None:
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    assert main(["serve", "--model", str(sim_model.path), "--store", str(bad)]) == 1
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema', '99')")
    con.commit()
    con.close()
    assert main(["serve", "--model", str(sim_model.path), "--store", str(db)]) == 1
    assert main(["serve", "--store", str(tmp_path / "new.db")]) == 2  # a new store needs a model
    assert not (tmp_path / "new.db").exists()  # and the refused start left no store behind


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
def test_demo_serve_shows_live_anomalies(sim_model: Any, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from conftest import SRC, free_port

    shutil.copytree(sim_model.path, tmp_path / "model")  # a trained model: no training here
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logwarden", "demo", "--serve", "--dir", str(tmp_path),
         "--port", str(port), "--rate", "3000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={"PYTHONPATH": str(SRC)},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def anomalies() -> Any:
            try:
                return httpx.get(url + "/api/v1/anomalies", timeout=5).json()
            except httpx.TransportError:
                return None

        assert wait_for(anomalies, timeout=90)
        assert "<title>logwarden</title>" in httpx.get(url + "/").text
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"Dashboard: {url}/" in out


def test_connections_of_the_listening_socket_send_without_delay() -> None:
    """Nagle's algorithm off on every accepted connection: asyncio (which uvicorn serves
    with) sets TCP_NODELAY only where the listening socket says its protocol is TCP. With
    it on, each response after the first on a kept-alive connection waited 40 ms for the
    client's delayed acknowledgement."""
    import asyncio
    import socket

    from logwarden.service.run import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: list[int] = []

    async def run() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(asyncio.wait_for(run(), 30))
    assert seen and seen[0] != 0


def test_update_folders_of_killed_servers_are_removed(tmp_path: Path) -> None:
    """An online update writes its sessions' lines under the store's models folder; a
    server killed meanwhile leaves that folder, and the next start removes it (a live
    process's stays)."""
    import os
    import subprocess
    import sys

    from logwarden.service.server import clear_update_files

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    models = tmp_path / "s.db.models"
    dead = models / f"update-{gone.pid}-abc"
    live = models / f"update-{os.getpid()}-def"
    other = models / "v1"
    for d in (dead, live, other):
        d.mkdir(parents=True)
    (dead / "feedback.log").write_text("a line\n")
    assert clear_update_files(models) == 1
    assert not dead.exists() and live.exists() and other.exists()
    assert clear_update_files(tmp_path / "none") == 0


def test_feedback_close_together_builds_one_chain_of_versions(
    sim_model: Any, serve: Any, tmp_path: Path
) -> None:
    """Each update builds on the version last switched to, not on the one the detector
    reports: three feedback posts in a row used to give v2 (from v1) and v3 from v1 again,
    so the first feedback was in no current model. Also: ids out of SQLite's range are
    422, not 500, and an id that names another session is refused."""
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "0"])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=60)
    lines = sim_model.mixed_lines
    c.post("/api/v1/logs", content="\n".join(lines) + "\n", headers={"Content-Type": "text/plain"})
    assert c.post("/api/v1/flush?wait=true").json()["done"] is True
    got = c.get("/api/v1/anomalies").json()
    assert len(got) >= 3
    huge = 10**23
    assert c.get(f"/api/v1/anomalies/{huge}").status_code == 422
    assert c.get(f"/api/v1/anomalies/{huge}/workflow.svg").status_code == 422
    assert c.get("/api/v1/anomalies", params={"since": huge}).status_code == 422
    r = c.post("/api/v1/feedback", json={"id": huge, "label": "normal"})
    assert r.status_code == 422
    r = c.post("/api/v1/feedback", json={"id": got[0]["id"], "session": "nope", "label": "normal"})
    assert r.status_code == 422 and "not 'nope'" in r.json()["detail"]
    assert (
        "no anomaly 999999"
        in c.post("/api/v1/feedback", json={"id": 999999, "label": "normal"}).json()["detail"]
    )
    fids = []
    for v in got[:3]:
        r = c.post("/api/v1/feedback", json={"id": v["id"], "label": "normal"})
        assert r.status_code == 202
        fids.append(r.json()["feedback"])
    # The same feedback again is the same feedback: no second row, no second update.
    again = c.post("/api/v1/feedback", json={"id": got[0]["id"], "label": "normal"}).json()
    assert again["duplicate"] is True and again["feedback"] == fids[0]
    assert [f["id"] for f in c.get("/api/v1/feedback").json()] == fids

    def used() -> set[int]:
        return {i for m in c.get("/api/v1/models").json()["versions"] for i in m["feedback"]}

    wait_for(lambda: set(fids) <= used(), timeout=180)
    versions = {m["version"]: m for m in c.get("/api/v1/models").json()["versions"]}
    # The newest version's line of parents holds every feedback.
    chain, at = set(), max(versions)
    while at in versions:
        chain.update(versions[at]["feedback"])
        at = versions[at]["parent"]
    assert set(fids) <= chain, versions


def sessions_last_seen(lines: list[str]) -> dict[str, float]:
    """Session id -> the log time (seconds) of its last line, as the simulator writes it."""
    import re
    from datetime import datetime

    from logwarden.sim import SIM_SESSION_REGEX

    pattern = re.compile(SIM_SESSION_REGEX)
    out: dict[str, float] = {}
    for line in lines:
        m = pattern.search(line)
        if m:
            out[m.group(0)] = datetime.fromisoformat(line[:23]).timestamp()
    return out


def learnt_feedback(bundle: Path) -> tuple[list[str], int]:
    """The sessions a model version's lineage says it learnt, and how many as normal."""
    from logwarden.detect import Detector

    current = Detector.load(bundle).model.lineage_.current
    return [f.session for f in current.feedback], int(current.update["sessions_normal"])


def test_feedback_on_an_open_session_waits_for_its_close(
    sim_model: Any, serve: Any, tmp_path: Path
) -> None:
    """Feedback on an anomaly whose session is still open is learnt once the session has
    closed (here by the timeout, in log time): its lines so far are a prefix. It used to be
    recorded as used by a new version that had learnt nothing (the same weights), and
    posting it again was a duplicate: the feedback was lost. A version records exactly the
    feedback it learnt."""
    timeout = 300.0
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", repr(timeout)])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=60)
    lines = sim_model.mixed_lines
    cut = len(lines) * 2 // 5
    last_seen = sessions_last_seen(lines)
    end = max(last_seen.values())
    c.post("/api/v1/logs", content="\n".join(lines[:cut]) + "\n",
           headers={"Content-Type": "text/plain"})  # fmt: skip
    wait_for(lambda: c.get("/healthz").json()["lag_lines"] == 0)
    got = c.get("/api/v1/anomalies").json()
    # An open session that the rest of the log closes by the timeout, and a closed one.
    open_ = min((v for v in got if not v["closed"]), key=lambda v: last_seen[v["session"]])
    assert last_seen[open_["session"]] + timeout < end
    closed = next(v for v in got if v["closed"])
    r = c.post("/api/v1/feedback", json={"id": open_["id"], "label": "normal"}).json()
    assert (r["update"], r["state"]) == ("waiting", "waiting")
    fid_open = r["feedback"]
    again = c.post("/api/v1/feedback", json={"id": open_["id"], "label": "normal"}).json()
    assert again["duplicate"] is True and again["state"] == "waiting"
    r = c.post("/api/v1/feedback", json={"id": closed["id"], "label": "normal"}).json()
    assert r["update"] == "scheduled"
    fid_closed = r["feedback"]

    def versions() -> dict[int, Any]:
        return {m["version"]: m for m in c.get("/api/v1/models").json()["versions"]}

    wait_for(lambda: 2 in versions(), timeout=120)
    assert versions()[2]["feedback"] == [fid_closed]  # not the waiting one
    models = tmp_path / "v.db.models"
    assert learnt_feedback(models / "v2") == ([closed["session"]], 1)
    states = {f["id"]: (f["state"], f["used_by"]) for f in c.get("/api/v1/feedback").json()}
    assert states == {fid_open: ("waiting", None), fid_closed: ("learnt", 2)}
    # The list and the anomaly's page show the feedback given (the dashboard reads them).
    labels = {v["id"]: v["feedback_label"] for v in c.get("/api/v1/anomalies").json()}
    assert labels[open_["id"]] == labels[closed["id"]] == "normal"
    one = c.get(f"/api/v1/anomalies/{open_['id']}").json()
    assert [(f["id"], f["state"]) for f in one["feedback"]] == [(fid_open, "waiting")]
    # The rest of the log moves the log's clock on: the session closes, and is learnt.
    c.post("/api/v1/logs", content="\n".join(lines[cut:]) + "\n",
           headers={"Content-Type": "text/plain"})  # fmt: skip
    wait_for(lambda: 3 in versions(), timeout=120)
    got = versions()
    assert set(got) == {1, 2, 3} and got[3]["feedback"] == [fid_open] and got[3]["parent"] == 2
    assert learnt_feedback(models / "v3") == ([open_["session"]], 1)
    weights = "keys.safetensors"
    assert (models / "v3" / weights).read_bytes() != (models / "v2" / weights).read_bytes()
    assert c.get(f"/api/v1/anomalies/{open_['id']}").json()["closed"] is True


def test_feedback_waiting_at_a_restart_is_learnt_after_it(
    sim_model: Any, serve: Any, tmp_path: Path
) -> None:
    """Feedback still waiting for its session when the server stops is taken up by the
    next one on the same store, once the session has closed (here by a flush)."""
    store = str(tmp_path / "v.db")
    s = serve(["--model", str(sim_model.path), "--store", store])  # timeout 3600 s: all open
    c = httpx.Client(base_url=s.url, timeout=60)
    c.post("/api/v1/logs", content="\n".join(sim_model.mixed_lines) + "\n",
           headers={"Content-Type": "text/plain"})  # fmt: skip
    wait_for(lambda: c.get("/healthz").json()["lag_lines"] == 0)
    v = wait_for(lambda: c.get("/api/v1/anomalies").json())[0]
    assert v["closed"] is False
    r = c.post("/api/v1/feedback", json={"id": v["id"], "label": "normal"}).json()
    assert r["update"] == "waiting"
    s.stop()  # SIGTERM: the server closes as a user stops it
    s = serve(["--store", store])
    c = httpx.Client(base_url=s.url, timeout=60)
    fb = c.get("/api/v1/feedback").json()
    assert [(f["id"], f["state"]) for f in fb] == [(r["feedback"], "waiting")]
    assert [m["version"] for m in c.get("/api/v1/models").json()["versions"]] == [1]
    assert c.post("/api/v1/flush?wait=true").json()["done"] is True
    m = wait_for(lambda: (got := c.get("/api/v1/models").json()["versions"])[1:] and got[1])
    assert m["version"] == 2 and m["feedback"] == [r["feedback"]]
    assert learnt_feedback(tmp_path / "v.db.models" / "v2") == ([v["session"]], 1)
    assert c.get("/api/v1/feedback").json()[0]["state"] == "learnt"


def test_lines_without_ids_or_back_in_time_are_counted_and_warned_about(
    sim_model: Any, serve: Any, tmp_path: Path
) -> None:
    """What batch commands count and warn about, the service counts in /metrics and warns
    about in its status and the dashboard's banner, over the recent lines: lines without a
    session id (those at a severe level apart), log time going back further than the
    session timeout, times that cannot be read."""
    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "60"])  # fmt: skip
    c = httpx.Client(base_url=s.url, timeout=30)

    def line(t: str, level: str, text: str) -> str:
        return f"2026-03-01 {t}.000 7 {level} dfs.DataNode: {text}"

    with_ids = [line(f"00:00:{i % 60:02d}", "INFO", f"Receiving block blk_{i} of 512 bytes")
                for i in range(100)]  # fmt: skip
    no_ids = [line("00:10:00", "ERROR" if i % 3 == 0 else "INFO", f"disk {i} is full")
              for i in range(150)]  # fmt: skip
    back = [line("00:05:00", "INFO", f"Receiving block blk_{i} of 512 bytes") for i in range(30)]
    bad_time = ["2026-13-45 99:99:99.000 7 INFO dfs.DataNode: Receiving block blk_1 of 9 bytes"] * 5
    for part in (with_ids, no_ids, back, bad_time):
        r = c.post("/api/v1/logs", content="\n".join(part) + "\n",
                   headers={"Content-Type": "text/plain"})  # fmt: skip
        assert r.status_code == 202
    assert c.post("/api/v1/flush?wait=true").json()["done"] is True
    m = c.get("/metrics").text
    assert 'logwarden_bad_input_total{reason="no_session_id"} 150.0' in m
    assert "logwarden_lines_no_session_id_severe_total 50.0" in m
    assert "logwarden_lines_time_went_back_total 30.0" in m
    assert 'logwarden_bad_input_total{reason="bad_timestamp"} 5.0' in m
    for name in ("logwarden_lines_no_session_id_severe", "logwarden_lines_time_went_back"):
        assert f"# HELP {name}_total " in m and f"# TYPE {name}_total counter" in m

    def warnings() -> dict[str, Any]:
        got = c.get("/api/v1/status").json().get("input_warnings") or []
        kinds = {w["kind"]: w for w in got}
        return kinds if {"no_session_id", "time_went_back"} <= set(kinds) else {}

    got = wait_for(warnings)
    w = got["no_session_id"]
    assert (w["lines"], w["of"], w["severe"]) == (150, 285, 50)
    assert "150 of the last 285 lines hold no session id" in w["message"]
    assert "50 of them at level WARN, ERROR or FATAL" in w["message"]
    w = got["time_went_back"]
    assert (w["lines"], w["of"]) == (30, 285) and "go back in log time" in w["message"]
    assert "bad_timestamp" not in got and "unmatched_format" not in got  # 5 of 285: no warning
    # The dashboard shows them in a banner.
    assert 'id="warnings"' in c.get("/").text
    assert "s.input_warnings" in c.get("/static/app.js").text
