"""trainer.precision=auto: bfloat16 exactly where the hardware computes it natively."""

from __future__ import annotations

import pytest

from cifarlab import precision
from cifarlab.precision import resolve_precision


@pytest.mark.parametrize("setting", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_settings_are_kept(setting):
    assert resolve_precision(setting) == setting


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given GPUs (compute capabilities) and CPU flags."""

    def pretend(gpus=(), cpu_flags=(), arch="x86_64", onednn=None):
        monkeypatch.setattr(precision, "_gpu_compute_capabilities", lambda: list(gpus))
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set(cpu_flags))
        monkeypatch.setattr(precision.platform, "machine", lambda: arch)
        if onednn is None:
            monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
        else:
            monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)

    return pretend


@pytest.mark.parametrize(
    "hardware, policy",
    [
        (dict(cpu_flags={"avx2", "avx512f", "avx512_bf16"}), "mixed_bfloat16"),
        (dict(cpu_flags={"avx2", "amx_bf16"}), "mixed_bfloat16"),
        (dict(cpu_flags={"asimd", "bf16"}, arch="aarch64"), "mixed_bfloat16"),
        (dict(cpu_flags={"avx2", "avx512f"}), "float32"),  # bfloat16 would be emulated: slower
        (dict(cpu_flags={"avx512_bf16"}, onednn="0"), "float32"),  # the kernels that use it are off
        (dict(gpus=[(9, 0)], cpu_flags={"avx2"}), "mixed_bfloat16"),
        (dict(gpus=[(8, 0), (7, 5)], cpu_flags={"avx512_bf16"}), "float32"),  # one GPU lacks it
    ],
)
def test_auto_picks_bfloat16_only_with_native_support(machine, hardware, policy):
    machine(**hardware)
    assert resolve_precision("auto") == policy


def test_cpu_flags_are_read_from_this_machine():
    flags = precision._cpu_flags()
    assert isinstance(flags, set)
    try:
        cpuinfo = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    assert ("avx512_bf16" in flags) == (" avx512_bf16" in cpuinfo)


def test_unknown_precision_is_refused_in_one_line(compose_cfg):
    from cifarlab.config import validate
    from cifarlab.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.precision.*auto, float32"):
        validate(compose_cfg("trainer.precision=bf16"))
