"""Evaluation reports: confusion matrices, per-class metrics, confused pairs and figures.

Pure numpy + sklearn.metrics + matplotlib. Figures are built as ``matplotlib.figure.Figure``
objects (no pyplot state, no backend switch at import), so this module is safe to import in
a headless process and never pulls in tensorflow or keras.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

ORIENTATIONS = ("true_rows", "pred_rows")
DPI = 110
MAX_ANNOTATED_CLASSES = 30  # above this, cell values are too small to read and are left out
MAX_BARS = 10  # with more classes, probability bars show the most probable (+ the true one)

_CORRECT, _WRONG, _TRUE, _OTHER = "tab:green", "tab:red", "tab:blue", "0.75"


# --------------------------------------------------------------------------- validation


def _labels(y: Sequence[int] | np.ndarray, num_classes: int, name: str) -> np.ndarray:
    """Return y as a flat int array, checking every label is in [0, num_classes)."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:  # CIFAR labels often come as (N, 1)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} holds label {int(arr[bad][0])} outside 0..{num_classes - 1} "
            f"({num_classes} classes)"
        )
    return arr


def _pair(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, num_classes, "y_true")
    p = _labels(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def _check_orientation(orientation: str) -> None:
    if orientation not in ORIENTATIONS:
        raise ValueError(
            f"orientation={orientation!r} is not valid; use one of {', '.join(ORIENTATIONS)}"
        )


def _check_probs(probs, n_classes: int, n: int | None = None) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_classes:
        raise ValueError(f"probs must have shape (N, {n_classes}), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"probs has {arr.shape[0]} rows but there are {n} labels")
    return arr


# --------------------------------------------------------------------------- confusion matrix


def confusion_counts(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts matrix, rows = true class, columns = predicted class (sklearn convention)."""
    t, p = _pair(y_true, y_pred, num_classes)
    return confusion_matrix(t, p, labels=list(range(num_classes)))


def normalize_over_true(cm: np.ndarray) -> np.ndarray:
    """Divide each true-class row by its support; rows with no support stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)


def oriented(cm: np.ndarray, orientation: str = "true_rows") -> np.ndarray:
    """Return cm (true rows) as drawn/written: unchanged for true_rows, transposed for pred_rows."""
    _check_orientation(orientation)
    return np.asarray(cm) if orientation == "true_rows" else np.asarray(cm).T


def _axis_names(orientation: str) -> tuple[str, str]:
    """(row axis label, column axis label) for an orientation."""
    _check_orientation(orientation)
    if orientation == "true_rows":
        return "True label", "Predicted label"
    return "Predicted label", "True label"


def _cell_text(value: float, normalize: bool) -> str:
    if not normalize:
        return str(int(value))
    return "0" if value == 0 else f"{value:.2f}"


def _annotate_cells(ax, matrix: np.ndarray, normalize: bool, vmax: float, fontsize: float) -> None:
    threshold = vmax / 2.0
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > threshold else "black"
        ax.text(j, i, _cell_text(value, normalize), ha="center", va="center",
                color=colour, fontsize=fontsize)


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
    _check_orientation(orientation)
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
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=tick_font)
    ax.set_yticks(range(k), labels=list(class_names), fontsize=tick_font)
    row_name, col_name = _axis_names(orientation)
    ax.set_ylabel(row_name)
    ax.set_xlabel(col_name)
    what = "normalised over true class" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({what})", fontsize=11)
    return fig


def write_confusion_csv(
    path: Path | str,
    cm: np.ndarray,
    class_names: Sequence[str],
    orientation: str = "true_rows",
) -> Path:
    """Write a (true-rows) matrix as CSV with class names as header row and index column."""
    row_name, col_name = _axis_names(orientation)
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


# --------------------------------------------------------------------------- confused pairs


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
        return (f"{self.true_name} predicted as {self.pred_name}: "
                f"{self.count} of {self.support} ({100 * self.rate:.1f}%)")


def confused_pairs(
    y_true, y_pred, class_names: Sequence[str], top: int = 5
) -> list[ConfusedPair]:
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


# --------------------------------------------------------------------------- classification table

_METRIC_NAME_BAD = re.compile(r"[^A-Za-z0-9_\-. ]")


def metric_safe_name(name: str) -> str:
    """Make a class name usable as one segment of an MLflow metric key.

    Keeps ASCII letters, digits, underscore, dash, period and space; everything else
    (slashes included, since they separate key segments) becomes "_".
    Names that would collapse as a path segment ("", ".", "..") are replaced too.
    """
    safe = _METRIC_NAME_BAD.sub("_", str(name)).strip()
    if not safe.strip("."):
        safe = "_" * max(len(safe), 1)
    return safe


def _safe_names(class_names: Sequence[str]) -> list[str]:
    safe = [metric_safe_name(n) for n in class_names]
    seen: dict[str, str] = {}
    for original, key in zip(class_names, safe):
        if key in seen:
            raise ValueError(
                f"class names {seen[key]!r} and {original!r} both become metric name {key!r}; "
                "rename one of them"
            )
        seen[key] = str(original)
    return safe


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_row(name: str, scores: Mapping[str, float] | None, support: float) -> str:
    if scores is None:
        cells = ["", "", ""]
    else:
        cells = [f"{scores[k]:.3f}" for k in ("precision", "recall", "f1-score")]
    return f"| {name} | " + " | ".join(cells) + f" | {int(support)} |"


def classification_table(
    y_true, y_pred, class_names: Sequence[str]
) -> tuple[str, dict[str, float]]:
    """Per-class precision/recall/F1/support as markdown, plus flat MLflow metrics.

    Metrics: ``test/precision/<class>``, ``test/recall/<class>``, ``test/f1/<class>``
    (class names made metric-safe) and ``test/macro_f1``.
    """
    k = len(class_names)
    safe = _safe_names(class_names)
    t, p = _pair(y_true, y_pred, k)
    report = classification_report(
        t, p, labels=list(range(k)), output_dict=True, zero_division=0
    )
    lines = ["| class | precision | recall | f1-score | support |",
             "|---|---:|---:|---:|---:|"]
    metrics: dict[str, float] = {}
    for index, (name, key) in enumerate(zip(class_names, safe)):
        scores = report[str(index)]
        lines.append(_md_row(_md_cell(name), scores, scores["support"]))
        metrics[f"test/precision/{key}"] = float(scores["precision"])
        metrics[f"test/recall/{key}"] = float(scores["recall"])
        metrics[f"test/f1/{key}"] = float(scores["f1-score"])
    total = report["macro avg"]["support"]
    lines.append(_md_row("**macro avg**", report["macro avg"], total))
    lines.append(_md_row("**weighted avg**", report["weighted avg"], total))
    accuracy = float(accuracy_score(t, p)) if t.size else 0.0
    lines.append(f"| **accuracy** | | | {accuracy:.3f} | {int(total)} |")
    metrics["test/macro_f1"] = float(report["macro avg"]["f1-score"])
    return "\n".join(lines) + "\n", metrics


# --------------------------------------------------------------------------- figures

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
        ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center",
                transform=ax.transAxes, color="0.4")


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
    colours = [_OTHER] * len(shown)
    colours[shown.index(true)] = _TRUE
    colours[shown.index(pred)] = _CORRECT if pred == true else _WRONG
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
    t = _labels(y_true, k, "y_true")
    p = _check_probs(probs, k, t.size)
    if images.shape[0] != t.size:
        raise ValueError(f"images has {images.shape[0]} entries but y_true has {t.size}")
    chosen = np.random.default_rng(seed).choice(t.size, size=min(n, t.size), replace=False)
    per_row = 3 if len(chosen) > 4 else max(len(chosen), 1)
    rows = max(math.ceil(len(chosen) / per_row), 1)
    bar_height = 0.16 * min(k, MAX_BARS)
    fig = Figure(figsize=(4.2 * per_row, max(2.3, bar_height + 1.0) * rows + 0.4),
                 dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(rows, 2 * per_row, width_ratios=[1.0, 1.25] * per_row)
    for slot, index in enumerate(chosen):
        r, c = divmod(slot, per_row)
        img_ax = fig.add_subplot(grid[r, 2 * c])
        bar_ax = fig.add_subplot(grid[r, 2 * c + 1])
        _show_image(img_ax, images[index])
        pred, true = int(np.argmax(p[index])), int(t[index])
        img_ax.set_title(
            f"pred {class_names[pred]} ({100 * p[index, pred]:.0f}%)\ntrue {class_names[true]}",
            color=_CORRECT if pred == true else _WRONG, fontsize=8,
        )
        _prob_bars(bar_ax, p[index], true, class_names)
    handles = [Patch(color=_CORRECT, label="predicted (correct)"),
               Patch(color=_WRONG, label="predicted (wrong)"),
               Patch(color=_TRUE, label="true class")]
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
    y = _labels(labels, k, "labels")
    if images.shape[0] != y.size:
        raise ValueError(f"images has {images.shape[0]} entries but labels has {y.size}")
    rng = np.random.default_rng(seed)
    classes_per_row = max(1, 10 // per_class)
    cols = per_class * min(classes_per_row, k)
    rows = math.ceil(k / classes_per_row)
    cell = 1.25
    fig = Figure(figsize=(cell * cols + 0.2, (cell + 0.3) * rows + 0.2), dpi=DPI,
                 layout="constrained")
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


# --------------------------------------------------------------------------- write everything


@dataclass
class ReportSummary:
    """What write_reports produced: metrics to log, confused pairs, and written files."""

    metrics: dict[str, float]
    pairs: list[ConfusedPair]
    files: list[Path] = field(default_factory=list)

    def pairs_tag(self) -> str:
        """Confused pairs as one line for an MLflow tag, e.g. ``cat->dog 112; dog->cat 98``."""
        return pairs_tag(self.pairs)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path


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
) -> ReportSummary:
    """Write confusion matrices (PNG + CSV), classification report, confused pairs and,
    when their inputs are given, training curves, a prediction grid and sample images."""
    _check_orientation(orientation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = len(class_names)
    t = _labels(y_true, k, "y_true")
    p = _check_probs(probs, k, t.size)
    y_pred = p.argmax(axis=1)

    cm = confusion_counts(t, y_pred, k)
    files = [
        _save(confusion_matrix_figure(cm, class_names, False, orientation),
              out / "confusion_matrix.png"),
        _save(confusion_matrix_figure(cm, class_names, True, orientation),
              out / "confusion_matrix_normalized.png"),
        write_confusion_csv(out / "confusion_matrix.csv", cm, class_names, orientation),
        write_confusion_csv(out / "confusion_matrix_normalized.csv",
                            normalize_over_true(cm), class_names, orientation),
    ]
    table, metrics = classification_table(t, y_pred, class_names)
    metrics["test/accuracy"] = float(accuracy_score(t, y_pred)) if t.size else 0.0
    report_md = out / "classification_report.md"
    report_md.write_text("# Classification report\n\n" + table, encoding="utf-8")
    pairs = confused_pairs(t, y_pred, class_names, top=top_pairs)
    pairs_md = out / "confused_pairs.md"
    pairs_md.write_text(confused_pairs_markdown(pairs), encoding="utf-8")
    files += [report_md, pairs_md]

    if history:
        files.append(_save(training_curves_figure(history), out / "training_curves.png"))
    if x_test is not None:
        fig = prediction_grid_figure(x_test, p, t, class_names, seed=seed)
        files.append(_save(fig, out / "prediction_grid.png"))
    if x_train is not None and y_train is not None:
        fig = sample_images_figure(x_train, y_train, class_names, seed=seed)
        files.append(_save(fig, out / "sample_images.png"))
    return ReportSummary(metrics=metrics, pairs=pairs, files=files)
