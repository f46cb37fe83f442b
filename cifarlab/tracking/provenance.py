"""What a run was made with: the code's state (commit, uncommitted changes) and the installed packages.

Recorded with every run so that ``python -m cifarlab rerun run=<id>`` can say, in one
line, when the code or the environment it reruns in is not the one the run had.
Imports no TensorFlow and no MLflow.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from dataclasses import dataclass

from cifarlab.config.locations import checkout_dir

# The packages whose versions can change a run's numbers: compared on a rerun.
KEY_PACKAGES = ("tensorflow", "keras", "numpy", "mlflow", "hydra-core", "scikit-learn", "cifarlab")


@dataclass(frozen=True)
class CodeState:
    commit: str | None  # None outside a git checkout
    dirty: bool  # tracked files changed since the commit
    patch: str  # those changes (``git diff HEAD``), empty when clean

    def tags(self) -> dict[str, str]:
        return {"git_commit": self.commit or "", "git_dirty": str(self.dirty).lower() if self.commit else ""}


def _git(*args: str) -> str | None:
    root = checkout_dir()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit() -> str | None:
    """The checkout's commit; None outside a git checkout."""
    return (_git("rev-parse", "HEAD") or "").strip() or None


def code_state() -> CodeState:
    """The checkout's commit and its uncommitted changes to tracked files."""
    commit = git_commit()
    if commit is None:
        return CodeState(None, False, "")
    patch = _git("diff", "HEAD", "--binary") or ""
    return CodeState(commit, bool(patch.strip()), patch)


@functools.cache  # read once a process (a third of a second): a search records it for every trial
def installed_versions() -> dict[str, str]:
    """Every installed distribution and its version (``pip freeze`` as a dict), and Python's."""
    versions = {
        (dist.metadata["Name"] or "").lower(): dist.version for dist in importlib.metadata.distributions()
    }
    versions.pop("", None)
    return {"python": platform.python_version(), **dict(sorted(versions.items()))}


def requirements_text(versions: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in versions.items())


def read_requirements(text: str) -> dict[str, str]:
    pairs = (line.strip().split("==", 1) for line in text.splitlines() if "==" in line)
    return {name: version for name, version in pairs}


def changed_versions(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """``name recorded -> current`` for Python and the key packages whose versions differ."""
    return [
        f"{name} {recorded.get(name, 'absent')} -> {current.get(name, 'absent')}"
        for name in ("python", *KEY_PACKAGES)
        if recorded.get(name) != current.get(name)
    ]
