"""Expected calibration error, the reliability diagram and the stored test predictions."""

from __future__ import annotations

import numpy as np
import pytest

from cifarlab.reports import calibration, read_predictions, write_reports


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # 75% confident and right 3 times out of 4 in that bin: calibrated.
    calibrated = np.array([[0.75, 0.25]] * 4 + [[0.25, 0.75]] * 4)
    calibrated_y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    assert calibration(calibrated_y, calibrated).ece == pytest.approx(0.0)
    # Always 95% sure and right half the time: ECE 0.45.
    overconfident = np.array([[0.95, 0.05]] * 8)
    assert calibration(y, overconfident).ece == pytest.approx(0.45)


def test_bins_are_fifteen_equal_widths_and_a_confidence_of_one_counts():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    result = calibration(np.array([0, 1]), probs)
    assert len(result.counts) == 15 and result.counts.sum() == 2
    assert result.counts[-1] == 1  # 1.0 falls in the last bin


def test_reports_add_ece_a_reliability_diagram_and_the_predictions(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=40)
    y = rng.integers(0, 3, size=40)
    summary = write_reports(tmp_path, y_true=y, probs=probs, class_names=["a", "b", "c"])
    assert summary.metrics["test/ece"] == pytest.approx(calibration(y, probs).ece)
    assert (tmp_path / "reliability_diagram.png").stat().st_size > 0
    stored_y, stored_probs = read_predictions(tmp_path / "test_predictions.npz")
    np.testing.assert_array_equal(stored_y, y)
    np.testing.assert_allclose(stored_probs, probs, rtol=1e-6)
