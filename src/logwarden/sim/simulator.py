"""A built-in, realistic multi-task log workload with injected, labelled anomalies.

Three kinds of task run concurrently, each execution a *session* with its own identifier:

* ``hdfs``: an HDFS block life cycle (``blk_-160899...``). The NameNode allocates the
  block, 2-3 DataNodes receive it in parallel (``Receiving`` / ``Received block ... of size
  N`` / ``PacketResponder k ... terminating`` / ``addStoredBlock``, interleaved in a
  different order every time), then maybe reads (``Served block``, a loop of 0-2), a
  verification, and a deletion (``invalidSet`` + ``Deleting block`` per replica).
* ``vm``: an OpenStack nova-compute VM life cycle (``[instance: <uuid4>]``): the resource
  claim, image creation, an optional config drive, spawning with lifecycle events racing
  the driver (``VM Started`` / ``Paused`` / ``Resumed``), ``Took 18.31 seconds to spawn
  the instance on the hypervisor.``, an optional soft reboot, then terminate, destroy,
  delete files and deallocate the network.
* ``http``: an API request (``req-<uuid4>``): token validation, one of four routes (list
  with a cache hit or a cache miss followed by 1-3 database pages with transient retries,
  show, create, delete), then the access line ``status: 200 len: 1893 time: 0.2477829``.

Every step has a log-normal duration (the elapsed time before its entry) and numeric
parameters have bounded normal ranges, so both DeepLog models have something to learn.
Lines of no session (heartbeats, resource audits, image cache checks, metadata requests)
come from periodic background sources.

Anomalies (each anomalous session has exactly one, labelled with what was injected):

* ``path``: ``missing`` (a mandatory step removed; the next line of the session is
  labelled), ``extra`` (a once-only or count-tied step repeated), ``reorder`` (a step whose
  position is fixed in every normal run swapped with its neighbour), ``error`` (an error
  message never seen in normal runs, then the session aborts). Only steps for which the
  change provably yields a key sequence no normal run can produce are used.
* ``param``: one numeric parameter set to 20-50x the *maximum* of its normal range.
* ``perf``: the elapsed time before one entry set to 15-40x that step's normal median; all
  later entries of the session shift with it. Parameters that report durations (``Took
  ... seconds``, ``time: ...``) keep their normal values, so only the elapsed time gives it
  away.

``version=2`` simulates the same system after an upgrade of its compute service: every VM
run logs a new step (``Allocating IP information in the background.``, between the claim
and the image creation) and one message is reworded (``Took N seconds to build
instance.`` becomes ``Took N seconds to build the instance.``). The anomaly kinds stay the
same; the new step is never one an anomaly removes, since a run without it is what version
1 logs. A model trained on version 1 flags every VM run of version 2: the case for online
updates from operator feedback (``logwarden feedback``).

Output is deterministic for a config: all randomness comes from one ``random.Random(seed)``
and the merge of concurrent sessions is ordered by (millisecond timestamp, creation order).
Timestamps are UTC.
"""

from __future__ import annotations

import csv
import heapq
import os
import random
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import exp
from typing import TextIO

from logwarden.errors import ConfigError

__all__ = [
    "ANOMALY_KINDS",
    "CONCURRENT_STEPS",
    "PATH_KINDS",
    "SIM_FORMAT",
    "SIM_SESSION_REGEX",
    "TASKS",
    "VERSIONS",
    "SessionTruth",
    "SimConfig",
    "SimConfigError",
    "SimulatedLog",
    "StepClassifier",
    "iter_lines",
    "simulate",
    "task_paths",
]

#: The one header format of simulated logs (loghub style; Date YYYY-MM-DD, Time HH:MM:SS.mmm).
SIM_FORMAT = "<Date> <Time> <Pid> <Level> <Component>: <Content>"

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: One capturing group: the block id, the request id, or the instance uuid of the
#: ``[instance: ...]`` marker (uuids elsewhere, e.g. in URLs, are not session ids).
SIM_SESSION_REGEX = rf"(blk_-?\d+|req-{_UUID}|(?<=\[instance: ){_UUID})"

TASKS = ("hdfs", "vm", "http")
ANOMALY_KINDS = ("path", "param", "perf")
PATH_KINDS = ("missing", "extra", "reorder", "error")
VERSIONS = (1, 2)  # 2: after an upgrade (a new VM step, a reworded message)

_START = 1772323200.0  # 2026-03-01T00:00:00Z

# Measured means per task (lines per session, seconds from first to last entry) over
# 30k normal sessions each; they turn `concurrency` into an arrival rate and `noise_rate`
# into background periods. Approximate by nature: the realised figures are close.
_MEAN_LINES = {"hdfs": 15.5, "vm": 24.7, "http": 3.67}
_MEAN_SPAN = {"hdfs": 52.0, "vm": 85.8, "http": 0.134}


class SimConfigError(ConfigError):
    """An invalid simulation configuration; the message is one line for the user."""


@dataclass
class SimConfig:
    """What to simulate; ``validate`` (called by ``simulate``) raises ``SimConfigError``."""

    seed: int = 0
    sessions: int = 2000  # number of task sessions
    anomaly_rate: float = 0.05  # fraction of sessions with an injected anomaly
    kinds: tuple[str, ...] = ANOMALY_KINDS
    path_kinds: tuple[str, ...] = PATH_KINDS
    start: float = _START  # epoch seconds of the log start (UTC)
    concurrency: float = 20.0  # mean number of sessions overlapping in time
    noise_rate: float = 0.05  # fraction of lines that belong to no session
    tasks: tuple[tuple[str, float], ...] = (("hdfs", 0.5), ("vm", 0.15), ("http", 0.35))
    perf_factor: tuple[float, float] = (15.0, 40.0)  # x the step's normal median
    param_factor: tuple[float, float] = (20.0, 50.0)  # x the parameter's normal maximum
    normal_only: bool = False  # True: no anomalies whatever anomaly_rate says (training logs)
    version: int = 1  # 2: after an upgrade (see the module docstring)

    def validate(self) -> None:
        if not isinstance(self.sessions, int) or self.sessions < 1:
            raise SimConfigError(f"sessions must be a positive integer (got {self.sessions!r})")
        if not 0.0 <= self.anomaly_rate <= 1.0:
            raise SimConfigError(f"anomaly_rate must be in [0, 1] (got {self.anomaly_rate!r})")
        bad = [k for k in self.kinds if k not in ANOMALY_KINDS]
        if bad or not self.kinds:
            raise SimConfigError(f"kinds must be a non-empty subset of {ANOMALY_KINDS}")
        bad = [k for k in self.path_kinds if k not in PATH_KINDS]
        if bad or not self.path_kinds:
            raise SimConfigError(f"path_kinds must be a non-empty subset of {PATH_KINDS}")
        if not self.concurrency > 0:
            raise SimConfigError(f"concurrency must be positive (got {self.concurrency!r})")
        if not 0.0 <= self.noise_rate < 1.0:
            raise SimConfigError(f"noise_rate must be in [0, 1) (got {self.noise_rate!r})")
        if not self.tasks or any(n not in TASKS or not w >= 0 for n, w in self.tasks):
            raise SimConfigError(f"tasks must be (name, weight >= 0) pairs, names in {TASKS}")
        if self.version not in VERSIONS:
            raise SimConfigError(f"version must be one of {VERSIONS} (got {self.version!r})")
        if not sum(w for _, w in self.tasks) > 0:
            raise SimConfigError("tasks: at least one weight must be positive")
        for name in ("perf_factor", "param_factor"):
            lo, hi = getattr(self, name)
            if not 1.0 < lo <= hi:
                raise SimConfigError(f"{name} must be (lo, hi) with 1 < lo <= hi")


