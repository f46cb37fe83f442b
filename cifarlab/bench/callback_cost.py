"""What cifarlab's per-epoch callbacks cost: each default callback's ``on_epoch_end``, timed.

The MLflow logger writes into a real SQLite store in the bench's scratch folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
from omegaconf import DictConfig

from cifarlab import tracking
from cifarlab.training.builders import CallbackContext, MlflowMetricsLogger, build_callbacks


@contextmanager
def scratch_run(store: Path) -> Iterator[tracking.Recorder]:
    """An open MLflow run (its recorder) in a SQLite store under ``store``, without system metrics."""
    store.mkdir(parents=True, exist_ok=True)
    target = tracking.resolve_target(
        f"sqlite:///{store / 'mlflow.db'}", store, "bench-callbacks", system_metrics=False
    )
    with tracking.open_run(target, resume_run_id=None, run_name=None, tags={}) as recorder:
        yield recorder


def epoch_logs(epoch: int) -> dict[str, float]:
    """Logs whose validation accuracy improves every epoch, so the best checkpoint is written every time."""
    return {
        "loss": 1.2 - 0.01 * epoch,
        "accuracy": 0.5 + 0.01 * epoch,
        "val_loss": 1.3 - 0.01 * epoch,
        "val_accuracy": 0.45 + 0.01 * epoch,
        "learning_rate": 0.0025,
    }


def time_epoch_ends(
    callbacks: list[keras.callbacks.Callback], model: keras.Model, epochs: int
) -> dict[str, list[float]]:
    """Seconds of each callback's ``on_epoch_end`` over ``epochs`` epochs, after one uncounted first epoch."""
    seconds: dict[str, list[float]] = {}
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    for epoch in range(epochs + 1):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        for cb in callbacks:
            name = "mlflow" if isinstance(cb, MlflowMetricsLogger) else type(cb).__name__
            start = time.perf_counter()
            cb.on_epoch_end(epoch, epoch_logs(epoch))
            if epoch:
                seconds.setdefault(name, []).append(time.perf_counter() - start)
    model.stop_training = False  # an early-stopping callback may have asked; the model is measured on
    return seconds


def callback_epoch_seconds(
    callbacks_node: DictConfig, model: keras.Model, images_per_epoch: int, epochs: int, workdir: Path
) -> dict[str, list[float]]:
    """Seconds of each per-epoch call of every default cifarlab callback, the MLflow logger into real SQLite.

    The callbacks are built as a run builds them (from the plan's ``callbacks`` node). The first
    epoch (caches, first save) is not counted.
    """
    store = workdir / "callbacks"
    with scratch_run(store) as recorder:
        ctx = CallbackContext(
            checkpoint_dir=store / "checkpoints",
            backup_dir=store / "backup",
            recorder=recorder,
            images_per_epoch=images_per_epoch,
        )
        callbacks = build_callbacks(callbacks_node, ctx)
        if not any(isinstance(cb, MlflowMetricsLogger) for cb in callbacks):
            callbacks.append(MlflowMetricsLogger(ctx.recorder, images_per_epoch))
        return time_epoch_ends(callbacks, model, epochs)
