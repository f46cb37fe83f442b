"""Config of the ``cifarlab_optuna`` sweeper: ``hydra/sweeper=cifarlab_optuna``.

The search space uses the official hydra-optuna-sweeper's syntax in
``hydra.sweeper.params`` (or as sweep overrides on the command line)::

    hydra:
      sweeper:
        params:
          optimizer.lr: tag(log, interval(1e-4, 1e-1))   # float, log scale
          trainer.batch_size: choice(32, 64, 128)         # categorical
          model.dense_units: range(32, 129, step=32)      # int steps: 32, 64, 96, 128
          model.depth: int(interval(1, 4))                # int
          model.hidden_units: choice([300,150], [128])    # lists as categories

Samplers (``hydra/sweeper/sampler=tpe|random|grid``) and pruners
(``hydra/sweeper/pruner=median|nop|threshold|hyperband``) are config groups.
Nothing here imports Optuna: Hydra imports this module on every start.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    # A seed makes a study reproducible; each ask reseeds with the seed and the trials so far
    # mixed (cifarlab.sweeps.search.draw_seed), so a resumed study, another worker or a nearby
    # seed does not repeat earlier draws.
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: Optional[bool] = None
    # Trials other workers are running count as bad guesses, so parallel workers do not all
    # draw next to the same good point (no effect on a worker that runs one trial at a time).
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConfig:
    # search_space is filled in from hydra.sweeper.params (choice and range only).
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: Optional[int] = None


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0  # epochs (0-based) before pruning may stop a trial
    interval_steps: int = 1


@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class ThresholdPrunerConfig:
    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: Optional[float] = None  # prune when val accuracy is below this
    upper: Optional[float] = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class CifarlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.cifarlab_optuna_sweeper.optuna_sweeper.CifarlabOptunaSweeper"
    # The sweeper gets sampler and pruner as configs: it reseeds the sampler on resume,
    # gives the grid sampler its grid, and its jobs build the same pruner.
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])

    sampler: Any = MISSING
    # Epoch-level pruning of a job (cifarlab.sweeps.job_hooks.SweepJob.callbacks); nop switches it off.
    pruner: Any = MISSING
    # The job's return value (best validation accuracy) is maximised.
    direction: str = "maximize"
    # Where the study lives, e.g. sqlite:///mlruns/optuna.db (relative to where you run).
    # null keeps it in memory: no resume, and no pruning of jobs in other processes.
    storage: Optional[str] = None
    study_name: Optional[str] = None
    # The study's total budget: trials that ended COMPLETE or PRUNED count, FAILED ones
    # do not. Running the same command again resumes the study up to n_trials (and
    # does nothing once it is reached); raise n_trials to extend it.
    n_trials: int = 20
    # Trials in flight at once in this process; each starts as soon as another ends (no
    # batches). null: the launcher's n_jobs (joblib), else 1. The basic launcher runs one.
    n_jobs: Optional[int] = None
    # Runs per trial: its parameters are run ``repeats`` times with trainer.seed=<seed>+i
    # (i = 0..repeats-1, <seed> the composed trainer.seed), and Optuna is told their mean;
    # a failed repeat fails the trial, a pruned one prunes it. 1 adds no seed override.
    repeats: int = 1
    # Workers: the same command in several processes (or machines, with a database
    # storage) shares the study. Each beats for its running trials every
    # heartbeat_interval s; a trial without a beat for grace_period s is failed and
    # run again (at most max_retry times) by a live worker.
    heartbeat_interval: int = 15
    grace_period: int = 60
    max_retry: int = 3
    # Search space: dotted key -> sweep expression (see the module docstring).
    params: Optional[dict[str, str]] = None


_PROVIDER = "cifarlab_optuna_sweeper"
_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="cifarlab_optuna", node=CifarlabOptunaSweeperConf, provider=_PROVIDER)
for _name, _node in (("tpe", TPESamplerConfig), ("random", RandomSamplerConfig), ("grid", GridSamplerConfig)):
    _cs.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider=_PROVIDER)
for _name, _pruner in (
    ("median", MedianPrunerConfig),
    ("nop", NopPrunerConfig),
    ("threshold", ThresholdPrunerConfig),
    ("hyperband", HyperbandPrunerConfig),
):
    _cs.store(group="hydra/sweeper/pruner", name=_name, node=_pruner, provider=_PROVIDER)
