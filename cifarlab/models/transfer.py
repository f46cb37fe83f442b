"""Transfer learning: start from trained weights, replace what does not fit, freeze the backbone."""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras

from cifarlab.errors import ConfigError
from cifarlab.tracking.models import EXPORTED_MODEL_NAME, load_logged_keras_model, run_keras_file
from cifarlab.tracking.registry import MODEL_NAME

HEAD_LAYERS = ("logits", "probabilities")
FREEZE_CHOICES = ("none", "backbone")


@dataclass
class TransferReport:
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "layer: why"

    def summary(self) -> str:
        text = f"loaded {len(self.loaded)} layers"
        if self.skipped:
            text += f"; kept fresh weights for {len(self.skipped)}: " + "; ".join(self.skipped)
        return text


def load_source_model(uri: str, tracking_uri: str) -> keras.Model:
    """A trained model from a ``.keras`` file, ``runs:/<id>[/model]`` or ``models:/...``."""
    if uri.startswith(("runs:/", "models:/")):
        return _logged_model(uri, tracking_uri)
    path = Path(uri).expanduser()
    if not path.is_file():
        raise ConfigError(
            "model.init_from",
            uri,
            "give an existing .keras file, runs:/<run id>, models:/<name>@<alias> or models:/<name>/<version>",
        )
    unreadable = f"{path} is not a readable Keras model"
    fix = "give a .keras file saved by Keras (a truncated or corrupt file must be saved again)"
    if not zipfile.is_zipfile(path):  # Keras would call it "File not found"
        raise ConfigError(
            "model.init_from", uri, fix, f"is not valid: {unreadable} (not a complete .keras archive)"
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises several types for a damaged archive
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ConfigError("model.init_from", uri, fix, f"is not valid: {unreadable} ({reason})") from None


def _logged_model(uri: str, tracking_uri: str) -> keras.Model:
    """A logged model; for a bare ``runs:/<id>`` without one in Keras's format, the run's Keras file.

    A search's trial keeps only a Keras file; a model with cifarlab's own layers is logged
    as a SavedModel, whose weights have no layer names to match.
    """
    bare_run = uri.startswith("runs:/") and uri.rstrip("/").count("/") == 1
    fix = "give runs:/<run id>, models:/<name>@<alias>, models:/<name>/<version> or a .keras file"
    try:
        model = load_logged_keras_model(f"{uri.rstrip('/')}/{MODEL_NAME}" if bare_run else uri, tracking_uri)
        exported = model.name == EXPORTED_MODEL_NAME
        problem = "is a SavedModel (cifarlab's own layers), no weights by layer name" if exported else None
    except Exception as err:  # MLflow raises several types for a missing run or model
        model, problem = None, f"has no model that could be loaded ({type(err).__name__})"
    if problem is None:
        return model
    local = run_keras_file(uri.rstrip("/").split("/")[-1], tempfile.mkdtemp()) if bare_run else None
    if local is not None:
        return keras.saving.load_model(local, compile=False)
    raise ConfigError("model.init_from", uri, fix, problem=problem) from None


def transfer_weights(source: keras.Model, target: keras.Model) -> TransferReport:
    """Copy weights layer by layer (matched by name) wherever every shape agrees."""
    report = TransferReport()
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    for layer in target.layers:
        if not layer.weights:
            continue
        match = source_layers.get(layer.name)
        if match is None:
            report.skipped.append(f"{layer.name}: not in the source model")
            continue
        wanted = [tuple(w.shape) for w in layer.weights]
        found = [tuple(w.shape) for w in match.weights]
        if wanted != found:
            report.skipped.append(f"{layer.name}: shapes {found} do not fit {wanted}")
            continue
        layer.set_weights(match.get_weights())
        report.loaded.append(layer.name)
    return report


def set_frozen(model: keras.Model, freeze: str) -> None:
    """``backbone``: train only the classifier head; ``none``: train everything."""
    if freeze not in FREEZE_CHOICES:
        raise ConfigError("model.freeze", freeze, f"choose one of: {', '.join(FREEZE_CHOICES)}")
    for layer in model.layers:
        layer.trainable = freeze == "none" or layer.name in HEAD_LAYERS
