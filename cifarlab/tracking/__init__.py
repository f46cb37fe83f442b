"""MLflow tracking: the store (``store``), run identity (``identity``), one run's record (``recorder``).

Nothing here imports TensorFlow, and MLflow only once a store is opened.
"""

from cifarlab.tracking.identity import config_hash, flatten, git_commit
from cifarlab.tracking.recorder import NullRecorder, RunRecorder, ServerGone, open_run
from cifarlab.tracking.store import (
    check_server_reachable,
    open_store,
    prepare_experiment,
    run_status,
    store_client,
    target_from_config,
)
from cifarlab.tracking.target import TrackingTarget, resolve_target

__all__ = [
    "NullRecorder",
    "RunRecorder",
    "ServerGone",
    "check_server_reachable",
    "config_hash",
    "flatten",
    "git_commit",
    "open_run",
    "open_store",
    "prepare_experiment",
    "run_status",
    "store_client",
    "target_from_config",
    "resolve_target",
    "TrackingTarget",
]
