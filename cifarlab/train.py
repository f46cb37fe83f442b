"""One training run: data -> pipeline -> model -> fit -> evaluate -> reports -> MLflow.

Everything that can fail on bad input (data, model name, tracking server) fails
before the MLflow run is opened, so a typo never leaves a run behind; once it
is open, any failure ends it FAILED with the error attached.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ info and warning lines quiet

import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarlab import sweep, tracking
from cifarlab.augment import build_augmentation
from cifarlab.callbacks import CallbackContext, TerminateOnNonFinite, build_callbacks
from cifarlab.data import DataSplits, load_dataset
from cifarlab.errors import CifarlabError
from cifarlab.models import build_model
from cifarlab.optim import build_optimizer
from cifarlab.pipeline import eval_dataset, train_dataset


@dataclass
class TrainResult:
    run_id: str | None
    test_accuracy: float
    test_loss: float
    best_val_accuracy: float | None
    epochs_run: int
    history: dict[str, list[float]] = field(default_factory=dict)
    skipped: bool = False

    @classmethod
    def from_run(cls, run) -> "TrainResult":
        """The result an earlier FINISHED MLflow run recorded (for skipped sweep jobs)."""
        m = run.data.metrics
        return cls(
            run_id=run.info.run_id,
            test_accuracy=m.get("test/accuracy", float("nan")),
            test_loss=m.get("test/loss", float("nan")),
            best_val_accuracy=m.get("val/best_accuracy"),
            epochs_run=int(m.get("epochs_run", 0)),
            skipped=True,
        )

    @property
    def objective(self) -> float:
        """What sweeps maximise: the best validation accuracy."""
        return self.best_val_accuracy if self.best_val_accuracy is not None else self.test_accuracy


class RunState:
    """Resumable state of one config (by its hash): Keras backup, checkpoints, MLflow run id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backup_dir = root / "backup"
        self.checkpoint_dir = root / "checkpoints"
        self._run_id_file = root / "run_id"

    def resumable_run_id(self) -> str | None:
        has_backup = self.backup_dir.is_dir() and any(self.backup_dir.iterdir())
        if has_backup and self._run_id_file.is_file():
            return self._run_id_file.read_text().strip() or None
        return None

    def remember(self, run_id: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if run_id:
            self._run_id_file.write_text(run_id)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class TimeBudget(keras.callbacks.Callback):
    """Stop training cleanly after ``seconds``; evaluation and recording still happen."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._start = 0.0
        self.exhausted = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self._start >= self.seconds:
            self.exhausted = True
            self.model.stop_training = True


def _run_tags(cfg: DictConfig, key: str) -> dict[str, str]:
    tags = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "augmentation": cfg.augmentation.name,
        "config_hash": key,
        "git_commit": tracking.git_commit(),
        "overrides": " ".join(_overrides()),
        **{f"claim.{k}": v for k, v in (cfg.get("claim") or {}).items()},
        **dict(cfg.tracking.get("tags") or {}),
    }
    return {k: str(v) for k, v in tags.items() if v not in (None, "")}


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _describe(cfg: DictConfig, data: DataSplits) -> str:
    t = cfg.trainer
    return (
        f"cifarlab: {data.name} ({len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test), "
        f"model {cfg.model.name}, {cfg.optimizer.name} lr={cfg.optimizer.lr:g}, "
        f"augmentation {cfg.augmentation.name}, {t.epochs} epochs x batch {t.batch_size}"
    )


def _compile(model: keras.Model, cfg: DictConfig, steps_per_epoch: int, num_classes: int) -> None:
    t = cfg.trainer
    if t.label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        optimizer=build_optimizer(cfg.optimizer, steps_per_epoch, t.epochs),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")]
        if t.label_smoothing
        else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=t.jit_compile,
        steps_per_execution=t.steps_per_execution,
    )


def _model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def _history(recorder: tracking.NullRecorder, fit_history: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch metrics for the whole run: from MLflow when tracked (covers resumed epochs)."""
    from cifarlab.callbacks import tracked_metric_name

    history: dict[str, list[float]] = {}
    for keras_name, values in fit_history.items():
        name = tracked_metric_name(keras_name)
        recorded = recorder.metric_history(name)
        history[name] = [recorded[s] for s in sorted(recorded)] if recorded else list(values)
    return history


def _evaluate(model: keras.Model, data: DataSplits, batch_size: int) -> tuple[np.ndarray, float, float]:
    from sklearn.metrics import accuracy_score, log_loss

    probs = model.predict(eval_dataset(data.x_test, data.y_test, batch_size), verbose=0)
    accuracy = accuracy_score(data.y_test, probs.argmax(axis=1))
    loss = log_loss(data.y_test, np.clip(probs, 1e-7, 1.0), labels=list(range(data.num_classes)))
    return probs, float(accuracy), float(loss)


def _inference_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the compile state, so loading needs no cifarlab code."""
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _log_model(recorder: tracking.NullRecorder, model: keras.Model, data: DataSplits, probs: np.ndarray) -> None:
    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    example = data.x_test[:2]
    recorder.log_keras_model(
        _inference_model(model),
        name="model",
        signature=infer_signature(example, probs[:2]),
        input_example=example,
        metadata={"class_names": list(data.class_names), "input_dtype": "uint8"},
        pip_requirements=[
            f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )


def train(cfg: DictConfig) -> TrainResult:
    """Run one training as ``cfg`` describes and record it. Raises CifarlabError on bad input."""
    t = cfg.trainer
    key = tracking.config_hash(cfg)
    state = RunState(Path(cfg.paths.state_dir) / key)
    resume_id = state.resumable_run_id() if cfg.tracking.enabled else None
    if cfg.tracking.enabled:
        tracking.check_server_reachable(tracking.tracking_uri(cfg))

    parent_run_id = sweep.parent_run_id() if cfg.tracking.enabled else None
    if parent_run_id and not cfg.tracking.rerun_finished:
        done = sweep.finished_run(cfg, key)
        if done is not None:
            print(f"cifarlab: skipping, config already has FINISHED run {done.info.run_id}", flush=True)
            return TrainResult.from_run(done)

    keras.backend.clear_session()
    keras.utils.set_random_seed(t.seed)
    keras.mixed_precision.set_dtype_policy(t.precision)
    data = load_dataset(cfg.dataset, default_data_dir=cfg.paths.data_dir)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    augment = build_augmentation(cfg.augmentation, seed=t.seed)
    print(_describe(cfg, data), flush=True)

    steps_per_epoch = t.steps_per_epoch or math.ceil(len(data.x_train) / t.batch_size)
    _compile(model, cfg, steps_per_epoch, data.num_classes)
    train_ds = train_dataset(
        data.x_train, data.y_train, t.batch_size, augment, seed=t.seed, repeat=t.steps_per_epoch is not None
    )
    val_ds = eval_dataset(data.x_val, data.y_val, t.eval_batch_size)
    if t.label_smoothing:
        one_hot = lambda x, y: (x, keras.ops.one_hot(y, data.num_classes))  # noqa: E731
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)

    run_name = cfg.tracking.get("run_name") or f"{cfg.model.name}-{cfg.dataset.name}"
    tags = _run_tags(cfg, key)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    with tracking.open_run(cfg, resume_run_id=resume_id, run_name=run_name, tags=tags) as recorder:
        state.remember(recorder.run_id)
        if resume_id:
            print(f"cifarlab: resuming run {resume_id} from its last completed epoch", flush=True)
        recorder.log_params(
            {**tracking.flatten(OmegaConf.to_container(cfg, resolve=True)), "model/num_params": model.count_params()}
        )
        with tempfile.TemporaryDirectory() as tmp:
            summary_path = Path(tmp) / "model_summary.txt"
            summary_path.write_text(_model_summary(model))
            recorder.log_artifact(summary_path)
            (Path(tmp) / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (Path(tmp) / "overrides.txt").write_text("\n".join(_overrides()) + "\n")
            recorder.log_artifact(Path(tmp) / "config.yaml", "config")
            recorder.log_artifact(Path(tmp) / "overrides.txt", "config")

        ctx = CallbackContext(
            checkpoint_dir=state.checkpoint_dir,
            backup_dir=state.backup_dir,
            recorder=recorder,
            images_per_epoch=steps_per_epoch * t.batch_size if t.steps_per_epoch else len(data.x_train),
        )
        for name, node in cfg.callbacks.items():
            if node is not None and node.get("monitor"):
                recorded = recorder.metric_history(node.monitor)
                if recorded:
                    values = recorded.values()
                    ctx.best_so_far[node.monitor] = min(values) if "loss" in node.monitor else max(values)
        callbacks = build_callbacks(cfg.callbacks, ctx) + sweep.job_callbacks(cfg)
        budget = TimeBudget(t.time_budget_s) if t.time_budget_s else None
        if budget:
            callbacks.append(budget)

        fit = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=t.epochs,
            steps_per_epoch=t.steps_per_epoch,
            validation_steps=t.validation_steps,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself
            verbose=_verbosity(t.verbose),
        )
        for cb in callbacks:
            if isinstance(cb, TerminateOnNonFinite) and cb.stopped_at:
                epoch, loss = cb.stopped_at
                raise CifarlabError(
                    f"training loss became {loss} in epoch {epoch + 1}; lower optimizer.lr "
                    f"(now {cfg.optimizer.lr:g}) or set optimizer.clipnorm"
                )

        probs, test_accuracy, test_loss = _evaluate(model, data, t.eval_batch_size)
        recorder.log_metrics({"test/accuracy": test_accuracy, "test/loss": test_loss})
        history = _history(recorder, fit.history)
        _record_reports(recorder, cfg, data, probs, history)
        best_ckpt = state.checkpoint_dir / "best.keras"
        if cfg.tracking.log_checkpoints and best_ckpt.exists():
            recorder.log_artifact(best_ckpt, "checkpoints")
        if cfg.tracking.log_model:
            _log_model(recorder, model, data, probs)
        val_acc = history.get("val/accuracy")
        summary_metrics = {"epochs_run": len(history.get("train/loss", []))}
        if val_acc:
            summary_metrics["val/best_accuracy"] = max(val_acc)
        recorder.log_metrics(summary_metrics)
        result = TrainResult(
            run_id=recorder.run_id,
            test_accuracy=test_accuracy,
            test_loss=test_loss,
            best_val_accuracy=max(val_acc) if val_acc else None,
            epochs_run=len(history.get("train/loss", [])),
            history=history,
        )
    state.clear()
    _print_summary(cfg, result)
    return result


def _verbosity(setting: object) -> int:
    """``auto``: a progress bar on a terminal, one line per epoch in logs and CI."""
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def _record_reports(
    recorder: tracking.NullRecorder,
    cfg: DictConfig,
    data: DataSplits,
    probs: np.ndarray,
    history: dict[str, list[float]],
) -> None:
    from cifarlab.reports import write_reports

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
    recorder.log_metrics(summary.metrics)
    if summary.pairs:
        recorder.set_tags({"confused_pairs": "; ".join(str(p) for p in summary.pairs)})
        print("cifarlab: most confused: " + "; ".join(str(p) for p in summary.pairs[:3]), flush=True)


def _print_summary(cfg: DictConfig, result: TrainResult) -> None:
    print(f"cifarlab: test accuracy {result.test_accuracy:.4f} (loss {result.test_loss:.4f})", flush=True)
    if result.run_id:
        uri = tracking.tracking_uri(cfg)
        print(f"cifarlab: MLflow run {result.run_id} in experiment '{cfg.tracking.experiment}'", flush=True)
        ui_uri = uri
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            try:
                ui_uri = f"sqlite:///{db.relative_to(Path.cwd())}"
            except ValueError:
                pass
        if uri.startswith(("http://", "https://")):
            print(f"cifarlab: open {uri}/#/experiments to compare runs", flush=True)
        else:
            print(f"cifarlab: compare runs with: mlflow ui --backend-store-uri {ui_uri}", flush=True)
