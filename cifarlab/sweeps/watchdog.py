"""A job in a worker the sweep's process started (joblib) stops when that process dies.

joblib's loky workers outlive a sweep process killed with ``kill -9``: each goes
on training the job it has to its end, idle ones linger for minutes. A job whose
parent process is the sweep's starts ``watch_sweep``'s thread; once its parent
is another (the sweep died, the worker was re-parented) it sends its own
process SIGTERM, which ends the job's run KILLED (``cifarlab.runtime.interrupts``) so
that the sweep's rerun resumes it, and the worker exits (at once when between
jobs, after at most ``GRACE_S`` seconds otherwise).

The basic launcher runs jobs in the sweep's own process, and SLURM/submitit jobs
run under their scheduler's processes, meant to outlive the submitting one:
neither is watched. Only the standard library and Hydra: Hydra imports this for every run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from hydra.core.utils import run_job

from cifarlab.runtime.interrupts import stop_on_sigterm

POLL_S = 1.0
GRACE_S = 30.0  # for the job to end its run KILLED; then the worker exits regardless

_in_job = threading.Event()
_watching = threading.Event()  # this worker's thread is started


def watch_sweep(sweep_pid: int) -> None:
    """At the start of a joblib job, in its main thread: stop with the sweep's process."""
    if os.getpid() == sweep_pid:
        return  # joblib ran the job in the sweep's own process (n_jobs=1)
    if os.getppid() != sweep_pid:
        _stop(sweep_pid)  # the sweep died before this job started
    stop_on_sigterm()  # SIGTERM ends the job's run KILLED instead of killing the worker outright
    _in_job.set()
    if not _watching.is_set():
        _watching.set()
        threading.Thread(
            target=_watch, args=(sweep_pid,), name="cifarlab-sweep-watchdog", daemon=True
        ).start()


def job_ended() -> None:
    """At a job's end: SIGTERM back to its default (loky's idle workers are not ours to interrupt)."""
    if _in_job.is_set():
        _in_job.clear()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _watch(sweep_pid: int) -> None:
    while os.getppid() == sweep_pid:
        time.sleep(POLL_S)
    _stop(sweep_pid)


def _stop(sweep_pid: int) -> None:
    """The sweep's process is gone: end the running job's run KILLED, then leave."""
    if _in_job.is_set():
        print(
            f"cifarlab: sweep process {sweep_pid} is gone; stopping this job (pid {os.getpid()}): "
            "its run ends KILLED and the same sweep command resumes it",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while _main_thread_in_job() and time.monotonic() < deadline:
            time.sleep(0.2)
    os._exit(1)


def _main_thread_in_job() -> bool:
    """Whether the main thread is still inside Hydra's ``run_job`` (ending the job's run)."""
    ident = threading.main_thread().ident
    if ident is None:  # never started: no frame to look at
        return False
    frame = sys._current_frames().get(ident)
    while frame is not None:
        if frame.f_code is run_job.__code__:
            return True
        frame = frame.f_back
    return False
