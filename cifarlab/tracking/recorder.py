"""One run's record (params, tags, metrics, artifacts), and opening and ending it.

``Recorder`` is what training writes a run through: ``RunRecorder`` is the only
object that writes to an MLflow run; with tracking off ``open_run`` yields a
``NullRecorder``, which accepts the same calls and does nothing.

MLflow and Keras are imported inside the functions that use them, on purpose:
this package is imported on the config path too (a sweep's Hydra callback,
``cifarlab.commands.results``), where importing them would cost seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cifarlab.errors import CifarlabError, environment_failure
from cifarlab.runtime.interrupts import signals_held
from cifarlab.tracking.outages import Patient
from cifarlab.tracking.store import (
    give_up_on_server,
    is_server,
    prepare_experiment,
    server_answers,
)
from cifarlab.tracking.store_faults import api_failed
from cifarlab.tracking.target import TrackingTarget


@dataclass(frozen=True)
class DatasetInput:
    """One split of a run's data as MLflow records it: ``context`` names the split
    (train, validation, test), ``digest`` its content, ``source`` its folder (None: generated)."""

    images: Any
    labels: Any
    name: str
    context: str
    source: str | None
    digest: str


def _numpy_dataset(split: DatasetInput) -> Any:
    from mlflow.data.numpy_dataset import from_numpy  # what mlflow.data.from_numpy is

    with warnings.catch_warnings():  # MLflow registers its local source twice and warns about it
        warnings.simplefilter("ignore", UserWarning)
        # MLflow annotates source without None, though it takes None (no source) and defaults to it.
        return from_numpy(
            split.images,
            targets=split.labels,
            source=split.source,  # type: ignore[arg-type]
            name=split.name,
            digest=split.digest,
        )


class Recorder(Protocol):
    """The calls a run is recorded through; ``run_id`` is None when nothing is recorded."""

    @property
    def run_id(self) -> str | None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_keras_model(self, model: Any, **kwargs: Any) -> None: ...
    def log_datasets(self, inputs: Sequence[DatasetInput]) -> None: ...
    def metric_history(self, key: str) -> dict[int, float]: ...


class NullRecorder:
    """Tracking switched off: the calls of a ``Recorder``, recording nothing."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_keras_model(self, model: Any, **kwargs: Any) -> None: ...
    def log_datasets(self, inputs: Sequence[DatasetInput]) -> None: ...

    def metric_history(self, key: str) -> dict[int, float]:
        return {}