@dataclass
class SessionTruth:
    """Ground truth of one session, as written to the labels CSV."""

    session: str
    label: int  # 1 = anomalous
    kind: str  # normal | path | param | perf
    detail: str  # what was injected ("" for normal sessions)


@dataclass
class SimulatedLog:
    """A simulated log with its ground truth (``lines[i]`` belongs to ``line_sessions[i]``)."""

    lines: list[str]
    sessions: list[SessionTruth]  # in order of first appearance
    line_sessions: list[tuple[str, ...]] = field(default_factory=list)  # per line
    line_labels: list[int] = field(default_factory=list)  # per line, 1 = anomalous line

    def write(
        self, log_path: str | os.PathLike[str], labels_path: str | os.PathLike[str] | None = None
    ) -> None:
        """Write the log (one line each, ``\\n``) and optionally the per-session labels CSV."""
        with open(log_path, "w", encoding="utf-8", newline="\n") as f:
            self.write_lines(f)
        if labels_path is not None:
            with open(labels_path, "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(("session", "label", "kind", "detail"))
                for s in self.sessions:
                    w.writerow((s.session, s.label, s.kind, s.detail))

    def write_lines(self, out: TextIO) -> None:
        """The log's lines to a text stream (a file, standard output), each ending ``\\n``."""
        for chunk in range(0, len(self.lines), 65536):
            out.write("\n".join(self.lines[chunk : chunk + 65536]))
            out.write("\n")


def simulate(config: SimConfig | None = None) -> SimulatedLog:
    """Generate the whole log in memory, with per-session and per-line ground truth."""
    lines: list[str] = []
    line_sessions: list[tuple[str, ...]] = []
    line_labels: list[int] = []
    sessions: list[SessionTruth] = []
    no_session: tuple[str, ...] = ()
    ids: dict[str, tuple[str, ...]] = {}
    for line, sid, mark, truth in _Generator(config or SimConfig()).run():
        lines.append(line)
        line_labels.append(mark)
        if not sid:
            line_sessions.append(no_session)
            continue
        if truth is not None:  # attached to a session's first line only
            sessions.append(truth)
            ids[sid] = (sid,)
        line_sessions.append(ids[sid])
    return SimulatedLog(lines, sessions, line_sessions, line_labels)


def iter_lines(config: SimConfig | None = None) -> Iterator[str]:
    """The same lines as ``simulate(config).lines``, streamed in bounded memory."""
    for item in _Generator(config or SimConfig()).run():
        yield item[0]


# --- steps ---------------------------------------------------------------------------------


class _Param:
    __slots__ = ("decimals", "hi", "index", "name")

    def __init__(self, index: int, name: str, hi: float, decimals: int = 0) -> None:
        self.index = index  # position in the step's args
        self.name = name
        self.hi = hi  # the normal maximum: generated values never exceed it
        self.decimals = decimals


class _Step:
    """One kind of log entry of a task: header parts and a %-format for the content.

    ``anchor``: once in every normal run, and every other key of the task is always on the
    same side of it, so swapping it with a neighbour gives an impossible order. ``req``:
    removing or repeating one such entry gives a key sequence no normal run has (a
    once-only mandatory step, or a per-replica step whose count equals the replica count).
    """

    __slots__ = ("anchor", "fmt", "head", "name", "params", "req")

    def __init__(
        self,
        name: str,
        level: str,
        component: str,
        fmt: str,
        *,
        anchor: bool = False,
        req: bool = False,
        params: tuple[_Param, ...] = (),
    ) -> None:
        self.name = name
        self.head = f" {level} {component}: "
        self.fmt = fmt
        self.anchor = anchor
        self.req = req or anchor
        self.params = params


_NN = "dfs.FSNamesystem"
_DX = "dfs.DataNode$DataXceiver"
_PR = "dfs.DataNode$PacketResponder"
_BLK_MAX = 67108864
H_ALLOC = _Step(
    "allocateBlock", "INFO", _NN, "BLOCK* NameSystem.allocateBlock: %s. %s", anchor=True
)
H_RECEIVING = _Step(
    "Receiving block", "INFO", _DX, "Receiving block %s src: /%s:%d dest: /%s:50010", req=True
)
H_RECEIVED = _Step(
    "Received block",
    "INFO",
    _PR,
    "Received block %s of size %d from /%s",
    req=True,
    params=(_Param(1, "size", _BLK_MAX),),
)
H_TERM = _Step(
    "PacketResponder terminating",
    "INFO",
    _PR,
    "PacketResponder %d for block %s terminating",
    req=True,
)
H_STORED = _Step(
    "addStoredBlock",
    "INFO",
    _NN,
    "BLOCK* NameSystem.addStoredBlock: blockMap updated: %s:50010 is added to %s size %d",
    req=True,
    params=(_Param(2, "size", _BLK_MAX),),
)
H_SERVED = _Step("Served block", "INFO", _DX, "%s:50010 Served block %s to /%s")
H_VERIFY = _Step(
    "Verification succeeded", "INFO", "dfs.DataBlockScanner", "Verification succeeded for %s"
)
H_INVALID = _Step(
    "delete (invalidSet)",
    "INFO",
    _NN,
    "BLOCK* NameSystem.delete: %s is added to invalidSet of %s:50010",
    req=True,
)
H_DELETING = _Step(
    "Deleting block",
    "INFO",
    "dfs.FSDataset",
    "Deleting block %s file /mnt/hadoop/dfs/data/current/subdir%d/%s",
    req=True,
)
H_ERRORS = (
    _Step(
        "writeBlock exception",
        "WARN",
        _DX,
        "writeBlock %s received exception java.io.IOException: Connection reset by peer",
    ),
    _Step(
        "receiveBlock exception",
        "WARN",
        _DX,
        "Exception in receiveBlock for block %s java.io.EOFException: while trying to read bytes",
    ),
    _Step(
        "PacketResponder exception",
        "ERROR",
        _PR,
        "PacketResponder for block %s Exception java.io.InterruptedIOException: Interrupted while waiting for IO on channel",
    ),
)

_CM = "nova.compute.manager"
_CC = "nova.compute.claims"
_LD = "nova.virt.libvirt.driver"
V_CLAIM = _Step(
    "Attempting claim",
    "INFO",
    _CC,
    "[instance: %s] Attempting claim: memory %d MB, disk %d GB, vcpus %d CPU",
    anchor=True,
    params=(_Param(1, "memory", 4096), _Param(2, "disk", 40), _Param(3, "vcpus", 4)),
)
V_MEM = _Step(
    "Total memory", "INFO", _CC, "[instance: %s] Total memory: 64172 MB, used: %.2f MB", anchor=True
)
V_MEMLIM = _Step(
    "memory limit",
    "INFO",
    _CC,
    "[instance: %s] memory limit: 96258.00 MB, free: %.2f MB",
    anchor=True,
)
V_DISK = _Step(
    "Total disk", "INFO", _CC, "[instance: %s] Total disk: 15 GB, used: %.2f GB", anchor=True
)
V_DISKLIM = _Step(
    "disk limit",
    "INFO",
    _CC,
    "[instance: %s] disk limit not specified, defaulting to unlimited",
    anchor=True,
)
V_VCPU = _Step(
    "Total vcpu", "INFO", _CC, "[instance: %s] Total vcpu: 16 VCPU, used: %.2f VCPU", anchor=True
)
V_VCPULIM = _Step(
    "vcpu limit",
    "INFO",
    _CC,
    "[instance: %s] vcpu limit not specified, defaulting to unlimited",
    anchor=True,
)
V_CLAIMED = _Step("Claim successful", "INFO", _CC, "[instance: %s] Claim successful", anchor=True)
V_IMAGE = _Step("Creating image", "INFO", _LD, "[instance: %s] Creating image", anchor=True)
V_CFG = _Step("Using config drive", "INFO", _LD, "[instance: %s] Using config drive")
V_CFGAT = _Step(
    "Creating config drive",
    "INFO",
    _LD,
    "[instance: %s] Creating config drive at /var/lib/nova/instances/%s/disk.config",
)
# Lifecycle messages differ in one word only: a parser may well merge them into one key,
# so they are never used for path anomalies (the injected change could vanish).
V_STARTED = _Step("VM Started", "INFO", _CM, "[instance: %s] VM Started (Lifecycle Event)")
V_PAUSED = _Step("VM Paused", "INFO", _CM, "[instance: %s] VM Paused (Lifecycle Event)")
V_RESUMED = _Step("VM Resumed", "INFO", _CM, "[instance: %s] VM Resumed (Lifecycle Event)")
V_STOPPED = _Step("VM Stopped", "INFO", _CM, "[instance: %s] VM Stopped (Lifecycle Event)")
V_SYNC = _Step(
    "sync_power_state skip",
    "INFO",
    _CM,
    "[instance: %s] During sync_power_state the instance has a pending task (spawning). Skip.",
)
V_SPAWNED = _Step(
    "Instance spawned", "INFO", _LD, "[instance: %s] Instance spawned successfully.", req=True
)
V_TOOK_SPAWN = _Step(
    "Took spawn",
    "INFO",
    _CM,
    "[instance: %s] Took %.2f seconds to spawn the instance on the hypervisor.",
    req=True,
    params=(_Param(1, "spawn seconds", 45.0, 2),),
)
V_TOOK_BUILD = _Step(
    "Took build", "INFO", _CM, "[instance: %s] Took %.2f seconds to build instance.", anchor=True
)
# Version 2 (the upgrade): a new step and the build message reworded. The new step is no
# anchor and not required: a run without it is a version-1 run, not an anomaly.
V2_ALLOC_IP = _Step(
    "Allocating IP information",
    "INFO",
    _CM,
    "[instance: %s] Allocating IP information in the background.",
)
V2_TOOK_BUILD = _Step(
    "Took build",
    "INFO",
    _CM,
    "[instance: %s] Took %.2f seconds to build the instance.",
    anchor=True,
)
V_REBOOTING = _Step("Rebooting instance", "INFO", _CM, "[instance: %s] Rebooting instance")
V_SHUTDOWN = _Step(
    "Instance shutdown",
    "INFO",
    _LD,
    "[instance: %s] Instance shutdown successfully after %d seconds.",
)
V_REBOOTED = _Step(
    "Instance soft rebooted", "INFO", _LD, "[instance: %s] Instance soft rebooted successfully."
)
V_TERMINATING = _Step(
    "Terminating instance", "INFO", _CM, "[instance: %s] Terminating instance", anchor=True
)
V_DESTROYED = _Step(
    "Instance destroyed",
    "INFO",
    _LD,
    "[instance: %s] Instance destroyed successfully.",
    anchor=True,
)
V_DELETING = _Step(
    "Deleting instance files",
    "INFO",
    _LD,
    "[instance: %s] Deleting instance files /var/lib/nova/instances/%s_del",
    anchor=True,
)
V_DELETED = _Step(
    "Deletion complete",
    "INFO",
    _LD,
    "[instance: %s] Deletion of /var/lib/nova/instances/%s_del complete",
    anchor=True,
)
V_TOOK_DESTROY = _Step(
    "Took destroy",
    "INFO",
    _CM,
    "[instance: %s] Took %.2f seconds to destroy the instance on the hypervisor.",
    anchor=True,
    params=(_Param(1, "destroy seconds", 5.0, 2),),
)
V_TOOK_DEALLOC = _Step(
    "Took deallocate",
    "INFO",
    _CM,
    "[instance: %s] Took %.2f seconds to deallocate network for instance.",
    anchor=True,
    params=(_Param(1, "deallocate seconds", 2.0, 2),),
)
V_ERRORS = (
    _Step("Instance failed to spawn", "ERROR", _CM, "[instance: %s] Instance failed to spawn"),
    _Step(
        "network allocation failed",
        "ERROR",
        _CM,
        "[instance: %s] Failed to allocate network(s): timed out waiting for vif plugging",
    ),
    _Step(
        "vm_state ERROR",
        "WARNING",
        _CM,
        "[instance: %s] Setting instance vm_state to ERROR after an unexpected hypervisor fault",
    ),
)

_CTX = "[%s %s %s - - -]"
A_AUTH = _Step(
    "Token validated",
    "INFO",
    "keystonemiddleware.auth_token",
    "[%s] Token validated for user %s project %s",
    anchor=True,
)
A_HIT = _Step(
    "cache hit",
    "INFO",
    "nova.api.cache",
    "[%s] cache hit for servers/detail of project %s",
    req=True,
)
A_MISS = _Step(
    "cache miss",
    "INFO",
    "nova.api.cache",
    "[%s] cache miss for servers/detail of project %s",
    req=True,
)
A_PAGE = _Step(
    "SELECT page",
    "INFO",
    "nova.db.api",
    "[%s] SELECT servers page %d: %d rows in %.1f ms",
    params=(_Param(2, "rows", 60),),
)
A_RETRY = _Step(
    "DB retry",
    "WARNING",
    "nova.db.api",
    "[%s] DBConnectionError: lost connection to database, retrying in %.1f s (attempt %d of 3)",
)
A_SHOW = _Step(
    "instance_get_by_uuid",
    "INFO",
    "nova.db.api",
    "[%s] instance_get_by_uuid took %.1f ms",
    req=True,
)
A_VALIDATE = _Step(
    "Validating flavor",
    "INFO",
    "nova.compute.api",
    "[%s] Validating flavor %s and image %s",
    req=True,
)
A_INSERT = _Step(
    "INSERT instances", "INFO", "nova.db.api", "[%s] INSERT instances: 1 row in %.1f ms", req=True
)
A_SOFTDEL = _Step(
    "Soft-deleting", "INFO", "nova.compute.api", "[%s] Soft-deleting instance %s", req=True
)
A_RESPONSE = _Step(
    "HTTP response",
    "INFO",
    "nova.osapi_compute.wsgi.server",
    _CTX + ' %s "%s %s HTTP/1.1" status: %d len: %d time: %.7f',
    anchor=True,
    params=(_Param(7, "len", 20000), _Param(8, "time", 3.0, 7)),
)
A_ERRORS = (
    _Step(
        "API exception",
        "ERROR",
        "nova.api.openstack.extensions",
        "[%s] Unexpected exception in API method: DBConnectionError: Lost connection to MySQL server during query",
    ),
    _Step(
        "API timeout",
        "ERROR",
        "nova.api.openstack.wsgi",
        "[%s] Request timed out waiting for a reply from conductor",
    ),
)

# Background sources: (name, relative period, pid, component).
_HOSTS = (
    ("cp-1.slowvm1.tcloud-pg0.utah.cloudlab.us", 2931),
    ("cp-2.slowvm1.tcloud-pg0.utah.cloudlab.us", 2937),
    ("cp-3.slowvm1.tcloud-pg0.utah.cloudlab.us", 2944),
)
_IMAGES = (
    "a489c868f0c37da93b76227c91bb03908ac0e742",
    "0b6d5ad3b2a8f3c36f9bb3aa6e8b3f1c0e2d4a51",
)


# --- the generator's own transition graphs (public, for workflow benchmarks) -------------

_TASK_STEPS: dict[str, tuple[_Step, ...]] = {
    "hdfs": (H_ALLOC, H_RECEIVING, H_RECEIVED, H_TERM, H_STORED, H_SERVED, H_VERIFY,
             H_INVALID, H_DELETING, *H_ERRORS),
    "vm": (V_CLAIM, V_MEM, V_MEMLIM, V_DISK, V_DISKLIM, V_VCPU, V_VCPULIM, V_CLAIMED, V_IMAGE,
           V_CFG, V_CFGAT, V_STARTED, V_PAUSED, V_RESUMED, V_STOPPED, V_SYNC, V_SPAWNED,
           V_TOOK_SPAWN, V_TOOK_BUILD, V_REBOOTING, V_SHUTDOWN, V_REBOOTED, V_TERMINATING,
           V_DESTROYED, V_DELETING, V_DELETED, V_TOOK_DESTROY, V_TOOK_DEALLOC, *V_ERRORS),
    "http": (A_AUTH, A_HIT, A_MISS, A_PAGE, A_RETRY, A_SHOW, A_VALIDATE, A_INSERT, A_SOFTDEL,
             A_RESPONSE, *A_ERRORS),
}  # fmt: skip

#: Steps of a task that run concurrently, so that their entries interleave in any order:
#: the replicas' write pipelines of a block (received, responder done, stored), and a VM's
#: lifecycle event racing the driver's own message.
CONCURRENT_STEPS: dict[str, tuple[frozenset[str], ...]] = {
    "hdfs": (frozenset({"Received block", "PacketResponder terminating", "addStoredBlock"}),),
    "vm": (frozenset({"VM Resumed", "Instance spawned"}),),
    "http": (),
}


def task_paths(task: str, sessions: int = 10000, seed: int = 0) -> Iterator[tuple[str, ...]]:
    """The step names of ``sessions`` normal executions of one task, in log order: the
    generator's own paths, before rendering and interleaving (the bigrams of these paths,
    with ``<start>`` and ``<end>``, are the task's transition graph)."""
    if task not in TASKS:
        raise SimConfigError(f"task must be one of {TASKS} (got {task!r})")
    gen = _Generator(SimConfig(seed=seed, normal_only=True))
    build = gen.task_fns[task]
    for _ in range(sessions):
        yield tuple(e[1].name for e in build()[1])


class StepClassifier:
    """Which task and step wrote a simulated line: ``classifier(line)`` gives (task, step
    name), or None for background lines and lines of no step (it matches the step's
    header and message format, so it also names the steps of injected anomalies)."""

    def __init__(self) -> None:
        spec = re.compile(r"%(?:\.\d+)?[sdf]")
        self._patterns: list[tuple[str, str, re.Pattern[str]]] = []
        for task, steps in _TASK_STEPS.items():
            for step in steps:
                body = "(.+?)".join(re.escape(part) for part in spec.split(step.fmt))
                pattern = re.compile(r"\S+ \S+ \d+" + re.escape(step.head) + body + "$")
                self._patterns.append((task, step.name, pattern))

    def __call__(self, line: str) -> tuple[str, str] | None:
        for task, name, pattern in self._patterns:
            if pattern.match(line):
                return task, name
        return None


# --- generation ----------------------------------------------------------------------------

# An event while a session is built: [t (s from session start), step, args, pid,
# perf median (s; > 0 when the step may be stretched for a perf anomaly), mark (1 =
# anomalous line)]. Lists, because anomalies edit them in place.
_Ev = list

_UUID_MASK = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))
_UUID_BITS = (0x4 << 76) | (0x2 << 62)


