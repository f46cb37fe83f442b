"""A store or disk that fails: one line, a non-zero exit, nothing lost, and the same command resumes.

The disk cases use real mounts (a tmpfs, a read-only bind mount), so they need root
and are skipped with that reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import TINY, all_runs, mlflow_client, run_cli

ARGS = [*TINY, "trainer.epochs=1", "tracking.system_metrics=false"]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="real mounts need root and mount(8)"
)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The command failed with exit 1 and no traceback; its last line, which must be the error."""
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cifarlab: error: "), proc.stderr[-2000:]
    return last


@contextmanager
def _mounted(*args: str, target: Path) -> Iterator[None]:
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@contextmanager
def _read_only_store(workdir: Path) -> Iterator[None]:
    """An existing store under ``workdir`` (empty but for the experiment), its database mounted read-only."""
    run_cli(cwd=workdir, command="results")  # nothing yet: the store is made empty
    mlflow_client(workdir / "mlruns").create_experiment(
        "cifarlab", artifact_location=(workdir / "artifacts").as_uri()
    )
    db = workdir / "mlruns" / "mlflow.db"
    with _mounted("--bind", str(db), target=db):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], check=True)
        yield


def _schema_version(db: Path, version: str | None = None) -> str:
    with sqlite3.connect(db) as connection:
        if version is not None:
            connection.execute("UPDATE alembic_version SET version_num = ?", (version,))
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_a_truncated_store_is_one_line_that_says_how_to_move_it_aside(tmp_path):
    store = tmp_path / "mlruns"
    store.mkdir()
    mlflow_client(store).create_experiment(
        "kept", artifact_location=(tmp_path / "artifacts").as_uri()
    )  # made by MLflow
    db = store / "mlflow.db"
    backup = db.read_bytes()
    with open(db, "r+b") as handle:
        handle.truncate(len(backup) // 2)

    line = _one_error_line(run_cli(cwd=tmp_path, command="results", check=False))
    assert "is damaged" in line and f"mv {db} {db}.damaged" in line

    db.write_bytes(backup)  # the fix: the backup back in place
    assert run_cli(cwd=tmp_path, command="results").returncode == 0
    assert mlflow_client(store).get_experiment_by_name("kept") is not None


@pytest.mark.parametrize("newer", [False, True], ids=["older", "newer"])
def test_a_store_from_another_mlflow_says_which_command_fixes_it(tmp_path, newer):
    store = tmp_path / "mlruns"
    store.mkdir()
    mlflow_client(store).create_experiment("kept", artifact_location=(tmp_path / "artifacts").as_uri())
    db = store / "mlflow.db"
    current = _schema_version(db)
    # An older store carries a revision this MLflow's migrations know (its first); a newer one, one they do not.
    _schema_version(db, "ffffffffffff" if newer else "451aebb31d03")

    line = _one_error_line(run_cli(cwd=tmp_path, command="results", check=False))
    if newer:
        assert "newer MLflow" in line and "pip install -U mlflow" in line and "db upgrade" not in line
    else:
        assert "older MLflow" in line and f"mlflow db upgrade sqlite:///{db}" in line
    assert _schema_version(db) != current  # nothing was changed for the user
    _schema_version(db, current)
    assert run_cli(cwd=tmp_path, command="results").returncode == 0


@pytest.mark.slow
@needs_root
def test_a_full_disk_under_the_run_state_fails_in_one_line_and_the_rerun_resumes(tmp_path):
    state = tmp_path / "mlruns" / "state"
    state.mkdir(parents=True)
    with _mounted("-t", "tmpfs", "-o", "size=64k", "tmpfs", target=state):
        (state / "filler").write_bytes(b"\0" * 60_000)
        line = _one_error_line(run_cli(*ARGS, cwd=tmp_path, check=False))
        assert "no space left" in line and "rerun the same command" in line
        assert [run.info.status for run in all_runs(tmp_path / "mlruns")] in ([], ["FAILED"])

        subprocess.run(["mount", "-o", "remount,size=16m", str(state)], check=True)  # the fix: room
        (state / "filler").unlink()
        run_cli(*ARGS, cwd=tmp_path)
        (run,) = all_runs(tmp_path / "mlruns")
        assert run.info.status == "FINISHED"


@pytest.mark.slow
@needs_root
def test_a_read_only_store_fails_in_one_line_and_the_same_command_then_trains(tmp_path):
    store = tmp_path / "mlruns"
    with _read_only_store(tmp_path):
        line = _one_error_line(run_cli(*ARGS, cwd=tmp_path, check=False))
        assert "cannot be written" in line and "rerun the same command" in line
    assert all_runs(store) == []

    run_cli(*ARGS, cwd=tmp_path)
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED"


@pytest.mark.slow
@needs_root
def test_a_sweep_on_a_read_only_store_stops_before_its_jobs_in_one_line_and_its_rerun_runs_them(tmp_path):
    sweep = ["-m", *ARGS, "optimizer.lr=1e-3,2e-3"]
    store = tmp_path / "mlruns"
    with _read_only_store(tmp_path):
        proc = run_cli(*sweep, cwd=tmp_path, check=False)
        line = _one_error_line(proc)
        assert "cannot be written" in line and "rerun the same command" in line
        assert "job" not in proc.stdout.lower(), proc.stdout[-2000:]  # stopped before any job started
    assert all_runs(store) == []

    run_cli(*sweep, cwd=tmp_path)
    runs = all_runs(store)
    assert sorted(r.data.tags.get("sweep_role", "job") for r in runs) == ["job", "job", "parent"]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
@needs_root
def test_a_read_only_working_folder_fails_in_one_line(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with _mounted("-t", "tmpfs", "-o", "size=16m,ro", "tmpfs", target=work):
        line = _one_error_line(run_cli(*ARGS, cwd=work, check=False))
    assert "Read-only file system" in line and "writable" in line
