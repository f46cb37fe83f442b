"""A preset is a recipe, not a race: its config and seed fix its result whatever the machine's load.

The fast CPU preset, shrunk to seconds on the tiny synthetic data but with every part of its
recipe (the whitened stem, mixup or CutMix, the one-cycle rate, autocast bfloat16 where the CPU
has it, the test-time views), trains once as it is and once stalled over and over, as a busy
machine stalls it; every metric it records must come out the same, epoch by epoch.

The stalls are SIGSTOP and SIGCONT at random moments, not processes spinning on every core:
those would starve the other tests that run beside this one under pytest-xdist.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
from helpers import all_runs, cli_env, mlflow_client, run_cli, seed_store

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
CLOCK_METRICS = ("epoch_seconds", "images_per_second", "system/")  # these do measure the stalls
STALL_S = (0.01, 0.15)  # each stall, and each stretch of work between two, lasts this long


def train_stalled(cwd: Path, timeout_s: float = 400) -> None:
    """Train the shrunk preset in ``cwd``, stopping and resuming the process until it ends."""
    seed_store(cwd / "mlruns")  # as run_cli starts a store
    log = cwd / "train.log"
    with log.open("w") as out:
        train = subprocess.Popen(
            [sys.executable, "-m", "cifarlab", *SHRUNK_PRESET],
            cwd=cwd, env=cli_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    rng, deadline, stalls = random.Random(0), time.monotonic() + timeout_s, 0
    try:
        while train.poll() is None and time.monotonic() < deadline:
            time.sleep(rng.uniform(*STALL_S))
            with suppress(ProcessLookupError):
                os.kill(train.pid, signal.SIGSTOP)
                stalls += 1
            time.sleep(rng.uniform(*STALL_S))
            with suppress(ProcessLookupError):
                os.kill(train.pid, signal.SIGCONT)
    finally:
        with suppress(ProcessLookupError):
            os.kill(train.pid, signal.SIGCONT)
        if train.poll() is None:
            train.kill()
        train.wait()
    assert train.returncode == 0, log.read_text()[-4000:]
    assert stalls > 20, stalls  # stalled while it trained, not only while it started


def recorded_metrics(workdir: Path) -> dict[str, list[float]]:
    (run,) = all_runs(workdir / "mlruns")
    client = mlflow_client(workdir / "mlruns")
    return {
        key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        for key in run.data.metrics
        if not key.startswith(CLOCK_METRICS)
    }


@pytest.mark.slow
def test_the_fast_cpu_recipe_records_the_same_metrics_when_its_machine_stalls_it(tmp_path):
    steady, stalled = tmp_path / "steady", tmp_path / "stalled"
    for folder in (steady, stalled):
        folder.mkdir()
    run_cli(*SHRUNK_PRESET, cwd=steady)
    train_stalled(stalled)
    on_steady, on_stalled = recorded_metrics(steady), recorded_metrics(stalled)
    assert {"train/loss", "val/loss", "lr", "test/accuracy", "test/loss"} <= set(on_steady)
    assert len(on_steady["train/loss"]) == 3  # the recipe's epochs, stalled or not
    assert on_stalled == on_steady
