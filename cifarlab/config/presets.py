"""Experiment presets from the top-level ``experiments/`` folder as Hydra's ``experiment`` group.

The presets sit beside their results table rather than inside ``conf/``; they are
stored in Hydra's ConfigStore under the ``experiment`` group at the global package,
so ``experiment=<name>`` behaves exactly like a ``# @package _global_`` YAML group.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from cifarlab.config.locations import experiments_dir


def register_experiments() -> list[str]:
    store = ConfigStore.instance()
    names = []
    for path in sorted(experiments_dir().glob("*.yaml")):
        store.store(
            group="experiment",
            name=path.stem,
            node=OmegaConf.load(path),
            package="_global_",
            provider="cifarlab.experiments",
        )
        names.append(path.stem)
    return names
