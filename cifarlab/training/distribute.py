"""tf.distribute strategies for ``trainer.strategy``, and who is the chief."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from cifarlab.errors import ConfigError

_multi_worker: tf.distribute.Strategy | None = None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``mirrored``: data parallel over this machine's devices; ``multi_worker``: over the
    processes TF_CONFIG lists (one per machine, or several on one); ``default``: one device."""
    global _multi_worker
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Collectives are configured once per process, before TensorFlow runs anything:
        # later jobs in the same process reuse the strategy.
        if _multi_worker is None:
            try:
                _multi_worker = tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as err:
                raise ConfigError(
                    "trainer.strategy",
                    name,
                    f"TF_CONFIG must describe the cluster and this process's task ({str(err).splitlines()[0]})",
                    problem="could not start",
                ) from None
        return _multi_worker
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
