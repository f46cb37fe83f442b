"""Where an Optuna study lives: ``hydra.sweeper.storage``, opened once, with one-line errors.

Every process of a search (its workers, and the jobs that report epochs for
pruning) opens the study's storage here. The workers' storage has Optuna's
heartbeat: a worker beats for the trials it runs, and a trial whose worker
stopped beating for ``grace_period`` seconds is failed and, through Optuna's
``RetryHeartbeatStaleTrialCallback``, queued again for a live worker.

SQLite waits up to a minute for another process's write instead of failing
at once. Workers started together on a new database would race to create its
tables (on PostgreSQL one dies of ``duplicate key value violates unique
constraint``): the storage is opened under ``storage_lock``, a file lock beside a
SQLite file, an advisory lock of the PostgreSQL or MySQL server otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from cifarlab.errors import CifarlabError
from cifarlab.runtime.locks import exclusive
from cifarlab.tracking.connections import track_engines

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
            "postgresql+psycopg://user:password@host/db"
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
    track_engines()  # closed when the command ends
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
        with storage_lock(url, "schema"):  # one worker creates the tables, the others find them
            return create()
    except (ImportError, OSError, sqlalchemy.exc.SQLAlchemyError) as err:
        raise _why_not(url, err) from None


@contextlib.contextmanager
def storage_lock(url: str | None, name: str) -> Iterator[None]:
    """Held by one process of all that share the storage at ``url``: a file lock beside a SQLite
    file; PostgreSQL's pg_advisory_lock or MySQL's GET_LOCK, held by one connection (released
    when the block ends or the connection drops); no lock for other storages."""
    if url and url.startswith(SQLITE) and url != f"{SQLITE}:memory:":
        with exclusive(Path(f"{url[len(SQLITE) :]}.{name}.lock")):
            yield
    elif url and url.startswith(("postgresql", "mysql")):
        with _server_lock(url, f"cifarlab-optuna-{name}"):
            yield
    else:
        yield


@contextlib.contextmanager
def _server_lock(url: str, name: str) -> Iterator[None]:
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args=_connect_args(url)
    )
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    take, give = (
        ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)")
        if url.startswith("postgresql")
        else ("SELECT GET_LOCK(:name, -1)", "SELECT RELEASE_LOCK(:name)")
    )
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(take), {"key": key, "name": name})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(give), {"key": key, "name": name})
    finally:
        engine.dispose()


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of study ``study_name``: what the trial's heartbeat, and a
    handle on the trial from another process (``optuna.trial.Trial``), take."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)
