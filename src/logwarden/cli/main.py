"""The ``logwarden`` command: the parser of its arguments, and errors mapped in one place.

Exit codes: 0 success, 1 runtime failure (nothing could be read, I/O errors, a bad model
bundle) or an input that could not be read (the rest was, and the work is done), 2 usage
error. Errors are one clear line on stderr; a user mistake never prints a
traceback. Each command lives in its own module with a ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Callable, Sequence

from logwarden import __version__
from logwarden.cli import (
    demo,
    detect,
    eval,
    feedback,
    models,
    parse,
    serve,
    simulate,
    train,
    workflow,
)
from logwarden.cli.common import RuntimeFailure, UsageError, err
from logwarden.errors import ConfigError, DataError, LogwardenError

COMMANDS = (parse, train, detect, eval, workflow, feedback, models, simulate, demo, serve)

# Library parameter names -> the flags users typed (ConfigError.field).
FLAGS = {
    "window": "--window-size", "top_g": "--top-g", "layers": "--layers", "hidden": "--hidden",
    "epochs": "--epochs", "target_fpr": "--target-fpr", "device": "--device",
    "confidence": "--confidence", "pos_weight": "--pos-weight", "context": "--context", "target": "--target", "ensemble": "--ensemble", "span": "--span", "folds": "--folds", "format": "--format", "session": "--session",
    "window_size": "--window", "id_pattern": "--session", "port": "--port", "input_format": "--input-format", "session_in_line": "--session-in-line", "max_templates": "--max-templates", "masks": "--mask", "bucket_seconds": "--drift-bucket",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="logwarden",
        description="DeepLog log anomaly detection: parse logs, train, detect, explain.",
    )
    p.add_argument("--version", action="version", version=f"logwarden {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    _own_usage(sub)
    return p


def _own_usage(sub: argparse._SubParsersAction) -> None:
    """Each (sub)command's parser in its namespace: unknown flags are then reported with the
    command's own usage, not the top one's (the deepest command's, for nested ones)."""
    for sp in sub.choices.values():
        sp.set_defaults(command_parser=sp)
        for action in sp._actions:
            if isinstance(action, argparse._SubParsersAction):
                _own_usage(action)


def config_message(exc: ConfigError) -> str:
    """'window must be >= 1' -> '--window-size must be >= 1': users know the flags."""
    text = str(exc)
    flag = FLAGS.get(exc.field or "")
    if flag and exc.field and text.startswith(exc.field):
        return flag + text[len(exc.field) :]
    return text


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command and map every failure to its exit code and one line on stderr."""
    try:
        rc = int(func(args))
        unread = getattr(args, "unread_inputs", 0)
        if rc == 0 and unread:
            err(f"{unread:,} input(s) could not be read (above); the rest was read")
            return 1
        return rc
    except UsageError as exc:
        err(str(exc))
        return 2
    except ConfigError as exc:
        err(config_message(exc))
        return 2
    except DataError as exc:
        err(str(exc))
        return 2
    except (RuntimeFailure, LogwardenError) as exc:  # bundles, states, unfitted models
        err(str(exc))
        return 1
    except BrokenPipeError:
        # The reader stopped early (| head): nothing more to say, and nothing left to flush
        # at exit (Python would print a second error for the lost output).
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        err(str(exc))
        return 1
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    finally:
        gc.unfreeze()


#: glibc's allocator gives a freed block of 128 KB or more back to the system at once (the
#: bound then grows only as such blocks are freed), so NumPy's large temporaries (a gate
#: matrix, a column) cost fresh zeroed pages, a page fault each 4 KB, every time they are
#: made. Blocks below MMAP_THRESHOLD come from the heap instead, and up to TRIM_THRESHOLD
#: of freed heap is kept for reuse: 3% less CPU for ``eval`` on 1M HDFS lines and 4% less
#: wall time for ``detect`` on the DeepLog split (2 cores). Commands that run and end
#: only: a service runs for weeks, and blocks kept in the heap can fragment it where
#: returned ones cannot; the library leaves the allocator of programs that import it alone.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds (see ``MMAP_THRESHOLD``); False where the C
    library is not glibc (musl, macOS) and nothing was changed."""
    from logwarden.heap import set_heap_thresholds

    return set_heap_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)


def long_running(args: argparse.Namespace) -> bool:
    """Whether the command serves until stopped (``serve``, ``demo --serve``)."""
    return args.command == "serve" or bool(getattr(args, "serve", False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            where = getattr(args, "command_parser", None) or parser
            where.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0) if exc.code in (0, None) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if not long_running(args):
        tune_allocator()
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
