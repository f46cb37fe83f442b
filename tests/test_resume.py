"""A run killed mid-training resumes from its last completed epoch, in the same MLflow run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import TINY, all_runs, cli_env, mlflow_client

EPOCHS = 40


def _logged_epochs(store, run_id) -> list[int]:
    return [m.step for m in mlflow_client(store).get_metric_history(run_id, "train/loss")]


def test_killed_run_resumes_same_mlflow_run_logging_each_epoch_once(tmp_path):
    args = [*TINY, f"trainer.epochs={EPOCHS}", "callbacks.early_stopping.enabled=false", "tracking.log_model=false"]
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
    assert run_id is not None, "training never logged 3 epochs:\n" + (tmp_path / "first.log").read_text()[-3000:]
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


def test_finished_run_is_not_resumed(tmp_path):
    from conftest import run_cli

    args = [*TINY, "trainer.epochs=1", "tracking.log_model=false"]
    run_cli(*args, cwd=tmp_path)
    run_cli(*args, cwd=tmp_path)
    runs = all_runs(tmp_path / "mlruns")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
