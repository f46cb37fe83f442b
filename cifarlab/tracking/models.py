"""Models in the store: logging a run's Keras model, registering it, loading one back; a run's metrics.

MLflow is imported inside each function (see ``cifarlab.tracking.recorder``), and
nothing here imports TensorFlow: callers pass the Keras objects and versions in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cifarlab.tracking.recorder import Recorder

MODEL_NAME = "model"  # the logged model's name: runs:/<run id>/model


def log_keras_model(
    recorder: Recorder,
    model: Any,
    *,
    example: Any,
    predictions: Any,
    metadata: Mapping[str, Any],
    pip_requirements: Sequence[str],
) -> None:
    """``model`` as the run's MLflow Keras model, its signature inferred from ``example`` and its
    ``predictions``; MLflow's own version is added to ``pip_requirements``."""
    import mlflow
    from mlflow.models import infer_signature

    recorder.log_keras_model(
        model,
        name=MODEL_NAME,
        signature=infer_signature(example, predictions),
        input_example=example,
        metadata=dict(metadata),
        pip_requirements=[*pip_requirements, f"mlflow=={mlflow.__version__}"],
    )


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


def load_logged_keras_model(uri: str, tracking_uri: str) -> Any:
    """A Keras model logged to the store at ``tracking_uri``: ``runs:/<id>/<name>`` or ``models:/...``.

    Raises what MLflow raises for a missing run or model.
    """
    import mlflow
    import mlflow.keras

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.keras.load_model(uri)
