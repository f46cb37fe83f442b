"""Ctrl-C and SIGTERM stop Keras at a batch's end, never inside TensorFlow.

``train`` and ``evaluate`` keep the signals (``cifarlab.runtime.interrupts.signals_deferred``)
while they run; ``StopOnSignal``, in every fit and predict, raises the kept one when a
batch ends, from Keras's own loop, so that the run ends KILLED (and a training resumes as
always). Outside such a block it does nothing.
"""

from __future__ import annotations

import keras

from cifarlab.runtime.interrupts import stop_if_signalled


class StopOnSignal(keras.callbacks.Callback):
    """Acts on a SIGINT or SIGTERM kept during the batch: its handler raises between batches."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        stop_if_signalled()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        stop_if_signalled()

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        stop_if_signalled()
