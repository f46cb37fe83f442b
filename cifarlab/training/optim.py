"""Optimizer and learning-rate schedule registries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import keras
from omegaconf import DictConfig

from cifarlab.registry import Registry
from cifarlab.training.metric_names import keras_metric_name, monitor_mode

SCHEDULES: Registry[Callable] = Registry("optimizer.schedule")
OPTIMIZERS: Registry[Callable] = Registry("optimizer")

LearningRate: TypeAlias = float | keras.optimizers.schedules.LearningRateSchedule


@SCHEDULES.register("constant")
def constant(schedule: DictConfig, lr: float, steps_per_epoch: int, epochs: int) -> LearningRate:
    return lr


@SCHEDULES.register("cosine")
def cosine(schedule: DictConfig, lr: float, steps_per_epoch: int, epochs: int) -> LearningRate:
    """Linear warmup to ``lr`` over ``warmup_epochs``, then cosine decay to ``final_lr_fraction * lr``."""
    warmup_steps = int(schedule.warmup_epochs * steps_per_epoch)
    decay_steps = max(1, epochs * steps_per_epoch - warmup_steps)
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=decay_steps,
            alpha=schedule.final_lr_fraction,
            warmup_target=lr,
            warmup_steps=warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps, alpha=schedule.final_lr_fraction)


@SCHEDULES.register("step")
def step(schedule: DictConfig, lr: float, steps_per_epoch: int, epochs: int) -> LearningRate:
    """Multiply the rate by ``gamma`` every ``step_epochs`` epochs."""
    return keras.optimizers.schedules.ExponentialDecay(
        lr,
        decay_steps=max(1, int(schedule.step_epochs * steps_per_epoch)),
        decay_rate=schedule.gamma,
        staircase=True,
    )


@keras.saving.register_keras_serializable(package="cifarlab")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear rise from ``peak / div_factor`` to ``peak``, then linear fall to ``peak * final_fraction``."""

    def __init__(
        self,
        peak: float,
        warmup_steps: int,
        total_steps: int,
        div_factor: float = 25.0,
        final_fraction: float = 0.0,
    ) -> None:
        self.peak, self.warmup_steps, self.total_steps = peak, max(1, warmup_steps), max(2, total_steps)
        self.div_factor, self.final_fraction = div_factor, final_fraction

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        start, end = self.peak / self.div_factor, self.peak * self.final_fraction
        rise = start + (self.peak - start) * step / self.warmup_steps
        fall_steps = max(1, self.total_steps - self.warmup_steps)
        progress = keras.ops.minimum((step - self.warmup_steps) / fall_steps, 1.0)
        fall = self.peak + (end - self.peak) * progress
        return keras.ops.where(step < self.warmup_steps, rise, fall)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "div_factor": self.div_factor,
            "final_fraction": self.final_fraction,
        }


@SCHEDULES.register("one_cycle")
def one_cycle(schedule: DictConfig, lr: float, steps_per_epoch: int, epochs: int) -> LearningRate:
    """Rise to ``lr`` over ``warmup_epochs`` (default: 30% of training), then fall linearly."""
    total = epochs * steps_per_epoch
    warmup = int(schedule.warmup_epochs * steps_per_epoch) if schedule.warmup_epochs else int(0.3 * total)
    return OneCycle(lr, warmup, total, final_fraction=schedule.final_lr_fraction)


@SCHEDULES.register("reduce_on_plateau")
def reduce_on_plateau(schedule: DictConfig, lr: float, steps_per_epoch: int, epochs: int) -> LearningRate:
    """Starts at ``lr``; the trainer adds ReduceLROnPlateau (``gamma``, ``patience``, ``monitor``)."""
    return lr


def plateau_callback(schedule: DictConfig) -> keras.callbacks.Callback | None:
    """The callback behind the ``reduce_on_plateau`` schedule, or None for other schedules."""
    if schedule.name != "reduce_on_plateau":
        return None
    return keras.callbacks.ReduceLROnPlateau(
        monitor=keras_metric_name(schedule.monitor),
        mode=monitor_mode(schedule.monitor),
        factor=schedule.gamma,
        patience=schedule.patience,
        min_lr=schedule.min_lr,
        verbose=1,
    )


def _common(optimizer: DictConfig, learning_rate: LearningRate) -> dict:
    common = {
        "learning_rate": learning_rate,
        "weight_decay": optimizer.weight_decay,
        "clipnorm": optimizer.clipnorm,
    }
    if optimizer.ema_momentum is not None:
        # Keras keeps a moving average of the weights and puts it in the model when fit ends.
        common.update(use_ema=True, ema_momentum=optimizer.ema_momentum)
    return common


@OPTIMIZERS.register("sgd")
def sgd(optimizer: DictConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(
        momentum=optimizer.momentum, nesterov=optimizer.nesterov, **_common(optimizer, learning_rate)
    )


@OPTIMIZERS.register("adam")
def adam(optimizer: DictConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(
        beta_1=optimizer.beta_1,
        beta_2=optimizer.beta_2,
        epsilon=optimizer.epsilon,
        **_common(optimizer, learning_rate),
    )


@OPTIMIZERS.register("adamw")
def adamw(optimizer: DictConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    kwargs = _common(optimizer, learning_rate)
    kwargs["weight_decay"] = 0.004 if optimizer.weight_decay is None else optimizer.weight_decay
    return keras.optimizers.AdamW(
        beta_1=optimizer.beta_1, beta_2=optimizer.beta_2, epsilon=optimizer.epsilon, **kwargs
    )


@OPTIMIZERS.register("nadam")
def nadam(optimizer: DictConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    return keras.optimizers.Nadam(
        beta_1=optimizer.beta_1,
        beta_2=optimizer.beta_2,
        epsilon=optimizer.epsilon,
        **_common(optimizer, learning_rate),
    )


@OPTIMIZERS.register("rmsprop")
def rmsprop(optimizer: DictConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    return keras.optimizers.RMSprop(
        rho=optimizer.rho,
        momentum=optimizer.momentum,
        epsilon=optimizer.epsilon,
        **_common(optimizer, learning_rate),
    )


def build_schedule(optimizer: DictConfig, steps_per_epoch: int, epochs: int) -> LearningRate:
    """The learning rate ``optimizer.schedule`` makes of ``optimizer.lr`` over ``epochs`` epochs."""
    return SCHEDULES.get(optimizer.schedule.name)(optimizer.schedule, optimizer.lr, steps_per_epoch, epochs)


def build_optimizer(
    optimizer: DictConfig, steps_per_epoch: int, epochs: int, learning_rate: LearningRate | None = None
) -> keras.optimizers.Optimizer:
    """The optimizer ``optimizer.name``, its rate following ``optimizer.schedule`` (or ``learning_rate``)."""
    if learning_rate is None:
        learning_rate = build_schedule(optimizer, steps_per_epoch, epochs)
    return OPTIMIZERS.get(optimizer.name)(optimizer, learning_rate)
