"""Figures: the confusion matrix, training curves, a prediction grid and sample images.

Built as ``matplotlib.figure.Figure`` objects (no pyplot state, no backend switch at
import), so this module is safe to import in a headless process and never pulls in
tensorflow or keras.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cifarlab.reports.confusion import axis_names, check_orientation, normalize_over_true, oriented
from cifarlab.reports.inputs import class_indices, class_probabilities

DPI = 110
MAX_ANNOTATED_CLASSES = 30  # above this, cell values are too small to read and are left out
MAX_BARS = 10  # with more classes, probability bars show the most probable (+ the true one)

CORRECT_COLOUR, WRONG_COLOUR, TRUE_COLOUR, OTHER_COLOUR = "tab:green", "tab:red", "tab:blue", "0.75"


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write fig as a PNG and free its contents. The image is grown to what is drawn (a tight box):
    rotated tick labels of long class names can reach past where the layout put the axes."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    fig.clear()
    return path


# --------------------------------------------------------------------------- confusion matrix


def _cell_text(value: float, normalize: bool) -> str:
    if not normalize:
        return str(int(value))
    return "0" if value == 0 else f"{value:.2f}"


def _annotate_cells(ax, matrix: np.ndarray, normalize: bool, vmax: float, fontsize: float) -> None:
    threshold = vmax / 2.0
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > threshold else "black"
        # in_layout=False: the cells lie inside the axes, so the layout and the tight box need
        # not measure each of their texts (a tenth of the figure's time at 10 classes).
        ax.text(
            j, i, _cell_text(value, normalize), ha="center", va="center", color=colour, fontsize=fontsize,
            in_layout=False,
        )  # fmt: skip


def confusion_matrix_figure(
    cm: np.ndarray,
    class_names: Sequence[str],
    normalize: bool,
    orientation: str = "true_rows",
) -> Figure:
    """Draw a confusion matrix given as counts with true classes on rows.

    normalize=True divides by the true-class support (whichever way it is drawn);
    orientation="true_rows" puts true labels on the y axis, "pred_rows" predicted labels.
    """
    check_orientation(orientation)
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"cm must have shape ({k}, {k}) for {k} class names, got {cm.shape}")
    values = normalize_over_true(cm) if normalize else cm.astype(np.float64)
    matrix = oriented(values, orientation)
    vmax = 1.0 if normalize else max(float(matrix.max()), 1.0)

    side = min(max(4.8, 0.5 * k + 2.2), 24.0)
    fig = Figure(figsize=(side + 0.8, side), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    tick_font = 9 if k <= 10 else max(4.0, 9 - (k - 10) * 0.1)
    if k <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, matrix, normalize, vmax, fontsize=8 if k <= 10 else 6)
    ax.set_xticks(
        range(k),
        labels=list(class_names),
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=tick_font,
    )
    ax.set_yticks(range(k), labels=list(class_names), fontsize=tick_font)
    row_name, col_name = axis_names(orientation)
    ax.set_ylabel(row_name)
    ax.set_xlabel(col_name)
    what = "normalised over true class" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({what})", fontsize=11)
    return fig


# --------------------------------------------------------------------------- training curves

_HISTORY_KEYS = {
    "train/loss": ("train/loss", "loss"),
    "val/loss": ("val/loss", "val_loss"),
    "train/accuracy": ("train/accuracy", "accuracy", "train/acc", "acc"),
    "val/accuracy": ("val/accuracy", "val_accuracy", "val/acc", "val_acc"),
}


def _history_series(history: Mapping[str, Sequence[float]], key: str) -> list[float]:
    for alias in _HISTORY_KEYS[key]:
        if history.get(alias) is not None and len(history[alias]):
            return [float(v) for v in history[alias]]
    return []


def _plot_panel(ax, history: Mapping[str, Sequence[float]], metric: str) -> None:
    drawn = False
    for split, style in (("train", "-o"), ("val", "-s")):
        values = _history_series(history, f"{split}/{metric}")
        if values:
            epochs = range(1, len(values) + 1)
            label = "train" if split == "train" else "validation"
            ax.plot(epochs, values, style, markersize=3, linewidth=1.5, label=label)
            drawn = True
    ax.set_title(metric.capitalize(), fontsize=11)
    ax.set_xlabel("Epoch")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=9)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(
            0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes, color="0.4"
        )


def training_curves_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Loss and accuracy per epoch (from 1), train vs validation; missing keys are tolerated.

    Keys like "train/loss", "val/loss", "train/accuracy", "val/accuracy"; Keras-style
    "loss"/"val_loss"/"accuracy"/"val_accuracy" are accepted too.
    """
    fig = Figure(figsize=(10, 4), dpi=DPI, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    _plot_panel(loss_ax, history, "loss")
    _plot_panel(acc_ax, history, "accuracy")
    return fig


# --------------------------------------------------------------------------- images


def _displayable(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Image array ready for imshow, and the colormap to use (gray for one channel)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        img = np.clip(img / 255.0 if img.max(initial=0) > 1.0 else img, 0.0, 1.0)
    return img, ("gray" if img.ndim == 2 else None)


def _show_image(ax, image: np.ndarray) -> None:
    img, cmap = _displayable(image)
    vmax = 255 if img.dtype == np.uint8 else 1.0
    ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _bar_classes(probs: np.ndarray, true: int) -> list[int]:
    """Classes to draw: all (in order) for up to MAX_BARS classes, else the most probable."""
    if probs.size <= MAX_BARS:
        return list(range(probs.size))
    top = [int(i) for i in np.argsort(-probs, kind="stable")[:MAX_BARS]]
    if true not in top:
        top[-1] = true
    return top


def _prob_bars(ax, probs: np.ndarray, true: int, class_names: Sequence[str]) -> None:
    pred = int(np.argmax(probs))
    shown = _bar_classes(probs, true)
    colours = [OTHER_COLOUR] * len(shown)
    colours[shown.index(true)] = TRUE_COLOUR
    colours[shown.index(pred)] = CORRECT_COLOUR if pred == true else WRONG_COLOUR
    positions = np.arange(len(shown))
    ax.barh(positions, probs[shown], color=colours, height=0.75)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_yticks(positions, labels=[str(class_names[i]) for i in shown], fontsize=7)
    ax.get_yticklabels()[shown.index(true)].set_fontweight("bold")
    ax.set_xticks([0, 0.5, 1], labels=["0", ".5", "1"], fontsize=6)
    ax.tick_params(axis="y", length=0, pad=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def prediction_grid_figure(
    images: np.ndarray,
    probs: np.ndarray,
    y_true,
    class_names: Sequence[str],
    n: int = 12,
    seed: int = 0,
) -> Figure:
    """n random test images with predicted/true class and a class-probability bar chart.

    Titles are green when the prediction is right, red when wrong; in the bars the predicted
    class is green/red, the true class blue (and its name bold). With more than MAX_BARS
    classes only the most probable ones (and always the true one) are drawn.
    """
    images = np.asarray(images)
    k = len(class_names)
    t = class_indices(y_true, k, "y_true")
    p = class_probabilities(probs, k, t.size)
    if images.shape[0] != t.size:
        raise ValueError(f"images has {images.shape[0]} entries but y_true has {t.size}")
    chosen = np.random.default_rng(seed).choice(t.size, size=min(n, t.size), replace=False)
    per_row = 3 if len(chosen) > 4 else max(len(chosen), 1)
    rows = max(math.ceil(len(chosen) / per_row), 1)
    bar_height = 0.16 * min(k, MAX_BARS)
    fig = Figure(
        figsize=(4.2 * per_row, max(2.3, bar_height + 1.0) * rows + 0.4), dpi=DPI, layout="constrained"
    )
    grid = fig.add_gridspec(rows, 2 * per_row, width_ratios=[1.0, 1.25] * per_row)
    for slot, index in enumerate(chosen):
        r, c = divmod(slot, per_row)
        img_ax = fig.add_subplot(grid[r, 2 * c])
        bar_ax = fig.add_subplot(grid[r, 2 * c + 1])
        _show_image(img_ax, images[index])
        pred, true = int(np.argmax(p[index])), int(t[index])
        img_ax.set_title(
            f"pred {class_names[pred]} ({100 * p[index, pred]:.0f}%)\ntrue {class_names[true]}",
            color=CORRECT_COLOUR if pred == true else WRONG_COLOUR,
            fontsize=8,
        )
        _prob_bars(bar_ax, p[index], true, class_names)
    handles = [
        Patch(color=CORRECT_COLOUR, label="predicted (correct)"),
        Patch(color=WRONG_COLOUR, label="predicted (wrong)"),
        Patch(color=TRUE_COLOUR, label="true class"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def sample_images_figure(
    images: np.ndarray,
    labels,
    class_names: Sequence[str],
    per_class: int = 1,
    seed: int = 0,
) -> Figure:
    """Random examples of each class, titled with the class name.

    Each class gets `per_class` consecutive cells; rows hold about 10 cells, so 10 classes
    give one row (per_class=1) up to one row per class (per_class=10).
    """
    if per_class < 1:
        raise ValueError(f"per_class={per_class} must be >= 1")
    images = np.asarray(images)
    k = len(class_names)
    y = class_indices(labels, k, "labels")
    if images.shape[0] != y.size:
        raise ValueError(f"images has {images.shape[0]} entries but labels has {y.size}")
    rng = np.random.default_rng(seed)
    classes_per_row = max(1, 10 // per_class)
    cols = per_class * min(classes_per_row, k)
    rows = math.ceil(k / classes_per_row)
    cell = 1.25
    fig = Figure(figsize=(cell * cols + 0.2, (cell + 0.3) * rows + 0.2), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for cls in range(k):
        members = np.flatnonzero(y == cls)
        picks = rng.choice(members, size=min(per_class, members.size), replace=False)
        for offset in range(per_class):
            slot = (cls % classes_per_row) * per_class + offset
            ax = axes[cls // classes_per_row, slot]
            if offset < len(picks):
                _show_image(ax, images[picks[offset]])
                ax.set_axis_on()
                ax.set_title(str(class_names[cls]), fontsize=8)
            elif offset == 0:
                ax.set_title(f"{class_names[cls]}\n(no images)", fontsize=8, color="0.4")
    return fig
