"""What one sweep job asks of its sweep, as the ``RunHooks`` the CLI hands to ``train``.

The job learns its sweep from the sweep's ``SweepTicket`` and notes what becomes
of it in its ``JobReport`` (``cifarlab.sweeps.contract``):

- ``parent_run_id``: the sweep's parent MLflow run, to nest the job's run under;
- ``finished_run``: an earlier FINISHED run of the same config, which the job then
  skips (noted: skipped, and the run it reuses);
- ``on_run_open``: tags that tie the job's run to the sweep (job number, worker,
  Optuna trial) once it is open (noted: the job's run);
- ``callbacks``: Keras callbacks the job adds (Optuna pruning; noted: pruned);
- ``run_name``: the run's name, from the overrides the sweep varies
  (``mlp-synthetic optimizer=adam``), so its jobs can be told apart.

Outside a sweep, or with tracking off, a run gets the defaults. The store is
reached through ``cifarlab.tracking``, which imports MLflow only when a job uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from cifarlab import tracking
from cifarlab.config.compose import compact_run_name, override_key
from cifarlab.sweeps import job, study
from cifarlab.sweeps.contract import SweepTicket, read_ticket
from cifarlab.tracking import sweep_runs
from cifarlab.training.run_hooks import RunHooks


@dataclass
class SweepJob:
    """The sweep job running in this process: its sweep's ticket, its Hydra job config and its store."""

    ticket: SweepTicket
    hydra_cfg: DictConfig
    tracking_uri: str
    experiment: str
    run_id: str | None = None  # the job's run, once open

    @property
    def num(self) -> int:
        return int(self.hydra_cfg.job.num)

    @property
    def trial(self) -> int | None:
        """The Optuna trial this job runs; None outside a search with a storage."""
        return self.ticket.study.trial_number(self.num) if self.ticket.study is not None else None

    def run_name(self, model: str, dataset: str) -> str | None:
        """This job's values of the swept keys, then ``<model>-<dataset>``; None without any."""
        swept = set(self.ticket.swept_keys)
        values = [str(o) for o in self.hydra_cfg.overrides.task if override_key(str(o)) in swept]
        return compact_run_name(f"{model}-{dataset}", values) if values else None

    def finished_run(self, config_hash: str) -> Any | None:
        """A FINISHED (not pruned) run of the experiment with the same config hash, if any: the job skips."""
        client = tracking.store_client(self.tracking_uri)
        run = sweep_runs.finished_run(client, self.experiment, config_hash)
        if run is not None:  # the trial records the run it reuses; that run belongs to another: no tags
            job.note_job(self.hydra_cfg, run_id=run.info.run_id, skipped=True)
        return run

    def on_run_open(self, run_id: str | None) -> None:
        """Once the job's run is open (new, or resumed from a job that died): tie it to this job and trial."""
        if run_id is None or run_id == self.run_id:  # a run with several stages opens once
            return
        self.run_id = run_id
        job.note_job(self.hydra_cfg, run_id=run_id)
        tags = {"sweep_job": str(self.num)}
        if self.ticket.worker:  # which worker of a search ran it (host-pid-start)
            tags["sweep_worker"] = self.ticket.worker
        if self.trial is not None and self.ticket.study is not None:
            tags["optuna_trial"] = str(self.trial)
            tags["optuna_study"] = study.study_name(self.ticket.study)
        sweep_runs.tag_job_run(tracking.store_client(self.tracking_uri), run_id, tags)

    def callbacks(self) -> list:
        """Extra Keras callbacks (Optuna pruning); asked for inside the job's open run, once per stage."""
        if self.trial is None or self.ticket.study is None:
            return []
        return [study.pruning_callback(self.ticket.study, self.trial, on_prune=self._on_prune)]

    def _on_prune(self, epoch: int) -> None:
        job.note_job(self.hydra_cfg, pruned_at_epoch=epoch)
        if self.run_id:
            sweep_runs.tag_pruned(tracking.store_client(self.tracking_uri), self.run_id, epoch)


def current_job(cfg: DictConfig) -> SweepJob | None:
    """This process's sweep job, when it runs one with tracking on (its sweep has a parent run)."""
    hydra_cfg = job.multirun_hydra()
    if hydra_cfg is None or not cfg.tracking.enabled:
        return None
    ticket = read_ticket()
    if ticket is None or ticket.parent_run_id is None:
        return None
    return SweepJob(ticket, hydra_cfg, tracking.target_from_config(cfg).uri, str(cfg.tracking.experiment))


def job_hooks(cfg: DictConfig) -> RunHooks:
    """RunHooks for this process's job: defaults outside a sweep or with tracking off."""
    sweep_job = current_job(cfg)
    if sweep_job is None:
        return RunHooks()
    return RunHooks(
        parent_run_id=sweep_job.ticket.parent_run_id,
        finished_run=(lambda key: None) if cfg.tracking.rerun_finished else sweep_job.finished_run,
        callbacks=sweep_job.callbacks,
        on_run_open=sweep_job.on_run_open,
        run_name=sweep_job.run_name(str(cfg.model.name), str(cfg.dataset.name)),
        search_trial=sweep_job.trial is not None,
    )
