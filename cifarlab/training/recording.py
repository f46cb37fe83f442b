"""What a run records about itself: its setup, its test results and reports, and the trained model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow.models import infer_signature
from omegaconf import DictConfig, OmegaConf

from cifarlab.data.base import DataSplits, content_digest
from cifarlab.models.class_names import class_names_path
from cifarlab.models.layers.swap import standard_layers
from cifarlab.models.transfer import TransferReport
from cifarlab.reports import write_reports
from cifarlab.tracking import NullRecorder, flatten
from cifarlab.training.describe import model_summary
from cifarlab.training.evaluation import evaluate_model
from cifarlab.training.result import TrainResult
from cifarlab.training.run_hooks import RunHooks
from cifarlab.training.state import RunState

MODEL_NAME = "model"  # the logged model's name: runs:/<run id>/model


def record_setup(
    recorder: NullRecorder,
    cfg: DictConfig,
    model: keras.Model,
    precision: str,
    hooks: RunHooks,
    transfer_report: TransferReport | None,
) -> None:
    """Params (the resolved config, flattened), the model summary, config and overrides as artifacts."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    # precision_policy: what trainer.precision=auto chose on this machine
    recorder.log_params({**params, "model/num_params": model.count_params(), "precision_policy": precision})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model_summary.txt").write_text(model_summary(model))
        recorder.log_artifact(folder / "model_summary.txt")
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        (folder / "overrides.txt").write_text("\n".join(hooks.overrides) + "\n")
        recorder.log_artifact(folder / "config.yaml", "config")
        recorder.log_artifact(folder / "overrides.txt", "config")
    if transfer_report is not None:
        recorder.log_text(transfer_report.summary() + "\n", "transfer.txt")


def record_datasets(recorder: NullRecorder, data: DataSplits, source: str | None) -> None:
    """Each split as an MLflow dataset input, with its size and content digest (data lineage)."""
    splits = (
        ("train", data.x_train, data.y_train),
        ("validation", data.x_val, data.y_val),
        ("test", data.x_test, data.y_test),
    )
    for context, images, labels in splits:
        recorder.log_dataset(
            images,
            labels,
            name=data.name,
            context=context,
            source=source,
            digest=content_digest(images, labels, names=data.class_names),
        )


def evaluate_and_record(
    cfg: DictConfig,
    model: keras.Model,
    data: DataSplits,
    recorder: NullRecorder,
    state: RunState,
    history: dict[str, list[float]],
) -> TrainResult:
    """Test metrics, reports, the best checkpoint and the model, then the run's summary metrics."""
    probs, test_accuracy, test_loss = evaluate_model(model, data, cfg.trainer)
    log_once(recorder, {"test/accuracy": test_accuracy, "test/loss": test_loss})
    record_reports(recorder, cfg, data, probs, history)
    best_checkpoint = state.checkpoint_dir / "best.keras"
    if cfg.tracking.log_checkpoints and best_checkpoint.exists():
        recorder.log_artifact(best_checkpoint, "checkpoints")
        if class_names_path(best_checkpoint).exists():
            recorder.log_artifact(class_names_path(best_checkpoint), "checkpoints")
    if cfg.tracking.log_model:
        log_model(recorder, model, data, probs)
        if cfg.tracking.get("register_as") and recorder.run_id:
            register_model(recorder.run_id, str(cfg.tracking.register_as))
    val_accuracy = history.get("val/accuracy")
    best_val = max(val_accuracy) if val_accuracy else None
    epochs_run = len(history.get("train/loss", []))
    log_once(
        recorder, {"epochs_run": epochs_run, **({"val/best_accuracy": best_val} if val_accuracy else {})}
    )
    return TrainResult(recorder.run_id, test_accuracy, test_loss, best_val, epochs_run, history)


def log_once(recorder: NullRecorder, metrics: dict[str, float]) -> None:
    """Log the metrics the run does not have yet, so each is logged once: the reports' summary
    repeats test/accuracy, and a run resumed after a kill while it recorded redoes the evaluation."""
    have = mlflow.get_run(recorder.run_id).data.metrics if recorder.run_id else {}
    fresh = {k: v for k, v in metrics.items() if k not in have}
    if fresh:
        recorder.log_metrics(fresh)


def record_reports(
    recorder: NullRecorder,
    cfg: DictConfig,
    data: DataSplits,
    probs: np.ndarray,
    history: dict[str, list[float]],
) -> None:
    """The report files under ``reports/``, their metrics (test/accuracy only if not logged yet),
    and the most confused pairs as a tag."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = write_reports(
            Path(tmp),
            y_true=data.y_test,
            probs=probs,
            class_names=data.class_names,
            history=history,
            x_test=data.x_test,
            x_train=data.x_train,
            y_train=data.y_train,
            orientation=cfg.reports.orientation,
            top_pairs=cfg.reports.top_pairs,
            seed=cfg.trainer.seed,
        )
        recorder.log_artifacts(Path(tmp), "reports")
    log_once(recorder, summary.metrics)
    if summary.pairs:
        recorder.set_tags({"confused_pairs": "; ".join(str(p) for p in summary.pairs)})
        print("cifarlab: most confused: " + "; ".join(str(p) for p in summary.pairs[:3]), flush=True)


def inference_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the compile state, so loading needs no cifarlab code."""
    plain = standard_layers(model)  # an uncompiled copy when it had to swap layers
    return plain if plain is not model else keras.Model(model.inputs, model.outputs, name=model.name)


def log_model(recorder: NullRecorder, model: keras.Model, data: DataSplits, probs: np.ndarray) -> None:
    """The MLflow Keras model: raw uint8 images in, class probabilities out, with the class names."""
    example = data.x_test[:2]
    recorder.log_keras_model(
        inference_model(model),
        name=MODEL_NAME,
        signature=infer_signature(example, probs[:2]),
        input_example=example,
        metadata={"class_names": list(data.class_names), "input_dtype": "uint8"},
        pip_requirements=[
            f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )


def register_model(run_id: str, name: str) -> int:
    """The run's logged model as a new version of registered model ``name``; a run resumed after a kill
    that had registered already keeps its version instead of adding another."""
    client = mlflow.MlflowClient()
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = max(int(v.version) for v in existing)
    else:
        version = int(mlflow.register_model(f"runs:/{run_id}/{MODEL_NAME}", name).version)
    print(f"cifarlab: registered model {name} version {version}", flush=True)
    return version
