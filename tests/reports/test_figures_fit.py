"""Every figure cifarlab draws keeps its labels inside the image, and its legends match what they name."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cifarlab.reports.calibration import calibration, reliability_figure
from cifarlab.reports.comparison import RunResult, compare_pair, confusion_difference_figure
from cifarlab.reports.figures import (
    confusion_matrix_figure,
    prediction_grid_figure,
    save_figure,
    training_curves_figure,
)
from cifarlab.reports.leaderboard import Row
from cifarlab.reports.sweep_figures import job_label, objective_figure, val_accuracy_figure

RNG = np.random.default_rng(0)
NAMES = [f"a long class name {i}" for i in range(10)]


def _cut_off(fig: Figure, tmp_path) -> list[str]:
    """The edges of the PNG that save_figure writes where something is drawn (a label or tick label
    running off the image is cut there); empty when a white margin surrounds everything."""
    with Image.open(save_figure(fig, tmp_path / "figure.png")) as image:
        pixels = np.asarray(image.convert("L"))
    edges = {"left": pixels[:, :2], "right": pixels[:, -2:], "top": pixels[:2], "bottom": pixels[-2:]}
    return [edge for edge, strip in edges.items() if strip.min() < 245]


def _rows(n: int = 4) -> list[Row]:
    return [
        Row(
            run_id=f"{i:032x}",
            status="FINISHED",
            overrides=[f"optimizer.lr={RNG.uniform(1e-4, 1e-2)!r}", f"model.hidden_units=[{32 * (i + 1)}]"],
            best_val_accuracy=float(RNG.uniform(0.3, 0.9)),
        )
        for i in range(n)
    ]


def _figures() -> dict[str, Figure]:
    y = RNG.integers(0, 10, 500)
    probs = RNG.dirichlet(np.ones(10), 500)
    a, b = RunResult("a" * 32, "a", y, probs.argmax(1)), RunResult("b" * 32, "b", y, RNG.integers(0, 10, 500))
    cm = np.bincount(y * 10 + probs.argmax(1), minlength=100).reshape(10, 10)
    rows = _rows()
    histories = {row.run_id: [(e, float(RNG.uniform())) for e in range(5)] for row in rows}
    keys = ["optimizer.lr", "model.hidden_units"]
    history = {
        "train/loss": [1.0, 0.5],
        "val/loss": [1.1, 0.6],
        "train/accuracy": [0.4, 0.6],
        "val/accuracy": [0.3, 0.5],
    }
    return {
        "confusion difference": confusion_difference_figure(compare_pair(a, b, NAMES), NAMES),
        "confusion matrix": confusion_matrix_figure(cm, NAMES, normalize=True),
        "reliability": reliability_figure(calibration(y, probs)),
        "training curves": training_curves_figure(history),
        "sweep val accuracy": val_accuracy_figure(rows, histories, keys),
        "sweep objective": objective_figure(rows, keys),
        "prediction grid": prediction_grid_figure(
            RNG.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8), probs[:12], y[:12], NAMES
        ),
    }


@pytest.mark.parametrize("name", list(_figures()))
def test_no_label_of_any_figure_is_cut_off(name, tmp_path):
    assert _cut_off(_figures()[name], tmp_path) == []


def test_the_reliability_gap_is_drawn_in_the_colour_its_legend_shows():
    y = RNG.integers(0, 10, 500)
    fig = reliability_figure(calibration(y, RNG.dirichlet(np.ones(10) * 0.2, 500)))
    ax = fig.axes[0]
    legend = {
        text.get_text(): handle
        for text, handle in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)
    }
    gap_bars = [c for c in ax.containers if c.get_label() == "gap to confidence"][0]
    for bar in gap_bars:
        assert bar.get_facecolor() == legend["gap to confidence"].get_facecolor()
        assert bar.get_facecolor()[3] == 1.0  # opaque: what lies under it does not change its colour


def test_sweep_legends_print_drawn_rates_short():
    (row,) = _rows(1)
    row.overrides = ["optimizer.lr=0.0012345678901234567", "model.hidden_units=[64]"]
    assert job_label(row, ["optimizer.lr", "model.hidden_units"]) == "lr=0.001235 hidden_units=[64]"
