"""trainer.precision=auto: bfloat16 exactly where the hardware computes it natively."""

from __future__ import annotations

import platform

import pytest
from helpers import cli_env, run_python

from cifarlab.training import precision
from cifarlab.training.precision import resolve_precision


@pytest.mark.parametrize("setting", ["float32", "mixed_float16", "mixed_bfloat16", "autocast_bfloat16"])
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
        # CPUs: bfloat16 matmuls, float32 element-wise ops (faster there than all-bfloat16)
        (dict(cpu_flags={"avx2", "avx512f", "avx512_bf16"}), "autocast_bfloat16"),
        # ... but with AMX's tiles all-bfloat16 measured faster
        (dict(cpu_flags={"avx2", "avx512_bf16", "amx_bf16"}), "mixed_bfloat16"),
        (dict(cpu_flags={"asimd", "bf16"}, arch="aarch64"), "autocast_bfloat16"),
        (dict(cpu_flags={"avx2", "avx512f"}), "float32"),  # bfloat16 would be emulated: slower
        (dict(cpu_flags={"avx512_bf16"}, onednn="0"), "float32"),  # the kernels that use it are off
        (dict(gpus=[(9, 0)], cpu_flags={"avx2"}), "mixed_bfloat16"),  # GPUs: all of Keras's mixed policy
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
    from cifarlab.config.schema import validate
    from cifarlab.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.precision.*auto, float32.*autocast_bfloat16"):
        validate(compose_cfg("trainer.precision=bf16"))


def test_autocast_runs_matmuls_and_their_batchnorms_in_bfloat16_and_the_rest_in_float32():
    import keras
    import numpy as np
    from keras import layers

    from cifarlab.models.layers.swap import use_fused_batchnorm
    from cifarlab.training.precision import AUTOCAST, apply_precision, global_policy

    keras.mixed_precision.set_dtype_policy(global_policy(AUTOCAST))
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("elu", name="act")(x)
    x = layers.BatchNormalization(name="bn_after_act")(x)  # fed float32: stays float32
    x = layers.Flatten()(x)
    x = layers.Dense(6, name="dense")(x)
    outputs = layers.Dense(2, activation="softmax", name="output")(x)
    model = apply_precision(use_fused_batchnorm(keras.Model(inputs, outputs)), AUTOCAST)

    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert policies["conv"] == policies["dense"] == "mixed_bfloat16"
    assert policies["bn"] == "mixed_bfloat16"  # takes the conv's bfloat16 output without a cast
    assert policies["act"] == policies["bn_after_act"] == "float32"
    assert policies["output"] == "float32"  # its softmax feeds the loss
    assert all(w.dtype == "float32" for w in model.weights)  # bfloat16 compute, float32 weights

    # What each layer computes in: run the layers one by one, as the model does.
    image = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    conv_out = model.get_layer("conv")(image)
    assert conv_out.dtype == "bfloat16"
    bn_out = model.get_layer("bn")(conv_out, training=True)
    assert bn_out.dtype == "bfloat16"
    assert model.get_layer("act")(bn_out).dtype == "float32"
    # Statistics in float32: the normalised output has zero mean and unit variance per channel.
    normalised = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(bn_out, "float32")))
    np.testing.assert_allclose(normalised.mean(axis=(0, 1, 2)), 0, atol=0.02)
    np.testing.assert_allclose(normalised.std(axis=(0, 1, 2)), 1, atol=0.02)

    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_layer("conv").kernel.numpy().copy()
    model.fit(image, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert not np.array_equal(before, model.get_layer("conv").kernel.numpy())
    assert model.predict(image, verbose=0).dtype == np.float32


ONEDNN_IN_USE = (
    "import cifarlab, tensorflow\n"
    "from tensorflow.python.util import _pywrap_util_port as port\n"
    "print(port.IsMklEnabled())"
)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's default is x86's")
@pytest.mark.parametrize(("setting", "expected"), [(None, "True"), ("0", "False")])
def test_tensorflow_runs_onednn_kernels_on_any_x86_cpu_unless_the_user_says_0(tmp_path, setting, expected):
    """TensorFlow alone turns them on only from AVX512-VNNI up: on an AVX2-only CPU this checks
    cifarlab's doing; on newer CPUs, that cifarlab does not turn them off, and that 0 still wins."""
    env = cli_env() if setting is None else {**cli_env(), "TF_ENABLE_ONEDNN_OPTS": setting}
    proc = run_python(ONEDNN_IN_USE, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == expected
