"""tf.data input pipelines over uint8 arrays held in memory.

train: shuffle -> batch -> cast and augment whole batches -> prefetch. Pixels stay
0-255 floats: the model scales them itself (its first layer), so a saved model
takes raw images, and the pipeline never does work the model would redo.

When the CPU is also what trains (no GPU), the batches are made by one thread
(``trainer.input_parallelism=auto``; ``autotune`` hands it to tf.data, as ``auto``
does on GPUs and under multi_worker): the two intra-op threads of a 2-core
training step wait for each other, so a pipeline that runs parallel map calls
interrupts both and costs training about twice its own CPU time. In back-to-back
A/B pairs on 2 cores, pipeline-fed training ran at 0.97-0.99 of memory-fed with
one producer thread against 0.94-0.98 with tf.data's autotuned parallelism.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifarlab.data.augment import BatchAugment

AUTOTUNE = tf.data.AUTOTUNE
SEQUENTIAL_PREFETCH = 4  # batches made ahead by a single producer thread


def resolve_input_parallelism(setting: int | str, strategy: str = "default") -> int | None:
    """``trainer.input_parallelism``: threads making training batches, None for tf.data's autotuning.

    ``auto`` is 1 where the CPU trains, autotuning where GPUs do, and under
    ``multi_worker`` (every worker builds every global batch there, then keeps its share).
    """
    if setting == "autotune":
        return None
    if setting == "auto":
        cpu_trains = not tf.config.list_logical_devices("GPU")
        return 1 if cpu_trains and strategy != "multi_worker" else None
    return int(setting)


def map_calls(parallel_calls: int | None) -> int:
    """``num_parallel_calls`` for a map making training batches (None: tf.data autotunes)."""
    return AUTOTUNE if parallel_calls is None else parallel_calls


def prefetch_size(parallel_calls: int | None) -> int:
    """Batches to prefetch: tf.data autotunes its own; fixed threads keep a few ready each."""
    return AUTOTUNE if parallel_calls is None else max(SEQUENTIAL_PREFETCH, parallel_calls)


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
    parallel_calls: int | None = None,
) -> tf.data.Dataset:
    """Training batches; ``parallel_calls``: threads making batches (None: tf.data autotunes)."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(shuffle_buffer or len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def prepare(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(x, tf.float32)
        return (x if augment is None else augment(x)), y

    # Order only matters without augmentation: augmented batches draw from one shared generator.
    ds = ds.batch(batch_size).map(prepare, num_parallel_calls=map_calls(parallel_calls), deterministic=augment is None)
    return _sharded_by_element(ds.prefetch(prefetch_size(parallel_calls)))


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    return _sharded_by_element(ds.map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))
