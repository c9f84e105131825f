"""Worker processes that do not outlive the process that started them.

A ``kill -9`` of ``logwarden train`` (or of the service) gives its children no chance to
stop them: a fold model in training runs on for minutes, then waits for ever on a queue
nobody reads (measured: two idle ~380 MB processes per killed ``train``). Each child calls
:func:`die_with_parent` first: on Linux the kernel kills it with its parent
(``PR_SET_PDEATHSIG``); elsewhere a daemon thread polls the parent's pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 1.0


def die_with_parent(parent: int | None = None) -> None:
    """Make this process end when its parent does. ``parent``: the pid the parent had when
    it started this process (a parent that died before this call is caught too).

    On Linux "its parent" is the thread that started it: a pool started from a thread that
    ends before the pool does loses its workers (start pools from the thread that waits
    for them, as ``fit`` does)."""
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    expected = parent if parent is not None else os.getppid()
    if os.getppid() != expected:
        os._exit(1)  # the parent is already gone: this process was reparented
    if not armed:
        threading.Thread(target=_watch, args=(expected,), daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    os._exit(1)
