"""What a sweep's jobs came to, gathered at its end: one ranked row per job, their curves, the counts.

Rows come from the sweep's child runs in the store (``cifarlab.tracking.queries``)
and from the jobs' reports (``cifarlab.sweeps.contract``): a skipped job points at
the earlier run it reused, a job that failed before opening a run still gets a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cifarlab.config.compose import override_key
from cifarlab.reports.leaderboard import ConfigGroup, Row, config_groups, ranked
from cifarlab.sweeps import study
from cifarlab.sweeps.contract import JobReport, read_reports
from cifarlab.sweeps.job import swept_override_keys
from cifarlab.tracking import queries

# PRUNED: a FINISHED run that Optuna stopped early (tag pruned=true), shown as such and never "best".
STATUS_RANK = {"FINISHED": 0, "PRUNED": 1, "KILLED": 2, "FAILED": 3, "RUNNING": 4, "SCHEDULED": 5}
JOB_OUTCOMES = ("skipped", "finished", "failed", "pruned")
REUSED = "reused: earlier run"  # the note of a job that took up a FINISHED run of the same config


def row_from_run(run: Any, note: str = "") -> Row:
    """A leaderboard row of one MLflow run: its tags, metrics, params and times."""
    m, tags = run.data.metrics, run.data.tags
    end = run.info.end_time
    seconds = (end - run.info.start_time) / 1000 if end and run.info.status != "RUNNING" else None
    job = tags.get("optuna_trial", tags.get("sweep_job", ""))
    status = run.info.status
    if tags.get("pruned") == "true":
        note = note or "pruned"
        status = "PRUNED" if status == "FINISHED" else status
    return Row(
        run_id=run.info.run_id,
        status=status,
        overrides=tags.get("overrides", "").split(),
        config_hash=tags.get("config_hash", ""),
        job=str(job),
        best_val_accuracy=m.get("val/best_accuracy"),
        final_val_accuracy=m.get("val/accuracy"),
        test_accuracy=m.get("test/accuracy"),
        epochs=int(m["epochs_run"]) if "epochs_run" in m else None,
        seconds=seconds,
        start_time=run.info.start_time or 0,
        note=note,
        params=dict(run.data.params),
    )


def _dedupe(rows: Iterable[Row]) -> list[Row]:
    """One row per config: its FINISHED run if any (the latest), else its latest run."""
    best: dict[str, Row] = {}
    for row in rows:
        key = row.config_hash or row.run_id
        seen = best.get(key)
        if seen is None or (STATUS_RANK.get(row.status, 9), -row.start_time) < (
            STATUS_RANK.get(seen.status, 9),
            -seen.start_time,
        ):
            best[key] = row
    return list(best.values())


def swept_keys(config: DictConfig, rows: list[Row]) -> list[str]:
    """The parameters this sweep varies: its sweep overrides and sweeper params, and any that differ."""
    keys = swept_override_keys(config)
    values: dict[str, set[str]] = {}
    for row in rows:
        for line in row.overrides:
            if "=" in line:
                values.setdefault(override_key(line), set()).add(line.split("=", 1)[1])
    keys += [k for k, v in values.items() if len(v) > 1 and k not in keys]
    return keys


def sweep_rows(
    client: Any, experiment_id: str, parent_run_id: str, reports: list[JobReport], trials: dict[str, int]
) -> list[Row]:
    """One row per job of the sweep: its child runs, the earlier runs reused by its jobs (``reports``
    that say skipped, and every counted trial of a study, ``trials``: run id -> trial number, whichever
    worker ran it), jobs without a run."""
    rows = [row_from_run(run) for run in queries.child_runs(client, experiment_id, parent_run_id)]
    known = {row.run_id for row in rows}
    # Jobs skipped because an earlier run (maybe of another sweep) has their config FINISHED.
    reused = [r.run_id for r in reports if r.status == "skipped" and r.run_id] + list(trials)
    for run_id in reused:
        if run_id not in known:
            rows.append(row_from_run(queries.get_run(client, run_id), note=REUSED))
            known.add(run_id)
    for row in rows:  # a reused run is labelled by this study's trial, not the one that first made it
        row.job = str(trials.get(row.run_id, row.job))
    rows = _dedupe(rows)
    # Jobs that failed before opening a run (bad config, unreachable data) still get a row.
    for report in reports:
        if not report.run_id and report.status == "failed":
            rows.append(
                Row(
                    run_id="", status="FAILED", overrides=report.overrides, job=str(report.num), note="no run"
                )
            )
    return rows


def val_accuracy_histories(client: Any, rows: list[Row]) -> dict[str, list[tuple[int, float]]]:
    """Each run's (epoch, val/accuracy) points; a row without val/best_accuracy (pruned, failed) takes their best."""
    histories = {}
    for row in rows:
        if not row.run_id:
            continue
        histories[row.run_id] = queries.metric_history(client, row.run_id, "val/accuracy")
        if row.best_val_accuracy is None and histories[row.run_id]:
            row.best_val_accuracy = max(v for _, v in histories[row.run_id])
    return histories


@dataclass
class SweepOutcome:
    """What the sweep's jobs came to: ranked rows, their val accuracy curves, the swept keys, the counts."""

    rows: list[Row]
    histories: dict[str, list[tuple[int, float]]]
    keys: list[str]
    counts: dict[str, int]
    jobs: int

    @property
    def best(self) -> Row | None:
        finished = [r for r in self.rows if r.status == "FINISHED" and r.objective is not None]
        return finished[0] if finished else None

    @property
    def configs(self) -> list[ConfigGroup]:
        """The jobs grouped by config (differing only in their seed), best mean first."""
        return config_groups(self.rows, self.keys)

    @property
    def best_config(self) -> ConfigGroup | None:
        """The config with the best mean, when some config ran more than once (seeds); else None."""
        configs = self.configs
        repeated = any(len(g.rows) > 1 for g in configs)
        return configs[0] if repeated and configs[0].n else None


def gather(
    config: DictConfig, client: Any, parent_run_id: str, jobs_dir: Path, worker: str | None
) -> SweepOutcome:
    """The sweep's outcome: every child of the parent (whichever worker ran it), this worker's job counts."""
    reports = read_reports(jobs_dir, worker)
    experiment_id = queries.known_experiment_id(client, config.tracking.experiment)
    rows = sweep_rows(client, experiment_id, parent_run_id, reports, study.counted_runs(config))
    histories = val_accuracy_histories(client, rows)
    rows = ranked(rows)
    counts = {s: sum(1 for r in reports if r.status == s) for s in JOB_OUTCOMES}
    return SweepOutcome(rows, histories, swept_keys(config, rows), counts, len(reports))
