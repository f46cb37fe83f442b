"""The sweep: an Optuna study driven by ask-and-tell, one Hydra job per trial.

Each batch of ``n_jobs`` trials is asked from the study, turned into override
lists and handed to the launcher (basic, joblib, submitit); each job's return
value (cifarlab: best validation accuracy) is told back. With ``repeats`` > 1 a
trial is ``repeats`` jobs, ``trainer.seed=<seed>+i``, and is told their mean (FAIL
if one failed, PRUNED if one was pruned). A job learns its trial
through ``hydra.job.env_set`` (an override of Hydra's config, not of the job's),
so it can report epochs for pruning; a pruned job returns no value and leaves a
user attr on its trial, and is told PRUNED.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

# The job's side: its trial comes in TRIAL_ENV; its pruning callback sets PRUNED_ATTR on the trial.
from cifarlab.sweeps.job import TRIAL_ENV
from cifarlab.sweeps.study import PRUNED_ATTR, resolve_storage

log = logging.getLogger(__name__)

IDENTITY_ATTR = "cifarlab.fixed_overrides"
REPEATS_ATTR = "cifarlab.repeat_values"  # each repeat's objective (seed -> value), when repeats > 1
SEED_KEY = "trainer.seed"
# Overrides that do not change what a trial computes (as in cifarlab.tracking.identity.config_hash).
_NOT_IDENTITY = ("tracking.", "paths.", "trainer.verbose")


def _say(message: str) -> None:
    print(f"cifarlab: optuna: {message}", flush=True)


def _choices(override: Override) -> List[Any]:
    choices = []
    for value in override.sweep_iterator(transformer=Transformer.encode):
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise HydraException(f"{override.input_line}: a choice must be str, int, float, bool or null")
        choices.append(value)
    return choices


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of a sweep override (choice, range, interval, with tags and casts)."""
    value = override.value()
    if override.is_choice_sweep():
        assert isinstance(value, ChoiceSweep)
        return CategoricalDistribution(_choices(override))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if value.shuffle:
            return CategoricalDistribution(_choices(override))
        points = list(value.range())
        if not points:
            raise HydraException(f"{override.input_line}: the range is empty")
        if all(isinstance(p, int) for p in points) and isinstance(value.step, int):
            # Hydra's range stops before ``stop``, like Python's: the last point is the high end.
            return IntDistribution(int(points[0]), int(points[-1]), step=int(value.step))
        return FloatDistribution(float(points[0]), float(points[-1]), step=float(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise HydraException(f"{override.input_line}: cifarlab_optuna supports choice, range and interval sweeps")


def search_space(
    lines: Sequence[str], parser: OverridesParser
) -> Tuple[Dict[str, Tuple[str, BaseDistribution]], Dict[str, str]]:
    """Sweep overrides -> {param: (override key, distribution)}; the others -> {key: override line}."""
    space: Dict[str, Tuple[str, BaseDistribution]] = {}
    fixed: Dict[str, str] = {}
    for override in parser.parse_overrides(list(lines)):
        key = override.get_key_element()
        name = key.lstrip("+~")
        space.pop(name, None)
        fixed.pop(name, None)
        if override.is_sweep_override():
            space[name] = (key, distribution(override))
        else:
            fixed[name] = str(override.input_line)
    return space, fixed


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r}")


def grid(dist: BaseDistribution, name: str) -> List[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
        n = int(round((dist.high - dist.low) / dist.step))
        return [dist.low + i * dist.step for i in range(n + 1)]
    raise HydraException(f"hydra/sweeper/sampler=grid needs choice or range for {name}, not an interval")


class OptunaSweeperImpl:
    def __init__(
        self,
        *,
        sampler: Any,
        pruner: Any,
        direction: str,
        storage: Optional[str],
        study_name: Optional[str],
        n_trials: int,
        n_jobs: int,
        params: Optional[DictConfig],
        repeats: int = 1,
    ) -> None:
        self.repeats = int(repeats)
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.direction = str(direction)
        self.storage = resolve_storage(storage)
        self.study_name = study_name
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.params = params
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # --- the study ---------------------------------------------------------------------------

    def _sampler(self, n_existing: int, space: Dict[str, Tuple[str, BaseDistribution]]) -> Any:
        cfg = OmegaConf.to_container(self.sampler_cfg, resolve=True) if OmegaConf.is_config(self.sampler_cfg) else dict(self.sampler_cfg)
        if cfg.get("seed") is not None:
            cfg["seed"] = int(cfg["seed"]) + n_existing  # a resumed study must not repeat its first draws
        sampler = instantiate(cfg)
        if cfg.get("_partial_"):  # the grid sampler: its grid comes from the search space
            sampler = sampler(search_space={name: grid(dist, name) for name, (_, dist) in space.items()})
        return sampler

    def _open_study(self, space: Dict[str, Tuple[str, BaseDistribution]], fixed: Dict[str, str]) -> optuna.Study:
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, direction=self.direction, load_if_exists=True
        )
        if study.direction.name.lower() != self.direction.lower():
            raise HydraException(
                f"study '{study.study_name}' maximises/minimises the other way ({study.direction.name}); "
                "choose another hydra.sweeper.study_name"
            )
        identity = sorted(line for name, line in fixed.items() if not name.startswith(_NOT_IDENTITY))
        earlier = study.user_attrs.get(IDENTITY_ATTR)
        if earlier is None:
            study.set_user_attr(IDENTITY_ATTR, identity)
        elif earlier != identity:
            raise HydraException(
                f"study '{study.study_name}' in {self.storage} was run with other overrides "
                f"({' '.join(earlier) or 'none'}; now {' '.join(identity) or 'none'}): its trials are not comparable; "
                "rerun with the same overrides to resume it, or set hydra.sweeper.study_name=<new name>"
            )
        study.sampler = self._sampler(len(study.trials), space)
        study.pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        # Trials left RUNNING by a sweep that died: FAIL them, and ask their parameters again.
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL, skip_if_finished=True)
            study.enqueue_trial(stale.params, user_attrs={"cifarlab.retry_of": stale.number})
            _say(f"trial {stale.number} was left RUNNING by an earlier sweep: marked FAIL, its parameters queued again")
        return study

    # --- the sweep ---------------------------------------------------------------------------

    def sweep(self, arguments: List[str]) -> Any:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        space, fixed = search_space(lines, parser)
        if not space:
            raise HydraException("hydra.sweeper.params defines no search space (e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1)))")
        if self.repeats < 1:
            raise HydraException(f"hydra.sweeper.repeats={self.repeats}: no run per trial; set hydra.sweeper.repeats=1 or more")
        if self.repeats > 1 and SEED_KEY in space:
            raise HydraException(
                f"hydra.sweeper.repeats={self.repeats} with {SEED_KEY} swept: repeats sets the seed itself; "
                f"fix {SEED_KEY}=<seed> (repeats run <seed>+0..{self.repeats - 1}) or drop repeats"
            )
        study = self._open_study(space, fixed)

        counted = (TrialState.COMPLETE, TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=counted))
        to_go = self.n_trials - done
        if isinstance(study.sampler, optuna.samplers.GridSampler):
            size = math.prod(len(grid(d, n)) for n, (_, d) in space.items())
            to_go = min(to_go, size - done)
        where = self.storage or "memory (not resumable)"
        _say(
            f"study '{study.study_name}' in {where}: {done} trials done, n_trials={self.n_trials}; "
            f"running {max(to_go, 0)} more ({type(study.sampler).__name__}, {type(study.pruner).__name__})"
        )
        if not self.storage:
            _say("no hydra.sweeper.storage: jobs cannot report epochs, so no pruning")

        while to_go > 0:
            batch = min(self.n_jobs, to_go)
            trials = [study.ask() for _ in range(batch)]
            overrides = [job for trial in trials for job in self._repeat_overrides(trial, space, fixed)]
            returns = list(self.launcher.launch(overrides, initial_job_idx=self.job_idx))
            self.job_idx += len(returns)
            for i, trial in enumerate(trials):
                self._tell(study, trial, returns[i * self.repeats : (i + 1) * self.repeats])
            to_go -= batch

        self._write_results(study)
        return None

    def _job_overrides(self, trial: optuna.Trial, space: Dict[str, Tuple[str, BaseDistribution]], fixed: Dict[str, str]) -> List[str]:
        lines = list(fixed.values())
        for name, (key, dist) in space.items():
            lines.append(f"{key}={format_value(suggest(trial, name, dist))}")
        if self.storage:
            lines.append(f"++hydra.job.env_set.{TRIAL_ENV}={trial._trial_id}")
        return lines

    def _repeat_overrides(self, trial: optuna.Trial, space: Dict[str, Tuple[str, BaseDistribution]], fixed: Dict[str, str]) -> List[List[str]]:
        """The trial's jobs: one, or ``repeats`` with trainer.seed=<composed seed>+i."""
        lines = self._job_overrides(trial, space, fixed)
        if self.repeats == 1:
            return [lines]
        lines = [line for line in lines if line != fixed.get(SEED_KEY)]
        base = int(OmegaConf.select(self.config, SEED_KEY, default=0) or 0)
        return [lines + [f"{SEED_KEY}={base + i}"] for i in range(self.repeats)]

    def _value(self, trial: optuna.Trial, ret: JobReturn) -> Optional[float]:
        """A job's objective; None when it failed or returned none."""
        if ret.status == JobStatus.COMPLETED:
            try:
                return float(ret.return_value)
            except (TypeError, ValueError):
                return None
        try:
            ret.return_value  # raises what the job raised
        except Exception as err:  # noqa: BLE001 - logged; the trial is told FAILED
            log.warning(f"trial {trial.number} raised {err!r}")
        return None

    def _tell(self, study: optuna.Study, trial: optuna.Trial, returns: Sequence[JobReturn]) -> None:
        values = [self._value(trial, ret) for ret in returns]
        failed = any(v is None or not math.isfinite(v) for v in values)
        value = None if failed else sum(values) / len(values)  # type: ignore[arg-type]
        if len(returns) > 1:
            seeds = [str(OmegaConf.select(ret.cfg, SEED_KEY)) if ret.cfg is not None else str(i) for i, ret in enumerate(returns)]
            trial.set_user_attr(REPEATS_ATTR, dict(zip(seeds, values)))
        params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
        # The job wrote to the trial from its own process: read it back from storage, not the cache.
        user_attrs = optuna.trial.Trial(study, trial._trial_id).user_attrs
        try:
            if PRUNED_ATTR in user_attrs:
                study.tell(trial, state=TrialState.PRUNED)
                _say(f"trial {trial.number} PRUNED after epoch {user_attrs[PRUNED_ATTR] + 1}: {params}")
            elif value is None or not math.isfinite(value):
                study.tell(trial, state=TrialState.FAIL)
                _say(f"trial {trial.number} FAILED: {params}")
            else:
                study.tell(trial, value)
                each = f" (mean of {len(values)}: {', '.join(f'{v:.4f}' for v in values)})" if len(values) > 1 else ""
                _say(f"trial {trial.number} value {value:.4f}{each}: {params}")
        except RuntimeError as err:
            # The grid sampler calls study.stop() once the grid is done; outside optimize() that raises.
            if "Study.stop" not in str(err):
                raise

    def _write_results(self, study: optuna.Study) -> None:
        results: Dict[str, Any] = {"name": "cifarlab_optuna", "study_name": study.study_name, "storage": self.storage}
        try:
            best = study.best_trial
        except ValueError:
            _say("no trial completed yet")
        else:
            results.update(best_trial=best.number, best_params=best.params, best_value=best.value)
            params = " ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
            _say(f"best trial {best.number} value {best.value:.4f}: {params}")
        folder = Path(str(self.config.hydra.sweep.dir))
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), folder / "optimization_results.yaml")
