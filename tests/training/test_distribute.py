"""trainer.strategy: tf.distribute strategies, and who records."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli


@pytest.mark.slow
def test_mirrored_strategy_trains_and_records_one_run(tmp_path):
    run_cli(*TINY, "trainer.strategy=mirrored", "tracking.log_model=false", cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "mirrored"
    assert run.data.metrics["test/accuracy"] > 0.5


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_train_one_run_recorded_by_the_chief(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    store = tmp_path / "mlruns"
    tiny_cnn_bn = ["model=cnn_bn", "model.filters=[8]", "model.dropout=[0.1]", "model.dense_units=16"]
    args = [
        *(a for a in TINY if not a.startswith("model")),
        *tiny_cnn_bn,
        "trainer.strategy=multi_worker",
        "trainer.epochs=3",
        "tracking.log_model=false",
        f"paths.mlruns_dir={store}",
    ]
    workers = []
    for index in range(2):
        env = {
            **cli_env(),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        folder = tmp_path / f"worker{index}"
        folder.mkdir()
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "cifarlab", *args],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=240)[0])
    finally:
        for worker in workers:
            worker.kill()
    for index, (worker, output) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}:\n{output[-3000:]}"
        assert "cifarlab: test accuracy" in output

    (run,) = all_runs(store)  # one run: only the chief recorded
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "multi_worker"
    client = mlflow_client(store)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")] == [0, 1, 2]
    assert 0.0 <= run.data.metrics["test/accuracy"] <= 1.0
    # Both workers report the same global test accuracy; checkpoints are the chief's alone.
    accuracies = [
        line for output in outputs for line in output.splitlines() if "cifarlab: test accuracy" in line
    ]
    assert len(set(accuracies)) == 1
    assert "best.keras" in {
        a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "checkpoints")
    }
    assert f"MLflow run {run.info.run_id}" in outputs[0] and "MLflow run" not in outputs[1]


@pytest.mark.slow
def test_multi_worker_refuses_a_time_budget_in_one_line(tmp_path):
    proc = run_cli(
        *TINY, "trainer.strategy=multi_worker", "trainer.time_budget_s=60", cwd=tmp_path, check=False
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(errors) == 1 and "trainer.time_budget_s=60" in errors[0] and "multi_worker" in errors[0]
    assert all_runs(tmp_path / "mlruns") == []


@pytest.mark.parametrize(
    "env, chief",
    [
        ({}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_only_the_chief_records(monkeypatch, env, chief):
    import json

    from cifarlab.training.distribute import is_chief

    monkeypatch.setenv("TF_CONFIG", json.dumps(env))
    assert is_chief() is chief
