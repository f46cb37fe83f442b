"""One owner for a config's run state: a lease file with host, pid and a heartbeat.

Two processes training the same config would write the same backup and log
the same epochs into one MLflow run. The first takes the lease by creating
``lease.json`` exclusively (``O_EXCL``, atomic on local and NFS v3+ file
systems) and touches it every ``HEARTBEAT_S`` seconds; another process sees a
live owner and keeps out. A lease whose owner died (its pid gone on the same
host, or no heartbeat for ``STALE_AFTER_S`` from another host) is taken over.
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

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def this_process() -> Owner:
    return Owner(socket.gethostname(), os.getpid())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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
        owner = Owner(str(record.get("host")), int(record.get("pid", -1)))
        if owner.host == socket.gethostname():
            return owner if _pid_alive(owner.pid) else None
        return owner if age < STALE_AFTER_S else None

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
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
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
