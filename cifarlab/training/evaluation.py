"""Scoring a trained model on the test split, over test-time views of each image when asked."""

from __future__ import annotations

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from cifarlab.data.base import DataSplits
from cifarlab.data.pipeline import eval_dataset


def shifted(images: np.ndarray, dy: int, dx: int, pad: int) -> np.ndarray:
    """``images`` seen through a window moved by (dy, dx) pixels, the edges filled by mirroring
    (as the pad-crop augmentation fills them)."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return padded[:, pad + dy: pad + dy + height, pad + dx: pad + dx + width]


def views_to_average(images: np.ndarray, flip: bool = False, shift: int = 0) -> list[np.ndarray]:
    """What a prediction is averaged over: the images, their four moves by ``shift`` pixels
    (up, down, left, right) when ``shift`` is above 0, and each one's mirror image when ``flip``."""
    views = [images]
    if shift:
        views += [shifted(images, dy, dx, shift) for dy, dx in ((shift, 0), (-shift, 0), (0, shift), (0, -shift))]
    if flip:
        views += [view[:, :, ::-1] for view in views]
    return [np.ascontiguousarray(view) for view in views]


def evaluate_model(
    model: keras.Model, data: DataSplits, batch_size: int, test_time_flip: bool = False, test_time_shift: int = 0
) -> tuple[np.ndarray, float, float]:
    """Class probabilities on the test split (averaged over :func:`views_to_average`), accuracy and loss."""
    views = views_to_average(data.x_test, test_time_flip, test_time_shift)
    probs = np.mean([model.predict(eval_dataset(view, data.y_test, batch_size), verbose=0) for view in views], axis=0)
    accuracy = accuracy_score(data.y_test, probs.argmax(axis=1))
    loss = log_loss(data.y_test, np.clip(probs, 1e-7, 1.0), labels=list(range(data.num_classes)))
    return probs, float(accuracy), float(loss)
