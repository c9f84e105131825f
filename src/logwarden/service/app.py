"""The HTTP API and dashboard of the service (FastAPI).

Endpoints (``/api/v1``): ``POST logs`` (text/plain lines, UTF-8 or the ``charset`` the
Content-Type names; 202 ``{"accepted": n}`` once they are committed to the store), ``GET
anomalies`` (``since``, ``limit``), ``GET anomalies/{id}`` (one verdict with its session's
lines and feedback), ``POST flush``,
``POST feedback`` (``{"session": ID, "label": "normal" | "confirmed"}``; learnt once the
session has closed), ``GET feedback`` (each with its ``state``), ``GET models``,
``GET status``, ``GET templates``; ``GET /metrics`` (Prometheus), ``GET /healthz``, and
``GET /`` (the dashboard). Mutating endpoints need ``Authorization: Bearer <token>`` when
the service has a token. Bodies over ``max_body_bytes`` and lines over
``max_line_bytes`` are refused with 413 and a message saying which limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from logwarden.service.server import Service, decode_lines, to_utf8
from logwarden.service.store import BATCH_DIGEST_SEP, BatchConflict

__all__ = ["create_app"]

LABELS = ("normal", "confirmed")
_MAX_ID = 2**63 - 1  # SQLite integers: a larger id is none, not a server error


class _Metrics:
    """A Prometheus collector over the service's state (read at scrape time)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        svc = self.service
        status: dict[str, Any] = svc.read(lambda s: s.status())
        stats: dict[str, int] = status.get("stats", {})
        c = CounterMetricFamily("logwarden_lines", "Log lines processed by the detector")
        c.add_metric([], stats.get("lines", 0))
        yield c
        last, done = svc.read(lambda s: (s.last_seq(), s.processed_seq()))
        g = GaugeMetricFamily("logwarden_lag_lines", "Accepted lines not processed yet")
        g.add_metric([], max(0, last - done))
        yield g
        g = GaugeMetricFamily("logwarden_sessions_open", "Sessions open in the detector")
        g.add_metric([], status.get("open_sessions", 0))
        yield g
        c = CounterMetricFamily("logwarden_sessions_closed", "Sessions closed and judged")
        c.add_metric([], status.get("sessions_closed", 0))
        yield c
        counts, expired = svc.read(lambda s: (s.anomaly_counts(), s.expired_count()))
        c = CounterMetricFamily(
            "logwarden_anomalies", "Anomalous sessions reported", labels=["reason", "detector"]
        )
        for (reason, detector), n in sorted(counts.items()):
            c.add_metric([reason, detector], n)
        yield c
        c = CounterMetricFamily(
            "logwarden_verdicts_expired",
            "Anomalies deleted from the store after the retention (--retain-days)",
        )
        c.add_metric([], expired)
        yield c
        lat = status.get("latency")
        h = HistogramMetricFamily(
            "logwarden_verdict_latency_seconds",
            "From acknowledging a line to storing the verdict it raised (entry-level anomalies)",
        )
        if lat:
            cum = 0
            buckets = []
            for bound, n in zip([*lat["buckets"], float("inf")], lat["counts"], strict=True):
                cum += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cum))
            h.add_metric([], buckets, lat["sum"])
        yield h
        g = GaugeMetricFamily("logwarden_model_version", "Model version in use")
        g.add_metric([], status.get("model_version", 0) or 0)
        yield g
        bad = CounterMetricFamily(
            "logwarden_bad_input", "Input lines skipped or altered, by reason", labels=["reason"]
        )
        for reason, n in sorted(svc.counts.snapshot().items()):
            bad.add_metric([reason], n)
        for reason in ("unmatched_format", "empty_line", "no_session_id", "bad_timestamp",
                       "evicted_session"):  # fmt: skip
            if stats.get(reason):
                bad.add_metric([reason], stats[reason])
        yield bad
        for count, name, text in _LINE_COUNTERS:
            c = CounterMetricFamily(name, text)
            c.add_metric([], stats.get(count, 0))
            yield c
        g = GaugeMetricFamily("logwarden_new_templates", "Templates of lines the model never saw")
        g.add_metric([], status.get("new_templates", 0))
        yield g
        drift = status.get("drift")
        if isinstance(drift, dict) and "n_warnings" in drift:
            c = CounterMetricFamily("logwarden_drift_warnings", "Drift warnings raised")
            c.add_metric([], int(drift["n_warnings"]))
            yield c


