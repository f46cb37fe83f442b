"""The hooks a sweep job hands to ``train``: its parent run, skip-if-finished, pruning callbacks."""

from __future__ import annotations

from omegaconf import DictConfig

from cifarlab.sweeps.record import finished_run, job_callbacks, parent_run_id
from cifarlab.training.hooks import RunHooks


def job_hooks(cfg: DictConfig) -> RunHooks:
    """RunHooks for this process's job: defaults outside a sweep or with tracking off."""
    parent = parent_run_id() if cfg.tracking.enabled else None
    if parent is None:
        return RunHooks()
    return RunHooks(
        parent_run_id=parent,
        finished_run=(lambda c, key: None) if cfg.tracking.rerun_finished else finished_run,
        callbacks=job_callbacks,
    )
