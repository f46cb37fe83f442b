"""A loss gone NaN or infinite stops training at once, as an error the run turns into advice.

Training adds ``StopOnNonFiniteLoss`` whether the config lists it or not: a diverged
run otherwise fails later, with an error about NaN inputs far from its cause.
"""

from __future__ import annotations

import keras

from cifarlab.errors import CifarlabError


class TrainingDiverged(CifarlabError):
    """The training loss became NaN or infinite; the run turns it into advice on the learning rate."""

    def __init__(self, epoch: int, loss: float) -> None:
        self.epoch, self.loss = epoch, loss
        super().__init__(f"training loss became {loss} in epoch {epoch + 1}")


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Keras's TerminateOnNaN(raise_error=True), raising TrainingDiverged with the epoch and loss."""

    def __init__(self) -> None:
        super().__init__(raise_error=True)
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            raise TrainingDiverged(self._epoch, float((logs or {})["loss"])) from None
