"""Convolutional models from the reference write-ups."""

from __future__ import annotations

import keras
from keras import layers
from omegaconf import DictConfig

from cifarlab.models import MODELS
from cifarlab.models.blocks import classifier, per_block, scaled_input


def conv_bn_act(x, filters: int, kernel_size: int, activation: str, name: str, padding: str = "same"):
    x = layers.Conv2D(filters, kernel_size, padding=padding, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_act")(x)


@MODELS.register("cnn_bn")
def build_cnn_bn(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Blocks of [Conv-BN-act x2, MaxPool 2, Dropout], then Dense (BN) act, Dropout, softmax."""
    inputs, x = scaled_input(input_shape)
    dropouts = per_block(cfg.dropout, len(cfg.filters), "model.dropout")
    for block, (filters, rate) in enumerate(zip(cfg.filters, dropouts), start=1):
        for conv in (1, 2):
            x = conv_bn_act(x, filters, cfg.kernel_size, cfg.activation, f"block{block}_{conv}")
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
        x = layers.Dropout(rate, name=f"block{block}_dropout")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(cfg.dense_units, name="head_dense")(x)
    if cfg.dense_batchnorm:
        x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Activation(cfg.activation, name="head_act")(x)
    x = layers.Dropout(cfg.dense_dropout, name="head_dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)


def conv_act(x, filters: int, kernel_size: int, activation: str, name: str, padding: str, batchnorm: bool):
    """Conv then activation, with BatchNorm between them when ``batchnorm``."""
    if batchnorm:
        return conv_bn_act(x, filters, kernel_size, activation, name, padding)
    return layers.Conv2D(filters, kernel_size, padding=padding, activation=activation, name=f"{name}_conv")(x)


def conv_blocks(x, cfg: DictConfig):
    """``cfg.blocks`` (a list of filter lists): each block's convs, MaxPool 2 and optional Dropout.

    ``padding`` is one mode for all convs or a list by position within a block;
    ``pool_last: false`` leaves the last block unpooled.
    """
    dropouts = per_block(cfg.get("dropout", 0.0), len(cfg.blocks), "model.dropout")
    paddings = [cfg.padding] if isinstance(cfg.padding, str) else list(cfg.padding)
    batchnorm = bool(cfg.get("batchnorm", False))
    for block, (filter_list, rate) in enumerate(zip(cfg.blocks, dropouts), start=1):
        for conv, filters in enumerate(filter_list, start=1):
            padding = paddings[(conv - 1) % len(paddings)]
            x = conv_act(
                x, filters, cfg.kernel_size, cfg.activation, f"block{block}_{conv}", padding, batchnorm
            )
        if block < len(cfg.blocks) or cfg.get("pool_last", True):
            x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if rate:
            x = layers.Dropout(rate, name=f"block{block}_dropout")(x)
    return x


def dense_head(x, units: list[int], activation: str, dropout: float):
    """Flatten, then Dense layers, each followed by Dropout when ``dropout`` > 0."""
    x = layers.Flatten(name="flatten")(x)
    for i, width in enumerate(units, start=1):
        x = layers.Dense(width, activation=activation, name=f"head_dense{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    return x


def _conv_net(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    inputs, x = scaled_input(input_shape)
    x = conv_blocks(x, cfg)
    x = dense_head(x, list(cfg.dense_units), cfg.activation, cfg.get("dense_dropout", 0.0))
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)


@MODELS.register("cnn_deep")
def build_cnn_deep(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Conv 64, pool; Conv 128 x2, pool; Conv 256 x2, pool; Dense 128, Dense 64, softmax."""
    return _conv_net(cfg, input_shape, num_classes)


@MODELS.register("cnn_basic")
def build_cnn_basic(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """The Keras cifar10_cnn example (Conv 32 x2, pool, Conv 64 x2, pool, Dense 512), with BatchNorm."""
    return _conv_net(cfg, input_shape, num_classes)


@MODELS.register("tf_cifar")
def build_tf_cifar(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """The TensorFlow CNN tutorial model: Conv 32, pool, Conv 64, pool, Conv 64, Dense 64, softmax."""
    return _conv_net(cfg, input_shape, num_classes)
