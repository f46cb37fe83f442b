"""One line for a store that cannot be opened as it is: damaged, or written by another MLflow.

MLflow reports both as long tracebacks, and its advice for a schema mismatch
(``mlflow db upgrade``) is wrong when the store is newer than the installed
MLflow. Nothing here changes the store: the user decides what to do with it.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

_DAMAGED = ("database disk image is malformed", "file is not a database")
_SCHEMA = re.compile(r"out-of-date database schema \(found version (\w+)")
# What MLflow's migrations raise when another program creates the same new store at the same moment
# (the commonest of many), and what a disk says, which no waiting mends.
_CLASH = ("duplicate column name", "already exists", "Online migration expected")
_MIGRATIONS = "db_migrations"  # mlflow/store/db_migrations/versions/*.py
_DISK = ("unable to open database file", "readonly database", "disk is full", "disk I/O error")


def migration_clash(err: BaseException, new_store: bool = False) -> bool:
    """Whether ``err`` may come from another program migrating the same store at the same moment:
    one of its known messages, anything raised inside MLflow's migration scripts, or on a store
    that was new anything but the disk's refusal."""
    text = str(err)
    if any(marker in text for marker in _DISK):
        return False
    return new_store or any(marker in text for marker in _CLASH) or _raised_in_migration(err)


def _raised_in_migration(err: BaseException) -> bool:
    """MLflow migrates a store only while its tables are incomplete: a store that already existed is
    then still being made by another program, whose steps (a column dropped, a table copied) break
    ours in ways no message list covers (an ``AttributeError`` naming a column, for one)."""
    cause: BaseException | None = err
    while cause is not None:  # MLflow may wrap the migration's error in its own
        if any(
            _MIGRATIONS in Path(frame.filename).parts for frame in traceback.extract_tb(cause.__traceback__)
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def schema_mismatch(err: BaseException) -> bool:
    """Whether ``err`` is MLflow finding the store's schema revision other than its own."""
    return _SCHEMA.search(str(err)) is not None


def describe_store_failure(uri: str, err: BaseException) -> str | None:
    """The one line for ``err`` raised on first touching the store at ``uri``; None if not a store fault."""
    text = str(err)
    if any(marker in text for marker in _DAMAGED):
        return _damaged(uri)
    if migration_clash(err):
        return (
            f"the MLflow store {uri} was being created by another program at the same moment (mlflow ui, "
            "a script) and is left half-made; stop that program, move the store aside and rerun"
        )
    found = _SCHEMA.search(text)
    if found:
        return _other_version(uri, found.group(1))
    if uri.startswith(("http://", "https://")):
        # /health answered (checked before), yet the API fails or hangs past the bounded retries.
        how = "does not answer in time" if "timed out" in text.lower() else "answers with errors"
        return (
            f"the MLflow server at {uri} answers /health but its API {how}; check the server's log "
            "and its database, then rerun the same command"
        )
    return None


def api_failed(err: BaseException) -> bool:
    """Whether ``err`` is a request to an MLflow server's API that failed (errors or no answer)."""
    from mlflow.exceptions import RestException

    current: BaseException | None = err
    while current is not None:
        if isinstance(current, RestException) or "API request to" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _damaged(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        db = uri.removeprefix("sqlite:///")
        return (
            f"the MLflow store {db} is damaged (not a complete SQLite database); restore it from a "
            f"backup, or move it aside to start a new store: mv {db} {db}.damaged"
        )
    return (
        f"the MLflow store {uri} is damaged; restore its database from a backup or use another tracking.uri"
    )


def _other_version(uri: str, found: str) -> str:
    import mlflow

    if _known_revision(found):
        return (
            f"the MLflow store {uri} was made by an older MLflow (schema {found}); back it up, then "
            f"upgrade it for MLflow {mlflow.__version__}: mlflow db upgrade {uri}"
        )
    return (
        f"the MLflow store {uri} was made by a newer MLflow than the installed {mlflow.__version__} "
        f"(schema {found}); upgrade MLflow (pip install -U mlflow) or use another tracking.uri"
    )


def _known_revision(revision: str) -> bool:
    """Whether the installed MLflow's migrations know ``revision`` (so the store is older, not newer)."""
    import mlflow.store
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    migrations = Path(mlflow.store.__file__).parent / "db_migrations"
    try:
        return ScriptDirectory(str(migrations)).get_revision(revision) is not None
    except CommandError:
        return False
