"""A sweep killed with SIGKILL mid-job: its workers stop, and the same command finishes it.

Real sweeps (``python -m cifarlab -m ...``) in subprocesses, a real ``kill -9``
of the sweep's process, the real SQLite store read back through MlflowClient.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, process_alive, run_cli
from omegaconf import OmegaConf

EPOCHS = 40  # long enough to be killed mid-job, short enough to resume in seconds
JOB = [
    *(o for o in TINY if not o.startswith("trainer.epochs=")),
    f"trainer.epochs={EPOCHS}",
    "callbacks.early_stopping.enabled=false",
    "tracking.log_model=false",
    "dataset.samples_per_class=300",
]  # fmt: skip  (epochs slow enough that both workers are caught mid-job)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cifarlab", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=open(cwd / "first.out", "w"),
        stderr=open(cwd / "first.err", "w"),
    )


def _wait_for(predicate, what: str, proc: subprocess.Popen | None = None, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _epochs(store: Path) -> dict[str, int]:
    """Child run id -> epochs it has logged."""
    client = mlflow_client(store)
    return {
        r.info.run_id: len(client.get_metric_history(r.info.run_id, "val/accuracy"))
        for r in all_runs(store)
        if r.data.tags.get("sweep_role") != "parent"
    }


def _children_of(pid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def _kill_sweep_mid_job(
    args: list[str], cwd: Path, jobs_training: int, signum: int = signal.SIGKILL
) -> list[int]:
    """Start the sweep, send it ``signum`` once ``jobs_training`` jobs are mid-training; its child pids."""
    proc = _start(args, cwd)
    store = cwd / "mlruns"
    try:
        _wait_for(lambda: "parent run" in (cwd / "first.out").read_text(), "the parent run", proc)

        def mid_training() -> bool:
            epochs = _epochs(store)
            return sum(1 for n in epochs.values() if 0 < n < EPOCHS) >= jobs_training

        _wait_for(mid_training, f"{jobs_training} job(s) mid-training", proc)
        children = _children_of(proc.pid)
    finally:
        proc.send_signal(signum)
        proc.wait(timeout=120)
    return children


def _check_finished(store: Path, jobs: int, parent_id: str) -> list:
    """One FINISHED parent (the first one), one FINISHED run per job with each epoch once, nothing RUNNING."""
    runs = all_runs(store)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(children) == jobs and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.params["optimizer.lr"] for c in children}) == jobs
    client = mlflow_client(store)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/accuracy")]
        assert sorted(steps) == list(range(EPOCHS))  # resumed, each epoch logged once
        assert len(client.get_metric_history(child.info.run_id, "test/accuracy")) == 1
        assert "error" not in child.data.tags
    return children


@pytest.mark.slow
def test_joblib_workers_stop_with_a_killed_sweep_and_its_rerun_finishes_it(tmp_path):
    sweep = ["-m", *JOB, "optimizer.lr=1e-3,2e-3,3e-3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    children = _kill_sweep_mid_job(sweep, tmp_path, jobs_training=2)
    assert children  # loky's workers (and its resource tracker)
    store = tmp_path / "mlruns"
    _wait_for(lambda: not any(process_alive(pid) for pid in children), "the workers to exit", timeout=120)
    assert "is gone; stopping this job" in (tmp_path / "first.err").read_text()
    runs = all_runs(store)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    jobs = [r for r in runs if r is not parent]
    # Two jobs were mid-training when the store was last read; one of them may have ended (and a
    # worker taken the third job) in the moment before the kill. Their runs ended, not left
    # RUNNING: KILLED mid-job, or FINISHED by a job that was done (the rerun then skips it).
    assert len(jobs) in (2, 3)
    statuses = [r.info.status for r in jobs]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses

    proc = run_cli(*sweep, cwd=tmp_path)
    assert f"reopened parent run {parent.info.run_id}" in proc.stdout
    resumed = _check_finished(store, 3, parent.info.run_id)
    assert {r.info.run_id for r in jobs} <= {r.info.run_id for r in resumed}  # the same runs, continued


@pytest.mark.slow
def test_basic_sweep_killed_mid_job_is_finished_by_its_rerun(tmp_path):
    sweep = ["-m", *JOB, "optimizer.lr=1e-3,2e-3"]
    _kill_sweep_mid_job(sweep, tmp_path, jobs_training=1)
    store = tmp_path / "mlruns"
    (parent,) = [r for r in all_runs(store) if r.data.tags.get("sweep_role") == "parent"]
    assert parent.info.status == "RUNNING"  # SIGKILL: nothing could end it

    proc = run_cli(*sweep, cwd=tmp_path)
    assert f"reopened parent run {parent.info.run_id}" in proc.stdout
    _check_finished(store, 2, parent.info.run_id)


@pytest.mark.slow
def test_sigterm_to_a_joblib_sweep_leaves_no_run_running(tmp_path):
    sweep = ["-m", *JOB, "optimizer.lr=1e-3,2e-3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    _kill_sweep_mid_job(sweep, tmp_path, jobs_training=2, signum=signal.SIGTERM)
    runs = all_runs(tmp_path / "mlruns")
    # The parent ends KILLED; joblib SIGKILLs its workers, whose runs the sweep then ends KILLED.
    assert sorted(r.info.status for r in runs) == ["KILLED"] * 3
    assert "marked KILLED" in (tmp_path / "first.out").read_text()
    assert (tmp_path / "first.err").read_text().strip().splitlines()[-1] == (
        "cifarlab: stopped by SIGTERM; the sweep's runs ended KILLED; rerun the same command to resume it"
    )  # not "nothing was recorded": the jobs' runs were in joblib's workers


@pytest.mark.slow
def test_sweep_end_kills_children_a_dead_process_left_running(tmp_path):
    from cifarlab import tracking
    from cifarlab.runtime.lease import Lease
    from cifarlab.sweeps.parent import end_stale_children

    client = tracking.store_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("cifarlab", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment_id, tags={"sweep_role": "parent"}).info.run_id

    def child(config_hash: str) -> str:
        tags = {"mlflow.parentRunId": parent, "config_hash": config_hash}
        return client.create_run(experiment_id, tags=tags).info.run_id

    dead, live, done = child("dead0"), child("live0"), child("done0")
    client.set_terminated(done, status="FINISHED")
    lease = Lease(tmp_path / "state" / "live0" / "lease.json")
    assert lease.acquire() is None  # this process trains "live0"
    try:
        config = OmegaConf.create(
            {"tracking": {"experiment": "cifarlab"}, "paths": {"state_dir": str(tmp_path / "state")}}
        )
        assert end_stale_children(config, client, parent) == [dead]
    finally:
        lease.release()
    assert client.get_run(dead).info.status == "KILLED" and "died" in client.get_run(dead).data.tags["error"]
    assert client.get_run(live).info.status == "RUNNING"
    assert client.get_run(done).info.status == "FINISHED"
