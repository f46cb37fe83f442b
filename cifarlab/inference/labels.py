"""Where a model's class names come from, in order: the user, the model, the files beside it.

``class_names=`` wins; then a logged model's metadata, the ``.classes.json``
saved beside a checkpoint, and a run's ``reports/confusion_matrix.csv`` header.
Without any, ``loading`` names the classes ``class_0``, ``class_1``, ...
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cifarlab.models.class_names import load_class_names
from cifarlab.tracking.queries import download_run_artifact

CONFUSION_CSV = "reports/confusion_matrix.csv"


def parse_class_names(value: str | Sequence[str] | None) -> list[str] | None:
    """``cat,dog`` or ``[cat, dog]`` (or a list) as a list of names; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip().strip("'\"") for part in value.strip().strip("[]").split(",")]
    return as_names(value)


def as_names(names: Sequence[object] | None) -> list[str] | None:
    """Names as strings; an empty list is None (no names known)."""
    listed = [str(n) for n in names or () if str(n)]
    return listed or None


def class_names_from_reports(reports_dir: Path) -> list[str] | None:
    """Class names from a run's ``reports/confusion_matrix.csv`` header, if it is there."""
    path = Path(reports_dir) / "confusion_matrix.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return header[1:] or None


def checkpoint_class_names(checkpoint: Path) -> list[str] | None:
    """The names saved beside a checkpoint, else those of the run folder it sits in."""
    run_reports = (
        Path(checkpoint).resolve().parent.parent / "reports"
    )  # <run>/artifacts/{checkpoints,reports}
    return load_class_names(checkpoint) or class_names_from_reports(run_reports)


def run_class_names(run_id: str) -> list[str] | None:
    """Class names from a run's reports artifact, or None when it logged none."""
    local = download_run_artifact(run_id, CONFUSION_CSV, tempfile.mkdtemp())
    return class_names_from_reports(local.parent) if local else None
