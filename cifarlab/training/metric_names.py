"""cifarlab's metric names (``val/accuracy``) and the keys Keras puts in ``logs`` (``val_accuracy``)."""

from __future__ import annotations


def keras_metric_name(name: str) -> str:
    """Our metric names (``val/accuracy``) to the keys Keras puts in ``logs`` (``val_accuracy``)."""
    split, _, metric = name.partition("/")
    if not metric:
        return name
    return metric if split == "train" else f"{split}_{metric}"


def tracked_metric_name(keras_name: str) -> str:
    """Keras ``logs`` keys to our names: ``val_loss`` -> ``val/loss``, ``loss`` -> ``train/loss``."""
    if keras_name.startswith("val_"):
        return f"val/{keras_name[4:]}"
    return f"train/{keras_name}"


def monitor_mode(monitor: str) -> str:
    """``min`` for losses, ``max`` for everything else (accuracies)."""
    return "min" if "loss" in monitor else "max"
