"""The data a model was trained on, rebuilt: the run's config from its params, then one split.

``run_config`` composes ``conf/`` (through ``cifarlab.config.compose``) and sets
the dataset to what the run recorded; ``load_split`` loads the test or
validation split of that dataset. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from cifarlab.config.compose import compose_config, overridden_keys
from cifarlab.data import resolve_data_dir
from cifarlab.data.base import check_raw, option, subsample

SPLITS = ("test", "val")


@dataclass
class SplitData:
    """The images and labels of one split, with the dataset's class names."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    name: str
    split: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def param_value(text: str) -> Any:
    """A recorded param as a config value (params are strings; ``None`` was null)."""
    return None if text in ("None", "null") else text


# How a run scored its test split; evaluating its model again scores it the same way.
TEST_VIEW_KEYS = ("trainer.test_time_flip", "trainer.test_time_shift")


def apply_run_params(cfg: DictConfig, params: Mapping[str, str], overrides: Sequence[str] = ()) -> DictConfig:
    """Set ``cfg.dataset``, ``cfg.paths.data_dir`` and the test-time views
    (``trainer.test_time_flip``, ``trainer.test_time_shift``) to what the run recorded,
    except what ``overrides`` set.

    A ``dataset=<name>`` override picks another dataset: then none of the run's
    ``dataset.*`` params apply.
    """
    user = overridden_keys(overrides)
    with open_dict(cfg):
        for key in TEST_VIEW_KEYS:
            if key in params and key not in user:
                OmegaConf.update(cfg, key, param_value(params[key]), merge=False)
        if "dataset" not in user:
            for key, value in params.items():
                field = key.removeprefix("dataset.")
                if (
                    key.startswith("dataset.")
                    and key not in user
                    and "." not in field
                    and field in cfg.dataset
                ):
                    OmegaConf.update(cfg, key, param_value(value), merge=False)
        if "paths.data_dir" not in user and params.get("paths.data_dir") not in (None, "None"):
            cfg.paths.data_dir = params["paths.data_dir"]
    return cfg


def run_config(params: Mapping[str, str], overrides: Sequence[str] = ()) -> DictConfig:
    """The config to rebuild a run's data: ``conf/`` + ``overrides``, dataset from the run's params."""
    return apply_run_params(compose_config(overrides), params, overrides)


def load_split(cfg: DictConfig, split: str = "test") -> SplitData:
    """The ``test`` or ``val`` split of ``cfg.dataset``, as training made it.

    The test split is read alone: it needs no training images, so an image
    folder holding only ``test/`` is evaluated whole.
    """
    # Deferred: the registries' builders import TensorFlow, which predict's argument checks avoid.
    from cifarlab.training.builders import DATASETS, load_dataset

    dataset = cfg.dataset
    if split == "val":
        data = load_dataset(dataset, default_data_dir=cfg.paths.data_dir)
        return SplitData(data.x_val, data.y_val, list(data.class_names), data.name, split)
    name = str(dataset.name)
    data_dir = resolve_data_dir(dataset, cfg.paths.data_dir)
    raw = check_raw(DATASETS.get(name)(dataset, data_dir), f"dataset {name!r} in {data_dir}")
    # The same subsample load_dataset takes of the test split (a no-op at limit_fraction=1).
    seed = int(option(dataset, "split_seed", 0))
    x, y = subsample(raw.x_test, raw.y_test, float(option(dataset, "limit_fraction", 1.0)), seed)
    return SplitData(x, y, list(raw.class_names), name, split)
