"""Rebuilding a run's data: one split of its dataset, without TensorFlow."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cifarlab.config.compose import compose_config
from cifarlab.inference.run_data import load_split


def write_pngs(root, counts, size=16):
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((size, size, 3), 60 * label, np.uint8)).save(root / name / f"{i}.png")


def test_test_split_of_a_folder_with_only_test_is_all_of_it(tmp_path):
    write_pngs(tmp_path / "test", {"a": 3, "b": 4})
    cfg = compose_config(["dataset=image_folder", f"dataset.data_dir={tmp_path}", "dataset.image_size=16"])
    data = load_split(cfg, "test")
    assert data.class_names == ["a", "b"] and data.num_classes == 2
    assert data.x.shape == (7, 16, 16, 3) and data.y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert data.x[data.y == 1].min() == 60  # the pixels of class b, not a resampled copy


def test_splits_match_what_training_holds_out():
    cfg = compose_config(["dataset=synthetic"])
    test, val = load_split(cfg, "test"), load_split(cfg, "val")
    assert (len(test.y), len(val.y)) == (60, 48)  # synthetic: 4 x 15 test; val_fraction 0.2 of 240
    assert test.split == "test" and val.split == "val" and test.class_names == val.class_names
