"""A project folder that was moved or copied keeps one store: its artifact paths follow the folder.

MLflow writes absolute artifact locations into a SQLite store (each experiment's,
each run's, each logged model's). After ``mv project/ elsewhere/``, new runs would
write their models and checkpoints into the old path (recreating it) and older runs'
models would not be found. MLflow has no call to change those locations, so the
store's own rows are re-pointed, once, under the store's lock: every location under
the old ``<store folder>/`` moves to the same place under the new one. A store that
keeps its artifacts elsewhere on purpose (another folder name) is left alone.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# (table, column) pairs that hold artifact locations in MLflow 3's schema.
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def moved_from(db: Path) -> Path | None:
    """The folder the store ``db`` was made in, when that is not where it is now; None if not moved."""
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30) as connection:
        return _former_folder(connection, db.resolve().parent)


def follow_moved_folder(db: Path) -> Path | None:
    """Re-point the artifact locations of the store ``db`` when its folder moved; the old folder, or None.
    The caller holds the store's lock."""
    here = db.resolve().parent
    with sqlite3.connect(db, timeout=30) as connection:
        old = _former_folder(connection, here)
        if old is None:
            return None
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in _LOCATION_COLUMNS:
            if table in tables:
                for before, after in ((old.as_uri() + "/", here.as_uri() + "/"), (f"{old}/", f"{here}/")):
                    connection.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} LIKE ? ESCAPE '\\'",
                        (after, len(before) + 1, _like_prefix(before)),
                    )
    return old


def _former_folder(connection: sqlite3.Connection, here: Path) -> Path | None:
    """The folder the store's experiments were made in, when it is not ``here`` but has its name."""
    for (location,) in connection.execute("SELECT artifact_location FROM experiments"):
        path = Path(location.removeprefix("file://")) if location else None
        if path is None or not path.is_absolute() or path.name != "artifacts":
            continue  # not a location cifarlab made (<store folder>/artifacts)
        folder = path.parent
        if folder != here and folder.name == here.name:
            return folder
    return None


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
