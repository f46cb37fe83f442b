"""Data and model for a run, built before any MLflow run opens: bad input fails here, recording nothing."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from cifarlab.config.schema import TrainerConfig
from cifarlab.data.base import DataSplits, splits_digest
from cifarlab.models.layers.dropout_choice import resolve_fast_dropout
from cifarlab.models.layers.swap import has_plain_dropout, use_fast_dropout, use_fused_batchnorm
from cifarlab.models.transfer import TransferReport, load_source_model, set_frozen, transfer_weights
from cifarlab.models.whitening import fit_whitening, has_whitening
from cifarlab.training.builders import build_augmentation
from cifarlab.training.describe import plan_line
from cifarlab.training.plan import ModelSpec, RunPlan
from cifarlab.training.precision import apply_precision, global_policy, resolve_precision


@dataclass
class Prepared:
    data: DataSplits
    model: keras.Model
    transfer_report: TransferReport | None
    precision: str
    data_digest: str  # the images' content, part of the run's identity
    data_source: str | None  # the folder the images came from (None: generated)


def prepare(plan: RunPlan) -> Prepared:
    """Seed, precision policy, data, model (with transferred weights and swapped layers)."""
    t = plan.trainer
    keras.utils.set_random_seed(t.seed)
    precision = resolve_precision(t.precision)
    keras.mixed_precision.set_dtype_policy(global_policy(precision))
    data = plan.data.load()
    model = plan.model.build(data.input_shape, data.num_classes)
    if has_whitening(model):
        fit_whitening(model, data.x_train, seed=t.seed)
    build_augmentation(plan.augmentation, seed=t.seed)  # an unknown name fails now, not mid-run
    report = _init_from(plan.model, model, plan.target.uri)
    if plan.model.freeze != "none":
        set_frozen(model, plan.model.freeze)
    model = apply_precision(_fast_layers(t, model), precision)
    print(plan_line(plan, data, precision), flush=True)
    return Prepared(data, model, report, precision, splits_digest(data), plan.data.source())


def _init_from(spec: ModelSpec, model: keras.Model, tracking_uri: str) -> TransferReport | None:
    if spec.init_from is None:
        return None
    source = load_source_model(spec.init_from, tracking_uri)
    report = transfer_weights(source, model)
    print(f"cifarlab: weights from {spec.init_from}: {report.summary()}", flush=True)
    return report


def _fast_layers(trainer: TrainerConfig, model: keras.Model) -> keras.Model:
    """Swap in fused BatchNorm and fast dropout where switched on.

    Not under multi_worker: swapping rebuilds the model, which would create its
    variables collectively on every worker.
    """
    if trainer.strategy == "multi_worker":
        return model
    if trainer.fused_batchnorm:
        model = use_fused_batchnorm(model)
    # auto calibrates (once per machine) only for a model that has a Dropout to swap.
    if has_plain_dropout(model) and resolve_fast_dropout(trainer.fast_dropout):
        model = use_fast_dropout(model)
    return model
