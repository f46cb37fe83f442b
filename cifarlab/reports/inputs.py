"""Checks on what the reports are given: class indices in range, probabilities of the right shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_indices(y: Sequence[int] | np.ndarray, num_classes: int, name: str) -> np.ndarray:
    """Return y as a flat int array, checking every label is in [0, num_classes)."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:  # CIFAR labels often come as (N, 1)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name} must hold integer class indices")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} holds label {int(arr[bad][0])} outside 0..{num_classes - 1} ({num_classes} classes)"
        )
    return arr


def label_pair(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted labels as flat int arrays of the same length."""
    t = class_indices(y_true, num_classes, "y_true")
    p = class_indices(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def class_probabilities(probs, n_classes: int, n: int | None = None) -> np.ndarray:
    """probs as a float (N, n_classes) array, checking N against n labels when given."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_classes:
        raise ValueError(f"probs must have shape (N, {n_classes}), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"probs has {arr.shape[0]} rows but there are {n} labels")
    return arr
