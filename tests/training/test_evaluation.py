"""Test-time views: flips and shifts of each test image, and predictions averaged over them."""

from __future__ import annotations

import numpy as np
import pytest

SIZE = 8


def _columns(count: int = 3) -> np.ndarray:
    """Images whose every pixel holds its column index (and the image's number in channel 1)."""
    images = np.zeros((count, SIZE, SIZE, 2), np.uint8)
    images[..., 0] = np.arange(SIZE)[None, None, :]
    images[..., 1] = np.arange(count)[:, None, None]
    return images


@pytest.mark.parametrize("flip, shift, count", [(False, 0, 1), (True, 0, 2), (False, 2, 5), (True, 2, 10)])
def test_views_are_the_image_its_four_moves_and_their_mirrors(flip, shift, count):
    from cifarlab.data.views import views_to_average

    images = _columns()
    views = views_to_average(images, flip, shift)
    assert len(views) == count and all(v.shape == images.shape for v in views)
    np.testing.assert_array_equal(views[0], images)
    if shift:  # two of the moves shift the columns each way, edges mirrored; none changes the image's number
        firsts = sorted(int(v[0, 0, SIZE // 2, 0]) for v in views[1:5])
        assert firsts == [SIZE // 2 - shift, SIZE // 2, SIZE // 2, SIZE // 2 + shift]
        assert all(np.array_equal(v[..., 1], images[..., 1]) for v in views)
    if flip:
        np.testing.assert_array_equal(views[count // 2], images[:, :, ::-1])


def test_evaluation_averages_the_predictions_over_every_view():
    import keras

    from cifarlab.data.base import DataSplits
    from cifarlab.data.views import views_to_average
    from cifarlab.training.evaluation import evaluate_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((SIZE, SIZE, 2)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]
    )
    images = np.random.default_rng(0).integers(0, 255, (6, SIZE, SIZE, 2), dtype=np.uint8)
    labels = np.arange(6) % 3
    data = DataSplits(images, labels, images, labels, images, labels, ["a", "b", "c"], "tiny")
    expected = np.mean(
        [model.predict(v.astype("float32"), verbose=0) for v in views_to_average(images, True, 2)], 0
    )
    probs, _, _ = evaluate_model(model, data, 4, flip=True, shift=2)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    plain, _, _ = evaluate_model(model, data, 4)
    assert not np.allclose(plain, probs)  # the views do change what is scored
