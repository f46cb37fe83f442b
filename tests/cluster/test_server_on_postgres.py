"""A search tracked to a real MLflow server whose runs live in PostgreSQL (the README's scale-out setup).

The server's database refusing connections for a few seconds mid-search (as
during a restart or failover: the server answers /health but its API fails)
costs no trial: the calls wait it out, every trial ends FINISHED once, each
epoch logged once, nothing RUNNING.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy
from helpers import cli_env, free_port, start_mlflow_server, stop_server

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SEARCH = ["-m", "hparams_search=mlp_optuna", "dataset=synthetic", "trainer.epochs=6", "augmentation=none",
          "dataset.samples_per_class=200", "hydra/sweeper/pruner=nop", "hydra.sweeper.n_trials=2"]  # fmt: skip


def _block(admin: sqlalchemy.Engine, database: str, blocked: bool) -> None:
    """Make ``database`` refuse new connections and drop the open ones, or take them again."""
    with admin.connect() as connection:
        connection.execute(
            sqlalchemy.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not blocked).lower()}')
        )
        if blocked:
            connection.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"
                ),
                {"name": database},
            )


def _mid_trial(client) -> bool:
    """Whether some trial has logged two epochs."""
    experiment = client.get_experiment_by_name("cifarlab")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return any(len(client.get_metric_history(r.info.run_id, "val/accuracy")) >= 2 for r in runs)


def test_a_search_rides_out_its_servers_database_refusing_connections_for_a_few_seconds(
    postgres_url, tmp_path
):
    from mlflow import MlflowClient

    database = postgres_url.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(
        postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port, backend=postgres_url)
    try:
        search = subprocess.Popen([sys.executable, "-m", "cifarlab", *SEARCH, f"tracking.uri={uri}"], cwd=tmp_path,
                                  env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        while not _mid_trial(client):
            assert search.poll() is None and time.monotonic() < deadline, search.stdout.read()[-3000:]
            time.sleep(0.5)
        _block(admin, database, blocked=True)
        time.sleep(5)
        _block(admin, database, blocked=False)
        out = search.communicate(timeout=600)[0]
        assert search.returncode == 0 and "Traceback" not in out, out[-3000:]

        experiment = client.get_experiment_by_name("cifarlab")
        runs = client.search_runs([experiment.experiment_id])
        children = [r for r in runs if r.data.tags.get("sweep_role") != "parent"]
        assert len(children) == 2 and {r.info.status for r in runs} == {"FINISHED"}
        for child in children:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/accuracy")]
            assert sorted(steps) == list(range(6))  # each epoch once
    finally:
        stop_server(server)
        admin.dispose()
