"""Training against a real MLflow server that dies mid-run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import TINY, cli_env, run_cli

ARGS = [
    *TINY,
    "dataset.samples_per_class=1500",
    "model.hidden_units=[512]",
    "trainer.epochs=30",
    "callbacks.early_stopping.enabled=false",
    "tracking.log_model=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "1",
    ]
    server = subprocess.Popen(
        cmd,
        cwd=root,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "a"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    _kill_server(server)
    raise AssertionError("mlflow server did not start: " + (root / "server.log").read_text()[-2000:])


def _kill_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
    server.wait(timeout=30)


def _runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cifarlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.slow
def test_a_server_that_dies_mid_run_ends_it_in_one_line_and_the_rerun_resumes(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    train = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", *ARGS, f"tracking.uri={uri}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (_runs(uri) and _runs(uri)[0].data.metrics.get("train/loss") is not None):
            assert train.poll() is None and time.monotonic() < deadline, train.communicate()
            time.sleep(0.5)
        run_id = _runs(uri)[0].info.run_id
        _kill_server(server)
        killed_at = time.monotonic()
        _, stderr = train.communicate(timeout=120)
        assert time.monotonic() - killed_at < 60
    finally:
        train.kill()
    assert train.returncode != 0
    lines = [line for line in stderr.splitlines() if line.startswith("cifarlab")]
    assert lines[-1].startswith("cifarlab: error: the MLflow server at " + uri) and run_id in lines[-1]
    assert "Traceback" not in stderr

    server = _start_server(tmp_path, port)
    try:
        rerun = run_cli(*ARGS, f"tracking.uri={uri}", cwd=tmp_path)
        assert f"resuming run {run_id}" in rerun.stdout
        (run,) = _runs(uri)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"
    finally:
        _kill_server(server)
