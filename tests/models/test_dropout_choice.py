"""trainer.fast_dropout=auto: FastDropout only where a calibration measured it faster, cached per machine."""

from __future__ import annotations

import math

import pytest

from cifarlab.errors import ConfigError
from cifarlab.models.layers import dropout_choice


@pytest.fixture
def measured(monkeypatch):
    """Calibration on: measure_speedup returns what the test sets, and counts its calls."""
    monkeypatch.setenv("CIFARLAB_CALIBRATE", "1")
    calls = {"n": 0, "speedup": 1.0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        return calls["speedup"]

    monkeypatch.setattr(dropout_choice, "measure_speedup", fake)
    return calls


@pytest.mark.parametrize("speedup, use", [(1.2, True), (1.04, False), (0.82, False)])
def test_auto_uses_fast_dropout_only_where_it_measured_faster(tmp_path, measured, speedup, use):
    measured["speedup"] = speedup
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is use
    # Cached: the next run on this machine measures nothing and decides the same.
    measured["speedup"] = 1.0 / speedup
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is use
    assert measured["n"] == 1


def test_the_cache_is_per_machine(tmp_path, measured, monkeypatch):
    measured["speedup"] = 1.2
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is True
    monkeypatch.setattr(dropout_choice, "machine_key", lambda tf_version: f"another CPU|tf{tf_version}")
    measured["speedup"] = 0.8
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is False
    assert measured["n"] == 2


def test_a_verdict_of_another_calibration_method_is_measured_again(tmp_path, measured, monkeypatch):
    measured["speedup"] = 1.2
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is True
    monkeypatch.setattr(dropout_choice, "METHOD", "a better calibration")
    measured["speedup"] = 0.9
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is False
    assert measured["n"] == 2


def test_explicit_settings_and_calibration_off_measure_nothing(tmp_path, measured, monkeypatch):
    assert dropout_choice.resolve_fast_dropout(True, tmp_path) is True
    assert dropout_choice.resolve_fast_dropout(False, tmp_path) is False
    monkeypatch.setenv("CIFARLAB_CALIBRATE", "0")
    assert dropout_choice.resolve_fast_dropout("auto", tmp_path) is False  # Keras's own layer, the reference
    assert measured["n"] == 0 and not (tmp_path / dropout_choice.CACHE_FILE).exists()


def test_the_real_measurement_compares_both_layers():
    speedup = dropout_choice.measure_speedup(shape=(2, 8, 8, 4), rounds=1)
    assert math.isfinite(speedup) and speedup > 0


@pytest.mark.parametrize("value", ["maybe", "0.5"])
def test_a_bad_value_names_key_value_and_fix(compose_cfg, value):
    from cifarlab.config.schema import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(f"trainer.fast_dropout={value}"))
    message = str(err.value)
    assert message.startswith("trainer.fast_dropout=") and value in message and "auto" in message
    assert "\n" not in message


def test_only_a_model_with_a_plain_dropout_asks_for_the_choice():
    import keras

    from cifarlab.models.layers.swap import has_plain_dropout, use_fast_dropout

    inputs = keras.Input((4,))
    with_dropout = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dropout(0.5)(inputs)))
    without = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert has_plain_dropout(with_dropout) and not has_plain_dropout(without)
    assert not has_plain_dropout(use_fast_dropout(with_dropout))  # already swapped
