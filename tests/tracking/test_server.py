"""Training against a real MLflow server that dies mid-run."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TINY, answers_health, cli_env, free_port, run_cli, start_mlflow_server, stop_server

ARGS = [
    *TINY,
    "dataset.samples_per_class=1500",
    "model.hidden_units=[512]",
    "trainer.epochs=12",  # long enough that the fault lands mid-run, short for the rerun
    "callbacks.early_stopping.enabled=false",
    "tracking.log_model=false",
]


def _runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cifarlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _train_past_its_first_epoch(tmp_path: Path, uri: str, server_uri: str) -> tuple[subprocess.Popen, str]:
    """Training tracked to ``uri``, started and watched on the server at ``server_uri`` until its first
    epoch is recorded: the process (still training) and its run id."""
    train = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", *ARGS, f"tracking.uri={uri}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (_runs(server_uri) and _runs(server_uri)[0].data.metrics.get("train/loss") is not None):
        if train.poll() is not None or time.monotonic() > deadline:
            train.kill()
            raise AssertionError(train.communicate())
        time.sleep(0.5)
    return train, _runs(server_uri)[0].info.run_id


@pytest.mark.slow
def test_a_server_that_dies_mid_run_ends_it_in_one_line_and_the_rerun_resumes(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    train, run_id = _train_past_its_first_epoch(tmp_path, uri, server_uri=uri)
    try:
        stop_server(server)
        killed_at = time.monotonic()
        _, stderr = train.communicate(timeout=120)
        assert time.monotonic() - killed_at < 60
    finally:
        train.kill()
    assert train.returncode != 0
    lines = [line for line in stderr.splitlines() if line.startswith("cifarlab")]
    assert lines[-1].startswith("cifarlab: error: the MLflow server at " + uri) and run_id in lines[-1]
    assert "Traceback" not in stderr

    server = start_mlflow_server(tmp_path, port)
    try:
        rerun = run_cli(*ARGS, f"tracking.uri={uri}", cwd=tmp_path)
        assert f"resuming run {run_id}" in rerun.stdout
        (run,) = _runs(uri)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"
    finally:
        stop_server(server)


def _start_front(tmp_path: Path, upstream: str) -> tuple[subprocess.Popen, str, Path]:
    """The faulty front (tests/tracking/faulty_server.py) before ``upstream``: its process, URI, fault file."""
    port, fault = free_port(), tmp_path / "fault"
    front = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("faulty_server.py")), str(port), upstream, str(fault)],
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    if answers_health(uri, within_s=30):
        return front, uri, fault
    stop_server(front)
    raise AssertionError("the faulty front did not start")


@contextlib.contextmanager
def _server_behind_front(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A real MLflow server and the faulty front before it: the server's URI, the front's, the fault file."""
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    try:
        front, uri, fault = _start_front(tmp_path, f"http://127.0.0.1:{port}")
        try:
            yield f"http://127.0.0.1:{port}", uri, fault
        finally:
            stop_server(front)
    finally:
        stop_server(server)


@pytest.mark.slow
def test_a_run_rides_out_a_server_answering_503_for_a_few_seconds(tmp_path):
    """As while the server's database restarts: the calls wait, the run goes on, each epoch once.

    Then writes that land but whose answer is a 503: tried again, they must not log an epoch twice.
    """
    from mlflow import MlflowClient

    with _server_behind_front(tmp_path) as (direct, uri, fault):
        train, run_id = _train_past_its_first_epoch(tmp_path, uri, server_uri=direct)
        try:
            fault.write_text("503")
            time.sleep(5)
            fault.write_text("landed-503")
            time.sleep(5)
            fault.unlink()
            _, stderr = train.communicate(timeout=300)
        finally:
            train.kill()
        assert train.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
        (run,) = _runs(direct)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"
        steps = [m.step for m in MlflowClient(direct).get_metric_history(run_id, "val/accuracy")]
        assert sorted(steps) == list(range(12))


@pytest.mark.slow
def test_a_server_whose_api_hangs_mid_run_lets_the_run_go_within_a_minute_and_the_rerun_resumes(tmp_path):
    with _server_behind_front(tmp_path) as (direct, uri, fault):
        train, run_id = _train_past_its_first_epoch(tmp_path, uri, server_uri=direct)
        try:
            fault.write_text("hang")  # /health still answers: only the API stops
            broken_at = time.monotonic()
            _, stderr = train.communicate(timeout=120)
            assert time.monotonic() - broken_at < 60
        finally:
            train.kill()
        assert train.returncode != 0
        lines = [line for line in stderr.splitlines() if line.startswith("cifarlab")]
        assert "answers /health but its API fails" in lines[-1] and run_id in lines[-1]
        assert "Traceback" not in stderr

        fault.unlink()
        rerun = run_cli(*ARGS, f"tracking.uri={uri}", cwd=tmp_path)
        assert f"resuming run {run_id}" in rerun.stdout
        (run,) = _runs(direct)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"


@pytest.mark.parametrize("fault", ["500", pytest.param("hang", marks=pytest.mark.slow)])
def test_a_server_whose_api_fails_from_the_start_is_one_line_within_a_minute(tmp_path, fault):
    front, uri, fault_file = _start_front(tmp_path, "none")
    fault_file.write_text(fault)
    try:
        started = time.monotonic()
        proc = run_cli(f"tracking_uri={uri}", cwd=tmp_path, command="results", check=False)
        assert time.monotonic() - started < 60
    finally:
        stop_server(front)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"cifarlab: error: the MLflow server at {uri}")
    assert "answers /health but its API" in proc.stderr and "Traceback" not in proc.stderr


OPEN_PARENT_AT = """
import sys, time
from cifarlab.config.compose import compose_config
from cifarlab.sweeps import parent
storage, uri, at = sys.argv[1:]
config = compose_config(
    ["hparams_search=mlp_optuna", f"hydra.sweeper.storage={storage}", f"tracking.uri={uri}"], hydra_config=True
)
time.sleep(max(0.0, float(at) - time.time()))
print("parent", parent.open_parent(config, "one-search"))
"""


@pytest.mark.slow
def test_a_worker_whose_parent_run_is_created_late_still_shares_one_parent(tmp_path):
    """Two workers of one search open its parent one second apart; the server holds the first
    worker's create for 3 s. Under the study storage's lock the second finds the first's parent;
    a timed election instead kept two parents (each worker saw only its own in time)."""
    storage, start = f"sqlite:///{tmp_path / 'optuna.db'}", time.time() + 12  # past the imports
    with _server_behind_front(tmp_path) as (direct, uri, fault):
        fault.write_text("slow-first-create")
        workers = [
            subprocess.Popen([sys.executable, "-c", OPEN_PARENT_AT, storage, uri, str(start + delay)],
                             cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
            for delay in (0.0, 1.0)
        ]  # fmt: skip
        outputs = [w.communicate(timeout=180)[0] for w in workers]
        parents = [r for r in _runs(direct) if r.data.tags.get("sweep_role") == "parent"]
    said = {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("parent ")}
    assert len(parents) == 1, outputs
    assert said == {parents[0].info.run_id}, outputs