class RunRecorder:
    """One MLflow run, made the active run of this process (a ``Recorder``)."""

    def __init__(self, run_id: str) -> None:
        import mlflow

        self._mlflow = Patient(mlflow)  # every write rides out a server's brief 503s
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
        # Stamped once: a call tried again after a 503 (which may have landed) is then the same
        # rows, which MLflow's store skips, not an epoch logged twice.
        timestamp = int(time.time() * 1000)
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, timestamp=timestamp)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path)

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifacts(str(folder), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._mlflow.log_text(text, artifact_file)

    def log_keras_model(self, model: Any, **kwargs: Any) -> None:
        log_keras_flavor(model, run_id=self.run_id, **kwargs)

    def metric_history(self, key: str) -> dict[int, float]:
        history = self._mlflow.MlflowClient().get_metric_history(self.run_id, key)
        return {m.step: m.value for m in history}

    def log_datasets(self, inputs: Sequence[DatasetInput]) -> None:
        """Each split as an MLflow dataset input (the run list's Dataset column), in one write."""
        logged = self._logged_datasets()  # a resumed run has them already
        fresh = [i for i in inputs if (i.digest, i.context) not in logged]
        if not fresh:
            return
        datasets = [_numpy_dataset(i) for i in fresh]
        contexts = [i.context for i in fresh]
        tags: list[dict[str, str] | None] = [None] * len(fresh)
        try:
            self._mlflow.log_inputs(datasets, contexts=contexts, tags_list=tags)
        except self._mlflow.exceptions.MlflowException as err:
            # Two processes adding the same dataset to one store at once: MLflow's
            # get-or-create loses the race with SQLite's "UNIQUE constraint failed" or
            # PostgreSQL's "duplicate key value violates unique constraint"; the row
            # exists now, so the second try links this run to it.
            if "unique constraint" not in str(err).lower():
                raise
            self._mlflow.log_inputs(datasets, contexts=contexts, tags_list=tags)

    def _logged_datasets(self) -> set[tuple[str, str]]:
        """(digest, context) of each dataset input the run has."""
        inputs = self._mlflow.get_run(self.run_id).inputs
        if inputs is None:  # MLflow gives None for a run with no inputs at all
            return set()
        return {
            (d.dataset.digest, i.value)
            for d in inputs.dataset_inputs
            for i in d.tags
            if i.key == "mlflow.data.context"
        }

    def count_resume(self) -> None:
        """Tag how often the run was resumed (``resumed``: 1, 2, ...)."""
        tags = self._mlflow.get_run(self.run_id).data.tags
        self.set_tags({"resumed": int(tags.get("resumed", 0)) + 1})

    def forget_interruption(self) -> None:
        """Drop the ``error`` tag and ``error.txt`` an interrupted attempt left (the ``resumed`` tag stays)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        run = self._mlflow.get_run(self.run_id)
        if "error" in run.data.tags:
            self._mlflow.MlflowClient().delete_tag(self.run_id, "error")
        # A store that cannot delete (or nothing to delete): the tag is what lists it.
        with contextlib.suppress(Exception):
            get_artifact_repository(run.info.artifact_uri).delete_artifacts("error.txt")


def log_keras_flavor(model: Any, run_id: str, **kwargs: Any) -> None:
    """``mlflow.keras.log_model`` for the run ``run_id`` (active or ended), working around
    mlflow/mlflow#16183: the Keras flavor writes the input example before creating the model
    folder; the shim creates it first and otherwise is ``mlflow.keras``."""
    import mlflow.keras
    from mlflow.models import Model

    def save_model(path: str, **save_kwargs: Any) -> None:
        save_kwargs.pop("validate_serving_input", None)  # Model.log's own option
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **save_kwargs)

    flavor = types.SimpleNamespace(__name__="mlflow.keras", save_model=save_model)
    with _quiet_keras_progress():  # MLflow predicts on the input example
        Model.log(artifact_path=None, flavor=flavor, model=model, run_id=run_id, **kwargs)


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


END_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # see end_run
SYSTEM_METRICS_INTERVAL_S = "2"  # seconds between samples of CPU and memory use, unless the user set it


class ServerGone(CifarlabError):
    """The MLflow server stopped answering during the run; its local backup is kept for the rerun."""


@contextmanager
def open_run(
    target: TrackingTarget, *, resume_run_id: str | None, run_name: str | None, tags: Mapping[str, str]
) -> Iterator[Recorder]:
    """Start (or reopen) the run; end it FINISHED, or FAILED / KILLED with the error attached.

    No failure leaves a run RUNNING: any exception, Ctrl-C and SIGTERM (see
    ``cifarlab.runtime.interrupts``) end it before they propagate. A server that stops
    answering ends the process in one line instead, the run left for the rerun.
    """
    if not target.enabled:
        yield NullRecorder()
        return
    import mlflow  # deferred: see the module docstring

    uri = target.uri
    experiment_id = prepare_experiment(target)  # a server's HTTP retries bounded there
    # MLflow samples every 10 s by default, so a short run would record no system metrics.
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", SYSTEM_METRICS_INTERVAL_S)
    run = Patient(mlflow).start_run(
        run_id=resume_run_id,
        experiment_id=None if resume_run_id else experiment_id,
        run_name=None if resume_run_id else run_name,
        tags=None if resume_run_id else dict(tags),
        log_system_metrics=target.system_metrics,
    )
    recorder = RunRecorder(run.info.run_id)
    try:
        if resume_run_id:
            recorder.count_resume()
        yield recorder
    except BaseException as err:
        with signals_held():  # a second Ctrl-C or SIGTERM must not cut the ending short
            _end_unfinished(recorder, err, uri)
        raise
    with signals_held():  # a signal now would stop mlflow.end_run before it writes FINISHED
        if resume_run_id:
            recorder.forget_interruption()  # the error of the attempt it resumed no longer applies
        end_run(recorder.run_id, "FINISHED")


def _end_unfinished(recorder: RunRecorder, err: BaseException, uri: str) -> None:
    """End the run FAILED or KILLED with the error attached; raise ServerGone if the server went away."""
    import mlflow  # deferred: see the module docstring

    if is_server(uri) and not isinstance(err, CifarlabError):
        answers = server_answers(uri)
        if not answers or api_failed(err):
            give_up_on_server()
            with contextlib.suppress(Exception):  # the rerun resumes the run, maybe still RUNNING there
                mlflow.end_run(status="FAILED")
            what = "answers /health but its API fails" if answers else "stopped answering"
            raise ServerGone(
                f"the MLflow server at {uri} {what}; the run's local backup is kept: when the server "
                f"works again, rerun the same command to resume run {recorder.run_id}"
            ) from None
    # A pruned sweep job (cifarlab.sweeps.study.RunPruned) carries run_status = "FINISHED"; signals end KILLED.
    status = getattr(err, "run_status", None) or (
        "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
    )
    setattr(err, "run_id", recorder.run_id)  # noqa: B010 - for the CLI's closing line; not a declared attribute
    try:
        recorder.log_text("".join(traceback.format_exception(err)), "error.txt")
        recorder.set_tags({"error": f"{type(err).__name__}: {err}"[:5000]})
    except Exception as tag_error:  # noqa: BLE001 - the run must still end; the original error goes on
        if environment_failure(tag_error) is None:  # a full or read-only disk is said once, at the end
            print(f"cifarlab: could not attach the error to run {recorder.run_id}: {tag_error}", flush=True)
    end_run(recorder.run_id, status)


def end_run(run_id: str, status: str) -> None:
    """``mlflow.end_run``, and the status written again if a busy store refused it.

    Several processes ending runs on one SQLite store at once can meet "database is
    locked"; MLflow has then already dropped the active run, so the status is retried
    through the client, a few times over about 8 s, rather than leaving the run RUNNING.
    """
    import mlflow  # deferred: see the module docstring

    try:
        Patient(mlflow).end_run(status=status)
        return
    except Exception as err:  # noqa: BLE001 - retried below, raised if it keeps failing
        last_error = err
    for delay in END_RETRY_DELAYS_S:
        time.sleep(delay)
        try:
            mlflow.MlflowClient().set_terminated(run_id, status=status)
            return
        except Exception as err:  # noqa: BLE001
            last_error = err
    raise last_error
