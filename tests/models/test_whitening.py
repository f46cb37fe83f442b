"""The patch-whitening stem: fitted to the training images, frozen, plain Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from cifarlab.config.locations import conf_dir
from cifarlab.errors import ConfigError
from cifarlab.models.whitening import WHITEN_LAYER, fit_whitening
from cifarlab.training.builders import build_model


def _whitened_resnet9() -> keras.Model:
    node = OmegaConf.merge(
        OmegaConf.load(conf_dir() / "model" / "resnet9.yaml"), {"width": 0.125, "stem": "whiten"}
    )
    return build_model(node, (16, 16, 3), 10)


def _correlated_images(count: int, seed: int = 0) -> np.ndarray:
    """Smooth colour images: neighbouring pixels and the three channels strongly correlated."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(count, 8, 8, 1)).repeat(2, axis=1).repeat(2, axis=2)
    colour = base * np.array([1.0, 0.8, 0.5]) + rng.normal(size=(count, 16, 16, 3))
    return np.clip(128 + 30 * colour, 0, 255).astype(np.uint8)


def _whitened(model: keras.Model, images: np.ndarray) -> np.ndarray:
    stem = keras.Model(model.input, model.get_layer(WHITEN_LAYER).output)
    return np.asarray(stem(images.astype("float32"))).reshape(-1, stem.output.shape[-1])


def test_the_fitted_stem_gives_patches_of_zero_mean_and_identity_covariance_in_both_signs():
    model, images = _whitened_resnet9(), _correlated_images(300)
    raw = _whitened(model, images)
    assert np.abs(np.cov(raw[:, :12], rowvar=False) - np.eye(12)).max() > 0.5  # random filters do not whiten
    fit_whitening(model, images)
    out = _whitened(model, images)
    positive, negative = out[:, :12], out[:, 12:]
    np.testing.assert_allclose(negative, -positive, atol=1e-5)
    np.testing.assert_allclose(positive.mean(axis=0), 0, atol=1e-3)
    # eps (5e-4) shrinks only the directions of near-zero variance, which these images do not have.
    np.testing.assert_allclose(np.cov(positive, rowvar=False), np.eye(12), atol=0.05)


def test_the_stem_is_frozen_and_the_model_reloads_in_plain_keras(tmp_path):
    model, images = _whitened_resnet9(), _correlated_images(50)
    fit_whitening(model, images)
    stem = model.get_layer(WHITEN_LAYER)
    assert not stem.trainable
    assert all(weight is not stem.kernel for weight in model.trainable_weights)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.get_layer(WHITEN_LAYER).kernel, stem.kernel)
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5
    )


def test_a_run_fits_the_stem_to_its_own_training_images(compose_cfg):
    from cifarlab.training.plan import assemble
    from cifarlab.training.setup import prepare

    plan = assemble(
        compose_cfg("dataset=synthetic", "model=resnet9", "model.width=0.125", "model.stem=whiten")
    )
    prepared = prepare(plan)
    expected = build_model(plan.model.node, prepared.data.input_shape, prepared.data.num_classes)
    fit_whitening(expected, prepared.data.x_train, seed=plan.trainer.seed)
    np.testing.assert_allclose(
        prepared.model.get_layer(WHITEN_LAYER).kernel, expected.get_layer(WHITEN_LAYER).kernel, rtol=1e-5
    )


def test_an_unknown_stem_is_one_line_naming_the_key_and_the_choices():
    node = OmegaConf.merge(OmegaConf.load(conf_dir() / "model" / "resnet9.yaml"), {"stem": "whitened"})
    with pytest.raises(ConfigError) as err:
        build_model(node, (32, 32, 3), 10)
    message = str(err.value)
    assert "model.stem" in message and "whitened" in message and "conv or whiten" in message
    assert "\n" not in message
