"""A short real run on the CIFAR-10 subset in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import pytest
from helpers import SHARED_CIFAR, all_runs, mlflow_client, run_cli

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason=f"{SHARED_CIFAR} not present"),
]


@pytest.mark.slow
def test_short_real_cifar10_run_beats_chance(tmp_path):
    run_cli(
        "dataset=cifar10",
        f"dataset.data_dir={SHARED_CIFAR}",
        "dataset.download=false",
        "model=mlp",
        "augmentation=none",
        "trainer.epochs=2",
        "trainer.batch_size=128",
        cwd=tmp_path,
        timeout=600,
    )
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset.name"] == "cifar10"
    assert run.data.metrics["test/accuracy"] > 0.2  # ten classes: chance is 0.1
    artifacts = {
        a.path for a in mlflow_client(tmp_path / "mlruns").list_artifacts(run.info.run_id, "reports")
    }
    assert "reports/confusion_matrix.png" in artifacts


@pytest.mark.slow
def test_code_running_pickle_in_batch_folder_is_refused_before_any_run(tmp_path):
    import os
    import pickle
    import shutil

    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    shutil.copytree(SHARED_CIFAR / "cifar-10-batches-py", folder)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": [0]}, f, protocol=2)

    proc = run_cli(
        "dataset=cifar10",
        f"dataset.data_dir={tmp_path / 'cifar'}",
        "model=mlp",
        "trainer.epochs=1",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert not marker.exists()
    error = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(error) == 1 and "data_batch_3" in error[0], proc.stderr[-2000:]
    assert all_runs(tmp_path / "mlruns") == []


@pytest.mark.slow
def test_missing_data_dir_fails_in_one_line_before_any_run(tmp_path):
    proc = run_cli(
        "dataset=cifar10",
        "dataset.data_dir=/no/such/dir",
        "dataset.download=false",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(error) == 1 and "/no/such/dir" in error[0], proc.stderr[-2000:]
    assert all_runs(tmp_path / "mlruns") == []
