"""Tests for cifarlab.reports on a tiny hand-crafted 3-class case with known mistakes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifarlab.reports import (
    ConfusedPair,
    classification_table,
    confused_pairs,
    confusion_counts,
    confusion_matrix_figure,
    metric_safe_name,
    pairs_tag,
    prediction_grid_figure,
    sample_images_figure,
    training_curves_figure,
    write_reports,
)
from cifarlab.reports.figures import CORRECT_COLOUR, MAX_BARS, WRONG_COLOUR

NAMES = ["cat", "dog", "bird"]
# cat: 5 images, 3 predicted dog, 2 right; dog: 4 images, 1 predicted cat, 3 right;
# bird: 3 images, 1 predicted dog, 2 right.
Y_TRUE = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 2, 2])
EXPECTED_CM = np.array([[2, 3, 0], [1, 3, 0], [0, 1, 2]])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def one_hot_probs(y_pred: np.ndarray, k: int = 3) -> np.ndarray:
    """Probabilities whose argmax is y_pred (0.8 on the predicted class)."""
    probs = np.full((y_pred.size, k), 0.2 / (k - 1))
    probs[np.arange(y_pred.size), y_pred] = 0.8
    return probs


def read_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    return header, [r[0] for r in body], np.array([[float(v) for v in r[1:]] for r in body])


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5_000, f"{path} is suspiciously small ({len(data)} bytes)"


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((Y_TRUE.size, 16, 16, 3)) * 255).astype(np.uint8)


def test_confusion_counts_match_hand_count():
    np.testing.assert_array_equal(confusion_counts(Y_TRUE, Y_PRED, 3), EXPECTED_CM)


def test_confusion_counts_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_counts([0, 1, 3], [0, 1, 2], 3)


def test_top_confused_pair_string_exact():
    pairs = confused_pairs(Y_TRUE, Y_PRED, NAMES, top=5)
    assert str(pairs[0]) == "cat predicted as dog: 3 of 5 (60.0%)"
    # bird->dog (1 of 3) and dog->cat (1 of 4) tie on count: the higher rate comes first.
    assert [(p.true_name, p.pred_name) for p in pairs] == [("cat", "dog"), ("bird", "dog"), ("dog", "cat")]
    assert all(p.true_name != p.pred_name and p.count > 0 for p in pairs)


def test_confused_pairs_top_limits_and_tag_line():
    pairs = confused_pairs(Y_TRUE, Y_PRED, NAMES, top=2)
    assert len(pairs) == 2
    assert pairs_tag(pairs) == "cat->dog 3; bird->dog 1"
    assert confused_pairs(Y_TRUE, Y_TRUE, NAMES) == []
    assert pairs_tag([]) == "none"


def test_confused_pair_str_rounds_to_one_decimal():
    assert str(ConfusedPair("cat", "dog", 112, 1000)) == "cat predicted as dog: 112 of 1000 (11.2%)"
    assert str(ConfusedPair("a", "b", 1, 3)) == "a predicted as b: 1 of 3 (33.3%)"


def test_classification_metrics_equal_hand_computed_values():
    table, metrics = classification_table(Y_TRUE, Y_PRED, NAMES)
    # recall = correct / support, precision = correct / predicted-as, by hand from EXPECTED_CM
    assert metrics["test/recall/cat"] == pytest.approx(2 / 5)
    assert metrics["test/recall/dog"] == pytest.approx(3 / 4)
    assert metrics["test/recall/bird"] == pytest.approx(2 / 3)
    assert metrics["test/precision/cat"] == pytest.approx(2 / 3)
    assert metrics["test/precision/dog"] == pytest.approx(3 / 7)
    assert metrics["test/precision/bird"] == pytest.approx(1.0)
    f1_cat = 2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5)
    assert metrics["test/f1/cat"] == pytest.approx(f1_cat)
    f1s = [metrics[f"test/f1/{n}"] for n in NAMES]
    assert metrics["test/macro_f1"] == pytest.approx(np.mean(f1s))
    assert "| cat | 0.667 | 0.400 |" in table
    assert "| **accuracy** | | | 0.583 | 12 |" in table  # 7 of 12 right


def test_metric_keys_are_sanitised_for_mlflow():
    names = ["T-shirt/top", "Ankle boot", "a:b|c", "."]
    y = np.array([0, 1, 2, 3])
    _, metrics = classification_table(y, y, names)
    assert "test/recall/T-shirt_top" in metrics
    assert "test/recall/Ankle boot" in metrics
    assert "test/recall/a_b_c" in metrics
    assert "test/recall/_" in metrics
    for key in metrics:
        assert key.count("/") <= 2, key
    validation = pytest.importorskip("mlflow.utils.validation")
    validate = getattr(validation, "_validate_metric_name", None)
    if validate is None:
        pytest.skip("this mlflow has no _validate_metric_name")
    for key in metrics:
        validate(key)  # raises MlflowException when invalid


def test_metric_safe_name_collisions_raise():
    assert metric_safe_name("T-shirt/top") == "T-shirt_top"
    with pytest.raises(ValueError, match="both become metric name"):
        classification_table([0, 1], [0, 1], ["a/b", "a_b"])


def test_bad_orientation_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="true_rows, pred_rows"):
        confusion_matrix_figure(EXPECTED_CM, NAMES, normalize=False, orientation="sideways")
    with pytest.raises(ValueError, match="true_rows"):
        write_reports(
            tmp_path, y_true=Y_TRUE, probs=one_hot_probs(Y_PRED), class_names=NAMES, orientation="columns"
        )


@pytest.mark.parametrize("orientation", ["true_rows", "pred_rows"])
def test_confusion_figure_axis_labels(orientation):
    fig = confusion_matrix_figure(EXPECTED_CM, NAMES, normalize=True, orientation=orientation)
    ax = fig.axes[0]
    rows, cols = ("True label", "Predicted label")[:: 1 if orientation == "true_rows" else -1]
    assert (ax.get_ylabel(), ax.get_xlabel()) == (rows, cols)
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert len(fig.axes) == 2  # image + colourbar
    drawn = ax.images[0].get_array()
    expected = EXPECTED_CM / EXPECTED_CM.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(drawn, expected if orientation == "true_rows" else expected.T)
    cell_texts = {t.get_text() for t in ax.texts}
    assert "0.60" in cell_texts  # cat->dog, normalised over the 5 true cats


@pytest.mark.slow
def test_write_reports_files_csv_and_metrics(tmp_path, images):
    history = {
        "train/loss": [1.0, 0.7, 0.5],
        "val/loss": [1.1, 0.9, 0.8],
        "train/accuracy": [0.4, 0.6, 0.7],
        "val/accuracy": [0.35, 0.5, 0.58],
    }
    summary = write_reports(
        tmp_path / "out",
        y_true=Y_TRUE,
        probs=one_hot_probs(Y_PRED),
        class_names=NAMES,
        history=history,
        x_test=images,
        x_train=images,
        y_train=Y_TRUE,
    )
    out = tmp_path / "out"
    expected = {
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "confusion_matrix.csv",
        "confusion_matrix_normalized.csv",
        "classification_report.md",
        "confused_pairs.md",
        "training_curves.png",
        "prediction_grid.png",
        "sample_images.png",
        "reliability_diagram.png",
        "test_predictions.npz",
    }
    assert {p.name for p in summary.files} == expected
    for name in expected:
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert_png(out / name)

    header, index, counts = read_csv(out / "confusion_matrix.csv")
    assert header[1:] == NAMES and index == NAMES
    assert header[0] == "true\\predicted"
    np.testing.assert_array_equal(counts, EXPECTED_CM)
    _, _, normalised = read_csv(out / "confusion_matrix_normalized.csv")
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0, atol=1e-5)
    assert normalised[0, 1] == pytest.approx(0.6, abs=1e-6)

    assert summary.metrics["test/accuracy"] == pytest.approx(7 / 12)
    assert summary.metrics["test/recall/cat"] == pytest.approx(0.4)
    assert summary.pairs_tag() == "cat->dog 3; bird->dog 1; dog->cat 1"
    assert "1. cat predicted as dog: 3 of 5 (60.0%)" in (out / "confused_pairs.md").read_text()
    assert "| dog | 0.429 | 0.750 |" in (out / "classification_report.md").read_text()


def test_pred_rows_csv_is_transpose(tmp_path):
    write_reports(
        tmp_path, y_true=Y_TRUE, probs=one_hot_probs(Y_PRED), class_names=NAMES, orientation="pred_rows"
    )
    header, index, counts = read_csv(tmp_path / "confusion_matrix.csv")
    assert header[0] == "predicted\\true" and header[1:] == NAMES and index == NAMES
    np.testing.assert_array_equal(counts, EXPECTED_CM.T)
    _, _, normalised = read_csv(tmp_path / "confusion_matrix_normalized.csv")
    # still normalised over the TRUE class, which is now the column
    np.testing.assert_allclose(normalised.sum(axis=0), 1.0, atol=1e-5)
    assert not np.allclose(normalised.sum(axis=1), 1.0)
    # optional figures are not written without their inputs
    assert not (tmp_path / "training_curves.png").exists()
    assert not (tmp_path / "prediction_grid.png").exists()
    assert not (tmp_path / "sample_images.png").exists()


@pytest.mark.slow
def test_write_reports_accepts_column_labels_and_gray_images(tmp_path):
    gray = (np.random.default_rng(1).random((Y_TRUE.size, 12, 12, 1)) * 255).astype(np.uint8)
    summary = write_reports(
        tmp_path,
        y_true=Y_TRUE[:, None],
        probs=one_hot_probs(Y_PRED),
        class_names=NAMES,
        x_test=gray,
        x_train=gray,
        y_train=Y_TRUE[:, None],
    )
    assert summary.metrics["test/accuracy"] == pytest.approx(7 / 12)
    assert_png(tmp_path / "prediction_grid.png")
    assert_png(tmp_path / "sample_images.png")


def test_write_reports_rejects_probs_of_wrong_width(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        write_reports(tmp_path, y_true=Y_TRUE, probs=np.ones((Y_TRUE.size, 4)) / 4, class_names=NAMES)


def test_prediction_grid_title_colours(images):
    probs = one_hot_probs(Y_PRED)
    fig = prediction_grid_figure(images, probs, Y_TRUE, NAMES, n=Y_TRUE.size, seed=0)
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(titles) == Y_TRUE.size
    right = [
        t for t in titles if t.get_text().split("\n")[0].split()[1] == t.get_text().split("\n")[1].split()[1]
    ]
    assert len(right) == 7
    assert all(t.get_color() == CORRECT_COLOUR for t in right)
    wrong = [t for t in titles if t not in right]
    assert all(t.get_color() == WRONG_COLOUR for t in wrong)
    assert "pred dog (80%)\ntrue cat" in {t.get_text() for t in wrong}


def test_prediction_grid_with_many_classes_shows_top_bars_and_true_class():
    k = 25
    names = [f"c{i}" for i in range(k)]
    probs = np.full((1, k), 0.01)
    probs[0, :12] = np.linspace(0.1, 0.05, 12)
    probs /= probs.sum()
    img = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    fig = prediction_grid_figure(img, probs, [20], names, n=1)
    bar_ax = fig.axes[1]
    labels = [t.get_text() for t in bar_ax.get_yticklabels()]
    assert len(labels) == MAX_BARS
    assert labels[0] == "c0" and "c20" in labels  # most probable first, true class kept


def test_training_curves_tolerates_missing_keys_and_numbers_epochs_from_one():
    fig = training_curves_figure({"train/loss": [0.9, 0.5]})
    loss_ax, acc_ax = fig.axes
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2]
    assert len(acc_ax.lines) == 0
    assert any("no accuracy" in t.get_text() for t in acc_ax.texts)


def test_sample_images_titles_are_class_names(images):
    fig = sample_images_figure(images, Y_TRUE, NAMES, per_class=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sorted(titles) == sorted(NAMES * 2)


@pytest.mark.slow
def test_import_does_not_pull_in_tensorflow_or_pyplot():
    code = (
        "import sys, cifarlab.reports, cifarlab.reports.writer; "
        "bad = [m for m in ('tensorflow', 'keras', 'matplotlib.pyplot') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
