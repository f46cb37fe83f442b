"""Scoring a trained model on the test split, over test-time views of each image when asked."""

from __future__ import annotations

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from cifarlab.data.base import DataSplits
from cifarlab.data.pipeline import eval_dataset
from cifarlab.data.views import views_to_average
from cifarlab.runtime.batch_signals import StopOnSignal


def evaluate_model(
    model: keras.Model, data: DataSplits, batch_size: int, *, flip: bool = False, shift: int = 0
) -> tuple[np.ndarray, float, float]:
    """Class probabilities on the test split, accuracy and loss; the probabilities averaged over
    each image's mirror image (``flip``) and its moves by ``shift`` pixels when asked
    (``trainer.test_time_flip`` / ``trainer.test_time_shift``)."""
    views = views_to_average(data.x_test, bool(flip), int(shift or 0))
    batches = [eval_dataset(view, data.y_test, batch_size) for view in views]
    stop = [StopOnSignal()]  # Ctrl-C and SIGTERM act between batches
    probs = np.mean([model.predict(batch, verbose=0, callbacks=stop) for batch in batches], axis=0)
    accuracy = accuracy_score(data.y_test, probs.argmax(axis=1))
    loss = log_loss(data.y_test, np.clip(probs, 1e-7, 1.0), labels=list(range(data.num_classes)))
    return probs, float(accuracy), float(loss)