class _Generator:
    def __init__(self, config: SimConfig) -> None:
        config.validate()
        self.cfg = config
        rng = self.rng = random.Random(config.seed)
        self.gauss = rng.gauss

        def ip(prefixes: tuple[str, ...], n: int) -> list[str]:
            out: dict[str, None] = {}
            while len(out) < n:
                out[f"{rng.choice(prefixes)}.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}"] = (
                    None
                )
            return list(out)

        self.datanodes = ip(("10.250", "10.251"), 200)
        self.clients = ip(("10.251",), 40)
        self.api_clients = ["10.11.10.1", *ip(("10.11",), 20)]
        self.users = [f"{rng.getrandbits(128):032x}" for _ in range(8)]
        self.projects = [f"{rng.getrandbits(128):032x}" for _ in range(5)]
        self.api_pids = [25746 + i for i in range(4)]
        self.jobs = ("rand", "randtxt", "sortrand", "rand2", "randtxt3")
        self.job_stamp = datetime.fromtimestamp(config.start, UTC).strftime("%Y%m%d%H%M")

        names = [n for n, w in config.tasks if w > 0]
        weights = [w for n, w in config.tasks if w > 0]
        total = sum(weights)
        self.task_names = names
        acc = 0.0
        self.task_cum = []
        for w in weights:
            acc += w / total
            self.task_cum.append(acc)
        self.task_fns = {"hdfs": self._hdfs, "vm": self._vm, "http": self._http}
        span = sum(_MEAN_SPAN[n] * w for n, w in zip(names, weights, strict=True)) / total
        lines = sum(_MEAN_LINES[n] * w for n, w in zip(names, weights, strict=True)) / total
        self.rate = config.concurrency / span  # session arrivals per second
        self.rate_anom = 0.0 if config.normal_only else config.anomaly_rate
        self.kind_bag: list[str] = []
        # Background: each source fires periodically (+-10% jitter); the periods are set
        # so that the expected fraction of noise lines equals noise_rate.
        self.sources = [
            (self._noise_blockreport, 1.0, 1),
            (self._noise_editlog, 4.0, 1),
            (self._noise_audit, 6.0, 4),
            (self._noise_imagecache, 6.0, 3),
            (self._noise_metadata, 0.8, 1),
        ]
        self.noise_next: list[float] = []
        self.noise_period: list[float] = []
        r = config.noise_rate
        if r > 0:
            target = r / (1.0 - r) * self.rate * lines  # noise lines per second
            scale = sum(n / w for _, w, n in self.sources) / target
            for _, w, _n in self.sources:
                self.noise_period.append(w * scale)
                self.noise_next.append(config.start + rng.random() * w * scale)

    # -- helpers ------------------------------------------------------------------------

    def _ln(self, median: float, sigma: float) -> float:
        """A log-normal duration with the given median."""
        return median * exp(sigma * self.gauss(0.0, 1.0))

    def _uuid(self) -> str:
        h = "%032x" % ((self.rng.getrandbits(128) & _UUID_MASK) | _UUID_BITS)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # -- the main loop -------------------------------------------------------------------

    def run(self) -> Iterator[tuple[str, str, int, SessionTruth | None]]:
        """Yield (line, session id or "", line label, truth on a session's first line)."""
        cfg = self.cfg
        rng = self.rng
        heap: list[_Item] = []
        push = heapq.heappush
        seq = 0
        t = cfg.start
        rate = self.rate
        last_ms = 0
        stamp = _Clock().stamp
        for _ in range(cfg.sessions):
            t += rng.expovariate(rate)
            base = int(t * 1000)
            if self.noise_next:
                seq = self._noise(t, heap, seq)
            # Every later session starts at or after `base`: all queued entries up to it
            # are final, and (time, seq) orders ties by creation.
            yield from _drain(heap, base, stamp)
            sid, events, truth = self._session()
            first: SessionTruth | None = truth
            for ev in events:
                step = ev[1]
                content = step.fmt % ev[2]
                push(
                    heap,
                    (
                        base + int(ev[0] * 1000),
                        seq,
                        f"{ev[3]}{step.head}{content}",
                        sid,
                        ev[5],
                        first,
                    ),
                )
                seq += 1
                first = None
            end = base + int(events[-1][0] * 1000)
            if end > last_ms:
                last_ms = end
        if self.noise_next:
            seq = self._noise(last_ms / 1000.0, heap, seq)
        yield from _drain(heap, None, stamp)

    def _noise(self, until: float, heap: list[_Item], seq: int) -> int:
        rng = self.rng
        nxt = self.noise_next
        for i, (fn, _, _) in enumerate(self.sources):
            period = self.noise_period[i]
            while nxt[i] < until:
                t0 = nxt[i]
                for off, rest in fn():
                    heapq.heappush(heap, (int((t0 + off) * 1000), seq, rest, "", 0, None))
                    seq += 1
                nxt[i] = t0 + period * (0.9 + 0.2 * rng.random())
        return seq

    def _session(self) -> tuple[str, list[_Ev], SessionTruth]:
        rng = self.rng
        task = self.task_names[bisect_right(self.task_cum, rng.random() * self.task_cum[-1])]
        sid, events, errtail = self.task_fns[task]()
        if self.rate_anom > 0 and rng.random() < self.rate_anom:
            if not self.kind_bag:  # shuffled rounds: every kind is used, in balance
                self.kind_bag = list(self.cfg.kinds)
                rng.shuffle(self.kind_bag)
            kind = self.kind_bag.pop()
            if kind == "path":
                detail = self._inject_path(events, errtail)
            elif kind == "param":
                detail = self._inject_param(events)
            else:
                detail = self._inject_perf(events)
            return sid, events, SessionTruth(sid, 1, kind, detail)
        return sid, events, SessionTruth(sid, 0, "normal", "")

    # -- anomalies -------------------------------------------------------------------------

    def _inject_path(self, ev: list[_Ev], errtail: _ErrTail) -> str:
        rng = self.rng
        how = rng.choice(self.cfg.path_kinds)
        if how == "missing":
            # Not the last entry: the line after the gap carries the label.
            cands = [i for i in range(len(ev) - 1) if ev[i][1].req]
            i = rng.choice(cands)
            gone = ev.pop(i)
            ev[i][5] = 1
            return f"missing step '{gone[1].name}'"
        if how == "extra":
            cands = [i for i in range(len(ev)) if ev[i][1].req]
            e = ev[rng.choice(cands)]
            ev.append([e[0] + self._ln(0.02, 0.5), e[1], e[2], e[3], 0.0, 1])
            ev.sort(key=_t)
            return f"extra step '{e[1].name}' (repeated)"
        if how == "reorder":
            cands = [i for i in range(len(ev)) if ev[i][1].anchor]
            i = rng.choice(cands)
            j = i + 1 if i + 1 < len(ev) else i - 1
            a, b = ev[i], ev[j]
            a[1], b[1] = b[1], a[1]
            a[2], b[2] = b[2], a[2]
            a[3], b[3] = b[3], a[3]
            a[5] = b[5] = 1
            first, second = (a, b) if i < j else (b, a)
            return f"reordered steps: '{first[1].name}' logged before '{second[1].name}'"
        # error: an error message at some point, then the session aborts
        i = rng.randrange(len(ev) - 1) if len(ev) > 1 else 0
        step = rng.choice(errtail.steps)
        t = ev[i][0] + self._ln(0.3, 0.5)
        del ev[i + 1 :]
        ev.append([t, step, errtail.args, errtail.pid, 0.0, 1])
        if errtail.after is not None:
            ev.append(errtail.after(t))
        return f"error step '{step.name}', then abort"

    def _inject_param(self, ev: list[_Ev]) -> str:
        rng = self.rng
        cands = [(e, p) for e in ev for p in e[1].params]
        e, p = rng.choice(cands)
        lo, hi = self.cfg.param_factor
        factor = rng.uniform(lo, hi)
        args = list(e[2])
        old = args[p.index]
        new: float = p.hi * factor
        new = round(new, p.decimals) if p.decimals else int(new)
        args[p.index] = new
        e[2] = tuple(args)
        e[5] = 1
        return f"parameter '{p.name}' of step '{e[1].name}' {old} -> {new} (x{factor:.1f} its normal maximum {p.hi:g})"

    def _inject_perf(self, ev: list[_Ev]) -> str:
        rng = self.rng
        cands = [i for i in range(1, len(ev)) if ev[i][4] > 0]
        i = rng.choice(cands)
        e = ev[i]
        lo, hi = self.cfg.perf_factor
        factor = rng.uniform(lo, hi)
        gap = factor * e[4]
        delta = gap - (e[0] - ev[i - 1][0])
        if delta > 0:
            for later in ev[i:]:
                later[0] += delta
        e[5] = 1
        return f"duration of step '{e[1].name}' x{factor:.1f} (normal median {e[4]:g} s, took {gap:.2f} s)"

    # -- tasks -------------------------------------------------------------------------------

    def _hdfs(self) -> tuple[str, list[_Ev], _ErrTail]:
        rng = self.rng
        ln = self._ln
        blk = f"blk_{rng.getrandbits(64) - (1 << 63)}"
        task = rng.randrange(0, 1200)
        kind = "m" if rng.random() < 0.8 else "r"
        path = (
            f"/user/root/{rng.choice(self.jobs)}/_temporary/_task_{self.job_stamp}"
            f"_{rng.randrange(1, 40):04d}_{kind}_{task:06d}_0/part-{task:05d}"
        )
        nn_pid = 35
        ev: list[_Ev] = [[0.0, H_ALLOC, (path, blk), nn_pid, 0.0, 0]]
        r = 3 if rng.random() < 0.75 else 2
        nodes = rng.sample(self.datanodes, r)
        pids = [rng.randrange(10, 400) for _ in range(r)]
        size = _BLK_MAX if rng.random() < 0.8 else rng.randrange(4096, _BLK_MAX)
        # The write pipeline: client -> node0 -> node1 (-> node2), set up in parallel.
        srcs = [rng.choice(self.clients), *nodes[:-1]]
        starts = [ln(0.05, 0.5) for _ in range(r)]
        lead = min(starts)
        for i in range(r):
            # The first "Receiving" may be stretched: its gap is the allocate->setup time.
            perf = 0.05 if starts[i] == lead else 0.0
            args = (blk, srcs[i], rng.randrange(32768, 61000), nodes[i])
            ev.append([starts[i], H_RECEIVING, args, pids[i], perf, 0])
        t_setup = max(starts)
        transfer = ln(0.2 + 1.8 * size / _BLK_MAX, 0.3)
        done = [t_setup + transfer * exp(0.04 * self.gauss(0.0, 1.0)) for _ in range(r)]
        first_done = min(done)
        for i in range(r):
            td = done[i]
            # Full-size transfers have the largest median (2.0 s): the key's median is lower.
            perf = 2.0 if td == first_done else 0.0
            ev.append([td, H_RECEIVED, (blk, size, srcs[i]), pids[i], perf, 0])
            ev.append([td + ln(0.003, 0.5), H_TERM, (r - 1 - i, blk), pids[i], 0.0, 0])
            ev.append([td + ln(0.02, 0.5), H_STORED, (nodes[i], blk, size), nn_pid, 0.0, 0])
        ev.sort(key=_t)
        t = ev[-1][0]
        u = rng.random()
        for _ in range(0 if u < 0.6 else 1 if u < 0.85 else 2):
            t += ln(15.0, 0.5)
            node = rng.randrange(r)
            ev.append(
                [t, H_SERVED, (nodes[node], blk, rng.choice(self.clients)), pids[node], 15.0, 0]
            )
        if rng.random() < 0.2:
            t += ln(30.0, 0.4)
            ev.append([t, H_VERIFY, (blk,), rng.randrange(10, 400), 30.0, 0])
        if rng.random() < 0.5:
            t += ln(60.0, 0.4)
            perf = 60.0
            for node in nodes:
                ev.append([t, H_INVALID, (blk, node), nn_pid, perf, 0])
                perf = 0.0
                t += ln(0.002, 0.5)
            dels = []
            for i in range(r):
                sub = rng.randrange(64)
                dels.append([t + ln(2.0, 0.5), H_DELETING, (blk, sub, blk), pids[i], 0.0, 0])
            dels.sort(key=_t)
            ev.extend(dels)
        return blk, ev, _ErrTail(H_ERRORS, (blk,), pids[0])

    def _vm(self) -> tuple[str, list[_Ev], _ErrTail]:
        rng = self.rng
        ln = self._ln
        u = self._uuid()
        pid = rng.choice(_HOSTS)[1]
        mem = rng.choice((512, 1024, 2048, 2048, 4096))
        disk = rng.choice((1, 10, 20, 20, 40))
        vcpus = rng.choice((1, 1, 2, 4))
        used = 512 + 512 * rng.randrange(0, 40)
        ev: list[_Ev] = []
        t = 0.0
        for step, args in (
            (V_CLAIM, (u, mem, disk, vcpus)),
            (V_MEM, (u, float(used))),
            (V_MEMLIM, (u, 96258.0 - used)),
            (V_DISK, (u, float(rng.randrange(0, 12)))),
            (V_DISKLIM, (u,)),
            (V_VCPU, (u, float(rng.randrange(0, 12)))),
            (V_VCPULIM, (u,)),
            (V_CLAIMED, (u,)),
        ):
            ev.append([t, step, args, pid, 0.0, 0])
            t += ln(0.004, 0.4)
        upgraded = self.cfg.version >= 2
        if upgraded:  # the network is set up in the background, first
            t += ln(0.05, 0.3)
            ev.append([t, V2_ALLOC_IP, (u,), pid, 0.0, 0])
        t += ln(0.25, 0.3)
        t_img = t
        ev.append([t, V_IMAGE, (u,), pid, 0.25, 0])
        if rng.random() < 0.3:
            t += ln(0.3, 0.3)
            ev.append([t, V_CFG, (u,), pid, 0.3, 0])
            t += ln(0.4, 0.3)
            ev.append([t, V_CFGAT, (u, u), pid, 0.4, 0])
        # Spawning: the hypervisor's lifecycle events race the driver's own message.
        spawn = min(max(ln(18.0, 0.15), 10.0), 40.0)
        t_sp = t_img + spawn
        t_start = t_sp - ln(1.2, 0.3)
        ev.append([t_start, V_STARTED, (u,), pid, 18.0, 0])
        t = t_start + ln(0.05, 0.3)
        ev.append([t, V_PAUSED, (u,), pid, 0.0, 0])
        if rng.random() < 0.6:
            ev.append([t + ln(0.03, 0.3), V_SYNC, (u,), pid, 0.0, 0])
        t_res = t_sp + rng.uniform(-0.04, 0.04)
        ev.append([t_res, V_RESUMED, (u,), pid, 0.0, 0])
        ev.append([t_sp, V_SPAWNED, (u,), pid, 0.0, 0])
        t = max(t_sp, t_res) + ln(0.01, 0.3)
        ev.append([t, V_TOOK_SPAWN, (u, round(t - t_img, 2)), pid, 0.0, 0])
        if rng.random() < 0.5:
            t += ln(0.03, 0.3)
            ev.append([t, V_SYNC, (u,), pid, 0.0, 0])
            t += ln(0.02, 0.3)
            ev.append([t, V_RESUMED, (u,), pid, 0.0, 0])
        t += ln(0.5, 0.3)
        took_build = V2_TOOK_BUILD if upgraded else V_TOOK_BUILD
        ev.append([t, took_build, (u, round(t, 2)), pid, 0.5, 0])
        if rng.random() < 0.15:
            t += ln(20.0, 0.5)
            ev.append([t, V_REBOOTING, (u,), pid, 20.0, 0])
            down = ln(3.0, 0.3)
            t += down
            ev.append([t, V_SHUTDOWN, (u, max(1, round(down))), pid, 0.0, 0])
            t += ln(4.0, 0.3)
            ev.append([t, V_REBOOTED, (u,), pid, 4.0, 0])
        t += ln(45.0, 0.5)
        t_term = t
        ev.append([t, V_TERMINATING, (u,), pid, 45.0, 0])
        t += ln(0.9, 0.2)
        ev.append([t, V_DESTROYED, (u,), pid, 0.9, 0])
        t += ln(0.15, 0.3)
        ev.append([t, V_DELETING, (u, u), pid, 0.15, 0])
        t += ln(0.08, 0.3)
        ev.append([t, V_DELETED, (u, u), pid, 0.08, 0])
        t += ln(0.02, 0.3)
        ev.append([t, V_TOOK_DESTROY, (u, min(round(t - t_term, 2), 5.0)), pid, 0.0, 0])
        dealloc = min(ln(0.5, 0.2), 2.0)
        t += dealloc
        ev.append([t, V_TOOK_DEALLOC, (u, round(dealloc, 2)), pid, 0.5, 0])
        t += ln(9.0, 0.3)
        ev.append([t, V_STOPPED, (u,), pid, 9.0, 0])
        ev.sort(key=_t)
        return u, ev, _ErrTail(V_ERRORS, (u,), pid)

    def _http(self) -> tuple[str, list[_Ev], _ErrTail]:
        rng = self.rng
        ln = self._ln
        req = "req-" + self._uuid()
        user = rng.choice(self.users)
        project = rng.choice(self.projects)
        pid = rng.choice(self.api_pids)
        client = rng.choice(self.api_clients)
        ev: list[_Ev] = [[0.0, A_AUTH, (req, user, project), pid, 0.0, 0]]
        t = ln(0.05, 0.3)  # every route's first step is timed from the token check
        u = rng.random()
        if u < 0.6:
            method, path, status = "GET", f"/v2/{project}/servers/detail", 200
            if rng.random() < 0.35:
                ev.append([t, A_HIT, (req, project), pid, 0.05, 0])
                rows = rng.randrange(1, 121)
            else:
                ev.append([t, A_MISS, (req, project), pid, 0.05, 0])
                v = rng.random()
                rows = 0
                for page in range(1, 2 if v < 0.7 else 3 if v < 0.9 else 4):
                    attempt = 1
                    while attempt < 3 and rng.random() < 0.04:  # transient DB errors, retried
                        t += ln(0.08, 0.4)
                        wait = 0.5 * attempt
                        ev.append([t, A_RETRY, (req, wait, attempt), pid, 0.0, 0])
                        t += wait
                        attempt += 1
                    took = ln(0.08, 0.4)
                    t += took
                    n = rng.randrange(1, 61)
                    rows += n
                    ev.append([t, A_PAGE, (req, page, n, took * 1000.0), pid, 0.0, 0])
            length = min(300 + 35 * rows, 20000)
        elif u < 0.8:
            method, path, status = "GET", f"/v2/{project}/servers/{self._uuid()}", 200
            ev.append([t, A_SHOW, (req, ln(4.0, 0.3)), pid, 0.05, 0])
            length = int(ln(1700.0, 0.1))
        elif u < 0.9:
            method, path, status = "POST", f"/v2/{project}/servers", 202
            flavor = rng.choice(("m1.tiny", "m1.small", "m1.medium", "m1.large"))
            ev.append([t, A_VALIDATE, (req, flavor, rng.choice(_IMAGES)), pid, 0.05, 0])
            took = ln(0.1, 0.3)
            t += took
            ev.append([t, A_INSERT, (req, took * 1000.0), pid, 0.1, 0])
            length = int(ln(1500.0, 0.1))
        else:
            method, path, status = "DELETE", f"/v2/{project}/servers/{self._uuid()}", 204
            ev.append([t, A_SOFTDEL, (req, self._uuid()), pid, 0.05, 0])
            length = 0
        t += ln(0.01, 0.3)
        took_total = min(t + ln(0.002, 0.3), 3.0)
        args = (req, user, project, client, method, path, status, length, took_total)
        ev.append([t, A_RESPONSE, args, pid, 0.0, 0])

        def after(t_err: float) -> _Ev:
            t_end = t_err + ln(0.01, 0.3)
            failed = (req, user, project, client, method, path, 500, 229, min(t_end, 3.0))
            return [t_end, A_RESPONSE, failed, pid, 0.0, 0]

        return req, ev, _ErrTail(A_ERRORS, (req,), pid, after)

    # -- background sources (each returns [(offset s, "pid LEVEL component: content")]) ------

    def _noise_blockreport(self) -> list[tuple[float, str]]:
        rng = self.rng
        return [
            (
                0.0,
                f"{rng.randrange(10, 400)} INFO dfs.DataNode: BlockReport of "
                f"{rng.randrange(200, 5000)} blocks got processed in {rng.randrange(1, 40)} msecs",
            )
        ]

    def _noise_editlog(self) -> list[tuple[float, str]]:
        return [
            (0.0, f"35 INFO dfs.FSNamesystem: Roll Edit Log from {self.rng.choice(self.clients)}")
        ]

    def _noise_audit(self) -> list[tuple[float, str]]:
        rng = self.rng
        host, pid = rng.choice(_HOSTS)
        vcpus = rng.randrange(0, 12)
        ram = 512 + 512 * rng.randrange(0, 40)
        comp = f"{pid} INFO nova.compute.resource_tracker: "
        return [
            (0.0, f"{comp}Auditing locally available compute resources for node {host}"),
            (0.05, f"{comp}Total usable vcpus: 16, total allocated vcpus: {vcpus}"),
            (
                0.06,
                f"{comp}Final resource view: name={host} phys_ram=64172MB used_ram={ram}MB "
                f"phys_disk=15GB used_disk={rng.randrange(0, 12)}GB total_vcpus=16 "
                f"used_vcpus={vcpus} pci_stats=[]",
            ),
            (0.12, f"{comp}Compute_service record updated for {host}:{host}"),
        ]

    def _noise_imagecache(self) -> list[tuple[float, str]]:
        rng = self.rng
        img = rng.choice(_IMAGES)
        _, pid = rng.choice(_HOSTS)
        base = f"/var/lib/nova/instances/_base/{img}"
        comp = f"{pid} INFO nova.virt.libvirt.imagecache: "
        return [
            (0.0, f"{comp}image {img} at ({base}): checking"),
            (
                0.01,
                f"{comp}image {img} at ({base}): in use: on this node {rng.randrange(0, 6)} "
                "local, 0 on other nodes sharing this instance storage",
            ),
            (0.2, f"{comp}Active base files: {base}"),
        ]

    def _noise_metadata(self) -> list[tuple[float, str]]:
        rng = self.rng
        path = rng.choice(
            ("/openstack/2013-10-17", "/openstack/2013-10-17/meta_data.json", "/latest/meta-data/")
        )
        return [
            (
                0.0,
                f"25746 INFO nova.metadata.wsgi.server: 10.11.21.{rng.randrange(100, 200)},"
                f'10.11.10.1 "GET {path} HTTP/1.1" status: 200 len: {rng.randrange(150, 1000)} '
                f"time: {self._ln(0.01, 0.5):.7f}",
            )
        ]


