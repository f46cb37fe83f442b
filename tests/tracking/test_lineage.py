"""Data lineage: every run logs its splits as MLflow datasets; the data's digest is part of its identity."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY, all_runs, run_cli
from PIL import Image

from cifarlab.data.base import content_digest
from cifarlab.tracking import config_hash


@pytest.mark.slow
def test_each_split_is_a_dataset_input_with_its_size_and_digest(tmp_path):
    run_cli(*TINY, "trainer.epochs=1", "tracking.log_model=false", cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    inputs = {
        tag.value: d.dataset
        for d in run.inputs.dataset_inputs
        for tag in d.tags
        if tag.key == "mlflow.data.context"
    }
    assert set(inputs) == {"train", "validation", "test"}
    assert len({d.digest for d in inputs.values()}) == 3 and all(
        d.name == "synthetic" for d in inputs.values()
    )
    # synthetic: 4 classes x 60 images, a fifth held out for validation; 4 x 15 test images
    assert '"features_shape": [192,' in inputs["train"].profile
    assert '"features_shape": [60,' in inputs["test"].profile


def test_one_changed_pixel_changes_the_digest_and_the_run_identity(compose_cfg):
    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.arange(4)
    changed = images.copy()
    changed[2, 3, 3, 1] = 1
    assert content_digest(images, labels) != content_digest(changed, labels)
    cfg = compose_cfg(*TINY)
    assert config_hash(cfg, data_digest=content_digest(images)) != config_hash(
        cfg, data_digest=content_digest(changed)
    )


def _folder(root, shade: int = 0) -> None:
    for label in range(2):
        for i in range(12):
            (root / f"class{label}").mkdir(parents=True, exist_ok=True)
            pixels = np.full((8, 8, 3), 100 * label + i + shade, np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{i}.png")


@pytest.mark.slow
def test_a_sweep_rerun_after_the_images_changed_trains_again(tmp_path):
    images = tmp_path / "images"
    _folder(images)
    args = [
        "-m",
        "dataset=image_folder",
        f"dataset.data_dir={images}",
        "dataset.image_size=8",
        "dataset.val_fraction=0.25",
        "model=mlp",
        "model.hidden_units=[16]",
        "augmentation=none",
        "trainer.epochs=1",
        "trainer.batch_size=8",
        "tracking.log_model=false",
    ]
    run_cli(*args, cwd=tmp_path)
    assert "1 job skipped (already FINISHED), 0 ran" in run_cli(*args, cwd=tmp_path).stdout
    _folder(images, shade=3)  # the same files, other pixels
    assert "0 jobs skipped (already FINISHED), 1 ran" in run_cli(*args, cwd=tmp_path).stdout
    children = [r for r in all_runs(tmp_path / "mlruns") if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and len({r.data.tags["config_hash"] for r in children}) == 2
