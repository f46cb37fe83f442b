"""A sweep's figures: validation accuracy per epoch, one line per job; the objective against each swept
parameter. Matplotlib ``Figure`` objects (no pyplot), of the rows in ``cifarlab.reports.leaderboard``.
"""

from __future__ import annotations

import math
from typing import cast

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cifarlab.reports.leaderboard import Row, param_value


def job_label(row: Row, keys: list[str]) -> str:
    text = " ".join(f"{k.rsplit('.', 1)[-1]}={_short(param_value(row, k))}" for k in keys) or row.run_id[:8]
    return text if len(text) <= 48 else text[:45] + "..."


def _short(value: str | None) -> str:
    """A number as 4 significant digits (Optuna draws rates like 0.0012345678901234567), else as it is."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return value if value is not None and len(value) <= 6 else f"{number:.4g}"


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
    best = max(scored, key=lambda r: cast(float, r.objective)) if scored else None
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
