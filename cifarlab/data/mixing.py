"""Batch mixing: augmentations that blend images *and* their labels, after the image augmentation.

Mixup (Zhang et al., 2018, "mixup: Beyond Empirical Risk Minimization") blends
each image and its one-hot label with another image of the same batch, with a
weight drawn from Beta(alpha, alpha) per image. Keras has a ``MixUp`` layer, but
its draws come from a ``SeedGenerator`` (it refuses a stateless key), so a
resumed run would mix differently from the run it continues. Here the weights
and partners come from TensorFlow's stateless ops under the batch's key
(:mod:`cifarlab.data.draws`), as every other draw of the pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from omegaconf import DictConfig

from cifarlab.data.draws import MIX, draw_keys

# (float images, integer labels, the batch's position in the stream) -> (images, soft labels).
BatchMix = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def beta_weights(alpha: float, count: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
    """``count`` draws from Beta(alpha, alpha): the first of two Gamma(alpha) draws over their sum."""
    first = tf.random.stateless_gamma([count], keys[0], alpha)
    second = tf.random.stateless_gamma([count], keys[1], alpha)
    return tf.math.divide_no_nan(first, first + second)  # both zero (tiny alpha): take the partner whole


def mixup(alpha: float, num_classes: int, seed: int) -> BatchMix:
    """Mixup with Beta(``alpha``, ``alpha``) weights, one per image; labels become soft one-hot vectors."""

    def mix(images: tf.Tensor, labels: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        keys = draw_keys(seed, MIX, position, 3)
        count = tf.shape(images)[0]
        weight = beta_weights(alpha, count, keys)
        partner = tf.random.experimental.stateless_shuffle(tf.range(count), seed=keys[2])
        targets = tf.one_hot(labels, num_classes)
        image_weight = tf.cast(weight[:, None, None, None], images.dtype)
        images = image_weight * images + (1.0 - image_weight) * tf.gather(images, partner)
        targets = weight[:, None] * targets + (1.0 - weight[:, None]) * tf.gather(targets, partner)
        return images, targets

    return mix


def mixup_alpha(augmentation: DictConfig) -> float:
    """``augmentation.mixup_alpha``: 0 (or absent) for no mixup."""
    return float(augmentation.get("mixup_alpha") or 0.0)


def build_mixing(augmentation: DictConfig, num_classes: int, seed: int) -> BatchMix | None:
    """The batch mixing ``augmentation`` asks for, or None."""
    alpha = mixup_alpha(augmentation)
    return mixup(alpha, num_classes, seed) if alpha > 0 else None
