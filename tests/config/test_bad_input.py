"""Bad input through the real CLI: one line on stderr, a non-zero exit, no MLflow run opened.

Typos in optional groups, override syntax, unknown keys and one-class data fail while
the config is composed or checked; an image folder nothing can be learnt from and a
failed download fail before the run opens (after TensorFlow is imported).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import all_runs, cli_env, run_cli
from PIL import Image

# TensorFlow's C++ logging writes these to stderr before Python can quiet it.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")
SMALL = ["model=mlp", "model.hidden_units=[8]", "trainer.epochs=1", "augmentation=none"]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line cifarlab wrote to stderr (TensorFlow's own log lines aside); the exit was non-zero."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not TF_LOG_LINE.match(line)]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cifarlab: error: "), lines[0]
    return lines[0]


def assert_no_run(store: Path) -> None:
    assert all_runs(store) == []


CONFIG_ERRORS = [
    (["experiment=does_not_exist"],
     "experiment='does_not_exist' is not an option of config group 'experiment'; choose one of: "),
    (["debug=fsat"], "debug='fsat' is not an option of config group 'debug'; did you mean 'fast'?"),
    (["hparams_search=mlp_optuan"],
     "hparams_search='mlp_optuan' is not an option of config group 'hparams_search'; did you mean 'mlp_optuna'?"),
    (["-m", "debug=fsat"], "debug='fsat' is not an option of config group 'debug'; did you mean 'fast'?"),
    (["model.hidden_units=[32,64"],
     "model.hidden_units='[32,64' is not valid override syntax (no viable alternative at input '[32,64'); "
     "close it: 'model.hidden_units=[32,64]'"),
    (["trainer.epochs==3"], "trainer.epochs='=3' is not valid override syntax (extraneous input '='); write lists as"),
    (["trainer.epochs"], "'trainer.epochs' is not an override; write key=value"),
    (["trainer.epoch=3"], "trainer.epoch='3' is not a key of trainer; did you mean trainer.epochs=3?"),
    (["optimizer.schedule.nam=cosine"],
     "optimizer.schedule.nam='cosine' is not a key of optimizer.schedule; did you mean optimizer.schedule.name=cosine?"),
    (["model=mlp", "model.hidden_unit=[8]"],
     "model.hidden_unit='[8]' is not a key of model; did you mean model.hidden_units=[8]? "
     "(or +model.hidden_unit=[8] to add a new key)"),
    (["dataset=synthetic", "dataset.num_classes=1"],
     "dataset.num_classes=1 is not valid; use at least 2: a classifier needs two classes to tell apart"),
    (["tracking.search_models=-1"],
     "tracking.search_models=-1 is not valid; use null (every trial) or a whole number >= 0, e.g. 3"),
]  # fmt: skip


@pytest.mark.parametrize(
    "overrides, expected", CONFIG_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_config_errors_are_one_line_before_any_run(tmp_path, overrides, expected):
    proc = run_cli(*overrides, cwd=tmp_path, check=False, timeout=120, new_store=True)
    assert expected in error_line(proc)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # failed before the store was opened


def test_a_preset_and_a_debug_preset_still_compose(tmp_path):
    proc = run_cli("experiment=mlp_cifar10", "debug=fast", "--cfg", "job", cwd=tmp_path, timeout=120)
    assert "epochs: 1" in proc.stdout


def write_pngs(root: Path, counts: dict[str, int]) -> None:
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((8, 8, 3), 60 * label + i, np.uint8)).save(root / name / f"{i}.png")


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout, expected",
    [
        ({"cat": 6}, "has training images of one class only ('cat'); a classifier needs at least 2"),
        ({"train/cat": 6, "test/cat": 2}, "has training images of one class only ('cat')"),
        (
            {"test/cat": 2, "test/dog": 2},
            "has no training images (a folder with only test/ can be evaluated, not "
            "trained on); add train/<class>/ folders",
        ),
    ],
    ids=["one-class-folder", "one-class-train-test", "test-only"],
)
def test_image_folder_a_model_cannot_learn_from_fails_before_the_run(tmp_path, layout, expected):
    data = tmp_path / "images"
    write_pngs(data, layout)
    proc = run_cli(
        "dataset=image_folder", f"dataset.data_dir={data}", "dataset.image_size=8", *SMALL,
        cwd=tmp_path, check=False, timeout=180,
    )  # fmt: skip
    line = error_line(proc)
    assert f"dataset.data_dir={str(data)!r} {expected}" in line, line
    assert_no_run(tmp_path / "mlruns")


@pytest.mark.slow
def test_failed_download_leaves_no_data_dir_and_no_run(tmp_path):
    # A proxy that refuses every connection: the download fails at once, online or not.
    env = {**cli_env(), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    env.pop("no_proxy", None), env.pop("NO_PROXY", None)
    data_dir = tmp_path / "typo" / "datasets"
    proc = subprocess.run(
        [sys.executable, "-m", "cifarlab", "dataset=mnist", f"dataset.data_dir={data_dir}", "dataset.download=true",
         *SMALL],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    line = error_line(proc)
    assert "could not download" in line and "set dataset.data_dir=" in line, line
    assert not (tmp_path / "typo").exists()
    assert_no_run(tmp_path / "mlruns")
