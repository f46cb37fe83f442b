"""The parent run of a sweep: open or reopen it, and at the end record the leaderboard and figures.

Runs in the process that runs the sweeper (see ``cifarlab.sweeps.record.SweepRecord``).
Everything goes through ``MlflowClient`` with an explicit tracking URI, never
the fluent API: with Hydra's basic launcher the jobs run in this same process
and each makes its own run the active one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig

from cifarlab import tracking

PARENT_TAGS = {"sweep_role": "parent"}
STATUS_RANK = {"FINISHED": 0, "KILLED": 1, "FAILED": 2, "RUNNING": 3, "SCHEDULED": 4}


def _client(config: DictConfig):
    from mlflow import MlflowClient

    return MlflowClient(tracking.tracking_uri(config))


def _experiment_id(config: DictConfig) -> str:
    return _client(config).get_experiment_by_name(config.tracking.experiment).experiment_id


def _search_all(client, experiment_ids: list[str], filter_string: str) -> list:
    """Every matching run, page after page (a sweep may have any number of jobs)."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _sweeper_name(config: DictConfig) -> str:
    return str(config.hydra.sweeper.get("_target_", "")).rsplit(".", 1)[-1]


def is_optuna(config: DictConfig) -> bool:
    return "cifarlab_optuna_sweeper" in str(config.hydra.sweeper.get("_target_", ""))


def open_parent(config: DictConfig, sweep_hash: str) -> str:
    """Create the store and experiment, then the sweep's parent run, or reopen the one this sweep had."""
    experiment_id = tracking.prepare_experiment(config)  # raises CifarlabError for an unreachable server
    client = _client(config)
    earlier = client.search_runs(
        [experiment_id],
        f"tags.sweep_hash = '{sweep_hash}' and tags.sweep_role = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if earlier:
        run_id = earlier[0].info.run_id
        was = earlier[0].info.status
        client.update_run(run_id, status="RUNNING")
        print(f"cifarlab: sweep: reopened parent run {run_id} (same sweep as before; it was {was})", flush=True)
        return run_id
    overrides = " ".join(str(o) for o in config.hydra.overrides.task)
    name = config.hydra.sweeper.get("study_name") or f"sweep-{sweep_hash[:8]}"
    tags = {
        **PARENT_TAGS,
        "sweep_hash": sweep_hash,
        "sweeper": _sweeper_name(config),
        "sweep_overrides": overrides[:5000],
        "git_commit": tracking.git_commit(),
        **dict(config.tracking.get("tags") or {}),
    }
    run = client.create_run(experiment_id, run_name=str(name), tags={k: str(v) for k, v in tags.items() if v})
    print(f"cifarlab: sweep: parent run {run.info.run_id} in experiment '{config.tracking.experiment}'", flush=True)
    return run.info.run_id


def abandon_parent(config: DictConfig, run_id: str) -> None:
    client = _client(config)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="KILLED")
        print(
            f"cifarlab: sweep: interrupted; parent run {run_id} marked KILLED "
            "(run the same command again to finish it: FINISHED jobs are skipped)",
            flush=True,
        )


# --- the leaderboard ---------------------------------------------------------------------------


@dataclass
class Row:
    run_id: str
    status: str
    overrides: list[str]
    config_hash: str = ""
    job: str = ""
    best_val_accuracy: float | None = None
    final_val_accuracy: float | None = None
    test_accuracy: float | None = None
    epochs: int | None = None
    seconds: float | None = None
    start_time: int = 0
    note: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def objective(self) -> float | None:
        return self.best_val_accuracy if self.best_val_accuracy is not None else self.test_accuracy


def _row_from_run(run, note: str = "") -> Row:
    m, tags = run.data.metrics, run.data.tags
    end = run.info.end_time
    seconds = (end - run.info.start_time) / 1000 if end and run.info.status != "RUNNING" else None
    job = tags.get("optuna_trial", tags.get("sweep_job", ""))
    status = run.info.status
    if tags.get("pruned") == "true":
        note = note or "pruned"
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
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [str(o) for o in config.hydra.overrides.task]
    params = config.hydra.sweeper.get("params") or {}
    lines += [f"{k}={v}" for k, v in params.items()]
    keys: list[str] = []
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # noqa: BLE001 - a figure is not worth failing the sweep over
        parsed = []
    for override in parsed:
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    values: dict[str, set[str]] = {}
    for row in rows:
        for line in row.overrides:
            if "=" in line:
                key, value = line.split("=", 1)
                values.setdefault(key.lstrip("+~"), set()).add(value)
    keys += [k for k, v in values.items() if len(v) > 1 and k not in keys]
    return keys


