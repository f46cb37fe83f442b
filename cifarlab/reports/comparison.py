"""Is one run's test result really better than another's? Statistics and figures on stored predictions.

Pure numpy + sklearn.metrics + matplotlib (no pyplot, no TensorFlow, no MLflow):
the accuracy of each run with a 95% Wilson interval, McNemar's exact test of a
pair tested on the same images, per-class precision/recall deltas, the errors
that changed most, a heatmap of the confusion-matrix difference, and the
Markdown report that puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cifarlab.reports.figures import DPI, MAX_ANNOTATED_CLASSES

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / total`` (95% by default)."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial(b + c, 1/2) test on the discordant counts."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def discordant_counts(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> tuple[int, int]:
    """``(b, c)``: images A got right and B wrong, and images A got wrong and B right."""
    right_a, right_b = pred_a == y_true, pred_b == y_true
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


@dataclass
class RunResult:
    """One run's test predictions, as a comparison sees them."""

    run_id: str
    name: str
    y_true: np.ndarray
    y_pred: np.ndarray

    @property
    def correct(self) -> int:
        return int(np.sum(self.y_pred == self.y_true))

    @property
    def total(self) -> int:
        return int(self.y_true.size)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def short(self) -> str:
        return self.run_id[:8]


@dataclass
class ClassDelta:
    name: str
    precision_a: float
    precision_b: float
    recall_a: float
    recall_b: float
    support: int


@dataclass
class PairComparison:
    """Run A against run B on the same test images."""

    a: RunResult
    b: RunResult
    discordant_b: int
    discordant_c: int
    p_value: float
    classes: list[ClassDelta]
    cm_a: np.ndarray
    cm_b: np.ndarray
    changed_errors: list[str]

    @property
    def accuracy_delta(self) -> float:
        return self.b.accuracy - self.a.accuracy


def class_deltas(a: RunResult, b: RunResult, class_names: Sequence[str]) -> list[ClassDelta]:
    """Per-class precision and recall of both runs (sklearn), zero where a class is never predicted."""
    labels = list(range(len(class_names)))
    pa, ra, _, support = precision_recall_fscore_support(a.y_true, a.y_pred, labels=labels, zero_division=0)
    pb, rb, _, _ = precision_recall_fscore_support(b.y_true, b.y_pred, labels=labels, zero_division=0)
    return [
        ClassDelta(str(name), float(pa[i]), float(pb[i]), float(ra[i]), float(rb[i]), int(support[i]))
        for i, name in enumerate(class_names)
    ]


def changed_errors(cm_a: np.ndarray, cm_b: np.ndarray, class_names: Sequence[str], top: int = 5) -> list[str]:
    """The off-diagonal cells that changed most, in words: ``"cat predicted as dog: 112 -> 80"``."""
    diff = np.asarray(cm_b, dtype=np.int64) - np.asarray(cm_a, dtype=np.int64)
    np.fill_diagonal(diff, 0)
    cells = [(abs(int(diff[i, j])), i, j) for i, j in zip(*np.nonzero(diff))]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [
        f"{class_names[i]} predicted as {class_names[j]}: {int(cm_a[i, j])} -> {int(cm_b[i, j])}"
        for _, i, j in cells[:top]
    ]


def compare_pair(a: RunResult, b: RunResult, class_names: Sequence[str], top: int = 5) -> PairComparison:
    """Every statistic of A against B; both must hold the same ``y_true``."""
    labels = list(range(len(class_names)))
    cm_a = confusion_matrix(a.y_true, a.y_pred, labels=labels)
    cm_b = confusion_matrix(b.y_true, b.y_pred, labels=labels)
    disc_b, disc_c = discordant_counts(a.y_true, a.y_pred, b.y_pred)
    return PairComparison(
        a,
        b,
        disc_b,
        disc_c,
        mcnemar_exact(disc_b, disc_c),
        class_deltas(a, b, class_names),
        cm_a,
        cm_b,
        changed_errors(cm_a, cm_b, class_names, top),
    )


