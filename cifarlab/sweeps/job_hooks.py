"""What one sweep job asks of its sweep, as the ``RunHooks`` the CLI hands to ``train``.

- ``parent_run_id``: the sweep's parent MLflow run, to nest the job's run under;
- ``finished_run``: an earlier FINISHED run of the same config, which the job then skips;
- ``job_callbacks``: Keras callbacks the job adds (Optuna pruning), and the tags
  that tie its run to the sweep (job number, Optuna trial);
- ``job_run_name``: the run's name, from the overrides the sweep varies
  (``mlp-synthetic optimizer=adam``), so its jobs can be told apart.

Outside a sweep, or with tracking off, a run gets the defaults. MLflow is imported
only where a sweep job talks to its store (a run with tracking off never imports it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from omegaconf import DictConfig

from cifarlab import tracking
from cifarlab.config.compose import override_key
from cifarlab.sweeps import job, study
from cifarlab.training.run_hooks import RunHooks

RUN_NAME_LIMIT = 250  # MLflow's limit on a run name


def _client(tracking_uri: str) -> Any:
    return tracking.store_client(tracking_uri)


def parent_run_id() -> str | None:
    """The MLflow run id of the sweep this job belongs to; None outside a sweep."""
    hydra_cfg = job.multirun_hydra()
    if hydra_cfg is None:
        return None
    return job.read_sweep_state(hydra_cfg).get("parent_run_id") or None


def job_run_name(cfg: DictConfig) -> str | None:
    """``<model>-<dataset>`` and this job's values of the swept keys; None outside a sweep or without any."""
    hydra_cfg = job.multirun_hydra()
    if hydra_cfg is None:
        return None
    swept = set(job.read_sweep_state(hydra_cfg).get("swept_keys") or [])
    values = [str(o) for o in hydra_cfg.overrides.task if override_key(str(o)) in swept]
    if not values:
        return None
    return f"{cfg.model.name}-{cfg.dataset.name} {' '.join(values)}"[:RUN_NAME_LIMIT]


def finished_run(cfg: DictConfig, config_hash: str) -> Any | None:
    """A FINISHED (not pruned) run of this sweep's experiment with the same config hash, if any."""
    uri = tracking.target_from_config(cfg).uri
    client = _client(uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    runs = [run for run in runs if run.data.tags.get("pruned") != "true"]  # pruned: ended early, not done
    if not runs:
        return None
    job.note_skipped(runs[0].info.run_id)
    trial = job.trial_id()
    if trial is not None:  # the trial knows the run it reuses; that run belongs to another trial: no tags
        study.note_trial_run(trial, runs[0].info.run_id)
    return runs[0]


def _active_run_id() -> str | None:
    mlflow = sys.modules.get("mlflow")  # tracking off: MLflow may not even be imported
    run = mlflow.active_run() if mlflow is not None else None
    return run.info.run_id if run is not None else None


def _tag_job_run(run_id: str, tracking_uri: str, job_num: int) -> None:
    """Tie the job's run to the sweep: its job number, and its Optuna trial both ways."""
    client = _client(tracking_uri)
    client.set_tag(run_id, "sweep_job", str(job_num))
    worker = os.environ.get(job.WORKER_ENV)
    if worker:  # which worker of a search ran it (host-pid-start)
        client.set_tag(run_id, "sweep_worker", worker)
    trial = job.trial_id()
    if trial is None:
        return
    number, study_name = study.note_trial_run(trial, run_id)
    client.set_tag(run_id, "optuna_trial", str(number))
    client.set_tag(run_id, "optuna_study", study_name)
    if client.get_run(run_id).data.tags.get("pruned"):  # a resumed run that was pruned before
        client.delete_tag(run_id, "pruned")


def tag_job_run(cfg: DictConfig, run_id: str) -> None:
    """Once the job's run is open (new, or resumed from a job that died): tie it to this job and trial."""
    hydra_cfg = job.multirun_hydra()
    if hydra_cfg is not None and job.note_run(run_id):
        _tag_job_run(run_id, tracking.target_from_config(cfg).uri, int(hydra_cfg.job.num))


def job_callbacks(cfg: DictConfig) -> list:
    """Extra Keras callbacks a sweep job needs (Optuna pruning); called inside the job's open run, once per stage."""
    trial = job.trial_id()
    if job.multirun_hydra() is None or trial is None:
        return []
    uri = tracking.target_from_config(cfg).uri
    run_id = _active_run_id()

    def on_prune(epoch: int) -> None:
        job.note_pruned(epoch)
        if run_id:
            client = _client(uri)
            client.set_tag(run_id, "pruned", "true")
            client.set_tag(run_id, "pruned_at_epoch", str(epoch + 1))

    return [study.pruning_callback(trial, on_prune=on_prune)]


def job_hooks(cfg: DictConfig) -> RunHooks:
    """RunHooks for this process's job: defaults outside a sweep or with tracking off."""
    parent = parent_run_id() if cfg.tracking.enabled else None
    if parent is None:
        return RunHooks()
    return RunHooks(
        parent_run_id=parent,
        finished_run=(lambda c, key: None) if cfg.tracking.rerun_finished else finished_run,
        callbacks=job_callbacks,
        on_run_open=tag_job_run,
        run_name=job_run_name(cfg),
    )
