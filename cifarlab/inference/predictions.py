"""Predictions for images: computing them, and showing them as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.errors import CifarlabError
from cifarlab.inference.images import prepare_images
from cifarlab.inference.loading import LoadedModel, predict_probs
from cifarlab.inference.run_data import SplitData


@dataclass
class Predictions:
    """One row per image: its label for the table and files, and class probabilities."""

    names: list[str]
    probs: np.ndarray
    class_names: list[str]
    images: np.ndarray
    y_true: np.ndarray | None = None

    def top(self, k: int) -> np.ndarray:
        return np.argsort(-self.probs, axis=1, kind="stable")[:, : min(k, self.probs.shape[1])]


def display_names(files: Sequence[Path], images_arg: str) -> list[str]:
    """Files as shown in the table: relative to the images folder when one was given."""
    root = Path(images_arg).expanduser()
    if root.is_dir():
        return [str(f.relative_to(root)) for f in files]
    return [str(f) for f in files]


def predict_files(model: LoadedModel, files: Sequence[Path], images_arg: str, batch_size: int) -> Predictions:
    """Predictions for image files, after converting and resizing them for the model."""
    images, warnings = prepare_images(files, model.input_shape)
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    probs = predict_probs(model, images, batch_size)
    return Predictions(display_names(files, images_arg), probs, model.class_names, images)


def predict_samples(
    model: LoadedModel, data: SplitData, count: int, seed: int, batch_size: int
) -> Predictions:
    """Predictions for ``count`` random images of a split (the run's test images), with true labels."""
    if tuple(data.x.shape[1:]) != tuple(model.input_shape):
        raise CifarlabError(
            f"the run's dataset {data.name} has images shaped {data.x.shape[1:]} but the model "
            f"takes {model.input_shape}; predict on images= instead"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data.x), size=min(count, len(data.x)), replace=False))
    images, y_true = data.x[chosen], data.y[chosen]
    probs = predict_probs(model, images, batch_size)
    names = [f"{data.split}[{i}]" for i in chosen]
    return Predictions(names, probs, list(data.class_names), images, y_true)


def format_table(preds: Predictions, top_k: int) -> str:
    """A plain-text table: file, (true class), then the top-k classes with probabilities."""
    top = preds.top(top_k)
    width = max([len("file"), *map(len, preds.names)])
    cls_width = max(len(c) for c in preds.class_names)
    header = f"{'file':<{width}}"
    if preds.y_true is not None:
        header += f"  {'true':<{cls_width}}   "
    header += "".join(f"  {'top-' + str(i + 1):<{cls_width + 7}}" for i in range(top.shape[1]))
    lines = [header.rstrip()]
    for row, name in enumerate(preds.names):
        line = f"{name:<{width}}"
        if preds.y_true is not None:
            mark = "ok" if top[row, 0] == preds.y_true[row] else "xx"
            line += f"  {preds.class_names[preds.y_true[row]]:<{cls_width}} {mark}"
        for c in top[row]:
            line += f"  {preds.class_names[c]:<{cls_width}} {100 * preds.probs[row, c]:5.1f}%"
        lines.append(line.rstrip())
    return "\n".join(lines)


def prediction_rows(preds: Predictions, top_k: int) -> list[dict[str, Any]]:
    """One record per image: file, predicted class, its probability, the top-k (and the true class)."""
    rows = []
    for row, c_top in enumerate(preds.top(top_k)):
        record: dict[str, Any] = {
            "file": preds.names[row],
            "predicted": preds.class_names[c_top[0]],
            "probability": round(float(preds.probs[row, c_top[0]]), 6),
        }
        if preds.y_true is not None:
            record["true"] = preds.class_names[preds.y_true[row]]
            record["correct"] = bool(c_top[0] == preds.y_true[row])
        record["top_k"] = [
            {"class": preds.class_names[c], "probability": round(float(preds.probs[row, c]), 6)}
            for c in c_top
        ]
        rows.append(record)
    return rows


def write_output(path: Path, rows: list[dict[str, Any]]) -> None:
    """Predictions as JSON (a list of records) or CSV (top-k flattened to top1_class, top1_probability, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    flat = []
    for record in rows:
        item = {k: v for k, v in record.items() if k != "top_k"}
        for i, entry in enumerate(record["top_k"], start=1):
            item[f"top{i}_class"], item[f"top{i}_probability"] = entry["class"], entry["probability"]
        flat.append(item)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
