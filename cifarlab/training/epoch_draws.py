"""Every random draw of an epoch a function of (seed, epoch), so a resumed fit trains as an uninterrupted one.

What a training step depends on, and where a resumed run gets it back:

- weights, optimizer slots, its step counter and learning rate (hence every
  learning-rate schedule): Keras's BackupAndRestore saves and restores them;
- the order of the images and the augmentation of each batch: the input stream
  (``cifarlab.data.pipeline.train_dataset``) draws them from the seed and their
  place in the stream, and starts at the epoch this callback tells it;
- dropout masks (and any other layer's random draws): Keras's ``SeedGenerator``
  states are not in the backup, so this callback sets each one at the start of
  every epoch to its seed and a counter that depends on the epoch alone.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# Draws a seed generator may make in one epoch before its counter reaches the next epoch's.
COUNTER_STRIDE = 2**20


def seed_states(model: keras.Model) -> list[keras.Variable]:
    """The state of every Keras ``SeedGenerator`` in ``model`` (its variables that are not weights)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights and v.path.endswith("seed_generator_state")]


class EpochDraws(keras.callbacks.Callback):
    """At each epoch's start: the input stream's first epoch, and each seed generator's state for this epoch.

    ``first_epoch`` is the variable to give ``train_dataset``: the stream reads
    it when fit starts iterating, after the first epoch (the resumed one) began.
    """

    def __init__(self) -> None:
        super().__init__()
        self.first_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_epoch")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.first_epoch.assign(epoch)
        for state in seed_states(self.model):
            # A generator's seed (the first entry) never changes; its counter restarts per epoch.
            seed = int(keras.ops.convert_to_numpy(state)[0])
            state.assign(np.array([seed, epoch * COUNTER_STRIDE], dtype=state.dtype))
