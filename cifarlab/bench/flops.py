"""FLOPs of a model (an analytic count, with TensorFlow's profiler as a cross-check) and this machine's matmul peak."""

from __future__ import annotations

import time
from typing import Any

import keras
import tensorflow as tf
from keras import layers

# Keras exports no common base of its convolutions; these are where they live in Keras 3.
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv


def _layer_output_shapes(layer) -> list[tuple]:
    """Output shape of each call of ``layer`` in a functional model."""
    shapes = []
    for node in getattr(layer, "_inbound_nodes", []) or []:
        outputs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
        for out in outputs:
            shapes.append(tuple(out.shape))
    if not shapes and hasattr(layer, "output"):
        shapes.append(tuple(layer.output.shape))
    return shapes


def _layer_input_shapes(layer) -> list[tuple]:
    shapes = []
    for node in getattr(layer, "_inbound_nodes", []) or []:
        tensors = node.input_tensors if hasattr(node, "input_tensors") else node.arguments.keras_tensors
        shapes.append(tuple(tensors[0].shape))
    return shapes


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates of one forward pass (one image) of a Conv/Dense layer; 0 for others."""
    total = 0
    if isinstance(layer, BaseSeparableConv):
        for in_shape, out_shape in zip(_layer_input_shapes(layer), _layer_output_shapes(layer)):
            cin, k = in_shape[-1], _prod(layer.kernel_size)
            spatial = _prod(out_shape[1:-1])
            total += spatial * cin * layer.depth_multiplier * k  # depthwise
            total += spatial * cin * layer.depth_multiplier * layer.filters  # pointwise
    elif isinstance(layer, BaseDepthwiseConv):
        for in_shape, out_shape in zip(_layer_input_shapes(layer), _layer_output_shapes(layer)):
            total += _prod(out_shape[1:-1]) * in_shape[-1] * layer.depth_multiplier * _prod(layer.kernel_size)
    elif isinstance(layer, BaseConvTranspose):
        for in_shape in _layer_input_shapes(layer):
            total += _prod(in_shape[1:-1]) * in_shape[-1] * layer.filters * _prod(layer.kernel_size)
    elif isinstance(layer, BaseConv):
        for in_shape, out_shape in zip(_layer_input_shapes(layer), _layer_output_shapes(layer)):
            cin_per_group = in_shape[-1] // getattr(layer, "groups", 1)
            total += _prod(out_shape[1:-1]) * layer.filters * cin_per_group * _prod(layer.kernel_size)
    elif isinstance(layer, layers.Dense):
        for in_shape in _layer_input_shapes(layer):
            total += _prod(in_shape[1:-1]) * in_shape[-1] * layer.units
    return total


def _all_layers(model: keras.Model) -> list:
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
        else:
            found.append(layer)
    return found


def count_flops(model: keras.Model) -> dict[str, Any]:
    """Analytic FLOPs per image: 2 x MACs of every Conv/Dense forward, and x3 for a training step.

    The x3 is the usual convention (the backward pass computes gradients for both the
    inputs and the weights of each layer: about twice the forward work). BatchNorm,
    activations, pooling and the optimizer update are not counted.
    """
    per_layer = {layer.name: layer_macs(layer) for layer in _all_layers(model)}
    per_layer = {name: macs for name, macs in per_layer.items() if macs}
    macs = sum(per_layer.values())
    return {"macs": macs, "forward": 2 * macs, "train": 6 * macs, "per_layer_macs": per_layer}


def profiler_flops(model: keras.Model) -> float | None:
    """Forward FLOPs per image as TensorFlow's graph profiler counts them (a cross-check; also counts BN etc.)."""
    try:
        # Deferred: TensorFlow's internal module may move; a failed cross-check must not stop the bench.
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        frozen = convert_variables_to_constants_v2(concrete)
        options = (
            tf.compat.v1.profiler.ProfileOptionBuilder(
                tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            )
            .with_empty_output()
            .build()
        )
        info = tf.compat.v1.profiler.profile(
            graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )
        return float(info.total_float_ops)
    except Exception:  # a cross-check only; the analytic count is what is reported
        return None


# The dtype a run's matrix products compute in, by trainer.precision (resolved).
COMPUTE_DTYPES = {
    "float32": "float32",
    "mixed_float16": "float16",
    "mixed_bfloat16": "bfloat16",
    "autocast_bfloat16": "bfloat16",
}


def compute_dtype(precision: str) -> str:
    """The dtype of the matrix products of a run in ``precision`` (a resolved ``trainer.precision``)."""
    return COMPUTE_DTYPES.get(precision, "float32")


def matmul_peak(n: int = 2048, repeats: int = 6, dtype: str = "float32") -> float:
    """FLOP/s of the best of ``repeats`` warm n x n matrix products in ``dtype`` (2 n^3 FLOPs each)."""
    a = tf.cast(tf.random.normal((n, n), dtype=tf.float32, seed=1), dtype)
    b = tf.cast(tf.random.normal((n, n), dtype=tf.float32, seed=2), dtype)
    tf.linalg.matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        c = tf.linalg.matmul(a, b)
        _ = c[0, 0].numpy()  # CPU ops run synchronously; this only makes sure
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best
