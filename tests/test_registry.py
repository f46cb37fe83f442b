import pytest

from cifarlab.errors import ConfigError
from cifarlab.registry import Registry


def test_registered_builder_is_returned_by_name():
    reg = Registry("model")

    @reg.register("tiny")
    def build_tiny():
        return "built"

    assert reg.get("tiny")() == "built"
    assert "tiny" in reg and reg.names() == ["tiny"]


def test_duplicate_name_is_an_error():
    reg = Registry("model")
    reg.register("tiny")(lambda: None)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("tiny")(lambda: None)


def test_unknown_name_lists_choices_and_nearest_match():
    reg = Registry("model")
    for name in ("cnn_bn", "cnn_basic", "mlp"):
        reg.register(name)(lambda: None)
    with pytest.raises(ConfigError) as err:
        reg.get("cnn_bnn")
    message = str(err.value)
    assert message.startswith("model.name='cnn_bnn' is not registered")
    assert "did you mean 'cnn_bn'?" in message
    assert "cnn_basic, cnn_bn, mlp" in message
    assert "\n" not in message


def test_real_registries_are_filled():
    # Importing cifarlab.training.builders alone fills every registry: it is the one place that does.
    from cifarlab.data.augment import AUGMENTATIONS
    from cifarlab.training.builders import DATASETS, MODELS
    from cifarlab.training.callbacks import CALLBACKS
    from cifarlab.training.optim import OPTIMIZERS, SCHEDULES

    assert {"cifar10", "fashion_mnist", "mnist", "synthetic", "image_folder"} <= set(DATASETS)
    assert {"mlp", "cnn_bn", "dense"} <= set(MODELS)
    assert {"sgd", "adam", "adamw", "nadam", "rmsprop"} <= set(OPTIMIZERS)
    assert {"constant", "cosine", "step"} <= set(SCHEDULES)
    assert {"none", "flip", "shift_flip_rotate", "crop_flip"} <= set(AUGMENTATIONS)
    assert {
        "early_stopping",
        "checkpoint",
        "backup_and_restore",
        "reduce_lr_on_plateau",
        "terminate_on_nan",
        "mlflow_logger",
    } <= set(CALLBACKS)
