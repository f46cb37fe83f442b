"""Test-time views: the copies of each image a prediction is averaged over (flips, small moves).

NumPy only: training's test score and ``python -m cifarlab evaluate`` take the same views.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def shifted(images: np.ndarray, dy: int, dx: int, pad: int) -> np.ndarray:
    """``images`` seen through a window moved by (dy, dx) pixels, the edges filled by mirroring
    (as the pad-crop augmentation fills them)."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return padded[:, pad + dy : pad + dy + height, pad + dx : pad + dx + width]


def views_to_average(images: np.ndarray, flip: bool = False, shift: int = 0) -> list[np.ndarray]:
    """What a prediction is averaged over: the images, their four moves by ``shift`` pixels
    (up, down, left, right) when ``shift`` is above 0, and each one's mirror image when ``flip``."""
    views = [images]
    if shift:
        views += [
            shifted(images, dy, dx, shift) for dy, dx in ((shift, 0), (-shift, 0), (0, shift), (0, -shift))
        ]
    if flip:
        views += [view[:, :, ::-1] for view in views]
    return [np.ascontiguousarray(view) for view in views]


def configured_views(trainer: Any, images: np.ndarray) -> list[np.ndarray]:
    """The views ``trainer.test_time_flip`` and ``trainer.test_time_shift`` ask for (absent keys: none)."""
    return views_to_average(
        images, bool(trainer.get("test_time_flip")), int(trainer.get("test_time_shift") or 0)
    )
