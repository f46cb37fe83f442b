"""Sweeps: one MLflow parent per sweep, failure and resume, Optuna, launchers, remote tracking.

Sweeps run as subprocesses (``python -m cifarlab -m ...``) in tmp_path and are
checked through MlflowClient and Optuna's storage. Job counts are kept minimal:
each tiny job still costs seconds, and a process that imports TensorFlow more.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli

# TINY, without logging a model: seconds per job.
JOB = [*TINY, "tracking.log_model=false"]


def _parents(runs: list) -> list:
    return [r for r in runs if r.data.tags.get("sweep_role") == "parent"]


def _children(runs: list, parent_id: str) -> list:
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]


def _leaderboard(store: Path, parent_id: str, dst: Path) -> list[dict[str, str]]:
    dst.mkdir(parents=True, exist_ok=True)
    path = mlflow_client(store).download_artifacts(parent_id, "leaderboard.csv", str(dst))
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _artifacts(store: Path, run_id: str) -> set[str]:
    return {a.path for a in mlflow_client(store).list_artifacts(run_id)}


# --- without training ---------------------------------------------------------------------------


def test_optuna_search_space_syntax_maps_to_optuna_distributions():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from cifarlab.sweeps.space import search_space

    space, fixed = search_space(
        [
            "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
            "trainer.batch_size=choice(32, 64, 128)",
            "model.hidden_units=choice([300,150],[128])",
            "model.dense_units=range(32, 129, step=32)",
            "model.depth=int(interval(1, 4))",
            "model=mlp",
        ],
        OverridesParser.create(),
    )
    assert space["optimizer.lr"][1] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["trainer.batch_size"][1] == CategoricalDistribution([32, 64, 128])
    assert space["model.hidden_units"][1] == CategoricalDistribution(["[300,150]", "[128]"])
    # Hydra's range stops before its end, like Python's: 32, 64, 96, 128.
    assert space["model.dense_units"][1] == IntDistribution(32, 128, step=32)
    assert space["model.depth"][1] == IntDistribution(1, 4)
    assert fixed == {"model": "model=mlp"}


def test_sweep_identity_ignores_budget_and_rerun_flag_but_not_the_config_the_jobs_start_from(compose_cfg):
    from omegaconf import OmegaConf

    from cifarlab.sweeps.job_hooks import current_job
    from cifarlab.sweeps.sweep_callback import sweep_hash

    def config(*task, stem="conv", verbose=2, n_trials=3, rerun=False, tags=None):
        # As Hydra composes it: each override is both in the task list and in the config.
        return OmegaConf.create(
            {
                "hydra": {
                    "sweeper": {"_target_": "x.Sweeper", "n_trials": n_trials},
                    "overrides": {"task": list(task)},
                },
                "model": {"name": "resnet9", "stem": stem},
                "trainer": {"epochs": 3, "verbose": verbose},
                "tracking": {"rerun_finished": rerun, "tags": tags or {}},
            }
        )

    same = sweep_hash(config("optimizer.lr=1e-3,3e-3", "model=mlp"))
    rerun = config("model=mlp", "optimizer.lr=1e-3,3e-3", "tracking.rerun_finished=true", rerun=True)
    assert sweep_hash(rerun) == same
    tagged = config("optimizer.lr=1e-3,3e-3", "model=mlp", "+tracking.tags.who=me", tags={"who": "me"})
    assert sweep_hash(tagged) == same
    assert sweep_hash(config("optimizer.lr=1e-3,3e-3", "model=mlp", verbose=0, n_trials=9)) == same
    assert sweep_hash(config("optimizer.lr=1e-3,1e-2", "model=mlp")) != same
    # The same command after a preset or conf/ changed is another sweep (a new parent run).
    assert sweep_hash(config("optimizer.lr=1e-3,3e-3", "model=mlp", stem="whiten")) != same
    cfg = compose_cfg(*TINY)  # a single run's Hydra config: not a sweep
    assert current_job(cfg) is None


@pytest.mark.slow
def test_study_report_draws_optunas_plots_and_names_the_best_trial(tmp_path):
    import json

    import optuna
    from omegaconf import OmegaConf

    from cifarlab.sweeps.study import study_report

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for lr, units, value in ((1e-3, 32, 0.5), (1e-2, 64, 0.7), (3e-3, 32, 0.6), (5e-3, 64, 0.65)):
        study.enqueue_trial({"optimizer.lr": lr, "model.units": units})
        trial = study.ask()
        trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("model.units", [32, 64])
        trial.set_user_attr("mlflow_run_id", f"run{trial.number}")
        study.tell(trial, value)
    config = OmegaConf.create({"hydra": {"sweeper": {"study_name": "s", "storage": storage}}})
    folder = tmp_path / "report"
    folder.mkdir()
    report = study_report(config, folder)
    assert (
        report["best_trial"] == 1 and report["best_run_id"] == "run1" and report["states"] == {"COMPLETE": 4}
    )
    assert set(report["importances"]) == {"optimizer.lr", "model.units"}
    assert json.loads((folder / "best_params.json").read_text())["best_params"] == {
        "optimizer.lr": 1e-2,
        "model.units": 64,
    }
    for name in ("optuna_history.png", "optuna_param_importances.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    one = optuna.create_study(study_name="one", storage=storage, direction="maximize")
    one.enqueue_trial({"optimizer.lr": 1e-3})
    trial = one.ask()
    one.tell(trial, trial.suggest_float("optimizer.lr", 1e-4, 1e-1))
    config.hydra.sweeper.study_name = "one"
    report = study_report(config, folder)
    assert report["importances"] is None and (folder / "optuna_param_importances.png").stat().st_size > 0


@pytest.mark.slow
def test_slurm_launchers_compose(tmp_path):
    for launcher, partition, target in (
        ("submitit_slurm", None, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("slurm", "gpu", "hydra_plugins.cifarlab_slurm_launcher.slurm_launcher.WatchedSlurmLauncher"),
    ):
        extra = [f"hydra.launcher.partition={partition}"] if partition else []
        proc = run_cli(f"hydra/launcher={launcher}", *extra, "--cfg", "hydra", cwd=tmp_path)
        assert f"_target_: {target}\n" in proc.stdout
    # cifarlab's preset asks for what starts on any node: 1 CPU, no GPU, the partition's default memory.
    assert "partition: gpu" in proc.stdout and "cpus_per_task: 1\n" in proc.stdout
    assert "gpus_per_node: 0\n" in proc.stdout and "mem_gb: null\n" in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_unreachable_server_stops_a_sweep_before_any_job(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    proc = run_cli("-m", *JOB, "optimizer.lr=1e-3,3e-3", f"tracking.uri={uri}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(errors) == 1 and "cannot be reached" in errors[0] and uri in errors[0]
    assert "Traceback" not in proc.stderr
    assert "Epoch" not in proc.stdout and "#0 :" not in proc.stdout  # no job was launched


@pytest.mark.slow
def test_unreachable_server_stops_a_run_before_training(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    proc = run_cli(*JOB, f"tracking.uri={uri}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(errors) == 1 and "cannot be reached" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "Epoch 1" not in proc.stdout and "cifarlab: synthetic" not in proc.stdout


# --- a sweep with a failing job, and its rerun ---------------------------------------------------

# Job 0 diverges (NaN loss) and fails; job 1 trains.
FAILING_SWEEP = ("-m", *JOB, "optimizer=sgd", "optimizer.lr=1e30,1e-3")


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    first = run_cli(*FAILING_SWEEP, cwd=workdir, check=False)
    runs_first = all_runs(workdir / "mlruns")
    (parent,) = _parents(runs_first)
    first.leaderboard = _leaderboard(workdir / "mlruns", parent.info.run_id, workdir / "leaderboard-1")
    # As if the sweep process had been killed: its parent left RUNNING.
    mlflow_client(workdir / "mlruns").update_run(parent.info.run_id, status="RUNNING")
    second = run_cli(*FAILING_SWEEP, cwd=workdir, check=False)
    runs_second = all_runs(workdir / "mlruns")
    second.leaderboard = _leaderboard(workdir / "mlruns", parent.info.run_id, workdir / "leaderboard-2")
    return workdir, (first, runs_first), (second, runs_second)


@pytest.mark.slow
def test_sweep_has_parent_children_and_leaderboard(failing_sweep):
    workdir, (proc, runs), _ = failing_sweep
    store = workdir / "mlruns"
    (parent,) = _parents(runs)
    children = _children(runs, parent.info.run_id)
    assert len(runs) == 3 and len(children) == 2  # every run of the sweep is a child of its parent
    assert parent.info.status == "FINISHED"
    rows = proc.leaderboard
    assert {r["run_id"] for r in rows} == {c.info.run_id for c in children}
    best = next(c for c in children if c.info.status == "FINISHED")
    assert rows[0]["run_id"] == best.info.run_id and rows[0]["status"] == "FINISHED"
    assert float(rows[0]["best_val_accuracy"]) == pytest.approx(
        best.data.metrics["val/best_accuracy"], abs=1e-4
    )
    assert rows[0]["params"] == "optimizer.lr=0.001" and rows[0]["epochs"] == "2"
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert {
        "leaderboard.csv",
        "leaderboard.md",
        "val_accuracy_per_epoch.png",
        "objective_vs_params.png",
    } <= _artifacts(store, parent.info.run_id)
    assert f"parent run {parent.info.run_id}" in proc.stdout


@pytest.mark.slow
def test_child_runs_are_named_from_the_overrides_the_sweep_varies(failing_sweep):
    _, (_, runs), _ = failing_sweep
    (parent,) = _parents(runs)
    names = {c.data.params["optimizer.lr"]: c.info.run_name for c in _children(runs, parent.info.run_id)}
    # Told apart in MLflow's run list; the overrides every job shares are left out of the name.
    assert names == {"1e+30": "lr=1e+30 · mlp-synthetic", "0.001": "lr=0.001 · mlp-synthetic"}
    assert parent.info.run_name.startswith("sweep-")


@pytest.mark.slow
def test_failed_job_is_recorded_failed_and_the_sweep_goes_on(failing_sweep):
    _, (proc, runs), _ = failing_sweep
    (parent,) = _parents(runs)
    by_lr = {c.data.params["optimizer.lr"]: c for c in _children(runs, parent.info.run_id)}
    assert by_lr["1e+30"].info.status == "FAILED" and "nan" in by_lr["1e+30"].data.tags["error"]
    assert by_lr["0.001"].info.status == "FINISHED"  # ran after the failure
    assert "0 jobs skipped (already FINISHED), 1 ran, 1 failed" in proc.stdout
    assert "2 of 2 done; best so far" in proc.stdout  # the progress line of the last job
    # ... and then exits non-zero, in one line, so that a script or CI job notices.
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert "lower optimizer.lr" in errors[0]  # the job's own line, then the sweep's
    assert len(errors) == 2 and "1 job(s) of the sweep failed" in errors[-1]
    assert f"sweep run {parent.info.run_id}" in errors[-1] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_rerun_skips_finished_jobs_reruns_failed_ones_under_the_same_parent(failing_sweep):
    workdir, (_, runs_first), (proc, runs) = failing_sweep
    (parent,) = _parents(runs)
    (first_parent,) = _parents(runs_first)
    assert parent.info.run_id == first_parent.info.run_id  # reopened, not a second parent
    assert parent.info.status == "FINISHED"  # though the "crash" had left it RUNNING
    children = _children(runs, parent.info.run_id)
    finished = [c for c in children if c.info.status == "FINISHED"]
    failed = [c for c in children if c.info.status == "FAILED"]
    first_children = _children(runs_first, parent.info.run_id)
    assert [c.info.run_id for c in finished] == [
        c.info.run_id for c in first_children if c.info.status == "FINISHED"
    ]
    (failed_first,) = [c for c in first_children if c.info.status == "FAILED"]
    assert [c.info.run_id for c in failed] == [
        failed_first.info.run_id
    ]  # the failed job ran again, in its run
    assert failed[0].data.tags.get("resumed") == "1"
    assert len(runs) == len(runs_first)
    assert "reopened parent run" in proc.stdout
    assert "1 job skipped (already FINISHED), 0 ran, 1 failed" in proc.stdout
    reused = finished[0]
    assert (
        f"reusing FINISHED run {reused.info.run_id} (a job of sweep run {parent.info.run_id}" in proc.stdout
    )
    rows = proc.leaderboard
    assert len(rows) == 2  # one row per job
    assert {r["run_id"] for r in rows} == {finished[0].info.run_id, failed_first.info.run_id}


# --- launchers ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_with_nothing_lost(tmp_path):
    run_cli(
        "-m", *JOB, "optimizer=adam,nadam", "optimizer.lr=1e-3,3e-3",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path,
    )  # fmt: skip
    store = tmp_path / "mlruns"
    runs = all_runs(store)
    (parent,) = _parents(runs)
    children = _children(runs, parent.info.run_id)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert {(c.data.params["optimizer.name"], c.data.params["optimizer.lr"]) for c in children} == {
        ("adam", "0.001"), ("adam", "0.003"), ("nadam", "0.001"), ("nadam", "0.003"),
    }  # fmt: skip
    client = mlflow_client(store)
    for child in children:
        for key in ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "epoch_seconds"):
            assert sorted(m.step for m in client.get_metric_history(child.info.run_id, key)) == [0, 1], key
        assert {"test/accuracy", "val/best_accuracy", "epochs_run"} <= set(child.data.metrics)
    assert {c.info.run_name for c in children} == {
        f"optimizer={name} lr={lr} · mlp-synthetic" for name in ("adam", "nadam") for lr in ("0.001", "0.003")
    }  # each job named by its swept overrides, in one process or another
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), "no two jobs overlapped"
    assert len(_leaderboard(store, parent.info.run_id, tmp_path / "dl")) == 4


@pytest.mark.slow
def test_submitit_local_runs_a_one_job_sweep_with_its_parent(tmp_path):
    proc = run_cli("-m", *JOB, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", cwd=tmp_path)
    runs = all_runs(tmp_path / "mlruns")
    (parent,) = _parents(runs)
    (child,) = _children(runs, parent.info.run_id)
    assert child.info.status == "FINISHED" and parent.info.status == "FINISHED"
    assert parent.data.tags["best_run_id"] == child.info.run_id
    assert list(
        (tmp_path / "mlruns" / "multirun").glob("*/*/.submitit/*/*_result.pkl")
    )  # ran through submitit
    assert "0 jobs skipped (already FINISHED), 1 ran, 0 failed" in proc.stdout


# --- Optuna ---------------------------------------------------------------------------------------

OPTUNA = ("-m", "hparams_search=mlp_optuna", "dataset=synthetic", "trainer.epochs=1", "augmentation=none",
          "reports.search_top=2", "tracking.search_models=1", "tracking.register_as=mlp")  # fmt: skip


@pytest.fixture(scope="module")
def optuna_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("optuna")
    first = run_cli(*OPTUNA, "hydra.sweeper.n_trials=3", cwd=workdir)
    runs_first = all_runs(workdir / "mlruns")
    # Resumed up to 5 trials, with a pruner that prunes every trial after its first epoch.
    second = run_cli(
        *OPTUNA, "hydra.sweeper.n_trials=5", "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=1.01",
        cwd=workdir,
    )  # fmt: skip
    return workdir, (first, runs_first), (second, all_runs(workdir / "mlruns"))


def _study(workdir: Path):
    import optuna

    return optuna.load_study(study_name="mlp_optuna", storage=f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}")


@pytest.mark.slow
def test_optuna_study_of_three_trials_is_resumed_to_five(optuna_study):
    from optuna.trial import TrialState

    workdir, (first, runs_first), (second, runs) = optuna_study
    (parent,) = _parents(runs_first)
    first_children = _children(runs_first, parent.info.run_id)
    assert len(first_children) == 3 and all(c.info.status == "FINISHED" for c in first_children)
    assert "0 trials done, n_trials=3; 3 to go" in first.stdout
    assert "3 trials done, n_trials=5; 2 to go" in second.stdout
    # The search's end downloads its best trials' predictions and models without MLflow's progress bars.
    assert "Downloading artifacts" not in first.stdout + first.stderr

    trials = _study(workdir).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE] * 3
    (parent_after,) = _parents(runs)
    assert parent_after.info.run_id == parent.info.run_id and parent_after.info.status == "FINISHED"
    children = _children(runs, parent.info.run_id)
    assert len(children) == 5
    assert len({c.info.run_name for c in children}) == 5  # trials are told apart by name
    # Each trial knows its MLflow run and each run its trial; the objective is the best val accuracy.
    by_run = {c.info.run_id: c for c in children}
    for trial in trials:
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["optuna_trial"] == str(trial.number)
        assert (
            run.info.run_name.startswith("lr=")
            and " batch_size=" in run.info.run_name
            and run.info.run_name.endswith(" · mlp-synthetic")
        )
        assert run.data.params["optimizer.lr"] == repr(trial.params["optimizer.lr"])
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(run.data.metrics["val/best_accuracy"])

    tags = parent_after.data.tags
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert float(tags["best_val_accuracy"]) == pytest.approx(best.value, abs=1e-4)
    assert {
        "optuna_history.png",
        "optuna_param_importances.png",
        "best_params.json",
        "leaderboard.csv",
    } <= _artifacts(workdir / "mlruns", parent.info.run_id)
    assert all(f"best.{k}" in tags for k in ("optimizer.lr", "trainer.batch_size", "model.hidden_units"))


@pytest.mark.slow
def test_a_searchs_trials_record_their_predictions_and_only_its_best_two_get_figures(optuna_study, tmp_path):
    workdir, _, (_, runs) = optuna_study
    store = workdir / "mlruns"
    (parent,) = _parents(runs)
    ranked = [
        row["run_id"]
        for row in _leaderboard(store, parent.info.run_id, tmp_path)
        if row["status"] == "FINISHED"
    ]
    client = mlflow_client(store)
    trained = [c for c in _children(runs, parent.info.run_id) if c.data.tags.get("pruned") != "true"]
    assert len(trained) == 3  # the pruned ones stopped before their reports
    for child in trained:
        reports = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "reports")}
        assert {"test_predictions.npz", "confusion_matrix.csv", "classification_report.md"} <= reports
        figures = {name for name in reports if name.endswith(".png")}
        if child.info.run_id in ranked[:2]:  # drawn when the search ended, from the logged predictions
            assert {"confusion_matrix.png", "reliability_diagram.png", "training_curves.png"} <= figures
        else:
            assert figures == set()


@pytest.mark.slow
def test_a_searchs_trials_keep_a_keras_file_and_only_its_best_gets_the_mlflow_model(optuna_study, tmp_path):
    import mlflow

    workdir, _, (_, runs) = optuna_study
    store = workdir / "mlruns"
    (parent,) = _parents(runs)
    ranked = [
        r["run_id"] for r in _leaderboard(store, parent.info.run_id, tmp_path) if r["status"] == "FINISHED"
    ]
    assert len(ranked) == 3 and parent.data.tags["best_run_id"] == ranked[0]
    client = mlflow_client(store)
    experiment_id = parent.info.experiment_id
    for run_id in ranked:
        assert "checkpoints/trained.keras" in {a.path for a in client.list_artifacts(run_id, "checkpoints")}
        logged = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
        assert len(logged) == (1 if run_id == ranked[0] else 0), run_id  # the best only, once
        if run_id == ranked[0]:
            best_model = logged[0]
    # The best's MLflow model was made from its Keras file: plain MLflow loads it, same answers.
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    pyfunc = mlflow.pyfunc.load_model(best_model.artifact_location)
    served = pyfunc.predict(images)
    trained = client.download_artifacts(ranked[0], "checkpoints/trained.keras", str(tmp_path))
    keras_probs = _keras_predict(trained, images)
    np.testing.assert_allclose(np.asarray(served), keras_probs, rtol=1e-5, atol=1e-6)
    assert pyfunc.metadata.metadata["class_names"] == [f"class_{i}" for i in range(4)]
    # The champion is the best trial's model, and no other trial registered one of its own.
    (version,) = client.search_model_versions("name = 'mlp'")
    assert (
        version.run_id == ranked[0]
        and client.get_model_version_by_alias("mlp", "champion").version == version.version
    )
    # Another trial is evaluated from its Keras file, the model its test metrics are of.
    other = ranked[1]
    proc = run_cli(f"run={other}", command="evaluate", cwd=workdir)
    assert f"evaluating run {other} (checkpoints/trained.keras)" in proc.stdout
    (evaluation,) = [r for r in all_runs(store) if r.data.tags.get("source_run_id") == other]
    recorded = client.get_run(other).data.metrics["test/accuracy"]
    assert evaluation.data.metrics["test/accuracy"] == pytest.approx(recorded, abs=1e-9)
    # ... and starts a new model from its weights (model.init_from=runs:/<id>), every layer of them.
    hidden = client.get_run(other).data.params["model.hidden_units"].replace(" ", "")
    init = run_cli("model=mlp", "dataset=synthetic", "trainer.epochs=1", "augmentation=none", f"model.hidden_units={hidden}",
                   "tracking.enabled=false", f"model.init_from=runs:/{other}", cwd=workdir)  # fmt: skip
    assert f"weights from runs:/{other}: loaded {len(hidden.split(',')) + 1} layers\n" in init.stdout


def _keras_predict(path: str, images: np.ndarray) -> np.ndarray:
    import keras

    return keras.models.load_model(path, compile=False).predict(images, verbose=0)


@pytest.mark.slow
def test_pruned_trials_are_pruned_in_optuna_and_finished_with_a_pruned_tag_in_mlflow(optuna_study):
    from optuna.trial import TrialState

    workdir, _, (proc, runs) = optuna_study
    trials = _study(workdir).trials
    assert [t.state for t in trials[3:]] == [TrialState.PRUNED] * 2
    by_run = {r.info.run_id: r for r in runs}
    for trial in trials[3:]:
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        # Ended by the search, not killed: FINISHED, tagged, and never reused as a finished config.
        assert run.info.status == "FINISHED" and run.data.tags["pruned"] == "true"
        assert trial.intermediate_values == {0: pytest.approx(run.data.metrics["val/accuracy"])}
    assert "0 ran, 0 failed, 2 pruned" in proc.stdout


@pytest.mark.slow
def test_optuna_study_refuses_to_resume_with_other_overrides(optuna_study):
    workdir, _, _ = optuna_study
    other = [("trainer.epochs=2" if arg == "trainer.epochs=1" else arg) for arg in OPTUNA]
    proc = run_cli(*other, "hydra.sweeper.n_trials=6", cwd=workdir, check=False)
    assert proc.returncode != 0
    assert "hydra.sweeper.study_name=<new name>" in proc.stderr and "Traceback" not in proc.stderr
    assert len(_study(workdir).trials) == 5
    # The sweep died before its end: its parent is not left RUNNING.
    assert not [r for r in _parents(all_runs(workdir / "mlruns")) if r.info.status == "RUNNING"]


# --- remote tracking --------------------------------------------------------------------------------


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'db.sqlite'}",
            "--artifacts-destination", str(tmp_path / "art"),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=cli_env(), start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        yield uri, server
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own process group: the server and its workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_run_round_trips_through_a_tracking_server(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    uri, server = mlflow_server
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = run_cli(*JOB, f"tracking.uri={uri}", cwd=workdir)
    assert f"open {uri}/#/experiments" in proc.stdout
    assert not (workdir / "mlruns" / "mlflow.db").exists()  # nothing went to a local store

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cifarlab")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id in proc.stdout
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")] == [0, 1]
    assert {"config", "reports", "model_summary.txt"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    local = client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path))
    assert "name: synthetic" in Path(local).read_text()
    assert any((tmp_path / "art").rglob("model_summary.txt"))  # the server stored the artifacts
