"""Write every report of one evaluation into a folder and say what was written.

The files: confusion matrices (PNG + CSV, counts and normalised), the classification
report and the most confused pairs (markdown), and, when their inputs are given, the
training curves, a prediction grid and sample images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

from cifarlab.reports.calibration import calibration, reliability_figure
from cifarlab.reports.confusion import (
    ConfusedPair,
    check_orientation,
    confused_pairs,
    confused_pairs_markdown,
    confusion_counts,
    normalize_over_true,
    pairs_tag,
    write_confusion_csv,
)
from cifarlab.reports.figures import (
    DPI,  # noqa: F401  (imported from here by cifarlab.inference.grid)
    confusion_matrix_figure,
    prediction_grid_figure,
    sample_images_figure,
    save_figure,
    training_curves_figure,
)
from cifarlab.reports.inputs import class_indices, class_probabilities
from cifarlab.reports.tables import classification_table


@dataclass
class ReportSummary:
    """What write_reports produced: metrics to log, confused pairs, and written files."""

    metrics: dict[str, float]
    pairs: list[ConfusedPair]
    files: list[Path] = field(default_factory=list)

    def pairs_tag(self) -> str:
        """Confused pairs as one line for an MLflow tag, e.g. ``cat->dog 112; dog->cat 98``."""
        return pairs_tag(self.pairs)


def _write_confusion(out: Path, cm: np.ndarray, class_names: Sequence[str], orientation: str) -> list[Path]:
    normalised = normalize_over_true(cm)
    return [
        write_confusion_csv(out / "confusion_matrix.csv", cm, class_names, orientation),
        write_confusion_csv(out / "confusion_matrix_normalized.csv", normalised, class_names, orientation),
    ]


def _confusion_figures(out: Path, cm: np.ndarray, class_names: Sequence[str], orientation: str) -> list[Path]:
    return [
        save_figure(
            confusion_matrix_figure(cm, class_names, False, orientation), out / "confusion_matrix.png"
        ),
        save_figure(
            confusion_matrix_figure(cm, class_names, True, orientation),
            out / "confusion_matrix_normalized.png",
        ),
    ]


def _write_text(out: Path, name: str, text: str) -> Path:
    path = out / name
    path.write_text(text, encoding="utf-8")
    return path


def _image_figures(
    out: Path,
    *,
    probs: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    x_test,
    x_train,
    y_train,
    seed: int,
) -> list[Path]:
    """The figures of images, when they are given: a prediction grid (x_test), samples (x_train)."""
    files = []
    if x_test is not None:
        fig = prediction_grid_figure(x_test, probs, y_true, class_names, seed=seed)
        files.append(save_figure(fig, out / "prediction_grid.png"))
    if x_train is not None and y_train is not None:
        fig = sample_images_figure(x_train, y_train, class_names, seed=seed)
        files.append(save_figure(fig, out / "sample_images.png"))
    return files


PREDICTIONS_FILE = "test_predictions.npz"


def write_predictions(
    out: Path, y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str] = ()
) -> Path:
    """Every test image's true label and class probabilities (compressed), and the class names:
    enough to compare runs, and to draw a run's figures later (``write_figures``)."""
    path = out / PREDICTIONS_FILE
    np.savez_compressed(
        path,
        y_true=y_true.astype(np.int32),
        probs=probs.astype(np.float32),
        class_names=np.array(class_names),
    )
    return path


def read_predictions(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, probs)`` as ``write_predictions`` stored them."""
    with np.load(path) as stored:
        return stored["y_true"], stored["probs"]


def read_class_names(path: Path | str) -> list[str]:
    """The class names ``write_predictions`` stored (class indices for files from before it did)."""
    with np.load(path) as stored:
        if "class_names" in stored and stored["class_names"].size:
            return [str(name) for name in stored["class_names"]]
        return [str(i) for i in range(stored["probs"].shape[1])]


def write_figures(
    out_dir: Path | str,
    *,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    history: Mapping[str, Sequence[float]] | None = None,
    orientation: str = "true_rows",
) -> list[Path]:
    """The figures made from a run's predictions and curves alone: confusion matrices, the
    reliability diagram, the training curves (those of the images need the images)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = len(class_names)
    t = class_indices(y_true, k, "y_true")
    p = class_probabilities(probs, k, t.size)
    files = _confusion_figures(out, confusion_counts(t, p.argmax(axis=1), k), class_names, orientation)
    files.append(save_figure(reliability_figure(calibration(t, p)), out / "reliability_diagram.png"))
    if history:
        files.append(save_figure(training_curves_figure(history), out / "training_curves.png"))
    return files


def write_reports(
    out_dir: Path | str,
    *,
    y_true,
    probs,
    class_names: Sequence[str],
    history: Mapping[str, Sequence[float]] | None = None,
    x_test: np.ndarray | None = None,
    x_train: np.ndarray | None = None,
    y_train=None,
    orientation: str = "true_rows",
    top_pairs: int = 5,
    seed: int = 0,
    figures: bool = True,
) -> ReportSummary:
    """Write confusion matrices (CSV), classification report, confused pairs and the predictions;
    with ``figures``, the figures too (``write_figures``, and when their inputs are given a
    prediction grid and sample images)."""
    check_orientation(orientation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = len(class_names)
    t = class_indices(y_true, k, "y_true")
    p = class_probabilities(probs, k, t.size)
    y_pred = p.argmax(axis=1)

    files = _write_confusion(out, confusion_counts(t, y_pred, k), class_names, orientation)
    table, metrics = classification_table(t, y_pred, class_names)
    metrics["test/accuracy"] = float(accuracy_score(t, y_pred)) if t.size else 0.0
    metrics["test/ece"] = calibration(t, p).ece
    pairs = confused_pairs(t, y_pred, class_names, top=top_pairs)
    files.append(_write_text(out, "classification_report.md", "# Classification report\n\n" + table))
    files.append(_write_text(out, "confused_pairs.md", confused_pairs_markdown(pairs)))
    files.append(write_predictions(out, t, p, class_names))
    if figures:
        files += write_figures(
            out, y_true=t, probs=p, class_names=class_names, history=history, orientation=orientation
        )
        files += _image_figures(
            out, probs=p, y_true=t, class_names=class_names, x_test=x_test, x_train=x_train, y_train=y_train,
            seed=seed,
        )  # fmt: skip
    return ReportSummary(metrics=metrics, pairs=pairs, files=files)
