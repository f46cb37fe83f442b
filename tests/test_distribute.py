"""trainer.strategy: tf.distribute strategies, and who records."""

from __future__ import annotations

import pytest

from conftest import TINY, all_runs, run_cli


def test_mirrored_strategy_trains_and_records_one_run(tmp_path):
    run_cli(*TINY, "trainer.strategy=mirrored", "tracking.log_model=false", cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "mirrored"
    assert run.data.metrics["test/accuracy"] > 0.5


def test_multi_worker_fails_in_one_line_before_any_run(tmp_path):
    proc = run_cli(*TINY, "trainer.strategy=multi_worker", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(errors) == 1 and "trainer.strategy='multi_worker'" in errors[0]
    assert all_runs(tmp_path / "mlruns") == []


@pytest.mark.parametrize(
    "env, chief",
    [
        ({}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_only_the_chief_records(monkeypatch, env, chief):
    import json

    from cifarlab.distribute import is_chief

    monkeypatch.setenv("TF_CONFIG", json.dumps(env))
    assert is_chief() is chief
