"""cnn_bn as a cifarlab run builds it, and its variants: one per speed switch, each with its input pipeline.

Only public functions of the data, models and training subpackages: what is measured is what a run does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from cifarlab.bench.plan import DEFAULT_ON, MACHINE_DECIDED, PRECISION_SWITCHES, Plan
from cifarlab.bench.throughput import materialise
from cifarlab.data import DataSplits
from cifarlab.data.pipeline import map_calls, prefetch_size, resolve_input_parallelism, train_dataset
from cifarlab.models.layers.dropout_choice import calibrate, calibration_enabled, resolve_fast_dropout
from cifarlab.models.layers.swap import use_fast_dropout, use_fused_batchnorm
from cifarlab.training.builders import build_augmentation
from cifarlab.training.compile import compile_model
from cifarlab.training.evaluation import evaluate_model
from cifarlab.training.plan import RunPlan, assemble
from cifarlab.training.precision import apply_precision, global_policy, resolve_precision


def cached_train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    augment: Callable,
    seed: int,
    parallel_calls: int | None,
) -> tf.data.Dataset:
    """cifarlab's training pipeline with ``.cache()`` after the deterministic stage (the float cast).

    Augmented batches are never cached: that would replay one augmentation every epoch.
    """
    calls = map_calls(parallel_calls)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=calls).cache()
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat().batch(batch_size)
    # Each batch's draws from its position in the stream, as the real pipeline's (cifarlab.data.augment).
    ds = ds.enumerate().map(
        lambda i, xy: (augment(xy[0], i), xy[1]), num_parallel_calls=calls, deterministic=False
    )
    return ds.prefetch(prefetch_size(parallel_calls))


def variant_cfg(cfg: DictConfig, **trainer: Any) -> DictConfig:
    """``cfg`` with some ``trainer`` settings changed: one speed switch's variant."""
    return cast(DictConfig, OmegaConf.merge(cfg, {"trainer": trainer}))


def build_compiled(plan: RunPlan, data: DataSplits, steps_per_epoch: int, epochs: int) -> keras.Model:
    """cnn_bn as a cifarlab run builds and compiles it (precision, jit_compile, steps_per_execution)."""
    t = plan.trainer
    precision = resolve_precision(t.precision)
    keras.utils.set_random_seed(t.seed)
    keras.mixed_precision.set_dtype_policy(global_policy(precision))
    try:
        model = plan.model.build(data.input_shape, data.num_classes)
        if t.fused_batchnorm:
            model = use_fused_batchnorm(model)
        if resolve_fast_dropout(t.fast_dropout):
            model = use_fast_dropout(model)
        model = apply_precision(model, precision)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    compile_model(model, plan, steps_per_epoch, epochs)
    return model


def train_data(
    plan: RunPlan, data: DataSplits, parallel_calls: int | None | str = "config"
) -> tuple[tf.data.Dataset, Callable | None]:
    """cifarlab's training pipeline (repeated) and its augmentation, with the run's
    ``trainer.input_parallelism`` unless ``parallel_calls`` is given."""
    t = plan.trainer
    calls = resolve_input_parallelism(t.input_parallelism) if parallel_calls == "config" else parallel_calls
    assert not isinstance(calls, str), f"parallel_calls={calls!r}: a number, None or 'config'"
    augment = build_augmentation(plan.augmentation, seed=t.seed)
    return train_dataset(
        data.x_train,
        data.y_train,
        t.batch_size,
        augment,
        seed=t.seed,
        repeat=True,
        parallel_calls=calls,
    ), augment


class Snapshot:
    """A model's weights and optimizer state, to restart training from the same point."""

    def __init__(self, model: keras.Model) -> None:
        model.optimizer.build(model.trainable_variables)
        self.model = model
        self.weights = model.get_weights()
        self.optimizer = [v.numpy() for v in model.optimizer.variables]

    def restore(self) -> keras.Model:
        self.model.set_weights(self.weights)
        for variable, value in zip(self.model.optimizer.variables, self.optimizer):
            variable.assign(value)
        return self.model


def short_accuracy(snapshot: Snapshot, plan: RunPlan, data: DataSplits, epochs: int) -> dict[str, float]:
    """Accuracy after ``epochs`` epochs from the snapshot, the same data order for every variant.

    Full batches only, from the same pipeline as the timing, so an XLA model meets no new shape.
    """
    t = plan.trainer
    model = snapshot.restore()
    keras.utils.set_random_seed(t.seed)
    dataset, _ = train_data(plan, data)
    steps = max(1, len(data.x_train) // t.batch_size)
    history = model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False).history
    _, test_accuracy, _ = evaluate_model(
        model, data, t.eval_batch_size, flip=t.test_time_flip, shift=t.test_time_shift
    )
    return {
        "train_accuracy": float(history["accuracy"][-1]),
        "train_loss": float(history["loss"][-1]),
        "test_accuracy": float(test_accuracy),
    }


