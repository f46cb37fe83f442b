"""The Hydra callback that records a multirun: ``hydra.callbacks.cifarlab_sweep`` in conf/config.yaml.

``python -m cifarlab -m ...`` runs every job of a sweep as a child of one MLflow
parent run. ``SweepRecord`` wires the sweep's parts together:

- ``on_multirun_start`` (the sweeper's process): open the parent run, or reopen
  it when the same sweep command runs again (same ``sweep_hash`` tag)
  (``cifarlab.sweeps.parent``); hand the jobs, in whatever process they run
  (joblib, submitit), the sweep's ticket (``cifarlab.sweeps.contract``).
- ``on_job_start`` / ``on_job_end`` (the job's process): the job's report of what
  became of it (ran, skipped, failed, pruned), for the sweep's end
  (``cifarlab.sweeps.job``); a joblib job stops when the sweep's process dies
  (``cifarlab.sweeps.watchdog``).
- ``on_multirun_end``: leaderboard, figures, best run, Optuna plots on the
  parent; end it FINISHED; print how many jobs were skipped, ran, failed.

A sweep that dies before its end leaves the parent KILLED (an exit handler); the
same command run again reopens it. What a job asks of its sweep is in
``cifarlab.sweeps.job_hooks``.

Hydra instantiates this callback for every run, sweep or not: this module imports
only the light ``contract``, ``job`` and ``watchdog`` modules; ``parent`` (MLflow,
matplotlib) and ``search`` and ``study`` (Optuna) are imported once a multirun starts.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
import traceback
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cifarlab.config.compose import override_key
from cifarlab.errors import CifarlabError, environment_failure
from cifarlab.runtime.interrupts import stop_on_sigterm
from cifarlab.sweeps import contract, job, watchdog
from cifarlab.sweeps.progress import planned_jobs, progress_line
from cifarlab.tracking.identity import config_hash

# Keys (as overrides and in the composed config) that do not change which sweep this is.
_NOT_SWEEP_IDENTITY = ("tracking.rerun_finished", "tracking.tags", "trainer.verbose")


def sweep_hash(config: DictConfig) -> str:
    """What identifies a sweep: its sweeper, search space, task overrides (not its budget or launcher)
    and the config they apply to, so that the same command after a preset or ``conf/`` changed
    starts a new sweep instead of adding other runs to the old one's parent."""
    sweeper = config.hydra.sweeper
    task = sorted(str(o) for o in config.hydra.overrides.task if _in_identity(override_key(str(o))))
    params = sweeper.get("params")
    identity = {
        "sweeper": str(sweeper.get("_target_")),
        "params": OmegaConf.to_container(params, resolve=False) if params is not None else None,
        "study": sweeper.get("study_name"),
        "task": task,
        "config": _base_config_hash(config),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _in_identity(key: str) -> bool:
    """Whether an override of ``key`` (``tracking.tags.note`` is under ``tracking.tags``) makes another sweep."""
    return not any(key == k or key.startswith(f"{k}.") for k in _NOT_SWEEP_IDENTITY)


def _base_config_hash(config: DictConfig) -> str:
    """The composed config the jobs start from (without Hydra's own node and display-only keys)."""
    base = DictConfig(OmegaConf.to_container(config, resolve=False))
    base.pop("hydra", None)
    for key in _NOT_SWEEP_IDENTITY:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        if isinstance(node, DictConfig):
            node.pop(leaf, None)
    return config_hash(base)


def _stop_before_any_job(err: Exception) -> NoReturn:
    """End a sweep whose record could not be opened, in one line (the machine's fault) or after its traceback."""
    described = environment_failure(err)
    if described is None:
        traceback.print_exc()
        described = "the sweep's MLflow run could not be opened (traceback above), so no job ran; run the same command again"
    print(f"cifarlab: error: {described}", file=sys.stderr, flush=True)
    sys.exit(1)


class SweepRecord(Callback):
    """The MLflow parent run of a multirun and its leaderboard (see the module docstring)."""

    def __init__(self) -> None:
        self.ticket: contract.SweepTicket | None = None  # what this sweep process hands its jobs
        self._closed = False

    @property
    def parent_run_id(self) -> str | None:
        return self.ticket.parent_run_id if self.ticket is not None else None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from cifarlab.sweeps import parent, search, study  # deferred: see the module docstring

        identity = sweep_hash(config)
        try:
            if study.is_optuna(config):
                search.preflight(config)  # bad storage, another search's study: one line, before any run
            parent_run_id = parent.open_parent(config, identity) if config.tracking.enabled else None
        except CifarlabError as err:
            print(f"cifarlab: error: {err}", file=sys.stderr)
            sys.exit(1)
        except Exception as err:  # noqa: BLE001 - Hydra would warn and run the jobs with no record of their sweep
            _stop_before_any_job(err)
        self.ticket = contract.SweepTicket(
            worker=job.new_worker(),
            sweep_pid=os.getpid(),
            parent_run_id=parent_run_id,
            swept_keys=tuple(job.swept_override_keys(config)),
            study=study.study_ticket(config),
            planned_jobs=planned_jobs(config),
        )
        contract.write_ticket(self.ticket)
        if parent_run_id is None:
            return
        self._closed = False
        atexit.register(self._abandon, config)
        stop_on_sigterm()  # SIGTERM ends the sweep like Ctrl-C: runs and parent KILLED

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        counts: dict[str, int] = {}
        try:
            if self.ticket is not None and self.parent_run_id is not None:
                from cifarlab.sweeps import parent  # deferred: see the module docstring

                counts = parent.close_parent(
                    config, self.parent_run_id, job.jobs_dir(config.hydra), self.ticket.worker
                )
            self._closed = True
        except Exception as err:  # noqa: BLE001 - Hydra would turn it into a warning and exit 0
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            print(
                f"cifarlab: error: the sweep's jobs ended but its run {self.parent_run_id} could not be "
                f"closed ({first_line}); run the same command again to write its leaderboard",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1) from None  # the parent is then ended KILLED at exit (_abandon)
        finally:
            contract.clear_ticket()
        if counts.get("failed"):
            # Hydra turns a callback's exception into a warning; a script or CI job must see the
            # failure in the exit status, once the other jobs ran and the leaderboard is written.
            print(
                f"cifarlab: error: {counts['failed']} job(s) of the sweep failed (their runs, FAILED or KILLED, are "
                f"under sweep run {self.parent_run_id}); fix the cause and run the same command again: "
                "only the jobs that did not finish run",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)

    def _abandon(self, config: DictConfig) -> None:
        """At exit without on_multirun_end (the sweep raised or was interrupted): parent KILLED."""
        if self._closed or self.parent_run_id is None:
            return
        try:
            from cifarlab.sweeps import parent  # deferred: see the module docstring

            parent.abandon_parent(config, self.parent_run_id)
        except Exception as err:  # noqa: BLE001 - the process is exiting anyway
            print(f"cifarlab: could not mark sweep run {self.parent_run_id} KILLED: {err}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not job.is_multirun(config):
            return
        ticket = contract.read_ticket()
        if ticket is not None and "joblib" in str(OmegaConf.select(config, "hydra.launcher._target_")):
            watchdog.watch_sweep(ticket.sweep_pid)
        if job.in_a_process_of_its_own(config.hydra):
            stop_on_sigterm(replace=True)  # scancel ends the job's run KILLED, not SIGKILL 30 s later
        job.start_job(config, ticket)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if job.is_multirun(config):
            report = job.finish_job(config, job_return)
            watchdog.job_ended()
            ticket = contract.read_ticket()
            if ticket is not None:
                print(progress_line(config, report, ticket), flush=True)
