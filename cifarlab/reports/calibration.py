"""Calibration: do the model's confidences match how often it is right?

Expected calibration error (ECE) over equal-width confidence bins, as in Guo et
al. 2017 ("On Calibration of Modern Neural Networks"), and its reliability diagram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from cifarlab.reports.figures import DPI

ECE_BINS = 15


@dataclass
class Calibration:
    """Per bin of top-class confidence: its images, their mean confidence and their accuracy."""

    edges: np.ndarray  # ECE_BINS + 1 bin edges over [0, 1]
    counts: np.ndarray
    confidence: np.ndarray  # NaN where a bin is empty
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Sum over bins of |accuracy - confidence|, weighted by the bin's share of images."""
        filled = self.counts > 0
        if not filled.any():
            return 0.0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(gaps * self.counts[filled]) / self.counts.sum())


def calibration(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> Calibration:
    """Bin the test images by their top probability (the last bin includes 1.0)."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return Calibration(edges, counts, mean_confidence, accuracy)


def reliability_figure(result: Calibration) -> Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration, with the ECE."""
    fig = Figure(figsize=(5, 5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    width = np.diff(result.edges)
    filled = result.counts > 0
    ax.bar(
        result.edges[:-1][filled],
        result.accuracy[filled],
        width=width[filled],
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    ax.bar(
        result.edges[:-1][filled],
        (result.confidence - result.accuracy)[filled],
        bottom=result.accuracy[filled],
        width=width[filled],
        align="edge",
        color="#f4a3a3",  # opaque: over a blue bar (underconfident bins) it looks as in the legend
        edgecolor="tab:red",
        hatch="//",
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (top-class probability)",
        ylabel="accuracy",
        title=f"Reliability diagram, ECE {result.ece:.3f} ({len(result.counts)} bins)",
    )
    ax.legend(loc="upper left")
    return fig
