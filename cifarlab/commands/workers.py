"""``python -m cifarlab workers``: start K workers of one search, as a SLURM job array or K local processes.

    python -m cifarlab workers workers=4 cluster=slurm slurm.partition=gpu slurm.gpus_per_node=1 \\
        hparams_search=cnn_bn_optuna hydra.sweeper.storage=postgresql+psycopg://user:pw@db-host/optuna
    python -m cifarlab workers workers=2 hparams_search=mlp_optuna          # 2 processes on this machine

Options are ``key=value`` (below, with their defaults); every other argument is an
override of the search command each worker runs (``python -m cifarlab -m ...``).
Workers on several machines need a storage they all reach (PostgreSQL, MySQL);
on one machine the default SQLite study works. See the README (searches).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from omegaconf import DictConfig

from cifarlab.config.arguments import run_command
from cifarlab.runtime.interrupts import EXIT_CODES
from cifarlab.sweeps.worker_array import WorkerOptions, run_workers
from cifarlab.sweeps.worker_stop import WorkersStopped

PROG = "cifarlab workers"
EXAMPLE = "workers=4 hparams_search=mlp_optuna"


def _run(options: DictConfig, overrides: list[str]) -> None:
    """Start the workers; Ctrl-C or SIGTERM stops them too (or not, on SLURM), with one line."""
    try:
        run_workers(options, overrides)
    except WorkersStopped as stopped:
        print(f"{PROG}: stopped by {stopped.signum.name}; {stopped}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODES[stopped.signum])


def main(argv: Sequence[str] | None = None) -> None:
    run_command(WorkerOptions, __doc__, argv, prog=PROG, example=EXAMPLE, run=_run, pass_through=True)


if __name__ == "__main__":
    main()
