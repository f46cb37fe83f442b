"""Multirun record: the parent run of a sweep, and what one job needs to know about it.

``python -m cifarlab -m ...`` runs every job of a sweep as a child of one MLflow
parent run. ``SweepRecord`` (a Hydra callback, ``hydra.callbacks.cifarlab_sweep``)
does the sweep-level work in the process that runs the sweeper:

- ``on_multirun_start``: create the store and experiment once, before any job
  starts; create the parent run, or reopen it when the same sweep command runs
  again (same ``sweep_hash`` tag); write its id to ``<sweep dir>/.cifarlab/sweep.json``
  and ``$CIFARLAB_SWEEP_PARENT_RUN_ID`` so jobs in other processes (joblib,
  submitit) find it.
- ``on_job_start`` / ``on_job_end`` (in the job's process): note what became of
  the job (ran, skipped, failed, pruned) in ``<sweep dir>/.cifarlab/jobs/<num>.json``.
- ``on_multirun_end``: leaderboard, figures, best run, Optuna plots on the
  parent; end it FINISHED; print how many jobs were skipped, ran, failed.

A sweep that dies before its end leaves the parent KILLED (an exit handler); the
same command run again reopens it. The functions below are what ``train.py``
asks of the sweep. This module imports neither TensorFlow nor MLflow at import
time: Hydra instantiates the callback for every run.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cifarlab.errors import CifarlabError

PARENT_ENV = "CIFARLAB_SWEEP_PARENT_RUN_ID"
# Set per job by the cifarlab_optuna sweeper (hydra.job.env_set): the Optuna trial this job is.
TRIAL_ENV = "CIFARLAB_OPTUNA_TRIAL_ID"
STATE_DIR = ".cifarlab"  # inside the sweep dir
# Overrides that do not change which sweep this is.
_NOT_SWEEP_IDENTITY = ("tracking.rerun_finished", "tracking.tags", "trainer.verbose")


class RunPruned(CifarlabError):
    """Optuna pruned this job; its MLflow run ends KILLED with the tag ``pruned=true``."""

    run_status = "KILLED"


# What the job running in this process did (reset by on_job_start, written by on_job_end).
_job: dict[str, Any] = {}


# --- what a job asks --------------------------------------------------------------------------


def _multirun_hydra() -> DictConfig | None:
    """This job's Hydra config when it is one job of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

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


def parent_run_id() -> str | None:
    """The MLflow run id of the sweep this job belongs to; None outside a sweep."""
    hydra_cfg = _multirun_hydra()
    if hydra_cfg is None:
        return None
    try:
        record = json.loads((sweep_dir(hydra_cfg) / STATE_DIR / "sweep.json").read_text())
        return record.get("parent_run_id") or None
    except (OSError, ValueError):
        return os.environ.get(PARENT_ENV) or None


def finished_run(cfg: DictConfig, config_hash: str) -> Any | None:
    """A FINISHED run of this sweep's experiment with the same config hash, if any."""
    import mlflow

    from cifarlab import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    _job["skipped_run_id"] = runs[0].info.run_id
    _optuna_note_run(runs[0].info.run_id, tracking.tracking_uri(cfg), tag_run=False)
    return runs[0]


def job_callbacks(cfg: DictConfig) -> list:
    """Extra Keras callbacks a sweep job needs (e.g. Optuna pruning).

    Called inside the job's open MLflow run (once per training stage).
    """
    hydra_cfg = _multirun_hydra()
    if hydra_cfg is None:
        return []
    from cifarlab import tracking

    uri = tracking.tracking_uri(cfg)
    run_id = _active_run_id()
    if run_id and _job.get("run_id") != run_id:
        import mlflow

        _job["run_id"] = run_id
        mlflow.MlflowClient(uri).set_tag(run_id, "sweep_job", str(hydra_cfg.job.num))
        _optuna_note_run(run_id, uri)
    trial_id = _trial_id()
    if trial_id is None:
        return []
    from cifarlab.sweeps.study import pruning_callback

    return [pruning_callback(trial_id, run_id=run_id, tracking_uri=uri, on_prune=_mark_pruned)]


def _active_run_id() -> str | None:
    import sys

    mlflow = sys.modules.get("mlflow")  # tracking off: MLflow may not even be imported
    run = mlflow.active_run() if mlflow is not None else None
    return run.info.run_id if run is not None else None


def _trial_id() -> int | None:
    if _multirun_hydra() is None or not os.environ.get(TRIAL_ENV):
        return None
    return int(os.environ[TRIAL_ENV])


