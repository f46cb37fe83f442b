"""Image folders laid out as class folders, train/ + test/, class folders beside test/, or test/ alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from cifarlab.config.schema import DatasetConfig
from cifarlab.errors import DataError
from cifarlab.training.builders import DATASETS, load_dataset


def write_pngs(root: Path, counts: dict[str, int], size: int = 8) -> None:
    """``counts[name]`` tiny PNGs in ``root/name/``; class ``k`` is drawn with the value ``40 * k``."""
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((size, size, 3), 40 * label, np.uint8)).save(root / name / f"{i}.png")


def folder_cfg(data_dir: Path, **extra):
    return OmegaConf.merge(
        OmegaConf.structured(DatasetConfig),
        {"name": "image_folder", "data_dir": str(data_dir), "image_size": 8, **extra},
    )


def load_raw(data_dir: Path):
    return DATASETS.get("image_folder")(folder_cfg(data_dir), data_dir)


def test_test_folder_alone_is_all_test_and_not_a_class(tmp_path):
    write_pngs(tmp_path / "test", {"cat": 3, "dog": 2})
    raw = load_raw(tmp_path)
    assert raw.class_names == ["cat", "dog"]
    assert raw.x_test.shape == (5, 8, 8, 3) and raw.y_test.tolist() == [0, 0, 0, 1, 1]
    assert raw.x_train.shape == (0, 8, 8, 3) and raw.y_train.shape == (0,)


def test_test_folder_alone_cannot_be_trained_on(tmp_path):
    write_pngs(tmp_path / "test", {"cat": 3, "dog": 2})
    with pytest.raises(
        DataError, match=r"has no training images \(a folder with only test/ can be evaluated"
    ):
        load_dataset(folder_cfg(tmp_path), "/unused")


def test_train_and_test_folders_keep_all_of_test(tmp_path):
    write_pngs(tmp_path / "train", {"cat": 4, "dog": 4})
    write_pngs(tmp_path / "test", {"cat": 3, "dog": 2})
    raw = load_raw(tmp_path)
    assert raw.class_names == ["cat", "dog"]
    assert len(raw.y_train) == 8 and raw.y_test.tolist() == [0, 0, 0, 1, 1]


def test_class_folders_beside_test_train_and_test_is_not_a_class(tmp_path):
    write_pngs(tmp_path, {"cat": 4, "dog": 4})
    write_pngs(tmp_path / "test", {"cat": 1, "dog": 2})
    raw = load_raw(tmp_path)
    assert raw.class_names == ["cat", "dog"]
    assert len(raw.y_train) == 8 and raw.y_test.tolist() == [0, 1, 1]
    splits = load_dataset(folder_cfg(tmp_path, val_fraction=0.25), "/unused")
    assert len(splits.y_train) + len(splits.y_val) == 8 and len(splits.y_test) == 3


def test_test_classes_must_be_training_classes(tmp_path):
    write_pngs(tmp_path / "train", {"cat": 2})
    write_pngs(tmp_path / "test", {"emu": 1})
    with pytest.raises(DataError, match=r"classes \['emu'\] are not among the training classes \['cat'\]"):
        load_raw(tmp_path)
