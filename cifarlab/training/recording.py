"""What a run records about itself: its setup, its test results and reports, and the trained model."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifarlab.data.base import DataSplits, content_digest
from cifarlab.models.class_names import class_names_path, save_class_names
from cifarlab.models.layers.swap import keras_layers_only, standard_layers
from cifarlab.models.transfer import TransferReport
from cifarlab.reports import write_reports
from cifarlab.tracking import DatasetInput, Recorder
from cifarlab.tracking.models import (
    TRAINED_FILE,
    ModelRecord,
    add_keras_model,
    log_keras_model,
    register_model,
    run_metrics,
)
from cifarlab.tracking.provenance import code_state, installed_versions, requirements_text
from cifarlab.training.describe import model_summary
from cifarlab.training.evaluation import evaluate_model
from cifarlab.training.plan import RunIdentity, RunPlan
from cifarlab.training.result import TrainResult
from cifarlab.training.run_hooks import RunHooks
from cifarlab.training.state import RunState


def record_setup(
    recorder: Recorder,
    identity: RunIdentity,
    model: keras.Model,
    precision: str,
    hooks: RunHooks,
    transfer_report: TransferReport | None,
) -> None:
    """Params (the resolved config, flattened), the model summary, config and overrides as artifacts."""
    params = identity.params()
    # precision_policy: what trainer.precision=auto chose on this machine
    recorder.log_params({**params, "model/num_params": model.count_params(), "precision_policy": precision})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model_summary.txt").write_text(model_summary(model))
        recorder.log_artifact(folder / "model_summary.txt")
        (folder / "config.yaml").write_text(identity.yaml())
        (folder / "overrides.txt").write_text("\n".join(hooks.overrides) + "\n")
        recorder.log_artifact(folder / "config.yaml", "config")
        recorder.log_artifact(folder / "overrides.txt", "config")
    if transfer_report is not None:
        recorder.log_text(transfer_report.summary() + "\n", "transfer.txt")
    record_provenance(recorder)


def record_provenance(recorder: Recorder) -> None:
    """The code's state (tags; the uncommitted changes as a patch) and the installed packages."""
    code = code_state()
    recorder.set_tags(code.tags())
    if code.dirty:
        recorder.log_text(code.patch, "code/uncommitted.patch")
    recorder.log_text(requirements_text(installed_versions()), "environment/requirements.txt")


def record_datasets(recorder: Recorder, data: DataSplits, source: str | None) -> None:
    """Each split as an MLflow dataset input, with its size and content digest (data lineage)."""
    splits = (
        ("train", data.x_train, data.y_train),
        ("validation", data.x_val, data.y_val),
        ("test", data.x_test, data.y_test),
    )
    recorder.log_datasets(
        [
            DatasetInput(
                images=images,
                labels=labels,
                name=data.name,
                context=context,
                source=source,
                digest=content_digest(images, labels, names=data.class_names),
            )
            for context, images, labels in splits
        ]
    )


def evaluate_and_record(
    plan: RunPlan,
    model: keras.Model,
    data: DataSplits,
    recorder: Recorder,
    state: RunState,
    history: dict[str, list[float]],
    search_trial: bool = False,
) -> TrainResult:
    """Test metrics, reports, the best checkpoint and the model, then the run's summary metrics.

    A search's trial draws no report figures unless ``reports.figures=true``, and keeps its
    model as a plain Keras file unless ``tracking.search_models=null``: its best trials get
    their figures and MLflow model when the search ends (``cifarlab.sweeps.top_trials``).
    """
    figures = plan.reports.figures if plan.reports.figures is not None else not search_trial
    t = plan.trainer
    probs, test_accuracy, test_loss = evaluate_model(
        model, data, t.eval_batch_size, flip=t.test_time_flip, shift=t.test_time_shift
    )
    log_once(recorder, {"test/accuracy": test_accuracy, "test/loss": test_loss})
    record_reports(recorder, plan, data, probs, history, figures)
    best_checkpoint = state.checkpoint_dir / "best.keras"
    if plan.tracking.log_checkpoints and best_checkpoint.exists():
        recorder.log_artifact(best_checkpoint, "checkpoints")
        if class_names_path(best_checkpoint).exists():
            recorder.log_artifact(class_names_path(best_checkpoint), "checkpoints")
    if plan.tracking.log_model and search_trial and plan.tracking.search_models is not None:
        log_trained_file(recorder, model, data.class_names)
    elif plan.tracking.log_model:
        # A search's trial skips MLflow's check that the model serves (a reload and a prediction).
        log_model(
            recorder, model, data.x_test[:2], data.class_names, probs[:2], check_serving=not search_trial
        )
        if plan.tracking.register_as and recorder.run_id:
            register_logged_model(recorder.run_id, plan.tracking.register_as)
    val_accuracy = history.get("val/accuracy")
    best_val = max(val_accuracy) if val_accuracy else None
    epochs_run = len(history.get("train/loss", []))
    log_once(
        recorder,
        {"epochs_run": epochs_run, **({"val/best_accuracy": best_val} if best_val is not None else {})},
    )
    recorder.set_tags({"mlflow.note.content": headline(plan, test_accuracy, test_loss, epochs_run, data)})
    return TrainResult(recorder.run_id, test_accuracy, test_loss, best_val, epochs_run, history)


