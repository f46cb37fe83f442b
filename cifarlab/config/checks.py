"""The machinery of range checks: a check names a field, what it must satisfy, and the fix.

The checks themselves sit in ``schema.py`` beside the fields they check. This module
imports neither TensorFlow nor Hydra, so a bad value fails in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from cifarlab.errors import ConfigError

Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Check:
    """``key`` (relative to its section) must satisfy ``ok``; otherwise the error says ``fix``."""

    key: str
    ok: Predicate
    fix: str


def at_least(low: float) -> Predicate:
    return lambda value: value >= low


def above(low: float) -> Predicate:
    return lambda value: value > low


def null_or(ok: Predicate) -> Predicate:
    return lambda value: value is None or ok(value)


def one_of(choices: Collection[Any]) -> Predicate:
    return lambda value: value in choices


def choose_one_of(choices: Iterable[str]) -> str:
    """The fix for a value outside a fixed set of choices."""
    return f"choose one of: {', '.join(choices)}"


def run_checks(node: DictConfig, section: str, checks: Iterable[Check]) -> None:
    """Raise ConfigError for the first check in ``checks`` that ``node`` fails."""
    for check in checks:
        value = node[check.key]
        if not check.ok(value):
            raise ConfigError(f"{section}.{check.key}", value, check.fix)
