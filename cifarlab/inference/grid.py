"""The prediction grid figure: each image beside its top classes (or, with true labels, the reports' grid).

Matplotlib and ``cifarlab.reports`` are imported inside ``save_grid``: they take
a second to import, and most predictions ask for no figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.inference.predictions import Predictions

MAX_GRID_IMAGES = 48


def unlabeled_grid_figure(
    preds: Predictions, top_k: int, limit: int = MAX_GRID_IMAGES, dpi: int = 110
) -> Any:
    """Each image beside bars of its top-k class probabilities (no true labels needed)."""
    from matplotlib.figure import Figure  # see the module docstring

    n = min(len(preds.names), limit)
    k = min(max(top_k, 1), len(preds.class_names))
    per_row = min(3, n)
    rows = math.ceil(n / per_row)
    fig = Figure(figsize=(4.2 * per_row, max(1.9, 0.22 * k + 1.1) * rows), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(rows, 2 * per_row, width_ratios=[1.0, 1.3] * per_row)
    top = preds.top(k)
    for slot in range(n):
        r, c = divmod(slot, per_row)
        draw_image(fig.add_subplot(grid[r, 2 * c]), preds.images[slot], preds.names[slot])
        draw_bars(fig.add_subplot(grid[r, 2 * c + 1]), preds.probs[slot], top[slot], preds.class_names)
    return fig


def draw_image(ax: Any, image: np.ndarray, title: str) -> None:
    gray = image.shape[-1] == 1
    pixels, cmap = (image[..., 0], "gray") if gray else (image, None)
    ax.imshow(pixels, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if len(title) <= 24 else "…" + title[-23:], fontsize=7)


def draw_bars(ax: Any, probs: np.ndarray, classes: np.ndarray, class_names: Sequence[str]) -> None:
    positions = np.arange(len(classes))
    colours = ["tab:blue"] + ["0.75"] * (len(classes) - 1)
    ax.barh(positions, probs[classes], color=colours, height=0.75)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    labels = [f"{class_names[c]} {100 * probs[c]:.0f}%" for c in classes]
    ax.set_yticks(positions, labels=labels, fontsize=7)
    ax.set_xticks([0, 0.5, 1], labels=["0", ".5", "1"], fontsize=6)
    ax.tick_params(axis="y", length=0, pad=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def save_grid(path: Path, preds: Predictions, top_k: int, seed: int) -> None:
    """The grid figure: the reports' true-label grid for samples, the top-k grid otherwise."""
    from cifarlab.reports.writer import DPI, prediction_grid_figure  # see the module docstring

    path.parent.mkdir(parents=True, exist_ok=True)
    if preds.y_true is not None:
        n = min(len(preds.names), MAX_GRID_IMAGES)
        fig = prediction_grid_figure(
            preds.images, preds.probs, preds.y_true, preds.class_names, n=n, seed=seed
        )
    else:
        fig = unlabeled_grid_figure(preds, top_k, dpi=DPI)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05)  # grown to what is drawn, as reports.figures does
    fig.clear()
    if len(preds.names) > MAX_GRID_IMAGES:
        print(f"cifarlab: grid shows {MAX_GRID_IMAGES} of {len(preds.names)} images", flush=True)
