"""A sweep's files, and what the job running in this process notes about itself.

The sweep process writes ``<sweep dir>/.cifarlab/sweep.json`` (parent run id,
sweep hash, swept keys) before any job starts; jobs in any process read it.
Each job notes what became of it (ran, skipped, failed, pruned) and leaves one
record in ``<sweep dir>/.cifarlab/jobs/<num>.json`` for the sweep's end.

Imports only Hydra and OmegaConf: Hydra imports this (through the sweep
callback) for every run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# The parent run's id, for jobs in other processes (joblib, submitit) should sweep.json be unreadable.
PARENT_ENV = "CIFARLAB_SWEEP_PARENT_RUN_ID"
# Set per job by the cifarlab_optuna sweeper (hydra.job.env_set): the Optuna trial this job is.
TRIAL_ENV = "CIFARLAB_OPTUNA_TRIAL_ID"
# This sweep process, one worker of a search maybe shared with others: its jobs' records carry it.
WORKER_ENV = "CIFARLAB_SWEEP_WORKER"
STATE_DIR = ".cifarlab"  # inside the sweep dir

# What the job running in this process did (reset by start_job, emptied by finish_job).
_notes: dict[str, Any] = {}


# --- where the sweep keeps its state ----------------------------------------------------------


def is_multirun(config: DictConfig) -> bool:
    """Whether ``config`` (with its ``hydra`` node) is one of a multirun's."""
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def multirun_hydra() -> DictConfig | None:
    """This job's Hydra config when it is one job of a multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg if hydra_cfg.get("mode") == RunMode.MULTIRUN else None


def sweep_dir(hydra_cfg: DictConfig) -> Path:
    """The sweep's output folder as an absolute path (``hydra.sweep.dir`` is relative to the launch folder)."""
    folder = Path(str(hydra_cfg.sweep.dir))
    if not folder.is_absolute():
        folder = Path(str(hydra_cfg.runtime.cwd)) / folder
    return folder


def jobs_dir(hydra_cfg: DictConfig) -> Path:
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
    """A name for this sweep process, unique among the workers of a search; set for its jobs."""
    name = f"{host or socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
    os.environ[WORKER_ENV] = name
    return name


def write_sweep_state(config: DictConfig, *, parent_run_id: str, sweep_hash: str) -> None:
    """sweep.json for the jobs (written whole: workers sharing a sweep dir write the same one)."""
    folder = jobs_dir(config.hydra)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "parent_run_id": parent_run_id,
        "sweep_hash": sweep_hash,
        "swept_keys": swept_override_keys(config),
    }
    partial = folder.parent / f"sweep.json.{os.getpid()}"
    partial.write_text(json.dumps(state) + "\n")
    partial.replace(folder.parent / "sweep.json")


def read_sweep_state(hydra_cfg: DictConfig) -> dict[str, Any]:
    """What write_sweep_state wrote, or only the parent run id from the environment."""
    try:
        return json.loads((sweep_dir(hydra_cfg) / STATE_DIR / "sweep.json").read_text())
    except (OSError, ValueError):
        return {"parent_run_id": os.environ.get(PARENT_ENV)}


def trial_id() -> int | None:
    """The Optuna trial this job is, when the cifarlab_optuna sweeper launched it with a storage."""
    if multirun_hydra() is None or not os.environ.get(TRIAL_ENV):
        return None
    return int(os.environ[TRIAL_ENV])


# --- the job's notes --------------------------------------------------------------------------


def start_job() -> None:
    _notes.clear()
    _notes["started_at"] = time.time()


def note_run(run_id: str) -> bool:
    """Note the job's MLflow run; True the first time (a run with several stages asks once per stage)."""
    if _notes.get("run_id") == run_id:
        return False
    _notes["run_id"] = run_id
    return True


def note_skipped(run_id: str) -> None:
    """The job reuses an earlier FINISHED run of its config."""
    _notes["skipped_run_id"] = run_id


def note_pruned(epoch: int) -> None:
    _notes["pruned_at_epoch"] = epoch


def _objective(job_return: JobReturn) -> tuple[float | None, str | None]:
    """The job's returned objective (None if it failed or returned no number) and its error."""
    if job_return.status != JobStatus.COMPLETED:
        try:
            job_return.return_value  # raises what the job raised
        except Exception as err:  # noqa: BLE001 - recorded, not handled
            return None, f"{type(err).__name__}: {err}"
        return None, None
    try:
        value = float(job_return.return_value)
    except (TypeError, ValueError):
        return None, None
    return (None if math.isnan(value) else value), None


def finish_job(config: DictConfig, job_return: JobReturn) -> dict[str, Any]:
    """Write the job's record for the sweep's end (and return it); forget the notes."""
    value, error = _objective(job_return)
    if "pruned_at_epoch" in _notes:
        status = "pruned"
    elif value is None:
        status = "failed"
    elif _notes.get("skipped_run_id"):
        status = "skipped"
    else:
        status = "finished"
    record = {
        "num": int(config.hydra.job.num),
        "overrides": [str(o) for o in config.hydra.overrides.task],
        "status": status,
        "objective": value,
        "run_id": _notes.get("skipped_run_id") or _notes.get("run_id"),
        "error": error,
        "seconds": time.time() - _notes.get("started_at", time.time()),
        "worker": os.environ.get(WORKER_ENV, ""),
    }
    folder = jobs_dir(config.hydra)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['num']:05d}.json").write_text(json.dumps(record) + "\n")
    _notes.clear()
    return record


def read_job_records(folder: Path, worker: str | None = None) -> list[dict[str, Any]]:
    """The records finish_job wrote, in job order (unreadable ones left out); only ``worker``'s if given.

    A reused sweep folder, or one shared by several workers of a search, holds
    other processes' records too.
    """
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if worker is None or record.get("worker") == worker:
            records.append(record)
    return records
