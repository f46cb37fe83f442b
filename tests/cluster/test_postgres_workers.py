"""Workers of one search on a real PostgreSQL study (``tests/cluster/services.sh``).

Three workers started at the same instant on an empty database: the first start
creates Optuna's tables once (under the server's advisory lock), the workers
split the trials without drawing the same one twice, and the one leaderboard
names every trial, reused runs included, with the best the study names.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import all_runs, cli_env, mlflow_client, run_cli

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SEARCH = ["-m", "hparams_search=mlp_optuna", "dataset=synthetic", "trainer.epochs=2", "augmentation=none"]


def _search(storage: str, trials: int) -> list[str]:
    return [*SEARCH, f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={trials}"]


def _workers_at_once(args: list[str], cwd: Path, k: int) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cifarlab", *args],
            cwd=cwd,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(k)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out) for p, out in zip(procs, outputs)]


def _leaderboard(cwd: Path, parent_run_id: str) -> list[dict[str, str]]:
    path = mlflow_client(cwd / "mlruns").download_artifacts(parent_run_id, "leaderboard.csv", str(cwd))
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def _best_lines(outputs: list[subprocess.CompletedProcess]) -> set[str]:
    return {line.split("(")[0] for o in outputs for line in o.stdout.splitlines() if "best job run" in line}


def test_three_workers_at_once_on_an_empty_database_split_nine_distinct_trials(postgres_url, tmp_path):
    import optuna
    from optuna.trial import TrialState

    outputs = _workers_at_once(_search(postgres_url, 9), tmp_path, k=3)
    assert [o.returncode for o in outputs] == [0, 0, 0], outputs[0].stdout[-3000:]
    assert not any("duplicate key" in o.stdout for o in outputs)

    study = optuna.load_study(study_name="mlp_optuna", storage=postgres_url)
    trials = study.trials
    assert len(trials) == 9 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 9  # no two workers drew the same trial

    runs = all_runs(tmp_path / "mlruns")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 9 and len({c.data.tags["sweep_worker"] for c in children}) >= 2
    rows = _leaderboard(tmp_path, parent.info.run_id)
    assert sorted(row["run_id"] for row in rows) == sorted(c.info.run_id for c in children)
    best_run = parent.data.tags["best_run_id"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    top = max(t.value for t in complete)
    first_best = min((t for t in complete if t.value == top), key=lambda t: t.number)
    assert best_run == first_best.user_attrs["mlflow_run_id"] == rows[0]["run_id"]
    assert _best_lines(outputs) == {f"cifarlab: sweep: best job run {best_run} "}  # every worker agrees


def test_a_search_that_reuses_finished_runs_lists_every_trial_once(postgres_url, tmp_path):
    """A second study of the same space reuses the first one's FINISHED runs: its leaderboard
    still has one row per trial, the reused ones labelled so, each with this study's trial number."""
    run_cli(*_search(postgres_url, 2), cwd=tmp_path)
    again = [*_search(postgres_url, 3), "hydra.sweeper.study_name=mlp_optuna_again"]
    outputs = _workers_at_once(again, tmp_path, k=2)
    assert [o.returncode for o in outputs] == [0, 0], outputs[0].stdout[-3000:]

    runs = all_runs(tmp_path / "mlruns")
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent" and "again" in r.info.run_name]
    rows = _leaderboard(tmp_path, parent.info.run_id)
    assert len(rows) == 3 and len({row["run_id"] for row in rows}) == 3
    assert sorted(row["job"] for row in rows) == [str(n) for n in range(3)]
    reused = [row for row in rows if row["note"].startswith("reused")]
    assert len(reused) >= 1  # the same sampler seed drew the first study's trials again
    assert not [r for r in all_runs(tmp_path / "mlruns") if r.info.status == "RUNNING"]


OPEN_AT = """
import sys, time
from cifarlab.sweeps.storage import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process opens at the same instant
open_storage(sys.argv[1], heartbeat_interval=5)
print("opened")
"""


def test_eight_processes_opening_an_empty_database_at_the_same_instant_all_start(postgres_url, tmp_path):
    import time

    start = str(time.time() + 8)  # past every process's imports
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT, postgres_url, start], cwd=tmp_path, env=cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(8)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [o.strip().splitlines()[-1] for o in outputs] == ["opened"] * 8, outputs
