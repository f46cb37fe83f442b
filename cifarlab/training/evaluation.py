"""Scoring a trained model on the test split."""

from __future__ import annotations

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from cifarlab.data.base import DataSplits
from cifarlab.data.pipeline import eval_dataset


def evaluate_model(
    model: keras.Model, data: DataSplits, batch_size: int, test_time_flip: bool = False
) -> tuple[np.ndarray, float, float]:
    """Class probabilities on the test split (averaged with the mirrored images when asked), accuracy and loss."""
    probs = model.predict(eval_dataset(data.x_test, data.y_test, batch_size), verbose=0)
    if test_time_flip:
        mirrored = np.ascontiguousarray(data.x_test[:, :, ::-1])
        probs = (probs + model.predict(eval_dataset(mirrored, data.y_test, batch_size), verbose=0)) / 2
    accuracy = accuracy_score(data.y_test, probs.argmax(axis=1))
    loss = log_loss(data.y_test, np.clip(probs, 1e-7, 1.0), labels=list(range(data.num_classes)))
    return probs, float(accuracy), float(loss)
