"""A config's resumable state on disk, under ``paths.state_dir/<config hash>/``, and who owns it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras

from cifarlab.runtime.lease import Lease


class RunState:
    """Resumable state of one config (by its hash): Keras backup, checkpoints, MLflow run id,
    and the trained weights once fitting is over (so a kill during evaluation only redoes that)."""

    def __init__(self, root: Path, shared: bool = True) -> None:
        self.root = root
        self.shared = shared  # False: a private folder no later run resumes from
        self.backup_dir = root / "backup"
        self.checkpoint_dir = root / "checkpoints"
        self.trained_weights = root / "trained.weights.h5"
        self._run_id_file = root / "run_id"

    def remembered_run_id(self) -> str | None:
        """The MLflow run this state belongs to, if a run of it was ever opened."""
        try:
            return self._run_id_file.read_text().strip() or None
        except OSError:
            return None

    def remember(self, run_id: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if run_id:
            self._run_id_file.write_text(run_id)

    def training_done(self) -> bool:
        return self.trained_weights.is_file()

    def save_trained(self, model: keras.Model) -> None:
        """The weights fitting ended with (best ones restored), written aside and renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.trained_weights.with_name(".partial-" + self.trained_weights.name)
        model.save_weights(staged)
        os.replace(staged, self.trained_weights)

    def reset(self) -> None:
        """Forget everything but the lease (a stale state from a run that ended)."""
        for path in (self.backup_dir, self.checkpoint_dir):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.trained_weights, self._run_id_file):
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def claimed_state(state_dir: str | Path, config_hash: str, chief: bool) -> Iterator[RunState]:
    """The config's shared state, owned by this process for the duration.

    When another live process already trains this config (same command started
    twice), this one says so and trains in a private state of its own, as a
    separate run. Workers other than the chief keep theirs apart too.
    """
    if not chief:
        yield RunState(Path(tempfile.mkdtemp(prefix="cifarlab-worker-")), shared=False)
        return
    root = Path(state_dir) / config_hash
    lease = Lease(root / "lease.json")
    owner = lease.acquire()
    if owner is not None:
        print(
            f"cifarlab: this config is being trained by {owner.describe()}; "
            "starting a separate run (it will not be resumed)",
            flush=True,
        )
        private = RunState(Path(tempfile.mkdtemp(prefix="cifarlab-run-")), shared=False)
        try:
            yield private
        finally:
            private.clear()
        return
    try:
        yield RunState(root)
    finally:
        lease.release()
