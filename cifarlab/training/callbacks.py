"""Callback registry: every training side effect is a Keras callback built from its own node."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
from omegaconf import DictConfig

from cifarlab.models.class_names import save_class_names
from cifarlab.registry import Registry
from cifarlab.tracking import Recorder
from cifarlab.training.divergence import StopOnNonFiniteLoss
from cifarlab.training.metric_names import keras_metric_name, monitor_mode, tracked_metric_name


@dataclass
class CallbackContext:
    """What callbacks need from the run beyond their own config node."""

    checkpoint_dir: Path
    backup_dir: Path
    recorder: Recorder
    images_per_epoch: int
    stage: int = 0
    class_names: Sequence[str] = ()  # saved beside each checkpoint, so predict can name classes
    # Best value of each monitored metric already recorded (for a resumed run).
    best_so_far: dict[str, float] = field(default_factory=dict)


CallbackBuilder = Callable[[DictConfig, CallbackContext], keras.callbacks.Callback]
CALLBACKS: Registry[CallbackBuilder] = Registry("callbacks")


@CALLBACKS.register("early_stopping")
def early_stopping(node: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return keras.callbacks.EarlyStopping(
        monitor=keras_metric_name(node.monitor),
        mode=monitor_mode(node.monitor),
        patience=node.patience,
        min_delta=node.get("min_delta", 0.0),
        restore_best_weights=node.restore_best_weights,
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

    def __init__(
        self,
        directory: Path,
        monitor: str,
        save_last: bool,
        best_so_far: float | None,
        class_names: Sequence[str] = (),
    ) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.class_names = list(class_names)
        self.best_path = directory / "best.keras"
        self.last_path = directory / "last.keras"
        self.save_last = save_last
        # Keras writes the improved model to the staging file; on_epoch_end publishes it.
        self._best = keras.callbacks.ModelCheckpoint(
            staging_path(self.best_path),
            monitor=keras_metric_name(monitor),
            mode=monitor_mode(monitor),
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
            self._save_class_names(self.best_path)

    def on_train_end(self, logs: dict | None = None) -> None:
        # Once, not every epoch: saving costs real time per epoch, and a killed run
        # resumes from the BackupAndRestore state, not from last.keras.
        if self.save_last:
            self.model.save(staging_path(self.last_path))
            publish(staging_path(self.last_path), self.last_path)
            self._save_class_names(self.last_path)

    def _save_class_names(self, checkpoint: Path) -> None:
        if self.class_names:
            save_class_names(checkpoint, self.class_names)


@CALLBACKS.register("checkpoint")
def checkpoint(node: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return BestAndLastCheckpoint(
        ctx.checkpoint_dir,
        node.monitor,
        node.get("save_last", True),
        ctx.best_so_far.get(node.monitor),
        ctx.class_names,
    )


class CrashSafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore keeping the previous backup (``double_checkpoint``), resuming from it
    whenever the latest cannot be read.

    Keras overwrites the backup in place and falls back to the previous copy only
    when the weights fail to load (OSError). A kill can also land while it writes
    the epoch counter (unreadable JSON), or during the very first backup, when
    there is no previous copy: then this goes back to the previous backup, or
    starts the training over, instead of failing the resumed run.
    """

    def __init__(self, backup_dir: str, **kwargs) -> None:
        super().__init__(backup_dir, double_checkpoint=True, **kwargs)

    def on_train_begin(self, logs: dict | None = None) -> None:
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError):
            self._fall_back_to_previous_backup()
            super().on_train_begin(logs)

    def _fall_back_to_previous_backup(self) -> None:
        pairs = (
            (self._prev_weights_path, self._weights_path),
            (self._prev_training_metadata_path, self._training_metadata_path),
        )
        if all(Path(prev).is_file() for prev, _ in pairs):
            for prev, latest in pairs:
                shutil.copyfile(prev, latest)
        else:  # nothing complete to resume from: train from the start
            shutil.rmtree(self.backup_dir, ignore_errors=True)


@CALLBACKS.register("backup_and_restore")
def backup_and_restore(node: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return CrashSafeBackupAndRestore(str(ctx.backup_dir), delete_checkpoint=True)


@CALLBACKS.register("reduce_lr_on_plateau")
def reduce_lr_on_plateau(node: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return keras.callbacks.ReduceLROnPlateau(
        monitor=keras_metric_name(node.monitor),
        mode=monitor_mode(node.monitor),
        factor=node.factor,
        patience=node.patience,
        min_lr=node.min_lr,
        verbose=1,
    )


@CALLBACKS.register("terminate_on_nan")
def terminate_on_nan(node: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return StopOnNonFiniteLoss()


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class MlflowMetricsLogger(keras.callbacks.Callback):
    """Per-epoch ``train/*``, ``val/*``, ``lr``, ``epoch_seconds`` and ``images_per_second``.

    Epochs already in the run (a resumed run repeating an epoch whose backup was
    not written) are not logged twice.
    """

    def __init__(self, recorder: Recorder, images_per_epoch: int, stage: int = 0) -> None:
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
def mlflow_logger(node: DictConfig, ctx: CallbackContext) -> keras.callbacks.Callback:
    return MlflowMetricsLogger(ctx.recorder, ctx.images_per_epoch, ctx.stage)


def build_callbacks(callbacks: DictConfig, ctx: CallbackContext) -> list[keras.callbacks.Callback]:
    """The ``callbacks`` node's callbacks in config order, skipping those with ``enabled: false``."""
    return [
        CALLBACKS.get(node.name)(node, ctx)
        for node in callbacks.values()
        if node is not None and node.get("enabled", True)
    ]
