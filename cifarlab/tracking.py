"""MLflow: where runs are stored, and one run's record (params, tags, metrics, artifacts).

Imports no TensorFlow. ``RunRecorder`` is the only object that writes to MLflow;
with tracking off it is ``NullRecorder``, which accepts the same calls and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from cifarlab.errors import CifarlabError
from cifarlab.locations import checkout_dir

# Config keys that do not change what a run computes: left out of its identity.
_IDENTITY_EXCLUDES = ("paths", "tracking")
# Keys that change how fast a run goes, not what it learns: a run resumed or re-swept with
# another value is the same run (and runs recorded before the key existed keep their hash).
_SPEED_ONLY_TRAINER_KEYS = ("input_parallelism",)


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


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists stay whole values (``model.filters=[32, 64]``)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_hash(cfg: DictConfig) -> str:
    """A short fingerprint of everything that changes what the run computes."""
    resolved = OmegaConf.to_container(cfg, resolve=False)
    identity = {k: v for k, v in resolved.items() if k not in _IDENTITY_EXCLUDES}
    if isinstance(identity.get("trainer"), dict):
        identity["trainer"] = {k: v for k, v in identity["trainer"].items() if k not in _SPEED_ONLY_TRAINER_KEYS}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str | None:
    root = checkout_dir()
    if root is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


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


class NullRecorder:
    """Tracking switched off: the same calls as RunRecorder, recording nothing."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_keras_model(self, model: Any, **kwargs: Any) -> None: ...

    def metric_history(self, key: str) -> dict[int, float]:
        return {}


class RunRecorder(NullRecorder):
    """One MLflow run, made the active run of this process."""

    def __init__(self, run_id: str) -> None:
        import mlflow

        self._mlflow = mlflow
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        existing = self._mlflow.get_run(self.run_id).data.params
        fresh = {
            key: str(value)[:MAX_PARAM_VAL_LENGTH]
            for key, value in params.items()
            if key not in existing  # a resumed run already has them; MLflow refuses changes
        }
        if fresh:
            self._mlflow.log_params(fresh)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path)

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifacts(str(folder), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._mlflow.log_text(text, artifact_file)

    def log_keras_model(self, model: Any, **kwargs: Any) -> None:
        """``mlflow.keras.log_model``, working around mlflow/mlflow#16183.

        The Keras flavor writes the input example before creating the model
        folder; the shim creates it first and otherwise is ``mlflow.keras``.
        """
        import types

        import mlflow.keras
        from mlflow.models import Model

        def save_model(path: str, **save_kwargs: Any) -> None:
            os.makedirs(path, exist_ok=True)
            mlflow.keras.save_model(path=path, **save_kwargs)

        flavor = types.SimpleNamespace(__name__="mlflow.keras", save_model=save_model)
        with _quiet_keras_progress():  # MLflow predicts on the input example
            Model.log(artifact_path=None, flavor=flavor, model=model, **kwargs)

    def metric_history(self, key: str) -> dict[int, float]:
        history = self._mlflow.MlflowClient().get_metric_history(self.run_id, key)
        return {m.step: m.value for m in history}


@contextmanager
def _quiet_keras_progress() -> Iterator[None]:
    """No Keras progress bars: off stdout (interactive logging), and their absl INFO lines dropped."""
    import logging

    import keras

    interactive = keras.utils.is_interactive_logging_enabled()
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    keras.utils.disable_interactive_logging()
    absl_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        absl_logger.setLevel(level)
        if interactive:
            keras.utils.enable_interactive_logging()


@contextmanager
def open_run(
    cfg: DictConfig, *, resume_run_id: str | None, run_name: str | None, tags: Mapping[str, str]
) -> Iterator[NullRecorder]:
    """Start (or reopen) the run; end it FINISHED, or FAILED with the error as an artifact.

    No failure leaves a run RUNNING: any exception, and Ctrl-C, end it before it propagates.
    """
    if not cfg.tracking.enabled:
        yield NullRecorder()
        return
    import mlflow

    experiment_id = prepare_experiment(cfg)
    run = mlflow.start_run(
        run_id=resume_run_id,
        experiment_id=None if resume_run_id else experiment_id,
        run_name=None if resume_run_id else run_name,
        tags=None if resume_run_id else dict(tags),
    )
    recorder = RunRecorder(run.info.run_id)
    try:
        yield recorder
    except BaseException as err:
        # A pruned sweep job (cifarlab.sweep.RunPruned) carries run_status = "KILLED".
        status = getattr(err, "run_status", None) or ("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        try:
            import traceback

            recorder.log_text("".join(traceback.format_exception(err)), "error.txt")
            recorder.set_tags({"error": f"{type(err).__name__}: {err}"[:5000]})
        finally:
            mlflow.end_run(status=status)
        raise
    else:
        mlflow.end_run(status="FINISHED")
