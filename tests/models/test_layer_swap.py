"""The exact training speedups: same numbers as plain Keras, and undone for export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from omegaconf import OmegaConf

from cifarlab.models.layers.fused_batchnorm import FusedBatchNormalization
from cifarlab.models.layers.swap import freeze_cancelled_biases, standard_layers, use_fused_batchnorm
from cifarlab.training.builders import build_model


def _pair(momentum=0.9, **kwargs):
    plain, fused = (
        layers.BatchNormalization(momentum=momentum, **kwargs),
        FusedBatchNormalization(momentum=momentum, **kwargs),
    )
    for layer in (plain, fused):
        layer.build((None, 6, 6, 5))
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype("float32") for w in plain.get_weights()]
    weights[-1] = np.abs(weights[-1]) + 0.5  # a variance
    plain.set_weights(weights)
    fused.set_weights(weights)
    return plain, fused


@pytest.mark.parametrize("kwargs", [{}, {"center": False}, {"scale": False}])
def test_fused_batchnorm_trains_exactly_like_keras(kwargs):
    plain, fused = _pair(**kwargs)
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, size=(8, 6, 6, 5)).astype("float32"))
    results = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y) * tf.range(1.0, 6.0))  # nonlinear, weighs channels differently
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        results.append((y, grads, layer.moving_mean.numpy(), layer.moving_variance.numpy()))
    (y0, g0, m0, v0), (y1, g1, m1, v1) = results
    np.testing.assert_allclose(y1, y0, atol=1e-5)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, atol=2e-4 * (1 + np.abs(a).max()))  # summation order differs
    np.testing.assert_allclose(m1, m0, atol=1e-6)
    np.testing.assert_allclose(v1, v0, atol=1e-5)  # Keras's biased variance, not the kernel's unbiased one
    # Inference uses the moving statistics in both.
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-5)


def test_fused_batchnorm_under_mixed_bfloat16_matches_keras():
    plain, fused = (
        cls(dtype="mixed_bfloat16") for cls in (layers.BatchNormalization, FusedBatchNormalization)
    )
    x = tf.random.normal((4, 6, 6, 5), seed=4)
    y_plain, y_fused = plain(x, training=True), fused(x, training=True)
    assert y_fused.dtype == y_plain.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y_fused, "float32"), tf.cast(y_plain, "float32"), atol=0.05)


def _cnn_bn():
    cfg = OmegaConf.create(
        {
            "name": "cnn_bn",
            "filters": [8, 16],
            "dropout": 0.1,
            "kernel_size": 3,
            "dense_units": 16,
            "dense_batchnorm": True,
            "dense_dropout": 0.1,
            "activation": "elu",
        }
    )
    keras.utils.set_random_seed(0)
    return build_model(cfg, (16, 16, 3), 4)


@pytest.mark.slow
def test_swap_to_fused_and_back_keeps_weights_names_and_predictions():
    model = _cnn_bn()
    x = np.random.default_rng(2).integers(0, 255, size=(6, 16, 16, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    fused = use_fused_batchnorm(model)
    assert [type(layer) for layer in fused.layers].count(FusedBatchNormalization) == 5
    assert [layer.name for layer in fused.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(fused.predict(x, verbose=0), expected, atol=1e-6)
    plain = standard_layers(fused)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in plain.layers)
    assert any(type(layer) is layers.BatchNormalization for layer in plain.layers)
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-6)
    assert use_fused_batchnorm(fused) is fused  # nothing left to swap


def test_biases_cancelled_by_batchnorm_have_zero_gradient_and_are_frozen():
    model = _cnn_bn()
    x = tf.constant(np.random.default_rng(3).integers(0, 255, size=(8, 16, 16, 3)).astype("float32"))
    y = tf.constant([0, 1, 2, 3, 0, 1, 2, 3])
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
    biases = {layer.name: layer.bias for layer in model.layers if getattr(layer, "bias", None) is not None}
    grads = dict(zip(biases, tape.gradient(loss, list(biases.values()))))
    frozen = freeze_cancelled_biases(model)
    # Every conv and the head's dense feed a BatchNorm; the logits layer does not.
    assert sorted(frozen) == sorted(name for name in biases if name != "logits")
    for name in frozen:
        assert np.abs(grads[name].numpy()).max() < 1e-5 * (1 + np.abs(grads["logits"].numpy()).max())
        assert not biases[name].trainable
    assert np.abs(grads["logits"].numpy()).max() > 1e-4
    assert biases["logits"].trainable
    assert model.count_params() == sum(int(np.prod(w.shape)) for w in model.weights)  # nothing removed


def test_freezing_follows_which_batchnorms_train():
    model = _cnn_bn()
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False  # inference-mode BatchNorm does not cancel anything
    assert freeze_cancelled_biases(model) == []
    assert all(layer.bias.trainable for layer in model.layers if isinstance(layer, layers.Conv2D))


# ----------------------------------------------------------------------------- fast dropout


def _fast_dropout(rate, seed=7, **kwargs):
    from cifarlab.models.layers.fast_dropout import FastDropout

    layer = FastDropout(rate, seed=seed, **kwargs)
    layer.build((None, 4))
    return layer


@pytest.mark.parametrize("rate", [0.2, 0.3, 0.5])
def test_fast_dropout_drops_at_the_rate_and_keeps_the_expectation(rate):
    x = tf.ones((50, 41, 41, 3))  # 252,150 elements: odd, so the last word is only half used
    y = _fast_dropout(rate)(x, training=True).numpy()
    dropped = y == 0
    assert abs(dropped.mean() - rate) < 0.005  # ~5 standard deviations
    kept = np.unique(y[~dropped])
    assert kept.size == 1 and abs(kept[0] - 1 / (1 - rate)) < 1e-4  # scaled by the realised keep probability
    assert abs(y.mean() - 1.0) < 0.01


def test_fast_dropout_masks_are_independent_between_neighbours():
    # The two 16-bit halves of each random word decide two neighbouring elements:
    # if they were not independent, pairs would be dropped together more (or less) often.
    rate = 0.5
    y = _fast_dropout(rate)(tf.ones((200_000,)), training=True).numpy()
    pairs = (y == 0).reshape(-1, 2)
    assert abs(pairs.all(axis=1).mean() - rate**2) < 0.005
    assert abs((pairs[:, 0] == pairs[:, 1]).mean() - 0.5) < 0.005


def test_fast_dropout_follows_the_keras_seed_and_draws_new_masks_each_step():
    x = tf.ones((64, 16))
    keras.utils.set_random_seed(1)
    first = _fast_dropout(0.3, seed=None)
    a, b = (first(x, training=True).numpy() for _ in range(2))
    keras.utils.set_random_seed(1)
    again = _fast_dropout(0.3, seed=None)(x, training=True).numpy()
    np.testing.assert_array_equal(again, a)  # same global seed, same masks
    assert not np.array_equal(a, b)  # the layer's seed generator moves on every call
    assert not np.array_equal(_fast_dropout(0.3, seed=11)(x, training=True).numpy(), a)


def test_fast_dropout_gradient_is_its_mask_and_inference_is_identity():
    layer = _fast_dropout(0.25)
    x = tf.random.normal((32, 10), seed=3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    grad = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(grad, np.where(y.numpy() == 0, 0.0, 1 / 0.75), rtol=1e-4)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    half = _fast_dropout(0.25, dtype="mixed_bfloat16")(x, training=True)  # as under mixed_bfloat16
    assert half.dtype == tf.bfloat16 and 0.15 < float(tf.reduce_mean(tf.cast(half == 0, "float32"))) < 0.35


def test_fast_dropout_leaves_noise_shape_to_keras():
    y = _fast_dropout(0.5, noise_shape=(8, 1))(tf.ones((8, 6)), training=True).numpy()
    assert all(len(set(row)) == 1 for row in y)  # one decision per row, as noise_shape asks


@pytest.mark.slow
def test_swap_to_fast_dropout_and_back_keeps_names_and_predictions():
    from cifarlab.models.layers.fast_dropout import FastDropout
    from cifarlab.models.layers.swap import use_fast_dropout

    model = _cnn_bn()
    x = np.random.default_rng(2).integers(0, 255, size=(6, 16, 16, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    fast = use_fast_dropout(model)
    assert [type(layer) for layer in fast.layers].count(FastDropout) == 3  # two blocks and the head
    assert [layer.name for layer in fast.layers] == [layer.name for layer in model.layers]
    assert [layer.rate for layer in fast.layers if isinstance(layer, FastDropout)] == [0.1, 0.1, 0.1]
    np.testing.assert_allclose(fast.predict(x, verbose=0), expected, atol=1e-6)
    plain = standard_layers(use_fused_batchnorm(fast))
    assert not any(isinstance(layer, (FastDropout, FusedBatchNormalization)) for layer in plain.layers)
    assert sum(type(layer) is layers.Dropout for layer in plain.layers) == 3
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-6)
