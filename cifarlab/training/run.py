"""One training run: data -> pipeline -> model -> fit -> evaluate -> reports -> MLflow.

It follows a ``RunPlan`` (``cifarlab.training.plan.assemble`` makes one of the config).

Everything that can fail on bad input (data, model name, tracking server) fails
before the MLflow run is opened, so a typo never leaves a run behind; once it
is open, any failure ends it FAILED (a signal: KILLED) with the error attached.
A run killed at any moment resumes when the same command runs again: the same
MLflow run, from its last completed epoch, or straight to evaluation when
fitting had finished.
"""

from __future__ import annotations

from typing import Any

import keras

from cifarlab import tracking
from cifarlab.runtime.interrupts import signals_deferred, stop_if_signalled
from cifarlab.training.describe import print_summary, run_name_from, run_tags
from cifarlab.training.distribute import is_chief, make_strategy
from cifarlab.training.multi_worker import adapt_model
from cifarlab.training.plan import RunPlan
from cifarlab.training.recording import evaluate_and_record, record_datasets, record_setup
from cifarlab.training.result import TrainResult
from cifarlab.training.run_hooks import RunHooks
from cifarlab.training.sanity import chance_warning, report_warnings, split_warnings
from cifarlab.training.setup import prepare
from cifarlab.training.stages import FitContext, fit_stages, fit_without_gradients, recorded_history
from cifarlab.training.state import RunState, claimed_state

UNFINISHED = ("RUNNING", "SCHEDULED", "FAILED", "KILLED")
KERAS_HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def train(plan: RunPlan, hooks: RunHooks | None = None) -> TrainResult:
    """Run one training as ``plan`` describes and record it. Raises CifarlabError on bad input.

    ``hooks`` carry what the launcher adds (a sweep's parent run and callbacks, the command line).
    Ctrl-C and SIGTERM stop it at the next batch's end or step (``runtime.batch_signals``).
    """
    with signals_deferred():
        return _train(plan, hooks or RunHooks())


def _train(plan: RunPlan, hooks: RunHooks) -> TrainResult:
    chief = is_chief()
    if not chief:  # other workers train in lockstep but record nothing
        plan = plan.without_tracking()
    target = plan.target
    if target.enabled:
        tracking.check_server_reachable(target.uri)
    # A sweep runs many jobs in one process: a fresh Keras state (layer names, graph) for each.
    # Without its gc.collect(), which took 0.4 s a job in a search of short trials; Python's
    # own collector frees the last job's reference cycles.
    keras.backend.clear_session(free_memory=False)
    strategy = make_strategy(plan.trainer.strategy)
    with strategy.scope():
        prepared = prepare(plan)
        model = adapt_model(prepared.model)  # a no-op unless trainer.strategy=multi_worker spans workers
    key = plan.identity.config_hash(prepared.data_digest)
    done = hooks.finished_run(key) if target.enabled else None
    if done is not None:
        print(f"cifarlab: {_reuse_note(done)}", flush=True)
        return TrainResult.from_run(done)
    run_name = plan.tracking.run_name or hooks.run_name or _run_name(plan, hooks.overrides)
    stop_if_signalled()  # before a run opens: nothing recorded
    with claimed_state(plan.state_dir, key, chief) as state:
        resume_id = _resumable_run(state, target, key) if target.enabled else None
        tags = run_tags(plan, key, hooks)
        with tracking.open_run(target, resume_run_id=resume_id, run_name=run_name, tags=tags) as recorder:
            state.remember(recorder.run_id)
            hooks.on_run_open(recorder.run_id)
            record_setup(recorder, plan.identity, model, prepared.precision, hooks, prepared.transfer_report)
            record_datasets(recorder, prepared.data, prepared.data_source)
            report_warnings(recorder, split_warnings(prepared.data, float(plan.data.node.val_fraction)))
            ctx = FitContext(prepared.data, recorder, state, hooks)
            with strategy.scope():
                history = _fit_or_restore(plan, model, ctx)
                result = evaluate_and_record(
                    plan, model, prepared.data, recorder, state, history, search_trial=hooks.search_trial
                )
            report_warnings(recorder, chance_warning(result.test_accuracy, prepared.data, plan.optimizer.lr))
            stop_if_signalled()  # a signal during the reports or the model's upload: the run ends KILLED
        state.clear()
    print_summary(result.test_accuracy, result.test_loss, result.run_id, target.experiment, target.uri)
    return result


def _run_name(plan: RunPlan, overrides: list[str]) -> str:
    previous = tracking.previous_overrides(plan.target) if plan.target.enabled else []
    return run_name_from(plan.default_run_name, overrides, previous)


def _reuse_note(done: Any) -> str:
    """What a sweep job says when it reuses a FINISHED run instead of training: which run, whose."""
    tags = done.data.tags
    whose = (
        f"a job of sweep run {tags['mlflow.parentRunId']}"
        if tags.get("mlflow.parentRunId")
        else "a single run"
    )
    return (
        f"reusing FINISHED run {done.info.run_id} ({whose}, same config and data, "
        f"{done.info.run_name}) instead of training again; tracking.rerun_finished=true trains anew"
    )


def _resumable_run(state: RunState, target: tracking.TrackingTarget, key: str) -> str | None:
    """The MLflow run a killed or failed attempt of this config left unfinished, if any."""
    if not state.shared:
        return None
    # The state names the run; an attempt that could not write it (a full disk, killed as its run
    # began) left its run in the store, the newest of this config.
    run_id = state.remembered_run_id() or tracking.unfinished_run(target, key)
    if run_id is None:
        return None
    if tracking.run_status(target.uri, run_id) not in UNFINISHED:
        state.reset()  # its run finished (or is gone): what is left on disk is stale
        return None
    where = "its last completed epoch" if state.backup_dir.is_dir() else "the start"
    if state.training_done():
        where = "its evaluation (training had finished)"
    print(f"cifarlab: resuming run {run_id} from {where}", flush=True)
    return run_id


def _fit_or_restore(plan: RunPlan, model: keras.Model, ctx: FitContext) -> dict[str, list[float]]:
    """Fit, and keep the weights fitting ended with; or reload them when an attempt got that far."""
    if not getattr(model, "trains_by_gradient", True):
        return fit_without_gradients(plan.trainer, model, ctx)
    if ctx.state.training_done():
        model.load_weights(ctx.state.trained_weights)
        return recorded_history(ctx.recorder, {name: [] for name in KERAS_HISTORY_KEYS})
    history = fit_stages(plan, model, ctx)
    ctx.state.save_trained(model)
    return history