def param_value(row: Row, key: str) -> str | None:
    """The value a job used for ``key``: from its overrides, else its logged config."""
    for line in row.overrides:
        if "=" in line and line.split("=", 1)[0].lstrip("+~") == key:
            return line.split("=", 1)[1]
    return row.params.get(key, row.params.get(f"{key}.name"))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


COLUMNS = [
    "rank",
    "job",
    "params",
    "best_val_accuracy",
    "final_val_accuracy",
    "test_accuracy",
    "epochs",
    "seconds",
    "status",
    "run_id",
    "overrides",
    "note",
]


def leaderboard(rows: list[Row], keys: list[str]) -> tuple[str, str]:
    """CSV and markdown, best objective first (runs without one last)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    md = [
        "| rank | job | " + " | ".join(keys or ["overrides"]) + " | best val acc | final val acc | test acc | epochs | time (s) | status | run id |",
        "|" + "---|" * (9 + max(len(keys), 1)),
    ]
    for rank, row in enumerate(rows, start=1):
        params = {k: param_value(row, k) for k in keys}
        writer.writerow(
            [
                rank,
                row.job,
                " ".join(f"{k}={v}" for k, v in params.items()),
                _fmt(row.best_val_accuracy),
                _fmt(row.final_val_accuracy),
                _fmt(row.test_accuracy),
                "" if row.epochs is None else row.epochs,
                _fmt(row.seconds, 1),
                row.status,
                row.run_id,
                " ".join(row.overrides),
                row.note,
            ]
        )
        cells = [str(params[k]) for k in keys] if keys else [" ".join(row.overrides)]
        status = row.status + (f" ({row.note})" if row.note else "")
        md.append(
            f"| {rank} | {row.job} | "
            + " | ".join(c.replace("|", "\\|") for c in cells)
            + f" | {_fmt(row.best_val_accuracy)} | {_fmt(row.final_val_accuracy)} | {_fmt(row.test_accuracy)}"
            + f" | {'' if row.epochs is None else row.epochs} | {_fmt(row.seconds, 1)} | {status} | {row.run_id} |"
        )
    return out.getvalue(), "\n".join(md) + "\n"


# --- figures (matplotlib Figure, no pyplot) ---------------------------------------------------


def _label(row: Row, keys: list[str]) -> str:
    text = " ".join(f"{k.rsplit('.', 1)[-1]}={param_value(row, k)}" for k in keys) or row.run_id[:8]
    return text if len(text) <= 48 else text[:45] + "..."


def val_accuracy_figure(rows: list[Row], histories: dict[str, list[tuple[int, float]]], keys: list[str]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for row in rows:
        points = histories.get(row.run_id) or []
        if not points:
            continue
        steps, values = zip(*points)
        style = "-" if row.status == "FINISHED" else ":"
        ax.plot([s + 1 for s in steps], values, style, marker="o", markersize=3, label=_label(row, keys))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Validation accuracy per epoch ({len(rows)} jobs; dotted: not FINISHED)")
    ax.grid(alpha=0.3)
    if 0 < len(rows) <= 20:
        ax.legend(fontsize="small", loc="best")
    return fig


def _as_numbers(values: list[str | None]) -> list[float] | None:
    try:
        return [float(v) for v in values]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def objective_figure(rows: list[Row], keys: list[str]):
    """The objective (best validation accuracy) against each swept parameter, one panel each."""
    from matplotlib.figure import Figure

    keys = keys or ["job"]
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(max(6.0, 4.5 * cols), 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    scored = [r for r in rows if r.objective is not None and r.status == "FINISHED"]
    best = max(scored, key=lambda r: r.objective) if scored else None
    for ax, key in zip(axes, keys):
        raw = [param_value(r, key) if key != "job" else r.job for r in scored]
        y = [r.objective for r in scored]
        numbers = _as_numbers(raw)
        if numbers is not None and scored:
            ax.scatter(numbers, y)
            positive = [v for v in numbers if v > 0]
            if positive and len(positive) == len(numbers) and max(positive) / min(positive) >= 20:
                ax.set_xscale("log")
            if best is not None:
                ax.scatter([numbers[scored.index(best)]], [best.objective], s=120, facecolors="none", edgecolors="red")
        elif scored:
            categories = sorted({str(v) for v in raw})
            ax.scatter([categories.index(str(v)) for v in raw], y)
            ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize="small")
            if best is not None:
                ax.scatter(
                    [categories.index(str(raw[scored.index(best)]))], [best.objective], s=120, facecolors="none", edgecolors="red"
                )
        ax.set_xlabel(key)
        ax.set_ylabel("best val accuracy")
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle("Best validation accuracy against each swept parameter (red ring: best job)", fontsize="medium")
    return fig


# --- the end of a sweep ------------------------------------------------------------------------


def _job_records(jobs_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(jobs_dir.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def close_parent(config: DictConfig, parent_run_id: str, jobs_dir: Path) -> dict[str, Any]:
    """Leaderboard, figures, best run on the parent; end it FINISHED; print the sweep's counts."""
    client = _client(config)
    experiment_id = _experiment_id(config)
    records = _job_records(jobs_dir)
    children = _search_all(client, [experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    rows = [_row_from_run(run) for run in children]
    known = {row.run_id for row in rows}
    # Jobs skipped because an earlier run (maybe of another sweep) has their config FINISHED.
    for record in records:
        run_id = record.get("run_id")
        if record["status"] == "skipped" and run_id and run_id not in known:
            rows.append(_row_from_run(client.get_run(run_id), note="skipped: earlier run"))
            known.add(run_id)
    rows = _dedupe(rows)
    # Jobs that failed before opening a run (bad config, unreachable data) still get a row.
    for record in records:
        if not record.get("run_id") and record["status"] == "failed":
            rows.append(Row(run_id="", status="FAILED", overrides=record["overrides"], job=str(record["num"]), note="no run"))
    histories = {
        row.run_id: [(m.step, m.value) for m in sorted(client.get_metric_history(row.run_id, "val/accuracy"), key=lambda m: m.step)]
        for row in rows
        if row.run_id
    }
    for row in rows:  # a pruned or failed run logged no val/best_accuracy: its epochs tell it
        if row.best_val_accuracy is None and histories.get(row.run_id):
            row.best_val_accuracy = max(v for _, v in histories[row.run_id])
    rows.sort(key=lambda r: (r.objective is None or r.status != "FINISHED", -(r.objective or 0.0), r.start_time))
    keys = swept_keys(config, rows)

    counts = {s: sum(1 for r in records if r["status"] == s) for s in ("skipped", "finished", "failed", "pruned")}
    finished = [r for r in rows if r.status == "FINISHED" and r.objective is not None]
    best = finished[0] if finished else None

    csv_text, md_text = leaderboard(rows, keys)
    summary: dict[str, Any] = {"jobs": len(records), **counts, "best_run_id": best.run_id if best else None}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "leaderboard.csv").write_text(csv_text)
        (folder / "leaderboard.md").write_text(md_text)
        val_accuracy_figure(rows, histories, keys).savefig(folder / "val_accuracy_per_epoch.png", dpi=110)
        objective_figure(rows, keys).savefig(folder / "objective_vs_params.png", dpi=110)
        if is_optuna(config):
            from cifarlab.sweeps.study import study_report

            summary["optuna"] = study_report(config, folder)
        (folder / "sweep_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        for path in sorted(folder.iterdir()):
            client.log_artifact(parent_run_id, str(path))
        # A copy beside Hydra's outputs, for a look without MLflow.
        for name in ("leaderboard.csv", "leaderboard.md"):
            (jobs_dir.parent / name).write_text((folder / name).read_text())

    tags = {
        "jobs": str(len(rows)),
        "jobs_failed": str(sum(1 for r in rows if r.status == "FAILED")),
        "jobs_pruned": str(sum(1 for r in rows if r.note == "pruned")),
    }
    if best is not None:
        tags.update(best_run_id=best.run_id, best_val_accuracy=_fmt(best.objective))
        tags.update({f"best.{k}": str(param_value(best, k)) for k in keys})
        client.log_metric(parent_run_id, "best/val_accuracy", float(best.objective))
        if best.test_accuracy is not None:
            client.log_metric(parent_run_id, "best/test_accuracy", float(best.test_accuracy))
    optuna_best = (summary.get("optuna") or {}).get("best_params") or {}
    tags.update({f"best.{k}": str(v) for k, v in optuna_best.items()})
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value[:5000])
    client.set_terminated(parent_run_id, status="FINISHED")

    pruned = f", {counts['pruned']} pruned" if counts["pruned"] else ""
    jobs = "job" if counts["skipped"] == 1 else "jobs"
    print(
        f"cifarlab: sweep: {counts['skipped']} {jobs} skipped (already FINISHED), {counts['finished']} ran, "
        f"{counts['failed']} failed{pruned}",
        flush=True,
    )
    if best is not None:
        print(f"cifarlab: sweep: best job run {best.run_id} (val accuracy {best.objective:.4f}): {_label(best, keys)}", flush=True)
    print(f"cifarlab: sweep: leaderboard and figures in parent run {parent_run_id}", flush=True)
    return summary
