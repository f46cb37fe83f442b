"""Model registry. Adding a model is one registered function here plus one YAML in conf/model/.

Every model takes raw pixel values (0-255, any float or int dtype) and returns
class probabilities: scaling lives inside the model, so a saved or served model
needs no preprocessing from its caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from cifarlab.errors import ConfigError
from cifarlab.registry import Registry

if TYPE_CHECKING:
    import keras

ModelBuilder = Callable[[DictConfig, tuple, int], "keras.Model"]
MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Build the model named by ``cfg.name`` from its own config node (registered by ``cifarlab.training.builders``)."""
    builder = MODELS.get(cfg.name)
    try:
        return builder(cfg, tuple(input_shape), int(num_classes))
    except ValueError as err:
        if not any(marker in str(err) for marker in _TOO_SMALL):
            raise
        height, width = input_shape[:2]
        raise ConfigError(
            "model",
            cfg.name,
            "use larger images (dataset.image_size=32) or a model for small ones (model=mlp, model=cnn_bn)",
            problem=f"shrinks {height}x{width} images to nothing (a layer's output would have no pixels)",
        ) from None


# What Keras says when a pooling or convolution layer has no pixels left to work on.
_TOO_SMALL = ("output size would be zero or negative", "Negative dimension size", "negative output size")
