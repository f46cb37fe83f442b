"""One training run: data -> pipeline -> model -> fit -> evaluate -> reports -> MLflow.

Everything that can fail on bad input (data, model name, tracking server) fails
before the MLflow run is opened, so a typo never leaves a run behind; once it
is open, any failure ends it FAILED with the error attached.
"""

from __future__ import annotations

import keras
from omegaconf import DictConfig, OmegaConf

from cifarlab import tracking
from cifarlab.training.describe import print_summary, run_tags
from cifarlab.training.distribute import is_chief, make_strategy
from cifarlab.training.hooks import RunHooks
from cifarlab.training.multi_worker import adapt_model
from cifarlab.training.record import evaluate_and_record, record_setup
from cifarlab.training.result import TrainResult
from cifarlab.training.setup import prepare
from cifarlab.training.stages import FitContext, fit_stages, fit_without_gradients
from cifarlab.training.state import RunState


def train(cfg: DictConfig, hooks: RunHooks | None = None) -> TrainResult:
    """Run one training as ``cfg`` describes and record it. Raises CifarlabError on bad input.

    ``hooks`` carry what the launcher adds (a sweep's parent run and callbacks, the command line).
    """
    hooks = hooks or RunHooks()
    key = tracking.config_hash(cfg)
    chief = is_chief()
    if not chief:  # other workers train in lockstep but record nothing
        cfg = OmegaConf.merge(cfg, {"tracking": {"enabled": False}})
    state = RunState.for_config(cfg.paths.state_dir, key, chief)
    uri = tracking.tracking_uri(cfg)
    if cfg.tracking.enabled:
        tracking.check_server_reachable(uri)
        done = hooks.finished_run(cfg, key)
        if done is not None:
            print(f"cifarlab: skipping, config already has FINISHED run {done.info.run_id}", flush=True)
            return TrainResult.from_run(done)
    resume_id = state.resumable_run_id() if cfg.tracking.enabled else None

    keras.backend.clear_session()  # a sweep runs many jobs in one process
    strategy = make_strategy(cfg.trainer.strategy)
    with strategy.scope():
        prepared = prepare(cfg, uri)
        model = adapt_model(prepared.model)  # a no-op unless trainer.strategy=multi_worker spans workers
    run_name = cfg.tracking.get("run_name") or hooks.run_name or f"{cfg.model.name}-{cfg.dataset.name}"
    tags = run_tags(cfg, key, hooks)
    with tracking.open_run(cfg, resume_run_id=resume_id, run_name=run_name, tags=tags) as recorder:
        state.remember(recorder.run_id)
        if resume_id:
            print(f"cifarlab: resuming run {resume_id} from its last completed epoch", flush=True)
        record_setup(recorder, cfg, model, prepared.precision, hooks, prepared.transfer_report)
        ctx = FitContext(prepared.data, recorder, state, hooks)
        with strategy.scope():
            fit = fit_stages if getattr(model, "trains_by_gradient", True) else fit_without_gradients
            history = fit(cfg, model, ctx)
            result = evaluate_and_record(cfg, model, prepared.data, recorder, state, history)
    state.clear()
    print_summary(result.test_accuracy, result.test_loss, result.run_id, cfg.tracking.experiment, uri)
    return result
