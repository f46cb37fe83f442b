"""One run's record (params, tags, metrics, artifacts), and opening and ending it.

``RunRecorder`` is the only object that writes to a run; with tracking off it is
``NullRecorder``, which accepts the same calls and does nothing.

MLflow and Keras are imported inside the functions that use them, on purpose:
this package is imported on the config path too (a sweep's Hydra callback,
``cifarlab.results``), where importing them would cost seconds.
"""

from __future__ import annotations

import logging
import os
import traceback
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig

from cifarlab.tracking.store import prepare_experiment


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
        # A pruned sweep job (cifarlab.sweeps.study.RunPruned) carries run_status = "KILLED".
        status = getattr(err, "run_status", None) or ("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        try:
            recorder.log_text("".join(traceback.format_exception(err)), "error.txt")
            recorder.set_tags({"error": f"{type(err).__name__}: {err}"[:5000]})
        finally:
            mlflow.end_run(status=status)
        raise
    else:
        mlflow.end_run(status="FINISHED")
