"""The sweep's champion: its best model registered as a version of ``tracking.register_as``, aliased ``champion``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from cifarlab.reports.leaderboard import Row
from cifarlab.sweeps.outcome import SweepOutcome
from cifarlab.tracking import queries, registry, runs

CHAMPION = "champion"  # the alias a sweep with tracking.register_as sets on its best model


def champion_row(outcome: SweepOutcome) -> Row | None:
    """The best run of the best config by mean over its seeds, else the best job."""
    group = outcome.best_config
    if group is not None:
        scored = [r for r in group.finished if r.objective is not None]
        if scored:
            return scored[0]
    return outcome.best


def register_champion(client: Any, config: DictConfig, parent_run_id: str, outcome: SweepOutcome) -> None:
    """The sweep's best model as a version of ``tracking.register_as``, with the alias ``champion``."""
    name, best = str(config.tracking.register_as), champion_row(outcome)
    version = None
    if best is not None:
        experiment_id = queries.known_experiment_id(client, config.tracking.experiment)
        version = registry.run_model_version(client, experiment_id, name, best.run_id)
    if version is None:
        print(f"cifarlab: sweep: no logged model of a finished job to register as {name}", flush=True)
        return
    registry.set_alias(client, name, CHAMPION, version)
    runs.set_tags(
        client, parent_run_id, {"registered_model": f"models:/{name}@{CHAMPION} (version {version})"}
    )
    print(f"cifarlab: registered model {name} version {version} as models:/{name}@{CHAMPION}", flush=True)