def precision_variant(precision: str, resolved: str) -> str:
    """The variant that trains in ``precision``: the default one where ``trainer.precision=auto`` picks it."""
    return "default" if precision == resolved else f"precision_{precision}"


def variant_configs(cfg: DictConfig, steps_per_execution: int, resolved: str) -> dict[str, DictConfig]:
    """The default config and one per speed switch measured in this process."""
    precisions = [p for p in ("float32", *PRECISION_SWITCHES) if p != resolved]
    return {
        "default": cfg,
        "jit_compile": variant_cfg(cfg, jit_compile=True),
        "steps_per_execution": variant_cfg(cfg, steps_per_execution=steps_per_execution),
        **{f"without_{name}": variant_cfg(cfg, **{name: False}) for name in DEFAULT_ON},
        # cfg holds what auto chose here (build_variants): the variant is the other choice.
        **{f"other_{name}": variant_cfg(cfg, **{name: not cfg.trainer[name]}) for name in MACHINE_DECIDED},
        **{precision_variant(p, resolved): variant_cfg(cfg, precision=p) for p in precisions},
    }


def accuracy_pairs(resolved: str) -> dict[str, tuple[str, str]]:
    """Switches that change the arithmetic, each as (variant switched on, its reference)."""
    return {
        "jit_compile": ("jit_compile", "default"),
        **{
            p: (precision_variant(p, resolved), precision_variant("float32", resolved))
            for p in PRECISION_SWITCHES
        },
    }


@dataclass
class VariantSet:
    """Every model and input pipeline the in-process stage times."""

    plan: RunPlan  # the default variant's
    data: DataSplits
    precision: str  # what trainer.precision resolves to here
    fast_dropout: bool  # what trainer.fast_dropout resolves to here
    fast_dropout_calibration: dict | None  # the calibration behind it (None: not auto, or calibration off)
    input_calls: int | None  # what trainer.input_parallelism resolves to (None: tf.data autotuning)
    plans: dict[str, RunPlan]  # variant name -> its run plan
    accuracy_pairs: dict[str, tuple[str, str]]
    snapshots: dict[str, Snapshot]  # the variants of the accuracy check, before any timing
    runs: dict[str, tuple[keras.Model, tf.data.Dataset]]  # measured name -> (model, dataset)

    @property
    def default_model(self) -> keras.Model:
        return self.runs["pipeline"][0]


def variant_runs(
    plan: RunPlan, data: DataSplits, models: dict[str, keras.Model], steps: int, input_calls: int | None
) -> dict[str, tuple[keras.Model, tf.data.Dataset]]:
    """Measured name -> (model, dataset): the default model on each input pipeline, each variant on the pipeline."""
    pipeline, augment = train_data(plan, data)
    assert augment is not None, "the bench measures an augmented pipeline"
    cached = cached_train_dataset(
        data.x_train, data.y_train, plan.trainer.batch_size, augment, plan.trainer.seed, input_calls
    )
    # The other input_parallelism: tf.data autotuning where the default is a fixed count, and back.
    other_input, _ = train_data(plan, data, parallel_calls=None if input_calls is not None else 1)
    default = models["default"]
    return {
        "pipeline": (default, pipeline),
        "memory": (default, materialise(pipeline, steps)),
        **{name: (model, pipeline) for name, model in models.items() if name != "default"},
        "caching": (default, cached),
        "other_input_parallelism": (default, other_input),
    }


def build_variants(cfg: DictConfig, data: DataSplits, plan: Plan) -> VariantSet:
    """cnn_bn and its variants, compiled for one measurement's steps, with snapshots for the accuracy check."""
    resolved = resolve_precision(cfg.trainer.precision)
    setting = cfg.trainer.fast_dropout
    calibration = calibrate() if setting == "auto" and calibration_enabled() else None
    cfg = variant_cfg(cfg, fast_dropout=resolve_fast_dropout(setting))
    steps = plan.warm_steps + plan.measure_steps
    plans = {
        name: assemble(c) for name, c in variant_configs(cfg, plan.steps_per_execution, resolved).items()
    }
    models = {name: build_compiled(p, data, steps, 1) for name, p in plans.items()}
    pairs = accuracy_pairs(resolved)
    snapshots = {v: Snapshot(models[v]) for pair in pairs.values() for v in pair}
    default = plans["default"]
    input_calls = resolve_input_parallelism(default.trainer.input_parallelism)
    return VariantSet(
        plan=default,
        data=data,
        precision=resolved,
        fast_dropout=bool(default.trainer.fast_dropout),
        fast_dropout_calibration=calibration,
        input_calls=input_calls,
        plans=plans,
        accuracy_pairs=pairs,
        snapshots=snapshots,
        runs=variant_runs(default, data, models, steps, input_calls),
    )
