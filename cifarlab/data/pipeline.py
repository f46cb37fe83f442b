"""tf.data input pipelines over uint8 arrays held in memory.

train: a stream of batches of image indices, epoch after epoch -> gather, cast
and augment whole batches -> prefetch. Each epoch's order and each batch's
augmentation are functions of the run's seed and their place in the stream
(:mod:`cifarlab.data.draws`), and the stream starts at any epoch: a run
resumed at epoch k sees the batches an uninterrupted run saw from epoch k on,
while every epoch of a run is still shuffled anew. Pixels stay
0-255 floats: the model scales them itself (its first layer), so a saved model
takes raw images, and the pipeline never does work the model would redo.

When the CPU is also what trains (no GPU), the batches are made by one thread
(``trainer.input_parallelism=auto``; ``autotune`` hands it to tf.data, as ``auto``
does on GPUs and under multi_worker), and that thread's ops (the affine
resampling is nearly all of the cost) are split over every usable core. The
intra-op threads of a training step wait for each other, so a producer that
takes one core for a while stalls all of them for that while: split over the
cores, it takes each for a share of it, and the step loses the share, not the
whole. In 16 back-to-back rounds on 2 cores (cnn_bn, shift_flip_rotate, batch 64),
pipeline-fed training ran at a median 0.965 of memory-fed with the producer's
ops on one core, 0.968 with two parallel map calls and 0.988 with the ops split
over both cores (0.961, 0.968 and 0.973 in a second set). tf.data's autotuned
parallelism measured 0.94-0.98 before. The split changes no pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cifarlab.data.augment import BatchAugment
from cifarlab.data.draws import SHUFFLE, draw_key
from cifarlab.data.mixing import BatchMix
from cifarlab.runtime.hardware import usable_cores

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


def single_producer_options() -> tf.data.Options:
    """One producer thread whose ops run on every usable core (tf.data's default keeps them on one)."""
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = usable_cores()
    return options


def _sharded_by_element(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Under trainer.strategy=multi_worker each worker takes every n-th element (arrays
    in memory have no files to split); no effect on one machine."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


INFINITE = tf.int64.max  # the epoch stream's end: never reached


def _to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), labels


def batches_per_epoch(images: int, batch_size: int, steps_per_epoch: int | None = None) -> int:
    """Training batches in one epoch: ``steps_per_epoch``, or one pass over the split (last batch partial)."""
    return steps_per_epoch or math.ceil(images / batch_size)


def _pass_order(count: int, seed: int, shuffle_buffer: int | None) -> Callable[[tf.Tensor], tf.Tensor]:
    """Pass number -> the order of the images in that pass, a function of (seed, pass) alone."""

    def order(index: tf.Tensor) -> tf.Tensor:
        key = draw_key(seed, SHUFFLE, index)
        if shuffle_buffer is None or shuffle_buffer >= count:
            return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=key)
        # A local shuffle, as a shuffle buffer of that many images makes one: each image
        # moves by less than shuffle_buffer places (1 keeps the order). Stateless, unlike
        # Dataset.shuffle, whose seed handling fails on a tensor seed under a global seed of 0.
        jitter = tf.random.stateless_uniform([count], key, 0.0, float(shuffle_buffer))
        return tf.cast(tf.argsort(tf.range(count, dtype=tf.float32) + jitter, stable=True), tf.int64)

    return order


def index_batches(
    count: int,
    batch_size: int,
    seed: int,
    first_epoch: tf.Tensor,
    epoch_batches: int,
    whole_passes: bool,
    shuffle_buffer: int | None = None,
) -> tf.data.Dataset:
    """(position, image indices) of every training batch from the first of ``first_epoch`` on.

    Epoch e is batches ``e * epoch_batches`` onwards of one endless stream.
    ``whole_passes``: each pass over the split is batched on its own (its last
    batch partial), else passes follow each other and batches straddle them.
    """
    start = tf.cast(first_epoch, tf.int64) * epoch_batches
    order = _pass_order(count, seed, shuffle_buffer)
    if whole_passes:
        per_pass = math.ceil(count / batch_size)
        passes = tf.data.Dataset.range(start // per_pass, INFINITE).map(order)
        batches = passes.flat_map(lambda o: tf.data.Dataset.from_tensors(o).rebatch(batch_size))
        batches = batches.skip(start % per_pass)
    else:
        first = start * batch_size  # the stream's first image, counted over all passes
        first_pass, skipped = first // count, first % count
        head = tf.data.Dataset.range(first_pass, first_pass + 1).map(lambda p: order(p)[skipped:])
        batches = head.concatenate(tf.data.Dataset.range(first_pass + 1, INFINITE).map(order)).rebatch(
            batch_size
        )
    return tf.data.Dataset.zip(tf.data.Dataset.range(start, INFINITE), batches)


def train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    augment: BatchAugment | None,
    seed: int,
    repeat: bool = False,
    shuffle_buffer: int | None = None,
    parallel_calls: int | None = None,
    first_epoch: tf.Variable | int = 0,
    steps_per_epoch: int | None = None,
    steps_per_execution: int = 1,
    mix: BatchMix | None = None,
) -> tf.data.Dataset:
    """Training batches from epoch ``first_epoch`` on; ``parallel_calls``: threads making them (None: autotuned).

    ``repeat``: the endless stream of epochs (give fit ``steps_per_epoch=batches_per_epoch(...)``);
    else the batches of one epoch, the same each time the dataset is iterated.
    ``steps_per_epoch``: None makes each epoch one pass over the split, else
    passes follow each other and batches straddle them. ``steps_per_execution``:
    Keras draws whole executions, so an epoch draws a whole number of them.
    ``first_epoch`` is read when iteration starts, so a ``tf.Variable`` set as
    fit's first epoch begins (``cifarlab.training.epoch_draws.EpochDraws``)
    starts the stream where a resumed fit starts. ``mix`` (batch mixing, e.g.
    mixup) follows ``augment`` and turns the labels into soft one-hot vectors.
    """
    count = len(images)
    steps = batches_per_epoch(count, batch_size, steps_per_epoch)
    drawn = math.ceil(steps / steps_per_execution) * steps_per_execution

    def stream(_: tf.Tensor) -> tf.data.Dataset:
        start = tf.convert_to_tensor(first_epoch)
        whole_passes = steps_per_epoch is None
        batches = index_batches(count, batch_size, seed, start, drawn, whole_passes, shuffle_buffer)
        return batches if repeat else batches.take(steps)

    pixels, targets = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)

    def prepare(position: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(tf.gather(pixels, indices), tf.float32)
        x = x if augment is None else augment(x, position)
        y = tf.gather(targets, indices)
        return (x, y) if mix is None else mix(x, y, position)

    # stream() runs, reading first_epoch, only when an iterator starts.
    ds = tf.data.Dataset.from_tensors(0).flat_map(stream)
    ds = ds.map(prepare, num_parallel_calls=map_calls(parallel_calls), deterministic=True)
    if parallel_calls == 1:
        ds = ds.with_options(single_producer_options())
    return _sharded_by_element(ds.prefetch(prefetch_size(parallel_calls)))


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    return _sharded_by_element(ds.map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))
