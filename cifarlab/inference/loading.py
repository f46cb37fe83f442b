"""Loading a located model with Keras (or MLflow's Keras flavour), and its class probabilities.

This is the module that imports TensorFlow, inside ``load_source``: everything
before it (arguments, MLflow look-ups, images) runs without it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifarlab.errors import CifarlabError, first_line
from cifarlab.inference.source import ModelSource, locate_model, unreadable_checkpoint
from cifarlab.tracking.models import load_logged_keras_model

PROGRESS_FROM_BATCHES = 8  # a prediction of more batches than this shows Keras's progress


@dataclass
class LoadedModel:
    """A Keras model ready to predict: raw 0-255 pixels in, class probabilities out."""

    keras_model: Any
    class_names: list[str]
    input_shape: tuple[int, int, int]
    source_run_id: str | None
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_keras_model(source: ModelSource) -> Any:
    """The Keras model at ``source``; a file or URI that does not hold one fails in one line."""
    # Deferred (imports TensorFlow, which argument checks must not wait for): registers
    # cifarlab's Keras layers so checkpoints that use them deserialize.
    import cifarlab.training.builders  # noqa: F401

    if source.kind == "checkpoint":
        import keras  # imports TensorFlow: only once the model is found

        try:
            return keras.models.load_model(source.location, compile=False)
        except Exception as err:  # corrupt file, unknown layer, wrong format
            raise unreadable_checkpoint(source.location, first_line(err)) from None
    try:
        return load_logged_keras_model(source.location)
    except Exception as err:
        raise CifarlabError(f"{source.description} could not be loaded ({first_line(err)})") from None


def model_input_shape(model: Any) -> tuple[int, int, int]:
    """(height, width, channels) the model takes; other shapes are not cifarlab models."""
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise CifarlabError(
            f"the model takes inputs shaped {shape}; cifarlab models take (height, width, channels)"
        )
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def checked_class_names(names: list[str] | None, num_outputs: int, warnings: list[str]) -> list[str]:
    """``names`` when they fit the model's outputs, else ``class_0..`` (with a warning when they did not fit)."""
    if names and len(names) == num_outputs:
        return names
    if names:
        warnings.append(
            f"{len(names)} class names for a model with {num_outputs} outputs; using class_0..class_{num_outputs - 1}"
        )
    return [f"class_{i}" for i in range(num_outputs)]


def load_source(source: ModelSource) -> tuple[LoadedModel, list[str]]:
    """Load a located model (imports Keras); returns it and any warnings."""
    model = load_keras_model(source)
    warnings: list[str] = []
    names = checked_class_names(source.class_names, int(model.output_shape[-1]), warnings)
    loaded = LoadedModel(model, names, model_input_shape(model), source.source_run_id, source.description)
    return loaded, warnings


def load_model(
    run: str | None = None,
    checkpoint: str | None = None,
    model_uri: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    tracking_uri: str | None = None,
) -> LoadedModel:
    """Load a model from a run id, a ``.keras`` checkpoint or a ``models:/``/``runs:/`` URI."""
    source = locate_model(run, checkpoint, model_uri, class_names=class_names, tracking_uri=tracking_uri)
    return load_source(source)[0]


def predict_probs(model: LoadedModel, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 images; softmax applied if the model gave logits.
    Ctrl-C and SIGTERM kept by ``signals_deferred`` (cifarlab evaluate) act between batches."""
    from cifarlab.runtime.batch_signals import StopOnSignal  # Keras is loaded by now; not before

    verbose = _progress(len(images), batch_size)
    probs = np.asarray(
        model.keras_model.predict(images, batch_size=batch_size, verbose=verbose, callbacks=[StopOnSignal()]),
        dtype=np.float64,
    )
    sums = probs.sum(axis=1)
    if probs.size and (probs.min() < 0 or not np.allclose(sums, 1.0, atol=1e-3)):
        shifted = np.exp(probs - probs.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
    return probs


def _progress(images: int, batch_size: int) -> int:
    """Keras's ``verbose`` for a prediction: silent for a few batches; for more, its progress bar on a
    terminal and its closing line (batches, seconds) in logs."""
    if images <= PROGRESS_FROM_BATCHES * batch_size:
        return 0
    return 1 if sys.stdout.isatty() else 2
