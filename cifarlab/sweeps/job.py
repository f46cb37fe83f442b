"""A sweep's folder and the report of the job running in this process.

Each job of a sweep keeps a ``JobReport`` (``cifarlab.sweeps.contract``) in
``<sweep dir>/.cifarlab/jobs/<num>.json``: ``start_job`` writes it as the job
starts, ``note_job`` adds what the job learns while it runs (its run, skipped,
pruned), ``finish_job`` completes it with how the job ended.

Imports only Hydra and OmegaConf: Hydra imports this (through the sweep
callback) for every run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cifarlab.sweeps.contract import JobReport, SweepTicket, read_report, write_report

STATE_DIR = ".cifarlab"  # inside the sweep dir


# --- where the sweep keeps its state ----------------------------------------------------------


def is_multirun(config: DictConfig) -> bool:
    """Whether ``config`` (with its ``hydra`` node) is one of a multirun's."""
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def multirun_hydra() -> DictConfig | None:
    """This job's Hydra config when it is one job of a multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = cast(DictConfig, HydraConfig.get())  # typed as its schema, a DictConfig at run time
    return hydra_cfg if hydra_cfg.get("mode") == RunMode.MULTIRUN else None


def in_a_process_of_its_own(hydra_cfg: DictConfig) -> bool:
    """Whether the launcher runs each job as a process of its own (submitit: a SLURM job).

    A signal to such a job (scancel, SLURM's time limit) stops that job only; the
    sweep goes on. Jobs the joblib launcher runs stop with their sweep.
    """
    target = OmegaConf.select(hydra_cfg, "launcher._target_")
    if not target:
        return False
    from hydra.utils import get_class

    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    return issubclass(get_class(str(target)), BaseSubmititLauncher)


def sweep_dir(hydra_cfg: DictConfig) -> Path:
    """The sweep's output folder as an absolute path (``hydra.sweep.dir`` is relative to the launch folder)."""
    folder = Path(str(hydra_cfg.sweep.dir))
    if not folder.is_absolute():
        folder = Path(str(hydra_cfg.runtime.cwd)) / folder
    return folder


def jobs_dir(hydra_cfg: DictConfig) -> Path:
    """Where the sweep's jobs keep their reports."""
    return sweep_dir(hydra_cfg) / STATE_DIR / "jobs"


def swept_override_keys(config: DictConfig) -> list[str]:
    """The keys the sweep varies: its sweep overrides (``a=1,2``) and ``hydra.sweeper.params``."""
    lines = [str(o) for o in config.hydra.overrides.task]
    params = config.hydra.sweeper.get("params") or {}
    lines += [f"{k}={v}" for k, v in params.items()]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # noqa: BLE001 - names and figures are not worth failing the sweep over
        return []
    keys: list[str] = []
    for override in parsed:
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    return keys


def new_worker(host: str | None = None) -> str:
    """A name for this sweep process, unique among the workers of a search."""
    return f"{host or socket.gethostname()}-{os.getpid()}-{time.time_ns()}"


# --- the job's report -------------------------------------------------------------------------


def start_job(config: DictConfig, ticket: SweepTicket | None) -> JobReport:
    """The job's first report: its number, overrides, worker and start."""
    report = JobReport(
        num=int(config.hydra.job.num),
        overrides=[str(o) for o in config.hydra.overrides.task],
        worker=ticket.worker if ticket is not None else "",
        started_at=time.time(),
    )
    write_report(jobs_dir(config.hydra), report)
    return report


def note_job(hydra_cfg: DictConfig, **changes: Any) -> None:
    """Add what the running job learnt (``run_id``, ``skipped``, ``pruned_at_epoch``) to its report."""
    folder, num = jobs_dir(hydra_cfg), int(hydra_cfg.job.num)
    report = read_report(folder, num)
    if report is not None:  # none: the sweep's callback is not recording this sweep
        write_report(folder, dataclasses.replace(report, **changes))


def _objective(job_return: JobReturn) -> tuple[float | None, str | None]:
    """The job's returned objective (None if it failed or returned no number) and its error."""
    if job_return.status != JobStatus.COMPLETED:
        try:
            _ = job_return.return_value  # raises what the job raised
        except Exception as err:  # noqa: BLE001 - recorded, not handled
            return None, f"{type(err).__name__}: {err}"
        return None, None
    try:
        value = float(job_return.return_value)
    except (TypeError, ValueError):
        return None, None
    return (None if math.isnan(value) else value), None


def _status(report: JobReport, value: float | None) -> str:
    if report.pruned_at_epoch is not None:
        return "pruned"
    if value is None:
        return "failed"
    return "skipped" if report.skipped else "finished"


def finish_job(config: DictConfig, job_return: JobReturn) -> JobReport:
    """Complete the job's report with how it ended (and return it)."""
    folder = jobs_dir(config.hydra)
    report = read_report(folder, int(config.hydra.job.num)) or start_job(config, None)
    value, error = _objective(job_return)
    report = dataclasses.replace(
        report,
        status=_status(report, value),
        objective=value,
        error=error,
        seconds=time.time() - report.started_at,
    )
    write_report(folder, report)
    return report
