"""One training run: data -> pipeline -> model -> fit -> evaluate -> reports -> MLflow.

Everything that can fail on bad input (data, model name, tracking server) fails
before the MLflow run is opened, so a typo never leaves a run behind; once it
is open, any failure ends it FAILED with the error attached.
"""

from __future__ import annotations

import os

import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarlab import tracking
from cifarlab.data.augment import build_augmentation
from cifarlab.training.budget import TimeBudget, fit_to_budget
from cifarlab.training.callbacks import CallbackContext, TerminateOnNonFinite, build_callbacks
from cifarlab.config.schema import AugmentationConfig, StageConfig
from cifarlab.data import DataSplits, load_dataset
from cifarlab.training.distribute import is_chief, make_strategy
from cifarlab.errors import CifarlabError
from cifarlab.models.layers.swap import freeze_cancelled_biases, standard_layers, use_fast_dropout, use_fused_batchnorm
from cifarlab.models import build_model
from cifarlab.training.multi_worker import adapt_model
from cifarlab.training.optim import LearningRate, build_optimizer, build_schedule, plateau_callback
from cifarlab.training.compile import compile_model
from cifarlab.training.hooks import RunHooks
from cifarlab.training.evaluation import evaluate_model
from cifarlab.data.pipeline import eval_dataset, resolve_input_parallelism, train_dataset
from cifarlab.training.precision import apply_precision, global_policy, resolve_precision
from cifarlab.models.transfer import TransferReport, load_source_model, set_frozen, transfer_weights


@dataclass
class TrainResult:
    run_id: str | None
    test_accuracy: float
    test_loss: float
    best_val_accuracy: float | None
    epochs_run: int
    history: dict[str, list[float]] = field(default_factory=dict)
    skipped: bool = False

    @classmethod
    def from_run(cls, run) -> "TrainResult":
        """The result an earlier FINISHED MLflow run recorded (for skipped sweep jobs)."""
        m = run.data.metrics
        return cls(
            run_id=run.info.run_id,
            test_accuracy=m.get("test/accuracy", float("nan")),
            test_loss=m.get("test/loss", float("nan")),
            best_val_accuracy=m.get("val/best_accuracy"),
            epochs_run=int(m.get("epochs_run", 0)),
            skipped=True,
        )

    @property
    def objective(self) -> float:
        """What sweeps maximise: the best validation accuracy."""
        return self.best_val_accuracy if self.best_val_accuracy is not None else self.test_accuracy


class RunState:
    """Resumable state of one config (by its hash): Keras backup, checkpoints, MLflow run id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backup_dir = root / "backup"
        self.checkpoint_dir = root / "checkpoints"
        self._run_id_file = root / "run_id"

    def resumable_run_id(self) -> str | None:
        has_backup = self.backup_dir.is_dir() and any(self.backup_dir.iterdir())
        if has_backup and self._run_id_file.is_file():
            return self._run_id_file.read_text().strip() or None
        return None

    def remember(self, run_id: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if run_id:
            self._run_id_file.write_text(run_id)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _run_tags(cfg: DictConfig, key: str) -> dict[str, str]:
    tags = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "augmentation": cfg.augmentation.name,
        "config_hash": key,
        "git_commit": tracking.git_commit(),
        "overrides": " ".join(_overrides()),
        "hardware": _hardware(),
        **_preset_choices(),
        **{f"claim.{k}": v for k, v in (cfg.get("claim") or {}).items()},
        **dict(cfg.tracking.get("tags") or {}),
    }
    return {k: str(v) for k, v in tags.items() if v not in (None, "")}


def _hardware() -> str:
    import platform

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    return f"{len(gpus)} GPU + {cpu}" if gpus else cpu


def _preset_choices() -> dict[str, str]:
    """Which experiment / debug preset composed this run (tags for the results table)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {tag: choices.get(group) for tag, group in (("preset", "experiment"), ("debug", "debug"))}


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _describe(cfg: DictConfig, data: DataSplits, precision: str) -> str:
    t = cfg.trainer
    return (
        f"cifarlab: {data.name} ({len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test), "
        f"model {cfg.model.name}, {cfg.optimizer.name} lr={cfg.optimizer.lr:g}, "
        f"augmentation {cfg.augmentation.name}, {t.epochs} epochs x batch {t.batch_size}, "
        f"precision {precision}"
    )


