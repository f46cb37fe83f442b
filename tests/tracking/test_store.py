"""The MLflow store: many processes opening a new one at once."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client

OPEN_STORE = textwrap.dedent(
    """
    import sys
    from cifarlab.tracking import prepare_experiment, resolve_target
    print(prepare_experiment(resolve_target(None, sys.argv[1], "cifarlab")))
    """
)


def _start_together(commands: list[list[str]], cwd) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(c, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = []
    for cmd, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


# What ``mlflow ui`` or a user's script does on a new store: MLflow's own first touch, no lock of ours.
PLAIN_MLFLOW = "import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
OURS_OR_ONE_LINE = textwrap.dedent(
    """
    import sys
    from cifarlab.errors import StoreError
    from cifarlab.tracking import prepare_experiment, resolve_target
    try:
        prepare_experiment(resolve_target(None, sys.argv[1], "cifarlab"))
    except StoreError as err:
        sys.exit(f"ONE LINE: {err}")
    """
)


@pytest.mark.slow  # a round whose other program fails halfway waits out MIGRATION_WAIT_S (30 s)
def test_a_store_another_program_creates_at_the_same_moment_opens_once_it_is_made(tmp_path):
    # Plain MLflow processes on one new store collide in most tries (duplicate columns, tables
    # that already exist, a lost alembic row); cifarlab waits for the other's migration instead.
    outcomes = []
    for attempt in range(3):
        store = tmp_path / f"store{attempt}"
        store.mkdir()
        plain, ours = _start_together(
            [
                [sys.executable, "-c", PLAIN_MLFLOW, f"sqlite:///{store / 'mlflow.db'}"],
                [sys.executable, "-c", OURS_OR_ONE_LINE, str(store)],
            ],
            tmp_path,
        )
        assert ours.returncode == 0 or ours.stderr.startswith("ONE LINE: "), ours.stderr[-2000:]
        outcomes.append((plain.returncode, ours.returncode))
    # When the other program made the store, cifarlab opened it; when the other one failed halfway,
    # the store may be half-made, and cifarlab says so in one line.
    assert all(ours == 0 for plain, ours in outcomes if plain == 0), outcomes


# The other program starts first: the store's file is there, half-made, when cifarlab opens it.
PLAIN_MLFLOW_ON_CUE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mlflow
    while not Path(sys.argv[2]).exists():
        time.sleep(0.005)
    mlflow.MlflowClient(sys.argv[1]).search_experiments()
    """
)
OURS_ONCE_THE_FILE_APPEARS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cifarlab.errors import StoreError
    from cifarlab.tracking import prepare_experiment, resolve_target
    import mlflow
    store, cue = Path(sys.argv[1]), Path(sys.argv[2])
    cue.touch()
    while not (store / "mlflow.db").exists():
        time.sleep(0.001)
    try:
        prepare_experiment(resolve_target(None, str(store), "cifarlab"))
    except StoreError as err:
        sys.exit(f"ONE LINE: {err}")
    """
)


@pytest.mark.slow
def test_a_store_another_program_has_begun_creating_opens_once_it_is_made(tmp_path):
    # MLflow migrates any store whose tables are incomplete, so cifarlab opening a store mid-migration
    # runs the same migration beside it, and one of many errors (a dropped column) must mean "wait".
    outcomes = []
    for attempt in range(3):
        store, cue = tmp_path / f"store{attempt}", tmp_path / f"cue{attempt}"
        store.mkdir()
        plain, ours = _start_together(
            [
                [sys.executable, "-c", PLAIN_MLFLOW_ON_CUE, f"sqlite:///{store / 'mlflow.db'}", str(cue)],
                [sys.executable, "-c", OURS_ONCE_THE_FILE_APPEARS, str(store), str(cue)],
            ],
            tmp_path,
        )
        assert plain.returncode == 0, plain.stderr[-2000:]  # nothing of ours touched the store before it
        outcomes.append((ours.returncode, ours.stderr[-1500:]))
    assert all(code == 0 for code, _ in outcomes), outcomes


def test_an_error_from_inside_mlflows_migrations_is_a_clash_whatever_its_message():
    import importlib
    import pkgutil

    from mlflow.store.db_migrations import versions

    from cifarlab.tracking.store_faults import migration_clash

    name = min(m.name for m in pkgutil.iter_modules(versions.__path__))
    with pytest.raises(Exception) as inside:  # a real migration step, run with no database under it
        importlib.import_module(f"{versions.__name__}.{name}").upgrade()
    assert migration_clash(inside.value)
    with pytest.raises(AttributeError) as elsewhere:
        raise AttributeError("dimension_attributes")
    assert not migration_clash(elsewhere.value)


OURS_ON_CUE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cifarlab.tracking import prepare_experiment, resolve_target
    import mlflow.store.db.utils  # what opening the store imports, before the cue
    Path(sys.argv[2]).touch()
    print(prepare_experiment(resolve_target(None, sys.argv[1], "cifarlab")))
    """
)


