"""``python -m cifarlab rerun run=<id>``: the command that made a run, run again here.

    python -m cifarlab rerun run=<run id>                 # warns when code or versions differ
    python -m cifarlab rerun run=<run id> dry_run=true    # only print the command and the warnings

The rerun is a new MLflow run tagged ``rerun_of=<id>``; with the same code, the
same installed packages and the same data, its metrics are the original's.
Run it from the folder the run was made in (relative paths in its overrides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from cifarlab.config.arguments import run_command
from cifarlab.errors import CifarlabError
from cifarlab.tracking import queries
from cifarlab.tracking.store import connect
from cifarlab.tracking.target import resolve_uri

PROG = "cifarlab rerun"
EXAMPLE = "run=<run id>"


@dataclass
class RerunOptions:
    run: Optional[str] = None  # the MLflow run id to make again
    dry_run: bool = False  # print the command and the warnings, run nothing
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<mlruns_dir>/mlflow.db
    mlruns_dir: str = "mlruns"


def _rerun(options: DictConfig) -> None:
    from cifarlab.training.rerun import rerun

    if not options.run:
        raise CifarlabError(f"run= is missing; name the run to make again, e.g. {EXAMPLE}")
    client = connect(resolve_uri(options.tracking_uri, options.mlruns_dir))
    rerun(queries.get_run(client, options.run, key="run"), bool(options.dry_run))


def main(argv: Sequence[str] | None = None) -> None:
    run_command(
        RerunOptions, __doc__, argv, prog=PROG, example=EXAMPLE, run=lambda options, _: _rerun(options)
    )


if __name__ == "__main__":
    main()
