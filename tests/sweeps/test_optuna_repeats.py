"""Optuna searches with repeats: each trial's parameters run with several seeds; Optuna gets their mean."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict

import pytest
from helpers import all_runs, mlflow_client, run_cli

REPEATS = ("-m", "hparams_search=mlp_optuna", "dataset=synthetic", "trainer.epochs=1", "augmentation=none",
           "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=2", "tracking.log_model=false")  # fmt: skip
PARAMS = ("optimizer.lr", "trainer.batch_size", "model.hidden_units")


@pytest.mark.slow
def test_each_trial_runs_twice_with_two_seeds_and_is_told_the_mean(tmp_path):
    import optuna
    from optuna.trial import TrialState

    proc = run_cli(*REPEATS, cwd=tmp_path)
    runs = all_runs(tmp_path / "mlruns")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert all(c.info.status == "FINISHED" for c in children)

    by_trial: dict[str, list] = defaultdict(list)
    for child in children:
        by_trial[child.data.tags["optuna_trial"]].append(child)
    assert sorted(by_trial) == ["0", "1"]
    for trial_runs in by_trial.values():
        # The repeats of a trial share its sampled parameters and differ in their seed.
        assert len({tuple(r.data.params[k] for k in PARAMS) for r in trial_runs}) == 1
        assert sorted(r.data.params["trainer.seed"] for r in trial_runs) == ["42", "43"]

    study = optuna.load_study(
        study_name="mlp_optuna", storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        values = [r.data.metrics["val/best_accuracy"] for r in by_trial[str(trial.number)]]
        assert trial.value == pytest.approx(statistics.fmean(values))
        assert sorted(trial.user_attrs["cifarlab.repeat_values"]) == ["42", "43"]
    assert "mean of 2" in proc.stdout

    # The parent's leaderboard by config: one row per trial, n = 2.
    parent_id = parents[0].info.run_id
    path = mlflow_client(tmp_path / "mlruns").download_artifacts(
        parent_id, "leaderboard_by_config.csv", str(tmp_path)
    )
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert [r["n"] for r in table] == ["2", "2"]


@pytest.mark.slow
def test_repeats_with_a_swept_seed_is_a_one_line_error(tmp_path):
    proc = run_cli(*REPEATS, "trainer.seed=1,2", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "hydra.sweeper.repeats=2 with trainer.seed swept" in proc.stderr and "Traceback" not in proc.stderr
