"""The running service: its store, its detector process, its sources and feedback.

:class:`Service` is what ``logwarden serve`` builds and the web app talks to. It owns:

* the store connection of the web side (journal writes, verdict reads);
* the detector process (``processor.run_processor``), restarted if it dies;
* the input sources besides HTTP (a followed file, Redis Streams, Kafka: ``sources``);
* feedback, and the online update of the model from it when this logwarden has one
  (``Detector.partial_fit``): a new model version is trained in the background, saved
  next to the store, and switched to by a journal row, so that a replay switches at the
  same line.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logwarden.detect import Detector
from logwarden.errors import ConfigError
from logwarden.io.sources import cut_utf8
from logwarden.records import BAD_UTF8, NUL_BYTES, TRUNCATED, Line
from logwarden.service.processor import ProcessorConfig, ring, run_processor
from logwarden.service.store import FLUSH, LINE, MODEL, Store
from logwarden.service.stream import StreamConfig

__all__ = ["LOOPBACK", "Service", "ServiceConfig", "is_loopback"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServiceConfig:
    """Settings of ``logwarden serve`` (see its ``--help``)."""

    store: str
    model: str | None = None  # the bundle of model version 1 (a new store needs it)
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # bearer token for mutating endpoints
    session_timeout: float | None = 3600.0  # log-time seconds
    max_body_bytes: int = 32 << 20
    max_line_bytes: int = 64 << 10
    durable: bool = True
    checkpoint_seconds: float = 30.0  # see ProcessorConfig
    parse_worker: bool = True  # see ProcessorConfig
    max_open: int | None = 200_000
    # Anomalies are kept this many days, those with feedback for good (None: all kept).
    retain_days: float | None = 30.0

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"binding {self.host} (not loopback) needs a token: give --token-file",
                field="token",
            )
        if self.max_body_bytes < 1 or self.max_line_bytes < 1:
            raise ConfigError("body and line limits must be positive", field="max_body_bytes")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0 to 65535 (got {self.port})", field="port")
        if self.retain_days is not None and not self.retain_days > 0:
            raise ConfigError(
                f"retain_days must be positive, or None to keep everything (got {self.retain_days})",
                field="retain_days",
            )


@dataclass
class IngestCounts:
    """Input problems found at the door (the detector counts the rest)."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.counts[reason] += n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


def to_utf8(body: bytes, content_type: str) -> bytes:
    """The body in UTF-8: as it is when the ``charset`` of ``content_type`` is UTF-8 or
    absent (bad bytes are then counted line by line), decoded from any other charset
    Python knows. No sniffing: a body of junk may start like a byte order mark, and a
    client that sends UTF-16 says so. LookupError: an unknown charset;
    UnicodeDecodeError: the body is not in it (the caller answers 415 and 400: nothing
    is stored)."""
    import codecs

    charset = None
    for part in content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    if charset is None or codecs.lookup(charset).name in ("utf-8", "ascii"):
        return body
    return body.decode(charset).encode("utf-8")


def decode_lines(
    body: bytes, max_line: int, counts: IngestCounts, *, truncate: bool = False
) -> list[str]:
    """Raw bytes -> lines: split at ``\\n`` (a ``\\r`` before it dropped), invalid UTF-8
    replaced with U+FFFD and counted, NUL bytes (binary data) likewise; a line longer than
    ``max_line`` bytes raises ValueError (the caller answers 413), or with ``truncate`` is
    cut to it at a character boundary and counted (``truncated_line``), as reading a file
    does: the brokers' and a followed file's lines have no client to refuse them to."""
    if not body:
        return []
    parts = body.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out: list[str] = []
    bad = nul = cut = 0
    for i, raw in enumerate(parts):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > max_line:
            if not truncate:
                raise ValueError(
                    f"line {i + 1} is {len(raw):,} bytes, over the limit of {max_line:,} bytes per line"
                )
            raw = cut_utf8(raw, max_line)
            cut += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            bad += 1
        if "\x00" in text:
            text = text.replace("\x00", "\ufffd")
            nul += 1
        out.append(text)
    if bad:
        counts.add("bad_utf8", bad)
    if nul:
        counts.add("nul_bytes", nul)
    if cut:
        counts.add("truncated_line", cut)
    return out


def count_flagged(lines: Iterable[Line], counts: IngestCounts) -> None:
    """Count, under ``decode_lines``' reasons, what a file reader flagged (``--follow``)."""
    seen: Counter[str] = Counter()
    for line in lines:
        if line.flags:
            for flag, reason in _FLAG_REASONS:
                if line.flags & flag:
                    seen[reason] += 1
    for reason, n in seen.items():
        counts.add(reason, n)


