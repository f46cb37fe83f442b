"""``python -m cifarlab evaluate``: a trained run's model, scored again and recorded as a linked run."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli
from PIL import Image

from cifarlab.commands.evaluate import parse_args
from cifarlab.config.compose import compose_config
from cifarlab.errors import CifarlabError
from cifarlab.inference.run_data import apply_run_params
from cifarlab.runtime.interrupts import EXIT_CODES
from cifarlab.runtime.lease import Owner, process_start_time, process_tags

# What a synthetic run records (flattened params are strings); cifar10 is conf/'s default dataset.
RUN_PARAMS = {
    "dataset.name": "synthetic",
    "dataset.data_dir": "None",
    "dataset.val_fraction": "0.2",
    "dataset.image_size": "16",
    "dataset.num_classes": "4",
    "dataset.download": "True",
    "paths.data_dir": "/data/keras",
    "model.name": "mlp",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One tiny FINISHED training run to evaluate, scored over test-time flips and 1-pixel moves."""
    workdir = tmp_path_factory.mktemp("evaluate")
    run_cli(*TINY, "trainer.test_time_flip=true", "trainer.test_time_shift=1", cwd=workdir)
    (run,) = all_runs(workdir / "mlruns")
    assert run.info.status == "FINISHED"
    return workdir, run


def new_runs(workdir, source_run, experiment="cifarlab"):
    return [r for r in all_runs(workdir / "mlruns", experiment) if r.info.run_id != source_run.info.run_id]


@pytest.mark.slow
def test_evaluate_records_a_linked_run_with_metrics_and_reports(source):
    workdir, src = source
    proc = run_cli(f"run={src.info.run_id}", command="evaluate", cwd=workdir)
    (run,) = new_runs(workdir, src)
    assert run.info.status == "FINISHED"
    assert run.info.run_id in proc.stdout and "test accuracy" in proc.stdout
    tags = run.data.tags
    assert tags["source_run_id"] == tags["evaluation_of"] == src.info.run_id
    assert src.info.run_id in tags["mlflow.note.content"]
    # Same model, same rebuilt test split, the run's own test-time views: the scores training recorded.
    metrics = run.data.metrics
    assert metrics["test/accuracy"] == pytest.approx(src.data.metrics["test/accuracy"], abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(src.data.metrics["test/loss"], abs=1e-3)
    assert metrics["test/num_images"] == 60  # synthetic: 4 classes x 15 test images
    assert {f"test/recall/class_{i}" for i in range(4)} <= set(metrics)
    assert run.data.params["dataset.name"] == "synthetic"
    # The evaluated split is the run's dataset input, the same data (digest) training tested on.
    (evaluated,) = run.inputs.dataset_inputs
    assert [(t.key, t.value) for t in evaluated.tags] == [("mlflow.data.context", "test")]
    trained = {t.value: d.dataset.digest for d in src.inputs.dataset_inputs for t in d.tags}
    assert evaluated.dataset.digest == trained["test"]
    reports = {a.path for a in mlflow_client(workdir / "mlruns").list_artifacts(run.info.run_id, "reports")}
    expected = {"confusion_matrix.png", "classification_report.md", "prediction_grid.png"}
    assert {f"reports/{name}" for name in expected} <= reports


@pytest.mark.slow
def test_val_split_into_another_experiment_keeps_the_runs_dataset(source, tmp_path):
    workdir, src = source
    run_cli(
        f"run={src.info.run_id}",
        "split=val",
        "tracking.experiment=evals",
        f"output_dir={tmp_path / 'reports'}",
        command="evaluate",
        cwd=workdir,
    )
    (run,) = all_runs(workdir / "mlruns", "evals")
    assert run.data.tags["source_run_id"] == src.info.run_id and run.data.tags["split"] == "val"
    assert "val/accuracy" in run.data.metrics and "test/accuracy" not in run.data.metrics
    assert run.data.metrics["val/num_images"] == 48  # the run's val_fraction 0.2 of 240, not cifar10's 0.1
    assert run.data.params["dataset.val_fraction"] == "0.2"
    assert (tmp_path / "reports" / "confusion_matrix.csv").is_file()


@pytest.mark.slow
def test_unknown_run_and_misfit_dataset_fail_without_a_new_run(source):
    workdir, src = source
    before = len(all_runs(workdir / "mlruns"))
    proc = run_cli("run=0123456789abcdef0123456789abcdef", command="evaluate", cwd=workdir, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "cifarlab: error: run='0123456789abcdef0123456789abcdef' is not a run" in proc.stderr

    proc = run_cli(
        f"run={src.info.run_id}", "dataset.image_size=8", command="evaluate", cwd=workdir, check=False
    )
    assert proc.returncode != 0
    assert "cifarlab: error:" in proc.stderr and "the model takes (16, 16, 3)" in proc.stderr
    assert len(all_runs(workdir / "mlruns")) == before


def test_run_params_rebuild_the_dataset_unless_overridden():
    cfg = apply_run_params(compose_config([]), RUN_PARAMS)
    assert (
        cfg.dataset.name == "synthetic" and cfg.dataset.val_fraction == 0.2 and cfg.dataset.image_size == 16
    )
    assert cfg.dataset.data_dir is None and cfg.paths.data_dir == "/data/keras"

    overrides = ["dataset.val_fraction=0.5", "paths.data_dir=/elsewhere"]
    cfg = apply_run_params(compose_config(overrides), RUN_PARAMS, overrides)
    assert cfg.dataset.name == "synthetic" and cfg.dataset.val_fraction == 0.5
    assert cfg.paths.data_dir == "/elsewhere"

    overrides = ["dataset=mnist"]  # another dataset: none of the run's dataset.* apply
    cfg = apply_run_params(compose_config(overrides), RUN_PARAMS, overrides)
    assert cfg.dataset.name == "mnist" and cfg.dataset.val_fraction == 0.1


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "give one of run=<run id>"),
        (["run=abc", "model=models:/m@champion"], "give one of run=<run id>"),
        (["run=abc", "split=train"], "split='train' is not valid"),
        (["run=abc", "oops"], "'oops' is not key=value"),
    ],
)
def test_bad_arguments(argv, expected):
    with pytest.raises(CifarlabError, match=expected):
        parse_args(argv)


