"""Training against a time budget: the schedule is squeezed to fit, never cut, and stretched to use it."""

import keras
import numpy as np
import pytest
from helpers import TINY, all_runs, mlflow_client, run_cli

from cifarlab.training.budget import (
    MAX_STRETCH,
    BudgetFittedSchedule,
    BudgetProgbarLogger,
    TimeBudget,
    fit_to_budget,
    target_epochs,
)
from cifarlab.training.optim import OneCycle

PEAK = 0.1


def _lr(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_unfitted_schedule_is_the_plan():
    plan = OneCycle(PEAK, warmup_steps=30, total_steps=100)
    fitted = BudgetFittedSchedule(plan, planned_steps=100)
    for step in (0, 10, 30, 64, 100, 140):
        assert _lr(fitted, step) == pytest.approx(_lr(plan, min(step, 100)))


def test_fitting_keeps_the_current_rate_and_ends_the_plan_at_the_new_end():
    plan = OneCycle(PEAK, warmup_steps=30, total_steps=100)
    fitted = BudgetFittedSchedule(plan, planned_steps=100)
    before = _lr(fitted, 20)
    fitted.fit(step=20, end_step=60)  # 80 planned steps left, 40 to do them in
    assert _lr(fitted, 20) == pytest.approx(before)  # no jump
    assert _lr(fitted, 60) == pytest.approx(_lr(plan, 100))  # the whole anneal, by step 60
    assert _lr(fitted, 30) == pytest.approx(_lr(plan, 40))  # twice as fast in between
    assert fitted.steps_left(20) == pytest.approx(40) and fitted.squeezed()
    assert not fitted.finished(59) and fitted.finished(60)


def test_fitting_stretches_the_plan_only_when_told_it_may():
    plan = OneCycle(PEAK, warmup_steps=30, total_steps=100)
    fitted = BudgetFittedSchedule(plan, planned_steps=100)
    fitted.fit(step=20, end_step=1000)
    assert not fitted.squeezed() and not fitted.stretched() and fitted.steps_left(20) == pytest.approx(80)
    before = _lr(fitted, 20)
    fitted.fit(step=20, end_step=180, stretch=True)  # 80 planned steps left, 160 to do them in
    assert _lr(fitted, 20) == pytest.approx(before)  # no jump
    assert _lr(fitted, 180) == pytest.approx(_lr(plan, 100))  # the whole anneal, by step 180
    assert _lr(fitted, 40) == pytest.approx(_lr(plan, 30))  # the peak, half as fast
    assert _lr(fitted, 100) == pytest.approx(_lr(plan, 60))
    assert (
        fitted.stretched()
        and fitted.steps_left(20) == pytest.approx(160)
        and not fitted.finished(179)
        and fitted.finished(180)
    )
    fitted.fit(step=20, end_step=10_000, stretch=True)  # never more than MAX_STRETCH times slower
    assert fitted.steps_left(20) == pytest.approx(80 * MAX_STRETCH)


def test_target_epochs_from_given_epoch_times():
    # 100 s left at 2 s an epoch affords 50; the plan has 20 left: stretched to 50.
    assert target_epochs(100.0, [2.0, 2.0, 2.0], plan_left=20, fit_left=200, stretched=False) == (50, True)
    # ... but no further than fit can run.
    assert target_epochs(100.0, [2.0], plan_left=20, fit_left=30, stretched=False) == (30, True)
    # The mean of the recent epochs: one slow epoch (a checkpoint write) counts a third.
    assert target_epochs(100.0, [1.0, 1.0, 4.0], plan_left=20, fit_left=200, stretched=False) == (50, True)
    # Time for only a little more than the plan: jitter, the plan stays (not stretched).
    assert target_epochs(41.5, [1.0], plan_left=40, fit_left=200, stretched=False) == (41, False)
    # Too little time: fewer epochs, squeezed (stretch or not, fit() then runs faster than planned).
    assert target_epochs(10.0, [1.0], plan_left=20, fit_left=200, stretched=False)[0] == 10
    # Once stretched, it keeps following the clock, even back towards the plan.
    assert target_epochs(41.5, [1.0], plan_left=40, fit_left=200, stretched=True) == (41, True)


@pytest.mark.parametrize("name", ["one_cycle", "cosine", "step"])
def test_every_registered_schedule_can_be_squeezed(name):
    from omegaconf import OmegaConf

    from cifarlab.config.schema import ScheduleConfig
    from cifarlab.training.optim import build_schedule

    cfg = OmegaConf.create(
        {
            "lr": PEAK,
            "schedule": OmegaConf.structured(
                ScheduleConfig(name=name, warmup_epochs=2, step_epochs=3, gamma=0.5, final_lr_fraction=0.01)
            ),
        }
    )
    plan = build_schedule(cfg, steps_per_epoch=10, epochs=10)
    fitted = fit_to_budget(plan, planned_steps=100)
    before = _lr(fitted, 40)
    fitted.fit(step=40, end_step=52)  # 60 planned steps left in 12
    assert _lr(fitted, 40) == pytest.approx(before)
    assert _lr(fitted, 52) == pytest.approx(_lr(plan, 100))
    assert _lr(fitted, 46) == pytest.approx(_lr(plan, 70))


def test_constant_rate_is_left_alone():
    assert fit_to_budget(0.01, planned_steps=100) == 0.01
    assert isinstance(fit_to_budget(OneCycle(PEAK, 3, 10), 10), BudgetFittedSchedule)


def test_schedule_survives_serialization():
    fitted = BudgetFittedSchedule(OneCycle(PEAK, 30, 100, final_fraction=0.1), planned_steps=100)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(fitted))
    assert isinstance(restored, BudgetFittedSchedule) and restored.planned_steps == 100
    assert _lr(restored, 70) == pytest.approx(_lr(fitted, 70))


