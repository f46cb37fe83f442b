"""A project folder moved or copied: older runs stay readable, new runs write only where they run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import TINY, all_runs, run_cli
from PIL import Image

ARGS = [*TINY, "trainer.epochs=1", "tracking.system_metrics=false"]


@pytest.mark.slow
def test_a_moved_or_copied_project_keeps_its_runs_and_writes_nothing_into_the_old_folder(tmp_path):
    first = tmp_path / "project"
    first.mkdir()
    run_cli(*ARGS, cwd=first)
    (old_run,) = all_runs(first / "mlruns")
    copy, moved = tmp_path / "copy", tmp_path / "moved"
    shutil.copytree(first, copy)
    first.rename(moved)
    images = moved / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
        images / "a.png"
    )

    # The run recorded before the move: its model is found from the new place.
    predicted = run_cli(f"run={old_run.info.run_id}", "images=images", cwd=moved, command="predict")
    assert "a.png" in predicted.stdout and "the store moved from" in predicted.stdout
    # A run in the copy writes into the copy, and the old folder is not recreated.
    run_cli(*ARGS, "trainer.seed=1", cwd=copy)
    assert not first.exists()
    for folder in (copy, moved):
        for run in all_runs(folder / "mlruns"):
            assert run.info.artifact_uri.startswith((folder / "mlruns").resolve().as_uri() + "/"), run.info
    assert len(all_runs(copy / "mlruns")) == 2 and len(all_runs(moved / "mlruns")) == 1
