"""glibc's heap, set from Python: where the C library is glibc, how large a block must be
to get pages of its own (mmap) and how much free memory the heap keeps; elsewhere (musl,
macOS) nothing is changed. The batch commands (``cli.main``) and the service's detector
process (``service.processor``) choose their own bounds. And Python's own heap: the cyclic
collector off while millions of small objects are built (``no_cycle_collection``)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["glibc_function", "heap_trimmer", "no_cycle_collection", "set_heap_thresholds"]


@contextlib.contextmanager
def no_cycle_collection(freeze: bool = False) -> Iterator[None]:
    """The cyclic collector off inside (a ``with`` block or a decorated function): reading
    and scoring build millions of small objects, none in a reference cycle, which it would
    rescan over and over (40% of a read's time; a third of a Ray owner's). ``freeze``: what
    was built lives on (sessions until the command ends, an owner's table), never to be
    scanned again; ``cli.main`` unfreezes when a command returns."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


# mallopt's parameters (<malloc.h>): blocks from M_MMAP_THRESHOLD bytes on get pages of
# their own; free memory above M_TRIM_THRESHOLD at the top of the heap goes back at once.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def glibc_function(name: str, argtypes: list[Any]) -> Any:
    """A function of glibc returning an int, or None (musl, macOS: nothing to call).
    Loaded by its soname, as ``children.die_with_parent`` loads it (find_library would
    run ldconfig in a subprocess at every start)."""
    try:
        fn = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


def set_heap_thresholds(mmap_bytes: int, trim_bytes: int) -> bool:
    """Fix glibc's mmap and trim thresholds (glibc otherwise raises its mmap bound by
    itself, up to 32 MB, as large blocks are freed); False where there is no glibc."""
    mallopt = glibc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_bytes)
    )


def heap_trimmer() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere): it gives the free pages inside the C
    heap back to the system. Freed memory otherwise stays mapped after a step that needed
    much of it (measured on a simulated stream: 13 MB after a 5,000-line step, 24 MB
    after a 20,000-line one, about a millisecond a call)."""
    return glibc_function("malloc_trim", [ctypes.c_size_t])  # type: ignore[no-any-return]
