"""Several worker processes on one Optuna study: shared budget, one MLflow parent, dead workers' trials retried.

Real searches (``python -m cifarlab -m hparams_search=mlp_optuna``) in subprocesses
started together, a real ``kill -9`` of one of them, the real SQLite study and
store read back through Optuna and MlflowClient.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import all_runs, cli_env, mlflow_client, run_cli, workers_stopped_mid_trial

SEARCH = ["-m", "hparams_search=mlp_optuna", "dataset=synthetic", "trainer.epochs=2"]
# Trials long enough to be killed mid-trial; a short heartbeat so a dead one is noticed in seconds.
SLOW_SEARCH = [*SEARCH[:3], "trainer.epochs=6", "dataset.samples_per_class=300", "augmentation=none",
               "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4",
               "hydra/sweeper/pruner=nop"]  # fmt: skip


def _start(args: list[str], cwd: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cifarlab", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=open(cwd / f"{name}.out", "w"),
        stderr=subprocess.STDOUT,
    )


def _study(workdir: Path):
    import optuna

    return optuna.load_study(study_name="mlp_optuna", storage=f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}")


def _parent_and_children(workdir: Path):
    runs = all_runs(workdir / "mlruns")
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1, [p.info.run_id for p in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children, runs


def _leaderboard(workdir: Path, parent_run_id: str) -> list[dict[str, str]]:
    client = mlflow_client(workdir / "mlruns")
    path = client.download_artifacts(parent_run_id, "leaderboard.csv", str(workdir))
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def _overlap(a, b) -> bool:
    return a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time


@pytest.mark.slow
def test_two_workers_started_together_share_one_study_and_one_parent(tmp_path):
    from optuna.trial import TrialState

    workers = [_start([*SEARCH, "hydra.sweeper.n_trials=8"], tmp_path, f"w{i}") for i in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0], (tmp_path / "w0.out").read_text()[-3000:]

    trials = _study(tmp_path).trials
    assert len(trials) == 8 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    parent, children, runs = _parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    assert len(children) == 8 and {c.info.status for c in children} == {"FINISHED"}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert {c.data.tags["optuna_trial"] for c in children} == {str(t.number) for t in trials}
    # Both workers ran trials, at the same time.
    by_worker: dict[str, list] = {}
    for child in children:
        by_worker.setdefault(child.data.tags["sweep_worker"], []).append(child)
    assert len(by_worker) == 2
    first, second = by_worker.values()
    assert any(_overlap(a, b) for a in first for b in second)
    # The last worker to end wrote a leaderboard that names every trial, whoever ran it.
    rows = _leaderboard(tmp_path, parent.info.run_id)
    assert {row["run_id"] for row in rows} == {c.info.run_id for c in children}


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_killed_workers_trial_is_failed_and_run_again_by_the_other(tmp_path, how):
    from optuna.trial import TrialState

    args = [*SLOW_SEARCH, "hydra.sweeper.n_trials=4"]
    victim, survivor = _start(args, tmp_path, "victim"), _start(args, tmp_path, "survivor")
    deadline = time.monotonic() + 180
    while "Epoch 2/6" not in (tmp_path / "victim.out").read_text():  # mid-trial
        assert victim.poll() is None and time.monotonic() < deadline, (tmp_path / "victim.out").read_text()[
            -3000:
        ]
        time.sleep(0.1)
    victim.send_signal(how)
    code = victim.wait(timeout=60)
    if how == signal.SIGTERM:  # it ends its trial's run KILLED, hands the trial back, and says so in one line
        out = (tmp_path / "victim.out").read_text()
        assert code == 143 and "Traceback" not in out and "stays RUNNING for the other workers" in out, out[
            -3000:
        ]
    assert survivor.wait(timeout=300) == 0, (tmp_path / "survivor.out").read_text()[-3000:]

    trials = _study(tmp_path).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the victim's trial: its heartbeat stopped, or it handed it back
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    assert retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 4
    parent, children, runs = _parent_and_children(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parent.info.status == "FINISHED" and len(children) == 4  # the retry resumed the dead trial's run
    resumed = [c for c in children if c.data.tags.get("optuna_trial") == str(retry[0].number)]
    assert resumed and resumed[0].info.status == "FINISHED"


# --- bad input: one line each, before any trial runs -------------------------------------------------


@pytest.fixture(scope="module")
def two_trial_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    run_cli(*SEARCH, "trainer.epochs=1", "hydra.sweeper.n_trials=2", cwd=workdir)
    return workdir


def _refused(workdir: Path, *extra: str) -> str:
    """Run the search with ``extra``; it must exit non-zero with one error line and start nothing."""
    before = len(all_runs(workdir / "mlruns")) if (workdir / "mlruns").exists() else 0
    proc = run_cli(*SEARCH, "trainer.epochs=1", *extra, cwd=workdir, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Epoch" not in proc.stdout
    after = len(all_runs(workdir / "mlruns")) if (workdir / "mlruns").exists() else 0
    assert after == before  # no parent run, no trial run
    return errors[0]


@pytest.mark.slow
def test_rerunning_a_finished_search_changes_nothing(two_trial_study):
    before = {r.info.run_id: r.info.status for r in all_runs(two_trial_study / "mlruns")}
    proc = run_cli(*SEARCH, "trainer.epochs=1", "hydra.sweeper.n_trials=2", cwd=two_trial_study)
    assert "2 trials done, n_trials=2; 0 to go" in proc.stdout and "Epoch" not in proc.stdout
    assert len(_study(two_trial_study).trials) == 2
    assert {r.info.run_id: r.info.status for r in all_runs(two_trial_study / "mlruns")} == before


@pytest.mark.slow
def test_n_trials_below_the_trials_done_is_refused(two_trial_study):
    line = _refused(two_trial_study, "hydra.sweeper.n_trials=1")
    assert "hydra.sweeper.n_trials=1" in line and "2 trials" in line and "hydra.sweeper.n_trials=2" in line


@pytest.mark.slow
def test_a_study_name_reused_with_another_search_space_is_refused(two_trial_study):
    line = _refused(two_trial_study, "hydra.sweeper.n_trials=3", "trainer.batch_size=choice(16,32)")
    assert (
        "another search space" in line
        and "trainer.batch_size" in line
        and "hydra.sweeper.study_name=" in line
    )
    assert len(_study(two_trial_study).trials) == 2


@pytest.mark.slow
def test_a_storage_that_cannot_be_opened_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    line = _refused(tmp_path, f"hydra.sweeper.storage=sqlite:///{tmp_path / 'a_file' / 'optuna.db'}")
    assert "hydra.sweeper.storage=sqlite:///" in line and "cannot be opened" in line


@pytest.mark.slow
def test_a_storage_whose_server_or_driver_is_missing_is_refused_without_its_password(tmp_path):
    line = _refused(tmp_path, "hydra.sweeper.storage=postgresql://me:secret@127.0.0.1:9/optuna")
    assert "hydra.sweeper.storage=postgresql://me:***@127.0.0.1:9/optuna" in line and "secret" not in line
    # Without psycopg2 the driver is missing; with it, nothing listens on port 9.
    assert "is not installed; pip install psycopg" in line or "cannot be opened" in line


# --- no batch barrier in one process ---------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_slots_start_a_new_trial_as_soon_as_one_ends(tmp_path):
    # Seed 2 draws trainer.epochs 30, 1, 1 for trials 0-2 (the sampler is reseeded per ask, draw_seed):
    # while trial 0 trains, the other slot goes on to trial 2 as soon as trial 1 ends. In batches
    # of two, trial 2 would wait for trial 0, the slowest of its batch.
    run_cli(
        *SEARCH[:3], "dataset.samples_per_class=300", "augmentation=none", "tracking.log_model=false",
        "callbacks.early_stopping.enabled=false", "trainer.epochs=choice(1,30)", "hydra.sweeper.sampler.seed=2",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_trials=3", cwd=tmp_path,
    )  # fmt: skip
    _, children, _ = _parent_and_children(tmp_path)
    by_trial = {int(c.data.tags["optuna_trial"]): c for c in children}
    assert [by_trial[n].data.params["trainer.epochs"] for n in range(3)] == ["30", "1", "1"]
    long = by_trial[0]
    started_during = [
        n for n in (1, 2) if long.info.start_time + 1000 < by_trial[n].info.start_time < long.info.end_time
    ]
    assert started_during, [(c.info.start_time, c.info.end_time) for c in by_trial.values()]


# --- K workers through submitit -----------------------------------------------------------------------------


STOPPED = (
    "the workers stopped too, each handing its trial back to the study; "
    "rerun the same command to resume the search"
)


@pytest.mark.slow
def test_workers_command_starts_k_workers_of_one_search_which_signals_stop_and_a_rerun_resumes(tmp_path):
    """SIGTERM to the command alone goes to each worker through submitit's controller; a terminal's
    Ctrl-C reaches them all at once. Before, the controller and ``subprocess.run`` each SIGKILLed
    the training soon after a Ctrl-C, leaving every run RUNNING; a SIGTERM left the workers on."""
    from optuna.trial import TrialState

    args = ["workers=2", "cluster=local", *SLOW_SEARCH[1:], "hydra.sweeper.n_trials=4"]
    stopped_runs = set()
    for signum, stop in (
        (signal.SIGTERM, lambda command: command.send_signal(signal.SIGTERM)),
        (signal.SIGINT, lambda command: os.killpg(command.pid, signal.SIGINT)),
    ):
        code, stderr = workers_stopped_mid_trial(args, tmp_path, stop)
        assert code == 128 + signum and "Traceback" not in stderr, stderr[-3000:]
        assert stderr.strip().splitlines()[-1] == f"cifarlab workers: stopped by {signum.name}; {STOPPED}"
        stopped = [r for r in all_runs(tmp_path / "mlruns") if r.info.status != "FINISHED"]
        assert stopped and {r.info.status for r in stopped} == {"KILLED"}  # none left RUNNING
        stopped_runs |= {r.info.run_id for r in stopped}

    proc = run_cli(*args, cwd=tmp_path, command="workers")
    assert "all 2 ended, exit codes [0, 0]" in proc.stdout
    trials = _study(tmp_path).trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 4
    done = [t.params for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    stopped_trials = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped_trials and all(t.params in done for t in stopped_trials)  # handed back, run again
    parent, children, runs = _parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED" and {r.info.status for r in runs} == {"FINISHED"}
    assert stopped_runs <= {r.info.run_id for r in runs}  # resumed, not replaced
    assert len({c.data.tags["sweep_worker"] for c in children}) == 2  # both workers ran trials
    logs = tmp_path / "mlruns" / "workers"
    assert not (logs / "%j").exists() and any(logs.glob("*_log.out"))  # submitit's files, by job id


def test_workers_command_refuses_bad_options_in_one_line(tmp_path):
    for args, expected in (
        (["workers=2", "dataset=synthetic"], "no search to run"),
        (["workers=0", "hparams_search=mlp_optuna"], "workers=0"),
        (["cluster=pbs", "hparams_search=mlp_optuna"], "cluster='pbs' is not one of local, slurm"),
    ):
        proc = run_cli(*args, cwd=tmp_path, command="workers", check=False)
        assert (
            proc.returncode == 1
            and proc.stderr.strip().startswith("cifarlab: error:")
            and expected in proc.stderr
        )
        assert len(proc.stderr.strip().splitlines()) == 1
    if shutil.which("srun") is None:
        proc = run_cli(
            "cluster=slurm", "hparams_search=mlp_optuna", cwd=tmp_path, command="workers", check=False
        )
        assert proc.returncode == 1 and "cluster=local" in proc.stderr and "Traceback" not in proc.stderr
