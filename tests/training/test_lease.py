"""The run-state lease: its holder is the process that took it, not whoever has its pid now."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from cifarlab.runtime.lease import Lease, process_start_time


def _write_lease(path, pid: int, started: float | None) -> None:
    record = {"host": socket.gethostname(), "pid": pid}
    if started is not None:
        record["started"] = started
    path.write_text(json.dumps(record))


def test_a_live_holder_keeps_its_lease(tmp_path):
    path = tmp_path / "lease.json"
    _write_lease(path, os.getpid(), process_start_time(os.getpid()))
    holder = Lease(path).holder()
    assert holder is not None and holder.pid == os.getpid()
    assert Lease(path).acquire() is not None  # another taker keeps out


def test_a_reused_pid_does_not_hold_the_lease(tmp_path):
    # A process alive now, under the pid the lease names, but started after the lease's holder.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / "lease.json"
        _write_lease(path, other.pid, process_start_time(other.pid) - 3600.0)
        assert Lease(path).holder() is None
        lease = Lease(path)
        assert lease.acquire() is None  # taken over
        assert json.loads(path.read_text())["pid"] == os.getpid()
        lease.release()
    finally:
        other.kill()
        other.wait()


def test_our_own_pid_in_a_stale_lease_is_not_us(tmp_path):
    # A container's trainer is PID 1 on every start: the lease of the killed one names our pid.
    path = tmp_path / "lease.json"
    _write_lease(path, os.getpid(), process_start_time(os.getpid()) - 3600.0)
    assert Lease(path).acquire() is None


def test_a_lease_without_start_time_goes_stale_without_heartbeats(tmp_path):
    path = tmp_path / "lease.json"
    _write_lease(path, os.getpid(), None)
    assert Lease(path).holder() is not None  # fresh: trusted
    old = os.stat(path).st_mtime - 3600
    os.utime(path, (old, old))
    assert Lease(path).holder() is None