class _Clock(keras.callbacks.Callback):
    """A clock on which every epoch takes ``epoch_seconds``: the budget logic without wall-clock noise."""

    def __init__(self, epoch_seconds: float) -> None:
        super().__init__()
        self.now, self.epoch_seconds = 0.0, epoch_seconds

    def __call__(self) -> float:
        return self.now

    def on_epoch_end(self, epoch, logs=None):
        self.now += self.epoch_seconds


class _Rates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _fit_under_budget(
    budget_s: float,
    epoch_seconds: float,
    epochs: int = 20,
    steps: int = 4,
    spent: float = 0.0,
    room: bool = False,
):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(steps * 8, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    schedule = fit_to_budget(
        OneCycle(PEAK, warmup_steps=3 * steps, total_steps=epochs * steps), epochs * steps
    )
    model.compile(keras.optimizers.SGD(schedule), "sparse_categorical_crossentropy")
    clock = _Clock(epoch_seconds)
    budget = TimeBudget(budget_s, verbose=False, clock=clock, spent=spent)
    budget.follow(schedule)
    rates = _Rates()
    fit_epochs = budget.epochs_to_run(epochs) if room else epochs  # as fit_stages gives the last stage
    history = model.fit(x, y, batch_size=8, epochs=fit_epochs, callbacks=[clock, rates, budget], verbose=0)
    return len(history.history["loss"]), rates.rates, budget, model


@pytest.mark.slow
def test_slow_machine_trains_the_whole_schedule_in_fewer_epochs():
    epochs_run, rates, budget, model = _fit_under_budget(budget_s=10, epoch_seconds=1.0)
    # 20 planned epochs at 1 s each do not fit 10 s: the compiled train step follows the
    # squeezed schedule, which peaks and anneals to its end within the epochs that fit.
    assert epochs_run == 10 and budget.fitted_epochs == 10 and budget.exhausted
    assert not budget.out_of_time  # a schedule fitted to the time ends by itself: not cut short
    assert max(rates) > 0.8 * PEAK
    assert rates[-1] == pytest.approx(0.0, abs=1e-6)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 10 * 4


def _fit_constant_rate_for_5_s(*extra: type, verbose: int = 0):
    """20 epochs of 1 s each (on the fake clock) at a constant rate under a 5 s budget, with callbacks
    made of ``extra`` classes given the budget: the fit's history and the budget."""
    x = np.zeros((8, 5), "float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    clock = _Clock(1.0)
    budget = TimeBudget(5, verbose=False, clock=clock)
    budget.follow(0.01)
    callbacks = [clock, budget, *(make(budget) for make in extra)]
    history = model.fit(
        x, np.zeros(8, "int32"), batch_size=8, epochs=20, callbacks=callbacks, verbose=verbose
    )
    return history, budget


def test_a_constant_rate_run_stopped_by_the_clock_is_cut_short():
    history, budget = _fit_constant_rate_for_5_s()
    assert len(history.history["loss"]) < 20 and budget.exhausted and budget.out_of_time


def test_the_epoch_counter_shows_the_epochs_the_budget_affords_not_fits_ceiling(capsys):
    _fit_constant_rate_for_5_s(BudgetProgbarLogger, verbose=2)
    counters = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    # 1 s an epoch, 5 s: unknown before the first epoch is timed, then 5 (and the sixth, begun as
    # the time runs out and cut short, says itself); never fit's 20.
    assert counters == ["1/?", "2/~5", "3/~5", "4/~5", "5/~5", "6/~6"]


def test_a_resumed_run_counts_the_time_it_already_trained():
    # 6 of 10 seconds spent before the kill: the rerun has 4 epochs' time left, not 10.
    epochs_run, _, budget, _ = _fit_under_budget(budget_s=10, epoch_seconds=1.0, spent=6.0)
    assert epochs_run == 4 and budget.exhausted


@pytest.mark.slow
def test_fast_machine_trains_the_plan_unchanged():
    epochs_run, rates, budget, _ = _fit_under_budget(budget_s=100, epoch_seconds=1.0)
    assert epochs_run == 20 and not budget.exhausted and budget.fitted_epochs == 20
    plan = OneCycle(PEAK, warmup_steps=12, total_steps=80)
    np.testing.assert_allclose(rates, [_lr(plan, 4 * (e + 1)) for e in range(20)], atol=1e-6)


@pytest.mark.slow
def test_fast_machine_stretches_the_schedule_to_use_the_budget():
    epochs_run, rates, budget, model = _fit_under_budget(budget_s=50, epoch_seconds=1.0, room=True)
    # 20 planned epochs at 1 s each would leave 30 of 50 s unused: the same one-cycle
    # shape (warmup to the peak, anneal to 0) is spread over the 50 epochs that fit.
    assert epochs_run == 50 and budget.fitted_epochs == 50
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 50 * 4
    peak = int(np.argmax(rates))
    assert rates[peak] > 0.9 * PEAK and rates[-1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(rates[: peak + 1]) > 0) and np.all(np.diff(rates[peak:]) < 0)  # one rise, one fall
    assert 4 <= peak < 15  # the warmup (to epoch 3 of 20 planned, index 2) stretched too


def test_a_constant_rate_gets_no_extra_epochs():
    budget = TimeBudget(50, verbose=False)
    budget.follow(0.01)
    assert budget.epochs_to_run(20) == 20


@pytest.mark.slow
def test_cli_budget_run_anneals_before_it_stops(tmp_path):
    # 100000 planned epochs: cut at the budget without fitting, the rate would still be warming up,
    # rising at every epoch. Fitted, it peaks and falls (to 0 when the squeezed schedule ends first).
    # Early stopping off: on these easy data it would end the run when val accuracy stalls, wherever the
    # schedule then is, and how far that is depends on the machine's speed.
    args = [
        *TINY,
        "trainer.epochs=100000",
        "trainer.time_budget_s=8",
        "tracking.log_model=false",
        "callbacks.early_stopping.enabled=false",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "optimizer.schedule.name=one_cycle",
    ]
    run_cli(*args, cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and "test/accuracy" in run.data.metrics
    history = mlflow_client(tmp_path / "mlruns").get_metric_history(run.info.run_id, "lr")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert rates[-1] < max(rates)


@pytest.mark.slow
def test_cli_budget_run_with_time_to_spare_trains_more_epochs(tmp_path):
    # 3 configured epochs of tiny data take a second or two; a 60 s budget stretches the
    # one-cycle schedule over up to MAX_STRETCH times as many (fit's room), annealed to its end.
    args = [
        *TINY,
        "trainer.epochs=3",
        "trainer.time_budget_s=60",
        "tracking.log_model=false",
        "callbacks.early_stopping.enabled=false",
        "callbacks.checkpoint.enabled=false",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "optimizer.schedule.name=one_cycle",
    ]
    run_cli(*args, cwd=tmp_path)
    (run,) = all_runs(tmp_path / "mlruns")
    history = mlflow_client(tmp_path / "mlruns").get_metric_history(run.info.run_id, "lr")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(rates) > 3 and run.info.status == "FINISHED"
    assert rates[-1] < 0.1 * max(rates)
