"""Random draws keyed on their place in training: (run seed, stream, index) -> a stateless RNG seed.

Each epoch's shuffle and each batch's augmentation take their randomness from
TensorFlow's stateless ops under a key computed from the run's seed and where
they happen (which epoch, which batch), never from a generator whose state
depends on what this process ran before: a resumed run draws exactly what an
uninterrupted one did, and parallel map calls draw the same in any order.
"""

from __future__ import annotations

import tensorflow as tf

# Independent streams of draws under one run seed.
SHUFFLE = 0
AUGMENT = 1
MIX = 2  # batch mixing (mixup): its own stream, so the other draws are those of a run without it
CUT = 3  # CutMix's boxes, weights and partners
MIX_CHOICE = 4  # with both mixup and CutMix, which one a batch takes


def draw_key(seed: int, stream: int, index: tf.Tensor | int) -> tf.Tensor:
    """A shape-[2] int64 seed for ``tf.random.stateless_*``, a function of (seed, stream, index) alone."""
    base = tf.constant([seed, stream], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))


def draw_keys(seed: int, stream: int, index: tf.Tensor | int, count: int) -> tf.Tensor:
    """``count`` independent keys (shape [count, 2]) for the draws made at ``index``."""
    return tf.random.experimental.stateless_split(draw_key(seed, stream, index), count)
