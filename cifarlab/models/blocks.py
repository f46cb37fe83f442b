"""Small functions that return layers or tensors, shared by the model builders."""

from __future__ import annotations

import keras
from keras import layers

from cifarlab.errors import ConfigError


def scaled_input(input_shape: tuple[int, ...]) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """An input taking 0-255 pixels, and the same pixels scaled to [0, 1]."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255, name="scale")(inputs)


def classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Dense class scores and a float32 softmax (kept float32 under mixed precision)."""
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def per_block(value, count: int, key: str) -> list:
    """A scalar repeated for each block, or a list that must have one entry per block."""
    if isinstance(value, (int, float)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ConfigError(key, values, f"give one value per block ({count}) or a single number")
    return values
