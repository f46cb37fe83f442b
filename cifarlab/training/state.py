"""A config's resumable state on disk, under ``paths.state_dir/<config hash>/``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


class RunState:
    """Resumable state of one config (by its hash): Keras backup, checkpoints, MLflow run id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backup_dir = root / "backup"
        self.checkpoint_dir = root / "checkpoints"
        self._run_id_file = root / "run_id"

    @classmethod
    def for_config(cls, state_dir: str | Path, config_hash: str, chief: bool) -> "RunState":
        """The chief keeps its state by config hash; other workers keep theirs apart, in a temp folder."""
        if chief:
            return cls(Path(state_dir) / config_hash)
        return cls(Path(tempfile.mkdtemp(prefix="cifarlab-worker-")))

    def resumable_run_id(self) -> str | None:
        has_backup = self.backup_dir.is_dir() and any(self.backup_dir.iterdir())
        if has_backup and self._run_id_file.is_file():
            return self._run_id_file.read_text().strip() or None
        return None

    def remember(self, run_id: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if run_id:
            self._run_id_file.write_text(run_id)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
