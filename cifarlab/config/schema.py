"""Typed config schema, registered in Hydra's ConfigStore, with each section's range checks.

OmegaConf checks types while Hydra merges YAML and overrides (``optimizer.lr=abc``
fails there); the ``*_CHECKS`` tables beside each dataclass check ranges, and
``validate`` runs them all. Neither imports TensorFlow, so a bad value fails in well
under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from cifarlab.config.checks import Check, above, at_least, choose_one_of, null_or, one_of, run_checks
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


DATASET_CHECKS = (
    Check("val_fraction", lambda v: 0.0 < v < 1.0, "use a fraction strictly between 0 and 1, e.g. 0.1"),
    Check("limit_fraction", lambda v: 0.0 < v <= 1.0, "use a fraction in (0, 1]"),
    Check("num_classes", at_least(2), "use at least 2: a classifier needs two classes to tell apart"),
)


def check_dataset(dataset: DictConfig) -> None:
    run_checks(dataset, "dataset", DATASET_CHECKS)


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
    ema_momentum: Optional[float] = None  # e.g. 0.99: the model ends with an average of its recent weights
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


OPTIMIZER_CHECKS = (
    Check("lr", above(0), "use a positive learning rate, e.g. 1e-3"),
    Check("weight_decay", null_or(at_least(0)), "use null or a value >= 0"),
    Check("ema_momentum", null_or(lambda v: 0 < v < 1), "use null or a value in (0, 1), e.g. 0.99"),
)


def check_optimizer(optimizer: DictConfig) -> None:
    run_checks(optimizer, "optimizer", OPTIMIZER_CHECKS)


@dataclass
class AugmentationConfig:
    name: str = "none"
    flip: str = "none"  # none | horizontal | vertical | horizontal_and_vertical
    height_shift: float = 0.0
    width_shift: float = 0.0
    rotation_degrees: float = 0.0
    crop_padding: int = 0
    fill_mode: str = "nearest"
    mixup_alpha: float = 0.0  # mixup after the rest, weights ~ Beta(alpha, alpha); 0: none
    cutmix_alpha: float = 0.0  # CutMix after the rest, box shares ~ Beta(alpha, alpha); 0: none
    # With both alphas above 0, each batch takes mixup or CutMix at even odds.


FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
# How each augmentation fills pixels from outside the image, as its TF op names them.
FILL_MODES = {
    "shift_flip_rotate": ("nearest", "reflect", "wrap", "constant"),
    "crop_flip": ("reflect", "symmetric", "constant"),
}

AUGMENTATION_CHECKS = (
    Check("flip", one_of(FLIPS), choose_one_of(FLIPS)),
    Check("mixup_alpha", at_least(0), "use 0 (no mixup) or a positive Beta parameter, e.g. 0.5"),
    Check("cutmix_alpha", at_least(0), "use 0 (no CutMix) or a positive Beta parameter, e.g. 1.0"),
)


def check_augmentation(augmentation: DictConfig) -> None:
    run_checks(augmentation, "augmentation", AUGMENTATION_CHECKS)
    fill_modes = FILL_MODES.get(augmentation.name)
    if fill_modes:
        fix = f"{choose_one_of(fill_modes)} (for augmentation={augmentation.name})"
        run_checks(augmentation, "augmentation", (Check("fill_mode", one_of(fill_modes), fix),))


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
    # auto: bfloat16 where the hardware has bfloat16 units, else float32 (cifarlab/training/precision.py)
    precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16 | autocast_bfloat16
    jit_compile: Any = "auto"  # auto | true | false
    steps_per_execution: int = 1
    shuffle_buffer: Optional[int] = None  # None: the whole training split
    # Threads making training batches: auto is 1 when the CPU trains, tf.data autotuning on GPUs.
    input_parallelism: Any = "auto"  # auto | autotune | a positive number
    verbose: Any = "auto"  # auto (bar on a terminal, a line per epoch otherwise) | 0 | 1 | 2
    time_budget_s: Optional[float] = None
    # With a time budget, squeeze or stretch the schedule after each epoch so all of it ends as the time runs out.
    fit_schedule_to_budget: bool = True
    # Average test predictions over each image and its mirror image ...
    test_time_flip: bool = False
    # ... and over each image moved by this many pixels up, down, left and right (0: no moves).
    test_time_shift: int = 0
    strategy: str = "default"  # default | mirrored | multi_worker (tf.distribute)
    # Speedups (cifarlab/models/layers/), measured by python -m cifarlab bench:
    fused_batchnorm: bool = True  # BatchNorm trains with TensorFlow's fused kernel
    freeze_cancelled_bias: bool = True  # biases that a following BatchNorm cancels get no gradient
    # Dropout masks from 16 random bits per element, not 32; auto: where a cached calibration measures it faster.
    fast_dropout: Any = "auto"  # auto | true | false


# trainer.precision (cifarlab/training/precision.py says what each does)
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16", "autocast_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")


def _input_threads(value: Any) -> bool:
    # type(...) is int, not isinstance: True is an int too and means nothing here.
    return value in ("auto", "autotune") or (type(value) is int and value >= 1)


TRAINER_CHECKS = (
    Check("epochs", at_least(1), "use a whole number of at least 1"),
    Check("batch_size", at_least(1), "use a whole number of at least 1"),
    Check("eval_batch_size", at_least(1), "use at least 1"),
    Check("steps_per_epoch", null_or(at_least(1)), "use null (whole split) or at least 1"),
    Check("validation_steps", null_or(at_least(1)), "use null (whole split) or at least 1"),
    Check("label_smoothing", lambda v: 0.0 <= v < 1.0, "use a value in [0, 1)"),
    Check("precision", one_of(PRECISIONS), choose_one_of(PRECISIONS)),
    Check("jit_compile", one_of(("auto", True, False)), "choose auto, true or false"),
    Check("steps_per_execution", at_least(1), "use at least 1"),
    Check(
        "input_parallelism",
        _input_threads,
        "use auto, autotune (tf.data decides) or a positive number of threads",
    ),
    Check(
        "shuffle_buffer",
        null_or(at_least(1)),
        "use null (the whole training split) or a positive number of images",
    ),
    Check("time_budget_s", null_or(above(0)), "use null or a positive number of seconds"),
    Check("strategy", one_of(STRATEGIES), choose_one_of(STRATEGIES)),
    Check(
        "fast_dropout",
        one_of(("auto", True, False)),
        "choose auto (on where a short cached calibration measures it faster), true or false",
    ),
    Check("test_time_shift", lambda v: 0 <= v <= 8, "use 0 (no shifted views) or 1 to 8 pixels, e.g. 2"),
    Check(
        "verbose",
        one_of(("auto", 0, 1, 2)),
        "choose auto (a bar on a terminal, a line per epoch otherwise), 0 (silent), 1 (bar) or 2 (a line per epoch)",
    ),
)

# Every worker must stop at the same step and make the same collective calls.
MULTI_WORKER_CHECKS = (
    Check(
        "steps_per_execution",
        lambda v: v == 1,
        "use 1 with trainer.strategy=multi_worker (Keras's multi-step loop fails there)",
    ),
    Check(
        "jit_compile",
        lambda v: v is not True,
        "use auto or false with trainer.strategy=multi_worker (XLA has no CPU collectives)",
    ),
    Check(
        "time_budget_s",
        lambda v: v is None,
        "use null with trainer.strategy=multi_worker (workers' clocks would stop them at different steps)",
    ),
)


def check_trainer(trainer: DictConfig) -> None:
    run_checks(trainer, "trainer", TRAINER_CHECKS)
    if trainer.strategy == "multi_worker":
        run_checks(trainer, "trainer", MULTI_WORKER_CHECKS)


@dataclass
class TrackingConfig:
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI if set, else SQLite under paths.mlruns_dir
    uri: Optional[str] = None
    experiment: str = "cifarlab"
    run_name: Optional[str] = None
    log_model: bool = True
    log_checkpoints: bool = True
    # CPU, memory (and GPU where present) use, sampled by MLflow while the run trains.
    system_metrics: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # In a sweep, jobs whose config already has a FINISHED run are skipped unless this is set.
    rerun_finished: bool = False
    # Register the run's logged model as a new version of this registered model (a sweep: its best, as @champion).
    register_as: Optional[str] = None
    # A search's trials keep their trained model as a plain Keras file (checkpoints/trained.keras);
    # its best search_models get the MLflow model when the search ends (1: the best, a second
    # a model; more for comparing the runners-up). null: every trial logs it.
    search_models: Optional[int] = 1


TRACKING_CHECKS = (
    Check("search_models", null_or(at_least(0)), "use null (every trial) or a whole number >= 0, e.g. 3"),
)


def check_tracking(tracking: DictConfig) -> None:
    """A registered model needs a logged model to register."""
    run_checks(tracking, "tracking", TRACKING_CHECKS)
    name = tracking.get("register_as")
    if name is not None and not str(name).strip():
        raise ConfigError("tracking.register_as", name, "give a model name, e.g. tracking.register_as=cnn")
    if name is not None and not tracking.log_model:
        raise ConfigError(
            "tracking.register_as",
            name,
            "drop tracking.log_model=false, or drop tracking.register_as",
            "needs tracking.log_model=true (there is no logged model to register)",
        )


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
    # The PNG figures (confusion matrices, reliability, curves, image grids). null: every run's,
    # but a search's trials', whose best reports.search_top get theirs when the search ends
    # (1: the best; each trial drawn costs a second or two at the search's end).
    figures: Optional[bool] = None
    search_top: int = 1


ORIENTATIONS = ("true_rows", "pred_rows")  # the same as cifarlab/reports/confusion.py's
REPORTS_CHECKS = (Check("orientation", one_of(ORIENTATIONS), choose_one_of(ORIENTATIONS)),)


def check_reports(reports: DictConfig) -> None:
    run_checks(reports, "reports", REPORTS_CHECKS)


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


def check_model(model: Any) -> None:
    """The model node stays open (builders check their own keys), but it must name a model."""
    if not (isinstance(model, DictConfig) and isinstance(model.get("name"), str)):
        value = OmegaConf.to_container(model) if isinstance(model, DictConfig) else model
        raise ConfigError("model", value, "pick a model with model=<name>, e.g. model=cnn_bn")


# Each section of the config and the check of its ranges, run in this order.
SECTION_CHECKS = (
    ("trainer", check_trainer),
    ("dataset", check_dataset),
    ("optimizer", check_optimizer),
    ("reports", check_reports),
    ("tracking", check_tracking),
    ("augmentation", check_augmentation),
    ("model", check_model),
)


def validate(cfg: DictConfig) -> None:
    """Range checks the schema's types cannot express. Raises ConfigError."""
    for section, check in SECTION_CHECKS:
        check(cfg[section])


def register_configs() -> None:
    ConfigStore.instance().store(name="cifarlab_schema", node=CifarlabConfig)
