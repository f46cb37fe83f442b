"""Warnings for runs that finish but cannot mean what the user wanted: a class missing from a
split, or a test score no better than guessing. Each is printed and kept on the run as a tag."""

from __future__ import annotations

import math

import numpy as np

from cifarlab.data.base import DataSplits
from cifarlab.tracking import Recorder

# A test score within this many standard errors of guessing counts as chance.
CHANCE_MARGIN_SE = 2.0


def missing_classes(labels: np.ndarray, class_names: list[str]) -> list[str]:
    """The classes with no image among ``labels``."""
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    return [name for name, count in zip(class_names, counts) if count == 0]


def split_warnings(data: DataSplits, val_fraction: float) -> dict[str, str]:
    """A tag per split (train, validation) that lacks a class, with what to change."""
    found = {}
    for split, labels in (("train", data.y_train), ("validation", data.y_val)):
        missing = missing_classes(labels, data.class_names)
        if missing:
            found[f"warning.{split}_split"] = (
                f"dataset.val_fraction={val_fraction:g} leaves {len(missing)} of {data.num_classes} classes "
                f"with no {split} image ({', '.join(missing[:5])}); use a fraction that keeps every class "
                "on both sides, e.g. dataset.val_fraction=0.1, or add images"
            )
    return found


def chance_warning(test_accuracy: float, data: DataSplits, lr: float) -> dict[str, str]:
    """A tag when the test accuracy is within noise of guessing among the classes."""
    chance = 1.0 / data.num_classes
    n_test = max(len(data.y_test), 1)
    noise = CHANCE_MARGIN_SE * math.sqrt(chance * (1.0 - chance) / n_test)
    if not test_accuracy <= chance + noise:  # (NaN: a diverged run, which says so itself)
        return {}
    return {
        "warning.chance_level": (
            f"test accuracy {test_accuracy:.3f} is at chance level for {data.num_classes} classes "
            f"({chance:.3f}): the model learned nothing it can use; try a lower rate "
            f"(optimizer.lr={lr:g}, e.g. optimizer.lr={lr / 10:g}) or more epochs (trainer.epochs)"
        )
    }


def report_warnings(recorder: Recorder, warnings: dict[str, str]) -> None:
    """Print each warning in one line and tag the run with it."""
    for text in warnings.values():
        print(f"cifarlab: warning: {text}", flush=True)
    if warnings:
        recorder.set_tags(warnings)
