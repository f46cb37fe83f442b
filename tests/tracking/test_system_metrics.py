"""MLflow's system metrics: recorded by default, off with tracking.system_metrics=false."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import TINY, all_runs, cli_env


def _train(tmp_path, *extra: str) -> None:
    env = cli_env()
    env.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", None)  # cifarlab's default: samples even short runs
    args = [*TINY, "trainer.epochs=6", "dataset.samples_per_class=400", "tracking.log_model=false", *extra]
    proc = subprocess.run(
        [sys.executable, "-m", "cifarlab", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_runs_record_cpu_and_memory_unless_switched_off(tmp_path):
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    _train(tmp_path / "on")
    _train(tmp_path / "off", "tracking.system_metrics=false")
    (on,) = all_runs(tmp_path / "on" / "mlruns")
    (off,) = all_runs(tmp_path / "off" / "mlruns")
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        on.data.metrics
    )
    assert not [name for name in off.data.metrics if name.startswith("system/")]
