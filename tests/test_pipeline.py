"""The tf.data training pipeline: what trainer.shuffle_buffer and trainer.input_parallelism change."""

from __future__ import annotations

import numpy as np
import pytest


def _labels_in_order(dataset) -> list[int]:
    return [int(label) for _, labels in dataset for label in labels.numpy()]


@pytest.mark.parametrize("parallel_calls", [None, 1, 3])
def test_every_parallelism_yields_each_image_once_as_float_batches(parallel_calls):
    from cifarlab.augment import random_affine
    from cifarlab.pipeline import train_dataset

    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    labels = np.arange(10)
    # Without augmentation: each label exactly once, with its own image, cast to float.
    plain = list(train_dataset(images, labels, 4, None, seed=0, parallel_calls=parallel_calls))
    assert [int(x.shape[0]) for x, _ in plain] == [4, 4, 2]
    for x, y in plain:
        assert x.dtype.name == "float32"
        np.testing.assert_array_equal(x.numpy()[:, 0, 0, 0], y.numpy())
    assert sorted(_labels_in_order(plain)) == list(range(10))
    # With augmentation too: every label once per epoch, batches augmented.
    augment = random_affine("horizontal", 0.2, 0.2, 10.0, "nearest", seed=0)
    augmented = train_dataset(images, labels, 4, augment, seed=0, parallel_calls=parallel_calls)
    assert sorted(_labels_in_order(augmented)) == list(range(10))


def test_shuffle_buffer_of_one_keeps_the_order(compose_cfg):
    from cifarlab.data import DataSplits
    from cifarlab.train import _datasets

    cfg = compose_cfg("dataset=synthetic", "augmentation=none", "trainer.batch_size=5", "trainer.shuffle_buffer=1")
    images = np.zeros((20, 8, 8, 3), np.uint8)
    labels = np.arange(20) % 4
    data = DataSplits(images, labels, images[:4], labels[:4], images[:4], labels[:4], ["a", "b", "c", "d"], "tiny")
    train_ds, _ = _datasets(cfg, data, cfg.augmentation)
    assert _labels_in_order(train_ds) == list(labels)
    # The default buffer (the whole split) shuffles.
    cfg.trainer.shuffle_buffer = None
    train_ds, _ = _datasets(cfg, data, cfg.augmentation)
    assert _labels_in_order(train_ds) != list(labels)


def test_input_parallelism_auto_is_one_thread_when_the_cpu_trains():
    import tensorflow as tf

    from cifarlab.pipeline import resolve_input_parallelism

    assert resolve_input_parallelism(3) == 3
    if tf.config.list_physical_devices("GPU"):
        assert resolve_input_parallelism("auto") is None  # tf.data autotunes where GPUs train
    else:
        assert resolve_input_parallelism("auto") == 1
