"""Searches and sweeps on a real single-node SLURM cluster (``tests/cluster/services.sh``: 2 CPUs, no GPU).

With their shipped defaults the workers' job array and the submitit launcher
run; a request no node can meet stops the command in one line that names the
override to change (``slurm.*`` for the workers, ``hydra.launcher.*`` for the
launcher), at once when sbatch refuses it, within two minutes when SLURM would
leave it pending for ever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import all_runs, cli_env, mlflow_client, run_cli, workers_stopped_mid_trial

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


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("hydra.launcher.gpus_per_node=1", "use hydra.launcher.gpus_per_node=0 (now 1)"),  # sbatch refuses it
        ("hydra.launcher.cpus_per_task=64", "would pend for ever (PartitionConfig"),  # SLURM lets it pend
    ],
)
def test_launcher_jobs_no_node_can_run_stop_in_one_line_naming_the_override(slurm, tmp_path, override, said):
    proc = run_cli("-m", "hydra/launcher=slurm", override, "dataset=synthetic", "model=mlp", "trainer.epochs=2",
                   "optimizer.lr=1e-3,2e-3", cwd=tmp_path, check=False, timeout=150)  # fmt: skip
    errors = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(errors) == 1 and errors[0].startswith("cifarlab: error:"), proc.stderr
    assert said in errors[0] and override.split("=")[0] in errors[0] and "2 CPUs" in errors[0]
    assert not [line for line in _queue() if "PENDING" in line]  # nothing left waiting in the queue
    (parent,) = all_runs(tmp_path / "mlruns")  # the sweep's run, ended: no job ran
    assert parent.info.status == "KILLED"


def test_a_sweep_a_script_starts_in_the_background_still_stops_in_one_line(slurm, tmp_path):
    # A script's ``cmd &`` starts the sweep with SIGINT ignored; the launch's watch ends the wait
    # with SIGINT, which was then never heard: the sweep waited for ever on a job that cannot start.
    cli = [sys.executable, "-m", "cifarlab", "-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=64",
           "dataset=synthetic", "model=mlp", "trainer.epochs=2", "optimizer.lr=1e-3,2e-3"]  # fmt: skip
    proc = subprocess.run(["sh", "-c", '"$@" & wait $!', "sh", *cli], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=150)  # fmt: skip
    errors = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(errors) == 1 and "would pend for ever" in errors[0], proc.stderr
    assert not [line for line in _queue() if "PENDING" in line]


# Trials of several seconds (an epoch is a tenth of one), so that one can be cancelled mid-trial; a short
# heartbeat so that a lost one is noticed in seconds.
SLOW_EPOCHS = 30
SLOW = [*SEARCH, f"trainer.epochs={SLOW_EPOCHS}", "dataset.samples_per_class=300",
        "callbacks.early_stopping.enabled=false", "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=4", "hydra/sweeper/pruner=nop"]  # fmt: skip


def _epochs_logged(store) -> list[int]:
    runs = all_runs(store)  # first: a poll must not create the store under the starting sweep
    client = mlflow_client(store)
    return [len(client.get_metric_history(r.info.run_id, "val/accuracy"))
            for r in runs if r.data.tags.get("sweep_role") != "parent"]  # fmt: skip


def _kill_9(task: str) -> None:
    """SIGKILL the Python process of a SLURM task (on this node), as the OOM killer or a lost node would end it."""
    job = subprocess.run(
        ["squeue", "-h", "-j", task, "-o", "%A"], capture_output=True, text=True
    ).stdout.strip()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if (
            Path(argv[0].decode()).name.startswith("python")
            and _slurm_env(int(proc.name)).get("SLURM_JOB_ID") == job
        ):
            found.append(int(proc.name))
    (python,) = found
    os.kill(python, signal.SIGKILL)


def _slurm_env(pid: int) -> dict[str, str]:
    """The SLURM variables a process on this node started with (none once it has ended)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return {}
    return dict(v.split("=", 1) for v in environ if v.startswith("SLURM_") and "=" in v)


def _task_mid_trial(store) -> str | None:
    """The array task (``job_index``) whose worker runs a trial with at most a third of its epochs logged."""
    client = mlflow_client(store)
    for run in all_runs(store):
        worker = run.data.tags.get("sweep_worker")  # host-pid-start
        if run.info.status != "RUNNING" or not worker:
            continue
        if 0 < len(client.get_metric_history(run.info.run_id, "val/accuracy")) <= SLOW_EPOCHS // 3:
            env = _slurm_env(int(worker.split("-")[-2]))
            if "SLURM_ARRAY_TASK_ID" in env:
                return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return None


def _wait_for_an_empty_queue() -> None:
    deadline = time.monotonic() + 120
    while _queue() and time.monotonic() < deadline:
        time.sleep(1)


