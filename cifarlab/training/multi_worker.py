"""Keras 3 ``fit`` / ``evaluate`` / ``predict`` under tf.distribute.MultiWorkerMirroredStrategy.

Keras 3.x's TensorFlow trainer does not run under MultiWorkerMirroredStrategy
(keras-team/keras#20585). :func:`adapt_model` fixes one model instance, touching no
Keras globals, in four places:

1. ``_maybe_symbolic_build`` reduces the first distributed batch across workers
   only to learn its shapes, which collective all-reduce cannot do for a nested
   batch: it gets this worker's local batch instead.
2. ``train_step`` / ``test_step`` logs are reduced with ``axis=0``, which fails
   for scalars: a leading axis of one makes it a mean over workers. Epoch logs
   come from the metric variables, so every worker sees the same global numbers
   (and EarlyStopping and the non-finite-loss stop decide alike on every worker).
3. BatchNorm moving statistics are not synchronised (each worker updates its own
   copy from its own batches): a callback averages them over workers before each
   validation and at each epoch end, so validation, checkpoints and the final
   model are the same on every worker.
4. A worker whose share of the last evaluation batch is empty skips the step
   (Conv and BatchNorm kernels fail on zero rows); ``predict`` runs it on one
   padding row that is sliced away.

Every worker must make the same collective calls in the same order, so all of
them run fit, validation, checkpoint saves and evaluation alike; only the chief
records to MLflow (``cifarlab.training.distribute.is_chief``).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )


def average_non_trainable(model: keras.Model) -> None:
    """Replace every float non-trainable weight (BatchNorm statistics) by its mean over workers.

    A collective: every worker must call it at the same point.
    """
    strategy = model.distribute_strategy
    for variable in model.non_trainable_variables:
        if variable.dtype.startswith("float"):  # not the integer seed-generator states
            variable.assign(strategy.reduce("MEAN", tf.convert_to_tensor(variable.value), axis=None))


class AverageNonTrainableWeights(keras.callbacks.Callback):
    """Averages BatchNorm statistics over workers before validation, at epoch end and at the end."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        average_non_trainable(self.model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        average_non_trainable(self.model)

    def on_train_end(self, logs: dict | None = None) -> None:
        average_non_trainable(self.model)


def _local(strategy: tf.distribute.Strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _with_worker_axis(logs):
    return tf.nest.map_structure(lambda t: tf.expand_dims(tf.convert_to_tensor(t), 0), logs)


def _at_least_one_row(data):
    def pad(t):
        t = tf.convert_to_tensor(t)
        extra = tf.maximum(1 - tf.shape(t)[0], 0)
        paddings = tf.concat([[[0, extra]], tf.zeros([tf.rank(t) - 1, 2], tf.int32)], 0)
        return tf.pad(t, paddings)

    return tf.nest.map_structure(pad, data)


def adapt_model(model: keras.Model) -> keras.Model:
    """Make ``model`` (built under a multi-worker strategy's scope) train, evaluate and predict there.

    A no-op outside multi-worker mode. Call once after building; compiling again keeps it.
    """
    strategy = model.distribute_strategy
    if not in_multi_worker_mode(strategy) or getattr(model, "_cifarlab_multi_worker", False):
        return model
    build, train_step, test_step = model._maybe_symbolic_build, model.train_step, model.test_step
    predict_step, fit = model.predict_step, model.fit

    def local_build(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break
            data_batch = tf.nest.map_structure(lambda v: _local(strategy, v), data_batch)
        return build(iterator=None, data_batch=data_batch)

    def worker_train_step(data):
        return _with_worker_axis(train_step(data))

    def worker_test_step(data):
        rows = tf.shape(tf.nest.flatten(data)[0])[0]
        logs = tf.cond(rows > 0, lambda: test_step(data), model.get_metrics_result)
        return _with_worker_axis(logs)

    def worker_predict_step(data):
        rows = tf.shape(tf.nest.flatten(data)[0])[0]
        return tf.nest.map_structure(lambda t: t[:rows], predict_step(_at_least_one_row(data)))

    def fit_averaging_batchnorm(*args, callbacks=None, **kwargs):
        return fit(*args, callbacks=[AverageNonTrainableWeights(), *(callbacks or [])], **kwargs)

    model._maybe_symbolic_build = local_build
    model.train_step = worker_train_step
    model.test_step = worker_test_step
    model.predict_step = worker_predict_step
    model.fit = fit_averaging_batchnorm
    model._cifarlab_multi_worker = True
    model.train_function = model.test_function = model.predict_function = None
    return model
