"""Runs that finish but cannot mean what the user wanted say so, on screen and as a tag."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY, all_runs, run_cli

from cifarlab.data.base import DataSplits
from cifarlab.training.sanity import chance_warning, split_warnings


def _splits(y_train, y_val, y_test, classes=4) -> DataSplits:
    def images(y):
        return np.zeros((len(y), 4, 4, 3), np.uint8)

    y_train, y_val, y_test = (np.asarray(y, np.int64) for y in (y_train, y_val, y_test))
    names = [f"c{i}" for i in range(classes)]
    return DataSplits(images(y_train), y_train, images(y_val), y_val, images(y_test), y_test, names, "t")


def test_a_split_missing_a_class_is_named_with_the_key_and_the_fix():
    data = _splits([0, 1], [0, 1, 2, 3], [0, 1, 2, 3])
    found = split_warnings(data, 0.99)
    assert set(found) == {"warning.train_split"}
    assert (
        "dataset.val_fraction=0.99" in found["warning.train_split"]
        and "c2, c3" in found["warning.train_split"]
    )
    assert split_warnings(_splits([0, 1, 2, 3], [0, 1, 2, 3], [0]), 0.5) == {}


@pytest.mark.parametrize(
    ("accuracy", "warned"), [(0.25, True), (0.28, True), (0.35, False), (float("nan"), False)]
)
def test_a_test_score_within_noise_of_guessing_is_chance(accuracy, warned):
    data = _splits([0, 1, 2, 3], [0, 1, 2, 3], list(range(4)) * 100)  # 400 test images, chance 0.25
    found = chance_warning(accuracy, data, lr=3.0)
    assert bool(found) is warned
    if warned:
        assert "optimizer.lr=3" in found["warning.chance_level"]


def test_a_run_that_leaves_classes_without_training_images_warns_and_tags_it(tmp_path):
    proc = run_cli(
        *TINY, "trainer.epochs=1", "dataset.val_fraction=0.99", "tracking.log_model=false", cwd=tmp_path
    )
    assert "cifarlab: warning: dataset.val_fraction=0.99 leaves" in proc.stdout
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and "warning.train_split" in run.data.tags
