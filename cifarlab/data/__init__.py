"""Datasets as uint8 NumPy arrays: train / validation / test, picked by ``dataset.name``.

``load_dataset`` finds the registered loader, holds out a stratified validation
split with a fixed seed, and optionally keeps only a fraction of every split.
Importing this package never imports TensorFlow. The loaders register
themselves in ``DATASETS`` when ``cifarlab.training.builders`` imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.data.base import (
    DATASETS,
    DataSplits,
    RawData,
    check_raw,
    check_trainable,
    option,
    stratified_split,
    subsample,
)
from cifarlab.data.cache import cached_splits

__all__ = ["DATASETS", "DataSplits", "RawData", "data_source", "load_dataset", "resolve_data_dir"]


def resolve_data_dir(cfg: Any, default_data_dir: str | Path) -> Path:
    """``cfg.data_dir`` when set, else ``default_data_dir``; ``~`` expanded, relative to the cwd."""
    chosen = option(cfg, "data_dir", None) or default_data_dir
    return Path(str(chosen)).expanduser().resolve()


def data_source(cfg: Any, default_data_dir: str | Path) -> str | None:
    """The folder a dataset's images are read from, for its lineage; None for generated images."""
    if str(cfg.name) == "synthetic":
        return None
    return str(resolve_data_dir(cfg, default_data_dir))


def load_dataset(cfg: Any, default_data_dir: str | Path) -> DataSplits:
    """Load ``cfg.name`` and split it into train / validation / test.

    The validation split comes out of the training set (stratified, seeded by
    ``cfg.split_seed``); the test split is left as the dataset defines it. Raises
    DataError when the training images are missing or all of one class. The process
    keeps the last splits it loaded (read-only) for the next call with the same config
    and files: a search's trials load their data once per worker.
    """
    source = data_source(cfg, default_data_dir)
    return cached_splits(cfg, Path(source) if source else None, lambda: _load(cfg, default_data_dir))


def _load(cfg: Any, default_data_dir: str | Path) -> DataSplits:
    name = str(cfg.name)
    data_dir = resolve_data_dir(cfg, default_data_dir)
    raw = check_raw(DATASETS.get(name)(cfg, data_dir), f"dataset {name!r} in {data_dir}")
    check_trainable(raw, data_dir)  # before any run opens: one class or none cannot be learnt
    seed = int(option(cfg, "split_seed", 0))
    x_train, y_train, x_val, y_val = stratified_split(
        raw.x_train, raw.y_train, float(option(cfg, "val_fraction", 0.1)), seed
    )
    splits = [(x_train, y_train), (x_val, y_val), (raw.x_test, raw.y_test)]
    fraction = float(option(cfg, "limit_fraction", 1.0))
    if fraction < 1.0:
        splits = [subsample(x, y, fraction, seed) for x, y in splits]
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    return DataSplits(x_train, y_train, x_val, y_val, x_test, y_test, raw.class_names, name)
