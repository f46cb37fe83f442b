"""The search space of an Optuna sweep: Hydra sweep overrides as Optuna distributions.

``optimizer.lr=tag(log, interval(1e-4, 1e-1))`` becomes a log-scale float,
``choice(...)`` a categorical, ``range(...)`` an int or float with a step (the
official hydra-optuna-sweeper's syntax). The sweeper and the sweep's preflight
(``cifarlab.sweeps.search``) both read the space from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from omegaconf import DictConfig
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from cifarlab.errors import CifarlabError

SEED_KEY = "trainer.seed"  # what hydra.sweeper.repeats varies
Space = dict[str, tuple[str, BaseDistribution]]  # param name -> (override key, distribution)


def _choices(override: Override) -> list[Any]:
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
        if value.start is None or value.end is None:  # Hydra's grammar gives both; float(None) would fail
            raise HydraException(f"{override.input_line}: an interval needs a start and an end")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise HydraException(f"{override.input_line}: cifarlab_optuna supports choice, range and interval sweeps")


def search_space(lines: Sequence[str], parser: OverridesParser) -> tuple[Space, dict[str, str]]:
    """Sweep overrides -> {param: (override key, distribution)}; the others -> {key: override line}."""
    space: Space = {}
    fixed: dict[str, str] = {}
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


def grid(dist: BaseDistribution, name: str) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
        n = int(round((dist.high - dist.low) / dist.step))
        return [dist.low + i * dist.step for i in range(n + 1)]
    raise HydraException(f"hydra/sweeper/sampler=grid needs choice or range for {name}, not an interval")


def sweep_lines(params: Optional[DictConfig], arguments: Sequence[str]) -> list[str]:
    """``hydra.sweeper.params`` as override lines, then the command line's (which win)."""
    return [f"{k!s}={v}" for k, v in (params or {}).items()] + list(arguments)


def check_repeats(repeats: int, space: Space) -> None:
    if not space:
        raise CifarlabError(
            "hydra.sweeper.params defines no search space; add e.g. "
            "hydra.sweeper.params.optimizer.lr='tag(log, interval(1e-4, 1e-1))'"
        )
    if repeats < 1:
        raise CifarlabError(
            f"hydra.sweeper.repeats={repeats}: no run per trial; set hydra.sweeper.repeats=1 or more"
        )
    if repeats > 1 and SEED_KEY in space:
        raise CifarlabError(
            f"hydra.sweeper.repeats={repeats} with {SEED_KEY} swept: repeats sets the seed itself; "
            f"fix {SEED_KEY}=<seed> (repeats run <seed>+0..{repeats - 1}) or drop repeats"
        )
