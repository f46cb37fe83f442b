"""A run killed after an epoch and resumed records the same metrics as the same command run without a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli

# Every source of randomness in a step: shuffling, augmentation, dropout.
ARGS = [
    *TINY,
    "trainer.epochs=4",
    "augmentation=shift_flip_rotate",
    "model.dropout=0.3",
    "dataset.samples_per_class=1000",  # epochs long enough to kill one partway
    "optimizer.lr=1e-5",  # slow enough that val accuracy still moves in every epoch
    "callbacks.early_stopping.enabled=false",
    "tracking.log_model=false",
]
HISTORIES = ("val/accuracy", "val/loss", "train/loss", "train/accuracy")


def _histories(store: Path) -> dict[str, list[tuple[int, float]]]:
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED"
    client = mlflow_client(store)
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
        for name in HISTORIES
    }


def _kill_when_epoch_starts(cmd: list[str], cwd: Path, epoch: int) -> str:
    """Run ``cmd`` and SIGKILL it as soon as Keras prints that ``epoch`` (1-based) begins; returns its output."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"Epoch {epoch}/"):
                proc.send_signal(signal.SIGKILL)  # no clean-up, like a lost machine
                break
    finally:
        proc.kill()
        proc.wait()
    return "".join(lines)


@pytest.mark.slow
def test_run_killed_after_epoch_two_and_resumed_matches_an_uninterrupted_run(tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    uninterrupted.mkdir()
    interrupted.mkdir()
    run_cli(*ARGS, cwd=uninterrupted)
    expected = _histories(uninterrupted / "mlruns")
    assert [step for step, _ in expected["val/accuracy"]] == [0, 1, 2, 3]

    output = _kill_when_epoch_starts([sys.executable, "-m", "cifarlab", *ARGS], interrupted, epoch=3)
    (metadata,) = (interrupted / "mlruns" / "state").glob("*/backup/training_metadata.json")
    assert json.loads(metadata.read_text())["epoch"] == 2, output[-3000:]
    (killed,) = all_runs(interrupted / "mlruns")
    assert killed.info.status == "RUNNING"

    resumed = run_cli(*ARGS, cwd=interrupted)
    assert f"resuming run {killed.info.run_id}" in resumed.stdout
    assert "Epoch 1/" not in resumed.stdout and "Epoch 3/" in resumed.stdout  # it did resume at epoch 3
    # Same ops on the same inputs from the same state: equal to the last bit, not just close.
    assert _histories(interrupted / "mlruns") == expected
