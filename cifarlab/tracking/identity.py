"""What makes two runs the same run: the config hash and the flattened params.

Imports no TensorFlow and no MLflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

# Config keys that do not change what a run computes: left out of its identity.
_IDENTITY_EXCLUDES = ("paths", "tracking")
# Keys that change how fast a run goes, not what it learns: a run resumed or re-swept with
# another value is the same run (and runs recorded before the key existed keep their hash).
_SPEED_ONLY_TRAINER_KEYS = ("input_parallelism",)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists stay whole values (``model.filters=[32, 64]``)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_hash(cfg: DictConfig, data_digest: str | None = None) -> str:
    """A short fingerprint of everything that changes what the run computes.

    ``data_digest`` (the images' content, ``cifarlab.data.content_digest``) makes a run of
    the same config on changed data a different run: a sweep rerun then trains again.
    """
    resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    identity = {k: v for k, v in resolved.items() if k not in _IDENTITY_EXCLUDES}
    if data_digest is not None:
        identity["data_digest"] = data_digest
    if isinstance(identity.get("trainer"), dict):
        identity["trainer"] = {
            k: v for k, v in identity["trainer"].items() if k not in _SPEED_ONLY_TRAINER_KEYS
        }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
