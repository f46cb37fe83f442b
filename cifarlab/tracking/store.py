"""Where runs are stored: the tracking URI, the store's artifact location, the experiment.

Every caller that needs the store asks ``tracking_uri`` here. MLflow is imported
only when a store is opened.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from omegaconf import DictConfig

from cifarlab.errors import CifarlabError


def tracking_uri(cfg: DictConfig) -> str:
    """``tracking.uri``, else $MLFLOW_TRACKING_URI, else SQLite under ``paths.mlruns_dir``."""
    if cfg.tracking.get("uri"):
        return str(cfg.tracking.uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = Path(cfg.paths.mlruns_dir).expanduser().resolve() / "mlflow.db"
    return f"sqlite:///{db}"


def default_artifact_location(cfg: DictConfig, uri: str) -> str | None:
    """Local stores keep artifacts beside the database; a server decides for itself."""
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (Path(cfg.paths.mlruns_dir).expanduser().resolve() / "artifacts").as_uri()


def check_server_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail before training, in one line, when an MLflow server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            pass
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CifarlabError(
            f"tracking.uri={uri!r} cannot be reached ({reason}); start the server "
            "(mlflow server ...) or choose another store, e.g. tracking.uri=sqlite:///mlruns/mlflow.db"
        ) from None


def prepare_experiment(cfg: DictConfig) -> str:
    """Point MLflow at the store, create it and the experiment once, and return its id."""
    import mlflow

    uri = tracking_uri(cfg)
    check_server_reachable(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    name = cfg.tracking.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(cfg, uri))
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
