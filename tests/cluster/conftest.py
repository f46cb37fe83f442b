"""The real services of ``tests/cluster/services.sh``: a fresh PostgreSQL database per test, the SLURM cluster.

Where they are not up the tests skip, saying how to start them; with
CIFARLAB_CLUSTER=required (set by ``.ci/run``, which starts them) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

SERVER = "cifarlab:cifarlab@127.0.0.1:5432"
START = "start them with: sudo bash tests/cluster/services.sh"


def _unavailable(why: str) -> None:
    if os.environ.get("CIFARLAB_CLUSTER") == "required":
        pytest.fail(f"{why}; CIFARLAB_CLUSTER=required, so the cluster tests must run", pytrace=False)
    pytest.skip(f"{why}; {START}")


def _admin():
    import sqlalchemy

    try:
        import psycopg  # noqa: F401 - the driver the URLs below name
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[dev]')")
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{SERVER}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    try:
        engine.connect().close()
    except sqlalchemy.exc.OperationalError as err:
        _unavailable(f"PostgreSQL is not reachable at {SERVER} ({str(err.orig).splitlines()[0]})")
    return engine


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    import sqlalchemy

    engine = _admin()
    name = f"cifarlab_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+psycopg://{SERVER}/{name}"
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def slurm() -> str:
    """The partition's node state, once SLURM answers and its node takes jobs."""
    if shutil.which("sinfo") is None:
        _unavailable("SLURM is not installed (no sinfo)")
    state = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if state.returncode != 0 or state.stdout.split()[:1] not in (["idle"], ["mix"], ["alloc"]):
        _unavailable(f"SLURM's node is not up ({(state.stdout + state.stderr).strip()[:200]})")
    return state.stdout.split()[0]
