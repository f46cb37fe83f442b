"""A preset is a recipe, not a race: its config and seed fix its result whatever the machine's load.

The fast CPU preset, shrunk to seconds on the tiny synthetic data but with every part of its
recipe (the whitened stem, mixup or CutMix, the one-cycle rate, autocast bfloat16 where the CPU
has it, the test-time views), trains once on a quiet machine and once while other processes
keep every core busy; every metric it records must come out the same, epoch by epoch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import all_runs, mlflow_client, run_cli

SHRUNK_PRESET = [
    "experiment=cifar10_fast_cpu",
    "dataset=synthetic",
    "trainer.epochs=3",
    "optimizer.schedule.warmup_epochs=1",
    "model.channels=[8,8,16,32]",
    "trainer.batch_size=32",
    "reports.figures=false",
    "tracking.log_model=false",
]
CLOCK_METRICS = ("epoch_seconds", "images_per_second", "system/")  # these do measure the load


@contextmanager
def every_core_busy() -> Iterator[None]:
    """Two spinning processes a core, for as long as the block runs."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def recorded_metrics(workdir: Path) -> dict[str, list[float]]:
    (run,) = all_runs(workdir / "mlruns")
    client = mlflow_client(workdir / "mlruns")
    return {
        key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        for key in run.data.metrics
        if not key.startswith(CLOCK_METRICS)
    }


@pytest.mark.slow
def test_the_fast_cpu_recipe_records_the_same_metrics_on_a_loaded_machine(tmp_path):
    quiet, loaded = tmp_path / "quiet", tmp_path / "loaded"
    for folder in (quiet, loaded):
        folder.mkdir()
    run_cli(*SHRUNK_PRESET, cwd=quiet)
    with every_core_busy():
        run_cli(*SHRUNK_PRESET, cwd=loaded, timeout=600)
    on_quiet, on_loaded = recorded_metrics(quiet), recorded_metrics(loaded)
    assert {"train/loss", "val/loss", "lr", "test/accuracy", "test/loss"} <= set(on_quiet)
    assert len(on_quiet["train/loss"]) == 3  # the recipe's epochs, load or not
    assert on_loaded == on_quiet
