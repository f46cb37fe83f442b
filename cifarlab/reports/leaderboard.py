"""A sweep's leaderboard: one row per job, ranked, as CSV and markdown; the same jobs grouped by
config (runs that differ only in their seed), with n, mean and standard deviation.

Rows are a sweep's jobs as ``cifarlab.sweeps.outcome`` gathers them from the store;
nothing here reads the store. The figures of the same rows are in ``sweep_figures``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field

from cifarlab.config.compose import override_key


@dataclass
class Row:
    """One job of a sweep: its run, how it ended, its overrides and scores."""

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


def param_value(row: Row, key: str) -> str | None:
    """The value a job used for ``key``: from its overrides, else its logged config."""
    for line in row.overrides:
        if "=" in line and override_key(line) == key:
            return line.split("=", 1)[1]
    return row.params.get(key, row.params.get(f"{key}.name"))


def ranked(rows: list[Row]) -> list[Row]:
    """FINISHED rows with an objective first, best first; then the others. Equal scores go by
    job (an Optuna search's trial number: the study's own rule, ``cifarlab.sweeps.study.best_trial``),
    then by start."""
    return sorted(
        rows,
        key=lambda r: (
            r.objective is None or r.status != "FINISHED",
            -(r.objective or 0.0),
            int(r.job) if r.job.isdigit() else math.inf,
            r.start_time,
        ),
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
            + f" | {format_number(row.best_val_accuracy)} | {format_number(row.final_val_accuracy)}"
            + f" | {format_number(row.test_accuracy)}"
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
            + f" | {group.n} | {len(group.rows)}"
            + f" | {_mean_std(group, 'best_val_accuracy')} | {_mean_std(group, 'test_accuracy')}"
            + f" | {', '.join(group.seeds)} | {' '.join(run_ids)} |"
        )
    return out.getvalue(), "\n".join(md) + "\n"