_FLAG_REASONS = ((BAD_UTF8, "bad_utf8"), (NUL_BYTES, "nul_bytes"), (TRUNCATED, "truncated_line"))


class Service:
    """The service behind the web app (see the module docstring)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.counts = IngestCounts()
        store_path = Path(config.store)
        self.models_dir = store_path.with_name(store_path.name + ".models")
        # This connection runs SQLite's checkpoints (the detector's does not): after a
        # commit that filled the log, copying it in the request's thread, with no SQLite
        # lock held that the detector waits for. (In a thread of its own, a checkpoint
        # seldom found the moment to start the log again, and it grew by 4 MB a second.)
        if not config.model and not Path(config.store).exists():
            # Refused before the store is created: a failed start left an empty one.
            raise ConfigError("a new store needs --model", field="model")
        self.store = Store(config.store, durable=config.durable)
        self._lock = threading.Lock()  # one journal writer at a time on this connection
        self._register_first_model()
        # The model version last asked for (a switch in the journal that the detector
        # process may not have reached): an update builds on it, not on the version the
        # detector reports, or two updates close together both built on the older one.
        self._requested = self.store.last_model_request(self.store.processed_seq())
        clear_update_files(self.models_dir)  # left by a server that was killed
        self._ctx = multiprocessing.get_context("spawn")
        self._bell_fd: int | None = None  # write end of the detector's doorbell pipe
        self._bell: Any = None
        self._proc: Any = None
        self._restarts = 0
        self._supervisor: threading.Thread | None = None
        self._closing = threading.Event()
        self.sources: list[Any] = []
        self.updater = OnlineUpdater(self)
        self.workflow = workflow_renderer()

    # -- setup ---------------------------------------------------------------------------------

    def _register_first_model(self) -> None:
        if self.store.models():
            if self.config.model:
                import sys

                print(
                    f"logwarden: {self.config.store} has its model versions already; "
                    f"--model {self.config.model} is not used",
                    file=sys.stderr,
                )
            return
        if not self.config.model:
            raise ConfigError("a new store needs --model", field="model")
        Detector.load(self.config.model)  # fails early on a bad bundle
        self.models_dir.mkdir(parents=True, exist_ok=True)
        dest = self.models_dir / "v1"
        if not dest.exists():
            shutil.copytree(self.config.model, dest)
        self.store.add_model(1, str(dest.resolve()), None, "active", f"from {self.config.model}")

    def start(self) -> None:
        """Start the detector process and its supervisor."""
        self._start_processor()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()
        self.updater.resume()

    def _start_processor(self) -> None:
        days = self.config.retain_days
        cfg = ProcessorConfig(
            self.config.store,
            StreamConfig(
                session_timeout=self.config.session_timeout, max_open=self.config.max_open
            ),
            checkpoint_seconds=self.config.checkpoint_seconds,
            parse_worker=self.config.parse_worker,
            retain_seconds=None if days is None else days * 86_400.0,
        )
        reader, writer = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=run_processor, args=(cfg, reader), daemon=True, name="logwarden-detector",
        )  # fmt: skip
        self._proc.start()
        reader.close()
        os.set_blocking(writer.fileno(), False)
        with self._lock:
            old = self._bell
            self._bell, self._bell_fd = writer, writer.fileno()
            if old is not None:
                old.close()

    def _supervise(self) -> None:
        while not self._closing.wait(0.5):
            proc = self._proc
            if proc is not None and not proc.is_alive() and not self._closing.is_set():
                self._restarts += 1
                time.sleep(min(5.0, 0.2 * self._restarts))
                if not self._closing.is_set():
                    self._start_processor()

    def close(self) -> None:
        self._closing.set()
        for s in self.sources:
            with contextlib.suppress(Exception):
                s.stop()
        with self._lock:
            if self._bell is not None:
                self._bell.close()  # end of file: the detector finishes its step and stops
                self._bell, self._bell_fd = None, None
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
        self.updater.close()
        self.store.close()

    # -- input ---------------------------------------------------------------------------------

    def append(
        self,
        lines: Sequence[str],
        batch_id: str | None = None,
        offsets: dict[str, str] | None = None,
        kind: int = LINE,
    ) -> tuple[int, int, bool]:
        with self._lock:
            got = self.store.append(
                lines, batch_id=batch_id, offsets=offsets, kind=kind, sync=False
            )
            if self._bell_fd is not None:
                ring(self._bell_fd)
        # On disk before the caller acknowledges them, outside the lock so that other
        # requests and readers go on meanwhile. The detector may have read them already: a
        # power loss that loses them loses its verdicts after them too (one log, recovered
        # as a prefix).
        self.store.sync()
        return got

    def flush(self) -> int:
        first, _, _ = self.append(["flush"], kind=FLUSH)
        return first

    def wait_processed(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processed_seq() >= seq:
                return True
            time.sleep(0.01)
        return self.processed_seq() >= seq

    def processed_seq(self) -> int:
        with self._lock:
            return self.store.processed_seq()

    def switch_model(self, version: int) -> int:
        first, _, _ = self.append([str(version)], kind=MODEL)
        self._requested = version
        return first

    # -- reading -------------------------------------------------------------------------------

    def read(self, fn: Callable[[Store], Any]) -> Any:
        with self._lock:
            return fn(self.store)

    def feedback(self, vid: int | None = None) -> list[dict[str, Any]]:
        """Feedback (``vid``: on that anomaly), each with what became of it: ``used_by``
        (the version that learnt it, or None) and ``state`` (``OnlineUpdater.state``)."""
        fb, models = self.read(lambda s: (s.feedback(vid), s.models()))
        used_by = {i: int(m["version"]) for m in models for i in m["feedback"]}
        for f in fb:
            f["used_by"] = used_by.get(f["id"])
            f["state"] = self.updater.state(f, f["used_by"])
        return fb

    def health(self) -> dict[str, Any]:
        status = self.read(lambda s: s.status())
        alive = self._proc is not None and self._proc.is_alive()
        # The position is written at every step; the status under load less often.
        last, done = self.read(lambda s: (s.last_seq(), s.processed_seq()))
        return {
            "ok": alive,
            "detector_process": "running" if alive else "down",
            "restarts": self._restarts,
            "lag_lines": max(0, last - done),
            "model_version": status.get("model_version"),
            "sources": [s.describe() for s in self.sources],
            "online_update": self.updater.available,
            "workflow": self.workflow is not None,
        }

    def latest_version(self) -> int:
        """The version the detector runs once it has read the journal to its end."""
        requested = self._requested
        return requested if requested is not None else self.current_version()

    def current_version(self) -> int:
        status = self.read(lambda s: s.status())
        v = status.get("model_version")
        if v is None:
            models = self.read(lambda s: s.models())
            return int(models[-1]["version"]) if models else 1
        return int(v)


class OnlineUpdater:
    """Feedback -> a new model version in the background (``Detector.partial_fit``).

    Feedback is learnt once its session has closed, from the session's lines the store
    keeps then: the lines of an open session are a prefix, and learning them as a whole
    normal session would teach the model that such a session may end there. Until then
    the feedback waits (its ``state`` says so); while any waits, the thread looks every
    ``poll_seconds`` for sessions that closed (by timeout or a flush; the detector process
    closes them, not this one). What waits is what no version has used, read from the
    store, so a restart picks it up too. A version is made only when something was learnt,
    and it records exactly the feedback it learnt.
    """

    def __init__(self, service: Service, poll_seconds: float = 1.0) -> None:
        self.service = service
        self.available = True  # kept in the status: clients check it
        self.poll_seconds = poll_seconds
        self._pending = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.waiting = False  # some feedback waits for its session to close
        # Feedback of closed sessions that an update was tried with: a failed update is
        # tried again when asked (submit) or when more feedback becomes ready, not at
        # every poll. Feedback whose session's lines do not read as that session (no
        # lines stored, or another session id) is never learnable, so never a reason for
        # an update: the store keeps it marked ``unusable`` (across restarts).
        self._tried: set[int] = set()

    def submit(self) -> bool:
        if not self.available:
            return False
        self._pending.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="online-update")
            self._thread.start()
        return True

    def resume(self) -> None:
        """At start: feedback that no version used (its session was open, or the server
        stopped before the update) is taken up again."""
        models = self.service.read(lambda s: s.models())
        used = {i for m in models for i in m["feedback"]}
        fb = self.service.read(lambda s: s.feedback())
        if any(f["id"] not in used and not f["unusable"] for f in fb):
            self.submit()

    def close(self) -> None:
        self._closing.set()
        self._pending.set()

    def state(self, fb: dict[str, Any], used_by: int | None) -> str:
        """What became of one feedback: ``learnt`` (by version ``used_by``), ``waiting``
        (its session is still open), ``scheduled`` (an update is due or running, or it
        failed: ``last_error``), ``unusable`` (its session's lines cannot be read back),
        ``stored`` (this logwarden has no online update)."""
        if used_by is not None:
            return "learnt"
        if not self.available:
            return "stored"
        if not fb["closed"]:
            return "waiting"
        return "unusable" if fb["unusable"] else "scheduled"

    def _run(self) -> None:
        while not self._closing.is_set():
            asked = self._pending.wait(self.poll_seconds if self.waiting else None)
            self._pending.clear()
            if self._closing.is_set():
                return
            try:
                self._update(force=asked)
            except Exception as exc:  # reported in health and the model history
                self.last_error = f"{type(exc).__name__}: {exc}"

    def _update(self, force: bool = True) -> None:
        svc = self.service
        fb = svc.read(lambda s: s.feedback())
        models = svc.read(lambda s: s.models())
        used = {i for m in models for i in m["feedback"]}
        todo = [f for f in fb if f["id"] not in used and not f["unusable"]]
        ready = [f for f in todo if f["closed"]]
        self.waiting = len(ready) < len(todo)
        ready_ids = {f["id"] for f in ready}
        if not ready or not (force or ready_ids - self._tried):
            return
        self._tried |= ready_ids
        sessions: dict[str, list[str]] = {}
        labels: dict[str, str] = {}
        for f in ready:  # oldest first: a session's latest label is the one learnt
            lines = svc.read(lambda s, f=f: s.session_lines(f["verdict"]))
            if lines:
                sessions[f["session"]] = lines
                labels[f["session"]] = f["label"]
        parent = svc.latest_version()
        det = Detector.load(svc.read(lambda s: s.model_path(parent))) if sessions else None
        learnt = update_detector(det, sessions, labels, svc.models_dir) if det else set()
        unusable = [f["id"] for f in ready if f["session"] not in learnt]
        if unusable:
            svc.read(lambda s: s.mark_unusable(unusable))
        done = [f["id"] for f in ready if f["session"] in learnt]
        if det is None or not done:  # nothing learnt: no version
            return
        version = max(m["version"] for m in models) + 1
        dest = svc.models_dir / f"v{version}"
        det.save(dest)
        svc.read(
            lambda s: s.add_model(
                version, str(dest.resolve()), parent, "active",
                f"online update from {len(done)} feedback", done,
            )
        )  # fmt: skip
        svc.switch_model(version)


_UPDATE_PREFIX = "update-"


def update_detector(
    det: Detector, sessions: dict[str, list[str]], labels: dict[str, str], workdir: Path
) -> set[str]:
    """Run ``Detector.partial_fit`` on labelled sessions given by their raw lines (the
    online update of ``logwarden.online``: ``Feedback`` records name the sessions); returns
    the ids of the sessions learnt (those the lines read back as; none: ``det`` is left as
    it was). The lines go through a file in ``workdir`` (the store's models folder: a copy
    left by a killed process is removed at the next start, see ``clear_update_files``; in
    the system's temporary folder they piled up)."""
    import tempfile

    from logwarden.online.feedback import Feedback

    workdir.mkdir(parents=True, exist_ok=True)
    prefix = f"{_UPDATE_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=workdir) as tmp:
        path = os.path.join(tmp, "feedback.log")
        with open(path, "w", encoding="utf-8") as fh:
            for lines in sessions.values():
                fh.write("\n".join(lines) + "\n")
        data = det.read([path], learn=False)
        found = set(data.ids)
        feedback = [Feedback(sid, label, who="dashboard") for sid, label in labels.items()
                    if sid in found]  # fmt: skip
        if feedback:  # an update from nothing would still make a version
            det.partial_fit(data, feedback)
        return {f.session for f in feedback}


def clear_update_files(workdir: Path) -> int:
    """Remove what online updates of processes that are gone (killed) left in
    ``workdir``; returns how many folders. A live process's (another server on the same
    store) stays."""
    n = 0
    if not workdir.is_dir():
        return 0
    for p in workdir.glob(_UPDATE_PREFIX + "*-*"):
        pid = p.name[len(_UPDATE_PREFIX) :].split("-", 1)[0]
        if not p.is_dir() or not pid.isdigit() or _pid_running(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def _pid_running(pid: int) -> bool:
    """Whether any process ``pid`` exists (not only a child of ours)."""
    if os.name == "nt":  # signal 0 would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: not ours to judge
    return True


def workflow_renderer() -> Callable[..., str]:
    """``render(verdict dict, model path) -> SVG``: the workflow picture of an anomaly with
    its divergence marked."""
    from logwarden.workflow.diagnose import Diagnosis
    from logwarden.workflow.render import diagnosis_dot, to_svg

    models: dict[str, Any] = {}

    def render(verdict: dict[str, Any], model_path: str) -> str:
        d = verdict.get("diagnosis")
        if not d or not d.get("workflow"):
            raise ValueError("this anomaly has no workflow diagnosis")
        model = models.get(model_path)
        if model is None:
            model = models[model_path] = Detector.load(model_path).model
        workflows = getattr(model, "workflows_", None)
        wf = workflows.by_name(d["workflow"]) if workflows is not None else None
        if wf is None:
            raise ValueError(f"the model has no workflow {d['workflow']!r}")
        return str(to_svg(diagnosis_dot(wf, model.templates_, Diagnosis.from_dict(d))))

    return render
