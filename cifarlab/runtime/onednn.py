"""TensorFlow's oneDNN kernels on every x86 CPU, not only on the newer ones.

TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with AVX512-VNNI or
newer (AVX512-BF16, AMX); on an AVX2-only CPU it keeps its Eigen kernels, which train
cnn_bn at about 300 images/s on 2 cores against 470 with oneDNN (1.6x, float32,
experiments/PERFORMANCE.md). With oneDNN everywhere, every x86 machine also runs the
same kernels. TensorFlow reads the variable when it starts, so this runs before it is
imported; a user's own ``TF_ENABLE_ONEDNN_OPTS`` (``0`` turns them off) wins.
"""

from __future__ import annotations

import os
import platform

X86 = ("x86_64", "amd64")


def use_onednn() -> None:
    """Ask TensorFlow for its oneDNN kernels on x86, unless the user chose otherwise."""
    if platform.machine().lower() in X86:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
