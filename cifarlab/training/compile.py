"""Compiling a model for training: loss, metrics, optimizer and its learning-rate schedule."""

from __future__ import annotations

import keras

from cifarlab.data.mixing import mixes_labels
from cifarlab.models.layers.swap import freeze_cancelled_biases
from cifarlab.training.budget import fit_to_budget
from cifarlab.training.builders import LearningRate
from cifarlab.training.plan import RunPlan


def soft_labels(plan: RunPlan) -> bool:
    """Whether training takes one-hot labels: for label smoothing, or for mixup or CutMix in any stage.

    One answer for the whole run, so every stage's loss and labels agree.
    """
    augmentations = [plan.augmentation, *(s.augmentation for s in plan.stages if s.augmentation)]
    return bool(plan.trainer.label_smoothing) or any(mixes_labels(a) for a in augmentations)


def compile_model(
    model: keras.Model, plan: RunPlan, steps_per_epoch: int, epochs: int, lr: float | None = None
) -> LearningRate:
    """Compile for ``epochs`` more epochs (from rate ``lr`` when given, else ``optimizer.lr``);
    returns the learning rate (schedule) the optimizer follows."""
    t = plan.trainer
    optimizer = plan.optimizer.with_lr(lr)
    learning_rate = optimizer.schedule(steps_per_epoch, epochs)
    if t.time_budget_s and t.fit_schedule_to_budget:
        learning_rate = fit_to_budget(learning_rate, steps_per_epoch * epochs)
    if t.freeze_cancelled_bias:
        freeze_cancelled_biases(model)  # again at each compile: set_frozen resets the flags
    if soft_labels(plan):
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(
            name="accuracy"
        )  # against the mixed label's larger share
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=optimizer.build(steps_per_epoch, epochs, learning_rate=learning_rate),
        loss=loss,
        metrics=[accuracy],
        jit_compile=t.jit_compile,
        steps_per_execution=t.steps_per_execution,
    )
    return learning_rate