def headline(plan: RunPlan, accuracy: float, loss: float, epochs: int, data: DataSplits) -> str:
    """The run's description in the MLflow UI (its note): the result first, then what made it."""
    return (
        f"test accuracy {accuracy:.2%} (loss {loss:.3f}) after {epochs} epochs: {plan.model.name} on "
        f"{plan.data.name} ({len(data.x_train)} training images), {plan.optimizer.name} "
        f"lr={plan.optimizer.lr:g}, augmentation {plan.augmentation.name}"
    )


def log_once(recorder: Recorder, metrics: dict[str, float]) -> None:
    """Log the metrics the run does not have yet, so each is logged once: the reports' summary
    repeats test/accuracy, and a run resumed after a kill while it recorded redoes the evaluation."""
    have = run_metrics(recorder.run_id) if recorder.run_id else {}
    fresh = {k: v for k, v in metrics.items() if k not in have}
    if fresh:
        recorder.log_metrics(fresh)


def record_reports(
    recorder: Recorder,
    plan: RunPlan,
    data: DataSplits,
    probs: np.ndarray,
    history: dict[str, list[float]],
    figures: bool = True,
) -> None:
    """The report files under ``reports/`` (the figures too if ``figures``), their metrics
    (test/accuracy only if not logged yet), and the most confused pairs as a tag."""
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
            orientation=plan.reports.orientation,
            top_pairs=plan.reports.top_pairs,
            seed=plan.trainer.seed,
            figures=figures,
        )
        recorder.log_artifacts(Path(tmp), "reports")
    log_once(recorder, summary.metrics)
    if summary.pairs:
        recorder.set_tags({"confused_pairs": "; ".join(str(p) for p in summary.pairs)})
        print("cifarlab: most confused: " + "; ".join(str(p) for p in summary.pairs[:3]), flush=True)


def inference_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the compile state, so loading needs no cifarlab code.

    Always a fresh functional model: a copy with swapped layers keeps the trained model's
    optimizer, whose learning-rate schedule (a budget-fitted one, say) is cifarlab's class.
    """
    plain = standard_layers(model)
    return keras.Model(plain.inputs, plain.outputs, name=model.name)


def log_model(
    recorder: Recorder,
    model: keras.Model,
    example: np.ndarray,
    class_names: Sequence[str],
    predictions: np.ndarray,
    check_serving: bool = True,
) -> None:
    """The MLflow Keras model: raw uint8 images in, class probabilities out, with the class names;
    its signature from ``example`` (two images) and their ``predictions``. ``check_serving``:
    MLflow reloads it and predicts on the example (a warning if that fails)."""
    plain = inference_model(model)
    log_keras_model(recorder, plain, model_record(plain, example, class_names, predictions, check_serving))


def model_record(
    plain: keras.Model,
    example: np.ndarray,
    class_names: Sequence[str],
    predictions: np.ndarray,
    check_serving: bool,
) -> ModelRecord:
    """What a logged model carries besides its layers: signature example, class names, versions."""
    return ModelRecord(
        example=example,
        predictions=predictions,
        metadata={"class_names": list(class_names), "input_dtype": "uint8"},
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        exported=not keras_layers_only(plain),  # a traced SavedModel needs no cifarlab code to load
        check_serving=check_serving,
    )


def log_trained_file(recorder: Recorder, model: keras.Model, class_names: Sequence[str]) -> None:
    """The inference model as ``checkpoints/trained.keras``, its class names beside it: a
    fraction of the cost of MLflow's model, which ``log_trained_model`` makes from it later."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(TRAINED_FILE).name
        inference_model(model).save(path)
        recorder.log_artifact(path, str(Path(TRAINED_FILE).parent))
        recorder.log_artifact(save_class_names(path, class_names), str(Path(TRAINED_FILE).parent))


def log_trained_model(uri: str, run_id: str, trained: Path, class_names: Sequence[str] | None) -> None:
    """The MLflow model of the ended run ``run_id`` from its ``checkpoints/trained.keras``, with two
    black images as its input example (the run's own images are not at hand here)."""
    from cifarlab.models.layers import colour  # noqa: F401  registers delta's layer, for loading

    model = keras.models.load_model(trained, compile=False)
    example = np.zeros((2, *model.input_shape[1:]), dtype=np.uint8)
    predictions = keras.ops.convert_to_numpy(model(example, training=False))  # no tf.function to retrace
    names = list(class_names or [f"class_{i}" for i in range(predictions.shape[-1])])
    # No serving check, as for the trials: a reload and a prediction that every model type gets in the tests.
    add_keras_model(uri, run_id, model, model_record(model, example, names, predictions, check_serving=False))


def register_logged_model(run_id: str, name: str) -> int:
    """The run's logged model as a version of registered model ``name`` (a resumed run keeps the one it made)."""
    version = register_model(run_id, name)
    print(f"cifarlab: registered model {name} version {version}", flush=True)
    return version
