"""Seed repeats: a sweep's leaderboard by config groups runs that differ only in their seed.

The grouping is checked on ``Row`` objects; one real seed sweep checks the parent's
``leaderboard_by_config.csv`` against its children's metrics.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from helpers import all_runs, mlflow_client, run_cli

from cifarlab.reports.leaderboard import Row, config_groups, config_leaderboard

KEYS = ["trainer.seed", "optimizer"]


def _row(optimizer: str, seed: int, val: float | None, test: float | None, status: str = "FINISHED") -> Row:
    return Row(
        run_id=f"{optimizer}-{seed}",
        status=status,
        overrides=[f"trainer.seed={seed}", f"optimizer={optimizer}"],
        best_val_accuracy=val,
        test_accuracy=test,
    )


def test_rows_differing_only_in_seed_form_one_config_ranked_by_mean():
    rows = [
        _row("adam", 1, 0.60, 0.58),
        _row("adam", 2, 0.64, 0.60),
        _row("adam", 3, 0.62, 0.65),
        _row("nadam", 1, 0.80, 0.70),  # the best single run, but the worse mean
        _row("nadam", 2, 0.40, 0.45),
        _row("nadam", 3, None, None, status="FAILED"),
        _row("sgd", 1, 0.55, 0.50),
    ]
    groups = config_groups(rows, KEYS)
    assert [g.params for g in groups] == [{"optimizer": "adam"}, {"optimizer": "nadam"}, {"optimizer": "sgd"}]
    adam, nadam, sgd = groups
    assert (adam.n, len(adam.rows), adam.seeds) == (3, 3, ["1", "2", "3"])
    assert adam.stats("best_val_accuracy") == pytest.approx((0.62, statistics.stdev([0.60, 0.64, 0.62])))
    assert adam.stats("test_accuracy") == pytest.approx((0.61, statistics.stdev([0.58, 0.60, 0.65])))
    # The FAILED run is one of the config's jobs but not of its statistics.
    assert (nadam.n, len(nadam.rows)) == (2, 3)
    assert nadam.stats("best_val_accuracy") == pytest.approx((0.60, statistics.stdev([0.80, 0.40])))
    assert sgd.stats("best_val_accuracy") == (pytest.approx(0.55), None)  # n=1: no standard deviation

    csv_text, md_text = config_leaderboard(groups, KEYS)
    table = list(csv.DictReader(csv_text.splitlines()))
    assert [(r["rank"], r["params"], r["n"], r["jobs"]) for r in table] == [
        ("1", "optimizer=adam", "3", "3"),
        ("2", "optimizer=nadam", "2", "3"),
        ("3", "optimizer=sgd", "1", "1"),
    ]
    assert table[0]["best_val_accuracy_mean"] == "0.6200" and table[0]["best_val_accuracy_std"] == "0.0200"
    assert table[2]["best_val_accuracy_std"] == "" and table[2]["test_accuracy_mean"] == "0.5000"
    assert table[0]["run_ids"] == "adam-1 adam-2 adam-3"
    assert "| 1 | adam | 3 | 3 | 0.6200 ± 0.0200 |" in md_text


def test_a_config_with_no_finished_run_ranks_last_and_a_seed_only_sweep_is_one_config():
    rows = [_row("adam", 1, None, None, status="FAILED"), _row("nadam", 1, 0.3, 0.3)]
    assert [g.params["optimizer"] for g in config_groups(rows, KEYS)] == ["nadam", "adam"]
    (only,) = config_groups([_row("adam", s, 0.5 + s / 100, 0.5) for s in (1, 2, 3)], ["trainer.seed"])
    assert only.params == {} and only.n == 3 and only.stats("test_accuracy") == (0.5, 0.0)


# --- a real seed sweep --------------------------------------------------------------------------

SEED_SWEEP = (
    "-m",
    "dataset=synthetic",
    "model=mlp",
    "model.hidden_units=[16]",
    "augmentation=none",
    "trainer.epochs=1",
    "tracking.log_model=false",
    "trainer.seed=1,2,3",
    "optimizer=adam,nadam",
)


@pytest.mark.slow
def test_seed_sweep_leaderboard_by_config_has_mean_and_std_over_three_seeds(tmp_path: Path):
    proc = run_cli(*SEED_SWEEP, cwd=tmp_path, timeout=600)
    store = tmp_path / "mlruns"
    runs = all_runs(store)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)

    client = mlflow_client(store)
    path = client.download_artifacts(parent.info.run_id, "leaderboard_by_config.csv", str(tmp_path / "dl"))
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["params"] for r in table) == ["optimizer=adam", "optimizer=nadam"]
    by_id = {c.info.run_id: c for c in children}
    for row in table:
        members = [by_id[i] for i in row["run_ids"].split()]
        assert row["n"] == "3" and len(members) == 3
        assert {m.data.params["optimizer.name"] for m in members} == {row["params"].split("=")[1]}
        assert {m.data.params["trainer.seed"] for m in members} == {"1", "2", "3"}
        for metric, column in (
            ("val/best_accuracy", "best_val_accuracy"),
            ("test/accuracy", "test_accuracy"),
        ):
            values = [m.data.metrics[metric] for m in members]
            assert float(row[f"{column}_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-4)
            assert float(row[f"{column}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-4)
    means = [float(r["best_val_accuracy_mean"]) for r in table]
    assert means == sorted(means, reverse=True)

    # The ungrouped leaderboard is still there, one row per run; the best config is tagged and printed.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "leaderboard.md", "leaderboard_by_config.md"} <= artifacts
    ungrouped = client.download_artifacts(parent.info.run_id, "leaderboard.csv", str(tmp_path / "dl"))
    with open(ungrouped, newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["best_config"] == table[0]["params"] and parent.data.tags["best_config.n"] == "3"
    assert parent.data.metrics["best_config/val_accuracy_mean"] == pytest.approx(means[0], abs=1e-4)
    assert "best config by mean over n=3" in proc.stdout and table[0]["params"] in proc.stdout