def _optuna_note_run(run_id: str, tracking_uri: str, *, tag_run: bool = True) -> None:
    """Cross-reference an Optuna trial and its MLflow run (tags on the run, a user attr on the trial)."""
    trial_id = _trial_id()
    if trial_id is None:
        return
    from cifarlab.sweeps.study import note_run

    note_run(trial_id, run_id, tracking_uri, tag_run=tag_run)


def _mark_pruned(epoch: int) -> None:
    _job["pruned_at_epoch"] = epoch


# --- sweep identity ---------------------------------------------------------------------------


def _override_key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def sweep_hash(config: DictConfig) -> str:
    """What identifies a sweep: its sweeper, search space and task overrides (not its budget or launcher)."""
    sweeper = config.hydra.sweeper
    task = sorted(
        str(o) for o in config.hydra.overrides.task if _override_key(str(o)) not in _NOT_SWEEP_IDENTITY
    )
    params = sweeper.get("params")
    identity = {
        "sweeper": str(sweeper.get("_target_")),
        "params": OmegaConf.to_container(params, resolve=False) if params is not None else None,
        "study": sweeper.get("study_name"),
        "task": task,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- the Hydra callback -----------------------------------------------------------------------


def _interrupt_on_sigterm() -> None:
    """SIGTERM (scheduler, kill) ends the sweep like Ctrl-C: runs and parent end KILLED, not RUNNING."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


def _is_multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode

    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


class SweepRecord(Callback):
    """The MLflow parent run of a multirun and its leaderboard (see the module docstring)."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self._closed = False

    # Jobs of joblib/submitit get a pickled copy of this object: it holds only plain values.

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from cifarlab.sweeps import leaderboard as sweep_report

        folder = sweep_dir(config.hydra)
        state = folder / STATE_DIR
        (state / "jobs").mkdir(parents=True, exist_ok=True)
        for stale in (state / "jobs").glob("*.json"):  # a fixed hydra.sweep.dir reused
            stale.unlink()
        try:
            self.parent_run_id = sweep_report.open_parent(config, sweep_hash(config))
        except CifarlabError as err:
            import sys

            print(f"cifarlab: error: {err}", file=sys.stderr)
            sys.exit(1)
        (state / "sweep.json").write_text(
            json.dumps({"parent_run_id": self.parent_run_id, "sweep_hash": sweep_hash(config)}) + "\n"
        )
        os.environ[PARENT_ENV] = self.parent_run_id
        self._closed = False
        atexit.register(self._abandon, config)
        _interrupt_on_sigterm()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_run_id is None:
            return
        from cifarlab.sweeps import leaderboard as sweep_report

        try:
            sweep_report.close_parent(config, self.parent_run_id, sweep_dir(config.hydra) / STATE_DIR / "jobs")
        finally:
            self._closed = True
            os.environ.pop(PARENT_ENV, None)

    def _abandon(self, config: DictConfig) -> None:
        """At exit without on_multirun_end (the sweep raised or was interrupted): parent KILLED."""
        if self._closed or self.parent_run_id is None:
            return
        try:
            from cifarlab.sweeps import leaderboard as sweep_report

            sweep_report.abandon_parent(config, self.parent_run_id)
        except Exception as err:  # noqa: BLE001 - the process is exiting anyway
            print(f"cifarlab: could not mark sweep run {self.parent_run_id} KILLED: {err}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        _job.clear()
        _job["started_at"] = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        from hydra.core.utils import JobStatus

        value = None
        error = None
        if job_return.status == JobStatus.COMPLETED:
            value = job_return.return_value
        else:
            error = f"{type(job_return._return_value).__name__}: {job_return._return_value}"
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = None
        if "pruned_at_epoch" in _job:
            status = "pruned"
        elif value is None or math.isnan(value):
            status = "failed"
        elif _job.get("skipped_run_id"):
            status = "skipped"
        else:
            status = "finished"
        record = {
            "num": int(config.hydra.job.num),
            "overrides": [str(o) for o in config.hydra.overrides.task],
            "status": status,
            "objective": value if value is not None and not math.isnan(value) else None,
            "run_id": _job.get("skipped_run_id") or _job.get("run_id"),
            "error": error,
            "seconds": time.time() - _job.get("started_at", time.time()),
        }
        folder = sweep_dir(config.hydra) / STATE_DIR / "jobs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{record['num']:05d}.json").write_text(json.dumps(record) + "\n")
        _job.clear()
