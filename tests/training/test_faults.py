"""Kills, signals and a second identical command: real processes, real signals, a real store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli

# Slow enough epochs (a few thousand images) that a signal lands mid-epoch.
SLOW = [
    *TINY,
    "dataset.samples_per_class=1500",
    "model.hidden_units=[512]",
    "callbacks.early_stopping.enabled=false",
    "tracking.log_model=false",
]


def _start(args: list[str], cwd: Path, log_name: str) -> tuple[subprocess.Popen, Path]:
    log = cwd / log_name
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    return proc, log


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"condition not reached (exit code {proc.poll()})")
        time.sleep(0.05)


def _state(cwd: Path) -> Path | None:
    found = list((cwd / "mlruns" / "state").glob("*/run_id"))
    return found[0].parent if found else None


def _steps(store: Path, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in mlflow_client(store).get_metric_history(run_id, metric))


def _only_run(cwd: Path):
    runs = all_runs(cwd / "mlruns")
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    return runs[0]


@pytest.mark.slow
def test_kill_during_the_first_epoch_resumes_the_same_run(tmp_path):
    args = [*SLOW, "trainer.epochs=2"]
    proc, _ = _start(args, tmp_path, "first.log")
    _wait_for(lambda: _state(tmp_path) is not None, proc)  # the run is open, training starting
    assert not (_state(tmp_path) / "backup").exists()  # no backup yet: the case Keras alone cannot resume
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    rerun = run_cli(*args, cwd=tmp_path)
    assert "resuming run" in rerun.stdout
    run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert _steps(tmp_path / "mlruns", run.info.run_id, "train/loss") == [0, 1]
    assert _steps(tmp_path / "mlruns", run.info.run_id, "test/accuracy") == [0]


@pytest.mark.slow
def test_a_killed_run_whose_pid_now_belongs_to_another_process_resumes(tmp_path):
    # After a reboot, or in a container where the trainer is PID 1, the killed run's pid is
    # someone else's (or the rerun's own): the lease must not count that process as its holder.
    args = [*SLOW, "trainer.epochs=2"]
    proc, _ = _start(args, tmp_path, "first.log")
    _wait_for(lambda: _state(tmp_path) is not None, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    squatter = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        lease = _state(tmp_path) / "lease.json"
        record = json.loads(lease.read_text())
        lease.write_text(json.dumps({**record, "pid": squatter.pid}))  # the pid, reused

        rerun = run_cli(*args, cwd=tmp_path)
    finally:
        squatter.kill()
        squatter.wait()
    assert "resuming run" in rerun.stdout and "being trained by pid" not in rerun.stdout
    run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert _steps(tmp_path / "mlruns", run.info.run_id, "train/loss") == [0, 1]


@pytest.mark.slow
def test_kill_during_evaluation_only_redoes_the_evaluation(tmp_path):
    args = [*TINY, "trainer.epochs=3", "callbacks.early_stopping.enabled=false"]
    proc, _ = _start(args, tmp_path, "first.log")
    # Fitting is over once the trained weights are kept; Keras has deleted its backup by then.
    _wait_for(
        lambda: _state(tmp_path) is not None and (_state(tmp_path) / "trained.weights.h5").exists(), proc
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if not all_runs(tmp_path / "mlruns") or _only_run(tmp_path).info.status == "FINISHED":
        pytest.skip("the run finished before the kill landed")

    rerun = run_cli(*args, cwd=tmp_path)
    assert "Epoch " not in rerun.stdout  # no training again
    run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert _steps(tmp_path / "mlruns", run.info.run_id, "train/loss") == [0, 1, 2]
    assert _steps(tmp_path / "mlruns", run.info.run_id, "test/accuracy") == [0]


@pytest.mark.slow
def test_sigterm_ends_the_run_killed_in_one_line_and_a_rerun_resumes_it(tmp_path):
    args = [*SLOW, "trainer.epochs=3"]
    proc, log = _start(args, tmp_path, "first.log")
    store = tmp_path / "mlruns"
    _wait_for(lambda: _state(tmp_path) is not None and (_state(tmp_path) / "backup").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    tail = log.read_text().strip().splitlines()[-1]
    assert tail.startswith("cifarlab: stopped by SIGTERM; run ") and "resume" in tail
    assert "Traceback" not in log.read_text()
    killed = _only_run(tmp_path)
    assert killed.info.status == "KILLED" and "error" in killed.data.tags

    run_cli(*args, cwd=tmp_path)
    run = _only_run(tmp_path)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags.get("resumed") == "1" and "error" not in run.data.tags
    artifacts = {a.path for a in mlflow_client(store).list_artifacts(run.info.run_id)}
    assert "error.txt" not in artifacts
    assert _steps(store, run.info.run_id, "train/loss") == [0, 1, 2]


@pytest.mark.slow
def test_a_second_identical_command_does_not_write_into_the_live_run(tmp_path):
    args = [*SLOW, "trainer.epochs=20"]  # long enough to still train when the second starts
    first, _ = _start(args, tmp_path, "first.log")
    _wait_for(lambda: _state(tmp_path) is not None, first)
    second = run_cli(*args, cwd=tmp_path)
    assert "being trained by pid" in second.stdout
    assert first.wait(timeout=300) == 0
    runs = all_runs(tmp_path / "mlruns")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # each run logged each of its epochs once
        assert _steps(tmp_path / "mlruns", run.info.run_id, "train/loss") == list(range(20))
