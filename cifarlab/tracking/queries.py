"""Reading the store: runs, their children and metric histories, artifacts, logged models.

Each function takes the client of an open store (``cifarlab.tracking.store``), or
reads the store MLflow points at (``connect`` sets it); none writes. MLflow is
imported inside the functions that need it (see ``cifarlab.tracking.recorder``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError, ConfigError, first_line

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
PAGE = 1000  # runs per page of a search


def get_run(client: Any, run_id: str, key: str = "run") -> Any:
    """The MLflow run ``run_id``, or a one-line error naming the option ``key`` that gave it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as err:
        if getattr(err, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise CifarlabError(f"{key}={run_id!r}: MLflow answered: {first_line(err)}") from None
    hint = "" if RUN_ID.match(run_id) else " (run ids are 32 hex characters)"
    raise ConfigError(
        key,
        run_id,
        f"copy the id from the training output or the MLflow UI (mlflow ui --backend-store-uri "
        f"{client.tracking_uri})",
        problem=f"is not a run in {client.tracking_uri}{hint}",
    )


def search_all(client: Any, experiment_ids: list[str], filter_string: str) -> list:
    """Every matching run, page after page (a sweep may have any number of jobs)."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def child_runs(client: Any, experiment_id: str, parent_run_id: str, status: str | None = None) -> list:
    """The runs nested under ``parent_run_id`` (a sweep's jobs), only those in ``status`` if given."""
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    if status is not None:
        query += f" and attributes.status = '{status}'"
    return search_all(client, [experiment_id], query)


def experiment_id(client: Any, name: str) -> str | None:
    """The id of experiment ``name``; None when the store has none of that name."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else None


def known_experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, which the store must have (a sweep's, once its parent run is open)."""
    found = experiment_id(client, name)
    if found is None:
        raise CifarlabError(f"tracking.experiment={name!r} is not in the store at {client.tracking_uri}")
    return found


def experiment_name(client: Any, experiment_id: str) -> str:
    return client.get_experiment(experiment_id).name


def runs_with_tag(
    client: Any, experiment_id: str, key: str, value: str, *, max_results: int, finished: bool = True
) -> list:
    """Runs tagged ``key=value`` (FINISHED ones only, unless ``finished`` is false), newest first."""
    query = f"tags.{key} = '{value}'" + (" and attributes.status = 'FINISHED'" if finished else "")
    return client.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=max_results
    )


def metric_history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    """Every (step, value) the run logged for ``key``, by step."""
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [(m.step, m.value) for m in history]


def dataset_digest(run: Any, context: str) -> str | None:
    """The digest of the dataset a run logged with ``context`` (``test``...), or None when it logged none."""
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == context for t in item.tags):
            return item.dataset.digest
    return None


def download_run_artifact(run_id: str, artifact_path: str, dst_path: str) -> Path | None:
    """A run's artifact downloaded into ``dst_path``, or None when the run has no such artifact."""
    import mlflow

    try:
        return Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst_path)
        )
    except Exception:  # MlflowException or OSError: the artifact is not there; callers fall back
        return None


def artifact_paths(client: Any, run_id: str, folder: str) -> list[str]:
    """The paths of the artifacts directly in ``folder`` of the run."""
    return [a.path for a in client.list_artifacts(run_id, folder)]


def download_artifact(client: Any, run_id: str, artifact_path: str, dst_path: str) -> Path | None:
    """``download_run_artifact`` through ``client`` (its store, whatever MLflow's default is)."""
    try:
        return Path(client.download_artifacts(run_id, artifact_path, dst_path))
    except Exception:  # MlflowException or OSError: the artifact is not there; callers fall back
        return None


def model_info(uri: str) -> Any:
    """``mlflow.models.get_model_info`` of a logged model's URI; raises what MLflow raises."""
    import mlflow

    return mlflow.models.get_model_info(uri)
