"""Augmentation registry: each builder returns a function from a float batch to a float batch.

They run inside tf.data on whole batches (Keras preprocessing layers and
vectorised TF ops), never image by image in Python.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf
from keras import layers
from omegaconf import DictConfig

from cifarlab.registry import Registry

BatchAugment = Callable[[tf.Tensor], tf.Tensor]
AUGMENTATIONS: Registry[Callable[[DictConfig, int], BatchAugment | None]] = Registry("augmentation")


def _flip(cfg: DictConfig, seed: int) -> list[keras.layers.Layer]:
    return [] if cfg.flip == "none" else [layers.RandomFlip(cfg.flip, seed=seed)]


def _sequential(steps: list[keras.layers.Layer | Callable]) -> BatchAugment:
    def augment(images: tf.Tensor) -> tf.Tensor:
        for step in steps:
            images = step(images, training=True) if isinstance(step, keras.layers.Layer) else step(images)
        return images

    return augment


@AUGMENTATIONS.register("none")
def no_augmentation(cfg: DictConfig, seed: int) -> BatchAugment | None:
    return None


@AUGMENTATIONS.register("flip")
def flip(cfg: DictConfig, seed: int) -> BatchAugment:
    return _sequential(_flip(cfg, seed))


@AUGMENTATIONS.register("shift_flip_rotate")
def shift_flip_rotate(cfg: DictConfig, seed: int) -> BatchAugment:
    """Flip, shift by up to ``height_shift``/``width_shift`` and rotate by up to ``rotation_degrees``."""
    steps = _flip(cfg, seed)
    if cfg.height_shift or cfg.width_shift:
        steps.append(
            layers.RandomTranslation(cfg.height_shift, cfg.width_shift, fill_mode=cfg.fill_mode, seed=seed + 1)
        )
    if cfg.rotation_degrees:
        steps.append(layers.RandomRotation(cfg.rotation_degrees / 360.0, fill_mode=cfg.fill_mode, seed=seed + 2))
    return _sequential(steps)


def random_pad_crop(padding: int, fill_mode: str, seed: int) -> BatchAugment:
    """Pad by ``padding`` and cut a same-size window at an independent offset per image.

    Keras's RandomCrop draws one offset for the whole batch; here each image gets
    its own, by gathering rows and columns at per-image offsets.
    """
    mode = {"reflect": "REFLECT", "constant": "CONSTANT", "symmetric": "SYMMETRIC"}.get(fill_mode, "REFLECT")
    generator = tf.random.Generator.from_seed(seed)

    def crop(images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], mode=mode)
        offsets = generator.uniform([batch, 2], 0, 2 * padding + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(height)[None, :]
        cols = offsets[:, 1:] + tf.range(width)[None, :]
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, cols, axis=2, batch_dims=1)

    return crop


@AUGMENTATIONS.register("crop_flip")
def crop_flip(cfg: DictConfig, seed: int) -> BatchAugment:
    """Pad-and-crop per image, then flip: the standard CIFAR recipe of residual nets."""
    return _sequential([random_pad_crop(cfg.crop_padding, cfg.fill_mode, seed), *_flip(cfg, seed)])


def build_augmentation(cfg: DictConfig, seed: int) -> BatchAugment | None:
    return AUGMENTATIONS.get(cfg.name)(cfg, seed)
