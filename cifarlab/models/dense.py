"""Fully connected models: the CIFAR-10 MLP and the Fashion-MNIST dense baseline."""

from __future__ import annotations

import keras
from keras import layers
from omegaconf import DictConfig

from cifarlab.models import MODELS
from cifarlab.models.blocks import classifier, scaled_input


def _dense_stack(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    inputs, x = scaled_input(input_shape)
    x = layers.Flatten()(x)
    for i, units in enumerate(cfg.hidden_units):
        x = layers.Dense(units, activation=cfg.activation, name=f"dense_{i + 1}")(x)
        if cfg.get("dropout", 0.0):
            x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)


@MODELS.register("mlp")
def build_mlp(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Flatten, Dense 300 ELU, Dense 150 ELU, softmax."""
    return _dense_stack(cfg, input_shape, num_classes)


@MODELS.register("dense")
def build_dense(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Flatten, Dense 128 ReLU, softmax (the Fashion-MNIST baseline)."""
    return _dense_stack(cfg, input_shape, num_classes)
