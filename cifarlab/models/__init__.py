"""Model registry. Adding a model is one registered function here plus one YAML in conf/model/.

Every model takes raw pixel values (0-255, any float or int dtype) and returns
class probabilities: scaling lives inside the model, so a saved or served model
needs no preprocessing from its caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from cifarlab.registry import Registry

if TYPE_CHECKING:
    import keras

ModelBuilder = Callable[[DictConfig, tuple, int], "keras.Model"]
MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Build the model named by ``cfg.name`` from its own config node (registered by ``cifarlab.training.builders``)."""
    return MODELS.get(cfg.name)(cfg, tuple(input_shape), int(num_classes))
