"""Ending a cifarlab command without Python's teardown.

After its last line, a process that has imported TensorFlow spends 1.5-2.5 s on 2 cores
freeing its modules object by object and running TensorFlow's C++ destructors: memory
the operating system takes back at once anyway, paid by every command and every
search worker's process. A command armed here ends with ``os._exit`` once Python has done what
exiting must do: joined the non-daemon threads and run the ``atexit`` handlers
registered after ``arm`` (MLflow's asynchronous logging queue, joblib's workers,
temporary folders). Before it, the ``before_exit`` cleanups run (the store's database
connections close, so that SQLite folds its write-ahead log into the store file and
PostgreSQL sees a clean goodbye), then the logs and the standard streams are flushed.
multiprocessing ends its forked children the same way.

Only a command that ended with an exit status leaves so; an exception that escapes it
leaves Python to print it and exit its own way.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable

_status: int | None = None
_cleanups: list[Callable[[], None]] = []


def arm() -> None:
    """From now on, a process whose command recorded its status ends without teardown.

    Call it first thing: ``atexit`` runs its handlers last-registered first, so this
    one runs after every handler registered later.
    """
    atexit.unregister(_leave)
    atexit.register(_leave)


def record_status(code: object) -> None:
    """The status the command ended with: ``sys.exit``'s argument (None is 0). A message
    instead of a number is left to Python, which prints it and exits 1."""
    global _status
    _status = 0 if code is None else code if isinstance(code, int) else None


def before_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` before a fast exit (once, however often it is added)."""
    if cleanup not in _cleanups:
        _cleanups.append(cleanup)


def _leave() -> None:
    if _status is None:
        return
    for cleanup in _cleanups:
        # The process ends either way; Python's teardown would not stop for a failure either.
        with contextlib.suppress(Exception):
            cleanup()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can reach it
            stream.flush()
    os._exit(_status)
