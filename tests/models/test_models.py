"""Model builders: published parameter counts, architecture structure, colour science, the delta baseline."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from cifarlab.config.locations import conf_dir
from cifarlab.errors import ConfigError, DataError
from cifarlab.training.builders import build_model

CIFAR_SHAPE = (32, 32, 3)


def model_cfg(name: str, **overrides) -> DictConfig:
    """The real conf/model/<name>.yaml, with overrides."""
    return OmegaConf.merge(OmegaConf.load(conf_dir() / "model" / f"{name}.yaml"), overrides)


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn(channels: int) -> int:
    return 4 * channels  # gamma, beta, moving mean, moving variance


def layers_of(model: keras.Model, kind: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


# --- published parameter counts and structure -------------------------------------------


def test_cnn_bn_has_the_published_parameter_count():
    assert build_model(model_cfg("cnn_bn"), CIFAR_SHAPE, 10).count_params() == 420_842


def test_mlp_has_its_parameter_count():
    assert build_model(model_cfg("mlp"), CIFAR_SHAPE, 10).count_params() == 968_560


def test_cnn_deep_has_the_published_layers():
    model = build_model(model_cfg("cnn_deep"), CIFAR_SHAPE, 10)
    convs = layers_of(model, keras.layers.Conv2D)
    assert [c.filters for c in convs] == [64, 128, 128, 256, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)
    assert len(layers_of(model, keras.layers.MaxPooling2D)) == 3
    assert [d.units for d in layers_of(model, keras.layers.Dense)] == [128, 64, 10]
    expected = (
        conv(3, 3, 64) + conv(3, 64, 128) + conv(3, 128, 128) + conv(3, 128, 256) + conv(3, 256, 256)
        + dense(4 * 4 * 256, 128) + dense(128, 64) + dense(64, 10)
    )  # fmt: skip
    assert model.count_params() == expected == 1_641_802


def test_cnn_basic_is_the_keras_example_with_batchnorm():
    model = build_model(model_cfg("cnn_basic"), CIFAR_SHAPE, 10)
    keras_example = (  # 32 -> 32 (same) -> 30 (valid) -> 15 -> 15 -> 13 -> 6
        conv(3, 3, 32)
        + conv(3, 32, 32)
        + conv(3, 32, 64)
        + conv(3, 64, 64)
        + dense(6 * 6 * 64, 512)
        + dense(512, 10)
    )
    assert keras_example == 1_250_858
    assert model.count_params() == keras_example + bn(32) * 2 + bn(64) * 2
    assert len(layers_of(model, keras.layers.Dropout)) == 3
    plain = build_model(model_cfg("cnn_basic", batchnorm=False), CIFAR_SHAPE, 10)
    assert plain.count_params() == keras_example


def test_tf_cifar_is_the_tensorflow_tutorial_cnn():
    model = build_model(model_cfg("tf_cifar"), CIFAR_SHAPE, 10)
    assert [c.filters for c in layers_of(model, keras.layers.Conv2D)] == [32, 64, 64]
    assert model.count_params() == 122_570  # the tutorial's model.summary()


@pytest.mark.slow
def test_resnet20_is_the_keras_example_resnet_v1():
    model = build_model(model_cfg("resnet20"), CIFAR_SHAPE, 10)

    def unit(c_in: int, c_out: int) -> int:
        return conv(3, c_in, c_out) + bn(c_out)

    stage1 = 6 * unit(16, 16)
    stage2 = unit(16, 32) + 5 * unit(32, 32) + conv(1, 16, 32)  # 1x1 projection, no BN
    stage3 = unit(32, 64) + 5 * unit(64, 64) + conv(1, 32, 64)
    expected = unit(3, 16) + stage1 + stage2 + stage3 + dense(64, 10)
    # The Keras example's summary; the 272,474 quoted for PyTorch ResNet-20 has bias-free
    # convs, a BN on the projection, and no running statistics counted.
    assert model.count_params() == expected == 274_442
    assert len(layers_of(model, keras.layers.Add)) == 9
    assert len(layers_of(model, keras.layers.Conv2D)) == 21
    deeper = build_model(model_cfg("resnet20", depth=32), CIFAR_SHAPE, 10)
    assert len(layers_of(deeper, keras.layers.Add)) == 15


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ConfigError, match=r"^model\.depth=21 "):
        build_model(model_cfg("resnet20", depth=21), CIFAR_SHAPE, 10)


def test_resnet9_builds_and_width_scales_it():
    full = build_model(model_cfg("resnet9"), CIFAR_SHAPE, 10)
    assert [c.filters for c in layers_of(full, keras.layers.Conv2D)] == [
        64,
        128,
        128,
        128,
        256,
        512,
        512,
        512,
    ]
    assert len(layers_of(full, keras.layers.Add)) == 2
    assert full.count_params() == 6_577_610
    half = build_model(model_cfg("resnet9", width=0.5), CIFAR_SHAPE, 10)
    quarter = build_model(model_cfg("resnet9", width=0.25), CIFAR_SHAPE, 10)
    assert [c.filters for c in layers_of(quarter, keras.layers.Conv2D)][:2] == [16, 32]
    # Conv weights dominate and grow with width squared.
    assert 3.5 < full.count_params() / half.count_params() < 4.1
    assert 3.5 < half.count_params() / quarter.count_params() < 4.1
    probs = quarter.predict(np.zeros((2, *CIFAR_SHAPE), np.uint8), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_resnet9_channels_set_each_stage_and_a_wrong_list_fails_in_one_line():
    model = build_model(model_cfg("resnet9", channels=[16, 32, 96, 192]), CIFAR_SHAPE, 10)
    assert [c.filters for c in layers_of(model, keras.layers.Conv2D)] == [16, 32, 32, 32, 96, 192, 192, 192]
    with pytest.raises(ConfigError, match=r"^model\.channels=\[16, 32\] .*four positive channel counts"):
        build_model(model_cfg("resnet9", channels=[16, 32]), CIFAR_SHAPE, 10)


def test_resnet9_residuals_choose_the_layers_with_a_residual_block_and_a_wrong_name_fails_in_one_line():
    def convs(residuals: list[str] | str) -> list[str]:
        model = build_model(model_cfg("resnet9", width=0.125, residuals=residuals), CIFAR_SHAPE, 10)
        return [c.name for c in layers_of(model, keras.layers.Conv2D)]

    assert [n for n in convs(["layer1", "layer3"]) if "_res" in n] == [
        "layer1_res1_conv", "layer1_res2_conv", "layer3_res1_conv", "layer3_res2_conv"
    ]  # fmt: skip
    assert [n for n in convs(["layer2"]) if "_res" in n] == ["layer2_res1_conv", "layer2_res2_conv"]
    assert len(convs([])) == 4  # prep and the three layers' convs
    assert convs("layer2") == convs(["layer2"])  # model.residuals=layer2: one name
    with pytest.raises(ConfigError, match=r"^model\.residuals=\['layer4'\] .*layer1, layer2, layer3"):
        build_model(model_cfg("resnet9", residuals=["layer4"]), CIFAR_SHAPE, 10)


def _source_of(model: keras.Model, layer_name: str) -> keras.layers.Layer:
    return model.get_layer(layer_name)._inbound_nodes[0].parent_nodes[0].operation


def test_resnet9_pool_first_pools_each_conv_before_batchnorm_computing_the_same_function():
    myrtle = build_model(model_cfg("resnet9", width=0.25), CIFAR_SHAPE, 10)
    early = build_model(model_cfg("resnet9", width=0.25, pool_first=True), CIFAR_SHAPE, 10)
    for unit in ("layer1", "layer2", "layer3"):
        assert isinstance(_source_of(myrtle, f"{unit}_pool"), keras.layers.Activation)
        assert isinstance(_source_of(early, f"{unit}_pool"), keras.layers.Conv2D)
        assert isinstance(_source_of(early, f"{unit}_bn"), keras.layers.MaxPooling2D)
    assert early.count_params() == myrtle.count_params()
    # Random BatchNorm statistics, positive scales: max pooling then commutes with BatchNorm
    # and ReLU, so at inference the two orders compute the same function from the same weights.
    rng = np.random.default_rng(0)
    for layer in layers_of(myrtle, keras.layers.BatchNormalization):
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights(
            [
                rng.uniform(0.5, 2, gamma.shape),
                rng.normal(size=beta.shape),
                rng.normal(size=mean.shape),
                rng.uniform(0.5, 2, var.shape),
            ]
        )
    for layer in myrtle.layers:
        early.get_layer(layer.name).set_weights(layer.get_weights())
    images = rng.integers(0, 256, (4, *CIFAR_SHAPE)).astype("float32")
    np.testing.assert_allclose(early(images, training=False), myrtle(images, training=False), atol=1e-5)
    # In training BatchNorm normalises with the batch's statistics, which the order changes.
    assert not np.allclose(early(images, training=True), myrtle(images, training=True), atol=1e-5)


# --- keras.applications backbones ---------------------------------------------------------


@pytest.mark.slow
def test_keras_app_builds_without_weights_and_resizes_inside():
    cfg = model_cfg("keras_app", input_size=48)
    assert cfg.weights is None
    model = build_model(cfg, CIFAR_SHAPE, 10)
    resize = [layer for layer in model.layers if isinstance(layer, keras.layers.Resizing)]
    assert len(resize) == 1 and (resize[0].height, resize[0].width) == (48, 48)
    assert model.get_layer("preprocess").backbone == "MobileNetV2"
    probs = model.predict(np.full((2, *CIFAR_SHAPE), 255, np.uint8), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_keras_app_applies_the_backbones_own_preprocessing():
    from cifarlab.models.keras_app import BackbonePreprocess

    pixels = np.array([[0.0, 127.5, 255.0]])
    # MobileNetV2 maps 0-255 to [-1, 1]; ResNet50 subtracts the ImageNet BGR means.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(BackbonePreprocess("MobileNetV2")(pixels)), [[-1, 0, 1]]
    )
    caffe = keras.ops.convert_to_numpy(BackbonePreprocess("ResNet50")(pixels))
    np.testing.assert_allclose(caffe, [[255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68]], rtol=1e-5)


def test_keras_app_unknown_backbone_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        build_model(model_cfg("keras_app", backbone="MobileNetV9"), CIFAR_SHAPE, 10)
    message = str(err.value)
    assert message.startswith("model.backbone='MobileNetV9' ")
    assert "choose one of:" in message and "MobileNetV2" in message and "ResNet50" in message
    assert "\n" not in message


# --- colour science -----------------------------------------------------------------------

# Sharma, Wu & Dalal (2005), Table 1: all 34 CIEDE2000 test pairs. Pairs 9-15 probe the
# hue discontinuity; 10 and 14 sit exactly on |h2' - h1'| = 180 degrees.
SHARMA_2005 = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ciede2000_matches_sharma_2005_test_data(dtype):
    from cifarlab.models.layers.colour import ciede2000

    lab1 = np.array([pair[0] for pair in SHARMA_2005], dtype=dtype)
    lab2 = np.array([pair[1] for pair in SHARMA_2005], dtype=dtype)
    expected = np.array([pair[2] for pair in SHARMA_2005])
    np.testing.assert_allclose(ciede2000(lab1, lab2), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ciede2000(lab2, lab1), expected, rtol=0, atol=1e-4)  # symmetric


def test_ciede2000_broadcasts_and_is_zero_for_equal_colours():
    from cifarlab.models.layers.colour import ciede2000

    colours = np.random.default_rng(0).uniform([0, -80, -80], [100, 80, 80], size=(4, 1, 3))
    table = ciede2000(colours, colours.reshape(1, 4, 3))
    assert table.shape == (4, 4)
    np.testing.assert_allclose(np.diag(table), 0.0, atol=1e-6)


def test_srgb_to_lab_known_colours():
    from cifarlab.models.layers.colour import lab_to_srgb, srgb_to_lab

    rgb = np.array([[255, 255, 255], [255, 0, 0], [0, 0, 0]], dtype=np.uint8)
    lab = srgb_to_lab(rgb)
    assert isinstance(lab, np.ndarray)
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.01)
    np.testing.assert_allclose(lab[2], [0.0, 0.0, 0.0], atol=0.01)
    pixels = np.random.default_rng(0).integers(0, 256, size=(100, 3)).astype(np.float64)
    np.testing.assert_allclose(lab_to_srgb(srgb_to_lab(pixels)), pixels, atol=1e-6)


# --- the smallest-delta baseline ----------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic():
    from cifarlab.training.builders import load_dataset

    cfg = OmegaConf.create(
        {
            "name": "synthetic",
            "num_classes": 4,
            "samples_per_class": 60,
            "test_samples_per_class": 15,
            "image_size": 16,
            "channels": 3,
            "val_fraction": 0.2,
            "split_seed": 0,
            "limit_fraction": 1.0,
        }
    )
    return load_dataset(cfg, default_data_dir="/tmp")


@pytest.fixture(scope="module")
def fitted_delta(synthetic):
    model = build_model(model_cfg("delta"), synthetic.x_train.shape[1:], 4)
    model.fit_prototypes(synthetic.x_train, synthetic.y_train)
    return model


@pytest.mark.slow
def test_delta_learns_synthetic_classes(fitted_delta, synthetic):
    assert fitted_delta.trains_by_gradient is False
    assert fitted_delta.trainable_weights == []
    probs = fitted_delta.predict(synthetic.x_test, verbose=0)
    assert probs.shape == (len(synthetic.x_test), 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(axis=1) == synthetic.y_test).mean() > 0.6


def test_delta_typical_image_is_the_class_mean_in_lab(fitted_delta, synthetic):
    from cifarlab.models.layers.colour import srgb_to_lab

    first = synthetic.x_train[synthetic.y_train == 0].astype(np.float64)
    expected = srgb_to_lab(first).mean(axis=0)
    typical = keras.ops.convert_to_numpy(fitted_delta.typical_lab)[0]
    np.testing.assert_allclose(typical, expected, atol=1e-3)


def test_delta_predicts_the_smallest_total_ciede2000(fitted_delta, synthetic):
    from cifarlab.models.layers.colour import ciede2000, srgb_to_lab

    images = synthetic.x_test[:5]
    lab = srgb_to_lab(images.astype(np.float64))[:, None]  # (5, 1, H, W, 3)
    typical = keras.ops.convert_to_numpy(fitted_delta.typical_lab).astype(np.float64)[None]
    totals = ciede2000(lab, typical).sum(axis=(2, 3))  # (5, classes)
    probs = fitted_delta.predict(images, verbose=0)
    np.testing.assert_array_equal(probs.argmax(axis=1), totals.argmin(axis=1))
    pixels = images.shape[1] * images.shape[2]
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(-totals / (pixels * fitted_delta.temperature)))
    np.testing.assert_allclose(probs, expected, atol=1e-4)


@pytest.mark.slow
def test_delta_saves_and_reloads_with_the_same_predictions(fitted_delta, synthetic, tmp_path):
    expected = fitted_delta.predict(synthetic.x_test, verbose=0)
    fitted_delta.save(tmp_path / "d.keras")
    reloaded = keras.models.load_model(tmp_path / "d.keras")
    assert reloaded.trains_by_gradient is False and reloaded.temperature == fitted_delta.temperature
    np.testing.assert_allclose(reloaded.predict(synthetic.x_test, verbose=0), expected, atol=1e-6)
    # The plain functional copy the training run logs (model.inputs -> model.outputs) also round-trips.
    keras.Model(fitted_delta.inputs, fitted_delta.outputs).save(tmp_path / "plain.keras")
    plain = keras.models.load_model(tmp_path / "plain.keras")
    np.testing.assert_allclose(plain.predict(synthetic.x_test, verbose=0), expected, atol=1e-6)


def test_delta_typical_images_figure(fitted_delta):
    from matplotlib.figure import Figure

    names = ["red", "green", "blue", "grey"]
    fig = fitted_delta.typical_images_figure(names)
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4 and [ax.get_title() for ax in shown] == names


def test_delta_needs_every_class_in_the_training_data(synthetic):
    model = build_model(model_cfg("delta"), synthetic.x_train.shape[1:], 4)
    keep = synthetic.y_train != 3
    with pytest.raises(DataError, match=r"\[3\]"):
        model.fit_prototypes(synthetic.x_train[keep], synthetic.y_train[keep])


def test_delta_rejects_bad_config():
    with pytest.raises(ConfigError, match=r"^model\.temperature=0"):
        build_model(model_cfg("delta", temperature=0), CIFAR_SHAPE, 10)
    with pytest.raises(ConfigError, match=r"^model\.prototype='medoid'"):
        build_model(model_cfg("delta", prototype="medoid"), CIFAR_SHAPE, 10)


def test_a_model_that_shrinks_the_images_to_nothing_is_one_line_naming_the_model_and_the_fix():
    with pytest.raises(ConfigError) as caught:
        build_model(model_cfg("tf_cifar"), (8, 8, 3), 4)
    line = str(caught.value)
    assert line.startswith("model='tf_cifar' shrinks 8x8 images") and "dataset.image_size=32" in line
    assert build_model(model_cfg("tf_cifar"), (32, 32, 3), 4).output_shape == (None, 4)
