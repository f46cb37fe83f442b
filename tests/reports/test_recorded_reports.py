"""What a training run records of its evaluation: each test metric once, the reports beside it."""

from __future__ import annotations

import pytest
from helpers import TINY, all_runs, mlflow_client, run_cli


@pytest.mark.slow
def test_each_test_metric_is_logged_once(tmp_path):
    run_cli(*TINY, "tracking.log_model=false", cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    client = mlflow_client(tmp_path / "mlruns")
    test_keys = [k for k in run.data.metrics if k.startswith("test/")]
    assert {"test/accuracy", "test/loss"} <= set(test_keys)
    assert any(k.startswith("test/recall/") for k in test_keys)  # the reports' per-class metrics
    for key in [*test_keys, "epochs_run", "val/best_accuracy"]:
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) == 1, (key, [(m.step, m.value) for m in history])
    assert "reports/classification_report.md" in {
        a.path for a in client.list_artifacts(run.info.run_id, "reports")
    }
