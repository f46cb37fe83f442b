"""The options that name the MLflow store a model was trained into, for predict and export.

``tracking.uri=`` and ``paths.mlruns_dir=``, as the training config spells them;
``store_uri`` turns them into the store's URI (``cifarlab.tracking.target.resolve_uri``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from cifarlab.tracking.target import resolve_uri


@dataclass
class TrackingOptions:
    """``tracking.*`` of the inference commands (predict, export)."""

    # None: $MLFLOW_TRACKING_URI if set, else sqlite:///<paths.mlruns_dir>/mlflow.db
    uri: Optional[str] = None


@dataclass
class PathsOptions:
    """``paths.*`` of the inference commands: where the default SQLite store lives."""

    mlruns_dir: str = "mlruns"


def store_uri(options: Any) -> str:
    """The store an inference command's ``tracking.uri`` / ``paths.mlruns_dir`` options name."""
    return resolve_uri(options.tracking.uri, options.paths.mlruns_dir)
