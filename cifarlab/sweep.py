"""Multirun record: the parent run of a sweep, and what one job needs to know about it.

(Filled in by the sweeps work: parent run, leaderboard, skip-on-rerun, pruning.)
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def parent_run_id() -> str | None:
    """The MLflow run id of the sweep this job belongs to; None outside a sweep."""
    return None


def finished_run(cfg: DictConfig, config_hash: str) -> Any | None:
    """A FINISHED run of this sweep's experiment with the same config hash, if any."""
    return None


def job_callbacks(cfg: DictConfig) -> list:
    """Extra Keras callbacks a sweep job needs (e.g. Optuna pruning)."""
    return []
