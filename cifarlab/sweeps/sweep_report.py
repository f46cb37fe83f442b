"""A sweep's report at its end: the files its parent run keeps, the tags and metrics it gets, the lines printed.

Files: the leaderboard and the leaderboard by config (CSV, markdown), figures,
Optuna's report for a search, ``sweep_summary.json``. The tables and figures
themselves are ``cifarlab.reports.leaderboard`` and ``cifarlab.reports.sweep_figures``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cifarlab.reports.figures import save_figure
from cifarlab.reports.leaderboard import (
    ConfigGroup,
    config_leaderboard,
    format_number,
    leaderboard,
    param_value,
)
from cifarlab.reports.sweep_figures import job_label, objective_figure, val_accuracy_figure
from cifarlab.sweeps import study
from cifarlab.sweeps.outcome import SweepOutcome

LEADERBOARD_FILES = (
    "leaderboard.csv",
    "leaderboard.md",
    "leaderboard_by_config.csv",
    "leaderboard_by_config.md",
)
DPI = 110


def write_report(config: DictConfig, outcome: SweepOutcome, folder: Path) -> dict[str, Any]:
    """Leaderboard, figures, the Optuna report and sweep_summary.json in ``folder``; the summary."""
    best = outcome.best
    summary: dict[str, Any] = {
        "jobs": outcome.jobs,
        **outcome.counts,
        "best_run_id": best.run_id if best else None,
    }
    csv_text, md_text = leaderboard(outcome.rows, outcome.keys)
    (folder / "leaderboard.csv").write_text(csv_text)
    (folder / "leaderboard.md").write_text(md_text)
    csv_text, md_text = config_leaderboard(outcome.configs, outcome.keys)
    (folder / "leaderboard_by_config.csv").write_text(csv_text)
    (folder / "leaderboard_by_config.md").write_text(md_text)
    if outcome.best_config is not None:
        summary["best_config"] = config_summary(outcome.best_config)
    figure = val_accuracy_figure(outcome.rows, outcome.histories, outcome.keys)
    save_figure(figure, folder / "val_accuracy_per_epoch.png")
    save_figure(objective_figure(outcome.rows, outcome.keys), folder / "objective_vs_params.png")
    if study.is_optuna(config):
        summary["optuna"] = study.study_report(config, folder)
    (folder / "sweep_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def config_summary(group: ConfigGroup) -> dict[str, Any]:
    """One config's params, n, and the means and standard deviations over its seeds."""
    val, test = group.stats("best_val_accuracy"), group.stats("test_accuracy")
    return {
        "params": group.params,
        "n": group.n,
        "val_accuracy_mean": val[0],
        "val_accuracy_std": val[1],
        "test_accuracy_mean": test[0],
        "test_accuracy_std": test[1],
        "run_ids": [r.run_id for r in group.finished],
    }


def _best_config_record(group: ConfigGroup | None) -> tuple[dict[str, str], dict[str, float]]:
    """The config with the best mean over its seeds: its params and n as tags, its means and stds as metrics."""
    if group is None:
        return {}, {}
    summary = config_summary(group)
    tags = {"best_config": group.label, "best_config.n": str(group.n)}
    keys = ("val_accuracy_mean", "val_accuracy_std", "test_accuracy_mean", "test_accuracy_std")
    metrics = {f"best_config/{k}": float(summary[k]) for k in keys if summary[k] is not None}
    return tags, metrics


def parent_record(outcome: SweepOutcome, summary: dict[str, Any]) -> tuple[dict[str, str], dict[str, float]]:
    """The parent's tags (job counts, the best run and its parameters) and metrics (the best accuracies)."""
    rows, best = outcome.rows, outcome.best
    tags = {
        "jobs": str(len(rows)),
        "jobs_failed": str(sum(1 for r in rows if r.status == "FAILED")),
        "jobs_pruned": str(sum(1 for r in rows if r.note == "pruned")),
    }
    metrics: dict[str, float] = {}
    if best is not None:
        tags.update(best_run_id=best.run_id, best_val_accuracy=format_number(best.objective))
        tags.update({f"best.{k}": str(param_value(best, k)) for k in outcome.keys})
        metrics["best/val_accuracy"] = float(best.objective)  # type: ignore[arg-type]
        if best.test_accuracy is not None:
            metrics["best/test_accuracy"] = float(best.test_accuracy)
    config_tags, config_metrics = _best_config_record(outcome.best_config)
    optuna_best = (summary.get("optuna") or {}).get("best_params") or {}
    tags.update({f"best.{k}": str(v) for k, v in optuna_best.items()})
    return {**config_tags, **tags}, {**metrics, **config_metrics}


def print_outcome(outcome: SweepOutcome, parent_run_id: str) -> None:
    """This worker's job counts, the best job and the best config, and where the leaderboard is."""
    counts, best = outcome.counts, outcome.best
    pruned = f", {counts['pruned']} pruned" if counts["pruned"] else ""
    jobs = "job" if counts["skipped"] == 1 else "jobs"
    print(
        f"cifarlab: sweep: {counts['skipped']} {jobs} skipped (already FINISHED), {counts['finished']} ran, "
        f"{counts['failed']} failed{pruned}",
        flush=True,
    )
    if best is not None:
        label = job_label(best, outcome.keys)
        print(
            f"cifarlab: sweep: best job run {best.run_id} (val accuracy {best.objective:.4f}): {label}",
            flush=True,
        )
    group = outcome.best_config
    mean, std = group.stats("best_val_accuracy") if group is not None else (None, None)
    if group is not None and mean is not None:
        spread = f" ± {std:.4f}" if std is not None else ""
        print(
            f"cifarlab: sweep: best config by mean over n={group.n} (val accuracy {mean:.4f}{spread}): {group.label}",
            flush=True,
        )
    print(f"cifarlab: sweep: leaderboard and figures in parent run {parent_run_id}", flush=True)
