"""tf.data input pipelines over uint8 arrays held in memory.

train: shuffle -> batch -> augment whole batches -> prefetch. Pixels stay 0-255
floats: the model scales them itself (its first layer), so a saved model takes
raw images, and the pipeline never does work the model would redo.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifarlab.augment import BatchAugment

AUTOTUNE = tf.data.AUTOTUNE


def _sharded_by_element(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Under trainer.strategy=multi_worker each worker takes every n-th element (arrays
    in memory have no files to split); no effect on one machine."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), labels


def train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    augment: BatchAugment | None,
    seed: int,
    repeat: bool = False,
    shuffle_buffer: int | None = None,
) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(shuffle_buffer or len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size).map(_to_float, num_parallel_calls=AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=AUTOTUNE, deterministic=False)
    return _sharded_by_element(ds.prefetch(AUTOTUNE))


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    return _sharded_by_element(ds.map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))
