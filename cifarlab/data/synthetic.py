"""Generated images with class structure a tiny model learns in an epoch or two.

Each class has its own mean colour and one bright cell of a grid; Gaussian noise
on top keeps it from being trivial. Deterministic for a given ``split_seed``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.data.base import DATASETS, RawData, option
from cifarlab.errors import ConfigError


def _class_templates(rng: np.random.Generator, k: int, size: int, channels: int) -> np.ndarray:
    """(k, size, size, channels) float templates: a mean colour plus one bright grid cell."""
    colours = rng.uniform(50, 170, size=(k, 1, 1, channels))
    templates = np.broadcast_to(colours, (k, size, size, channels)).copy()
    grid = math.ceil(math.sqrt(k))
    edges = np.linspace(0, size, grid + 1).astype(int)
    for c in range(k):  # one cell per class, not per image
        row, col = divmod(c, grid)
        templates[c, edges[row] : edges[row + 1], edges[col] : edges[col + 1]] += 80
    return templates


def _sample(rng: np.random.Generator, templates: np.ndarray, per_class: int):
    labels = rng.permutation(np.repeat(np.arange(len(templates)), per_class))
    noise = rng.normal(0, 20, size=(len(labels), *templates.shape[1:]))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _at_least(cfg: Any, key: str, default: int, low: int = 1, why: str = "") -> int:
    value = option(cfg, key, default)
    if not isinstance(value, int) or value < low:
        raise ConfigError(f"dataset.{key}", value, f"use a whole number of at least {low}{why}")
    return value


@DATASETS.register("synthetic")
def load_synthetic(cfg: Any, data_dir: Path | None = None) -> RawData:
    """``num_classes`` classes of ``image_size``² images with ``channels`` channels; no files."""
    k = _at_least(cfg, "num_classes", 10, low=2, why=": a classifier needs two classes to tell apart")
    size = _at_least(cfg, "image_size", 32)
    rng = np.random.default_rng(int(option(cfg, "split_seed", 0)))
    templates = _class_templates(rng, k, size, _at_least(cfg, "channels", 3))
    x_train, y_train = _sample(rng, templates, _at_least(cfg, "samples_per_class", 40))
    x_test, y_test = _sample(rng, templates, _at_least(cfg, "test_samples_per_class", 10))
    return RawData(x_train, y_train, x_test, y_test, [f"class_{i}" for i in range(k)])
