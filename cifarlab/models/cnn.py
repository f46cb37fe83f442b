"""Convolutional models from the reference write-ups."""

from __future__ import annotations

import keras
from keras import layers
from omegaconf import DictConfig

from cifarlab.models import MODELS
from cifarlab.models.blocks import classifier, per_block, scaled_input


def conv_bn_act(x, filters: int, kernel_size: int, activation: str, name: str):
    x = layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv")(x)
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