def _model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def _history(recorder: tracking.NullRecorder, fit_history: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch metrics for the whole run: from MLflow when tracked (covers resumed epochs)."""
    from cifarlab.training.callbacks import tracked_metric_name

    history: dict[str, list[float]] = {}
    for keras_name, values in fit_history.items():
        name = tracked_metric_name(keras_name)
        recorded = recorder.metric_history(name)
        history[name] = [recorded[s] for s in sorted(recorded)] if recorded else list(values)
    return history


def _inference_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the compile state, so loading needs no cifarlab code."""
    plain = standard_layers(model)  # an uncompiled copy when it had to swap layers
    return plain if plain is not model else keras.Model(model.inputs, model.outputs, name=model.name)


def _log_model(recorder: tracking.NullRecorder, model: keras.Model, data: DataSplits, probs: np.ndarray) -> None:
    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    example = data.x_test[:2]
    recorder.log_keras_model(
        _inference_model(model),
        name="model",
        signature=infer_signature(example, probs[:2]),
        input_example=example,
        metadata={"class_names": list(data.class_names), "input_dtype": "uint8"},
        pip_requirements=[
            f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )


def train(cfg: DictConfig, hooks: RunHooks | None = None) -> TrainResult:
    """Run one training as ``cfg`` describes and record it. Raises CifarlabError on bad input."""
    key = tracking.config_hash(cfg)
    chief = is_chief()
    if not chief:
        # Other workers train in lockstep but record nothing and keep their state apart.
        cfg = OmegaConf.merge(cfg, {"tracking": {"enabled": False}})
    state = RunState(Path(cfg.paths.state_dir) / key if chief else Path(tempfile.mkdtemp(prefix="cifarlab-worker-")))
    resume_id = state.resumable_run_id() if cfg.tracking.enabled else None
    if cfg.tracking.enabled:
        tracking.check_server_reachable(tracking.tracking_uri(cfg))

    hooks = hooks or RunHooks()
    parent_run_id = hooks.parent_run_id
    if cfg.tracking.enabled:
        done = hooks.finished_run(cfg, key)
        if done is not None:
            print(f"cifarlab: skipping, config already has FINISHED run {done.info.run_id}", flush=True)
            return TrainResult.from_run(done)

    keras.backend.clear_session()  # a sweep runs many jobs in one process
    strategy = make_strategy(cfg.trainer.strategy)
    with strategy.scope():
        data, model, transfer_report = _prepare(cfg)
        model = adapt_model(model)  # a no-op unless trainer.strategy=multi_worker spans workers
    tags = _run_tags(cfg, key)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run_name = cfg.tracking.get("run_name") or hooks.run_name or f"{cfg.model.name}-{cfg.dataset.name}"
    with tracking.open_run(cfg, resume_run_id=resume_id, run_name=run_name, tags=tags) as recorder:
        state.remember(recorder.run_id)
        if resume_id:
            print(f"cifarlab: resuming run {resume_id} from its last completed epoch", flush=True)
        _record_setup(recorder, cfg, model, transfer_report)
        with strategy.scope():
            if getattr(model, "trains_by_gradient", True):
                history = _fit_stages(cfg, model, data, recorder, state, hooks)
            else:
                history = _fit_without_gradients(cfg, model, data, recorder)
            result = _evaluate_and_record(cfg, model, data, recorder, state, history)
    state.clear()
    _print_summary(cfg, result)
    return result


def _prepare(cfg: DictConfig) -> tuple[DataSplits, keras.Model, "TransferReport | None"]:
    """Data and model, before any run is opened: bad input fails here and records nothing."""
    t = cfg.trainer
    keras.utils.set_random_seed(t.seed)
    precision = resolve_precision(t.precision)
    keras.mixed_precision.set_dtype_policy(global_policy(precision))
    data = load_dataset(cfg.dataset, default_data_dir=cfg.paths.data_dir)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    build_augmentation(cfg.augmentation, seed=t.seed)  # an unknown name fails now, not mid-run
    report = None
    if cfg.model.get("init_from"):
        source = load_source_model(str(cfg.model.init_from), tracking.tracking_uri(cfg))
        report = transfer_weights(source, model)
        print(f"cifarlab: weights from {cfg.model.init_from}: {report.summary()}", flush=True)
    if cfg.model.get("freeze", "none") != "none":
        set_frozen(model, cfg.model.freeze)
    # (Not under multi_worker: exporting would rebuild the model, creating variables
    # collectively on every worker.)
    if t.fused_batchnorm and t.strategy != "multi_worker":
        model = use_fused_batchnorm(model)
    if t.fast_dropout and t.strategy != "multi_worker":
        model = use_fast_dropout(model)
    model = apply_precision(model, precision)
    print(_describe(cfg, data, precision), flush=True)
    return data, model, report


def _record_setup(
    recorder: tracking.NullRecorder, cfg: DictConfig, model: keras.Model, transfer_report: "TransferReport | None"
) -> None:
    params = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
    recorder.log_params({
        **params,
        "model/num_params": model.count_params(),
        "precision_policy": resolve_precision(cfg.trainer.precision),  # what auto chose on this machine
    })
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model_summary.txt").write_text(_model_summary(model))
        recorder.log_artifact(folder / "model_summary.txt")
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        (folder / "overrides.txt").write_text("\n".join(_overrides()) + "\n")
        recorder.log_artifact(folder / "config.yaml", "config")
        recorder.log_artifact(folder / "overrides.txt", "config")
    if transfer_report is not None:
        recorder.log_text(transfer_report.summary() + "\n", "transfer.txt")


def _stages(cfg: DictConfig) -> list[DictConfig]:
    """The configured stages, or one implicit stage; each capped at trainer.epochs."""
    stages = list(cfg.stages) or [OmegaConf.structured(StageConfig(name="train", epochs=cfg.trainer.epochs))]
    for stage in stages:
        stage.epochs = min(stage.epochs, cfg.trainer.epochs)
    return stages


def _stage_augmentation(cfg: DictConfig, stage: DictConfig) -> DictConfig:
    if stage.augmentation is None:
        return cfg.augmentation
    return OmegaConf.merge(OmegaConf.structured(AugmentationConfig), stage.augmentation)


def _datasets(cfg: DictConfig, data: DataSplits, augmentation: DictConfig):
    t = cfg.trainer
    augment = build_augmentation(augmentation, seed=t.seed)
    train_ds = train_dataset(
        data.x_train, data.y_train, t.batch_size, augment, seed=t.seed, repeat=t.steps_per_epoch is not None,
        shuffle_buffer=t.shuffle_buffer, parallel_calls=resolve_input_parallelism(t.input_parallelism, t.strategy),
    )
    val_ds = eval_dataset(data.x_val, data.y_val, t.eval_batch_size)
    if t.label_smoothing:
        one_hot = lambda x, y: (x, keras.ops.one_hot(y, data.num_classes))  # noqa: E731
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)
    return train_ds, val_ds


def _callbacks(
    cfg: DictConfig,
    recorder: tracking.NullRecorder,
    state: RunState,
    images_per_epoch: int,
    stage: int,
    budget: TimeBudget | None,
    hooks: RunHooks,
) -> list[keras.callbacks.Callback]:
    ctx = CallbackContext(
        checkpoint_dir=state.checkpoint_dir,
        backup_dir=state.backup_dir,
        recorder=recorder,
        images_per_epoch=images_per_epoch,
        stage=stage,
    )
    for node in cfg.callbacks.values():
        if node is not None and node.get("monitor"):
            recorded = recorder.metric_history(node.monitor)
            if recorded:
                values = recorded.values()
                ctx.best_so_far[node.monitor] = min(values) if "loss" in node.monitor else max(values)
    callbacks = build_callbacks(cfg.callbacks, ctx) + hooks.callbacks(cfg)
    plateau = plateau_callback(cfg.optimizer.schedule)
    if plateau is not None:
        callbacks.append(plateau)
    if budget is not None:
        callbacks.append(budget)
    return callbacks


def _fit_stages(
    cfg: DictConfig,
    model: keras.Model,
    data: DataSplits,
    recorder: tracking.NullRecorder,
    state: RunState,
    hooks: RunHooks,
) -> dict[str, list[float]]:
    """Train stage after stage from the same weights; epochs are numbered across stages."""
    t = cfg.trainer
    stages = _stages(cfg)
    steps_per_epoch = t.steps_per_epoch or math.ceil(len(data.x_train) / t.batch_size)
    images_per_epoch = steps_per_epoch * t.batch_size if t.steps_per_epoch else len(data.x_train)
    total_epochs = sum(stage.epochs for stage in stages)
    fit_history: dict[str, list[float]] = {}
    budget = TimeBudget(t.time_budget_s) if t.time_budget_s else None  # one clock across all stages
    epoch = 0
    for index, stage in enumerate(stages):
        if stage.freeze is not None:
            set_frozen(model, stage.freeze)
        # A new optimizer only where the stage asks for one: otherwise training
        # continues exactly, optimizer state included.
        if index == 0 or stage.freeze is not None or stage.lr is not None:
            learning_rate = compile_model(model, cfg, steps_per_epoch, total_epochs - epoch, lr=stage.lr)
            if budget is not None:
                budget.follow(learning_rate)
        train_ds, val_ds = _datasets(cfg, data, _stage_augmentation(cfg, stage))
        callbacks = _callbacks(cfg, recorder, state, images_per_epoch, stage=index, budget=budget, hooks=hooks)
        if len(stages) > 1:
            print(f"cifarlab: stage {index + 1}/{len(stages)} '{stage.name}': {stage.epochs} epochs", flush=True)
        fit = model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=epoch,
            epochs=epoch + stage.epochs,
            steps_per_epoch=t.steps_per_epoch,
            validation_steps=t.validation_steps,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself
            verbose=_verbosity(t.verbose),
        )
        _raise_if_diverged(cfg, callbacks)
        for name, values in fit.history.items():
            fit_history.setdefault(name, []).extend(values)
        epoch += len(fit.history.get("loss", []))
        if budget is not None and budget.exhausted:
            print(f"cifarlab: time budget of {t.time_budget_s:g}s spent; evaluating", flush=True)
            break
    return _history(recorder, fit_history)


