"""A run killed mid-training resumes from its last completed epoch, in the same MLflow run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client

EPOCHS = 40


def _logged_epochs(store, run_id) -> list[int]:
    return [m.step for m in mlflow_client(store).get_metric_history(run_id, "train/loss")]


@pytest.mark.slow
def test_killed_run_resumes_same_mlflow_run_logging_each_epoch_once(tmp_path):
    args = [
        *TINY,
        f"trainer.epochs={EPOCHS}",
        "callbacks.early_stopping.enabled=false",
        "tracking.log_model=false",
    ]
    cmd = [sys.executable, "-m", "cifarlab", *args]
    store = tmp_path / "mlruns"

    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    run_id = None
    try:
        while time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.3)
            # Touch the store only once the run exists: opening a store that the
            # training process is still creating would race its schema migration.
            if not list((store / "state").glob("*/run_id")):
                continue
            try:
                runs = all_runs(store)
                if runs and len(_logged_epochs(store, runs[0].info.run_id)) >= 3:
                    run_id = runs[0].info.run_id
                    break
            except Exception:
                continue
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to clean up, like a lost machine
        first.wait()
        log.close()
    assert run_id is not None, (
        "training never logged 3 epochs:\n" + (tmp_path / "first.log").read_text()[-3000:]
    )
    killed_at = _logged_epochs(store, run_id)
    assert len(killed_at) < EPOCHS, "training finished before it could be killed"
    assert mlflow_client(store).get_run(run_id).info.status == "RUNNING"

    second = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming run {run_id}" in second.stdout

    runs = all_runs(store)
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.status == "FINISHED"
    assert _logged_epochs(store, run_id) == list(range(EPOCHS))
    # The resumed process started after the last backed-up epoch, not from scratch.
    assert second.stdout.count("Epoch ") < EPOCHS


@pytest.mark.slow
def test_finished_run_is_not_resumed(tmp_path):
    from helpers import run_cli

    args = [*TINY, "trainer.epochs=1", "tracking.log_model=false"]
    run_cli(*args, cwd=tmp_path)
    run_cli(*args, cwd=tmp_path)
    runs = all_runs(tmp_path / "mlruns")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


def _small_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    return model


class _KilledWhileWriting(BaseException):
    """Stands in for SIGKILL arriving in the middle of a backup write."""


def _write_half_then_die(filepath, *args, **kwargs):
    with open(filepath, "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n truncated")
    raise _KilledWhileWriting


def _die(*args, **kwargs):
    raise _KilledWhileWriting


@pytest.mark.parametrize("killed_in", ["weights", "epoch counter"])
def test_backup_killed_mid_write_restores_the_previous_epoch(tmp_path, monkeypatch, killed_in):
    import json

    import numpy as np

    from cifarlab.training.callbacks import CrashSafeBackupAndRestore

    backup_dir = str(tmp_path / "backup")
    trained = _small_model(seed=1)
    backup = CrashSafeBackupAndRestore(backup_dir)
    backup.set_model(trained)
    backup.on_epoch_end(0)
    after_first_epoch = [w.copy() for w in trained.get_weights()]

    trained.set_weights([w + 1.0 for w in after_first_epoch])
    if killed_in == "weights":
        monkeypatch.setattr(trained, "save_weights", _write_half_then_die)
    else:
        monkeypatch.setattr(json, "dumps", _die)
    with pytest.raises(_KilledWhileWriting):
        backup.on_epoch_end(1)
    monkeypatch.undo()

    resumed = _small_model(seed=2)
    restore = CrashSafeBackupAndRestore(backup_dir)
    restore.set_model(resumed)
    restore.on_train_begin()  # plain BackupAndRestore raises OSError here
    assert resumed._initial_epoch == 1
    for restored, expected in zip(resumed.get_weights(), after_first_epoch):
        np.testing.assert_array_equal(restored, expected)


def test_checkpoint_killed_mid_write_keeps_the_previous_best(tmp_path, monkeypatch):
    import keras

    from cifarlab.training.callbacks import BestAndLastCheckpoint

    model = _small_model(seed=1)
    checkpoint = BestAndLastCheckpoint(tmp_path, "val/loss", save_last=True, best_so_far=None)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_loss": 1.0})
    monkeypatch.setattr(model, "save", _write_half_then_die)
    with pytest.raises(_KilledWhileWriting):
        checkpoint.on_epoch_end(1, {"val_loss": 0.5})
    monkeypatch.undo()

    assert keras.saving.load_model(tmp_path / "best.keras").count_params() == model.count_params()


def test_backup_killed_during_its_first_write_starts_training_over(tmp_path, monkeypatch):
    # No earlier backup to fall back to: the resumed run must train from epoch 0, not fail.
    from cifarlab.training.callbacks import CrashSafeBackupAndRestore

    backup_dir = str(tmp_path / "backup")
    trained = _small_model(seed=1)
    backup = CrashSafeBackupAndRestore(backup_dir)
    backup.set_model(trained)
    monkeypatch.setattr(trained, "save_weights", _write_half_then_die)
    with pytest.raises(_KilledWhileWriting):
        backup.on_epoch_end(0)
    monkeypatch.undo()

    resumed = _small_model(seed=2)
    restore = CrashSafeBackupAndRestore(backup_dir)
    restore.set_model(resumed)
    restore.on_train_begin()  # Keras alone raises OSError here: no previous backup to fall back to
    assert getattr(resumed, "_initial_epoch", None) in (None, 0)
    assert not (tmp_path / "backup").exists()


def test_checkpoints_carry_the_class_names(tmp_path):
    from cifarlab.models.class_names import load_class_names
    from cifarlab.training.callbacks import BestAndLastCheckpoint

    model = _small_model(seed=1)
    checkpoint = BestAndLastCheckpoint(
        tmp_path, "val/loss", save_last=True, best_so_far=None, class_names=["cat", "dog", "ship"]
    )
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_loss": 1.0})
    checkpoint.on_train_end()
    assert load_class_names(tmp_path / "best.keras") == ["cat", "dog", "ship"]
    assert load_class_names(tmp_path / "last.keras") == ["cat", "dog", "ship"]
