"""``trainer.precision``: the Keras dtype policy a run trains under, ``auto`` by default.

``auto`` trains in mixed bfloat16 where the hardware computes bfloat16 natively (and
``python -m cifarlab.bench`` measured it faster with accuracy held on such a CPU), and in
float32 everywhere else, where bfloat16 would be emulated and slow. Runs record the
policy they used as the ``precision_policy`` parameter.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

# /proc/cpuinfo flags of CPUs with bfloat16 arithmetic: x86 (AVX512-BF16, AMX) and Arm (BF16).
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


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
    import tensorflow as tf

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
    if capabilities:
        return all(cc >= (8, 0) for cc in capabilities)
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip() in ("0", "false", "False"):
        return False
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        return False
    return bool(_cpu_flags() & _BF16_CPU_FLAGS)


def resolve_precision(setting: str) -> str:
    """The Keras dtype policy for ``trainer.precision`` (``auto`` decided for this machine)."""
    if setting != "auto":
        return setting
    return "mixed_bfloat16" if native_bfloat16() else "float32"
