"""A run id turned back into its command, rerun: the same metrics, bit for bit, when nothing changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import TINY, all_runs, as_a_terminal_starts_it, cli_env, mlflow_client, run_cli

from cifarlab.tracking import provenance


@pytest.mark.slow
def test_rerun_makes_the_same_run_again_and_links_it(tmp_path):
    run_cli(*TINY, "trainer.epochs=2", "tracking.system_metrics=false", cwd=tmp_path)
    (original,) = all_runs(tmp_path / "mlruns")
    assert (
        original.data.tags.get("git_dirty", "") == provenance.code_state().tags()["git_dirty"]
    )  # this checkout's
    artifacts = {
        a.path for a in mlflow_client(tmp_path / "mlruns").list_artifacts(original.info.run_id, "environment")
    }
    assert artifacts == {"environment/requirements.txt"}

    shown = run_cli(f"run={original.info.run_id}", "dry_run=true", command="rerun", cwd=tmp_path)
    assert "python -m cifarlab dataset=synthetic model=mlp" in shown.stdout
    assert len(all_runs(tmp_path / "mlruns")) == 1  # a dry run trains nothing

    done = run_cli(f"run={original.info.run_id}", command="rerun", cwd=tmp_path)
    assert "installed versions differ" not in done.stdout  # the same environment
    again = next(r for r in all_runs(tmp_path / "mlruns") if r.info.run_id != original.info.run_id)
    assert again.data.tags["rerun_of"] == original.info.run_id
    assert again.data.tags["config_hash"] == original.data.tags["config_hash"]
    client = mlflow_client(tmp_path / "mlruns")
    for key in ("test/accuracy", "test/loss"):
        assert again.data.metrics[key] == original.data.metrics[key], key
    history = [
        [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
        for run in (original, again)
    ]
    assert history[0] == history[1] and len(history[0]) == 2


def test_rerun_of_an_unknown_run_is_one_line(tmp_path):
    run_cli(command="results", cwd=tmp_path)  # an empty store
    proc = run_cli("run=0123456789abcdef0123456789abcdef", command="rerun", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("cifarlab: error: run=")


def _other_runs(store, besides: str) -> list:
    return [r for r in all_runs(store) if r.info.run_id != besides]


def _first_epoch_recorded(store, besides: str) -> bool:
    runs = _other_runs(store, besides)
    return bool(runs) and bool(mlflow_client(store).get_metric_history(runs[0].info.run_id, "train/loss"))


@pytest.mark.slow
def test_ctrl_c_of_a_rerun_is_handled_by_its_training_which_ends_the_run_killed(tmp_path):
    """A terminal's Ctrl-C reaches every process of the command. The rerun is the training itself:
    a parent waiting on it in ``subprocess.run`` would SIGKILL it 0.25 s later, and speak last."""
    args = [*TINY, "dataset.samples_per_class=1500", "model.hidden_units=[512]", "trainer.epochs=4"]
    run_cli(*args, "tracking.log_model=false", cwd=tmp_path)
    (original,) = all_runs(tmp_path / "mlruns")
    rerun = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", "rerun", f"run={original.info.run_id}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_a_terminal_starts_it,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not _first_epoch_recorded(tmp_path / "mlruns", besides=original.info.run_id):
        if rerun.poll() is not None or time.monotonic() > deadline:
            rerun.kill()
            raise AssertionError(rerun.communicate(timeout=60)[1][-2000:])
        time.sleep(0.2)
    os.killpg(rerun.pid, signal.SIGINT)
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 130, stderr[-2000:]
    (run,) = _other_runs(tmp_path / "mlruns", besides=original.info.run_id)
    assert run.info.status == "KILLED"
    assert stderr.strip().splitlines()[-1].startswith(f"cifarlab: stopped by SIGINT; run {run.info.run_id}")
