"""Calls to an MLflow server that ride out a brief outage of its database.

A server whose database restarts or fails over answers 503 (Service
Unavailable) for a few seconds while /health still says OK. MLflow's own
retries are bounded to seconds (``store.RUN_HTTP_LIMITS``, so that a hanging
server lets a run go within a minute); a call that still meets 503s is tried
again here, every few seconds for up to ``OUTAGE_S``, instead of failing the
run. Other failures (500s, hangs, refused connections) are not retried here.

Where the store is a database this process writes itself (SQLite, PostgreSQL),
each call holds Ctrl-C and SIGTERM until it returns: the KeyboardInterrupt they
raise, landing inside a transaction, would leave its lock held, and every other
writer of the store (a sweep's other jobs, this run's own ending) would then
wait on it and fail with "database is locked".
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cifarlab.runtime.interrupts import signals_held

OUTAGE_S = 60.0  # how long a server may answer 503 before the call fails
POLL_S = 3.0
UNAVAILABLE = re.compile(r"too many 503 error responses|TEMPORARILY_UNAVAILABLE")
DATABASES = re.compile(r"^(sqlite|postgresql|mysql|mssql)[+:]")  # stores MLflow writes in this process

T = TypeVar("T")


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a server answering 503."""
    current: BaseException | None = err
    while current is not None:
        if UNAVAILABLE.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def ride_out(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, tried again while the server answers 503, for up to ``OUTAGE_S``."""
    deadline = time.monotonic() + OUTAGE_S
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as err:
            if not unavailable(err) or time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)


class Patient:
    """``target`` (the ``mlflow`` module, an ``MlflowClient``) whose calls ride out 503s (``ride_out``)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        from mlflow import MlflowClient

        attr = getattr(self._target, name)
        if not callable(attr) or isinstance(attr, type) and not issubclass(attr, MlflowClient):
            return attr

        @functools.wraps(attr)
        def patient_call(*args: Any, **kwargs: Any) -> Any:
            with signals_held() if DATABASES.match(self._tracking_uri()) else contextlib.nullcontext():
                result = ride_out(attr, *args, **kwargs)
            return Patient(result) if isinstance(result, MlflowClient) else result  # its calls too

        return patient_call

    def _tracking_uri(self) -> str:
        """The store the calls go to: the client's, or the ``mlflow`` module's active one."""
        uri = getattr(self._target, "tracking_uri", None)
        if isinstance(uri, str):
            return uri
        get_uri = getattr(self._target, "get_tracking_uri", None)
        return str(get_uri()) if callable(get_uri) else ""
