"""``trainer.precision``: the numeric types a run trains in, ``auto`` by default.

- ``float32``, ``mixed_float16``, ``mixed_bfloat16``: Keras's dtype policies, for every layer.
- ``autocast_bfloat16``: convolutions and dense layers compute in bfloat16 (float32
  weights), and a BatchNorm right after one takes its bfloat16 output as it is
  (statistics in float32); everything else (activations, dropout, softmax, the loss)
  runs in float32, the split ``torch.autocast`` makes. On a CPU without AMX this is
  the faster bfloat16: its bfloat16 units speed up the matrix products, while
  element-wise ops run fastest in float32 (TensorFlow's bfloat16 element-wise kernels
  are slow on those CPUs).
- ``auto``: ``mixed_bfloat16`` on GPUs of compute capability 8.0+ and on CPUs with AMX
  (Intel's matrix tiles: there all-bfloat16 measured faster, x1.06 for cnn_bn and x1.22
  for a width-0.25 ResNet-9), ``autocast_bfloat16`` on other CPUs with bfloat16 units,
  ``float32`` elsewhere, where bfloat16 would be emulated. ``python -m cifarlab bench``
  measures each against float32 with a short accuracy check. Runs record what they used
  as the ``precision_policy`` parameter.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers

AUTOCAST = "autocast_bfloat16"

# /proc/cpuinfo flags of CPUs with bfloat16 arithmetic: x86 (AVX512-BF16, AMX) and Arm (BF16).
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
_AMX_CPU_FLAGS = {"amx_bf16"}


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no reliable way to ask, so no bfloat16
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def _gpu_compute_capabilities() -> list[tuple[int, int]]:
    return [
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def native_bfloat16() -> bool:
    """Whether training here would run bfloat16 in hardware.

    GPUs: every visible one is Ampere or newer (compute capability 8.0+). CPUs: bfloat16
    instructions, and TensorFlow's oneDNN kernels (which use them) not switched off.
    """
    capabilities = _gpu_compute_capabilities()
    if capabilities:  # GPU training: only its bfloat16 support matters
        return all(cc >= (8, 0) for cc in capabilities)
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip() in ("0", "false", "False"):
        return False
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        return False
    return bool(_cpu_flags() & _BF16_CPU_FLAGS)


def resolve_precision(setting: str) -> str:
    """``trainer.precision`` with ``auto`` decided for this machine."""
    if setting != "auto":
        return setting
    if not native_bfloat16():
        return "float32"
    if _gpu_compute_capabilities() or _cpu_flags() & _AMX_CPU_FLAGS:
        return "mixed_bfloat16"
    return AUTOCAST


def global_policy(precision: str) -> str:
    """The Keras global dtype policy to build the model under (autocast starts from float32)."""
    return "float32" if precision == AUTOCAST else precision


# Layers whose work is a matrix product: the ones autocast_bfloat16 runs in bfloat16.
MATMUL_LAYERS = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
    layers.DepthwiseConv2D,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
    layers.Dense,
    layers.EinsumDense,
)


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):  # nested models (Keras applications)
            yield from _all_layers(layer)


def _produces_model_output(layer: keras.layers.Layer, model: keras.Model) -> bool:
    try:
        return any(layer.output is output for output in model.outputs)
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return False


def apply_precision(model: keras.Model, precision: str) -> keras.Model:
    """Finish ``precision`` on a model built under :func:`global_policy`.

    autocast_bfloat16 sets the matmul layers to bfloat16 compute (float32 weights),
    except one producing the model's output: a softmax there stays float32, as Keras's
    mixed-precision guide asks, so the loss never sees bfloat16 probabilities. A
    BatchNorm fed only by such a layer takes bfloat16 too (Keras's BatchNorm computes
    its statistics in float32 whatever its inputs), so its input needs no cast.
    """
    if precision != AUTOCAST:
        return model
    half = set()
    for layer in _all_layers(model):
        if isinstance(layer, MATMUL_LAYERS) and not _produces_model_output(layer, model):
            layer.dtype_policy = "mixed_bfloat16"
            half.add(id(layer))
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization) and len(layer._inbound_nodes) == 1:
            producers = [parent.operation for parent in layer._inbound_nodes[0].parent_nodes]
            if (
                producers
                and all(id(p) in half for p in producers)
                and not _produces_model_output(layer, model)
            ):
                layer.dtype_policy = "mixed_bfloat16"
    return model
