"""Where runs are stored: opening the store (new or existing), its server, the experiment.

Every caller that needs a client on the store gets it here: ``store_client`` for
a store that may be new (training, sweeps), ``connect`` for one that must exist
already (the commands that read trained runs). MLflow is imported only when a
store is opened.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cifarlab.errors import CifarlabError, StoreError
from cifarlab.runtime.locks import exclusive
from cifarlab.tracking.connections import track_engines
from cifarlab.tracking.outages import Patient, ride_out
from cifarlab.tracking.relocation import follow_moved_folder, moved_from
from cifarlab.tracking.store_faults import describe_store_failure, migration_clash, schema_mismatch
from cifarlab.tracking.store_making import await_other_maker, still_migrating
from cifarlab.tracking.target import TrackingTarget, resolve_target


def target_from_config(cfg: DictConfig) -> TrackingTarget:
    """The tracking target of a composed root config (``tracking.*`` and ``paths.mlruns_dir``)."""
    return resolve_target(
        cfg.tracking.get("uri"),
        cfg.paths.mlruns_dir,
        cfg.tracking.experiment,
        enabled=bool(cfg.tracking.enabled),
        system_metrics=bool(cfg.tracking.get("system_metrics", True)),
    )


def check_server_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail before training, in one line, when an MLflow server does not answer."""
    if not is_server(uri):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            pass
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CifarlabError(
            f"tracking.uri={uri!r} cannot be reached ({reason}); start the server "
            "(mlflow server ...) or choose another store, e.g. tracking.uri=sqlite:///mlruns/mlflow.db"
        ) from None


def open_store(uri: str) -> None:
    """Create and migrate a SQLite store once, whoever opens it first.

    MLflow creates and migrates its database when a client first touches it, and
    several processes doing that at once on a new store collide (duplicate
    columns, half-made alembic tables). So the first touch happens under a file
    lock beside the database; the others wait, then find it ready.
    """
    track_engines()  # closed when the command ends, whatever the store
    if is_server(uri):
        _open_server(uri)
        return
    if not uri.startswith("sqlite:///"):
        first_touch(uri)
        return
    db = Path(uri.removeprefix("sqlite:///"))
    _open_sqlite(db, db.is_file())  # a store removed since is opened (created) again


@functools.cache
def _open_sqlite(db: Path, existed: bool) -> None:
    """Once per process and database file (a failure is not remembered): a search's trials
    and a sweep's jobs in one process each open the store; the first open is the one that counts."""
    uri = f"sqlite:///{db}"
    with exclusive(db.with_name(db.name + ".lock")):
        if existed:  # perhaps by a program that takes no lock of ours, still making it
            await_other_maker(db, MIGRATION_WAIT_S)
        first_touch(uri, new=not existed)
        _write_ahead_log(db)
        _follow_moved_folder(db)


@functools.cache
def _open_server(uri: str) -> None:
    """Once per process and server (a failure is not remembered): it answers, and its API works."""
    check_server_reachable(uri)
    bound_http_retries()
    first_touch(uri)


def _follow_moved_folder(db: Path) -> None:
    old = follow_moved_folder(db)
    if old is not None:
        print(
            f"cifarlab: the store moved from {old} to {db.resolve().parent}; its runs' artifacts "
            "are now read and written here",
            flush=True,
        )


MIGRATION_WAIT_S = 30.0


def first_touch(uri: str, new: bool = False) -> None:
    """The store's first query; a damaged store, or one from another MLflow, ends in one line."""
    try:
        _first_query(uri, new)
    except Exception as err:  # MLflow and SQLAlchemy raise their own types; classified by message
        line = describe_store_failure(uri, err)
        if line is None:
            raise
        raise StoreError(line) from None


def _first_query(uri: str, new: bool) -> None:
    """Query the store, which MLflow creates and migrates first if it is ``new``. Another program
    (``mlflow ui``, a script) migrating the same new store at the same moment takes no lock of
    ours: both try the same steps and one fails, in any of a dozen ways, or its tables are all
    there while its revision is still moving on. Then the other's migration is waited for, up to
    ``MIGRATION_WAIT_S``."""
    import mlflow

    # MLflow logs every database error with its traceback before raising it; the error itself
    # still reaches the command, which reports it (in one line when it is a store fault).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    deadline = time.monotonic() + MIGRATION_WAIT_S
    while True:
        try:
            ride_out(mlflow.MlflowClient(uri).search_experiments, max_results=1)
            return
        except Exception as err:
            if not _other_is_migrating(uri, err, new) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _other_is_migrating(uri: str, err: BaseException, new: bool) -> bool:
    if migration_clash(err, new):
        return True
    if schema_mismatch(err) and uri.startswith("sqlite:///"):
        return still_migrating(Path(uri.removeprefix("sqlite:///")))
    return False