def _raise_if_diverged(cfg: DictConfig, callbacks: list[keras.callbacks.Callback]) -> None:
    for cb in callbacks:
        if isinstance(cb, TerminateOnNonFinite) and cb.stopped_at:
            epoch, loss = cb.stopped_at
            raise CifarlabError(
                f"training loss became {loss} in epoch {epoch + 1}; lower optimizer.lr "
                f"(now {cfg.optimizer.lr:g}) or set optimizer.clipnorm"
            )


def _fit_without_gradients(
    cfg: DictConfig, model: keras.Model, data: DataSplits, recorder: tracking.NullRecorder
) -> dict[str, list[float]]:
    """Models fitted in closed form (the smallest-delta baseline): fit, then score on val."""
    started = time.perf_counter()
    model.fit_prototypes(data.x_train, data.y_train)
    probs = model.predict(eval_dataset(data.x_val, data.y_val, cfg.trainer.eval_batch_size), verbose=0)
    val_accuracy = float(np.mean(probs.argmax(axis=1) == data.y_val))
    recorder.log_metrics({"val/accuracy": val_accuracy, "epoch_seconds": time.perf_counter() - started}, step=0)
    if hasattr(model, "typical_images_figure"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "typical_images.png"
            model.typical_images_figure(data.class_names).savefig(path)
            recorder.log_artifact(path, "reports")
    print(f"cifarlab: fitted without gradients; val accuracy {val_accuracy:.4f}", flush=True)
    return {"val/accuracy": [val_accuracy]}


def _evaluate_and_record(
    cfg: DictConfig,
    model: keras.Model,
    data: DataSplits,
    recorder: tracking.NullRecorder,
    state: RunState,
    history: dict[str, list[float]],
) -> TrainResult:
    probs, test_accuracy, test_loss = evaluate_model(
        model, data, cfg.trainer.eval_batch_size, cfg.trainer.test_time_flip
    )
    recorder.log_metrics({"test/accuracy": test_accuracy, "test/loss": test_loss})
    _record_reports(recorder, cfg, data, probs, history)
    best_ckpt = state.checkpoint_dir / "best.keras"
    if cfg.tracking.log_checkpoints and best_ckpt.exists():
        recorder.log_artifact(best_ckpt, "checkpoints")
    if cfg.tracking.log_model:
        _log_model(recorder, model, data, probs)
    val_acc = history.get("val/accuracy")
    epochs_run = len(history.get("train/loss", []))
    recorder.log_metrics({"epochs_run": epochs_run, **({"val/best_accuracy": max(val_acc)} if val_acc else {})})
    return TrainResult(
        run_id=recorder.run_id,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        best_val_accuracy=max(val_acc) if val_acc else None,
        epochs_run=epochs_run,
        history=history,
    )


def _verbosity(setting: object) -> int:
    """``auto``: a progress bar on a terminal, one line per epoch in logs and CI."""
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def _record_reports(
    recorder: tracking.NullRecorder,
    cfg: DictConfig,
    data: DataSplits,
    probs: np.ndarray,
    history: dict[str, list[float]],
) -> None:
    from cifarlab.reports.writer import write_reports

    with tempfile.TemporaryDirectory() as tmp:
        summary = write_reports(
            Path(tmp),
            y_true=data.y_test,
            probs=probs,
            class_names=data.class_names,
            history=history,
            x_test=data.x_test,
            x_train=data.x_train,
            y_train=data.y_train,
            orientation=cfg.reports.orientation,
            top_pairs=cfg.reports.top_pairs,
            seed=cfg.trainer.seed,
        )
        recorder.log_artifacts(Path(tmp), "reports")
    recorder.log_metrics(summary.metrics)
    if summary.pairs:
        recorder.set_tags({"confused_pairs": "; ".join(str(p) for p in summary.pairs)})
        print("cifarlab: most confused: " + "; ".join(str(p) for p in summary.pairs[:3]), flush=True)


def _print_summary(cfg: DictConfig, result: TrainResult) -> None:
    print(f"cifarlab: test accuracy {result.test_accuracy:.4f} (loss {result.test_loss:.4f})", flush=True)
    if result.run_id:
        uri = tracking.tracking_uri(cfg)
        print(f"cifarlab: MLflow run {result.run_id} in experiment '{cfg.tracking.experiment}'", flush=True)
        ui_uri = uri
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            try:
                ui_uri = f"sqlite:///{db.relative_to(Path.cwd())}"
            except ValueError:
                pass
        if uri.startswith(("http://", "https://")):
            print(f"cifarlab: open {uri}/#/experiments to compare runs", flush=True)
        else:
            print(f"cifarlab: compare runs with: mlflow ui --backend-store-uri {ui_uri}", flush=True)
