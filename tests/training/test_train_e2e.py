"""The CLI trains for real and MLflow holds the complete run."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli, run_python

from cifarlab.runtime.quiet import START_UP_NOISE


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    proc = run_cli(*TINY, "trainer.epochs=3", "reports.figures=true", cwd=workdir)
    runs = all_runs(workdir / "mlruns")
    assert len(runs) == 1
    return workdir, runs[0], proc


def test_run_finishes_with_per_epoch_metrics(finished_run):
    workdir, run, proc = finished_run
    client = mlflow_client(workdir / "mlruns")
    assert run.info.status == "FINISHED"
    for key in (
        "train/loss",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "lr",
        "epoch_seconds",
        "images_per_second",
    ):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps == [0, 1, 2], key
    metrics = run.data.metrics
    # 4 classes: chance is 25%; the synthetic classes are learnable in 3 epochs.
    assert metrics["test/accuracy"] > 0.5
    assert metrics["test/loss"] > 0
    assert any(key.startswith("test/recall/") for key in metrics)


def test_params_and_tags_describe_the_config(finished_run):
    _, run, _ = finished_run
    params, tags = run.data.params, run.data.tags
    assert params["model.name"] == "mlp"
    assert params["model.hidden_units"] == "[32]"
    assert params["trainer.epochs"] == "3"
    assert int(params["model/num_params"]) == 16 * 16 * 3 * 32 + 32 + 32 * 4 + 4
    assert tags["dataset"] == "synthetic" and tags["model"] == "mlp"
    assert "trainer.epochs=3" in tags["overrides"]
    assert (
        tags["mlflow.note.content"].startswith("test accuracy ")
        and "mlp on synthetic" in tags["mlflow.note.content"]
    )
    # Named by what was changed from the defaults, so runs can be told apart in the UI's list.
    # (what changed first, each key by its last part: the UI's name column is narrow; epochs, set
    # twice, once, by the value Hydra applies)
    assert run.info.run_name == ("hidden_units=[32] augmentation=none epochs=3 batch_size=32 · mlp-synthetic")
    assert len(tags["config_hash"]) == 16
    # trainer.precision=auto is recorded as the policy it chose on this machine.
    from cifarlab.training.precision import resolve_precision

    assert params["trainer.precision"] == "auto"
    assert params["precision_policy"] == resolve_precision("auto")


def test_artifacts_hold_config_reports_checkpoint_and_summary(finished_run):
    workdir, run, _ = finished_run
    client = mlflow_client(workdir / "mlruns")

    def listing(path=None):
        return {a.path for a in client.list_artifacts(run.info.run_id, path)}

    assert {"config", "reports", "checkpoints", "model_summary.txt"} <= listing()
    assert {"config/config.yaml", "config/overrides.txt"} <= listing("config")
    assert {"reports/confusion_matrix.png", "reports/confusion_matrix.csv"} <= listing("reports")
    assert "checkpoints/best.keras" in listing("checkpoints")
    local = client.download_artifacts(run.info.run_id, "reports/confusion_matrix.csv", str(workdir))
    text = open(local).read()
    assert "class_0" in text and "class_3" in text


def test_console_ends_with_accuracy_run_id_and_ui_command(finished_run):
    _, run, proc = finished_run
    assert "test accuracy" in proc.stdout
    assert run.info.run_id in proc.stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db" in proc.stdout
    # No progress bar from MLflow running the logged model on its input example.
    assert "\u2501" not in proc.stdout


def test_the_screen_has_no_tensorflow_or_mlflow_start_up_lines(finished_run):
    _, _, proc = finished_run
    lines = (proc.stdout + proc.stderr).splitlines()
    noise = [
        line
        for line in lines
        if line.startswith(("I0000", "E0000", "W0000", "WARNING: All log messages")) or " INFO mlflow" in line
    ]
    assert noise == [] and any(line.startswith("cifarlab: test accuracy") for line in lines)


def test_verbose_brings_the_start_up_lines_back(tmp_path):
    def start_up_lines(code: str, env: dict[str, str]) -> list[str]:
        proc = run_python(code, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return [line.split("]")[-1] for line in proc.stderr.splitlines() if START_UP_NOISE.match(line)]

    same_kernels = {
        **cli_env(),
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }  # cifarlab's choice on x86, said as TF prints it
    bare = {**same_kernels, "TF_CPP_MIN_LOG_LEVEL": "0"}
    plain_tensorflow = start_up_lines("import tensorflow as tf; tf.config.list_physical_devices()", bare)
    verbose = start_up_lines(
        "import cifarlab, tensorflow as tf; tf.config.list_physical_devices()",
        {**same_kernels, "CIFARLAB_VERBOSE": "1"},
    )
    assert verbose == plain_tensorflow  # (empty on a machine where TensorFlow prints none)


@pytest.mark.slow
def test_logged_model_predicts_uint8_through_pyfunc_in_fresh_process(finished_run):
    workdir, run, _ = finished_run
    script = textwrap.dedent(
        f"""
        import json, numpy as np, mlflow
        mlflow.set_tracking_uri("sqlite:///{workdir / "mlruns" / "mlflow.db"}")
        model = mlflow.pyfunc.load_model("runs:/{run.info.run_id}/model")
        images = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
        probs = np.asarray(model.predict(images))
        print(json.dumps({{"shape": list(probs.shape), "sums": probs.sum(axis=1).tolist(),
                           "class_names": model.metadata.metadata["class_names"]}}))
        """
    )
    proc = run_python(script, cwd=workdir, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [3, 4]
    np.testing.assert_allclose(out["sums"], 1.0, rtol=1e-4)
    assert out["class_names"] == ["class_0", "class_1", "class_2", "class_3"]


@pytest.mark.slow
def test_failure_inside_the_run_ends_it_failed_with_the_error(tmp_path):
    # A learning rate this large drives the loss to NaN: terminate-on-NaN stops it
    # and the run must end FAILED, with the error text attached, not RUNNING.
    proc = run_cli(*TINY, "optimizer=sgd", "optimizer.lr=1e30", "trainer.epochs=3", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "cifarlab: error: training loss became" in proc.stderr
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FAILED"
    client = mlflow_client(tmp_path / "mlruns")
    assert "error.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
