"""Keras BatchNormalization computed by TensorFlow's fused kernel while training.

Keras 3 normalises with separate mean, variance, subtract, multiply and add ops;
TensorFlow's ``FusedBatchNormV3`` (oneDNN on x86) does the same work in one pass
forward and one backward, which is most of BatchNorm's cost in a small CNN on a CPU.
The results are Keras's own: the same output, the same biased moving variance and
the same momentum update. Anything the fused kernel cannot take (not 4-D, axis not
last, inference, masks, synchronized) runs the parent's code unchanged.

bfloat16 inputs go into the kernel as they are on CPUs (it computes the statistics
in float32, as Keras does after casting), which saves a cast each way and halves the
bytes BatchNorm reads and writes; on GPUs they are cast to float32 first, as before.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf
from keras import layers


@functools.cache
def _cpu_only() -> bool:
    return not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="cifarlab")
class FusedBatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a fused training step (same config, same weights)."""

    def _fusable(self, inputs, training, mask) -> bool:
        return (
            bool(training)
            and self.trainable
            and mask is None
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        if inputs.dtype == tf.bfloat16 and _cpu_only():
            x = inputs  # the CPU kernel takes bfloat16 and computes in float32
        else:
            x = tf.cast(inputs, "float32")  # Keras normalises half-precision inputs in float32 too
        channels = x.shape[-1]
        scale = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
        offset = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
        empty = tf.constant([], tf.float32)
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=scale,
            offset=offset,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the Bessel-corrected variance; Keras tracks the biased one.
        count = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (count - 1.0) / count
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, inputs.dtype)
