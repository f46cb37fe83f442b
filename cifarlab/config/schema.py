"""Typed config schema, registered in Hydra's ConfigStore.

OmegaConf checks types while Hydra merges YAML and overrides (``optimizer.lr=abc``
fails there); ``validate`` checks ranges. Neither imports TensorFlow, so a bad
value fails in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from cifarlab.errors import ConfigError


@dataclass
class DatasetConfig:
    name: str = "cifar10"
    # A folder holding the dataset's files; None means look in paths.data_dir.
    data_dir: Optional[str] = None
    download: bool = True
    val_fraction: float = 0.1
    # Fixed apart from trainer.seed, so a seed sweep keeps one validation set.
    split_seed: int = 0
    # Keep this fraction of every split (debug=limit); 1.0 keeps everything.
    limit_fraction: float = 1.0
    # synthetic and image_folder only
    num_classes: int = 10
    samples_per_class: int = 40
    test_samples_per_class: int = 10
    image_size: int = 32
    channels: int = 3


@dataclass
class ScheduleConfig:
    name: str = "constant"
    warmup_epochs: float = 0.0
    # step: multiply by gamma every step_epochs
    step_epochs: float = 30.0
    gamma: float = 0.1
    # cosine / one-cycle: the final learning rate as a fraction of optimizer.lr
    final_lr_fraction: float = 0.0
    # reduce_on_plateau: multiply by gamma when `monitor` stalls for `patience` epochs
    monitor: str = "val/loss"
    patience: int = 10
    min_lr: float = 1e-6


@dataclass
class OptimizerConfig:
    name: str = "nadam"
    lr: float = 1e-3
    weight_decay: Optional[float] = None
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    rho: float = 0.9
    clipnorm: Optional[float] = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class AugmentationConfig:
    name: str = "none"
    flip: str = "none"  # none | horizontal | vertical | horizontal_and_vertical
    height_shift: float = 0.0
    width_shift: float = 0.0
    rotation_degrees: float = 0.0
    crop_padding: int = 0
    fill_mode: str = "nearest"


@dataclass
class TrainerConfig:
    epochs: int = 200
    batch_size: int = 64
    eval_batch_size: int = 512
    seed: int = 42
    # None runs through the whole training split each epoch
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    label_smoothing: float = 0.0
    # auto: bfloat16 where the hardware has bfloat16 units, else float32 (cifarlab/precision.py)
    precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16 | autocast_bfloat16
    jit_compile: Any = "auto"  # auto | true | false
    steps_per_execution: int = 1
    shuffle_buffer: Optional[int] = None  # None: the whole training split
    # Threads making training batches: auto is 1 when the CPU trains, tf.data autotuning on GPUs.
    input_parallelism: Any = "auto"  # auto | autotune | a positive number
    verbose: Any = "auto"  # auto (bar on a terminal, a line per epoch otherwise) | 0 | 1 | 2
    time_budget_s: Optional[float] = None
    # With a time budget, squeeze the schedule after each epoch so all of it fits the time left.
    fit_schedule_to_budget: bool = True
    # Average test predictions over each image and its mirror image.
    test_time_flip: bool = False
    strategy: str = "default"  # default | mirrored | multi_worker (tf.distribute)
    # Speedups (cifarlab/fast_training.py), measured by python -m cifarlab.bench:
    fused_batchnorm: bool = True  # BatchNorm trains with TensorFlow's fused kernel
    freeze_cancelled_bias: bool = True  # biases that a following BatchNorm cancels get no gradient
    fast_dropout: bool = True  # Dropout masks from 16 random bits per element, not 32


@dataclass
class TrackingConfig:
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI if set, else SQLite under paths.mlruns_dir
    uri: Optional[str] = None
    experiment: str = "cifarlab"
    run_name: Optional[str] = None
    log_model: bool = True
    log_checkpoints: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # In a sweep, jobs whose config already has a FINISHED run are skipped unless this is set.
    rerun_finished: bool = False


@dataclass
class PathsConfig:
    # Where Keras's own downloads land, so a cached CIFAR-10 is found offline.
    data_dir: str = "${oc.env:KERAS_HOME,${oc.env:HOME,.}/.keras}/datasets"
    mlruns_dir: str = "mlruns"
    # Resumable state (BackupAndRestore, checkpoints) keyed by the run's config hash.
    state_dir: str = "${paths.mlruns_dir}/state"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class StageConfig:
    """One stage of multi-stage training; null fields keep what the previous stage used."""

    name: str = "train"
    epochs: int = 1  # capped by trainer.epochs, so debug presets shorten every stage
    augmentation: Optional[Any] = None  # a full augmentation node, e.g. {name: flip, flip: horizontal}
    lr: Optional[float] = None
    freeze: Optional[str] = None  # backbone | none


@dataclass
class ReportsConfig:
    # true_rows: true labels on the rows (sklearn); pred_rows: predicted labels on the rows
    orientation: str = "true_rows"
    top_pairs: int = 5


@dataclass
class CifarlabConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    # Models differ in their hyperparameters: the node stays open, builders check it.
    model: Any = field(default_factory=lambda: {"name": "cnn_bn"})
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    callbacks: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    # Empty: one stage of trainer.epochs with the augmentation group's choice.
    stages: list[StageConfig] = field(default_factory=list)
    # Published claims of an experiment preset, logged as tags.
    claim: dict[str, Any] = field(default_factory=dict)


def register_configs() -> None:
    ConfigStore.instance().store(name="cifarlab_schema", node=CifarlabConfig)


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


# trainer.precision (cifarlab/precision.py says what each does)
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16", "autocast_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")
ORIENTATIONS = ("true_rows", "pred_rows")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
# How each augmentation fills pixels from outside the image, as its TF op names them.
FILL_MODES = {"shift_flip_rotate": ("nearest", "reflect", "wrap", "constant"), "crop_flip": ("reflect", "symmetric", "constant")}


def validate(cfg: DictConfig) -> None:
    """Range checks the schema's types cannot express. Raises ConfigError."""
    t, d, o = cfg.trainer, cfg.dataset, cfg.optimizer
    _check(t.epochs >= 1, "trainer.epochs", t.epochs, "use a whole number of at least 1")
    _check(t.batch_size >= 1, "trainer.batch_size", t.batch_size, "use a whole number of at least 1")
    _check(
        t.eval_batch_size >= 1, "trainer.eval_batch_size", t.eval_batch_size, "use at least 1"
    )
    for key in ("steps_per_epoch", "validation_steps"):
        v = t[key]
        _check(v is None or v >= 1, f"trainer.{key}", v, "use null (whole split) or at least 1")
    _check(
        0.0 < d.val_fraction < 1.0,
        "dataset.val_fraction",
        d.val_fraction,
        "use a fraction strictly between 0 and 1, e.g. 0.1",
    )
    _check(
        0.0 < d.limit_fraction <= 1.0,
        "dataset.limit_fraction",
        d.limit_fraction,
        "use a fraction in (0, 1]",
    )
    _check(o.lr > 0, "optimizer.lr", o.lr, "use a positive learning rate, e.g. 1e-3")
    _check(
        o.weight_decay is None or o.weight_decay >= 0,
        "optimizer.weight_decay",
        o.weight_decay,
        "use null or a value >= 0",
    )
    _check(
        0.0 <= t.label_smoothing < 1.0,
        "trainer.label_smoothing",
        t.label_smoothing,
        "use a value in [0, 1)",
    )
    _check(t.precision in PRECISIONS, "trainer.precision", t.precision, f"choose one of: {', '.join(PRECISIONS)}")
    _check(
        t.jit_compile in ("auto", True, False),
        "trainer.jit_compile",
        t.jit_compile,
        "choose auto, true or false",
    )
    _check(
        t.steps_per_execution >= 1, "trainer.steps_per_execution", t.steps_per_execution, "use at least 1"
    )
    _check(
        t.input_parallelism in ("auto", "autotune")
        or (type(t.input_parallelism) is int and t.input_parallelism >= 1),  # not bool
        "trainer.input_parallelism",
        t.input_parallelism,
        "use auto, autotune (tf.data decides) or a positive number of threads",
    )
    _check(
        t.shuffle_buffer is None or t.shuffle_buffer >= 1,
        "trainer.shuffle_buffer",
        t.shuffle_buffer,
        "use null (the whole training split) or a positive number of images",
    )
    _check(
        t.time_budget_s is None or t.time_budget_s > 0,
        "trainer.time_budget_s",
        t.time_budget_s,
        "use null or a positive number of seconds",
    )
    _check(
        t.strategy in STRATEGIES,
        "trainer.strategy",
        t.strategy,
        f"choose one of: {', '.join(STRATEGIES)}",
    )
    if t.strategy == "multi_worker":
        # Every worker must stop at the same step and make the same collective calls.
        _check(t.steps_per_execution == 1, "trainer.steps_per_execution", t.steps_per_execution,
               "use 1 with trainer.strategy=multi_worker (Keras's multi-step loop fails there)")
        _check(t.jit_compile is not True, "trainer.jit_compile", t.jit_compile,
               "use auto or false with trainer.strategy=multi_worker (XLA has no CPU collectives)")
        _check(t.time_budget_s is None, "trainer.time_budget_s", t.time_budget_s,
               "use null with trainer.strategy=multi_worker (workers' clocks would stop them at different steps)")
    _check(
        cfg.reports.orientation in ORIENTATIONS,
        "reports.orientation",
        cfg.reports.orientation,
        f"choose one of: {', '.join(ORIENTATIONS)}",
    )
    _check(
        cfg.augmentation.flip in FLIPS,
        "augmentation.flip",
        cfg.augmentation.flip,
        f"choose one of: {', '.join(FLIPS)}",
    )
    fill_modes = FILL_MODES.get(cfg.augmentation.name)
    if fill_modes:
        _check(
            cfg.augmentation.fill_mode in fill_modes,
            "augmentation.fill_mode",
            cfg.augmentation.fill_mode,
            f"choose one of: {', '.join(fill_modes)} (for augmentation={cfg.augmentation.name})",
        )
    _check(
        isinstance(cfg.model, DictConfig) and isinstance(cfg.model.get("name"), str),
        "model",
        OmegaConf.to_container(cfg.model) if isinstance(cfg.model, DictConfig) else cfg.model,
        "pick a model with model=<name>, e.g. model=cnn_bn",
    )
