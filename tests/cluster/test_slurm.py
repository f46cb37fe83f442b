"""Searches and sweeps on a real single-node SLURM cluster (``tests/cluster/services.sh``: 2 CPUs, no GPU).

With their shipped defaults the workers' job array and the submitit launcher
run; a request no node can meet stops the command in one line that names the
override to change, at once when sbatch refuses it, within two minutes when
SLURM would leave it pending for ever.
"""

from __future__ import annotations

import subprocess

import pytest
from helpers import all_runs, run_cli

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SEARCH = ["hparams_search=mlp_optuna", "dataset=synthetic", "trainer.epochs=2", "augmentation=none"]


def _queue() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True).stdout.split(
        "\n"
    )[:-1]


def test_the_workers_job_array_with_its_defaults_runs_a_search_on_a_postgres_study(
    slurm, postgres_url, tmp_path
):
    import optuna
    from optuna.trial import TrialState

    proc = run_cli("workers=2", "cluster=slurm", *SEARCH, f"hydra.sweeper.storage={postgres_url}",
                   "hydra.sweeper.n_trials=4", cwd=tmp_path, command="workers", timeout=600)  # fmt: skip
    assert "all 2 ended, exit codes [0, 0]" in proc.stdout, proc.stdout + proc.stderr
    trials = optuna.load_study(study_name="mlp_optuna", storage=postgres_url).trials
    assert len(trials) == 4 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    runs = all_runs(tmp_path / "mlruns")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    logs = tmp_path / "mlruns" / "workers"
    assert not (logs / "%j").exists() and len(list(logs.glob("*_log.out"))) == 2  # one log per task


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("slurm.gpus_per_node=1", "use slurm.gpus_per_node=0 (now 1)"),  # sbatch refuses it
        ("slurm.cpus_per_task=64", "would pend for ever (PartitionConfig"),  # SLURM lets it pend
    ],
)
def test_workers_no_node_can_run_stop_in_one_line_naming_the_override(slurm, tmp_path, override, said):
    proc = run_cli("workers=2", "cluster=slurm", override, *SEARCH, cwd=tmp_path, command="workers",
                   check=False, timeout=150)  # fmt: skip
    errors = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(errors) == 1 and errors[0].startswith("cifarlab: error:"), proc.stderr
    assert said in errors[0] and override.split("=")[0] in errors[0] and "2 CPUs" in errors[0]
    assert not [line for line in _queue() if "PENDING" in line]  # nothing left waiting in the queue


def test_the_submitit_launcher_preset_with_its_defaults_runs_a_sweep(slurm, tmp_path):
    proc = run_cli("-m", "hydra/launcher=slurm", "dataset=synthetic", "model=mlp", "trainer.epochs=2",
                   "augmentation=none", "optimizer.lr=1e-3,2e-3", cwd=tmp_path, timeout=600)  # fmt: skip
    runs = all_runs(tmp_path / "mlruns")
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {c.data.params["optimizer.lr"] for c in children} == {"0.001", "0.002"}, proc.stdout
    assert {r.info.status for r in runs} == {"FINISHED"}
