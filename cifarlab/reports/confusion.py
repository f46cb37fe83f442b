"""The confusion matrix: counts, normalisation, orientation, CSV, and the most confused pairs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from cifarlab.reports.inputs import label_pair

# true_rows: true labels on the rows (sklearn's way); pred_rows: predicted labels on the rows.
# The config's reports.orientation check (cifarlab/config/schema.py) names the same two.
ORIENTATIONS = ("true_rows", "pred_rows")


def check_orientation(orientation: str) -> None:
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation={orientation!r} is not valid; use one of {', '.join(ORIENTATIONS)}")


def confusion_counts(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts matrix, rows = true class, columns = predicted class (sklearn convention)."""
    t, p = label_pair(y_true, y_pred, num_classes)
    return confusion_matrix(t, p, labels=list(range(num_classes)))


def normalize_over_true(cm: np.ndarray) -> np.ndarray:
    """Divide each true-class row by its support; rows with no support stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)


def oriented(cm: np.ndarray, orientation: str = "true_rows") -> np.ndarray:
    """Return cm (true rows) as drawn/written: unchanged for true_rows, transposed for pred_rows."""
    check_orientation(orientation)
    return np.asarray(cm) if orientation == "true_rows" else np.asarray(cm).T


def axis_names(orientation: str) -> tuple[str, str]:
    """(row axis label, column axis label) for an orientation."""
    check_orientation(orientation)
    if orientation == "true_rows":
        return "True label", "Predicted label"
    return "Predicted label", "True label"


def write_confusion_csv(
    path: Path | str,
    cm: np.ndarray,
    class_names: Sequence[str],
    orientation: str = "true_rows",
) -> Path:
    """Write a (true-rows) matrix as CSV with class names as header row and index column."""
    row_name, col_name = axis_names(orientation)
    matrix = oriented(cm, orientation)
    corner = f"{row_name.split()[0].lower()}\\{col_name.split()[0].lower()}"  # true\predicted
    integer = np.issubdtype(matrix.dtype, np.integer)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([corner, *class_names])
        for name, row in zip(class_names, matrix):
            writer.writerow([name, *(int(v) if integer else f"{float(v):.6f}" for v in row)])
    return path


@dataclass(frozen=True)
class ConfusedPair:
    """One off-diagonal cell of the confusion matrix: true class mistaken for another."""

    true_name: str
    pred_name: str
    count: int
    support: int

    @property
    def rate(self) -> float:
        """Fraction of the true class's images predicted as pred_name."""
        return self.count / self.support if self.support else 0.0

    def __str__(self) -> str:
        return (
            f"{self.true_name} predicted as {self.pred_name}: "
            f"{self.count} of {self.support} ({100 * self.rate:.1f}%)"
        )


def confused_pairs(y_true, y_pred, class_names: Sequence[str], top: int = 5) -> list[ConfusedPair]:
    """The `top` most frequent (true, predicted) mistakes, largest count first.

    Ties are broken by rate (higher first), then true name, then predicted name.
    """
    if top < 0:
        raise ValueError(f"top={top} must be >= 0")
    cm = confusion_counts(y_true, y_pred, len(class_names))
    support = cm.sum(axis=1)
    pairs = [
        ConfusedPair(str(class_names[i]), str(class_names[j]), int(cm[i, j]), int(support[i]))
        for i, j in zip(*np.nonzero(cm))
        if i != j
    ]
    pairs.sort(key=lambda p: (-p.count, -p.rate, p.true_name, p.pred_name))
    return pairs[:top]


def pairs_tag(pairs: Iterable[ConfusedPair]) -> str:
    """Pairs as one line for an MLflow tag, e.g. ``cat->dog 112; dog->cat 98``."""
    text = "; ".join(f"{p.true_name}->{p.pred_name} {p.count}" for p in pairs)
    return text or "none"


def confused_pairs_markdown(pairs: Sequence[ConfusedPair]) -> str:
    """A markdown list of the confused pairs, most frequent first."""
    lines = ["# Most confused class pairs", ""]
    if not pairs:
        lines.append("No misclassifications.")
    lines += [f"{rank}. {pair}" for rank, pair in enumerate(pairs, start=1)]
    return "\n".join(lines) + "\n"
