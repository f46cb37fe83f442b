"""K workers of one search, started as a SLURM job array (or K local processes) through submitit.

Each worker is the search command itself, ``python -m cifarlab -m <overrides>``,
run as one task of the array, in the folder the command was started in: the
workers share the study (``hydra.sweeper.storage``), so they split its trials
between them and stop together at ``n_trials`` (``cifarlab.sweeps.search``).
A task that is preempted or killed leaves its trial to be retried by the others.

submitit does the cluster work: ``cluster=slurm`` submits one ``sbatch --array``
job of K tasks (``slurm.*`` options become its ``#SBATCH`` lines), ``cluster=local``
starts K processes on this machine with submitit's local executor.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cifarlab.errors import CifarlabError
from cifarlab.runtime import child_signals
from cifarlab.runtime.interrupts import signal_of, signals_held
from cifarlab.runtime.quiet import stderr_without
from cifarlab.sweeps import slurm_watch
from cifarlab.sweeps.worker_stop import STOP_WAIT_S, not_done, stop_workers

CLUSTERS = ("local", "slurm")
STOPPED_CODES = {130: "SIGINT", 143: "SIGTERM (scancel, preemption)"}  # a search's exit codes for them
WAIT_POLL_S = 5.0  # how often the workers' states (and SLURM's pending reasons) are read


@dataclass
class SlurmOptions:
    partition: Optional[str] = None
    # What one worker needs for the small models a search trains, so that it starts on any node;
    # ask for more (slurm.cpus_per_task=8 slurm.gpus_per_node=1 slurm.mem_gb=32) where nodes have it.
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: Optional[int] = None  # None: the partition's default memory per CPU
    account: Optional[str] = None
    array_parallelism: Optional[int] = None  # at most this many tasks at once (None: all K)


@dataclass
class WorkerOptions:
    workers: int = 2  # K: tasks of the array, each a worker of the search
    cluster: str = "local"  # local: K processes here; slurm: one SLURM job array
    folder: str = "mlruns/workers"  # submitit's scripts and each task's log (<job id>_<task>_log.out)
    timeout_min: int = 240  # each worker's time limit
    wait: bool = True  # wait for the workers and report how each ended (false: print the job id, return)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


def run_worker(overrides: list[str], cwd: str, local: bool) -> int:
    """One task of the array: the search command, in the folder the workers were started from.

    On SLURM, scancel signals every process of the task, the search too. Locally the search
    runs in its own session: the first Ctrl-C or SIGTERM this task gets is passed on to it
    (submitit's controller forwards SIGTERM). The task waits while the search ends its trial;
    if the task itself is cut short (submitit's time-limit signal) or dies, the search ends too.
    """
    command = [sys.executable, "-m", "cifarlab", "-m", *overrides]
    forwarded = (signal.SIGINT, signal.SIGTERM) if local else ()
    # SIGUSR2, submitit's "time is nearly up" (SLURM sends it to every process of the task), is
    # for this task: its handler raises here, and the search then gets one SIGTERM (end_child).
    arrange = child_signals.ends_with_parent(ignored=(signal.SIGUSR2,))
    with child_signals.forwarding(forwarded) as forwarder:
        if local:  # this task started with Ctrl-C blocked (_submitting); its forwarder takes it now
            child_signals.hear_ctrl_c()
        search = subprocess.Popen(command, cwd=cwd, start_new_session=local, preexec_fn=arrange)
        forwarder.to(search)
        try:
            return search.wait()
        finally:
            forwarder.end_child(grace_s=_time_left_after_warning(local))


def _time_left_after_warning(local: bool) -> float:
    """How long a search may take to stop once warned: within the time the scheduler leaves
    between its warning and its kill (submitit's local controller: its signal delay, 30 s)."""
    if local:
        return max(1.0, min(STOP_WAIT_S, float(os.environ.get("SUBMITIT_LOCAL_SIGNAL_DELAY_S", 30)) - 5))
    return STOP_WAIT_S  # SLURM: submitit asks for the warning 90 s before the limit


def check_options(options: Any, overrides: list[str]) -> None:
    if int(options.workers) < 1:
        raise CifarlabError(f"workers={options.workers}: start 1 worker or more, e.g. workers=4")
    if options.cluster not in CLUSTERS:
        raise CifarlabError(
            f"cluster={options.cluster!r} is not one of {', '.join(CLUSTERS)}; use e.g. cluster=slurm"
        )
    if not any(o.split("=", 1)[0] in ("hparams_search", "hydra/sweeper") for o in overrides):
        raise CifarlabError(
            "no search to run: add its overrides, e.g. hparams_search=mlp_optuna "
            "(workers share its study through hydra.sweeper.storage)"
        )


def _executor(options: Any) -> Any:
    import submitit  # deferred: only this command needs it

    # Its "Bypassing sacct error" warnings, every few seconds on clusters without accounting:
    # the states come from the result files then, and the pending reasons from squeue (_wait).
    logging.getLogger("submitit").setLevel(logging.ERROR)

    folder = Path(str(options.folder))  # submitit names each file by its job id; no "%j" folder
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
    except RuntimeError as err:  # e.g. no srun here
        raise CifarlabError(
            f"cluster={options.cluster}: {err}; run this on the cluster's login node, or use cluster=local"
        ) from None
    params: dict[str, Any] = {"timeout_min": int(options.timeout_min), "name": "cifarlab-search"}
    if options.cluster == "slurm":
        slurm = options.slurm
        params.update(
            slurm_partition=slurm.partition,
            gpus_per_node=int(slurm.gpus_per_node),
            cpus_per_task=int(slurm.cpus_per_task),
            mem_gb=int(slurm.mem_gb) if slurm.mem_gb else None,
            slurm_array_parallelism=int(slurm.array_parallelism or options.workers),
        )
        if slurm.account:
            params["slurm_account"] = slurm.account
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def _submit(executor: Any, options: Any, *arguments: list) -> list:
    from submitit.core.utils import FailedJobError

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's refusal: said once, below
            return list(executor.map_array(run_worker, *arguments))
    except FailedJobError as err:  # sbatch refused the array
        raise slurm_watch.refusal(str(err), slurm_watch.SlurmRequest.of_workers(options)) from None


def _wait(jobs: list, options: Any) -> None:
    """Until every worker ended; on SLURM, an array whose tasks would pend for ever is cancelled."""
    while not _all_done(jobs):
        if options.cluster == "slurm":
            error = slurm_watch.stuck(jobs[0].job_id, slurm_watch.SlurmRequest.of_workers(options))
            if error is not None:
                slurm_watch.cancel(jobs[0].job_id)
                raise error
        time.sleep(WAIT_POLL_S)


def _submitting(local: bool) -> contextlib.AbstractContextManager:
    """Signals during the submission act once the jobs exist (so they can be stopped). Local
    workers' controllers never hear Ctrl-C: one would SIGKILL its task 1 s after it; this
    command stops them instead, with SIGTERM (submitit's ``job.cancel()``, a SIGINT, does
    nothing to them)."""
    if local:
        stack = contextlib.ExitStack()
        stack.enter_context(child_signals.children_deaf_to_ctrl_c())
        stack.enter_context(signals_held((signal.SIGTERM,)))
        return stack
    return signals_held()


def _all_done(jobs: list) -> bool:
    return not not_done(jobs)


@dataclass
class WorkerEnd:
    """How one worker (task) ended: its exit code, None when the scheduler ended it first; its log."""

    task: int
    code: int | None
    log: Path

    @property
    def stopped(self) -> bool:
        """Stopped from outside (scancel, preemption, Ctrl-C): its trial went back to the study."""
        return self.code is None or self.code in STOPPED_CODES


def _ends(jobs: list) -> list[WorkerEnd]:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    ends = []
    for task, job in enumerate(jobs):
        try:
            with stderr_without(slurm_watch.NO_ACCOUNTING):
                code: int | None = int(job.result())
        except (FailedJobError, UncompletedJobError):  # cancelled, timed out or killed by the scheduler
            code = None
        ends.append(WorkerEnd(task, code, Path(job.paths.stderr)))
    return ends


def start_workers(options: Any, overrides: list[str]) -> list[WorkerEnd]:
    """Submit the K workers; with ``wait``, wait for them and say how each ended."""
    check_options(options, overrides)
    executor = _executor(options)
    cwd = str(Path.cwd())
    n = int(options.workers)
    local = options.cluster == "local"
    jobs: list = []
    try:
        with _submitting(local):
            jobs = _submit(executor, options, [list(overrides)] * n, [cwd] * n, [local] * n)
        print(f"cifarlab: workers: {n} workers of the search submitted ({options.cluster}), job {jobs[0].job_id}; "
              f"logs in {options.folder}", flush=True)  # fmt: skip
        if not options.wait:
            return []
        _wait(jobs, options)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the workers stop too (worker_stop)
        raise stop_workers(jobs, options, signal_of(err)) from None
    ends = _ends(jobs)
    print(f"cifarlab: workers: all {n} ended, exit codes {[e.code for e in ends]}", flush=True)
    for end in ends:
        if end.stopped:
            how = "by the scheduler" if end.code is None else f"by {STOPPED_CODES[end.code]}"
            print(f"cifarlab: workers: worker {end.task} was stopped {how}; its trial went back to "
                  "the study for the other workers", flush=True)  # fmt: skip
    return ends


def run_workers(options: Any, overrides: list[str]) -> None:
    """Start the workers (``start_workers``); one line when any failed, or when all were stopped."""
    ends = start_workers(options, overrides)
    failed = [e for e in ends if e.code and not e.stopped]
    if failed:
        raise CifarlabError(
            f"{len(failed)} worker(s) failed; the first said: {_last_error(failed[0].log)} ({failed[0].log})"
        )
    if ends and all(e.stopped for e in ends):
        raise CifarlabError(
            "every worker was stopped before the search ended; rerun the same command to resume it"
        )


def _last_error(log: Path) -> str:
    """The worker's closing ``cifarlab: error:`` line, else the last line of its log."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line.removeprefix("cifarlab: error: ") for line in lines if line.startswith("cifarlab: error:")]
    return (errors or lines or ["an empty log"])[-1]
