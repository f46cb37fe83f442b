"""What a sweep and each of its jobs tell each other: two typed objects, each with one way across.

- ``SweepTicket``, sweep to jobs: who the sweep is (its worker name and process),
  its MLflow parent run, the keys it varies and, for an Optuna search, its study.
  The sweep's process writes it once as the sweep starts (``write_ticket``); every
  job reads it (``read_ticket``) in whatever process the launcher runs it (basic:
  the sweep's own; joblib, submitit: others, which inherit the sweep's environment).
- ``JobReport``, job to sweep: what became of one job (its run; skipped, pruned,
  failed). It lives in ``<sweep dir>/.cifarlab/jobs/<num>.json`` (``write_report``,
  ``read_report``): the job starts it, notes on it while it runs and completes it
  at its end; the Optuna sweeper reads it when the job returns, the sweep's end
  reads every report of its worker (``read_reports``).

A job of an Optuna search is trial ``num // repeats`` of the study: the sweeper
numbers a trial's jobs from ``trial number * repeats`` (``trial_jobs``).

Only the standard library: Hydra imports this (through the sweep callback) for every run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

TICKET_ENV = "CIFARLAB_SWEEP_TICKET"  # the environment variable that carries the ticket to the jobs
RUNNING = "running"  # a report's status until its job ends


@dataclass(frozen=True)
class StudyTicket:
    """The Optuna study a search's jobs report their epochs to (for pruning)."""

    storage: str
    study_name: Optional[str]
    repeats: int = 1
    pruner: Optional[dict[str, Any]] = None  # the sweeper's pruner config (_target_ and arguments)

    def trial_number(self, job_num: int) -> int:
        """The trial that job ``job_num`` runs (see ``trial_jobs``)."""
        return job_num // self.repeats


@dataclass(frozen=True)
class SweepTicket:
    """What a sweep hands each of its jobs (see the module docstring)."""

    worker: str  # this sweep process's name, unique among the workers of a search
    sweep_pid: int  # the sweep's process, which joblib's workers watch (cifarlab.sweeps.watchdog)
    parent_run_id: Optional[str] = None  # None with tracking off
    swept_keys: tuple[str, ...] = ()
    study: Optional[StudyTicket] = None  # an Optuna search with a storage
    planned_jobs: Optional[int] = None  # how many jobs the sweep runs, for its progress lines


@dataclass
class JobReport:
    """What became of one job of a sweep (see the module docstring)."""

    num: int
    overrides: list[str] = field(default_factory=list)
    worker: str = ""
    started_at: float = 0.0
    run_id: Optional[str] = None  # the job's run, or the earlier FINISHED run a skipped job reuses
    skipped: bool = False
    pruned_at_epoch: Optional[int] = None  # counted from 0
    status: str = RUNNING  # then skipped, finished, failed or pruned
    objective: Optional[float] = None
    error: Optional[str] = None
    seconds: Optional[float] = None


def trial_jobs(trial_number: int, repeats: int) -> range:
    """The job numbers of a trial's ``repeats`` jobs."""
    return range(trial_number * repeats, (trial_number + 1) * repeats)


# --- the ticket: one environment variable -------------------------------------------------------


def write_ticket(ticket: SweepTicket) -> None:
    """Hand the ticket to the jobs this process launches (and to those it runs itself)."""
    os.environ[TICKET_ENV] = json.dumps(dataclasses.asdict(ticket))


def read_ticket() -> SweepTicket | None:
    """The ticket of the sweep this process works for; None outside a sweep (or an unreadable one)."""
    try:
        fields = json.loads(os.environ[TICKET_ENV])
        study = fields.pop("study")
        return SweepTicket(
            **{**fields, "swept_keys": tuple(fields["swept_keys"])},
            study=StudyTicket(**study) if study else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def clear_ticket() -> None:
    """The sweep has ended: later runs of this process are not its jobs."""
    os.environ.pop(TICKET_ENV, None)


# --- the report: one file per job ---------------------------------------------------------------


def report_path(folder: Path, num: int) -> Path:
    return Path(folder) / f"{num:05d}.json"


def write_report(folder: Path, report: JobReport) -> None:
    """The job's report, replaced whole (a reader never sees half of it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = report_path(folder, report.num)
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(dataclasses.asdict(report)) + "\n")
    partial.replace(path)


def read_report(folder: Path, num: int) -> JobReport | None:
    """Job ``num``'s report; None when it has none (or an unreadable one)."""
    return _parse(report_path(folder, num))


def read_reports(folder: Path, worker: str | None = None) -> list[JobReport]:
    """The reports of the jobs that ended, in job order; only ``worker``'s if given.

    A reused sweep folder, or one shared by several workers of a search, holds
    other processes' reports too.
    """
    reports = [_parse(path) for path in sorted(Path(folder).glob("*.json"))]
    return [
        r for r in reports if r is not None and r.status != RUNNING and (worker is None or r.worker == worker)
    ]


def _parse(path: Path) -> JobReport | None:
    known = {f.name for f in dataclasses.fields(JobReport)}
    try:
        fields = json.loads(path.read_text())
        return JobReport(**{k: v for k, v in fields.items() if k in known})
    except (OSError, TypeError, ValueError):
        return None