def _write_ahead_log(db: Path) -> None:
    """Switch the store to SQLite's write-ahead log (kept in the file, so once is enough).

    In SQLite's default mode a reader blocks another process's commit, and MLflow's
    read-then-write sessions then fail at once with "database is locked" when sweep
    jobs, search workers and their system-metrics threads share the store. With the
    log, readers and the one writer no longer block each other. (It needs a local
    disk, as SQLite's locking does; a store on a network file system wants a server.)
    """
    try:
        with sqlite3.connect(db, timeout=30) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:  # busy right now, or a file system without shared memory: keep the default
        pass


# MLflow's defaults retry a dead server for about 12 minutes; a run gives up within a minute
# (3 tries of at most 10 s, 1-2 s apart) and keeps its local backup for the rerun. A user's
# own settings of these variables win.
RUN_HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# Once the server is known to be gone: one quick try, so ending the run does not wait again.
GONE_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def bound_http_retries() -> None:
    """Bound MLflow's HTTP retries and timeouts for this process, where the user has not."""
    for name, value in RUN_HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    # Each retry is otherwise a warning line; a request that still fails ends in one line of ours.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def give_up_on_server() -> None:
    """After the server stopped answering: fail fast on the calls that are left."""
    os.environ.update(GONE_HTTP_LIMITS)


def server_answers(uri: str) -> bool:
    try:
        check_server_reachable(uri, timeout_s=5.0)
    except CifarlabError:
        return False
    return True


def run_status(uri: str, run_id: str) -> str | None:
    """``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``...; None for a run missing or deleted."""
    from mlflow.exceptions import MlflowException  # deferred: see store_client

    try:
        run = store_client(uri).get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run.info.status


def unfinished_run(target: TrackingTarget, config_hash: str) -> str | None:
    """The id of this config's newest run when that run ended FAILED or KILLED and is no sweep's
    child: a run whose process could not note its id (a full disk under the run state)."""
    client = store_client(target.uri)
    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is None:
        return None
    newest = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.config_hash = '{config_hash}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    # RUNNING may be another live process's run of the same config (it trains as a separate run):
    # only a run that ended FAILED or KILLED is taken up again.
    if not newest or newest[0].info.status not in ("FAILED", "KILLED"):
        return None
    if "mlflow.parentRunId" in newest[0].data.tags:
        return None
    return str(newest[0].info.run_id)


def previous_overrides(target: TrackingTarget) -> list[str]:
    """The command-line overrides of the experiment's newest run that is no sweep's child (none on
    a new store): a new run's name leads with what it changed since (see ``run_name_from``)."""
    client = store_client(target.uri)
    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is None:
        return []
    newest = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.config_hash != ''",  # training runs (no sweep parents, no comparisons)
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    singles = [run for run in newest if "mlflow.parentRunId" not in run.data.tags]
    return singles[0].data.tags.get("overrides", "").split() if singles else []


def store_client(uri: str) -> Any:
    """An ``mlflow.MlflowClient`` on ``uri``, the store created first if it is new (see ``open_store``)."""
    import mlflow  # deferred: this module is on the config path

    open_store(uri)
    return Patient(mlflow.MlflowClient(tracking_uri=uri))


def connect(uri: str) -> Any:
    """A client on the existing store at ``uri``, made MLflow's default store too (artifact downloads,
    model loading); one line when the store is not there."""
    import mlflow  # deferred: see the module docstring

    # Reading trained runs downloads artifacts (models, reports) that MLflow would show
    # with progress bars; a user who set the variable keeps their setting.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if is_server(uri):
        _open_server(uri)
    elif uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise CifarlabError(
                f"no MLflow store at {db} (tracking.uri={uri!r}); run from the folder you trained in, "
                "or set tracking.uri=... (or paths.mlruns_dir=...) to where the runs are"
            )
        first_touch(uri)
        if moved_from(db) is not None:  # read-only first: a store on a read-only disk stays readable
            with exclusive(db.with_name(db.name + ".lock")):
                _follow_moved_folder(db)
    else:
        first_touch(uri)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def prepare_experiment(target: TrackingTarget) -> str:
    """Point MLflow at the store, create it and the experiment once, and return its id."""
    import mlflow

    uri = target.uri
    open_store(uri)  # a server: checked to answer, once
    mlflow.set_tracking_uri(uri)
    client = Patient(mlflow.MlflowClient())
    name = target.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=target.artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
