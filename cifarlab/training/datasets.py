"""The tf.data pipelines one training stage reads: shuffled, augmented train batches and val batches."""

from __future__ import annotations

import keras
import tensorflow as tf
from omegaconf import DictConfig

from cifarlab.config.schema import TrainerConfig
from cifarlab.data.base import DataSplits
from cifarlab.data.mixing import build_mixing
from cifarlab.data.pipeline import batches_per_epoch, eval_dataset, resolve_input_parallelism, train_dataset
from cifarlab.training.builders import build_augmentation
from cifarlab.training.compile import soft_labels
from cifarlab.training.plan import RunPlan


def pipeline_settings(trainer: TrainerConfig) -> dict:
    """What ``trainer.*`` asks of the input pipeline, as ``train_dataset`` keywords.

    Asked for when a stage builds its pipeline, not when the plan is assembled:
    resolving ``input_parallelism=auto`` looks for GPUs, which starts TensorFlow's runtime.
    """
    return {
        "seed": trainer.seed,
        "repeat": True,  # one stream of epochs: fit takes steps_per_epoch batches of it per epoch
        "steps_per_epoch": trainer.steps_per_epoch,
        "steps_per_execution": trainer.steps_per_execution,
        "shuffle_buffer": trainer.shuffle_buffer,
        "parallel_calls": resolve_input_parallelism(trainer.input_parallelism, trainer.strategy),
    }


def steps_per_epoch(trainer: TrainerConfig, data: DataSplits) -> int:
    """Training steps in one epoch: ``trainer.steps_per_epoch`` or one pass over the training split."""
    return batches_per_epoch(len(data.x_train), trainer.batch_size, trainer.steps_per_epoch)


def stage_datasets(
    plan: RunPlan, data: DataSplits, augmentation: DictConfig, first_epoch: tf.Variable | int = 0
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Train batches from epoch ``first_epoch`` on, and validation batches; one-hot labels where
    :func:`soft_labels` asks for them (mixup makes its own)."""
    t = plan.trainer
    augment = build_augmentation(augmentation, seed=t.seed)
    mix = build_mixing(augmentation, data.num_classes, seed=t.seed)
    train_ds = train_dataset(
        data.x_train,
        data.y_train,
        t.batch_size,
        augment,
        first_epoch=first_epoch,
        mix=mix,
        **pipeline_settings(t),
    )
    val_ds = eval_dataset(data.x_val, data.y_val, t.eval_batch_size)
    if soft_labels(plan):
        one_hot = lambda x, y: (x, keras.ops.one_hot(y, data.num_classes))  # noqa: E731
        train_ds = train_ds if mix is not None else train_ds.map(one_hot)
        val_ds = val_ds.map(one_hot)
    return train_ds, val_ds
