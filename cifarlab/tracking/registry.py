"""Registered models: which run made a ``models:/`` version, a run's model as a version, aliases.

Each function takes a client on the store (``cifarlab.tracking.store``). Registering
a training run's own model as it ends is ``cifarlab.tracking.models.register_model``.
"""

from __future__ import annotations

from typing import Any

from cifarlab.errors import ConfigError

MODEL_NAME = "model"  # the name training logs a run's model under: runs:/<run id>/model


def registered_run_id(client: Any, model_uri: str, key: str = "model") -> str:
    """The training run behind ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    from mlflow.exceptions import MlflowException

    name, sep, rest = model_uri.removeprefix("models:/").partition("@")
    try:
        if sep:
            version = client.get_model_version_by_alias(name, rest)
        else:
            name, _, number = model_uri.removeprefix("models:/").partition("/")
            version = client.get_model_version(name, number)
    except MlflowException:
        raise ConfigError(
            key,
            model_uri,
            "give models:/<name>@<alias> or models:/<name>/<version> of a "
            "registered model (mlflow ui, Models tab)",
            "is not a registered model",
        ) from None
    if not model_uri.startswith("models:/") or not version.run_id:
        raise ConfigError(key, model_uri, "give a registered model made by a cifarlab training run")
    return version.run_id


def run_model_version(client: Any, experiment_id: str, name: str, run_id: str) -> str | None:
    """The version of ``name`` that holds the run's model: the one its run registered, else a new one
    (None when the run logged no model)."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if versions:
        return str(max(int(v.version) for v in versions))
    model = run_logged_model(client, experiment_id, run_id)
    if model is None:
        return None
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(
        client.create_model_version(
            name, f"models:/{model.model_id}", run_id, model_id=model.model_id
        ).version
    )


def run_logged_model(client: Any, experiment_id: str, run_id: str) -> Any | None:
    """The model the run logged as ``model`` (``runs:/<run id>/model``); None if it has none."""
    logged = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}' and name = '{MODEL_NAME}'"
    )
    return logged[0] if logged else None


def set_alias(client: Any, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)
