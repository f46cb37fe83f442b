"""One owner for a config's run state: a lease file with host, pid and a heartbeat.

Two processes training the same config would write the same backup and log
the same epochs into one MLflow run. The first takes the lease by creating
``lease.json`` exclusively (``O_EXCL``, atomic on local and NFS v3+ file
systems) and touches it every ``HEARTBEAT_S`` seconds; another process sees a
live owner and keeps out. A lease whose owner died is taken over: on the same
host, when no process has its pid *with its start time* (a pid is reused after a
reboot, and in a container the trainer is often PID 1 every time); from another
host, or a lease that names no start time, when it has had no heartbeat for
``STALE_AFTER_S``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0


START_TOLERANCE_S = 1.0  # a process's start time as read twice may differ by a clock tick


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float | None = None  # the process's start time (seconds since the epoch)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started, or None when it cannot be told (no such process, or not ours)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def this_process() -> Owner:
    return Owner(socket.gethostname(), os.getpid(), process_start_time(os.getpid()))


def is_running(owner: Owner) -> bool:
    """Whether the very process that wrote the lease runs: its pid, started when it said."""
    try:
        started = psutil.Process(owner.pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:  # another user's process, which we may not inspect: alive
        return True
    return owner.started is None or abs(started - owner.started) < START_TOLERANCE_S


class Lease:
    """The lease file at ``path``; ``acquire`` then ``release`` (or use it as a context manager)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def holder(self) -> Owner | None:
        """The live owner, or None when the lease is free or its owner is dead."""
        try:
            record = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return None
        started = record.get("started")
        owner = Owner(
            str(record.get("host")), int(record.get("pid", -1)), None if started is None else float(started)
        )
        here = owner.host == socket.gethostname()
        if here and owner.started is not None:
            return owner if is_running(owner) else None
        # Another host, or a lease from before start times were kept: its heartbeat must be fresh.
        alive = age < STALE_AFTER_S and (not here or is_running(owner))
        return owner if alive else None

    def acquire(self) -> Owner | None:
        """Take the lease; returns None when taken, else the live owner who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.holder()
                if owner is not None:
                    return owner
                self._break_stale()
                continue
            with os.fdopen(fd, "w") as handle:
                me = this_process()
                json.dump({"host": me.host, "pid": me.pid, "started": me.started}, handle)
            self._start_heartbeat()
            return None
        return self.holder() or this_process()  # lost every race: treat as held

    def _break_stale(self) -> None:
        # Renamed aside first, so of two processes breaking it at once only one removes it.
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._beat = threading.Thread(target=beat, name="cifarlab-lease", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1)
            self._beat = None
            self.path.unlink(missing_ok=True)


PROCESS_TAGS = ("process.host", "process.pid", "process.started")


def process_tags(owner: Owner | None = None) -> dict[str, str]:
    """This process (or ``owner``) as run tags, so a later command can tell whether it still runs."""
    owner = owner or this_process()
    return dict(zip(PROCESS_TAGS, (owner.host, str(owner.pid), repr(owner.started))))


def tagged_process_gone(tags: dict[str, str]) -> bool:
    """Whether the process a run's ``process.*`` tags name has ended (only ever said of this host)."""
    host, pid, started = (tags.get(key) for key in PROCESS_TAGS)
    if host != socket.gethostname() or not pid:
        return False  # another host's process: not ours to judge
    started_at = None if started in (None, "None") else float(started)
    return not is_running(Owner(host, int(pid), started_at))