def test_scancel_of_a_task_mid_trial_hands_its_trial_to_the_other_worker_which_resumes_its_run(
    slurm, postgres_url, tmp_path
):
    import optuna
    from optuna.trial import TrialState

    _wait_for_an_empty_queue()  # both tasks must run at once: no other test's jobs on the node
    args = [
        "workers=2",
        "cluster=slurm",
        *SLOW,
        f"hydra.sweeper.storage={postgres_url}",
        "hydra.sweeper.n_trials=4",
    ]
    command = subprocess.Popen([sys.executable, "-m", "cifarlab", "workers", *args], cwd=tmp_path, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    # Whichever task is early in a trial: waiting for both at once raced trials of a second or two.
    while (task := _task_mid_trial(tmp_path / "mlruns")) is None:
        assert command.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    subprocess.run(["scancel", task], check=True)
    out = command.communicate(timeout=600)[0]
    assert command.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert "stopped by SIGTERM" in out  # said, not counted as a failure: the other worker finished the search

    trials = optuna.load_study(study_name="mlp_optuna", storage=postgres_url).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the cancelled task's trial, handed back
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed[0].params
    runs = all_runs(tmp_path / "mlruns")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    children = [r for r in runs if r.data.tags.get("sweep_role") != "parent"]
    assert len(children) == 4 and {c.info.status for c in children} == {
        "FINISHED"
    }  # resumed: no empty KILLED run


def test_sigterm_to_the_workers_command_leaves_its_array_running_and_ctrl_c_cancels_it(
    slurm, postgres_url, tmp_path
):
    """SIGTERM to the waiting command is a logout or a reboot of the login node: the array goes
    on, and the line says how to stop it. Ctrl-C is a wish to stop: the array is cancelled, each
    search ends its run KILLED and hands its trial back, all before the command returns."""
    _wait_for_an_empty_queue()
    args = ["workers=2", "cluster=slurm", *SLOW, f"hydra.sweeper.storage={postgres_url}",
            "hydra.sweeper.n_trials=4"]  # fmt: skip

    code, stderr = workers_stopped_mid_trial(
        args, tmp_path, lambda command: command.send_signal(signal.SIGTERM)
    )
    last = stderr.strip().splitlines()[-1]
    assert code == 143 and last.startswith("cifarlab workers: stopped by SIGTERM; SLURM job "), stderr[-3000:]
    array = last.split("SLURM job ")[1].split()[0]
    assert last.endswith(f"goes on (scancel {array} stops it)")
    assert any(line.startswith(f"{array}_") and " RUNNING " in line for line in _queue())  # not cancelled
    subprocess.run(["scancel", array], check=True)
    _wait_for_an_empty_queue()

    code, stderr = workers_stopped_mid_trial(
        args, tmp_path, lambda command: os.killpg(command.pid, signal.SIGINT)
    )
    assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "cifarlab workers: stopped by SIGINT; the workers stopped too, each handing its trial back to "
        "the study; rerun the same command to resume the search"
    )
    assert not _queue()  # the array is gone
    children = [r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("sweep_role") != "parent"]
    assert children and "RUNNING" not in {r.info.status for r in children}


def test_the_submitit_launcher_preset_runs_a_sweep_whose_stopped_and_killed_jobs_resume_on_rerun(
    slurm, tmp_path
):
    _wait_for_an_empty_queue()  # both jobs must run at once
    epochs = 60  # jobs of a few epochs a second: long enough to stop both mid-run
    args = ["-m", "hydra/launcher=slurm", "dataset=synthetic", "model=mlp", "augmentation=none",
            f"trainer.epochs={epochs}", "dataset.samples_per_class=300",
            "callbacks.early_stopping.enabled=false", "optimizer.lr=1e-3,2e-3"]  # fmt: skip
    sweep = subprocess.Popen([sys.executable, "-m", "cifarlab", *args], cwd=tmp_path, env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while sum(0 < n < epochs for n in _epochs_logged(tmp_path / "mlruns")) < 2:  # both jobs mid-run
        assert sweep.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    (stop, kill) = sorted(line.split()[0] for line in _queue() if " RUNNING " in line)
    subprocess.run(["scancel", stop], check=True)  # SIGTERM: the job ends its run KILLED and returns
    _kill_9(kill)  # no result file: submitit alone would wait for ever
    err = sweep.communicate(timeout=180)[1]
    errors = err.strip().splitlines()
    assert sweep.returncode == 1 and len(errors) == 1, err
    assert f"SLURM job {kill} ended without a result" in errors[0] and "same command again" in errors[0]
    runs = all_runs(tmp_path / "mlruns")
    assert [r.info.status for r in runs] == ["KILLED"] * 3  # the killed job's run too, as the sweep ended

    run_cli(*args, cwd=tmp_path, timeout=600)  # the same command: both jobs resume their runs
    runs_after = all_runs(tmp_path / "mlruns")
    assert {r.info.run_id for r in runs_after} == {r.info.run_id for r in runs}
    assert {r.info.status for r in runs_after} == {"FINISHED"}
    children = [r for r in runs_after if r.data.tags.get("sweep_role") != "parent"]
    assert {c.data.params["optimizer.lr"] for c in children} == {"0.001", "0.002"}
