"""The benchmark's subprocess workers: ``python -m cifarlab bench --worker KIND --worker-args JSON``.

Each takes its arguments as a dict and returns a JSON-able dict, which
``processes.report_worker_result`` prints for the parent to read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import tensorflow as tf

from cifarlab.bench.processes import report_worker_result
from cifarlab.bench.search_overhead import keras_search_loop
from cifarlab.bench.throughput import fit_throughput
from cifarlab.bench.variants import build_compiled, train_data
from cifarlab.config.compose import compose_config
from cifarlab.data.pipeline import batches_per_epoch, eval_dataset
from cifarlab.training.plan import assemble


class EpochClock(keras.callbacks.Callback):
    """Each epoch's duration and end time."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []
        self.durations: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.ends.append(time.perf_counter())
        self.durations.append(self.ends[-1] - self._start)


def bare_fit(args: dict) -> dict:
    """A bare Keras fit: same model, split, batch, augmentation and validation data; no cifarlab callbacks."""
    plan = assemble(compose_config(args["overrides"]))
    t = plan.trainer
    keras.utils.set_random_seed(t.seed)
    data = plan.data.load()
    model = plan.model.build(data.input_shape, data.num_classes)
    model.compile(
        optimizer=keras.optimizers.Nadam(learning_rate=plan.optimizer.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    # The input pipeline a cifarlab run would use, so that only the framework around fit differs.
    train_ds, _ = train_data(plan, data)
    val_ds = eval_dataset(data.x_val, data.y_val, t.eval_batch_size)
    clock = EpochClock()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args["epochs"],
        callbacks=[clock],
        verbose=2,
        steps_per_epoch=batches_per_epoch(len(data.x_train), t.batch_size),
    )
    return {"epoch_seconds": clock.durations, "periods": [b - a for a, b in zip(clock.ends, clock.ends[1:])]}


def threads(args: dict) -> dict:
    """Training throughput with TensorFlow's thread pools set before anything runs."""
    # Importing TensorFlow and Keras (above) starts no runtime; these must come before the first op.
    intra, inter = args["threads"]
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    plan = assemble(compose_config(args["overrides"]))
    data = plan.data.load()
    model = build_compiled(plan, data, args["warm_steps"] + args["measure_steps"], 1)
    dataset, _ = train_data(plan, data)
    values = [
        fit_throughput(
            model,
            dataset,
            args["warm_steps"],
            args["measure_steps"],
            plan.trainer.batch_size,
            args["window_steps"],
        )
        for _ in range(args["repeats"])
    ]
    return {"images_per_s": values, "threads": [intra, inter]}


WORKERS: dict[str, Callable[[dict], dict]] = {
    "bare_fit": bare_fit,
    "threads": threads,
    "search_peer": keras_search_loop,
}


def run_worker_here(kind: str, args: dict) -> None:
    """This process is worker ``kind``: measure, then report the result on stdout."""
    report_worker_result(WORKERS[kind](args))
