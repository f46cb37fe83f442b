"""Containers, the dataset registry and the split helpers every loader shares.

Nothing here imports TensorFlow or Keras: picking a dataset must stay fast.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cifarlab.errors import DataError
from cifarlab.registry import Registry


class RawData(NamedTuple):
    """What a loader returns: the official train/test split, before validation hold-out."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


@dataclass
class DataSplits:
    """uint8 images shaped (N, H, W, C) and int64 labels shaped (N,) for each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    name: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


Loader = Callable[[Any, Path], RawData]
DATASETS: Registry[Loader] = Registry("dataset")


def option(cfg: Any, key: str, default: Any) -> Any:
    """``cfg.key`` or ``default`` when the node lacks the key or holds null."""
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def check_raw(raw: RawData, source: str) -> RawData:
    """Normalise dtypes/shapes and reject inconsistent loader output with a DataError."""
    splits = []
    for part, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        x = np.asarray(x)
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if x.ndim == 3:  # grayscale without a channel axis
            x = x[..., np.newaxis]
        if x.ndim != 4 or x.dtype != np.uint8:
            raise DataError(f"{source}: {part} images are {x.dtype} {x.shape}; expected uint8 (N, H, W, C)")
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x)} {part} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= len(raw.class_names)):
            raise DataError(
                f"{source}: {part} labels range {y.min()}..{y.max()} "
                f"but there are {len(raw.class_names)} class names"
            )
        splits += [x, y]
    if splits[0].shape[1:] != splits[2].shape[1:]:
        raise DataError(
            f"{source}: train images are {splits[0].shape[1:]} but test images are {splits[2].shape[1:]}"
        )
    x_train, y_train, x_test, y_test = splits
    return RawData(x_train, y_train, x_test, y_test, [str(c) for c in raw.class_names])


def check_trainable(raw: RawData, data_dir: Path) -> RawData:
    """Reject training data a classifier cannot learn from: no images, or images of one class."""
    where = f"dataset.data_dir={str(data_dir)!r}"
    if len(raw.y_train) == 0:
        raise DataError(
            f"{where} has no training images (a folder with only test/ can be evaluated, "
            "not trained on); add train/<class>/ folders of images"
        )
    present = np.unique(raw.y_train)
    if len(present) < 2:
        raise DataError(
            f"{where} has training images of one class only ({raw.class_names[present[0]]!r}); "
            "a classifier needs at least 2: add a folder of images for each other class"
        )
    return raw


def _can_stratify(y: np.ndarray, n_test: int) -> bool:
    counts = np.bincount(y)
    counts = counts[counts > 0]
    return counts.min() >= 2 and len(counts) <= n_test <= len(y) - len(counts)


def stratified_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_keep, y_keep, x_held, y_held), stratified by label when the counts allow it."""
    from sklearn.model_selection import train_test_split  # sklearn takes ~0.5 s to import

    n_test = int(np.ceil(test_fraction * len(y)))
    if len(y) < 2 or not 1 <= n_test < len(y):
        raise DataError(
            f"cannot hold out {test_fraction:g} of {len(y)} images: "
            "need at least one image on each side of the split"
        )
    stratify = y if _can_stratify(y, n_test) else None
    idx_keep, idx_held = train_test_split(
        np.arange(len(y)), test_size=n_test, random_state=seed, stratify=stratify
    )
    return x[idx_keep], y[idx_keep], x[idx_held], y[idx_held]


def subsample(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``fraction`` of each class (at least one image of each), in the original order."""
    if fraction >= 1.0 or len(y) == 0:
        return x, y
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(y):  # a loop over classes, not images
        members = np.flatnonzero(y == label)
        n = max(1, int(round(fraction * len(members))))
        keep.append(rng.choice(members, size=n, replace=False))
    idx = np.sort(np.concatenate(keep))
    return x[idx], y[idx]


def content_digest(*arrays: np.ndarray, names: Sequence[str] = ()) -> str:
    """A short SHA-256 of the arrays' bytes, shapes and dtypes (and class names): changes with any pixel."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).data)
    digest.update("\n".join(names).encode())
    return digest.hexdigest()[:16]


def splits_digest(data: DataSplits) -> str:
    """The digest of all three splits and the class names."""
    return content_digest(
        data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test, names=data.class_names
    )
