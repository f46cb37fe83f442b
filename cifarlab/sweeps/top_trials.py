"""What a search's best trials get when the search ends: their figures and their MLflow model.

A trial of an Optuna search records what every trial must (params, per-epoch metrics,
test metrics, its predictions, its checkpoint and its trained model as a plain Keras
file) but neither the report figures (``reports.figures``) nor MLflow's model
(``tracking.search_models``), which cost a second or more a trial: searches are many
short trials. When the search ends, the ``reports.search_top`` best runs on its
leaderboard get their figures, drawn from their logged predictions and curves, and the
``tracking.search_models`` best their MLflow model, made from that Keras file. Any other
run gets its figures with ``python -m cifarlab evaluate run=<id>``; predict, evaluate
and export load a trial's Keras file when it has no MLflow model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cifarlab.models.class_names import class_names_path, load_class_names
from cifarlab.reports import write_figures
from cifarlab.reports.leaderboard import Row
from cifarlab.reports.writer import PREDICTIONS_FILE, read_class_names, read_predictions
from cifarlab.tracking import queries, registry, runs
from cifarlab.tracking.models import TRAINED_FILE

CURVES = ("train/loss", "val/loss", "train/accuracy", "val/accuracy")


def finished(rows: list[Row], top: int) -> list[Row]:
    """The ``top`` best rows whose run FINISHED."""
    return [r for r in rows if r.status == "FINISHED" and r.run_id][: max(top, 0)]


def draw_top_figures(client: Any, rows: list[Row], top: int, orientation: str) -> list[str]:
    """Figures for the ``top`` best FINISHED rows that have none yet; the run ids that got them."""
    done = []
    for row in finished(rows, top):
        if _has_figures(client, row.run_id):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            files = _figures(client, row.run_id, Path(tmp), orientation)
            if files:
                runs.log_files(client, row.run_id, files, "reports")
                done.append(row.run_id)
    return done


def log_top_models(client: Any, uri: str, rows: list[Row], top: int) -> list[str]:
    """MLflow models for the ``top`` best FINISHED rows that have a trained Keras file and no
    model yet; the run ids that got one. The caller holds the study's lock, so two workers
    ending together do not both log one."""
    done = []
    for row in finished(rows, top):
        run = queries.get_run(client, row.run_id)
        if registry.run_logged_model(client, run.info.experiment_id, row.run_id) is not None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            trained = queries.download_artifact(client, row.run_id, TRAINED_FILE, tmp)
            if trained is None:
                continue  # a trial that logged its model itself, or none (tracking.log_model=false)
            queries.download_artifact(
                client, row.run_id, class_names_path(Path(TRAINED_FILE)).as_posix(), tmp
            )
            # Deferred: loading the model imports TensorFlow, which the sweep's own process may lack.
            from cifarlab.training.recording import log_trained_model

            log_trained_model(uri, row.run_id, trained, load_class_names(trained))
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
