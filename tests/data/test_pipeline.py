"""The tf.data training pipeline: what trainer.shuffle_buffer and trainer.input_parallelism change."""

from __future__ import annotations

import numpy as np
import pytest


def _labels_in_order(dataset) -> list[int]:
    return [int(label) for _, labels in dataset for label in labels.numpy()]


@pytest.mark.parametrize("parallel_calls", [None, 1, 3])
def test_every_parallelism_yields_each_image_once_as_float_batches(parallel_calls):
    from cifarlab.data.augment import random_affine
    from cifarlab.data.pipeline import train_dataset

    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    labels = np.arange(10)
    # Without augmentation: each label exactly once, with its own image, cast to float.
    plain = list(train_dataset(images, labels, 4, None, seed=0, parallel_calls=parallel_calls))
    assert [int(x.shape[0]) for x, _ in plain] == [4, 4, 2]
    for x, y in plain:
        assert x.dtype.name == "float32"
        np.testing.assert_array_equal(x.numpy()[:, 0, 0, 0], y.numpy())
    assert sorted(_labels_in_order(plain)) == list(range(10))
    # With augmentation too: every label once per epoch, float batches, images moved.
    gradient = np.broadcast_to(np.arange(8, dtype=np.uint8)[None, None, :, None] * 30, (10, 8, 8, 3)).copy()
    augment = random_affine("horizontal", 0.2, 0.2, 10.0, "nearest", seed=0)
    augmented = list(train_dataset(gradient, labels, 4, augment, seed=0, parallel_calls=parallel_calls))
    assert sorted(_labels_in_order(augmented)) == list(range(10))
    x = np.concatenate([x.numpy() for x, _ in augmented])
    assert x.dtype == np.float32 and not np.array_equal(x, gradient.astype(np.float32))


def test_run_pipeline_follows_shuffle_buffer_and_input_parallelism(compose_cfg):
    from cifarlab.data import DataSplits
    from cifarlab.training.datasets import pipeline_settings, stage_datasets

    cfg = compose_cfg("dataset=synthetic", "augmentation=none", "trainer.batch_size=5", "trainer.shuffle_buffer=1",
                      "trainer.input_parallelism=3")
    settings = pipeline_settings(cfg)
    assert settings["parallel_calls"] == 3 and settings["shuffle_buffer"] == 1
    images = np.zeros((20, 8, 8, 3), np.uint8)
    labels = np.arange(20) % 4
    data = DataSplits(images, labels, images[:4], labels[:4], images[:4], labels[:4], ["a", "b", "c", "d"], "tiny")
    train_ds, _ = stage_datasets(cfg, data, cfg.augmentation)
    assert _labels_in_order(train_ds) == list(labels)  # a buffer of one keeps the order
    # The default buffer (the whole split) shuffles.
    cfg.trainer.shuffle_buffer = None
    train_ds, _ = stage_datasets(cfg, data, cfg.augmentation)
    assert _labels_in_order(train_ds) != list(labels)


def test_input_parallelism_auto_is_one_thread_when_the_cpu_trains():
    import tensorflow as tf

    from cifarlab.data.pipeline import resolve_input_parallelism

    assert resolve_input_parallelism(3) == 3
    assert resolve_input_parallelism("autotune") is None
    # Every multi_worker worker builds every global batch: never one thread there.
    assert resolve_input_parallelism("auto", strategy="multi_worker") is None
    if tf.config.list_physical_devices("GPU"):
        assert resolve_input_parallelism("auto") is None  # tf.data autotunes where GPUs train
    else:
        assert resolve_input_parallelism("auto") == 1


def test_input_parallelism_is_not_part_of_a_runs_identity(compose_cfg):
    from cifarlab.tracking import config_hash

    base = config_hash(compose_cfg())
    # How fast batches are made does not change what the run is (resume and sweeps match on it) ...
    assert config_hash(compose_cfg("trainer.input_parallelism=4")) == base
    # ... what it trains on does.
    assert config_hash(compose_cfg("trainer.shuffle_buffer=100")) != base
