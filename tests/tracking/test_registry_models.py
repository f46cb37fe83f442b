"""Model registry: tracking.register_as registers a run's model; a sweep sets @champion on its best."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY, all_runs, mlflow_client, run_cli


@pytest.mark.slow
def test_a_run_with_register_as_registers_its_model_as_version_1(tmp_path: Path):
    proc = run_cli(*TINY, "trainer.epochs=1", "tracking.register_as=tiny", cwd=tmp_path)
    assert "cifarlab: registered model tiny version 1" in proc.stdout
    (run,) = all_runs(tmp_path / "mlruns")
    version = mlflow_client(tmp_path / "mlruns").get_model_version("tiny", "1")
    assert version.run_id == run.info.run_id and version.source.startswith("models:/m-")  # the logged model

    # evaluate takes the registered model, and scores it on the data of the run that made it.
    evaluated = run_cli("model=models:/tiny/1", command="evaluate", cwd=tmp_path)
    assert "test accuracy" in evaluated.stdout
    eval_run = next(r for r in all_runs(tmp_path / "mlruns") if r.info.run_id != run.info.run_id)
    assert eval_run.data.tags["source_run_id"] == run.info.run_id
    assert eval_run.data.metrics["test/accuracy"] == run.data.metrics["test/accuracy"]
    missing = run_cli("model=models:/nothing@champion", command="evaluate", cwd=tmp_path, check=False)
    assert missing.returncode != 0 and "is not a registered model" in missing.stderr.strip().splitlines()[-1]


def test_register_as_without_a_logged_model_is_one_line_before_any_run(tmp_path: Path):
    proc = run_cli(*TINY, "tracking.register_as=tiny", "tracking.log_model=false", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("cifarlab: error:")]
    assert "tracking.register_as='tiny'" in line and "tracking.log_model=true" in line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() or not all_runs(tmp_path / "mlruns")


@pytest.mark.slow
def test_a_sweep_sets_champion_on_its_best_job_and_predict_loads_it(tmp_path: Path):
    proc = run_cli(
        "-m",
        *TINY,
        "trainer.epochs=1",
        "optimizer.lr=1e-3,3e-2",
        "tracking.register_as=tiny",
        cwd=tmp_path,
        timeout=600,
    )
    store = tmp_path / "mlruns"
    (parent,) = [r for r in all_runs(store) if r.data.tags.get("sweep_role") == "parent"]
    client = mlflow_client(store)
    champion = client.get_model_version_by_alias("tiny", "champion")
    assert champion.run_id == parent.data.tags["best_run_id"]
    assert len(client.search_model_versions("name = 'tiny'")) == 2  # each job registered its own version
    assert f"registered model tiny version {champion.version} as models:/tiny@champion" in proc.stdout

    # A rerun skips the FINISHED jobs (tracking is not part of a run's identity): the sweep registers the best itself.
    rerun = run_cli(
        "-m",
        *TINY,
        "trainer.epochs=1",
        "optimizer.lr=1e-3,3e-2",
        "tracking.register_as=other",
        cwd=tmp_path,
        timeout=600,
    )
    assert "2 jobs skipped" in rerun.stdout
    assert client.get_model_version_by_alias("other", "champion").run_id == champion.run_id

    uri = f"sqlite:///{store / 'mlflow.db'}"
    pred = run_cli(
        "model=models:/tiny@champion",
        "samples=3",
        f"tracking.uri={uri}",
        "output=preds.csv",
        command="predict",
        cwd=tmp_path,
    )
    assert "models:/tiny@champion" in pred.stdout + pred.stderr
    assert len((tmp_path / "preds.csv").read_text().strip().splitlines()) == 4  # a header and 3 images

    init = run_cli(*TINY, "trainer.epochs=1", "model.init_from=models:/tiny@champion", cwd=tmp_path)
    (fresh,) = [r for r in all_runs(store) if r.data.params.get("model.init_from") == "models:/tiny@champion"]
    assert fresh.info.status == "FINISHED" and "transfer.txt" in [
        a.path for a in client.list_artifacts(fresh.info.run_id)
    ]
    assert init.returncode == 0
