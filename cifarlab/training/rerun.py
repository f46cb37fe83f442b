"""A run turned back into the command that made it, and run again.

The run's ``overrides`` tag holds the Hydra overrides as typed; the rerun is
``python -m cifarlab <overrides>`` in the current folder, tagged ``rerun_of``.
Before it starts, one line each says when the code (commit, uncommitted changes)
or the key packages differ from the run's: then the numbers may differ too.
Imports no TensorFlow: the training replaces this process (``exec``), so that Ctrl-C and
SIGTERM reach it alone and it ends its run KILLED as a training always does (a child
process would be SIGKILLed by ``subprocess.run`` 0.25 s after a Ctrl-C, its run left RUNNING).
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.tracking import queries
from cifarlab.tracking.provenance import (
    changed_versions,
    code_state,
    installed_versions,
    read_requirements,
)


def rerun_command(run: Any) -> list[str]:
    """``python -m cifarlab`` and the run's overrides, as an argument list."""
    if run.data.tags.get("mlflow.parentRunId") and "overrides" not in run.data.tags:
        raise CifarlabError(f"run={run.info.run_id!r} records no overrides; rerun its sweep instead")
    if "overrides" not in run.data.tags:
        raise CifarlabError(
            f"run={run.info.run_id!r} records no command line (no 'overrides' tag): it was not made by "
            "python -m cifarlab; rerun it by hand"
        )
    overrides = shlex.split(run.data.tags["overrides"]) if run.data.tags["overrides"] else []
    return [sys.executable, "-m", "cifarlab", *overrides, f"+tracking.tags.rerun_of={run.info.run_id}"]


def differences_from_now(run: Any) -> list[str]:
    """One warning line each for the code and the environment, when they are not the run's."""
    warnings = []
    code = code_state()
    recorded_commit = run.data.tags.get("git_commit") or None
    recorded_dirty = run.data.tags.get("git_dirty") == "true"
    if recorded_commit != code.commit or recorded_dirty or code.dirty:
        what = (
            f"commit {_short(recorded_commit)} then, {_short(code.commit)} now"
            if recorded_commit != code.commit
            else "uncommitted changes then or now; the run's are in its code/uncommitted.patch"
        )
        warnings.append(f"the code differs from the run's ({what}): the numbers may differ")
    with tempfile.TemporaryDirectory() as scratch:
        path = queries.download_run_artifact(run.info.run_id, "environment/requirements.txt", scratch)
        recorded = read_requirements(path.read_text()) if path is not None else None
    if recorded is None:
        warnings.append("the run recorded no environment: the installed versions cannot be compared")
    elif changed := changed_versions(recorded, installed_versions()):
        warnings.append(f"installed versions differ ({', '.join(changed)}): the numbers may differ")
    return warnings


def _short(commit: str | None) -> str:
    return commit[:8] if commit else "none (not a git checkout)"


def rerun(run: Any, dry_run: bool) -> None:
    """Print the command and the warnings, then (unless ``dry_run``) become that command."""
    command = rerun_command(run)
    shown = " ".join(shlex.quote(arg) for arg in ["python", *command[1:]])
    print(f"cifarlab: run {run.info.run_id} was made by: {shown}", flush=True)
    for line in differences_from_now(run):
        print(f"cifarlab: warning: {line}", flush=True)
    if not dry_run:
        sys.stderr.flush()
        os.execv(command[0], command)
