"""Callback registry: every training side effect is a Keras callback built from its own node."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
from omegaconf import DictConfig

from cifarlab.registry import Registry
from cifarlab.tracking.recorder import NullRecorder


@dataclass
class CallbackContext:
    """What callbacks need from the run beyond their own config node."""

    checkpoint_dir: Path
    backup_dir: Path
    recorder: NullRecorder
    images_per_epoch: int
    stage: int = 0
    # Best value of each monitored metric already recorded (for a resumed run).
    best_so_far: dict[str, float] = field(default_factory=dict)


CallbackBuilder = Callable[[DictConfig, CallbackContext], keras.callbacks.Callback]
CALLBACKS: Registry[CallbackBuilder] = Registry("callbacks")


def keras_metric_name(name: str) -> str:
    """Our metric names (``val/accuracy``) to the keys Keras puts in ``logs`` (``val_accuracy``)."""
    split, _, metric = name.partition("/")
    if not metric:
        return name
    return metric if split == "train" else f"{split}_{metric}"


def tracked_metric_name(keras_name: str) -> str:
    """Keras ``logs`` keys to our names: ``val_loss`` -> ``val/loss``, ``loss`` -> ``train/loss``."""
    if keras_name.startswith("val_"):
        return f"val/{keras_name[4:]}"
    return f"train/{keras_name}"


def _mode(monitor: str) -> str:
    return "min" if "loss" in monitor else "max"


@CALLBACKS.register("early_stopping")
def early_stopping(cfg: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return keras.callbacks.EarlyStopping(
        monitor=keras_metric_name(cfg.monitor),
        mode=_mode(cfg.monitor),
        patience=cfg.patience,
        min_delta=cfg.get("min_delta", 0.0),
        restore_best_weights=cfg.restore_best_weights,
        verbose=1,
    )


def staging_path(path: Path) -> Path:
    """Where ``path`` is written before it replaces the real file (same folder, same suffix)."""
    return path.with_name(f".partial-{path.name}")


def publish(staged: Path, path: Path) -> None:
    """Atomically replace ``path`` by the fully written ``staged`` file.

    A process killed while writing (a lost machine, an out-of-memory kill) then
    leaves the previous complete file, never a truncated one that fails to load.
    """
    os.replace(staged, path)


class BestAndLastCheckpoint(keras.callbacks.Callback):
    """``best.keras`` whenever the monitored metric improves, ``last.keras`` when training ends."""

    def __init__(self, directory: Path, monitor: str, save_last: bool, best_so_far: float | None) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.best_path = directory / "best.keras"
        self.last_path = directory / "last.keras"
        self.save_last = save_last
        # Keras writes the improved model to the staging file; on_epoch_end publishes it.
        self._best = keras.callbacks.ModelCheckpoint(
            staging_path(self.best_path),
            monitor=keras_metric_name(monitor),
            mode=_mode(monitor),
            save_best_only=True,
            initial_value_threshold=best_so_far,
        )

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._best.set_model(model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._best.on_epoch_end(epoch, logs)
        if staging_path(self.best_path).exists():
            publish(staging_path(self.best_path), self.best_path)

    def on_train_end(self, logs: dict | None = None) -> None:
        # Once, not every epoch: saving costs real time per epoch, and a killed run
        # resumes from the BackupAndRestore state, not from last.keras.
        if self.save_last:
            self.model.save(staging_path(self.last_path))
            publish(staging_path(self.last_path), self.last_path)


@CALLBACKS.register("checkpoint")
def checkpoint(cfg: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return BestAndLastCheckpoint(
        ctx.checkpoint_dir, cfg.monitor, cfg.get("save_last", True), ctx.best_so_far.get(cfg.monitor)
    )


class CrashSafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, with each backup written aside and then renamed into place.

    Keras overwrites ``latest.weights.h5`` in place, so a kill during that write
    leaves a truncated file the resumed run cannot open ("bad object header").
    Weights are published before the epoch counter, so the worst a kill between
    the two renames costs is one repeated epoch.
    """

    def _save_model(self) -> None:
        final = {"_weights_path": self._weights_path, "_training_metadata_path": self._training_metadata_path}
        for attr, path in final.items():
            setattr(self, attr, str(staging_path(Path(path))))
        try:
            super()._save_model()
        finally:
            for attr, path in final.items():
                setattr(self, attr, path)
        for path in final.values():
            publish(staging_path(Path(path)), Path(path))


@CALLBACKS.register("backup_and_restore")
def backup_and_restore(cfg: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return CrashSafeBackupAndRestore(str(ctx.backup_dir), delete_checkpoint=True)


@CALLBACKS.register("reduce_lr_on_plateau")
def reduce_lr_on_plateau(cfg: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return keras.callbacks.ReduceLROnPlateau(
        monitor=keras_metric_name(cfg.monitor),
        mode=_mode(cfg.monitor),
        factor=cfg.factor,
        patience=cfg.patience,
        min_lr=cfg.min_lr,
        verbose=1,
    )


@CALLBACKS.register("terminate_on_nan")
def terminate_on_nan(cfg: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return TerminateOnNonFinite()


class TerminateOnNonFinite(keras.callbacks.Callback):
    """Stop at the first NaN or infinite loss, and say so: the run then ends FAILED."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, float] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_at = (self._epoch, float(loss))
            self.model.stop_training = True


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class MlflowMetricsLogger(keras.callbacks.Callback):
    """Per-epoch ``train/*``, ``val/*``, ``lr``, ``epoch_seconds`` and ``images_per_second``.

    Epochs already in the run (a resumed run repeating an epoch whose backup was
    not written) are not logged twice.
    """

    def __init__(self, recorder: NullRecorder, images_per_epoch: int, stage: int = 0) -> None:
        super().__init__()
        self.recorder = recorder
        self.images_per_epoch = images_per_epoch
        self.stage = stage
        self._logged_steps = set(recorder.metric_history("train/loss"))
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        if epoch in self._logged_steps:
            return
        metrics = {tracked_metric_name(k): float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        metrics["lr"] = current_learning_rate(self.model.optimizer)
        metrics["epoch_seconds"] = seconds
        metrics["images_per_second"] = self.images_per_epoch / max(seconds, 1e-9)
        metrics["stage"] = self.stage
        self.recorder.log_metrics(metrics, step=epoch)
        self._logged_steps.add(epoch)


@CALLBACKS.register("mlflow_logger")
def mlflow_logger(cfg: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return MlflowMetricsLogger(ctx.recorder, ctx.images_per_epoch, ctx.stage)


def build_callbacks(cfg: DictConfig, ctx: CallbackContext) -> list[keras.callbacks.Callback]:
    """Callbacks in config order, skipping those with ``enabled: false``."""
    return [
        CALLBACKS.get(node.name)(node, ctx)
        for node in cfg.values()
        if node is not None and node.get("enabled", True)
    ]
