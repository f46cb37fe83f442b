"""Any ``keras.applications`` backbone, adapted to small images, as a cifarlab model.

The model resizes the raw 0-255 pixels to ``input_size`` and applies the
backbone's own ``preprocess_input`` inside itself, so callers feed the same raw
pixels as to every other model. ``weights: imagenet`` downloads the ImageNet
weights on first build; the default ``null`` starts from random weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

import keras
from keras import layers, ops
from omegaconf import DictConfig, OmegaConf

from cifarlab.errors import ConfigError
from cifarlab.models import MODELS
from cifarlab.models.blocks import classifier


def backbones() -> dict[str, Callable[..., keras.Model]]:
    """Backbone constructors in ``keras.applications``, by name (``MobileNetV2``, ``ResNet50``, ...)."""
    return {
        name: getattr(keras.applications, name)
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    }


def preprocess_function(backbone: str) -> Callable:
    """The ``preprocess_input`` from the module that defines ``backbone``."""
    return importlib.import_module(backbones()[backbone].__module__).preprocess_input


@keras.saving.register_keras_serializable(package="cifarlab")
class BackbonePreprocess(layers.Layer):
    """A keras.applications backbone's ``preprocess_input``, applied to 0-255 pixels inside the model."""

    def __init__(self, backbone: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self._preprocess = preprocess_function(backbone)

    def call(self, inputs):
        return self._preprocess(ops.cast(inputs, self.compute_dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone": self.backbone}


def _backbone(cfg: DictConfig, size: int) -> keras.Model:
    available = backbones()
    name = str(cfg.backbone)
    if name not in available:
        raise ConfigError("model.backbone", name, f"choose one of: {', '.join(sorted(available))}")
    args = cfg.get("backbone_args")
    extra = cast(dict[str, Any], OmegaConf.to_container(args, resolve=True)) if args else {}
    try:
        return available[name](
            include_top=False,
            weights=cfg.get("weights"),
            input_shape=(size, size, 3),
            pooling=cfg.get("pooling", "avg"),
            **extra,
        )
    except TypeError as err:
        fix = f"{name} does not take them ({err}); set model.backbone_args={{}} or give ones it takes"
        raise ConfigError("model.backbone_args", extra, fix) from None
    except ValueError as err:  # e.g. an input_size below the backbone's minimum
        message = " ".join(str(err).split())
        if "weights" in message.lower():
            key, value = "model.weights", cfg.get("weights")
        elif "input" in message.lower():
            key, value = "model.input_size", size
        else:
            key, value = "model.backbone_args", extra
        raise ConfigError(key, value, f"{name} rejected it: {message}") from None


@MODELS.register("keras_app")
def build_keras_app(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Resize, the backbone's preprocess_input, the backbone (no top, pooled), Dropout, softmax."""
    size = int(cfg.input_size)
    backbone = _backbone(cfg, size)
    backbone.trainable = not cfg.get("freeze_backbone", False)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = inputs
    if input_shape[-1] == 1:  # grey images: the backbones expect 3 channels
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = layers.Resizing(size, size, name="resize")(x)
    x = BackbonePreprocess(str(cfg.backbone), name="preprocess")(x)
    x = backbone(x)
    if cfg.get("dropout", 0.0):
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)
