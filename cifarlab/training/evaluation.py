"""Scoring a trained model on the test split, over test-time views of each image when asked."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from cifarlab.data.base import DataSplits
from cifarlab.data.pipeline import eval_dataset
from cifarlab.data.views import configured_views


def evaluate_model(model: keras.Model, data: DataSplits, trainer: Any) -> tuple[np.ndarray, float, float]:
    """Class probabilities on the test split (averaged over the views ``trainer.test_time_*`` ask
    for), accuracy and loss; ``trainer`` gives ``eval_batch_size`` too."""
    views = configured_views(trainer, data.x_test)
    batches = [eval_dataset(view, data.y_test, trainer.eval_batch_size) for view in views]
    probs = np.mean([model.predict(batch, verbose=0) for batch in batches], axis=0)
    accuracy = accuracy_score(data.y_test, probs.argmax(axis=1))
    loss = log_loss(data.y_test, np.clip(probs, 1e-7, 1.0), labels=list(range(data.num_classes)))
    return probs, float(accuracy), float(loss)
