"""Training speedups applied to a built model, and undone for export.

The first two change how TensorFlow computes a step, never what it computes:

- ``trainer.fused_batchnorm``: BatchNorm layers train with TensorFlow's fused kernel
  (:class:`~cifarlab.models.layers.fused_batchnorm.FusedBatchNormalization`).
- ``trainer.freeze_cancelled_bias``: a conv or dense bias feeding straight into
  BatchNorm is cancelled by BatchNorm's mean subtraction, so its gradient is zero;
  keeping it trainable still costs a bias-gradient kernel every step. It stays in the
  model (the published parameter counts include it) but is left out of training.

The third draws different random numbers from the same distribution:

- ``trainer.fast_dropout``: Dropout masks come from 16 random bits per element instead
  of 32 (:class:`~cifarlab.models.layers.fast_dropout.FastDropout`); the rate is kept to
  1/65536 and the expected output is Keras's exactly. Not faster on every CPU, so
  ``auto`` (the default) decides by a cached calibration
  (:mod:`~cifarlab.models.layers.dropout_choice`).

``python -m cifarlab bench`` measures each as a speed switch.
"""

from __future__ import annotations

import keras
from keras import layers

from cifarlab.models.layers.fast_dropout import FastDropout
from cifarlab.models.layers.fused_batchnorm import FusedBatchNormalization

# Training-only layer -> the Keras layer it stands in for (same config and weights).
_TRAINING_LAYERS = {FusedBatchNormalization: layers.BatchNormalization, FastDropout: layers.Dropout}


def _rebuild(model: keras.Model, swap) -> keras.Model:
    """``model`` with each layer for which ``swap`` returns a replacement class rebuilt as it; weights kept."""

    def clone(layer):
        cls = swap(layer) or layer.__class__
        return cls.from_config(layer.get_config())

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    rebuilt.set_weights(model.get_weights())
    for old, new in zip(model.layers, rebuilt.layers):
        new.trainable = old.trainable
    return rebuilt


def _is_flat_functional(model: keras.Model) -> bool:
    # clone_model only swaps top-level layers; nested models (Keras applications) keep theirs.
    return (
        isinstance(model, keras.Model)
        and hasattr(model, "_nodes_by_depth")
        and not any(isinstance(layer, keras.Model) for layer in model.layers)
    )


def _swap_exact_type(model: keras.Model, keras_class: type, replacement: type) -> keras.Model:
    """``model`` with every layer of exactly ``keras_class`` rebuilt as ``replacement``."""
    if not any(type(layer) is keras_class for layer in model.layers) or not _is_flat_functional(model):
        return model
    return _rebuild(model, lambda layer: replacement if type(layer) is keras_class else None)


def use_fused_batchnorm(model: keras.Model) -> keras.Model:
    """``model`` with every plain BatchNormalization trained by the fused kernel."""
    return _swap_exact_type(model, layers.BatchNormalization, FusedBatchNormalization)


def has_plain_dropout(model: keras.Model) -> bool:
    """Whether ``use_fast_dropout`` would swap anything in ``model``."""
    return _is_flat_functional(model) and any(type(layer) is layers.Dropout for layer in model.layers)


def use_fast_dropout(model: keras.Model) -> keras.Model:
    """``model`` with every plain Dropout drawing its masks from 16 bits per element."""
    return _swap_exact_type(model, layers.Dropout, FastDropout)


def standard_layers(model: keras.Model) -> keras.Model:
    """``model`` with only Keras's own layers, so loading it needs no cifarlab code."""
    if not any(type(layer) in _TRAINING_LAYERS for layer in model.layers):
        return model
    return _rebuild(model, lambda layer: _TRAINING_LAYERS.get(type(layer)))


def keras_layers_only(model: keras.Model) -> bool:
    """Whether every layer of ``model`` is Keras's own (loading it from Keras's format needs no cifarlab)."""
    return all(type(layer).__module__.startswith("keras.") for layer in model.layers)


def _consumers(layer) -> list:
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]


def freeze_cancelled_biases(model: keras.Model) -> list[str]:
    """Make each bias that BatchNorm cancels non-trainable; returns the layers touched.

    A bias qualifies when its layer has no activation and every consumer is a
    trainable BatchNormalization over the last axis: in training it subtracts the
    per-channel batch mean, which contains the bias exactly. Call it again after
    changing which layers are trainable (Keras resets the flags of their variables).
    """
    frozen = []
    for layer in model.layers:
        bias = getattr(layer, "bias", None)
        if bias is None or not layer.trainable or not isinstance(layer, (layers.Conv2D, layers.Dense)):
            continue
        consumers = _consumers(layer)
        cancelled = (
            getattr(layer.activation, "__name__", "linear") == "linear"
            and bool(consumers)
            and all(
                isinstance(c, layers.BatchNormalization)
                and c.trainable
                and c.axis in (-1, len(c.input.shape) - 1)
                for c in consumers
            )
        )
        bias.trainable = not cancelled
        if cancelled:
            frozen.append(layer.name)
    return frozen
