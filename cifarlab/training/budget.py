"""Training against a wall-clock budget (``trainer.time_budget_s``).

``TimeBudget`` stops training once the budget is spent; evaluation and recording
still happen. On its own that cuts a schedule wherever the clock runs out, with
the learning rate still high if the machine is slower than the one the recipe
was tuned on, and leaves the budget unused if it is faster. With
``trainer.fit_schedule_to_budget`` the schedule is wrapped in
``BudgetFittedSchedule`` and, after every epoch, fitted so that all of it (warmup,
peak and the final anneal) ends when the time left runs out at the measured epoch
time: a slow or busy machine trains fewer epochs of the same recipe instead of the
first part of it (squeezed), a fast one more epochs of the same shape (stretched,
up to ``MAX_STRETCH`` times the configured epochs) instead of stopping early.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras

from cifarlab.training.builders import LearningRate

MAX_STRETCH = 4  # a stretched schedule runs at most this many times the configured epochs
# Stretch only when the time left affords this much more than the plan (and a whole epoch):
# "well before the budget", not measurement jitter.
STRETCH_FROM = 1.05


def target_epochs(
    time_left: float, recent_epoch_seconds: list[float], plan_left: float, fit_left: int, stretched: bool
) -> tuple[int, bool]:
    """How many more epochs the schedule should take, and whether it may take more than planned.

    ``time_left``: seconds of the budget left; ``recent_epoch_seconds``: the last epochs'
    times (their mean estimates the next ones); ``plan_left``: epochs the schedule has
    left at its planned pace; ``fit_left``: epochs ``fit`` can still run; ``stretched``:
    whether it already runs slower than planned (it then keeps following the clock).
    """
    epoch_seconds = sum(recent_epoch_seconds) / len(recent_epoch_seconds)
    affordable = math.floor(max(time_left, 0.0) / epoch_seconds)
    target = min(affordable, fit_left)
    stretch = stretched or target >= max(plan_left * STRETCH_FROM, plan_left + 1)
    return target, stretch


@keras.saving.register_keras_serializable(package="cifarlab")
class BudgetFittedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule`` read at a position that may run ahead of the optimizer step.

    The position is ``offset + rate * step``; ``fit`` changes ``rate`` so the
    schedule reaches its planned end at a chosen step, keeping the position at
    the current step (so the learning rate) unchanged: no jump. It runs slower
    than the plan (``rate < 1``, stretched) only when ``fit`` is told it may.
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, planned_steps: int) -> None:
        self.schedule = schedule
        self.planned_steps = int(planned_steps)
        # Variables, so a compiled train step reads the values fit() sets.
        self.offset = keras.Variable(0.0, trainable=False, dtype="float32", name="schedule_offset")
        self.rate = keras.Variable(1.0, trainable=False, dtype="float32", name="schedule_rate")

    def __call__(self, step):
        position = self.offset + self.rate * keras.ops.cast(step, "float32")
        return self.schedule(keras.ops.minimum(position, float(self.planned_steps)))

    def position(self, step: int) -> float:
        return float(self.offset.numpy()) + float(self.rate.numpy()) * step

    def fit(self, step: int, end_step: int, stretch: bool = False) -> None:
        """From ``step`` on, finish the schedule at ``end_step``; without ``stretch``, as planned if that is sooner."""
        now = self.position(step)
        remaining = max(self.planned_steps - now, 0.0)
        rate = remaining / max(end_step - step, 1)
        rate = max(rate, 1.0 / MAX_STRETCH) if stretch else max(rate, 1.0)
        self.rate.assign(rate)
        self.offset.assign(now - rate * step)

    def steps_left(self, step: int) -> float:
        """Optimizer steps from ``step`` until the schedule ends."""
        return max(self.planned_steps - self.position(step), 0.0) / float(self.rate.numpy())

    def squeezed(self) -> bool:
        """Whether the schedule now runs faster than planned."""
        return float(self.rate.numpy()) > 1.0

    def stretched(self) -> bool:
        """Whether the schedule now runs slower than planned."""
        return float(self.rate.numpy()) < 1.0

    def plan_steps_left(self, step: int) -> float:
        """Optimizer steps from ``step`` until the schedule ends at its planned pace."""
        return max(self.planned_steps - self.position(step), 0.0)

    def finished(self, step: int) -> bool:
        # Half a step short of the end counts as the end (float positions); a step at the current rate.
        return self.position(step) >= self.planned_steps - 0.5 * float(self.rate.numpy())

    def get_config(self) -> dict:
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "planned_steps": self.planned_steps,
        }

    @classmethod
    def from_config(cls, config: dict) -> BudgetFittedSchedule:
        schedule = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(schedule, config["planned_steps"])


def fit_to_budget(learning_rate: LearningRate, planned_steps: int) -> LearningRate:
    """Wrap a schedule so ``TimeBudget`` can fit it to the time left; a constant rate stays as it is."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return BudgetFittedSchedule(learning_rate, planned_steps)
    return learning_rate


