"""A sweep's leaderboard: one row per job, ranked, as CSV and markdown; the same jobs grouped by
config (runs that differ only in their seed), with n, mean and standard deviation; and its figures.

Rows are read from the sweep's MLflow runs through a client the caller passes
(``cifarlab.sweeps.parent``, at the sweep's end); figures are matplotlib
``Figure`` objects (no pyplot), imported only by the sweep-level code.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import DictConfig

from cifarlab.config.compose import override_key
from cifarlab.sweeps.job import swept_override_keys

# PRUNED: a FINISHED run that Optuna stopped early (tag pruned=true), shown as such and never "best".
STATUS_RANK = {"FINISHED": 0, "PRUNED": 1, "KILLED": 2, "FAILED": 3, "RUNNING": 4, "SCHEDULED": 5}


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


def param_value(row: Row, key: str) -> str | None:
    """The value a job used for ``key``: from its overrides, else its logged config."""
    for line in row.overrides:
        if "=" in line and override_key(line) == key:
            return line.split("=", 1)[1]
    return row.params.get(key, row.params.get(f"{key}.name"))


def search_all(client: Any, experiment_ids: list[str], filter_string: str) -> list:
    """Every matching run, page after page (a sweep may have any number of jobs)."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sweep_rows(
    client: Any, experiment_id: str, parent_run_id: str, records: list[dict[str, Any]]
) -> list[Row]:
    """One row per job of the sweep: its child runs, the earlier runs skipped jobs reuse, jobs without a run."""
    rows = [
        _row_from_run(run)
        for run in search_all(client, [experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    ]
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
            rows.append(
                Row(
                    run_id="",
                    status="FAILED",
                    overrides=record["overrides"],
                    job=str(record["num"]),
                    note="no run",
                )
            )
    return rows


def val_accuracy_histories(client: Any, rows: list[Row]) -> dict[str, list[tuple[int, float]]]:
    """Each run's (epoch, val/accuracy) points; a row without val/best_accuracy (pruned, failed) takes their best."""
    histories = {}
    for row in rows:
        if not row.run_id:
            continue
        metrics = sorted(client.get_metric_history(row.run_id, "val/accuracy"), key=lambda m: m.step)
        histories[row.run_id] = [(m.step, m.value) for m in metrics]
        if row.best_val_accuracy is None and histories[row.run_id]:
            row.best_val_accuracy = max(v for _, v in histories[row.run_id])
    return histories


def ranked(rows: list[Row]) -> list[Row]:
    """FINISHED rows with an objective first, best first; then the others, oldest first."""
    return sorted(
        rows,
        key=lambda r: (r.objective is None or r.status != "FINISHED", -(r.objective or 0.0), r.start_time),
    )


def format_number(value: float | None, digits: int = 4) -> str:
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
        "| rank | job | "
        + " | ".join(keys or ["overrides"])
        + " | best val acc | final val acc | test acc | epochs | time (s) | status | run id |",
        "|" + "---|" * (9 + max(len(keys), 1)),
    ]
    for rank, row in enumerate(rows, start=1):
        params = {k: param_value(row, k) for k in keys}
        writer.writerow(
            [
                rank,
                row.job,
                " ".join(f"{k}={v}" for k, v in params.items()),
                format_number(row.best_val_accuracy),
                format_number(row.final_val_accuracy),
                format_number(row.test_accuracy),
                "" if row.epochs is None else row.epochs,
                format_number(row.seconds, 1),
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
            + f" | {format_number(row.best_val_accuracy)} | {format_number(row.final_val_accuracy)} | {format_number(row.test_accuracy)}"
            + f" | {'' if row.epochs is None else row.epochs} | {format_number(row.seconds, 1)} | {status} | {row.run_id} |"
        )
    return out.getvalue(), "\n".join(md) + "\n"


# --- the leaderboard by config: seeds grouped ------------------------------------------------

SEED_KEY = "trainer.seed"


@dataclass
class ConfigGroup:
    """The jobs of one config, which differ only in their seed; statistics over its FINISHED runs."""

    params: dict[str, str | None]
    rows: list[Row]

    @property
    def finished(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FINISHED"]

    @property
    def n(self) -> int:
        return len(self.finished)

    def stats(self, metric: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation (ddof=1) of ``metric`` over the FINISHED runs; no std for one."""
        values = [float(v) for v in (getattr(r, metric) for r in self.finished) if v is not None]
        mean = statistics.fmean(values) if values else None
        return mean, statistics.stdev(values) if len(values) > 1 else None

    @property
    def seeds(self) -> list[str]:
        return [str(param_value(r, SEED_KEY)) for r in self.rows]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params.items()) or "(one config)"


def config_groups(rows: list[Row], keys: list[str]) -> list[ConfigGroup]:
    """Rows grouped by their values of the swept keys but the seed, ranked by mean best val accuracy.

    Groups with a FINISHED run come first, best mean first (mean test accuracy breaks
    ties and stands in where no run has a validation score); then the others.
    """
    config_keys = [k for k in keys if k != SEED_KEY]
    groups: dict[tuple, ConfigGroup] = {}
    for row in rows:
        params = {k: param_value(row, k) for k in config_keys}
        groups.setdefault(tuple(params.values()), ConfigGroup(params, [])).rows.append(row)

    def order(group: ConfigGroup) -> tuple:
        val, test = group.stats("best_val_accuracy")[0], group.stats("test_accuracy")[0]
        return (group.n == 0, -(val if val is not None else -1.0), -(test if test is not None else -1.0))

    return sorted(groups.values(), key=order)


GROUP_COLUMNS = [
    "rank",
    "params",
    "n",
    "jobs",
    "best_val_accuracy_mean",
    "best_val_accuracy_std",
    "test_accuracy_mean",
    "test_accuracy_std",
    "seeds",
    "run_ids",
]


def _mean_std(group: ConfigGroup, metric: str) -> str:
    mean, std = group.stats(metric)
    return format_number(mean) + (f" ± {format_number(std)}" if std is not None else "")


def config_leaderboard(groups: list[ConfigGroup], keys: list[str]) -> tuple[str, str]:
    """CSV and markdown of the config groups: n (FINISHED runs), mean and std, best mean first."""
    config_keys = [k for k in keys if k != SEED_KEY]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(GROUP_COLUMNS)
    md = [
        "| rank | "
        + " | ".join(config_keys or ["config"])
        + " | n | jobs | best val acc (mean ± std) | test acc (mean ± std) | seeds | run ids |",
        "|" + "---|" * (7 + max(len(config_keys), 1)),
    ]
    for rank, group in enumerate(groups, start=1):
        val, test = group.stats("best_val_accuracy"), group.stats("test_accuracy")
        run_ids = [r.run_id for r in group.rows if r.run_id]
        writer.writerow(
            [
                rank,
                group.label,
                group.n,
                len(group.rows),
                *map(format_number, (*val, *test)),
                " ".join(group.seeds),
                " ".join(run_ids),
            ]
        )
        cells = [str(v) for v in group.params.values()] or [group.label]
        md.append(
            f"| {rank} | "
            + " | ".join(c.replace("|", "\\|") for c in cells)
            + f" | {group.n} | {len(group.rows)} | {_mean_std(group, 'best_val_accuracy')} | {_mean_std(group, 'test_accuracy')}"
            + f" | {', '.join(group.seeds)} | {' '.join(run_ids)} |"
        )
    return out.getvalue(), "\n".join(md) + "\n"


# --- figures (matplotlib Figure, no pyplot) ---------------------------------------------------


def job_label(row: Row, keys: list[str]) -> str:
    text = " ".join(f"{k.rsplit('.', 1)[-1]}={param_value(row, k)}" for k in keys) or row.run_id[:8]
    return text if len(text) <= 48 else text[:45] + "..."


def val_accuracy_figure(
    rows: list[Row], histories: dict[str, list[tuple[int, float]]], keys: list[str]
) -> Figure:
    """Validation accuracy per epoch, one line per job."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for row in rows:
        points = histories.get(row.run_id) or []
        if not points:
            continue
        steps, values = zip(*points)
        style = "-" if row.status == "FINISHED" else ":"
        ax.plot([s + 1 for s in steps], values, style, marker="o", markersize=3, label=job_label(row, keys))
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


def objective_figure(rows: list[Row], keys: list[str]) -> Figure:
    """The objective (best validation accuracy) against each swept parameter, one panel each."""
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
                ax.scatter(
                    [numbers[scored.index(best)]],
                    [best.objective],
                    s=120,
                    facecolors="none",
                    edgecolors="red",
                )
        elif scored:
            categories = sorted({str(v) for v in raw})
            ax.scatter([categories.index(str(v)) for v in raw], y)
            ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize="small")
            if best is not None:
                ax.scatter(
                    [categories.index(str(raw[scored.index(best)]))],
                    [best.objective],
                    s=120,
                    facecolors="none",
                    edgecolors="red",
                )
        ax.set_xlabel(key)
        ax.set_ylabel("best val accuracy")
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Best validation accuracy against each swept parameter (red ring: best job)", fontsize="medium"
    )
    return fig
