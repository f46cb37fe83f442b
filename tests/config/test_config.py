"""Every option of every group composes and builds; bad values fail before TensorFlow."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import all_runs, run_cli, run_python

from cifarlab.config.locations import conf_dir
from cifarlab.config.schema import validate
from cifarlab.errors import ConfigError

GROUPS = [
    "dataset",
    "model",
    "optimizer",
    "augmentation",
    "callbacks",
    "trainer",
    "tracking",
    "paths",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_validates(compose_cfg, group):
    assert options(group), f"conf/{group}/ has no options"
    for option in options(group):
        extra = ["dataset.data_dir=/tmp"] if (group, option) == ("dataset", "image_folder") else []
        cfg = compose_cfg(f"{group}={option}", *extra)
        validate(cfg)
        if group not in ("callbacks", "debug"):
            assert cfg[group] is not None


@pytest.mark.slow
@pytest.mark.parametrize("option", options("model"))
def test_every_model_builds_and_outputs_probabilities(compose_cfg, option):
    from cifarlab.training.builders import build_model

    cfg = compose_cfg(f"model={option}")
    shape = (28, 28, 1) if option == "dense" else (32, 32, 3)
    model = build_model(cfg.model, shape, 10)
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, *shape), dtype=np.uint8)
    probs = model.predict(pixels, verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("option", options("optimizer"))
def test_every_optimizer_builds_with_its_lr(compose_cfg, option):
    from cifarlab.training.optim import build_optimizer

    cfg = compose_cfg(f"optimizer={option}", "optimizer.lr=0.0123")
    opt = build_optimizer(cfg.optimizer, steps_per_epoch=10, epochs=3)
    assert type(opt).__name__.lower() == option
    assert float(opt.learning_rate) == pytest.approx(0.0123)


def test_ema_momentum_ends_training_with_the_averaged_weights(compose_cfg):
    import keras
    import numpy as np

    from cifarlab.training.optim import build_optimizer

    def train(*overrides: str) -> np.ndarray:
        cfg = compose_cfg("optimizer=sgd", "optimizer.lr=0.02", "optimizer.momentum=0", *overrides)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
        model.compile(optimizer=build_optimizer(cfg.optimizer, steps_per_epoch=1, epochs=1), loss="mse")
        x, y = np.ones((8, 4), "float32"), np.full((8, 1), 3.0, "float32")
        model.fit(x, y, batch_size=8, epochs=20, verbose=0)
        return model.layers[0].kernel.numpy()

    plain, averaged = train(), train("optimizer.ema_momentum=0.9")
    # The plain weights have run far from zero; the average still carries the early, small ones.
    assert np.all(np.abs(averaged) > 0.0)
    assert np.all(np.abs(averaged) < 0.9 * np.abs(plain))


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "one_cycle", "reduce_on_plateau"])
def test_every_schedule_builds(compose_cfg, schedule):
    from cifarlab.training.optim import SCHEDULES

    cfg = compose_cfg(
        f"optimizer.schedule.name={schedule}",
        "optimizer.schedule.step_epochs=1",
        "optimizer.schedule.gamma=0.5",
    )
    lr = SCHEDULES.get(schedule)(cfg.optimizer.schedule, 0.1, 10, 3)
    peak = max(float(lr(step)) for step in range(30)) if callable(lr) else lr
    end = float(lr(29)) if callable(lr) else lr
    assert peak == pytest.approx(0.1)
    if schedule in ("constant", "reduce_on_plateau"):
        assert end == peak  # reduce_on_plateau lowers the rate through its callback
    else:
        assert end < peak
    if schedule == "one_cycle":
        assert float(lr(0)) < 0.1 * peak  # it starts low and rises


def test_cosine_warmup_rises_then_decays(compose_cfg):
    from cifarlab.training.optim import SCHEDULES

    cfg = compose_cfg("optimizer.schedule.name=cosine", "optimizer.schedule.warmup_epochs=1")
    lr = SCHEDULES.get("cosine")(cfg.optimizer.schedule, 0.1, 10, 5)
    assert float(lr(0)) < float(lr(5)) < float(lr(10)) == pytest.approx(0.1)
    assert float(lr(49)) < 0.01


@pytest.mark.parametrize("option", options("augmentation"))
def test_every_augmentation_keeps_batch_shape(compose_cfg, option):
    import tensorflow as tf

    from cifarlab.data.augment import build_augmentation

    cfg = compose_cfg(f"augmentation={option}")
    augment = build_augmentation(cfg.augmentation, seed=0)
    batch = tf.random.uniform((8, 32, 32, 3), 0, 255)
    out = batch if augment is None else augment(batch)
    assert tuple(out.shape) == (8, 32, 32, 3)
    if option != "none":
        assert not np.allclose(out.numpy(), batch.numpy()), f"{option} changed nothing"


@pytest.mark.parametrize("option", options("callbacks"))
def test_every_callbacks_option_builds(compose_cfg, option, tmp_path):
    from cifarlab.tracking.recorder import NullRecorder
    from cifarlab.training.callbacks import CallbackContext, build_callbacks

    cfg = compose_cfg(f"callbacks={option}")
    ctx = CallbackContext(tmp_path / "ckpt", tmp_path / "backup", NullRecorder(), images_per_epoch=10)
    built = build_callbacks(cfg.callbacks, ctx)
    enabled = [n for n in cfg.callbacks.values() if n.get("enabled", True)]
    assert len(built) == len(enabled)
    if option == "none":
        assert built == []


def test_schema_rejects_wrong_type(compose_cfg):
    from cifarlab.errors import CifarlabError

    with pytest.raises(CifarlabError, match=r"optimizer\.lr") as err:
        compose_cfg("optimizer.lr=abc")
    assert "\n" not in str(err.value)  # one line, not Hydra's several


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=-1", "trainer.batch_size"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction"),
        ("dataset.val_fraction=0", "dataset.val_fraction"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.precision=float8", "trainer.precision"),
        ("reports.orientation=sideways", "reports.orientation"),
        ("trainer.input_parallelism=0", "trainer.input_parallelism"),
        ("trainer.input_parallelism=fast", "trainer.input_parallelism"),
        ("trainer.input_parallelism=-2", "trainer.input_parallelism"),
        ("trainer.shuffle_buffer=0", "trainer.shuffle_buffer"),
        ("augmentation.mixup_alpha=-0.5", "augmentation.mixup_alpha"),
        ("augmentation.cutmix_alpha=-1", "augmentation.cutmix_alpha"),
        ("trainer.test_time_shift=-1", "trainer.test_time_shift"),
    ],
)
def test_validate_names_key_value_and_fix(compose_cfg, override, key):
    cfg = compose_cfg(override)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    value = override.split("=", 1)[1]
    assert message.startswith(f"{key}="), message
    assert value in message and "\n" not in message


BAD_CLI_VALUES = [
    ("optimizer.lr=abc", "optimizer.lr"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.batch_size=-1", "trainer.batch_size"),
    ("dataset.val_fraction=1.5", "dataset.val_fraction"),
    ("model=cnn_bnn", "model"),
    ("optimizer=adm", "optimizer"),
    ("experiment=does_not_exist", "experiment"),
    ("model.hidden_units=[32,64", "model.hidden_units"),
    ("trainer.epoch=3", "trainer.epoch"),
    ("dataset.num_classes=1", "dataset.num_classes"),
    ("trainer.verbose=epoch", "trainer.verbose"),
    ("optimizer.ema_momentum=1.0", "optimizer.ema_momentum"),
]


@pytest.mark.slow
@pytest.mark.parametrize("override, key", BAD_CLI_VALUES)
def test_cli_rejects_bad_values_in_one_line_without_tensorflow(tmp_path, override, key):
    # Runs the CLI in-process in a fresh interpreter to see which modules it imported.
    script = textwrap.dedent(
        f"""
        import sys
        sys.argv = ["cifarlab", {override!r}]
        from cifarlab.commands.train import main
        try:
            main()
        except SystemExit as exit:
            code = exit.code
        else:
            code = 0
        print("TF_IMPORTED" if "tensorflow" in sys.modules else "TF_NOT_IMPORTED")
        sys.exit(code)
        """
    )
    proc = run_python(script, cwd=tmp_path)
    assert proc.returncode != 0
    assert "TF_NOT_IMPORTED" in proc.stdout
    error_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, proc.stderr
    assert error_lines[0].startswith("cifarlab: error:")
    assert key in error_lines[0] and override.split("=", 1)[1] in error_lines[0]
    assert all_runs(tmp_path / "mlruns") == []


def test_cfg_job_prints_config_without_importing_tensorflow(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        sys.argv = ["cifarlab", "--cfg", "job", "model=mlp", "trainer.epochs=3"]
        from cifarlab.commands.train import main
        try:
            main()
        except SystemExit:
            pass
        print("TF_IMPORTED" if "tensorflow" in sys.modules else "TF_NOT_IMPORTED")
        """
    )
    proc = run_python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: mlp" in proc.stdout and "epochs: 3" in proc.stdout
    assert "TF_NOT_IMPORTED" in proc.stdout


def test_conf_found_from_another_directory(tmp_path):
    proc = run_cli("--cfg", "job", "model=dense", cwd=tmp_path)
    assert "name: dense" in proc.stdout
    assert Path(conf_dir()).is_dir()


def test_reduce_on_plateau_schedule_adds_its_callback(compose_cfg):
    import keras

    from cifarlab.training.optim import plateau_callback

    cfg = compose_cfg("optimizer.schedule.name=reduce_on_plateau", "optimizer.schedule.patience=3")
    callback = plateau_callback(cfg.optimizer.schedule)
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert callback.patience == 3 and callback.monitor == "val_loss"
    assert plateau_callback(compose_cfg().optimizer.schedule) is None
