"""The Hydra plugin class; the work is in ``_impl`` (imported only when a sweep runs)."""

from __future__ import annotations

from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import CifarlabOptunaSweeperConf  # noqa: F401  (registers the configs)


class CifarlabOptunaSweeper(Sweeper):
    """``hydra/sweeper=cifarlab_optuna``: an Optuna study, ``repeats`` Hydra jobs (seeds) per trial."""

    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: str,
        storage: Optional[str],
        study_name: Optional[str],
        n_trials: int,
        n_jobs: Optional[int],
        params: Optional[DictConfig],
        repeats: int = 1,
        heartbeat_interval: int = 15,
        grace_period: int = 60,
        max_retry: int = 3,
    ) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(
            sampler=sampler,
            pruner=pruner,
            direction=direction,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs,
            params=params,
            repeats=repeats,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            max_retry=max_retry,
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