def confusion_difference_figure(pair: PairComparison, class_names: Sequence[str]) -> Figure:
    """Heatmap of ``cm_B - cm_A`` (true rows, predicted columns), a diverging colormap centred at 0."""
    diff = pair.cm_b.astype(np.int64) - pair.cm_a.astype(np.int64)
    k = len(class_names)
    limit = max(int(np.abs(diff).max()), 1)
    side = min(max(4.8, 0.5 * k + 2.2), 24.0)
    fig = Figure(figsize=(side + 0.8, side), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label=f"images: {pair.b.short} minus {pair.a.short}")
    if k <= MAX_ANNOTATED_CLASSES:
        for (i, j), value in np.ndenumerate(diff):
            colour = "white" if abs(value) > limit / 2 else "black"
            ax.text(
                j,
                i,
                f"{value:+d}" if value else "0",
                ha="center",
                va="center",
                color=colour,
                fontsize=8 if k <= 10 else 6,
            )
    font = 9 if k <= 10 else max(4.0, 9 - (k - 10) * 0.1)
    ax.set_xticks(
        range(k), labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor", fontsize=font
    )
    ax.set_yticks(range(k), labels=list(class_names), fontsize=font)
    ax.set_ylabel("True label")
    ax.set_xlabel("Predicted label")
    ax.set_title(f"Confusion matrix change: {pair.b.short} - {pair.a.short}", fontsize=11)
    return fig


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def accuracy_lines(results: Sequence[RunResult]) -> list[str]:
    """The accuracy table: each run's test accuracy with its 95% Wilson interval."""
    lines = ["| run | name | test accuracy | 95% CI (Wilson) | correct / images |", "|---|---|---|---|---|"]
    for r in results:
        low, high = wilson_interval(r.correct, r.total)
        lines.append(
            f"| `{r.short}` | {r.name} | {_pct(r.accuracy)} | [{_pct(low)}, {_pct(high)}] "
            f"| {r.correct} / {r.total} |"
        )
    return lines


def pair_lines(pair: PairComparison, figure_name: str | None = None) -> list[str]:
    """One pair's section: McNemar, per-class deltas, the errors that changed most, the heatmap."""
    a, b = pair.a.short, pair.b.short
    lines = [
        f"## `{a}` vs `{b}`",
        "",
        f"Accuracy delta ({b} - {a}): {100 * pair.accuracy_delta:+.2f} points.",
        "",
        f"McNemar exact test: b = {pair.discordant_b} ({a} right, {b} wrong), "
        f"c = {pair.discordant_c} ({a} wrong, {b} right), p = {pair.p_value:.4g}.",
        "",
        f"| class | precision {a} | precision {b} | Δ precision | recall {a} | recall {b} | Δ recall | images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in pair.classes:
        lines.append(
            f"| {c.name} | {c.precision_a:.3f} | {c.precision_b:.3f} | {c.precision_b - c.precision_a:+.3f} "
            f"| {c.recall_a:.3f} | {c.recall_b:.3f} | {c.recall_b - c.recall_a:+.3f} | {c.support} |"
        )
    lines += ["", f"Errors that changed most ({a} -> {b}):", ""]
    lines += [f"- {text}" for text in pair.changed_errors] or ["- none: both runs made the same errors"]
    if figure_name:
        lines += ["", f"![confusion matrix change]({figure_name})"]
    return lines + [""]


def comparison_markdown(
    results: Sequence[RunResult],
    pairs: Sequence[PairComparison],
    figure_names: Sequence[str | None] = (),
    what_differs: Sequence[str] = (),
) -> str:
    """The whole report: what differs between the runs, the accuracy table, then one section per pair."""
    lines = ["# Comparison of runs", "", *what_differs, *accuracy_lines(results), ""]
    names = list(figure_names) + [None] * (len(pairs) - len(figure_names))
    for pair, name in zip(pairs, names):
        lines += pair_lines(pair, name)
    return "\n".join(lines)
