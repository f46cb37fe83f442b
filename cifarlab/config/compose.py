"""Composing cifarlab's config outside the CLI (bench, inference, tests), and reading overrides.

``compose_config`` is the one place that calls Hydra's compose API; it gives
the same config ``python -m cifarlab`` would, and turns Hydra's multi-line
composition errors into one line (config/hydra_errors.py) naming the key, the value and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig

from cifarlab.config.hydra_errors import describe_hydra_error
from cifarlab.config.locations import conf_dir
from cifarlab.config.presets import register_experiments
from cifarlab.config.schema import register_configs, validate
from cifarlab.errors import CifarlabError

__all__ = [
    "compose_config",
    "describe_hydra_error",
    "override_key",
    "overridden_keys",
    "register_config_store",
]


def register_config_store() -> None:
    """Put the typed schema and the experiment presets in Hydra's ConfigStore (idempotent)."""
    register_configs()
    register_experiments()


def compose_config(
    overrides: Sequence[str] = (), *, check: bool = True, hydra_config: bool = False
) -> DictConfig:
    """``conf/`` with Hydra ``overrides``, as the training CLI composes it.

    ``check`` runs the range checks; ``hydra_config`` keeps the ``hydra`` node
    (what ``HydraConfig.instance().set_config`` needs). Raises CifarlabError in one line.
    """
    register_config_store()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)
    except HydraException as err:
        raise CifarlabError(describe_hydra_error(err)) from None
    finally:
        GlobalHydra.instance().clear()
    if check:
        validate(cfg)
    return cfg


def override_key(override: str) -> str:
    """The config key an override sets: ``+model.width=3`` -> ``model.width``, ``model@x=y`` -> ``model``."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


RUN_NAME_LIMIT = 250  # MLflow's limit on a run name


def compact_run_name(base: str, overrides: Sequence[str]) -> str:
    """A run's name in the MLflow UI: what differs first, each key by its last part, then ``base``
    (``lr=0.01 seed=2 · mlp-cifar10``), so that runs stay apart in the run list's narrow name column."""
    differences = [_short(override.lstrip("+~")) for override in overrides]
    return " · ".join([" ".join(differences), base] if differences else [base])[:RUN_NAME_LIMIT]


# Last parts that mean nothing without the part before (``enabled=false``: which callback?).
_VAGUE_LEAVES = ("name", "enabled")


def _short(override: str) -> str:
    """``optimizer.lr=0.01`` -> ``lr=0.01``, ``optimizer.schedule.name=cosine`` -> ``schedule.name=cosine``;
    a group's choice (``optimizer=adam``) as it is."""
    key, _, value = override.partition("=")
    parts = key.split(".")
    keep = 2 if parts[-1] in _VAGUE_LEAVES else 1
    return f"{'.'.join(parts[-keep:])}={value}"


def overridden_keys(overrides: Sequence[str]) -> set[str]:
    return {override_key(item) for item in overrides}
