"""A run plan: the validated config turned, once, into what training consumes.

``assemble`` is the only function of ``cifarlab.training`` that reads the composed
root config; everything below it takes the ``RunPlan`` or the part of it it needs.
The plan holds typed settings (the schema's dataclasses), the config nodes the
registries build from (dataset, model, optimizer, augmentation, callbacks), the
tracking target, and the run's identity. Assembling touches nothing: no file, no
server, no TensorFlow device (a multi-worker strategy must come first).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

import keras
from omegaconf import DictConfig, OmegaConf

from cifarlab.config.schema import ReportsConfig, StageConfig, TrackingConfig, TrainerConfig
from cifarlab.data import data_source
from cifarlab.data.base import DataSplits
from cifarlab.tracking import TrackingTarget, config_hash, flatten, target_from_config
from cifarlab.training.builders import (
    LearningRate,
    build_model,
    build_optimizer,
    build_schedule,
    load_dataset,
    plateau_callback,
)

Section = TypeVar("Section")


@dataclass(frozen=True)
class DataSpec:
    """The dataset node and ``paths.data_dir``, where a dataset without a ``data_dir`` of its own looks."""

    node: DictConfig
    data_dir: str

    @property
    def name(self) -> str:
        return str(self.node.name)

    def load(self) -> DataSplits:
        return load_dataset(self.node, default_data_dir=self.data_dir)

    def source(self) -> str | None:
        """The folder the images are read from, for their lineage (None: generated)."""
        return data_source(self.node, self.data_dir)


@dataclass(frozen=True)
class ModelSpec:
    """The model node: its builder, and the transfer-learning keys every model has."""

    node: DictConfig

    @property
    def name(self) -> str:
        return str(self.node.name)

    @property
    def init_from(self) -> str | None:
        """Where the starting weights come from (a ``.keras`` file, ``runs:/...``, ``models:/...``), if anywhere."""
        value = self.node.get("init_from")
        return str(value) if value else None

    @property
    def freeze(self) -> Any:
        """Which layers train: ``none`` (all of them) or ``backbone`` (the head only); checked by ``set_frozen``."""
        return self.node.get("freeze", "none")

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        return build_model(self.node, input_shape, num_classes)


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer node; the optimizer and its schedule need the steps per epoch, known once the data is."""

    node: DictConfig

    @property
    def name(self) -> str:
        return str(self.node.name)

    @property
    def lr(self) -> float:
        return float(self.node.lr)

    def with_lr(self, lr: float | None) -> OptimizerSpec:
        """The same optimizer starting from ``lr`` (a stage's own rate); itself when ``lr`` is None."""
        return self if lr is None else OptimizerSpec(cast(DictConfig, OmegaConf.merge(self.node, {"lr": lr})))

    def schedule(self, steps_per_epoch: int, epochs: int) -> LearningRate:
        return build_schedule(self.node, steps_per_epoch, epochs)

    def build(
        self, steps_per_epoch: int, epochs: int, learning_rate: LearningRate | None = None
    ) -> keras.optimizers.Optimizer:
        return build_optimizer(self.node, steps_per_epoch, epochs, learning_rate=learning_rate)

    def plateau_callback(self) -> keras.callbacks.Callback | None:
        """ReduceLROnPlateau for the ``reduce_on_plateau`` schedule; None for the others."""
        return plateau_callback(self.node.schedule)


@dataclass(frozen=True)
class RunIdentity:
    """The composed config, kept whole (read-only) for two things only: the run's fingerprint, and
    recording the config with the run. No setting is read from it."""

    config: DictConfig

    def config_hash(self, data_digest: str) -> str:
        return config_hash(self.config, data_digest=data_digest)

    def params(self) -> dict[str, Any]:
        """The resolved config, flattened to dotted keys."""
        return flatten(OmegaConf.to_container(self.config, resolve=True))

    def yaml(self) -> str:
        return OmegaConf.to_yaml(self.config, resolve=True)


@dataclass(frozen=True)
class RunPlan:
    """Everything one training run is told, typed; see the module docstring."""

    trainer: TrainerConfig
    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    augmentation: DictConfig  # the run's augmentation node (a stage may bring its own)
    callbacks: DictConfig  # name -> callback node, in the order they run
    stages: tuple[StageConfig, ...]  # at least one, none longer than trainer.epochs
    reports: ReportsConfig
    tracking: TrackingConfig
    target: TrackingTarget
    state_dir: str  # resumable state, under <state_dir>/<config hash>/
    claim: dict[str, Any]  # a preset's published claims, tagged on the run
    identity: RunIdentity

    @property
    def default_run_name(self) -> str:
        return f"{self.model.name}-{self.data.name}"

    def without_tracking(self) -> RunPlan:
        """The same run recording nothing (a worker other than the chief)."""
        return replace(
            self,
            tracking=replace(self.tracking, enabled=False),
            target=replace(self.target, enabled=False),
        )


def assemble(cfg: DictConfig) -> RunPlan:
    """The run plan of a composed, validated root config ``cfg`` (a read-only copy of it: the plan
    does not change when ``cfg`` does)."""
    config = _read_only_copy(cfg)
    trainer = _typed(TrainerConfig, config.trainer)
    return RunPlan(
        trainer=trainer,
        data=DataSpec(config.dataset, str(config.paths.data_dir)),
        model=ModelSpec(config.model),
        optimizer=OptimizerSpec(config.optimizer),
        augmentation=config.augmentation,
        callbacks=config.callbacks,
        stages=_stages(config.stages, trainer.epochs),
        reports=_typed(ReportsConfig, config.reports),
        tracking=_typed(TrackingConfig, config.tracking),
        target=target_from_config(config),
        state_dir=str(config.paths.state_dir),
        claim=cast(dict, OmegaConf.to_container(config.claim, resolve=True)) if config.get("claim") else {},
        identity=RunIdentity(config),
    )


def _typed(schema: type[Section], node: DictConfig) -> Section:
    """A config section as its schema's dataclass, interpolations resolved."""
    return cast(Section, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node)))


def _stages(nodes: Any, max_epochs: int) -> tuple[StageConfig, ...]:
    """The configured stages, or one implicit stage of ``trainer.epochs``; each capped at it."""
    stages = [_typed(StageConfig, node) for node in nodes or []]
    if not stages:
        stages = [StageConfig(name="train", epochs=max_epochs)]
    return tuple(replace(stage, epochs=min(stage.epochs, max_epochs)) for stage in stages)


def _read_only_copy(config: DictConfig) -> DictConfig:
    frozen = copy.deepcopy(config)
    OmegaConf.set_readonly(frozen, True)
    return frozen
