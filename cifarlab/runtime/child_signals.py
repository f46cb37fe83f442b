"""Ctrl-C and SIGTERM between a process and the children it waits on.

``subprocess.run`` SIGKILLs its child 0.25 s after a Ctrl-C, and submitit's local
controller its tasks 1 s after one: too soon for a training to end its run at a batch's
end, so the run was left RUNNING. A waiting process instead passes the first signal on
(``forwarding``) and waits; children it starts in its own session hear only that one,
and end with it (``ends_with_parent``) rather than train on unwatched.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cifarlab.runtime.interrupts import signals_held


class Forwarder:
    """Keeps the first signal that arrives and sends it to the child once there is one."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.first: int | None = None
        self.sent = False

    def receive(self, signum: int, frame: Any) -> None:
        if self.first is None:  # later ones dropped: a second would make the child stop at once
            self.first = signum
            self._send()

    def to(self, child: subprocess.Popen) -> None:
        """From now on (and for a signal already kept), signals go to ``child``."""
        self.child = child
        self._send()

    def end_child(self, grace_s: float) -> None:
        """The waiting itself was cut short (an exception): SIGTERM the child unless it already got
        a signal, give it ``grace_s`` to end its run, then kill it."""
        child = self.child
        if child is None or child.poll() is not None:
            return
        with signals_held():  # a signal between the check and the send would be a second one
            if not self.sent:
                self.sent = True
                child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _send(self) -> None:
        if self.child is not None and self.first is not None and not self.sent:
            self.sent = True
            self.child.send_signal(self.first)


@contextmanager
def forwarding(signums: Sequence[int]) -> Iterator[Forwarder]:
    """In the block, the first of ``signums`` this process gets goes to the forwarder's child.

    A child started inside the block starts with those signals at their defaults: a handler,
    unlike an ignored signal, does not pass to it. Outside the main thread, nothing is set.
    """
    forwarder = Forwarder()
    if threading.current_thread() is not threading.main_thread():
        yield forwarder
        return
    previous = {signum: signal.signal(signum, forwarder.receive) for signum in signums}
    try:
        yield forwarder
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def children_deaf_to_ctrl_c() -> Iterator[None]:
    """Processes started in the block never hear the terminal's Ctrl-C: SIGINT is blocked here,
    and a blocked signal stays blocked through fork and exec (one that wants it back calls
    :func:`hear_ctrl_c`). A Ctrl-C to this process in the block acts as the block ends, once
    what the block started exists and can be stopped. (Ignoring SIGINT instead, which children
    inherit too, lost that Ctrl-C.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []  # taken by another thread, where SIGINT is not blocked
    previous = signal.signal(signal.SIGINT, lambda s, _f: arrived.append(s))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        try:  # the handler restored, a Ctrl-C another thread takes may raise at once: unblock anyway
            signal.signal(signal.SIGINT, previous)
            if arrived:
                signal.raise_signal(signal.SIGINT)  # pending here while blocked: at most one Ctrl-C
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is delivered now


def hear_ctrl_c() -> None:
    """Unblock SIGINT in a process started by :func:`children_deaf_to_ctrl_c`'s block; one
    already sent to it is delivered now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def ends_with_parent(ignored: Sequence[int] = ()) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when this process dies, whatever kills it (a closed
    terminal's SIGHUP, SIGKILL; Linux only), and ignores the ``ignored`` signals (meant for its
    parent, such as a scheduler's warning that time is nearly up)."""
    parent = os.getpid()
    prctl = getattr(ctypes.CDLL(None), "prctl", None)  # looked up here: after fork, only the call

    def arrange() -> None:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)  # an ignored signal stays ignored through exec
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took hold
            os._exit(143)

    return arrange