def _open_on_cue(store, cue) -> subprocess.Popen:
    """cifarlab opening ``store`` in another process, returned once it is about to touch the store."""
    ours = subprocess.Popen(
        [sys.executable, "-c", OURS_ON_CUE, str(store), str(cue)],
        cwd=store.parent,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not cue.exists() and ours.poll() is None:
        time.sleep(0.05)
    return ours


def _assert_opened(ours: subprocess.Popen, store) -> None:
    out, err = ours.communicate(timeout=120)
    assert ours.returncode == 0, err[-2000:]
    assert mlflow_client(store).get_experiment_by_name("cifarlab").experiment_id == out.strip()


def test_a_store_another_program_is_making_is_left_alone_until_it_is_made(tmp_path):
    import mlflow

    # The other program has created the file and begun its tables (MLflow takes no lock while it
    # migrates): touching the store now would run the same migration beside it and break one of the two.
    store, cue = tmp_path / "mlruns", tmp_path / "cue"
    store.mkdir()
    db = store / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE begun (x INTEGER)")
    ours = _open_on_cue(store, cue)
    time.sleep(2.0)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert tables == {"begun"}, "cifarlab migrated a store another program was making"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()  # the other program makes it
    _assert_opened(ours, store)


def _revisions_in_order() -> list[str]:
    """MLflow's schema revisions, first to last, as alembic reads its migration scripts."""
    import mlflow.store.db_migrations
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(os.path.dirname(mlflow.store.db_migrations.__file__))
    return [script.revision for script in scripts.walk_revisions()][::-1]


def test_a_store_whose_revision_is_still_moving_on_opens_once_it_is_migrated(tmp_path):
    # The other program's migration has made every table, and its revision is stepping through the
    # last few migrations: a mismatch now means "wait", not "made by an older MLflow".
    store, cue = tmp_path / "mlruns", tmp_path / "cue"
    store.mkdir()
    mlflow_client(store).search_experiments()
    db = store / "mlflow.db"
    steps = _revisions_in_order()[-7:]

    def set_revision(revision: str) -> None:
        with contextlib.closing(sqlite3.connect(db)) as connection, connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))

    set_revision(steps[0])
    ours = _open_on_cue(store, cue)
    for revision in steps[1:]:  # one migration step every half second, 3 s in all
        time.sleep(0.5)
        # Still waiting: it neither failed nor opened a store whose schema is not yet its MLflow's.
        assert ours.poll() is None, ours.communicate()[1][-2000:]
        set_revision(revision)
    _assert_opened(ours, store)


@pytest.mark.slow
def test_eight_processes_create_a_new_store_at_once(tmp_path):
    # Without the lock, MLflow's schema migration races ("duplicate column name: step").
    store = tmp_path / "mlruns"
    results = _start_together([[sys.executable, "-c", OPEN_STORE, str(store)]] * 8, tmp_path)
    assert all(r.returncode == 0 for r in results), "\n".join(
        r.stderr[-1500:] for r in results if r.returncode
    )
    assert len({r.stdout.strip() for r in results}) == 1  # one experiment, the same id for everyone
    client = mlflow_client(store)
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "cifarlab"]


@pytest.mark.slow
def test_eight_runs_started_at_once_on_a_new_store_all_finish(tmp_path):
    args = [*TINY, "trainer.epochs=1", "tracking.log_model=false"]
    results = _start_together([[sys.executable, "-m", "cifarlab", *args]] * 8, tmp_path)
    assert all(r.returncode == 0 for r in results), "\n".join(
        r.stderr[-1500:] for r in results if r.returncode
    )
    # Each command closed its connections before its fast exit, the last one folding SQLite's
    # write-ahead log into the store file: a copy of mlflow.db alone holds every run's end.
    assert not (tmp_path / "mlruns" / "mlflow.db-wal").exists()
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "mlruns" / "mlflow.db", copy)
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall() == [("FINISHED", 8)]
    runs = all_runs(tmp_path / "mlruns")
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
