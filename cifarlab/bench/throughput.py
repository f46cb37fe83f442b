"""Throughput measurements: training steps timed by a batch-end callback, and the input pipeline alone."""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf


class BatchClock(keras.callbacks.Callback):
    """(index of the last batch done, time) after every executed step."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[int, float]] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.marks.append((batch, time.perf_counter()))


def steps_per_second(
    marks: Sequence[tuple[int, float]], warm_steps: int, window_steps: int | None = None
) -> float:
    """Steps per second from (index of the last step done, time) marks, skipping ``warm_steps``.

    Over all timed steps; with ``window_steps``, over the fastest run of at least that
    many consecutive timed steps.
    """
    marks = [(b, t) for b, t in marks if b >= warm_steps - 1]
    spans = [(marks[0], marks[-1])]
    if window_steps:
        spans = [
            (first, next(last for last in marks[i + 1 :] if last[0] - first[0] >= window_steps))
            for i, first in enumerate(marks)
            if marks[-1][0] - first[0] >= window_steps
        ] or spans
    return max((end[0] - start[0]) / (end[1] - start[1]) for start, end in spans)


def fit_throughput(
    model: keras.Model,
    dataset: tf.data.Dataset,
    warm_steps: int,
    measure_steps: int,
    batch_size: int,
    window_steps: int | None = None,
) -> float:
    """Images per second of ``model.fit`` on ``dataset`` after ``warm_steps`` untimed steps.

    Steps are timed by a batch-end callback, as cifarlab's own per-batch callbacks
    (time budget, non-finite loss) would see them. With ``window_steps``, the fastest
    run of that many consecutive steps within the measured ones: the same best-of
    estimate as :func:`matmul_peak`, so that a burst of load from another process
    during part of a measurement does not count against the model.
    """
    clock = BatchClock()
    model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=warm_steps + measure_steps,
        callbacks=[clock],
        verbose=0,
        shuffle=False,
    )
    return steps_per_second(clock.marks, warm_steps, window_steps) * batch_size


def pipeline_throughput(dataset: tf.data.Dataset, batches: int, warm: int = 3) -> float:
    """Images per second of iterating ``dataset`` alone."""
    iterator = iter(dataset)
    for _ in range(warm):
        next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(iterator)
        images += int(x.shape[0])
    return images / (time.perf_counter() - start)


def materialise(dataset: tf.data.Dataset, batches: int) -> tf.data.Dataset:
    """``batches`` batches of ``dataset`` computed now and served from memory, same element spec."""
    xs, ys = [], []
    for x, y in dataset.take(batches):
        xs.append(x.numpy())
        ys.append(y.numpy())
    batch_size = xs[0].shape[0]
    memory = tf.data.Dataset.from_tensor_slices((np.concatenate(xs), np.concatenate(ys)))
    return memory.batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE)