def test_bad_override_is_one_line():
    with pytest.raises(CifarlabError, match="dataset='cifar100' is not an option of config group 'dataset'"):
        compose_config(["dataset=cifar100"])


def write_pngs(root, counts, size=16):
    """Tiny PNGs named like the synthetic dataset's classes, so a synthetic run's model fits them."""
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((size, size, 3), 50 * label + i, np.uint8)).save(root / name / f"{i}.png")


@pytest.mark.slow
@pytest.mark.parametrize("with_train", [False, True], ids=["only-test", "train-and-test"])
def test_image_folder_is_evaluated_on_all_of_test(source, tmp_path, with_train):
    workdir, src = source
    classes = {f"class_{i}": 2 + i for i in range(4)}  # 14 test images
    write_pngs(tmp_path / "test", classes)
    if with_train:
        write_pngs(tmp_path / "train", {name: 3 for name in classes})
    experiment = f"folder-{'train-test' if with_train else 'test'}"
    proc = run_cli(
        f"run={src.info.run_id}",
        "dataset=image_folder",
        f"dataset.data_dir={tmp_path}",
        "dataset.image_size=16",
        f"tracking.experiment={experiment}",
        command="evaluate",
        cwd=workdir,
    )
    assert "on 14 test images of image_folder" in proc.stdout
    (run,) = all_runs(workdir / "mlruns", experiment)
    assert run.data.metrics["test/num_images"] == 14
    assert {f"test/recall/class_{i}" for i in range(4)} <= set(run.data.metrics)


@pytest.mark.slow
def test_an_evaluation_a_killed_evaluate_left_running_is_ended_by_the_next(source):
    workdir, src = source
    # A process that has ended: what a kill -9 leaves of the evaluate that opened the run.
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    owner = Owner(socket.gethostname(), dead.pid, process_start_time(dead.pid))
    dead.wait()
    client = mlflow_client(workdir / "mlruns")
    experiment_id = client.create_experiment("orphans", artifact_location=(workdir / "artifacts").as_uri())
    tags = {"evaluation_of": src.info.run_id, **process_tags(owner)}
    orphan = client.create_run(experiment_id, tags=tags).info.run_id
    # A live evaluate's run (this process) is left alone.
    live = client.create_run(
        experiment_id, tags={"evaluation_of": src.info.run_id, **process_tags()}
    ).info.run_id

    proc = run_cli(f"run={src.info.run_id}", "tracking.experiment=orphans", command="evaluate", cwd=workdir)
    assert f"ended evaluation run {orphan} KILLED" in proc.stdout
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(live).info.status == "RUNNING"
    client.set_terminated(live)


def as_a_shell_starts_it() -> None:
    """Ctrl-C heard, as in a terminal (pytest-xdist's workers ignore SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "moment"),
    [(signal.SIGTERM, "evaluating"), (signal.SIGINT, "evaluating"), (signal.SIGINT, "loading")],
    ids=["SIGTERM-with-its-run-open", "Ctrl-C-with-its-run-open", "Ctrl-C-while-loading"],
)
def test_a_signalled_evaluate_stops_in_one_line_and_leaves_no_run_running(source, signum, moment):
    """After the run opened, it ends KILLED; while the model and data still load, no run is recorded."""
    workdir, src = source
    experiment = f"stopped-{signum.name}-{moment}"
    command = [sys.executable, "-m", "cifarlab", "evaluate", f"run={src.info.run_id}"]
    proc = subprocess.Popen(
        [*command, f"tracking.experiment={experiment}"],
        cwd=workdir, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_a_shell_starts_it,
    )  # fmt: skip
    assert proc.stdout is not None
    # "loading" comes before TensorFlow is imported, "evaluating" once the run is open.
    for line in proc.stdout:
        if line.startswith(f"cifarlab: {moment}"):
            proc.send_signal(signum)
            break
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CODES[signum], stderr[-2000:]
    runs = all_runs(workdir / "mlruns", experiment)
    last_line = stderr.strip().splitlines()[-1]
    if moment == "loading":
        assert runs == []
        assert f"cifarlab: {signum.name}: stopping after loading the model and the data;" in stderr
        assert last_line == f"cifarlab evaluate: stopped by {signum.name}; nothing was recorded"
        return
    (run,) = runs
    assert run.info.status == "KILLED"
    assert last_line == (
        f"cifarlab evaluate: stopped by {signum.name}; run {run.info.run_id} ended KILLED; "
        "rerun the same command to do it again"
    )
