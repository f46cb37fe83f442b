"""The MLflow store a model was trained into: its URI, a client for it, a run in it.

MLflow is imported inside these functions, not at the top: argument checks
that never reach the store stay fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from cifarlab import tracking
from cifarlab.errors import CifarlabError, ConfigError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class TrackingOptions:
    """``tracking.*`` of the inference commands (predict, export)."""

    # None: $MLFLOW_TRACKING_URI if set, else sqlite:///<paths.mlruns_dir>/mlflow.db
    uri: Optional[str] = None


@dataclass
class PathsOptions:
    """``paths.*`` of the inference commands: where the default SQLite store lives."""

    mlruns_dir: str = "mlruns"


def first_line(err: BaseException) -> str:
    """An exception's first line, for one-line error messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_tracking_uri(uri: str | None = None, mlruns_dir: str = "mlruns") -> str:
    """The store training used: ``uri``, else $MLFLOW_TRACKING_URI, else SQLite in ``mlruns_dir``."""
    cfg = OmegaConf.create({"tracking": {"uri": uri}, "paths": {"mlruns_dir": mlruns_dir}})
    return tracking.target_from_config(cfg).uri


def connect(uri: str) -> Any:
    """An MlflowClient for ``uri`` (also MLflow's default store); fails in one line when the store is not there."""
    import mlflow

    # Inference downloads artifacts (models, reports) that MLflow would show with
    # progress bars; a user set the variable keeps their setting.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking.check_server_reachable(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise CifarlabError(
                f"no MLflow store at {db} (tracking.uri={uri!r}); run from the folder you trained in, "
                "or set tracking.uri=... (or paths.mlruns_dir=...) to where the runs are"
            )
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def get_run(client: Any, run_id: str, key: str = "run") -> Any:
    """The MLflow run ``run_id``, or a one-line error naming ``key``."""
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


def download_run_artifact(run_id: str, artifact_path: str, dst_path: str) -> Path | None:
    """A run's artifact downloaded into ``dst_path``, or None when the run has no such artifact."""
    import mlflow

    try:
        return Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst_path)
        )
    except Exception:  # MlflowException or OSError: the artifact is not there; callers fall back
        return None
