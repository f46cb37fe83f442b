"""How a run describes itself: its MLflow tags, the hardware, the one-line plan it prints."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import keras
import tensorflow as tf

from cifarlab.config.compose import compact_run_name, override_key
from cifarlab.data.base import DataSplits
from cifarlab.training.plan import RunPlan
from cifarlab.training.run_hooks import RunHooks


def run_tags(plan: RunPlan, config_hash: str, hooks: RunHooks) -> dict[str, str]:
    """Tags of a new run: what it trains, its identity, the command line and a preset's claim."""
    tags = {
        "dataset": plan.data.name,
        "model": plan.model.name,
        "optimizer": plan.optimizer.name,
        "augmentation": plan.augmentation.name,
        "config_hash": config_hash,
        "overrides": " ".join(hooks.overrides),
        "hardware": hardware(),
        **hooks.preset_choices,
        **{f"claim.{k}": v for k, v in plan.claim.items()},
        **plan.tracking.tags,
    }
    if hooks.parent_run_id:
        tags["mlflow.parentRunId"] = hooks.parent_run_id
    return {k: str(v) for k, v in tags.items() if v not in (None, "")}


# Overrides that say where things are or how they are recorded, not what is trained: left out of names.
_PLACE_KEYS = (
    "paths.",
    "tracking.",
    "reports.",
    "hydra.",
    "dataset.data_dir",
    "dataset.download",
    "model=",
    "dataset=",
)


def run_name_from(base: str, overrides: list[str], previous: list[str]) -> str:
    """The overrides that change what is trained, then ``<model>-<dataset>`` (``lr=0.01 seed=2 · mlp-cifar10``):
    runs that differ can be told apart in the MLflow UI's list.

    Those not among ``previous`` (the overrides of the experiment's run before) come first: the
    UI's name column shows about 20 characters, and two runs that share ``epochs=30 batch_size=32``
    differ in what follows."""
    last = {override_key(o): o for o in overrides}  # a key set twice takes its last value, as Hydra does
    trained = [o for o in last.values() if not o.lstrip("+~").startswith(_PLACE_KEYS)]
    changed = [o for o in trained if o not in previous]
    return compact_run_name(base, changed + [o for o in trained if o in previous])


def hardware() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    return f"{len(gpus)} GPU + {cpu}" if gpus else cpu


def plan_line(plan: RunPlan, data: DataSplits, precision: str) -> str:
    """The line a run starts with: its data, model, optimizer, augmentation, epochs, batch and precision."""
    t = plan.trainer
    epochs = f"{t.epochs} epoch{'' if t.epochs == 1 else 's'}"
    return (
        f"cifarlab: {data.name} ({len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test), "
        f"model {plan.model.name}, {plan.optimizer.name} lr={plan.optimizer.lr:g}, "
        f"augmentation {plan.augmentation.name}, {epochs} x batch {t.batch_size}, "
        f"precision {precision}"
    )


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def print_summary(
    test_accuracy: float, test_loss: float, run_id: str | None, experiment: str, uri: str
) -> None:
    """The closing lines: test accuracy, the MLflow run, and how to open the UI on its store."""
    print(f"cifarlab: test accuracy {test_accuracy:.4f} (loss {test_loss:.4f})", flush=True)
    if not run_id:
        return
    print(f"cifarlab: MLflow run {run_id} in experiment '{experiment}'", flush=True)
    if uri.startswith(("http://", "https://")):
        print(f"cifarlab: open {uri}/#/experiments to compare runs", flush=True)
    else:
        print(
            f"cifarlab: compare runs with: mlflow ui --backend-store-uri {_relative_store(uri)}", flush=True
        )


def _relative_store(uri: str) -> str:
    """A SQLite store under the working folder as a relative URI (shorter to copy)."""
    if not uri.startswith("sqlite:///"):
        return uri
    db = Path(uri.removeprefix("sqlite:///"))
    try:
        return f"sqlite:///{db.relative_to(Path.cwd())}"
    except ValueError:
        return uri
