"""Signals that stop a run: SIGTERM (what ``kill`` and SLURM send) handled like Ctrl-C.

Python turns SIGINT into KeyboardInterrupt; ``stop_on_sigterm`` makes SIGTERM
raise ``Terminated``, a KeyboardInterrupt too, so the same path ends the MLflow
run KILLED and the CLI closes with one line and the shell's exit code.

While TensorFlow works, a handler must not raise where the signal lands: TensorFlow's
C++ calls back into Python (a shape's ``__len__`` in an eager op), and an exception
raised there was dropped (TensorFlow retried the op another way and the run trained
on to the end) or, once in CI, crashed the process (SIGSEGV). ``signals_deferred``
keeps the signal until the next safe point (``stop_if_signalled``: a Keras batch's
end) and raises it there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Handler = Callable[[int, Any], Any]

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report
# A SIGTERM again this soon is the first one from a second sender, not a wish to stop at once: SLURM
# signals every process of a job step (a worker's search and the task that waits on it), and a
# task whose job is preempted passes a SIGTERM of its own to its search as it ends.
SAME_SIGTERM_S = 2.0


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
def sigint_raises() -> Iterator[None]:
    """In the block, SIGINT raises KeyboardInterrupt in the main thread even where the process
    started with it ignored or blocked: a command a script runs in the background (``cmd &``)
    ignores SIGINT, and a watch that interrupts the main thread with it would never be heard.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    unset = previous in (signal.SIG_IGN, signal.SIG_DFL)
    if unset:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    was_blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if was_blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        if unset:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def signals_held(held: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT and SIGTERM (or ``held``) for the block (ending a run), then act on the first
    one that came.

    A signal landing inside ``mlflow.end_run`` (which waits for the system-metrics
    thread before it writes the status) would leave the run RUNNING. Outside the
    main thread, where handlers cannot be set, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda s, _f: arrived.append(s)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # its own handler now: Terminated, Ctrl-C or the default


def signal_of(err: KeyboardInterrupt) -> signal.Signals:
    """The signal behind a KeyboardInterrupt: SIGTERM for ``Terminated``, else Ctrl-C's SIGINT."""
    return signal.Signals(getattr(err, "signum", signal.SIGINT))


def describe_interrupt(err: KeyboardInterrupt, resumes: bool = True, sweep: bool = False) -> tuple[str, int]:
    """The closing line and exit code for a run stopped by a signal; ``resumes``: a rerun of the
    command resumes the run (a training) rather than doing it again (an evaluation); ``sweep``:
    the command was a sweep, whose runs (in other processes, maybe) ended KILLED."""
    signum = signal_of(err)
    run_id = getattr(err, "run_id", None)
    rerun = "resume it" if resumes else "do it again"
    if run_id:
        what = f"run {run_id} ended KILLED; rerun the same command to {rerun}"
    elif sweep:
        what = "the sweep's runs ended KILLED; rerun the same command to resume it"
    else:  # a command may say what it finished before the signal acted
        what = getattr(err, "done", None) or "nothing was recorded"
    return f"stopped by {signum.name}; {what}", EXIT_CODES[signum]


class _Deferral:
    """The signals that arrived during a ``signals_deferred`` block, and the handlers to act on them."""

    def __init__(self, handlers: dict[int, Handler], until: str) -> None:
        self.handlers = handlers
        self.until = until
        self.pending: int | None = None
        self.arrived = 0
        self.first_at = 0.0

    def keep(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM == self.pending and time.monotonic() - self.first_at < SAME_SIGTERM_S:
            return
        self.arrived += 1
        self.first_at = self.first_at or time.monotonic()
        if self.arrived > 1:  # a second Ctrl-C or SIGTERM: stop at once, as users expect
            self.pending = None
            self.handlers[signum](signum, frame)
        else:
            self.pending = signum
            name = signal.Signals(signum).name
            _say(f"cifarlab: {name}: stopping after {self.until}; {name} again stops at once")

    def act(self) -> None:
        signum, self.pending = self.pending, None
        if signum is not None:
            self.handlers[signum](signum, None)


_deferrals: list[_Deferral] = []


def _say(line: str) -> None:
    # os.write, not print: a print here could land inside a print of the main thread's.
    with contextlib.suppress(OSError):
        os.write(2, f"{line}\n".encode())


@contextmanager
def signals_deferred(until: str = "this batch") -> Iterator[None]:
    """Keep SIGINT and SIGTERM until ``stop_if_signalled`` (or the block's end) acts on the first;
    the user is told the command is stopping after ``until``.

    Only signals with a Python handler are kept (Ctrl-C's KeyboardInterrupt,
    ``stop_on_sigterm``'s, a sweep's); their handler runs at the safe point, so it
    raises what it always raised. A second signal acts at once. Outside the main
    thread, where handlers cannot be set, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    deferral = _Deferral({signum: handler for signum, handler in ours.items() if callable(handler)}, until)
    for signum in deferral.handlers:
        signal.signal(signum, deferral.keep)
    _deferrals.append(deferral)
    try:
        yield
    except BaseException:
        deferral.pending = None  # the block failed: its own error, not the kept signal, says why
        raise
    finally:
        _deferrals.remove(deferral)
        for signum, handler in deferral.handlers.items():
            signal.signal(signum, handler)
        deferral.act()


def stop_if_signalled() -> None:
    """At a safe point: raise (through its own handler) a signal that ``signals_deferred`` kept.

    Only in the main thread, whose block kept it (a trial trained in another thread goes on)."""
    if _deferrals and threading.current_thread() is threading.main_thread():
        _deferrals[-1].act()
