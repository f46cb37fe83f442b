"""Where a run is recorded: the store's URI and the experiment, worked out once from the config.

``resolve_target`` is the one place that turns ``tracking.*`` and ``paths.mlruns_dir``
into a URI; everything after it passes the ``TrackingTarget`` on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERVER_SCHEMES = ("http://", "https://", "databricks")


@dataclass(frozen=True)
class TrackingTarget:
    """A store (``uri``) and an experiment in it; ``enabled=False`` records nothing."""

    uri: str
    experiment: str = "cifarlab"
    enabled: bool = True
    # Local stores keep artifacts beside the database (mlruns_dir/artifacts); a server decides.
    artifact_location: str | None = None
    system_metrics: bool = True

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(SERVER_SCHEMES)


def resolve_uri(uri: str | None, mlruns_dir: str | os.PathLike) -> str:
    """``uri``, else $MLFLOW_TRACKING_URI, else SQLite under ``mlruns_dir``."""
    if uri:
        return str(uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = Path(mlruns_dir).expanduser().resolve() / "mlflow.db"
    return f"sqlite:///{db}"


def local_artifact_location(uri: str, mlruns_dir: str | os.PathLike) -> str | None:
    """``mlruns_dir/artifacts`` for a local store; None for a server, which decides for itself."""
    if uri.startswith(SERVER_SCHEMES):
        return None
    return (Path(mlruns_dir).expanduser().resolve() / "artifacts").as_uri()


def resolve_target(
    uri: str | None,
    mlruns_dir: str | os.PathLike,
    experiment: str = "cifarlab",
    *,
    enabled: bool = True,
    system_metrics: bool = True,
) -> TrackingTarget:
    """The target of ``tracking.uri`` / ``tracking.experiment`` under ``paths.mlruns_dir``."""
    resolved = resolve_uri(uri, mlruns_dir)
    return TrackingTarget(
        uri=resolved,
        experiment=experiment,
        enabled=enabled,
        artifact_location=local_artifact_location(resolved, mlruns_dir),
        system_metrics=system_metrics,
    )
