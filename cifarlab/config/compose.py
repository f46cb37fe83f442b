"""Composing cifarlab's config outside the CLI (bench, inference, tests), and reading overrides.

``compose_config`` is the one place that calls Hydra's compose API; it gives
the same config ``python -m cifarlab`` would, and turns Hydra's multi-line
composition errors into one line that names the key, the value and the fix.
"""

from __future__ import annotations

import difflib
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig

from cifarlab.config.locations import conf_dir
from cifarlab.config.presets import register_experiments
from cifarlab.config.schema import register_configs, validate
from cifarlab.errors import CifarlabError


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


def overridden_keys(overrides: Sequence[str]) -> set[str]:
    return {override_key(item) for item in overrides}


def describe_hydra_error(err: HydraException) -> str:
    """Hydra's multi-line composition errors, as one line with the key, value and fix."""
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, value = err.missing_cfg_file.rpartition("/")
        close = difflib.get_close_matches(value, err.options, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"{group}={value!r} is not an option of config group '{group}'; "
            f"{hint}choose one of: {', '.join(sorted(err.options))}"
        )
    lines = [str(err)]
    if err.__cause__ is not None:
        lines.append(str(err.__cause__))
    keep = []
    for line in "\n".join(lines).splitlines():
        line = line.strip()
        if line and not line.startswith(("reference_type", "object_type", "Config search path", "provider=")):
            keep.append(line.rstrip("."))
    return "; ".join(keep)
