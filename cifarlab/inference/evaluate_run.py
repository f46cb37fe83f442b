"""``cifarlab evaluate`` behind its options: a trained run's model scored again, recorded as a linked run.

The config is composed with the user's overrides, the source run (or the run
behind a registered model) looked up and its dataset settings applied, and the
model located, all before TensorFlow is imported. The new run holds the
metrics, the reports and the evaluated split as its dataset input.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import accuracy_score, log_loss

from cifarlab import tracking
from cifarlab.config.compose import compose_config, overridden_keys
from cifarlab.config.schema import validate
from cifarlab.data import data_source
from cifarlab.data.base import content_digest
from cifarlab.data.views import configured_views
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.inference.loading import LoadedModel, load_source, predict_probs
from cifarlab.inference.run_data import SPLITS, SplitData, apply_run_params, load_split
from cifarlab.inference.source import ModelSource, locate_model
from cifarlab.reports.writer import write_reports
from cifarlab.runtime.interrupts import signals_deferred, stop_if_signalled
from cifarlab.runtime.lease import process_tags, tagged_process_gone
from cifarlab.tracking import queries, runs
from cifarlab.tracking.registry import registered_run_id


@dataclass
class EvalArgs:
    run: str | None
    split: str = "test"
    output_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    model: str | None = None


@dataclass
class EvalResult:
    run_id: str | None
    experiment: str
    source_run_id: str
    split: str
    accuracy: float
    loss: float
    num_images: int


def eval_args(own: Any, overrides: list[str]) -> EvalArgs:
    """evaluate's own options (``run=``, ``model=``, ``split=``, ``output_dir=``), checked, with the overrides."""
    if bool(own.run) == bool(own.model):
        raise CifarlabError(
            "give one of run=<run id> (printed by training, listed by mlflow ui) "
            "or model=models:/<name>@<alias>"
        )
    split = own.split or "test"
    if split not in SPLITS:
        raise ConfigError("split", split, f"choose one of: {', '.join(SPLITS)}")
    return EvalArgs(own.run, split, own.output_dir or None, overrides, own.model)


def prepare(args: EvalArgs) -> tuple[DictConfig, Any, ModelSource]:
    """Config, source run and located model, all checked before TensorFlow is imported."""
    cfg = compose_config(args.overrides)
    uri = tracking.target_from_config(cfg).uri
    client = tracking.connect(uri)
    if args.model:  # a registered model: evaluate it on the data of the run that made it
        args.run = registered_run_id(client, args.model)
    if args.run is None:  # eval_args gives one of run= and model=; get_run(None) would fail
        raise CifarlabError("give one of run=<run id> or model=models:/<name>@<alias>")
    source_run = queries.get_run(client, args.run)
    apply_run_params(cfg, source_run.data.params, args.overrides)
    validate(cfg)
    if "tracking.experiment" not in overridden_keys(args.overrides):
        cfg.tracking.experiment = queries.experiment_name(client, source_run.info.experiment_id)
    if args.model:
        source = locate_model(model_uri=args.model, tracking_uri=uri)
    else:
        source = locate_model(run=args.run, tracking_uri=uri)
    if source_run.info.status != "FINISHED":
        print(
            f"cifarlab: warning: run {args.run} is {source_run.info.status}; evaluating its model anyway",
            file=sys.stderr,
            flush=True,
        )
    end_killed_evaluations(client, cfg, source_run)
    return cfg, source_run, source


def check_compatible(model: LoadedModel, data: SplitData) -> None:
    """The dataset's images and classes must fit the model."""
    if tuple(data.x.shape[1:]) != tuple(model.input_shape):
        raise CifarlabError(
            f"dataset {data.name} has images shaped {tuple(data.x.shape[1:])} but the model takes {model.input_shape}; "
            "evaluate on a dataset with the image size and channels it was trained on"
        )
    if data.num_classes != model.num_classes:
        raise CifarlabError(
            f"dataset {data.name} has {data.num_classes} classes but the model predicts {model.num_classes}; "
            "evaluate on a dataset with the same classes"
        )
    generic = [f"class_{i}" for i in range(model.num_classes)]
    if list(model.class_names) not in (list(data.class_names), generic):
        print(
            f"cifarlab: warning: the dataset's class names {list(data.class_names)} differ from the model's "
            f"{list(model.class_names)}; scoring by class index",
            file=sys.stderr,
            flush=True,
        )


