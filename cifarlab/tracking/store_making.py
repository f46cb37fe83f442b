"""A SQLite store another program (``mlflow ui``, a user's script) is making at this moment.

MLflow creates a store's tables and migrates them on a client's first touch when
any table is missing, and takes no lock while it does. A second program touching
the store then runs the same migration beside the first, and one of the two
breaks. So cifarlab reads the store on its own first (plain ``sqlite3``,
read-only) and leaves it alone while it is being made.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

QUIET_S = 5.0  # a store that stays half-made this long has no one making it
MIGRATION_STEP_S = 1.0  # long enough for a migrating store's revision to move on


def _schema(db: Path) -> tuple[frozenset[str], str | None]:
    """The store's tables and its schema revision, as far as they can be read right now."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
            tables = frozenset(r[0] for r in connection.execute("SELECT name FROM sqlite_master"))
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
    except sqlite3.Error:  # locked by the other's write, or not a database yet
        return frozenset(), None
    return tables, revision


def _tables_complete(tables: frozenset[str]) -> bool:
    """Whether ``tables`` holds every table of the installed MLflow's models (its own test)."""
    import mlflow.store.db.utils  # noqa: F401  (registers every model's table with Base)
    from mlflow.store.db.base_sql_model import Base

    return set(Base.metadata.tables) <= tables


def await_other_maker(db: Path, wait_s: float) -> None:
    """Wait, at most ``wait_s``, while the existing store ``db`` lacks tables and is still changing:
    another program is making it. A store left half-made is then touched (and so finished) by us."""
    deadline = time.monotonic() + wait_s
    seen = _schema(db)
    quiet_since = time.monotonic()
    while not _tables_complete(seen[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
        now = _schema(db)
        if now != seen:
            seen, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_S:
            return


def still_migrating(db: Path) -> bool:
    """Whether the store's schema revision moves on within a moment: another program migrating it,
    whose tables were all there before its revision reached the installed MLflow's."""
    before = _schema(db)[1]
    time.sleep(MIGRATION_STEP_S)
    return _schema(db)[1] != before
