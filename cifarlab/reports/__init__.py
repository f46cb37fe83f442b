"""Evaluation reports: confusion matrices, per-class tables, confused pairs and figures.

Pure numpy + sklearn.metrics + matplotlib (no pyplot, no TensorFlow). ``write_reports``
writes them all for one evaluation; the pieces are importable from here too.

  inputs         checks on labels and probabilities
  confusion      counts, normalisation, orientation, CSV, most confused pairs
  tables         per-class precision / recall / F1 (markdown and MLflow metrics)
  figures        confusion matrix, training curves, prediction grid, sample images
  calibration    expected calibration error and the reliability diagram
  writer         write_reports: every file above into one folder
  comparison     two runs' predictions compared: Wilson intervals, McNemar, deltas
  leaderboard    a sweep's jobs ranked, and grouped by config over seeds (CSV, markdown)
  sweep_figures  a sweep's validation curves and objective against each swept parameter

Two modules read the store (through ``cifarlab.tracking``) and are not imported here:
``compare_runs`` (``cifarlab compare``) and ``results_table`` (``cifarlab results``).
"""

from cifarlab.reports.calibration import Calibration, calibration, reliability_figure
from cifarlab.reports.confusion import (
    ORIENTATIONS,
    ConfusedPair,
    confused_pairs,
    confused_pairs_markdown,
    confusion_counts,
    normalize_over_true,
    oriented,
    pairs_tag,
    write_confusion_csv,
)
from cifarlab.reports.figures import (
    DPI,
    confusion_matrix_figure,
    prediction_grid_figure,
    sample_images_figure,
    save_figure,
    training_curves_figure,
)
from cifarlab.reports.tables import classification_table, metric_safe_name
from cifarlab.reports.writer import (
    ReportSummary,
    read_predictions,
    write_figures,
    write_predictions,
    write_reports,
)

__all__ = [
    "Calibration",
    "calibration",
    "read_predictions",
    "reliability_figure",
    "write_figures",
    "write_predictions",
    "DPI",
    "ORIENTATIONS",
    "ConfusedPair",
    "ReportSummary",
    "classification_table",
    "confused_pairs",
    "confused_pairs_markdown",
    "confusion_counts",
    "confusion_matrix_figure",
    "metric_safe_name",
    "normalize_over_true",
    "oriented",
    "pairs_tag",
    "prediction_grid_figure",
    "sample_images_figure",
    "save_figure",
    "training_curves_figure",
    "write_confusion_csv",
    "write_reports",
]