class _ErrTail:
    """What an error-and-abort path anomaly needs of a task."""

    __slots__ = ("after", "args", "pid", "steps")

    def __init__(
        self,
        steps: tuple[_Step, ...],
        args: tuple[object, ...],
        pid: int,
        after: Callable[[float], _Ev] | None = None,
    ) -> None:
        self.steps = steps  # error messages (never logged in normal runs)
        self.args = args
        self.pid = pid
        self.after = after  # makes the entry that still follows the error, if any


def _t(ev: _Ev) -> float:
    return ev[0]


# A queued output line: (ms, creation seq, "pid LEVEL component: content", session id or
# "", line label, truth on the session's first line).
_Item = tuple[int, int, str, str, int, SessionTruth | None]


class _Clock:
    """Formats millisecond epochs as "YYYY-MM-DD HH:MM:SS.mmm" (UTC). Lines come out in
    time order, so caching the current second and day makes most calls one divmod."""

    __slots__ = ("date", "day", "prefix", "sec")

    def __init__(self) -> None:
        self.sec = self.day = -1
        self.date = self.prefix = ""

    def stamp(self, ms: int) -> str:
        sec, milli = divmod(ms, 1000)
        if sec != self.sec:
            self.sec = sec
            day, sod = divmod(sec, 86400)
            if day != self.day:
                self.day = day
                self.date = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
            h, rem = divmod(sod, 3600)
            m, s = divmod(rem, 60)
            self.prefix = f"{self.date} {h:02d}:{m:02d}:{s:02d}."
        return f"{self.prefix}{milli:03d}"


def _drain(
    heap: list[_Item], limit: int | None, stamp: Callable[[int], str]
) -> Iterator[tuple[str, str, int, SessionTruth | None]]:
    """Pop and render queued lines up to ``limit`` ms (all when None)."""
    pop = heapq.heappop
    while heap and (limit is None or heap[0][0] <= limit):
        ms, _, rest, sid, mark, truth = pop(heap)
        yield f"{stamp(ms)} {rest}", sid, mark, truth
