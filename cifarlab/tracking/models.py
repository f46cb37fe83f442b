"""Models in the store: logging a run's Keras model, registering it, loading one back; a run's metrics.

MLflow is imported inside each function (see ``cifarlab.tracking.recorder``), and
nothing here imports TensorFlow but loading a model back: callers pass the Keras objects
and versions in.

A model made only of Keras's own layers is logged in Keras's format. One with a layer
of cifarlab's own (the delta baseline's CIEDE2000) is logged as a TensorFlow SavedModel
(MLflow's ``save_exported_model``): its graph is traced, so serving or loading it needs
TensorFlow and MLflow but no cifarlab code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.tracking import queries
from cifarlab.tracking.recorder import Recorder, log_keras_flavor
from cifarlab.tracking.registry import MODEL_NAME

# A search trial's model as a plain Keras file, until its search logs it as MLflow's (``add_keras_model``).
TRAINED_FILE = "checkpoints/trained.keras"
# The name of the Keras model that wraps a logged SavedModel: it predicts, but has no layers of its own to read.
EXPORTED_MODEL_NAME = "saved_model"
# A run's Keras files, in the order a run without MLflow's model is read from: the trained model, the best epoch.
RUN_KERAS_FILES = (TRAINED_FILE, "checkpoints/best.keras")


@dataclass(frozen=True)
class ModelRecord:
    """What a logged model carries besides its layers, and how MLflow logs it.

    ``example`` and its ``predictions`` give the signature (``example`` is the input
    example too); MLflow's own version is added to ``pip_requirements``.
    ``exported``: as a TensorFlow SavedModel (for models with layers Keras does not
    have); ``check_serving``: MLflow reloads the model and predicts on ``example``.
    """

    example: Any
    predictions: Any
    metadata: Mapping[str, Any]
    pip_requirements: Sequence[str]
    exported: bool = False
    check_serving: bool = True

    def flavor_options(self) -> dict[str, Any]:
        """The keyword arguments of ``mlflow.keras.log_model`` for this record."""
        import mlflow
        from mlflow.models import infer_signature

        return {
            "name": MODEL_NAME,
            "signature": infer_signature(self.example, self.predictions),
            "input_example": self.example,
            "metadata": dict(self.metadata),
            "pip_requirements": [*self.pip_requirements, f"mlflow=={mlflow.__version__}"],
            "save_exported_model": self.exported,
            "validate_serving_input": self.check_serving,
        }


def log_keras_model(recorder: Recorder, model: Any, record: ModelRecord) -> None:
    """``model`` as the run's MLflow Keras model, as ``record`` describes it."""
    recorder.log_keras_model(model, **record.flavor_options())


def add_keras_model(uri: str, run_id: str, model: Any, record: ModelRecord) -> None:
    """``log_keras_model`` for a run that has ended, named by its id (a search's best trials get
    their model when the search ends); the run's status and times stay as they are."""
    import mlflow

    mlflow.set_tracking_uri(uri)  # where MLflow's Model.log writes...
    # ...and in which experiment: the process's current one, not the run's, when no run is active.
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id)
    log_keras_flavor(model, run_id=run_id, **record.flavor_options())


def register_model(run_id: str, name: str) -> int:
    """The run's logged model as a new version of registered model ``name``; returns the version.

    A run resumed after a kill that had registered already keeps its version instead of adding another.
    """
    import mlflow

    client = mlflow.MlflowClient()
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return max(int(v.version) for v in existing)
    return int(mlflow.register_model(f"runs:/{run_id}/{MODEL_NAME}", name).version)


def run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of each metric the run has, from the store MLflow points at."""
    import mlflow

    return dict(mlflow.get_run(run_id).data.metrics)


def load_logged_keras_model(uri: str, tracking_uri: str | None = None) -> Any:
    """A Keras model logged to the store at ``tracking_uri`` (MLflow's current one if None):
    ``runs:/<id>/<name>`` or ``models:/...``. An exported SavedModel comes back wrapped in a
    Keras model (uint8 images in, class probabilities out) that predicts and exports alike.

    Raises what MLflow raises for a missing run or model.
    """
    import mlflow
    import mlflow.keras
    from mlflow.models import Model

    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    logged = Model.load(str(folder))
    if not logged.flavors.get("keras", {}).get("save_exported_model"):
        return mlflow.keras.load_model(str(folder))
    import keras  # imports TensorFlow

    shape = tuple(int(d) for d in logged.get_input_schema().inputs[0].shape[1:])
    saved_model = keras.layers.TFSMLayer(str(folder / "data" / "model"), call_endpoint="serve")
    return keras.Sequential([keras.Input(shape, dtype="uint8"), saved_model], name=EXPORTED_MODEL_NAME)


def run_keras_file(run_id: str, folder: str) -> Path | None:
    """The first of the run's ``RUN_KERAS_FILES`` it has, downloaded into ``folder``; None if none."""
    for artifact in RUN_KERAS_FILES:
        local = queries.download_run_artifact(run_id, artifact, folder)
        if local is not None:
            return local
    return None
