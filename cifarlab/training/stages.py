"""Fitting: stage after stage from the same weights, or in closed form for models without gradients."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarlab.config.schema import AugmentationConfig, StageConfig, TrainerConfig
from cifarlab.data.base import DataSplits
from cifarlab.data.pipeline import eval_dataset
from cifarlab.errors import CifarlabError
from cifarlab.models.transfer import set_frozen
from cifarlab.reports.figures import save_figure
from cifarlab.runtime.batch_signals import StopOnSignal
from cifarlab.tracking import Recorder
from cifarlab.training.budget import BudgetProgbarLogger, TimeBudget
from cifarlab.training.builders import CallbackContext, build_callbacks
from cifarlab.training.compile import compile_model
from cifarlab.training.datasets import stage_datasets, steps_per_epoch
from cifarlab.training.divergence import StopOnNonFiniteLoss, TrainingDiverged
from cifarlab.training.epoch_draws import EpochDraws
from cifarlab.training.metric_names import tracked_metric_name
from cifarlab.training.plan import RunPlan
from cifarlab.training.run_hooks import RunHooks
from cifarlab.training.state import RunState


@dataclass
class FitContext:
    """What fitting needs beyond the plan: the data, where it records and keeps state, the hooks."""

    data: DataSplits
    recorder: Recorder
    state: RunState
    hooks: RunHooks


def stage_augmentation(plan: RunPlan, stage: StageConfig) -> DictConfig:
    """The stage's own augmentation node (unset keys at their defaults), else the run's."""
    if stage.augmentation is None:
        return plan.augmentation
    return cast(DictConfig, OmegaConf.merge(OmegaConf.structured(AugmentationConfig), stage.augmentation))


def fit_stages(plan: RunPlan, model: keras.Model, ctx: FitContext) -> dict[str, list[float]]:
    """Train stage after stage from the same weights; epochs are numbered across stages."""
    t = plan.trainer
    stages = plan.stages
    epoch_steps = steps_per_epoch(t, ctx.data)
    total_epochs = sum(stage.epochs for stage in stages)
    # One clock across all stages, and across a resume: the epochs already recorded count.
    spent = sum(ctx.recorder.metric_history("epoch_seconds").values())
    budget = TimeBudget(t.time_budget_s, spent=spent) if t.time_budget_s else None
    fit_history: dict[str, list[float]] = {}
    epoch = 0
    for index, stage in enumerate(stages):
        if stage.freeze is not None:
            set_frozen(model, stage.freeze)
        # A new optimizer only where the stage asks for one: otherwise training
        # continues exactly, optimizer state included.
        if index == 0 or stage.freeze is not None or stage.lr is not None:
            learning_rate = compile_model(model, plan, epoch_steps, total_epochs - epoch, lr=stage.lr)
            if budget is not None:
                budget.follow(learning_rate)
        if len(stages) > 1:
            print(
                f"cifarlab: stage {index + 1}/{len(stages)} '{stage.name}': {stage.epochs} epochs", flush=True
            )
        if (
            budget is not None and index == len(stages) - 1
        ):  # room for the budget to stretch the schedule into
            stage = replace(stage, epochs=budget.epochs_to_run(stage.epochs))
        history = _fit_stage(plan, model, ctx, stage, index, epoch, budget)
        for name, values in history.items():
            fit_history.setdefault(name, []).extend(values)
        epoch += len(history.get("loss", []))
        if budget is not None and budget.exhausted:
            if budget.out_of_time:
                _say_cut_short(ctx, budget.seconds, epoch, total_epochs)
            break
    return recorded_history(ctx.recorder, fit_history)


def _say_cut_short(ctx: FitContext, seconds: float, epochs: int, planned: int) -> None:
    """A run the time budget stopped: on the screen and as a tag (the results table shows it)."""
    note = f"cut short by trainer.time_budget_s={seconds:g} after {epochs} epochs (planned {planned})"
    print(f"cifarlab: {note}; evaluating", flush=True)
    ctx.recorder.set_tags({"time_budget": note})


def _fit_stage(
    plan: RunPlan,
    model: keras.Model,
    ctx: FitContext,
    stage: StageConfig,
    index: int,
    first_epoch: int,
    budget: TimeBudget | None,
) -> dict[str, list[float]]:
    t = plan.trainer
    draws = EpochDraws()  # each epoch's shuffle, augmentation and dropout from (seed, epoch)
    train_ds, val_ds = stage_datasets(plan, ctx.data, stage_augmentation(plan, stage), draws.first_epoch)
    try:
        fit = model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=first_epoch,
            epochs=first_epoch + stage.epochs,
            steps_per_epoch=steps_per_epoch(t, ctx.data),  # the stream of epochs is endless
            validation_steps=t.validation_steps,
            callbacks=[*stage_callbacks(plan, ctx, stage=index, budget=budget), draws],
            shuffle=False,  # the dataset shuffles itself
            verbose=verbosity(t.verbose),
        )
    except TrainingDiverged as err:
        raise CifarlabError(
            f"{err}; lower optimizer.lr (now {plan.optimizer.lr:g}) or set optimizer.clipnorm"
        ) from None
    return fit.history


def stage_callbacks(
    plan: RunPlan, ctx: FitContext, stage: int, budget: TimeBudget | None
) -> list[keras.callbacks.Callback]:
    """The configured callbacks, the hooks' extras, the plateau schedule's, the time budget, the NaN
    stop and the stop on a signal.

    The NaN stop comes whether configured or not: a diverged run otherwise fails
    later, with an error about NaN inputs far from its cause.
    """
    t = plan.trainer
    images_per_epoch = t.steps_per_epoch * t.batch_size if t.steps_per_epoch else len(ctx.data.x_train)
    callback_ctx = CallbackContext(
        checkpoint_dir=ctx.state.checkpoint_dir,
        backup_dir=ctx.state.backup_dir,
        recorder=ctx.recorder,
        images_per_epoch=images_per_epoch,
        stage=stage,
        class_names=ctx.data.class_names,
        best_so_far=_best_so_far(plan.callbacks, ctx.recorder),
    )
    callbacks = build_callbacks(plan.callbacks, callback_ctx) + ctx.hooks.callbacks()
    progress = BudgetProgbarLogger(budget) if budget is not None and verbosity(t.verbose) else None
    extras = [plan.optimizer.plateau_callback(), budget, progress, StopOnSignal()]
    if not any(isinstance(cb, StopOnNonFiniteLoss) for cb in callbacks):
        extras.append(StopOnNonFiniteLoss())
    return callbacks + [cb for cb in extras if cb is not None]


def _best_so_far(callbacks: DictConfig, recorder: Recorder) -> dict[str, float]:
    """The best value already recorded of each monitored metric (a resumed run's checkpoints need it)."""
    best = {}
    for node in callbacks.values():
        if node is not None and node.get("monitor"):
            recorded = recorder.metric_history(node.monitor).values()
            if recorded:
                best[node.monitor] = min(recorded) if "loss" in node.monitor else max(recorded)
    return best


def recorded_history(recorder: Recorder, fit_history: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch metrics for the whole run: from MLflow when tracked (covers resumed epochs)."""
    history: dict[str, list[float]] = {}
    for keras_name, values in fit_history.items():
        name = tracked_metric_name(keras_name)
        recorded = recorder.metric_history(name)
        history[name] = [recorded[s] for s in sorted(recorded)] if recorded else list(values)
    return history


def fit_without_gradients(
    trainer: TrainerConfig, model: keras.Model, ctx: FitContext
) -> dict[str, list[float]]:
    """Models fitted in closed form (the smallest-delta baseline): fit, then score on val."""
    data = ctx.data
    started = time.perf_counter()
    model.fit_prototypes(data.x_train, data.y_train)
    val_ds = eval_dataset(data.x_val, data.y_val, trainer.eval_batch_size)
    probs = model.predict(val_ds, verbose=0, callbacks=[StopOnSignal()])
    val_accuracy = float(np.mean(probs.argmax(axis=1) == data.y_val))
    ctx.recorder.log_metrics(
        {"val/accuracy": val_accuracy, "epoch_seconds": time.perf_counter() - started}, step=0
    )
    if hasattr(model, "typical_images_figure"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "typical_images.png"
            save_figure(model.typical_images_figure(data.class_names), path)
            ctx.recorder.log_artifact(path, "reports")
    print(f"cifarlab: fitted without gradients; val accuracy {val_accuracy:.4f}", flush=True)
    return {"val/accuracy": [val_accuracy]}


def verbosity(setting: Any) -> int:
    """``auto``: a progress bar on a terminal, one line per epoch in logs and CI."""
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)
