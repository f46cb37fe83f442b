"""MLflow tracking, the one door to the store: every read and write of a run goes through here.

- ``target`` and ``store``: where runs go (URI, experiment), opening the store;
- ``identity``: what makes two runs the same run (config hash, params);
- ``provenance``: what a run was made with (the code's state, the installed packages);
- ``recorder``: one run's record, written as the process's active run (``Recorder``);
- ``runs``: writing to a run by its id (a sweep's parent, a comparison run);
- ``queries``: reading runs, their children, metric histories, artifacts, logged models;
- ``sweep_runs``: a sweep's parent run and the tags of its jobs' runs;
- ``registry``: registered models and their aliases; ``models``: a run's Keras model.

Nothing here imports TensorFlow, and MLflow only once a store is opened.
"""

from cifarlab.tracking.identity import config_hash, flatten
from cifarlab.tracking.provenance import git_commit
from cifarlab.tracking.recorder import DatasetInput, NullRecorder, Recorder, RunRecorder, ServerGone, open_run
from cifarlab.tracking.store import (
    check_server_reachable,
    connect,
    open_store,
    prepare_experiment,
    previous_overrides,
    run_status,
    store_client,
    target_from_config,
    unfinished_run,
)
from cifarlab.tracking.target import TrackingTarget, resolve_target, resolve_uri

__all__ = [
    "DatasetInput",
    "NullRecorder",
    "Recorder",
    "RunRecorder",
    "ServerGone",
    "check_server_reachable",
    "config_hash",
    "connect",
    "flatten",
    "git_commit",
    "open_run",
    "open_store",
    "prepare_experiment",
    "previous_overrides",
    "run_status",
    "store_client",
    "target_from_config",
    "resolve_target",
    "resolve_uri",
    "TrackingTarget",
    "unfinished_run",
]
