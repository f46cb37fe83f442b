"""``python -m cifarlab workers``: start K workers of one search, as a SLURM job array or K local processes.

    python -m cifarlab workers workers=4 cluster=slurm slurm.partition=gpu slurm.gpus_per_node=1 \\
        hparams_search=cnn_bn_optuna hydra.sweeper.storage=postgresql://user:pw@db-host/optuna
    python -m cifarlab workers workers=2 hparams_search=mlp_optuna          # 2 processes on this machine

Options are ``key=value`` (below, with their defaults); every other argument is an
override of the search command each worker runs (``python -m cifarlab -m ...``).
Workers on several machines need a storage they all reach (PostgreSQL, MySQL);
on one machine the default SQLite study works. See the README (searches).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cifarlab.config.arguments import exit_with_error, parse_options, usage, wants_help
from cifarlab.errors import CifarlabError
from cifarlab.sweeps.worker_array import WorkerOptions, start_workers

PROG = "cifarlab workers"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(usage(WorkerOptions, __doc__))
        return
    try:
        options, overrides = parse_options(
            WorkerOptions, argv, prog=PROG, example="workers=4 hparams_search=mlp_optuna", pass_through=True
        )
        codes = start_workers(options, overrides)
    except CifarlabError as err:
        exit_with_error("cifarlab", err)
    if any(codes):
        exit_with_error(
            "cifarlab", CifarlabError(f"{sum(1 for c in codes if c)} worker(s) failed; see their logs")
        )


if __name__ == "__main__":
    main()
