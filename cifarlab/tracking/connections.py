"""The database connections of this process's stores, closed when a command ends.

MLflow's and Optuna's stores keep pooled SQLAlchemy connections open for the life of
the process. A command that skips Python's teardown (``cifarlab.runtime.teardown``)
closes them itself first: the last connection to a SQLite store folds its write-ahead
log into the store file (a copy of ``mlflow.db`` alone then holds every run), and a
PostgreSQL server is told goodbye instead of seeing the socket drop.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from cifarlab.runtime import teardown

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def track_engines() -> None:
    """Remember every SQLAlchemy engine that connects from now on (MLflow's, Optuna's) to close
    it when the command ends. Call it before a store is first opened; calling again is free."""
    if not event.contains(Engine, "engine_connect", _remember):
        event.listen(Engine, "engine_connect", _remember)
    teardown.before_exit(close_engines)


def close_engines() -> None:
    """Close the pooled connections of every engine remembered (a connection in use stays open)."""
    for engine in list(_engines):
        engine.dispose()


def _remember(connection: Any) -> None:
    _engines.add(connection.engine)
