"""Stopping the workers of ``cifarlab workers`` when the command itself is stopped.

Ctrl-C stops them wherever they run: local workers get SIGTERM through submitit's
controller (resent each second until they end: a controller or task still starting
drops it), a SLURM array is cancelled (scancel's SIGTERM reaches every process of
every task). SIGTERM to the command stops local workers too, but leaves a SLURM array
alone: on a login node that is a logout or a reboot, not a wish to end the search.
Each search ends its trial at a batch's end and hands it back to the study.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from cifarlab.runtime.interrupts import signals_held
from cifarlab.runtime.quiet import stderr_without
from cifarlab.sweeps import slurm_watch

STOP_WAIT_S = 60.0  # how long stopped workers may take to end their trials
POLL_S = 1.0
SLURM_POLL_S = 5.0
RESUME = "rerun the same command to resume the search"


class WorkersStopped(Exception):
    """The command was stopped by ``signum``; the message says what became of its workers."""

    def __init__(self, signum: signal.Signals, outcome: str) -> None:
        super().__init__(outcome)
        self.signum = signum


def not_done(jobs: list, force: bool = False) -> list:
    # submitit asks sacct, whose complaint on clusters without accounting would repeat on every poll.
    with stderr_without(slurm_watch.NO_ACCOUNTING):
        return [job for job in jobs if not job.done(force_check=force)]


def stop_workers(jobs: list, options: Any, signum: signal.Signals) -> WorkersStopped:
    """Stop the submitted ``jobs`` as ``signum`` asks and wait for them; what to tell the user."""
    if not jobs:
        return WorkersStopped(signum, "no worker was started")
    array = slurm_watch.array_id(jobs[0].job_id)
    slurm = options.cluster == "slurm"
    if slurm and signum != signal.SIGINT:
        return WorkersStopped(signum, f"SLURM job {array} goes on (scancel {array} stops it)")
    if slurm:
        with signals_held():  # a second Ctrl-C acts after the array is cancelled
            cancelled = slurm_watch.cancel(jobs[0].job_id)
        if not cancelled:
            return WorkersStopped(signum, f"scancel {array} did not answer; run it again, then {RESUME}")
    left = _wait_for_the_end(jobs, terminate=not slurm, force_check=slurm)
    if left:
        return WorkersStopped(
            signum, f"{len(left)} of {len(jobs)} workers still stopping (job {array}); {RESUME} once they end"
        )
    return WorkersStopped(
        signum, f"the workers stopped too, each handing its trial back to the study; {RESUME}"
    )


def _wait_for_the_end(jobs: list, terminate: bool, force_check: bool) -> list:
    """The jobs not done within STOP_WAIT_S, or when a second signal cuts the wait short."""
    left, deadline = jobs, time.monotonic() + STOP_WAIT_S
    try:
        while (left := _not_ended(left, slurm=force_check)) and time.monotonic() < deadline:
            if terminate:
                _terminate_local(left)
            time.sleep(SLURM_POLL_S if force_check else POLL_S)  # on SLURM each poll asks sacct
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, say what is left
        pass
    return left


def _not_ended(jobs: list, slurm: bool) -> list:
    """The jobs not done; on SLURM, all of them while squeue still lists the array (its tasks
    COMPLETING after their results were written), so a rerun does not queue behind it."""
    left = not_done(jobs, force=slurm)
    if slurm and not left and jobs and slurm_watch.in_queue(jobs[0].job_id):
        return jobs
    return left


def _terminate_local(jobs: list) -> None:
    """SIGTERM to each local job's controller (its job id is its pid), which passes it on to its task."""
    with signals_held():  # a second Ctrl-C must not leave some controllers unsignalled
        for job in jobs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(job.job_id), signal.SIGTERM)
