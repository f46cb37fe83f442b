"""Helpers the tests share: tiny configs, the CLI in a subprocess, the MLflow store a test wrote.

Imported as ``from helpers import ...`` (``tests/`` is on pytest's ``pythonpath``);
fixtures stay in ``conftest.py``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-subset"

# A run small enough for seconds on 2 cores: 4 classes of 16x16 images.
TINY = [
    "dataset=synthetic",
    "model=mlp",
    "model.hidden_units=[32]",
    "augmentation=none",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    # Drawing a run's six figures takes longer than training it here (3-4 s on 2 cores); the tests
    # that check figures add reports.figures=true.
    "reports.figures=false",
]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it: cifarlab keeps the screen quiet itself
    env.pop("CIFARLAB_VERBOSE", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # cifarlab (imported here) set it; a user's shell has not
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str,
    cwd: Path,
    command: str | None = None,
    check: bool = True,
    timeout: float = 300,
    new_store: bool = False,
) -> subprocess.CompletedProcess:
    """``python -m cifarlab [COMMAND] ARGS`` in ``cwd`` (so its mlruns/ lands there).

    A training command's SQLite store, when it has none yet, starts as a copy of an empty one
    (see ``seed_store``); ``new_store=True`` leaves the store to the command to make (or not).
    """
    argv = [command, *args] if command else list(args)
    store = None if command or new_store else local_store_folder(args, cwd)
    if store is not None:
        seed_store(store)
    proc = subprocess.run(
        [sys.executable, "-m", "cifarlab", *argv],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m cifarlab {' '.join(argv)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


@functools.cache
def _empty_store() -> Path:
    """An empty MLflow SQLite store, made by MLflow once per test process (removed at its exit)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="cifarlab-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"))
    store.engine.dispose()  # every change on disk, no connection left open
    return folder / "mlflow.db"


def seed_store(folder: Path) -> None:
    """Make ``folder`` with a copy of an empty MLflow store in it, unless the folder exists (a
    store already, or one a test prepared: a mount, a read-only folder...).

    Making a store runs MLflow's schema migrations, about 2 s of a tiny run's 15 on 2 cores;
    most tests need a store, not its making, which the store tests check from nothing.
    """
    if folder.exists():
        return
    try:
        folder.mkdir(parents=True)
        shutil.copyfile(_empty_store(), folder / "mlflow.db")
    except OSError:  # a read-only or full folder: the command meets it as it is
        shutil.rmtree(folder, ignore_errors=True)


def local_store_folder(args: tuple[str, ...] | list[str], cwd: Path) -> Path | None:
    """The folder of the SQLite store a training command with ``args`` uses; None for a server's."""
    folder = cwd / "mlruns"
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "tracking.uri":
            return None
        if key == "paths.mlruns_dir":
            folder = cwd / value
    return folder


def mlflow_client(store_dir: Path):
    """A client on the store a test's commands write, made under the store's lock: ``MlflowClient()``
    creates and migrates a store that is new or half-made, and a poll beside a command that is
    creating the store must not migrate it at the same time (two migrations collide)."""
    from mlflow import MlflowClient

    from cifarlab.runtime.locks import exclusive

    db = store_dir / "mlflow.db"
    store_dir.mkdir(parents=True, exist_ok=True)  # for the lock file
    with exclusive(db.with_name(db.name + ".lock")):  # MlflowClient() itself creates and migrates the store
        return MlflowClient(tracking_uri=f"sqlite:///{db}")


def all_runs(store_dir: Path, experiment: str = "cifarlab") -> list:
    if not (store_dir / "mlflow.db").is_file():
        return []  # not created yet (and a poll must not create it under a starting command)
    client = mlflow_client(store_dir)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=1000)


def run_python(
    code: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``python -c CODE ARGS`` in ``cwd``, with the CLI's environment unless ``env`` is given."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(root: Path, port: int, backend: str | None = None) -> subprocess.Popen:
    """``mlflow server`` on loopback: its runs in ``backend`` (SQLite in ``root`` by default)."""
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend or f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "1",
    ]
    server = subprocess.Popen(
        cmd,
        cwd=root,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "a"),
        start_new_session=True,
    )
    if answers_health(f"http://127.0.0.1:{port}", within_s=120):
        return server
    stop_server(server)
    raise AssertionError("mlflow server did not start: " + (root / "server.log").read_text()[-2000:])


def answers_health(uri: str, within_s: float) -> bool:
    """Whether the server at ``uri`` answers ``/health`` within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
    server.wait(timeout=30)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def as_a_terminal_starts_it() -> None:
    """A ``preexec_fn``: its own process group, Ctrl-C heard, as a command typed in a terminal
    (pytest-xdist's workers ignore SIGINT, and children inherit that)."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def workers_stopped_mid_trial(args: list[str], cwd: Path, stop) -> tuple[int, str]:
    """Start ``cifarlab workers`` as from a terminal, call ``stop(its Popen)`` once a trial trains;
    its exit code and stderr."""
    command = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", "workers", *args], cwd=cwd, env=cli_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_a_terminal_starts_it,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not _a_trial_trains(cwd / "mlruns"):
        if command.poll() is not None or time.monotonic() > deadline:
            command.kill()
            raise AssertionError(f"no trial started: {command.communicate(timeout=60)}")
        time.sleep(0.2)
    stop(command)
    _, stderr = command.communicate(timeout=180)
    return command.returncode, stderr


def _a_trial_trains(store: Path) -> bool:
    runs = all_runs(store)
    return any(r.info.status == "RUNNING" and r.data.tags.get("sweep_role") != "parent" for r in runs)