class TimeBudget(keras.callbacks.Callback):
    """Stop training cleanly after ``seconds``; evaluation and recording still happen.

    One clock for the whole run: pass the same instance to every ``fit`` (stage)
    of it; a resumed run starts it at the training time it already spent. Given a
    ``BudgetFittedSchedule``, refits it after every epoch from the second on (the
    first includes tracing) to the number of epochs the time left affords at the
    mean time of the last three epochs, and stops training when it ends. To stretch,
    the last stage's ``fit`` needs room: ``epochs_to_run`` epochs.
    """

    def __init__(
        self,
        seconds: float,
        verbose: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        spent: float = 0.0,
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self.spent = spent  # training seconds of this run before this process (a resumed run)
        self.verbose = verbose
        self.clock = clock
        self.schedule: BudgetFittedSchedule | None = None
        self.exhausted = False  # training should stop: the time is spent or the fitted schedule is over
        self.out_of_time = False  # the time was spent before the schedule's end: the run was cut short
        self.fitted_epochs: int | None = None  # the epoch the fitted schedule ends with, once refitted
        self._announced: int | None = None
        self._message = ""
        self._start: float | None = None
        self._epoch_start = (0.0, 0)  # (time, optimizer step)
        self._epochs: list[tuple[float, int]] = []  # (seconds, steps) of each epoch since follow()
        self._planned_end: int | None = None

    def epochs_to_run(self, epochs: int) -> int:
        """The epochs to give ``fit`` for a (last) stage of ``epochs``: room to stretch a fitted schedule into."""
        return epochs * MAX_STRETCH if self.schedule is not None else epochs

    def follow(self, learning_rate: LearningRate) -> None:
        """Refit this schedule from now on (a new stage may bring a new optimizer)."""
        self.schedule = learning_rate if isinstance(learning_rate, BudgetFittedSchedule) else None
        self._epochs = []
        self._planned_end = None  # the epoch the schedule ends with as planned

    def elapsed(self) -> float:
        return self.spent + (0.0 if self._start is None else self.clock() - self._start)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._start is None:
            self._start = self.clock()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._message:
            print(self._message, flush=True)
            self._message = ""
        self._epoch_start = (self.clock(), self._step())

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.elapsed() >= self.seconds:
            self.exhausted = self.out_of_time = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        began, first_step = self._epoch_start
        step = self._step()
        self._epochs.append((self.clock() - began, step - first_step))
        if self.schedule is None or self.exhausted:
            return
        affordable = self._refit(epoch, step) if len(self._epochs) >= 2 else None
        ends_early = epoch + 1 < self.params["epochs"]
        if ends_early and (affordable == 0 or self.schedule.finished(step)):
            # The fitted schedule is over, or another epoch would not fit the budget.
            self.exhausted = True
            self.out_of_time = not self.schedule.finished(step)
            self.model.stop_training = True

    def expected_epochs(self, epochs_done: int, ceiling: int) -> int | None:
        """How many epochs the run will end with: the fitted schedule's end, else as many as the
        time left affords at the recent epochs' pace (at most ``ceiling``); None before one was timed."""
        if self.fitted_epochs is not None:
            return min(self.fitted_epochs, ceiling)
        recent = [seconds for seconds, _ in (self._epochs[1:] or self._epochs)[-3:]]
        if not recent:
            return None
        affordable = math.floor(max(self.seconds - self.elapsed(), 0.0) / (sum(recent) / len(recent)))
        return min(epochs_done + max(affordable, 1), ceiling)

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _refit(self, epoch: int, step: int) -> int:
        """Fit the schedule to the epochs the time left affords (fewer or more than planned); returns that number."""
        schedule = self.schedule
        assert schedule is not None  # refitted only while following a fitted schedule
        recent = self._epochs[1:][-3:]
        steps_per_epoch = max(1.0, sum(steps for _, steps in recent) / len(recent))
        plan_left = schedule.plan_steps_left(step) / steps_per_epoch
        target, stretch = target_epochs(
            self.seconds - self.elapsed(),
            [seconds for seconds, _ in recent],
            plan_left,
            self.params["epochs"] - (epoch + 1),
            schedule.stretched(),
        )
        schedule.fit(step, step + round(target * steps_per_epoch), stretch=stretch)
        fitted = epoch + 1 + math.ceil(schedule.steps_left(step) / steps_per_epoch - 1e-6)
        self.fitted_epochs = fitted
        if self._planned_end is None:
            self._planned_end = epoch + 1 + math.ceil(plan_left - 1e-6)
        # Say so when the plan moves by more than jitter.
        moved = self._announced is None or abs(fitted - self._announced) > max(1, 0.05 * self._announced)
        refitted = schedule.squeezed() or schedule.stretched()
        if self.verbose and moved and (refitted or self._announced is not None):
            # Printed when the next epoch begins: after Keras's line for this one.
            self._message = (
                f"cifarlab: time budget {self.seconds:g}s at {sum(s for s, _ in recent) / len(recent):.1f}s/epoch: "
                f"schedule fitted to end "
                f"with epoch {fitted} (planned: {self._planned_end})"
            )
            self._announced = fitted
        return target


class _EpochCount(int):
    """A number of epochs Keras compares as a number and prints as ``text``."""

    text: str

    def __new__(cls, value: int, text: str) -> _EpochCount:
        count = super().__new__(cls, value)
        count.text = text
        return count

    def __format__(self, spec: str) -> str:
        return self.text


class BudgetProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress lines under a time budget: "Epoch 3/~57", the epochs the budget affords.

    ``fit`` is given room for more epochs than the budget will allow (a stretched
    schedule, or no end but the clock), which Keras would print as "Epoch 3/280".
    Passed to ``fit`` among the callbacks, it replaces Keras's own progress logger.
    """

    epochs: int  # Keras's: fit's epochs, printed after "Epoch k/"

    def __init__(self, budget: TimeBudget) -> None:
        super().__init__()
        self.budget = budget

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        ceiling = int(self.epochs)  # fit's epochs (set_params), or the count shown last, which keeps it
        expected = self.budget.expected_epochs(epoch, ceiling)
        self.epochs = _EpochCount(ceiling, "?" if expected is None else f"~{expected}")
        super().on_epoch_begin(epoch, logs)
