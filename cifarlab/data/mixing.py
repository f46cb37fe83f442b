"""Batch mixing: augmentations that blend images *and* their labels, after the image augmentation.

Mixup (Zhang et al., 2018, "mixup: Beyond Empirical Risk Minimization") blends
each image and its one-hot label with another image of the same batch, with a
weight drawn from Beta(alpha, alpha) per image. CutMix (Yun et al., 2019) pastes a
box of the partner instead, a (1 - weight) share of the image placed at random, and
weighs the labels by the share each image keeps. With both, each batch takes one of
the two at even odds, as timm's ``Mixup`` does. Keras has ``MixUp`` and ``CutMix``
layers, but their draws come from a ``SeedGenerator`` (they refuse a stateless key),
so a resumed run would mix differently from the run it continues. Here the weights,
boxes and partners come from TensorFlow's stateless ops under the batch's key
(:mod:`cifarlab.data.draws`), as every other draw of the pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from omegaconf import DictConfig

from cifarlab.data.draws import CUT, MIX, MIX_CHOICE, draw_key, draw_keys

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


def box_masks(weight: tf.Tensor, height: tf.Tensor, width: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
    """Per image a [height, width] boolean box covering about a (1 - weight) share of it, its centre
    uniform over the image and the box clipped at the edges (CutMix's boxes)."""
    count = tf.shape(weight)[0]
    side = tf.sqrt(1.0 - weight)
    rows = _box_span(side, height, count, keys[0])
    cols = _box_span(side, width, count, keys[1])
    return rows[:, :, None] & cols[:, None, :]


def _box_span(side: tf.Tensor, length: tf.Tensor, count: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """Per image, which of ``length`` positions a box of ``side`` times ``length`` covers."""
    centre = tf.random.stateless_uniform([count], key, 0, length, dtype=tf.int32)
    half = tf.cast(tf.round(side * tf.cast(length, side.dtype)), tf.int32) // 2
    positions = tf.range(length)[None, :]
    return (positions >= (centre - half)[:, None]) & (positions < (centre + half)[:, None])


def cutmix(alpha: float, num_classes: int, seed: int) -> BatchMix:
    """CutMix with Beta(``alpha``, ``alpha``) weights: each image gets a box of a partner pasted in,
    and its label keeps the share of pixels the image kept."""

    def mix(images: tf.Tensor, labels: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        keys = draw_keys(seed, CUT, position, 5)
        count = tf.shape(images)[0]
        shape = tf.shape(images)
        boxes = box_masks(beta_weights(alpha, count, keys[:2]), shape[1], shape[2], keys[2:4])
        partner = tf.random.experimental.stateless_shuffle(tf.range(count), seed=keys[4])
        images = tf.where(boxes[..., None], tf.gather(images, partner), images)
        kept = 1.0 - tf.reduce_mean(tf.cast(boxes, tf.float32), axis=[1, 2])[:, None]
        targets = tf.one_hot(labels, num_classes)
        return images, kept * targets + (1.0 - kept) * tf.gather(targets, partner)

    return mix


def either(first: BatchMix, second: BatchMix, seed: int) -> BatchMix:
    """``first`` or ``second`` for each batch, at even odds drawn from the batch's position."""

    def mix(images: tf.Tensor, labels: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pick_first = tf.random.stateless_uniform([], draw_key(seed, MIX_CHOICE, position)) < 0.5
        return tf.cond(
            pick_first, lambda: first(images, labels, position), lambda: second(images, labels, position)
        )

    return mix


def mixup_alpha(augmentation: DictConfig) -> float:
    """``augmentation.mixup_alpha``: 0 (or absent) for no mixup."""
    return float(augmentation.get("mixup_alpha") or 0.0)


def cutmix_alpha(augmentation: DictConfig) -> float:
    """``augmentation.cutmix_alpha``: 0 (or absent) for no CutMix."""
    return float(augmentation.get("cutmix_alpha") or 0.0)


def mixes_labels(augmentation: DictConfig) -> bool:
    """Whether ``augmentation`` blends labels (mixup or CutMix), so training needs one-hot labels."""
    return mixup_alpha(augmentation) > 0 or cutmix_alpha(augmentation) > 0


def build_mixing(augmentation: DictConfig, num_classes: int, seed: int) -> BatchMix | None:
    """The batch mixing ``augmentation`` asks for, or None."""
    blends = mixup_alpha(augmentation)
    cuts = cutmix_alpha(augmentation)
    mixing = mixup(blends, num_classes, seed) if blends > 0 else None
    cutting = cutmix(cuts, num_classes, seed) if cuts > 0 else None
    if mixing and cutting:
        return either(mixing, cutting, seed)
    return mixing or cutting