def score(probs: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(accuracy, cross-entropy loss), as training computes them."""
    accuracy = float(accuracy_score(y, probs.argmax(axis=1)))
    clipped = np.clip(probs, 1e-7, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    loss = float(log_loss(y, clipped, labels=list(range(num_classes))))
    return accuracy, loss


def _prefixed(metrics: dict[str, float], split: str) -> dict[str, float]:
    """Report metrics are named ``test/...``; for split=val they become ``val/...``."""
    if split == "test":
        return metrics
    return {
        f"{split}/{k.removeprefix('test/')}" if k.startswith("test/") else k: v for k, v in metrics.items()
    }


def _tags(source_run: Any, args: EvalArgs, cfg: DictConfig) -> dict[str, str]:
    src = source_run.info
    src_name = src.run_name or src.run_id
    command = " ".join([f"run={args.run}", f"split={args.split}", *args.overrides])
    note = (
        f"Evaluation of run [{src_name}](#/experiments/{src.experiment_id}/runs/{src.run_id}) "
        f"(`{src.run_id}`) on the {args.split} split of {cfg.dataset.name}.\n\n"
        f"Command: `python -m cifarlab evaluate {command}`"
    )
    tags = {
        "source_run_id": src.run_id,
        "evaluation_of": src.run_id,
        "mlflow.note.content": note,
        "split": args.split,
        "dataset": str(cfg.dataset.name),
        "model": source_run.data.tags.get("model") or source_run.data.params.get("model.name"),
        "overrides": " ".join(args.overrides),
        "git_commit": tracking.git_commit(),
        **process_tags(),
        **dict(cfg.tracking.get("tags") or {}),
    }
    return {k: str(v) for k, v in tags.items() if v not in (None, "")}


def _params(source_run: Any, args: EvalArgs, cfg: DictConfig) -> dict[str, Any]:
    dataset = tracking.flatten(OmegaConf.to_container(cfg.dataset, resolve=True), "dataset")
    model = {
        k: v for k, v in source_run.data.params.items() if k.startswith("model.") or k.startswith("model/")
    }
    return {
        **dataset,
        "paths.data_dir": cfg.paths.data_dir,
        **model,
        "eval.split": args.split,
        "eval.source_run_id": args.run,
    }


def _write_reports(out: Path, cfg: DictConfig, data: SplitData, probs: np.ndarray) -> Any:
    return write_reports(
        out,
        y_true=data.y,
        probs=probs,
        class_names=list(data.class_names),
        x_test=data.x,
        orientation=cfg.reports.orientation,
        top_pairs=cfg.reports.top_pairs,
        seed=cfg.trainer.seed,
    )


def load_checked(source: ModelSource, data: SplitData) -> LoadedModel:
    """The located model (imports TensorFlow), checked to fit the data."""
    model, warnings = load_source(source)
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    check_compatible(model, data)
    return model


def _record(
    recorder: tracking.Recorder, cfg: DictConfig, args: EvalArgs, data: SplitData, model: LoadedModel
) -> tuple[float, float]:
    """Score the model on the split and record it in the open run; (accuracy, loss)."""
    split = tracking.DatasetInput(
        images=data.x,
        labels=data.y,
        name=data.name,
        context=args.split,
        source=data_source(cfg.dataset, cfg.paths.data_dir),
        digest=content_digest(data.x, data.y, names=data.class_names),
    )
    recorder.log_datasets([split])
    # The run's own test-time views: the same model on the same split scores as it did in training.
    views = configured_views(cfg.trainer, data.x)
    probs = np.mean([predict_probs(model, view, cfg.trainer.eval_batch_size) for view in views], axis=0)
    accuracy, loss = score(probs, data.y, data.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output_dir) if args.output_dir else Path(tmp)
        summary = _write_reports(out, cfg, data, probs)
        recorder.log_artifacts(out, "reports")
    metrics = {**summary.metrics, "test/loss": loss, "test/num_images": len(data.y)}
    recorder.log_metrics(_prefixed(metrics, args.split))
    if summary.pairs:
        recorder.set_tags({"confused_pairs": summary.pairs_tag()})
    return accuracy, loss


def end_killed_evaluations(client: Any, cfg: DictConfig, source_run: Any) -> None:
    """End KILLED the evaluations of this run that a killed ``evaluate`` left RUNNING."""
    if not cfg.tracking.enabled:
        return
    experiment_id = queries.experiment_id(client, cfg.tracking.experiment)
    if experiment_id is None:
        return
    gone = runs.end_orphans(
        client, experiment_id, "evaluation_of", source_run.info.run_id, tagged_process_gone
    )
    for run_id in gone:
        print(
            f"cifarlab: ended evaluation run {run_id} KILLED: the evaluate that made it was killed",
            flush=True,
        )


def evaluate(args: EvalArgs) -> EvalResult:
    """Evaluate the run's model on its (or the overridden) dataset and record a new run.

    Ctrl-C or SIGTERM stops it once the model and data are loaded (nothing recorded), or at a
    batch's end once its run is open (the run ends KILLED); never inside TensorFlow.
    """
    with signals_deferred(until="loading the model and the data"):  # acts before any run opens
        cfg, source_run, source = prepare(args)
        assert args.run is not None  # prepare set it, or raised
        print(f"cifarlab: loading {source.description} and the {args.split} split", flush=True)
        data = load_split(cfg, args.split)
        model = load_checked(source, data)
    with signals_deferred():
        return _evaluate_recorded(args, cfg, source_run, source, data, model)


def _evaluate_recorded(
    args: EvalArgs, cfg: DictConfig, source_run: Any, source: ModelSource, data: SplitData, model: LoadedModel
) -> EvalResult:
    """Evaluate the loaded model in a new run, which records the scores and reports."""
    assert args.run is not None
    run_name = f"eval-{source_run.info.run_name or args.run[:8]}"
    with tracking.open_run(
        tracking.target_from_config(cfg),
        resume_run_id=None,
        run_name=run_name,
        tags=_tags(source_run, args, cfg),
    ) as recorder:
        recorded = f" (run {recorder.run_id})" if recorder.run_id else ""
        print(
            f"cifarlab: evaluating {source.description} on {len(data.y)} {args.split} images "
            f"of {data.name}{recorded}",
            flush=True,
        )
        recorder.log_params(_params(source_run, args, cfg))
        accuracy, loss = _record(recorder, cfg, args, data, model)
        stop_if_signalled()  # a signal kept during the reports: the run ends KILLED, not FINISHED
    return EvalResult(
        recorder.run_id, cfg.tracking.experiment, args.run, args.split, accuracy, loss, len(data.y)
    )


def print_result(result: EvalResult, output_dir: str | None) -> None:
    """The score in one line, the run that records it (or how to keep the reports with tracking off)."""
    print(
        f"cifarlab: {result.split} accuracy {result.accuracy:.4f} (loss {result.loss:.4f}) "
        f"on {result.num_images} images",
        flush=True,
    )
    if result.run_id:
        print(
            f"cifarlab: MLflow run {result.run_id} in experiment '{result.experiment}' "
            f"records this evaluation of run {result.source_run_id}",
            flush=True,
        )
    elif not output_dir:
        print("cifarlab: tracking is off: add output_dir=<folder> to keep the reports", flush=True)
