"""``python -m cifarlab results``: the results table of the experiment presets, from MLflow.

For each preset in ``experiments/`` it takes the newest FINISHED run tagged with
that preset (debug=fast runs excluded) and prints the table: the published
claim, the measured accuracy, epochs, data, hardware, training time, and a
one-line note (the run's ``note`` tag, set with ``tracking.tags.note="..."``)
saying why a number differs. It writes a file only when asked, with
``output=PATH`` (e.g. ``output=experiments/RESULTS.md``); whatever was written by
hand under the table there is kept as it is.

Options are ``key=value``, listed with their defaults by ``--help``; the store is
``tracking_uri=``, else $MLFLOW_TRACKING_URI, else SQLite under ``mlruns_dir=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from cifarlab.config.arguments import run_command
from cifarlab.reports.results_table import write_results

PROG = "cifarlab results"
EXAMPLE = "output=experiments/RESULTS.md"


@dataclass
class ResultsOptions:
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<mlruns_dir>/mlflow.db
    experiment: str = "cifarlab"  # the MLflow experiment the preset runs are in
    output: Optional[str] = None  # a file to write the table into (None: print it only)
    mlruns_dir: str = "mlruns"


def main(argv: Sequence[str] | None = None) -> None:
    run_command(
        ResultsOptions,
        __doc__,
        argv,
        prog=PROG,
        example=EXAMPLE,
        run=lambda options, _: write_results(options),
    )


if __name__ == "__main__":
    main()