# Counts of lines read but not judged, or read oddly, always shown (0 too): the stream's
# count, the metric's name, its help text.
_LINE_COUNTERS = (
    (
        "no_session_id_severe",
        "logwarden_lines_no_session_id_severe",
        "Lines without a session id (not judged: bad_input no_session_id) at level WARN, "
        "ERROR or FATAL (the format's Level field)",
    ),
    (
        "time_went_back",
        "logwarden_lines_time_went_back",
        "Lines whose log time lies further back than the session timeout (or an hour) "
        "before the latest time read: separate runs or sources out of order",
    ),
)


def create_app(service: Service) -> FastAPI:
    """The FastAPI app over a started :class:`Service`."""
    cfg = service.config
    app = FastAPI(title="logwarden", version="1", docs_url="/api/docs", redoc_url=None)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Metrics(service))  # type: ignore[arg-type]
    token = cfg.token

    def authorized(request: Request) -> None:
        if token is None:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(value.strip(), token):
            raise HTTPException(
                401, "the bearer token is not this server's", headers={"WWW-Authenticate": "Bearer"}
            )

    async def body_of(request: Request) -> bytes:
        limit = cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"request body over the limit of {limit:,} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"request body over the limit of {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/api/v1/logs", status_code=202, dependencies=[Depends(authorized)])
    async def post_logs(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
        if ctype not in ("text/plain", "application/octet-stream", ""):
            raise HTTPException(415, "send log lines as text/plain, one per line")
        body = await body_of(request)
        try:
            body = to_utf8(body, request.headers.get("content-type", ""))
        except LookupError:
            raise HTTPException(415, "unknown charset in Content-Type") from None
        except UnicodeDecodeError as exc:
            raise HTTPException(
                400, f"the body is not valid {exc.encoding} (byte {exc.start:,}); nothing stored"
            ) from None
        try:
            lines = decode_lines(body, cfg.max_line_bytes, service.counts)
        except ValueError as exc:
            service.counts.add("line_too_long")
            raise HTTPException(413, str(exc)) from None
        key = request.headers.get("idempotency-key") or None
        if key is not None and len(key) > 200:
            raise HTTPException(400, "Idempotency-Key is longer than 200 characters")
        batch_id = None
        if key is not None:  # the key and its lines: the same key with other lines is a 409
            digest = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass"))
            batch_id = key + BATCH_DIGEST_SEP + digest.hexdigest()[:32]
        try:
            first, last, new = await run_in_threadpool(service.append, lines, batch_id)
        except BatchConflict:
            raise HTTPException(
                409, "this Idempotency-Key was used with other lines; nothing stored"
            ) from None
        out: dict[str, Any] = {"accepted": len(lines) if new else last - first + 1 if last else 0}
        if lines or not new:
            out["first_seq"], out["last_seq"] = first, last
        if not new:
            out["duplicate"] = True
        return JSONResponse(out, status_code=202)

    @app.get("/api/v1/anomalies")
    async def anomalies(
        since: int = Query(0, ge=0, le=_MAX_ID), limit: int | None = Query(None, ge=1, le=100_000)
    ) -> list[dict[str, Any]]:
        return await run_in_threadpool(service.read, lambda s: s.anomalies(since, limit))  # type: ignore[no-any-return]

    @app.get("/api/v1/anomalies/{vid}")
    async def anomaly(vid: int = FastPath(ge=0, le=_MAX_ID)) -> dict[str, Any]:
        def get(s: Any) -> dict[str, Any] | None:
            v = s.verdict(vid)
            if v is None:
                return None
            v["session_lines"] = s.session_lines(vid)
            return v  # type: ignore[no-any-return]

        got = await run_in_threadpool(service.read, get)
        if got is None:
            raise HTTPException(404, f"no anomaly {vid}")
        got["feedback"] = await run_in_threadpool(service.feedback, vid)
        has = service.workflow is not None and bool((got.get("diagnosis") or {}).get("workflow"))
        got["workflow_svg"] = f"/api/v1/anomalies/{vid}/workflow.svg" if has else None
        return got  # type: ignore[no-any-return]

    @app.get("/api/v1/anomalies/{vid}/workflow.svg")
    async def workflow_svg(vid: int = FastPath(ge=0, le=_MAX_ID)) -> Response:
        if service.workflow is None:
            raise HTTPException(404, "this logwarden has no workflow diagnosis")
        v = await run_in_threadpool(service.read, lambda s: s.verdict(vid))
        if v is None:
            raise HTTPException(404, f"no anomaly {vid}")
        path = await run_in_threadpool(
            service.read, lambda s: s.model_path(int(v.get("model_version") or 1))
        )
        try:
            svg = await run_in_threadpool(service.workflow, v, path)
        except Exception as exc:  # a picture that cannot be drawn is not a server error
            raise HTTPException(404, f"no workflow picture for this verdict: {exc}") from None
        return Response(svg, media_type="image/svg+xml")

    @app.post("/api/v1/flush", status_code=202, dependencies=[Depends(authorized)])
    async def flush(wait: bool = False) -> dict[str, Any]:
        seq = await run_in_threadpool(service.flush)
        done = await run_in_threadpool(service.wait_processed, seq, 30.0) if wait else False
        return {"flush": seq, "done": done}

    @app.post("/api/v1/feedback", status_code=202, dependencies=[Depends(authorized)])
    async def feedback(request: Request) -> dict[str, Any]:
        raw = await body_of(request)
        try:
            doc = json.loads(raw or b"null")
        except ValueError:
            raise HTTPException(400, "send a JSON object: {session, label}") from None
        if not isinstance(doc, dict):
            raise HTTPException(400, "send a JSON object: {session, label}")
        label = doc.get("label")
        if label not in LABELS:
            raise HTTPException(422, f"label must be one of {', '.join(LABELS)}")
        vid = doc.get("id")
        session = doc.get("session")
        if vid is not None:
            if not isinstance(vid, int) or isinstance(vid, bool) or not 0 <= vid <= _MAX_ID:
                raise HTTPException(422, "id must be an anomaly id (an integer >= 0)")
            v = await run_in_threadpool(service.read, lambda s: s.verdict(vid))
            if v is not None and session not in (None, v["session"]):
                raise HTTPException(
                    422, f"anomaly {vid} is of session {v['session']!r}, not {session!r}"
                )
        elif isinstance(session, str) and session:
            v = await run_in_threadpool(service.read, lambda s: s.verdict_of_session(session))
        else:
            raise HTTPException(422, "give the session id (or the anomaly id)")
        if v is None:
            raise HTTPException(
                404,
                f"no anomaly {vid}" if vid is not None else "no anomaly reported for that session",
            )
        version = service.current_version()
        last = await run_in_threadpool(service.read, lambda s: s.last_feedback(v["id"]))
        if last is not None and last[1] == label:  # said already: no second update
            return {"feedback": last[0], "anomaly": v["id"], "session": v["session"],
                    "label": label, "update": "none", "duplicate": True,
                    "state": await feedback_state(v["id"], last[0]),
                    "model_version": version}  # fmt: skip
        fid = await run_in_threadpool(
            service.read, lambda s: s.add_feedback(v["id"], v["session"], label, version)
        )
        if fid is None:
            raise HTTPException(404, "that anomaly has expired from the store (--retain-days)")
        update = "unavailable"
        if service.updater.submit():
            # An open session's lines are a prefix: it is learnt once it has closed.
            update = "scheduled" if v["closed"] else "waiting"
        return {"feedback": fid, "anomaly": v["id"], "session": v["session"], "label": label,
                "update": update, "state": await feedback_state(v["id"], fid),
                "model_version": version}  # fmt: skip

    async def feedback_state(vid: int, fid: int) -> str:
        fb = await run_in_threadpool(service.feedback, vid)
        return next((str(f["state"]) for f in fb if f["id"] == fid), "stored")

    @app.get("/api/v1/feedback")
    async def feedback_list() -> list[dict[str, Any]]:
        return await run_in_threadpool(service.feedback)

    @app.get("/api/v1/models")
    async def models() -> dict[str, Any]:
        rows = await run_in_threadpool(service.read, lambda s: s.models())
        return {
            "current": service.current_version(),
            "versions": [{k: v for k, v in m.items() if k != "path"} for m in rows],
            "online_update": service.updater.available,
            "last_error": service.updater.last_error,
        }

    @app.get("/api/v1/status")
    async def status() -> dict[str, Any]:
        st = await run_in_threadpool(service.read, lambda s: s.status())
        return {**st, "ingest": service.counts.snapshot(), **service.health()}

    @app.get("/api/v1/templates")
    async def templates() -> dict[str, Any]:
        st = await run_in_threadpool(service.read, lambda s: s.status())
        return {"new": st.get("new_templates", 0), "latest": st.get("new_template_texts", {})}

    @app.get("/api/v1/drift")
    async def drift() -> dict[str, Any]:
        st = await run_in_threadpool(service.read, lambda s: s.status())
        d = st.get("drift")
        return {"available": d is not None, "drift": d}

    @app.get("/metrics")
    async def metrics() -> Response:
        data = await run_in_threadpool(generate_latest, registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        h = await run_in_threadpool(service.health)
        return JSONResponse(h, status_code=200 if h["ok"] else 503)

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        page = resources.files("logwarden.service").joinpath("static/index.html").read_text()
        return HTMLResponse(page)

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in ("app.js", "style.css"):
            raise HTTPException(404, "not found")
        text = resources.files("logwarden.service").joinpath(f"static/{name}").read_text()
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(text, media_type=kind)

    return app
