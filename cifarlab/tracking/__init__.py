"""MLflow tracking: the store (``store``), run identity (``identity``), one run's record (``recorder``).

Nothing here imports TensorFlow, and MLflow only once a store is opened.
"""

from cifarlab.tracking.identity import config_hash, flatten, git_commit
from cifarlab.tracking.recorder import NullRecorder, RunRecorder, ServerGone, open_run
from cifarlab.tracking.store import (
    check_server_reachable,
    default_artifact_location,
    open_store,
    prepare_experiment,
    run_status,
    store_client,
    tracking_uri,
)

__all__ = [
    "NullRecorder",
    "RunRecorder",
    "ServerGone",
    "check_server_reachable",
    "config_hash",
    "default_artifact_location",
    "flatten",
    "git_commit",
    "open_run",
    "open_store",
    "prepare_experiment",
    "run_status",
    "store_client",
    "tracking_uri",
]
