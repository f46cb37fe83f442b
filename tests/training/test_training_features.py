"""Multi-stage training, transfer learning, debug presets, time budget, the delta baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY, all_runs, mlflow_client, run_cli
from PIL import Image


def _history(store, run_id, key):
    return [
        (m.step, m.value)
        for m in sorted(mlflow_client(store).get_metric_history(run_id, key), key=lambda m: m.step)
    ]


@pytest.mark.slow
def test_two_stages_continue_the_same_weights_in_one_run(tmp_path):
    run_cli(
        *TINY,
        "stages=plain_then_augmented",
        "trainer.epochs=2",
        "callbacks.early_stopping.enabled=false",
        "tracking.log_model=false",
        cwd=tmp_path,
    )
    (run,) = all_runs(tmp_path / "mlruns")
    store = tmp_path / "mlruns"
    assert _history(store, run.info.run_id, "stage") == [(0, 0), (1, 0), (2, 1), (3, 1)]
    losses = dict(_history(store, run.info.run_id, "train/loss"))
    assert sorted(losses) == [0, 1, 2, 3]
    # Stage 2 starts from stage 1's weights: its first loss is far below the
    # loss of a freshly initialised model (epoch 0).
    assert losses[2] < 0.6 * losses[0]


def _write_three_class_folder(root, size=16, per_class=12):
    rng = np.random.default_rng(0)
    for index, name in enumerate(["apple", "banana", "cherry"]):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            pixels[..., index] += 180  # each class has its own dominant colour
            Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("source")
    run_cli(*TINY, cwd=workdir)
    (run,) = all_runs(workdir / "mlruns")
    return workdir, run.info.run_id


@pytest.mark.slow
def test_transfer_to_three_class_folder_replaces_head_and_freezes_backbone(source_run, tmp_path):
    import mlflow

    workdir, source_id = source_run
    images = tmp_path / "fruit"
    _write_three_class_folder(images)
    run_cli(
        "dataset=image_folder",
        f"dataset.data_dir={images}",
        "dataset.image_size=16",
        "dataset.val_fraction=0.2",
        "model=mlp",
        "model.hidden_units=[32]",
        f"model.init_from=runs:/{source_id}",
        "model.freeze=backbone",
        "augmentation=none",
        "trainer.epochs=2",
        "trainer.batch_size=8",
        cwd=workdir,
    )
    runs = {r.info.run_id: r for r in all_runs(workdir / "mlruns")}
    (target_id,) = set(runs) - {source_id}
    assert runs[target_id].info.status == "FINISHED"
    client = mlflow_client(workdir / "mlruns")
    report = open(client.download_artifacts(target_id, "transfer.txt", str(tmp_path))).read()
    assert "loaded 1 layers" in report and "logits" in report

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    source = mlflow.keras.load_model(f"runs:/{source_id}/model")
    target = mlflow.keras.load_model(f"runs:/{target_id}/model")
    assert target.output_shape == (None, 3)
    # The frozen backbone kept the source weights exactly; the new head trained.
    np.testing.assert_array_equal(
        source.get_layer("dense_1").get_weights()[0], target.get_layer("dense_1").get_weights()[0]
    )


@pytest.mark.slow
def test_debug_overfit_drives_training_loss_near_zero(tmp_path):
    run_cli(
        "dataset=synthetic",
        "model=mlp",
        "model.hidden_units=[64]",
        "debug=overfit",
        "dataset.limit_fraction=0.1",
        "trainer.epochs=80",
        "optimizer.lr=0.003",
        cwd=tmp_path,
    )
    (run,) = all_runs(tmp_path / "mlruns")
    losses = [v for _, v in _history(tmp_path / "mlruns", run.info.run_id, "train/loss")]
    assert losses[-1] < 0.05 < losses[0]


@pytest.mark.slow
def test_time_budget_stops_training_and_still_records(tmp_path):
    run_cli(
        *TINY, "trainer.epochs=100000", "trainer.time_budget_s=3", "tracking.log_model=false", cwd=tmp_path
    )
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"
    assert 1 <= run.data.metrics["epochs_run"] < 100000
    assert "test/accuracy" in run.data.metrics


@pytest.mark.slow
def test_delta_baseline_runs_through_the_same_pipeline_and_its_logged_model_predicts(tmp_path):
    """Its CIEDE2000 layer is cifarlab's own: the model is logged as a traced SavedModel, which
    cifarlab's predict, evaluate and export load as they load any logged model."""
    run_cli("dataset=synthetic", "model=delta", "augmentation=none", "callbacks=none", cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/accuracy"] > 0.5  # 4 classes: chance is 0.25
    artifacts = {
        a.path for a in mlflow_client(tmp_path / "mlruns").list_artifacts(run.info.run_id, "reports")
    }
    assert {"reports/typical_images.png", "reports/confusion_matrix.png"} <= artifacts

    run_id = run.info.run_id
    run_cli(f"run={run_id}", "samples=40", "output=samples.json", command="predict", cwd=tmp_path)
    rows = json.loads((tmp_path / "samples.json").read_text())
    right = sum(row["correct"] for row in rows) / len(rows)
    assert len(rows) == 40 and right > 0.5, rows[:3]
    proc = run_cli(f"run={run_id}", command="evaluate", cwd=tmp_path)
    assert f"records this evaluation of run {run_id}" in proc.stdout
    proc = run_cli(f"run={run_id}", "format=saved_model", "out=sm", command="export", cwd=tmp_path)
    assert "exported as saved_model" in proc.stdout and (tmp_path / "sm" / "saved_model.pb").is_file()
    # Its weights cannot start another model (a SavedModel has no layers by name): one line, no run opened.
    runs_before = len(all_runs(tmp_path / "mlruns"))
    proc = run_cli("dataset=synthetic", "model=delta", "augmentation=none", f"model.init_from=runs:/{run_id}",
                   cwd=tmp_path, check=False)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"model.init_from='runs:/{run_id}' is a SavedModel" in errors[0] and ".keras file" in errors[0]
    assert len(all_runs(tmp_path / "mlruns")) == runs_before


@pytest.mark.slow
def test_mixup_trains_through_the_cli_with_soft_labels_and_no_label_smoothing(tmp_path):
    # mixup with trainer.label_smoothing=0: one-hot labels and a categorical loss all the same.
    run_cli(
        *TINY, "augmentation=flip", "augmentation.mixup_alpha=0.4", "tracking.log_model=false", cwd=tmp_path
    )
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"
    assert run.data.params["augmentation.mixup_alpha"] == "0.4"
    losses = [value for _, value in _history(tmp_path / "mlruns", run.info.run_id, "train/loss")]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert 0.0 <= run.data.metrics["test/accuracy"] <= 1.0


def test_a_run_is_named_by_what_it_changes_not_by_where_things_are():
    from cifarlab.training.describe import run_name_from

    overrides = [
        "model=mlp",
        "optimizer.lr=0.01",
        "paths.mlruns_dir=/x",
        "tracking.experiment=e",
        "reports.figures=false",  # how the run is recorded, not what it trains
        "+trainer.seed=2",
    ]
    # What differs first, each key by its last part: the UI's narrow name column shows that part.
    assert run_name_from("mlp-cifar10", overrides, []) == "lr=0.01 seed=2 · mlp-cifar10"
    assert run_name_from("mlp-cifar10", [], []) == "mlp-cifar10"
    # A last part that says nothing alone keeps the part before it.
    vague = ["callbacks.early_stopping.enabled=false", "optimizer.schedule.name=cosine"]
    assert run_name_from("m-d", vague, []) == "early_stopping.enabled=false schedule.name=cosine · m-d"
    assert len(run_name_from("m-d", [f"k{i}=v" for i in range(200)], [])) == 250
    # What changed since the run before leads, the settings both share follow.
    previous = ["model=mlp", "optimizer.lr=0.02", "+trainer.seed=2"]
    assert run_name_from("mlp-cifar10", overrides, previous) == "lr=0.01 seed=2 · mlp-cifar10"
    previous = ["+trainer.seed=2", "optimizer.lr=0.01"]
    assert run_name_from("mlp-cifar10", ["+trainer.seed=2", "optimizer.lr=0.02"], previous) == (
        "lr=0.02 seed=2 · mlp-cifar10"
    )


def test_runs_that_share_their_first_overrides_are_named_by_the_one_that_differs(tmp_path):
    shared = [*TINY, "trainer.epochs=1", "tracking.log_model=false"]
    run_cli(*shared, "optimizer.lr=0.01", cwd=tmp_path)
    run_cli(*shared, "optimizer.lr=0.02", cwd=tmp_path)
    names = sorted((r.info.start_time, r.info.run_name) for r in all_runs(tmp_path / "mlruns"))
    # The first run has nothing before it: its overrides in order. The second leads with its change,
    # so the two differ within the MLflow UI's narrow name column.
    # (trainer.epochs, set twice, once by its last value, the one Hydra applies.)
    assert names[0][1] == "hidden_units=[32] augmentation=none epochs=1 batch_size=32 lr=0.01 · mlp-synthetic"
    assert names[1][1] == "lr=0.02 hidden_units=[32] augmentation=none epochs=1 batch_size=32 · mlp-synthetic"
