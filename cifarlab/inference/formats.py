"""Writing a loaded model for deployment: a TensorFlow SavedModel or a LiteRT (TFLite) file.

Both take raw uint8 images shaped (batch, height, width, channels) and give class
probabilities, through Keras's own ``Model.export`` with a uint8 input signature
(cifarlab models rescale pixels themselves). The exported graph computes in
float32: a model trained in bfloat16 is rebuilt with float32 layers and the same
(float32) weights first, since LiteRT's built-in kernels have no bfloat16 matrix
products and a float32 SavedModel serves on any CPU or GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.errors import ConfigError
from cifarlab.inference.loading import LoadedModel

# cifarlab's format name -> Keras's ``Model.export(format=...)`` name
FORMATS = {"saved_model": "tf_saved_model", "litert": "litert"}
LITERT_SUFFIX = ".tflite"
INPUT_NAME = "images"
SERVING_SIGNATURE = "serving_default"  # what TensorFlow Serving and the LiteRT signature runner call


def check_format(fmt: str | None) -> str:
    """The Keras format name for ``fmt``; anything else fails in one line."""
    if fmt not in FORMATS:
        raise ConfigError(
            "format", fmt, f"use format={' or format='.join(FORMATS)}", "is not an export format"
        )
    return FORMATS[fmt]


def check_out(fmt: str, out: str | None) -> Path:
    """Where to write: a ``.tflite`` file for LiteRT, a folder (not an existing file) for a SavedModel."""
    if not out:
        example = "model.tflite" if fmt == "litert" else "exported/cnn"
        raise ConfigError("out", out, f"add out=<path>, e.g. out={example}", "is missing")
    path = Path(out).expanduser()
    if fmt == "litert" and path.suffix.lower() != LITERT_SUFFIX:
        raise ConfigError("out", out, f"end the file name in {LITERT_SUFFIX}, e.g. out=model.tflite")
    if fmt == "saved_model" and path.is_file():
        raise ConfigError(
            "out", out, "give a folder path for the SavedModel, e.g. out=exported/cnn", "is a file"
        )
    return path


def float32_model(keras_model: Any) -> Any:
    """The same model with float32 layers (a float32 model comes back as it is)."""
    import keras  # imports TensorFlow: only once the options and the model are checked

    if all(layer.dtype_policy.name == "float32" for layer in keras_model.layers):
        return keras_model

    def as_float32(layer: Any) -> Any:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(keras_model, clone_function=as_float32)
    clone.set_weights(keras_model.get_weights())
    return clone


def uint8_signature(input_shape: tuple[int, int, int]) -> list[Any]:
    """One input: a batch of raw uint8 images of the model's size."""
    import tensorflow as tf

    return [tf.TensorSpec((None, *input_shape), tf.uint8, name=INPUT_NAME)]


def export_model(model: LoadedModel, fmt: str, out: Path) -> Path:
    """Write ``model`` as ``fmt`` (``saved_model`` or ``litert``) at ``out``; returns the path written."""
    keras_format = check_format(fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {}
    if fmt == "litert":
        import tensorflow as tf

        # Built-in LiteRT kernels only: the file runs in ai_edge_litert without the Flex (TF ops) delegate.
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    float32_model(model.keras_model).export(
        str(out),
        format=keras_format,
        input_signature=uint8_signature(model.input_shape),
        verbose=False,
        **options,
    )
    return out
