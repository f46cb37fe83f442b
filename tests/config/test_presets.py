"""Every experiment preset composes, with every debug preset, and builds its model."""

from __future__ import annotations

import pytest

from cifarlab.config.locations import experiments_dir
from cifarlab.config.schema import validate

PRESETS = sorted(p.stem for p in experiments_dir().glob("*.yaml"))
INPUT_SHAPES = {"fashion_mnist": (28, 28, 1), "mnist": (28, 28, 1)}


def test_the_published_presets_are_all_there():
    assert {
        "delta_cifar10",
        "mlp_cifar10",
        "cnn_deep_cifar10",
        "cnn_bn_nadam",
        "cnn_basic_two_stage",
        "tf_cifar_100ep",
        "dense_fashion",
        "resnet20_cifar10",
        "resnet9_cifar10",
    } <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_records_its_claim_and_builds(compose_cfg, preset):
    from cifarlab.training.builders import build_model

    cfg = compose_cfg(f"experiment={preset}")
    validate(cfg)
    assert "source" in cfg.claim, f"{preset} does not say where its claim comes from"
    # A recipe, not a race: a time budget would make the result depend on the machine's speed and load.
    assert cfg.trainer.time_budget_s is None, f"{preset} stops on a clock"
    shape = INPUT_SHAPES.get(cfg.dataset.name, (32, 32, 3))
    model = build_model(cfg.model, shape, 10)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("debug", ["fast", "overfit", "limit"])
def test_debug_presets_compose_with_a_preset(compose_cfg, debug):
    cfg = compose_cfg("experiment=cnn_bn_nadam", f"debug={debug}")
    validate(cfg)
    assert cfg.model.name == "cnn_bn"
    if debug == "fast":
        assert cfg.trainer.epochs == 1 and cfg.trainer.steps_per_epoch == 1


def test_preset_values_can_still_be_overridden(compose_cfg):
    cfg = compose_cfg("experiment=cnn_bn_nadam", "optimizer.lr=0.01", "trainer.epochs=3")
    assert cfg.optimizer.lr == 0.01 and cfg.trainer.epochs == 3
    assert cfg.claim.accuracy == 0.89


def test_cnn_bn_preset_has_the_published_parameter_count(compose_cfg):
    from cifarlab.training.builders import build_model

    cfg = compose_cfg("experiment=cnn_bn_nadam")
    assert build_model(cfg.model, (32, 32, 3), 10).count_params() == cfg.claim.params == 420842
