"""The "smallest delta" baseline: one typical image per class, nearest by perceptual colour difference.

No gradient training: ``fit_prototypes`` computes each class's typical image once
from the training set, and prediction is the class whose typical image has the
smallest total CIEDE2000 difference to the input, summed over pixels. The output
is ``softmax(-mean_pixel_delta / temperature)``, so the model plugs into
evaluation and reports like any classifier; its argmax is the smallest total delta.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops
from matplotlib.figure import Figure
from omegaconf import DictConfig

from cifarlab.errors import ConfigError, DataError
from cifarlab.models import MODELS
from cifarlab.models.layers.colour import ciede2000, lab_to_srgb, srgb_to_lab

PROTOTYPES = ("mean", "median")
_FIT_CHUNK = 1024  # images converted to Lab at a time while averaging


@keras.saving.register_keras_serializable(package="cifarlab")
class TypicalImageDelta(layers.Layer):
    """Class probabilities from the summed per-pixel CIEDE2000 to one typical CIELAB image per class.

    Takes 0-255 sRGB pixels (N, H, W, 1 or 3); holds the typical images as a
    non-trainable (classes, H, W, 3) CIELAB weight.
    """

    def __init__(self, num_classes: int, temperature: float = 1.0, **kwargs) -> None:
        # Colour maths stays float32 under mixed precision: 25**7 overflows float16.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)

    def build(self, input_shape) -> None:
        self.typical_lab = self.add_weight(
            shape=(self.num_classes, input_shape[1], input_shape[2], 3),
            initializer="zeros",
            trainable=False,
            name="typical_lab",
        )

    def call(self, inputs):
        pixels = ops.cast(inputs, "float32")
        if pixels.shape[-1] == 1:
            pixels = ops.repeat(pixels, 3, axis=-1)
        num_pixels = self.typical_lab.shape[1] * self.typical_lab.shape[2]
        lab = ops.reshape(srgb_to_lab(pixels), (-1, num_pixels, 3))
        typical = ops.reshape(self.typical_lab, (self.num_classes, num_pixels, 3))
        # One class at a time keeps memory at batch x pixels, not batch x classes x pixels.
        totals = ops.stack(
            [ops.sum(ciede2000(lab, typical[k]), axis=-1) for k in range(self.num_classes)], axis=-1
        )
        return ops.softmax(-totals / (num_pixels * self.temperature), axis=-1)

    def compute_output_shape(self, input_shape) -> tuple:
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="cifarlab")
class SmallestDelta(keras.Model):
    """Pixels -> ``TypicalImageDelta``, as a functional model with the fitting and figure methods.

    ``prototype`` picks how a class's typical image is made from its training
    images: ``mean`` (per-pixel mean in CIELAB) or ``median`` (per-pixel median).
    """

    trains_by_gradient = False

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int],
        temperature: float = 1.0,
        prototype: str = "mean",
        name: str = "delta",
        **kwargs,
    ) -> None:
        inputs = keras.Input(shape=tuple(int(d) for d in image_shape), name="pixels")
        outputs = TypicalImageDelta(num_classes, temperature, name="smallest_delta")(inputs)
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.prototype = str(prototype)

    @property
    def delta_layer(self) -> TypicalImageDelta:
        return self.get_layer("smallest_delta")

    @property
    def typical_lab(self) -> keras.Variable:
        """The typical images, (classes, H, W, 3) in CIELAB."""
        return self.delta_layer.typical_lab

    @property
    def num_classes(self) -> int:
        return self.delta_layer.num_classes

    @property
    def temperature(self) -> float:
        return self.delta_layer.temperature

    def fit_prototypes(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Set each class's typical image from uint8 training ``images`` (N, H, W, C) and int ``labels``."""
        images, labels = np.asarray(images), np.asarray(labels).reshape(-1).astype(np.int64)
        image_shape = tuple(self.inputs[0].shape[1:])
        if images.shape[1:] != image_shape or len(images) != len(labels):
            raise DataError(
                f"fit_prototypes got images {images.shape} and labels {labels.shape}; "
                f"expected (N, {', '.join(map(str, image_shape))}) images and N labels"
            )
        missing = sorted(set(range(self.num_classes)) - set(np.unique(labels).tolist()))
        if missing:
            raise DataError(f"classes {missing} have no training images; every class needs at least one")
        summarise = _mean_lab if self.prototype == "mean" else _median_lab
        self.typical_lab.assign(summarise(images, labels, self.num_classes).astype(np.float32))

    def typical_images_figure(self, class_names: Sequence[str] | None = None) -> Figure:
        """The typical image of every class, converted back to sRGB, titled with its class name."""
        names = list(class_names) if class_names is not None else [str(k) for k in range(self.num_classes)]
        rgb = lab_to_srgb(np.asarray(ops.convert_to_numpy(self.typical_lab), dtype=np.float64))
        cols = min(self.num_classes, 5)
        rows = math.ceil(self.num_classes / cols)
        fig = Figure(figsize=(2.0 * cols, 2.3 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes:
            ax.set_axis_off()
        for k, ax in enumerate(axes[: self.num_classes]):
            ax.imshow(np.round(rgb[k]).astype(np.uint8), interpolation="nearest")
            ax.set_title(names[k], fontsize=10)
        fig.suptitle(f"Typical image per class ({self.prototype} in CIELAB)")
        return fig

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "image_shape": list(self.inputs[0].shape[1:]),
            "temperature": self.temperature,
            "prototype": self.prototype,
        }


def _to_lab(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, 1 or 3) -> float64 CIELAB (N, H, W, 3); grey is repeated to RGB."""
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return srgb_to_lab(images.astype(np.float32)).astype(np.float64)


def _mean_lab(images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class per-pixel mean in CIELAB, streamed in chunks so large sets fit in memory."""
    sums = np.zeros((num_classes, *images.shape[1:3], 3))
    for start in range(0, len(images), _FIT_CHUNK):
        lab, chunk_labels = _to_lab(images[start : start + _FIT_CHUNK]), labels[start : start + _FIT_CHUNK]
        for k in np.unique(chunk_labels):
            sums[k] += lab[chunk_labels == k].sum(axis=0)
    return sums / np.bincount(labels, minlength=num_classes)[:, None, None, None]


def _median_lab(images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class per-pixel median in CIELAB (each channel separately)."""
    return np.stack([np.median(_to_lab(images[labels == k]), axis=0) for k in range(num_classes)])


@MODELS.register("delta")
def build_delta(cfg: DictConfig, input_shape: tuple, num_classes: int) -> SmallestDelta:
    """The smallest-delta baseline; call ``fit_prototypes`` before predicting."""
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ConfigError(
            "model.name", cfg.name, "use it with images of 1 or 3 channels", "needs (H, W, C) images"
        )
    temperature = float(cfg.get("temperature", 1.0))
    if not temperature > 0:
        raise ConfigError("model.temperature", cfg.get("temperature"), "use a positive number, e.g. 1.0")
    prototype = str(cfg.get("prototype", "mean"))
    if prototype not in PROTOTYPES:
        raise ConfigError("model.prototype", prototype, f"choose one of: {', '.join(PROTOTYPES)}")
    return SmallestDelta(num_classes, input_shape, temperature, prototype, name=str(cfg.name))
