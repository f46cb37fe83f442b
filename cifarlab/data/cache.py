"""The splits last loaded in this process, kept for the next job that asks for the same data.

A search runs many trials in one worker process, each loading its dataset anew: for the
CIFAR-10 subset that is seven pickles read and a stratified split drawn every trial. The
cache keeps one entry, the last splits loaded, under a key made of the dataset's config and
the size and modification time of every file under its folder, so a changed file or
another dataset loads afresh. The cached arrays are read-only: a job that changed them
would change the next job's data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cifarlab.data.base import DataSplits

_last: tuple[tuple, DataSplits] | None = None


def _files_state(folder: Path | None) -> tuple:
    """(relative path, size, mtime) of every file under ``folder``; empty when there is none."""
    if folder is None or not folder.is_dir():
        return ()
    state = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            state.append((os.path.relpath(os.path.join(root, name), folder), stat.st_size, stat.st_mtime_ns))
    return tuple(state)


def _config_text(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True) if isinstance(cfg, DictConfig) else repr(cfg)


def _read_only(splits: DataSplits) -> DataSplits:
    for array in (splits.x_train, splits.y_train, splits.x_val, splits.y_val, splits.x_test, splits.y_test):
        array.setflags(write=False)
    return splits


def cached_splits(cfg: Any, folder: Path | None, load: Callable[[], DataSplits]) -> DataSplits:
    """``load()``'s splits, or the ones it gave last time for the same config and files."""
    global _last
    which = (_config_text(cfg), str(folder))
    if _last is not None and _last[0] == (*which, _files_state(folder)):
        return _last[1]
    _last = None  # let the old arrays go before the new ones are read
    splits = _read_only(load())
    _last = ((*which, _files_state(folder)), splits)  # the files as they are after a download
    return splits
