"""Signals that stop a run: SIGTERM (what ``kill`` and SLURM send) handled like Ctrl-C.

Python turns SIGINT into KeyboardInterrupt; ``stop_on_sigterm`` makes SIGTERM
raise ``Terminated``, a KeyboardInterrupt too, so the same path ends the MLflow
run KILLED and the CLI closes with one line and the shell's exit code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""

    signum = signal.SIGTERM


def stop_on_sigterm(replace: bool = False) -> None:
    """From now on SIGTERM raises Terminated in the main thread (unless someone else handles it).

    ``replace`` takes SIGTERM over from a handler already there: submitit's, in a
    SLURM job, only logs it, and SLURM kills the job with SIGKILL 30 s later.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if replace or signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def terminate(signum: int, frame: Any) -> None:
            raise Terminated(f"stopped by {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, terminate)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (ending a run), then act on the first one that came.

    A signal landing inside ``mlflow.end_run`` (which waits for the system-metrics
    thread before it writes the status) would leave the run RUNNING. Outside the
    main thread, where handlers cannot be set, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda s, _f: arrived.append(s)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # its own handler now: Terminated, Ctrl-C or the default


def describe_interrupt(err: KeyboardInterrupt) -> tuple[str, int]:
    """The closing line and exit code for a run stopped by a signal."""
    signum = getattr(err, "signum", signal.SIGINT)
    run_id = getattr(err, "run_id", None)
    what = (
        f"run {run_id} ended KILLED; rerun the same command to resume it"
        if run_id
        else "nothing was recorded"
    )
    return f"stopped by {signal.Signals(signum).name}; {what}", EXIT_CODES[signum]
