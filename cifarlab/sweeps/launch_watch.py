"""A watch beside a sweep that waits inside submitit (``hydra/launcher=slurm``) for its SLURM jobs.

submitit learns that a job ended from its result file or from ``sacct``; on a
cluster without accounting, a job that ends without writing its result
(cancelled before it started, killed with SIGKILL, its node lost) keeps the
sweep waiting for ever, and so does a job that pends for a reason no waiting
clears. The watch reads ``squeue`` every few seconds for the jobs whose files
submitit writes under the launch's folder. It ends the wait with one line:

- at once for jobs that would pend for ever (they are cancelled;
  ``cifarlab.sweeps.slurm_watch.stuck`` names the override to change);
- for a job that left the queue without a result, once the other jobs ended
  (what they recorded stays; the same command then runs only what did not finish).

It ends the wait by interrupting the main thread (SIGINT, at each poll until the launch
ends); the launcher makes SIGINT raise there (``runtime.interrupts.sigint_raises``) and
raises ``verdict`` in place of KeyboardInterrupt.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from pathlib import Path

from cifarlab.errors import CifarlabError
from cifarlab.sweeps.slurm_watch import SlurmRequest, array_id, cancel, stuck

SUBMITTED = re.compile(r"^(\d+_\d+)_submitted\.pkl$")  # one per task: <array>_<task>_submitted.pkl
RESULT = re.compile(r"^(\d+_\d+)_\d+_result\.pkl$")  # <array>_<task>_<rank>_result.pkl
# States of a job that ended (squeue(1) "JOB STATE CODES"); squeue may list them for a while.
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
         "PREEMPTED", "TIMEOUT"}  # fmt: skip


class LaunchWatch(threading.Thread):
    """Ends a launch's wait on jobs that pend for ever or left the queue without a result (module docstring)."""

    def __init__(self, folder: str, request: SlurmRequest, poll_s: float = 5.0) -> None:
        super().__init__(name="cifarlab-slurm-watch", daemon=True)
        self.root = Path(folder.split("%", 1)[0])  # the fixed part of submitit's folder pattern
        self.request = request
        self.poll_s = poll_s
        self.verdict: CifarlabError | None = None
        self._done = threading.Event()
        self._earlier = self._files(SUBMITTED)  # an earlier launch's jobs, in a reused sweep folder
        self._missing: set[str] = set()  # tasks not in the queue, without a result, at the last poll

    def _files(self, pattern: re.Pattern[str]) -> set[str]:
        matches = (pattern.match(path.name) for path in self.root.glob("**/*.pkl"))
        return {match.group(1) for match in matches if match}

    def run(self) -> None:
        while not self._done.wait(self.poll_s):
            if self.verdict is None:
                tasks = self._files(SUBMITTED) - self._earlier
                self.verdict = self._never_starts(tasks) or self._ended_without_result(tasks)
            if self.verdict is not None and not self._done.is_set():
                # Again at each poll until the launch ends: one interrupt can be lost on its way.
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def _never_starts(self, tasks: set[str]) -> CifarlabError | None:
        for array in sorted({array_id(task) for task in tasks}):
            verdict = stuck(array, self.request)
            if verdict is not None:
                cancel(array)
                return verdict
        return None

    def _ended_without_result(self, tasks: set[str]) -> CifarlabError | None:
        queued = _queued_tasks({array_id(task) for task in tasks})
        if queued is None:
            return None  # squeue did not answer: ask again later
        missing = tasks - queued - self._files(RESULT)
        gone, self._missing = sorted(missing & self._missing), missing  # two polls in a row: no late file
        if not gone or queued & tasks:
            return None  # nothing lost, or the other jobs still run: let them end first
        logs = sorted(self.root.glob(f"**/{gone[0]}_*_log.err"))
        return CifarlabError(
            f"SLURM job {gone[0]} ended without a result (cancelled before it started, killed, or its node "
            f"lost; {'its log: ' + str(logs[0]) if logs else 'no log'}); {len(gone)} job(s) did not finish: "
            "run the same command again, FINISHED jobs are skipped and a stopped run resumes"
        )

    def stop(self) -> None:
        self._done.set()


def _queued_tasks(arrays: set[str]) -> set[str] | None:
    """The tasks of ``arrays`` SLURM still has (pending, running, completing), one id each; None if no answer."""
    if not arrays:
        return set()
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-j", ",".join(sorted(arrays)), "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:  # every job gone: squeue says so
        return None
    rows = [line.split() for line in out.stdout.splitlines()]
    return {row[0] for row in rows if len(row) == 2 and row[1] not in ENDED}
