"""The figures of a search's best trials, made when the search ends.

A trial of an Optuna search records what every trial must (params, per-epoch
metrics, test metrics, its predictions, its model) but not the report figures,
which cost seconds a trial (``reports.figures``): searches are many short
trials. When the search ends, the ``reports.search_top`` best runs on its
leaderboard get them, drawn from their logged predictions and curves. Any
other run gets them with ``python -m cifarlab evaluate run=<id>``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cifarlab.reports import write_figures
from cifarlab.reports.leaderboard import Row
from cifarlab.reports.writer import PREDICTIONS_FILE, read_class_names, read_predictions
from cifarlab.tracking import queries, runs

CURVES = ("train/loss", "val/loss", "train/accuracy", "val/accuracy")


def draw_top_figures(client: Any, rows: list[Row], top: int, orientation: str) -> list[str]:
    """Figures for the ``top`` best FINISHED rows that have none yet; the run ids that got them."""
    done = []
    for row in [r for r in rows if r.status == "FINISHED" and r.run_id][:top]:
        if _has_figures(client, row.run_id):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            files = _figures(client, row.run_id, Path(tmp), orientation)
            if files:
                runs.log_files(client, row.run_id, files, "reports")
                done.append(row.run_id)
    return done


def _has_figures(client: Any, run_id: str) -> bool:
    return any(path.endswith(".png") for path in queries.artifact_paths(client, run_id, "reports"))


def _figures(client: Any, run_id: str, folder: Path, orientation: str) -> list[Path]:
    predictions = queries.download_artifact(client, run_id, f"reports/{PREDICTIONS_FILE}", str(folder))
    if predictions is None:
        return []  # a run from before predictions were logged: nothing to draw from
    y_true, probs = read_predictions(predictions)
    history = {key: [v for _, v in queries.metric_history(client, run_id, key)] for key in CURVES}
    return write_figures(
        folder / "figures",
        y_true=y_true,
        probs=probs,
        class_names=read_class_names(predictions),
        history={k: v for k, v in history.items() if v},
        orientation=orientation,
    )
