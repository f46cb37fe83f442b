"""tf.distribute strategies for ``trainer.strategy``, and who is the chief."""

from __future__ import annotations

import json
import os

import tensorflow as tf


from cifarlab.errors import ConfigError


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``mirrored``: data parallel over this machine's devices; ``default``: one device."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Keras 3's TF trainer reduces nested per-replica batches in ways
        # MultiWorkerMirroredStrategy rejects (keras-team/keras#20585): fail clearly
        # before any work rather than deep inside fit.
        raise ConfigError(
            "trainer.strategy", name,
            "Keras 3 cannot train under tf.distribute.MultiWorkerMirroredStrategy yet "
            "(keras-team/keras#20585); use trainer.strategy=mirrored on one machine",
            problem="is not supported",
        )
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """The process that records to MLflow and writes checkpoints: the ``chief`` task, or
    worker 0 when the cluster has no chief, or the only process outside a cluster."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in config.get("cluster", {})
