"""What this machine is: CPU model, the ISA features that decide cifarlab's speed switches, cores, library versions.

Imports nothing heavy (no TensorFlow), so the bench and the calibration cache can
key their results on it in an instant.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

# Feature name as reported -> the /proc/cpuinfo flags (x86, Arm) that mean it.
ISA_FEATURES: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512f": ("avx512f",),
    "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_bf16", "amx_tile", "amx_int8"),
    "vnni": ("avx512_vnni", "avx_vnni"),
    "arm_bf16": ("bf16",),
}
LIBRARIES = ("tensorflow", "keras", "numpy", "mlflow", "torch")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's marketing name (Linux), else what ``platform`` knows."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def isa_features() -> dict[str, bool]:
    """Each feature of ``ISA_FEATURES``: whether this CPU has it (all False where the flags are unknown)."""
    flags = cpu_flags()
    return {name: any(f in flags for f in wanted) for name, wanted in ISA_FEATURES.items()}


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a measurement depends on (None: not installed), and Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_key(tf_version: str) -> str:
    """One line that changes when a measurement of this machine may: CPU model, ISA features, TensorFlow."""
    features = ",".join(sorted(name for name, has in isa_features().items() if has))
    return f"{cpu_model()}|{platform.machine()}|{features}|tf{tf_version}|py{sys.version_info[0]}.{sys.version_info[1]}"
