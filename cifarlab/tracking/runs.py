"""Writing to a run by its id, through a client, never as this process's active run.

A sweep's parent run and a comparison run are written this way: with Hydra's basic
launcher a sweep's jobs run in the sweep's own process, each making its own run
the active one (``cifarlab.tracking.recorder``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

TAG_LIMIT = 5000  # characters MLflow keeps of a tag value


def create_run(client: Any, experiment_id: str, name: str, tags: Mapping[str, str]) -> str:
    """A new RUNNING run; its id."""
    return client.create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id


def set_tags(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    """Each tag in turn, its value cut to what MLflow keeps."""
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value)[:TAG_LIMIT])


def delete_tag_if_set(client: Any, run_id: str, key: str) -> None:
    if client.get_run(run_id).data.tags.get(key):
        client.delete_tag(run_id, key)


def log_metrics(client: Any, run_id: str, metrics: Mapping[str, float]) -> None:
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


def log_files(client: Any, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    """Each file as an artifact of the run, at its top or under ``artifact_path``."""
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)


def status(client: Any, run_id: str) -> str:
    return client.get_run(run_id).info.status


def reopen(client: Any, run_id: str) -> None:
    """An ended run RUNNING again (a sweep run again continues its parent)."""
    client.update_run(run_id, status="RUNNING")


def end(client: Any, run_id: str, status: str = "FINISHED") -> None:
    client.set_terminated(run_id, status=status)


def delete(client: Any, run_id: str) -> None:
    client.delete_run(run_id)


def record_run(
    client: Any,
    experiment_id: str,
    *,
    name: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    files: list[Path],
) -> str:
    """A run written in one go (tags, metrics, files) and ended FINISHED; FAILED if writing breaks."""
    run_id = create_run(client, experiment_id, name, tags)
    try:
        log_metrics(client, run_id, metrics)
        log_files(client, run_id, files)
    except BaseException:
        end(client, run_id, "FAILED")
        raise
    end(client, run_id, "FINISHED")
    return run_id


def end_orphans(
    client: Any, experiment_id: str, key: str, value: str, gone: Callable[[dict[str, str]], bool]
) -> list[str]:
    """End KILLED each RUNNING run tagged ``key=value`` whose process has ended (``gone`` of its
    tags): what a ``kill -9`` left behind. Returns their ids."""
    query = f"tags.{key} = '{value}' and attributes.status = 'RUNNING'"
    ended = []
    for run in client.search_runs([experiment_id], filter_string=query, max_results=100):
        if gone(dict(run.data.tags)):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    return ended
