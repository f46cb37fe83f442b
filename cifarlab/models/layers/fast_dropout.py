"""Keras Dropout with its random mask drawn from 16 random bits per element, not 32.

Keras draws one float32 uniform per element (``tf.nn.experimental.stateless_dropout``);
on a CPU that random-number generation is most of dropout's cost. This layer draws
one 32-bit word per two elements, from the same counter-based generator (Philox) and
the layer's own Keras ``SeedGenerator`` (so ``keras.utils.set_random_seed`` governs it),
and drops an element when its 16 bits fall under ``round(rate * 65536)``.

So the drop rate is ``rate`` rounded to a multiple of 1/65536 (0.2 becomes 0.199997),
and kept elements are scaled by one over the realised keep probability, so the
layer's expected output is its input exactly, as in Keras. The masks differ from
Keras's, draw for draw; their distribution is the same. Anything else (inference,
``noise_shape``, rate 0 or 1) runs Keras's code unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

BITS = 16
LEVELS = 2**BITS
_PER_WORD = 32 // BITS


def _stateless_seed(seed: tf.Tensor) -> tf.Tensor:
    # Keras keeps seeds as int64 variables; TensorFlow's stateless ops take int32 (as Keras does).
    if seed.dtype == tf.int32:
        return seed
    return tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)


@keras.saving.register_keras_serializable(package="cifarlab")
class FastDropout(layers.Dropout):
    """``keras.layers.Dropout`` with a cheaper random mask (same config, same expected output)."""

    def call(self, inputs, training=False):
        if not training or self.noise_shape is not None or not 0 < self.rate < 1:
            return super().call(inputs, training=training)
        threshold = round(self.rate * LEVELS)
        if threshold in (0, LEVELS):  # a rate within 1/65536 of 0 or 1: Keras's exact code
            return super().call(inputs, training=training)
        count = tf.size(inputs)
        words = tf.random.stateless_uniform(
            [(count + _PER_WORD - 1) // _PER_WORD],
            seed=_stateless_seed(self.seed_generator.next()),
            minval=None,
            maxval=None,
            dtype=tf.int32,  # full-range integers: 32 random bits each
        )
        draws = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:count]
        keep = tf.reshape(draws >= threshold, tf.shape(inputs))
        scale = tf.cast(LEVELS / (LEVELS - threshold), inputs.dtype)
        return tf.where(keep, inputs * scale, tf.zeros_like(inputs))
