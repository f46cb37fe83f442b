"""A first layer that whitens image patches, fitted to the training images (airbench's stem).

Keller Jordan's airbench (arXiv:2404.00498) starts its CIFAR-10 network with a frozen
2x2 convolution whose filters are the eigenvectors of the training set's 2x2 patch
covariance, each divided by the square root of its eigenvalue, and the same filters
negated (so a ReLU after it keeps both signs). The network then sees decorrelated,
unit-variance patches from the first step, which matters most when images are few.

The layer is a plain, frozen Keras ``Conv2D`` named ``whiten_conv``: a saved model
needs nothing from cifarlab to load. :func:`fit_whitening` sets its weights from the
training images once the model is built (before any transferred weights, which win).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

WHITEN_LAYER = "whiten_conv"
_EPS = 5e-4  # added to each eigenvalue, as airbench does: keeps near-constant directions from blowing up
_MAX_IMAGES = 5000  # airbench fits to 5,000 training images: ample for a 12x12 covariance


def whitening_stem(x: keras.KerasTensor, kernel_size: int, activation: str) -> keras.KerasTensor:
    """The frozen whitening conv (valid padding: a 32x32 image gives 31x31 with 2x2 patches), then ``activation``."""
    channels = 2 * x.shape[-1] * kernel_size * kernel_size
    x = layers.Conv2D(channels, kernel_size, padding="valid", trainable=False, name=WHITEN_LAYER)(x)
    return layers.Activation(activation, name="whiten_act")(x)


def has_whitening(model: keras.Model) -> bool:
    return any(layer.name == WHITEN_LAYER for layer in model.layers)


def fit_whitening(model: keras.Model, images: np.ndarray, seed: int = 0) -> None:
    """Set ``whiten_conv``'s filters from the patches of ``images`` (uint8, NHWC, as the model takes them).

    The layer sees the pixels scaled to [0, 1] (the model's ``scale`` layer); its bias
    centres each output, so the whitened patches have zero mean and identity covariance.
    """
    layer = model.get_layer(WHITEN_LAYER)
    size = layer.kernel.shape[0]
    patches = _patches(_sample(images, seed).astype(np.float32) / 255.0, size)
    mean = patches.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + _EPS)  # one column per filter
    filters = np.concatenate([filters, -filters], axis=1)
    layer.kernel.assign(filters.reshape(layer.kernel.shape).astype(np.float32))
    layer.bias.assign((-mean @ filters).astype(np.float32))


def _sample(images: np.ndarray, seed: int) -> np.ndarray:
    if len(images) <= _MAX_IMAGES:
        return images
    return images[np.random.default_rng(seed).choice(len(images), _MAX_IMAGES, replace=False)]


def _patches(images: np.ndarray, size: int) -> np.ndarray:
    """Every ``size`` x ``size`` patch, flattened in a Conv2D kernel's (row, col, channel) order."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    # (N, H', W', C, size, size) -> (N*H'*W', size*size*C), matching a kernel shaped (size, size, C, out).
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * images.shape[-1]).astype(np.float64)
