"""Where an Optuna study lives: ``hydra.sweeper.storage``, opened once, with one-line errors.

Every process of a search (its workers, and the jobs that report epochs for
pruning) opens the study's storage here. The workers' storage has Optuna's
heartbeat: a worker beats for the trials it runs, and a trial whose worker
stopped beating for ``grace_period`` seconds is failed and, through Optuna's
``RetryHeartbeatStaleTrialCallback``, queued again for a live worker.

SQLite waits up to a minute for another process's write instead of failing
at once, and a new database file is created under a file lock, so that
workers started together do not race to create its tables.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from cifarlab.errors import CifarlabError
from cifarlab.runtime.locks import exclusive

SQLITE = "sqlite:///"
DRIVERS = {  # the dialect's default driver -> what to pip install
    "psycopg2": "psycopg2-binary (or use postgresql+psycopg://... with psycopg)",
    "psycopg": "psycopg[binary]",
    "MySQLdb": "mysqlclient (or use mysql+pymysql://... with pymysql)",
    "pymysql": "pymysql",
}
CONNECT_TIMEOUT_S = 10  # a database server that does not answer fails the start, not the search


def resolve_storage(url: str | None) -> str | None:
    """A relative SQLite path is relative to the folder the command runs in: make it absolute."""
    if not url:
        return url
    url = str(url)
    path = url[len(SQLITE) :]
    if url.startswith(SQLITE) and not path.startswith("/") and path != ":memory:":
        resolved = Path(path).expanduser().resolve()
        resolved.parent.mkdir(parents=True, exist_ok=True)
        return f"{SQLITE}{resolved}"
    return url


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _connect_args(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"timeout": 60}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def _missing_module(err: BaseException | None) -> str:
    """The module an ImportError (maybe wrapped by Optuna) could not find."""
    while err is not None:
        if isinstance(err, ImportError) and getattr(err, "name", None):
            return str(err.name)
        err = err.__cause__ or err.__context__
    return "for this URL"


def _why_not(url: str, err: BaseException) -> CifarlabError:
    where = f"hydra.sweeper.storage={shown(url)}"
    if isinstance(err, ImportError):
        module = _missing_module(err)
        fix = DRIVERS.get(module.split(".")[0], module)
        return CifarlabError(f"{where}: its database driver {module} is not installed; pip install {fix}")
    if isinstance(err, sqlalchemy.exc.ArgumentError):
        return CifarlabError(
            f"{where} is not a database URL ({err}); use e.g. sqlite:///mlruns/optuna.db or "
            "postgresql://user:password@host/db"
        )
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    return CifarlabError(
        f"{where} cannot be opened ({reason}); check the host, port, credentials and database name, "
        "or use hydra.sweeper.storage=sqlite:///mlruns/optuna.db on one machine"
    )


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
) -> optuna.storages.RDBStorage:
    """The study's RDB storage; with ``heartbeat_interval``, stale trials are failed and retried."""
    callback = None
    if heartbeat_interval:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": _connect_args(url)},
                heartbeat_interval=heartbeat_interval or None,
                grace_period=grace_period or None,
                heartbeat_stale_trial_callback=callback,
            )

    try:
        if url.startswith(SQLITE) and url != f"{SQLITE}:memory:":
            with exclusive(Path(url[len(SQLITE) :] + ".lock")):
                return create()
        return create()
    except (ImportError, OSError, sqlalchemy.exc.SQLAlchemyError) as err:
        raise _why_not(url, err) from None


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of study ``study_name``: what the trial's heartbeat, and a
    handle on the trial from another process (``optuna.trial.Trial``), take."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)
